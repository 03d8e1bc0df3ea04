//! The AWS Lambda adapter: polls the Lambda Runtime API (through `lambda_runtime`) for function URL
//! requests, and answers each as an Event Grid webhook ([`webhook`]); a scheduled function (the `sweep`)
//! instead takes the EventBridge schedule event Lambda is invoked with.
//!
//! Event Grid reaches Lambda as a plain webhook, so this adapter does what the Functions extension does for
//! Azure (validation handshakes, batch splitting, status codes) plus what a public URL needs: a shared-secret
//! check before anything runs ([`secret`]). A Lambda event that is not an HTTP request fails the invocation
//! (Lambda records `keyturn.NotAnHttpRequest` with the reason); every HTTP request gets an HTTP answer.
//!
//! - [`function_url`]: the payload-2.0 request and response, modelled with serde.
//! - [`init_error`]: reporting to Lambda why the process cannot start.
//! - [`webhook`]: the Event Grid webhook protocol over any transport.
//! - [`secret`]: the shared secret and its constant-time check.

pub mod function_url;
pub mod init_error;
pub mod secret;
pub mod webhook;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use serde_json::Value;

use crate::invoke::{Invoker, Trigger, Verdict};
use crate::shutdown;
use function_url::{HttpRequest, HttpResponse};
use secret::{SecretError, WebhookSecret};
use webhook::{EventGridEndpoint, WebhookRequest, WebhookResponse};

/// How long a stop waits for running invocations. Lambda sends SIGTERM only when an extension is registered
/// and then allows a few hundred milliseconds; anything cut short is redelivered by Event Grid.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// The `errorType` Lambda records when the function is invoked with something other than an HTTP request.
pub const NOT_AN_HTTP_REQUEST: &str = "keyturn.NotAnHttpRequest";

/// Runs the adapter until SIGTERM/SIGINT or until the Runtime API fails, and returns the exit code (never 0).
///
/// The caller has checked the Lambda variables (see [`crate::adapter`]), so `lambda_runtime` finds what it
/// would otherwise panic without.
pub async fn run(secret: Result<WebhookSecret, SecretError>, invoker: Invoker) -> ExitCode {
    // Signal handlers first: a stop asked for during startup must not be lost.
    let stop = shutdown::signal();
    let function = invoker.function();
    match &secret {
        // A scheduled function is invoked by its schedule rule, never through the webhook.
        Err(error) if invoker.trigger() == Trigger::EventGrid => {
            tracing::error!(function, %error, "every webhook request will be refused")
        }
        _ => {}
    }
    tracing::info!(function, configured = invoker.not_configured().is_none(), "polling the Lambda Runtime API");
    let webhook = Arc::new(EventGridEndpoint::new(invoker.clone(), secret));
    let service = service_fn(move |event: LambdaEvent<Value>| {
        let webhook = Arc::clone(&webhook);
        async move { invocation(&webhook, event).await }
    });

    tokio::select! {
        result = lambda_runtime::run(service) => {
            // The loop only ends when the Runtime API is gone or answers what the protocol does not allow:
            // nothing to do but exit and let Lambda start a new environment.
            let reason = match result {
                Ok(()) => "the invocation stream ended".to_owned(),
                Err(error) => error.to_string(),
            };
            tracing::error!(function, %reason, "the Lambda Runtime API loop stopped");
            ExitCode::from(shutdown::EXIT_SERVER_FAILED)
        }
        cause = stop => {
            tracing::info!(function, in_flight = invoker.in_flight(), "stop requested; draining running invocations");
            let drained = tokio::time::timeout(DRAIN_TIMEOUT, invoker.idle()).await.is_ok();
            let code = cause.exit_code();
            if drained {
                tracing::info!(cause = ?cause, exit_code = code, "stopped");
            } else {
                tracing::error!(
                    cause = ?cause,
                    exit_code = code,
                    abandoned = invoker.in_flight(),
                    "stopped before every invocation finished; Event Grid will redeliver those events"
                );
            }
            ExitCode::from(code)
        }
    }
}

/// One Lambda invocation: one HTTP request from the function URL, or, for a scheduled function, the
/// EventBridge schedule event itself.
async fn invocation(webhook: &EventGridEndpoint, event: LambdaEvent<Value>) -> Result<Value, Diagnostic> {
    let request_id = event.context.request_id;
    if webhook.invoker().trigger() == Trigger::Timer {
        return scheduled(webhook.invoker(), &request_id, event.payload).await;
    }
    let request = HttpRequest::from_event(event.payload).and_then(|request| webhook_request(&request));
    match request {
        Ok(request) => {
            let response = http_response(webhook.handle(&request_id, request).await);
            serde_json::to_value(response).map_err(|error| Diagnostic {
                error_type: "keyturn.ResponseEncoding".to_owned(),
                error_message: error.to_string(),
            })
        }
        Err(error) => {
            tracing::error!(request_id, %error, "invocation refused");
            Err(Diagnostic { error_type: NOT_AN_HTTP_REQUEST.to_owned(), error_message: error.to_string() })
        }
    }
}

/// A scheduled run. EventBridge invokes Lambda asynchronously: an error makes Lambda retry the run (twice by
/// default), an acknowledged outcome is the function's result. No webhook secret applies: nothing but an
/// invoke permission granted to the schedule rule (infra) can invoke the function this way.
async fn scheduled(invoker: &Invoker, request_id: &str, payload: Value) -> Result<Value, Diagnostic> {
    match invoker.invoke(request_id, payload).await {
        Verdict::Acknowledge(outcome) => serde_json::to_value(&outcome).map_err(|error| Diagnostic {
            error_type: "keyturn.ResponseEncoding".to_owned(),
            error_message: error.to_string(),
        }),
        Verdict::Retry(failure) => {
            Err(Diagnostic { error_type: format!("keyturn.{}", failure.label()), error_message: failure.to_string() })
        }
    }
}

fn webhook_request(request: &HttpRequest) -> Result<WebhookRequest, function_url::RequestError> {
    let body = request.body_bytes()?;
    let mut headers = HeaderMap::new();
    for (name, value) in &request.headers {
        // A header name or value HTTP itself forbids cannot have been sent by Event Grid: leave it out.
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name.as_str()), HeaderValue::try_from(value.as_str())) {
            headers.append(name, value);
        }
    }
    // An unknown method is still a method; the webhook answers it 405.
    let method = Method::from_bytes(request.request_context.http.method.as_bytes()).unwrap_or(Method::GET);
    Ok(WebhookRequest { method, headers, query: request.raw_query_string.clone(), body })
}

fn http_response(response: WebhookResponse) -> HttpResponse {
    let mut headers = response.headers;
    headers.insert("content-type".to_owned(), "application/json".to_owned());
    HttpResponse {
        status_code: response.status.as_u16(),
        headers,
        body: response.body.to_string(),
        is_base64_encoded: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_function_url_event_becomes_a_webhook_request() {
        let request = HttpRequest::from_event(json!({
            "version": "2.0",
            "rawPath": "/",
            "rawQueryString": "secret=abc",
            "headers": {"aeg-event-type": "Notification", "bad header": "x"},
            "requestContext": {"requestId": "r", "http": {"method": "POST", "path": "/"}},
            "body": "W10=",
            "isBase64Encoded": true
        }))
        .unwrap();
        let request = webhook_request(&request).unwrap();
        assert_eq!(request.method, Method::POST);
        assert_eq!(request.query, "secret=abc");
        assert_eq!(request.body, b"[]");
        assert_eq!(request.headers.len(), 1);
        assert_eq!(request.headers["aeg-event-type"], "Notification");
    }
}
