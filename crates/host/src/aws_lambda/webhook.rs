//! What the Event Grid extension does for an Azure Function, done for a plain webhook: authenticate, answer
//! the two validation handshakes, split a batch, run each event through the [`Invoker`], and answer with the
//! status Event Grid acts on. Transport-free: [`super`] feeds it from Lambda, tests feed it directly.
//!
//! | request | answer |
//! |---|---|
//! | [`KEYTURN_WEBHOOK_SECRET`](crate::adapter::WEBHOOK_SECRET_VARIABLE) unusable | `500`: every request, so Event Grid keeps the events until it is fixed; nothing runs |
//! | no or wrong secret ([`secret::HEADER`] or `?`[`secret::QUERY_PARAMETER`]`=`) | `401`: final for Event Grid webhooks (dead-letter); nothing runs |
//! | `OPTIONS` with `WebHook-Request-Origin` (CloudEvents handshake) | `200` with `WebHook-Allowed-Origin` |
//! | `POST`, `aeg-event-type: SubscriptionValidation` | `200` `{"validationResponse": "<code>"}` |
//! | `POST`, `aeg-event-type: SubscriptionDeletion` | `200`, nothing runs |
//! | `POST`, `aeg-event-type: Notification` (or a CloudEvents body without the header) | every event run in parallel: `200` when all are acknowledged (done, skipped or rejected), `500` when any must be retried: Event Grid then resends the whole batch |
//! | a body that is not a batch of event objects, a missing or unknown `aeg-event-type` | `400`: it can never succeed (Event Grid dead-letters it) |
//! | a body over [`MAX_BODY_BYTES`] or a batch over [`MAX_EVENTS`] (no Event Grid delivery is that large) | `413`, before anything is parsed or run |
//! | any other method | `405` |

use std::collections::BTreeMap;

/// The largest delivery body accepted. Event Grid caps an event at 1 MB and a batch at the subscription's
/// `preferredBatchSizeInKilobytes` (at most 1024, exceeded only by a single large event), so twice that is
/// never a real delivery: whoever sends more cannot make the handler parse it.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
/// The most events one delivery may carry: Event Grid's `maxEventsPerBatch` is at most 5000 (keyturn's
/// subscriptions use 1). Each runs in parallel, so the count is bounded before any runs.
pub const MAX_EVENTS: usize = 5000;

use futures::future::join_all;
use http::{HeaderMap, Method, StatusCode};
use keyturn_events::delivery::{self, DeliveryKind};
use serde_json::{Value, json};

use super::secret::{self, SecretError, WebhookSecret};
use crate::invoke::{Invoker, Verdict};

/// One HTTP request, whatever carried it.
#[derive(Debug, Clone)]
pub struct WebhookRequest {
    pub method: Method,
    pub headers: HeaderMap,
    /// The raw query string, without `?`.
    pub query: String,
    pub body: Vec<u8>,
}

/// The answer: a status, extra headers, and a JSON body (`content-type: application/json` always).
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookResponse {
    pub status: StatusCode,
    pub headers: BTreeMap<String, String>,
    pub body: Value,
}

impl WebhookResponse {
    fn new(status: StatusCode, body: Value) -> Self {
        WebhookResponse { status, headers: BTreeMap::new(), body }
    }

    fn error(status: StatusCode, message: impl Into<String>) -> Self {
        Self::new(status, json!({ "error": message.into() }))
    }

    fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.insert(name.to_ascii_lowercase(), value.into());
        self
    }
}

/// The webhook endpoint of one function: its invoker and the secret requests must carry.
#[derive(Debug, Clone)]
pub struct EventGridEndpoint {
    invoker: Invoker,
    secret: Result<WebhookSecret, SecretError>,
}

impl EventGridEndpoint {
    pub fn new(invoker: Invoker, secret: Result<WebhookSecret, SecretError>) -> Self {
        EventGridEndpoint { invoker, secret }
    }

    /// The function behind the webhook.
    pub fn invoker(&self) -> &Invoker {
        &self.invoker
    }

    /// Answers one request. `request_id` is the platform's id for it (the Lambda request id); each event's
    /// invocation id derives from it.
    pub async fn handle(&self, request_id: &str, request: WebhookRequest) -> WebhookResponse {
        let function = self.invoker.function();
        if let Err(refusal) = self.authenticate(&request) {
            match refusal.status {
                StatusCode::UNAUTHORIZED => {
                    tracing::warn!(function, request_id, method = %request.method, reason = %refusal.reason, "webhook request refused")
                }
                _ => tracing::error!(function, request_id, reason = %refusal.reason, "webhook request refused"),
            }
            return WebhookResponse::error(refusal.status, refusal.reason);
        }

        if request.method == Method::OPTIONS {
            return options(function, request_id, &request.headers);
        }
        if request.method != Method::POST {
            tracing::warn!(function, request_id, method = %request.method, "method not allowed");
            return WebhookResponse::error(
                StatusCode::METHOD_NOT_ALLOWED,
                format!(
                    "{} is not allowed; Event Grid delivers with POST and validates CloudEvents with OPTIONS",
                    request.method
                ),
            )
            .with_header("allow", "POST, OPTIONS");
        }

        if request.body.len() > MAX_BODY_BYTES {
            return too_large(
                function,
                request_id,
                format!(
                    "the body is {} bytes; a delivery is at most {MAX_BODY_BYTES} (Event Grid sends batches of at most \
                     1 MB and events of at most 1 MB)",
                    request.body.len()
                ),
            );
        }
        let kind = match delivery_kind(&request.headers) {
            Ok(kind) => kind,
            Err(error) => return bad_request(function, request_id, error.to_string()),
        };
        let batch = match delivery::split_batch(&request.body) {
            Ok(batch) if batch.len() > MAX_EVENTS => {
                let message = format!(
                    "the batch holds {} events; a delivery holds at most {MAX_EVENTS} (Event Grid's maxEventsPerBatch)",
                    batch.len()
                );
                return too_large(function, request_id, message);
            }
            Ok(batch) => batch,
            Err(error) => {
                return bad_request(function, request_id, format!("the body is not a batch of events: {error}"));
            }
        };
        match kind {
            DeliveryKind::SubscriptionValidation => match delivery::validation_response(&batch) {
                Ok(answer) => {
                    tracing::info!(function, request_id, "subscription validation answered");
                    WebhookResponse::new(StatusCode::OK, answer)
                }
                Err(error) => bad_request(function, request_id, format!("validation request: {error}")),
            },
            DeliveryKind::SubscriptionDeletion => {
                tracing::info!(function, request_id, "subscription deleted");
                WebhookResponse::new(StatusCode::OK, json!({}))
            }
            DeliveryKind::Notification => self.notification(request_id, &request.headers, batch).await,
        }
    }

    /// Runs every event of a batch in parallel, as the Functions extension does, and answers `500` if any
    /// must come back: Event Grid retries per delivery, so the whole batch is resent (handlers are idempotent
    /// because Event Grid delivers at least once anyway).
    async fn notification(&self, request_id: &str, headers: &HeaderMap, batch: Vec<Value>) -> WebhookResponse {
        let function = self.invoker.function();
        let count = batch.len();
        let delivery_count = header(headers, delivery::DELIVERY_COUNT_HEADER).unwrap_or_default();
        let subscription = header(headers, delivery::SUBSCRIPTION_NAME_HEADER).unwrap_or_default();
        let verdicts = join_all(batch.into_iter().enumerate().map(|(index, event)| {
            let invocation_id = if count == 1 { request_id.to_owned() } else { format!("{request_id}/{index}") };
            let invoker = self.invoker.clone();
            async move { invoker.invoke(&invocation_id, event).await }
        }))
        .await;
        let results: Vec<String> = verdicts.iter().map(Verdict::log_line).collect();
        // The typed outcome of each event, `null` for one that must be retried (its line says why).
        let outcomes: Vec<Value> = verdicts
            .iter()
            .map(|verdict| match verdict {
                Verdict::Acknowledge(outcome) => serde_json::to_value(outcome).unwrap_or(Value::Null),
                Verdict::Retry(_) => Value::Null,
            })
            .collect();
        let retry = verdicts.iter().filter(|verdict| matches!(verdict, Verdict::Retry(_))).count();
        if retry == 0 {
            tracing::info!(
                function,
                request_id,
                events = count,
                delivery_count,
                subscription,
                status = 200,
                "batch acknowledged"
            );
            WebhookResponse::new(StatusCode::OK, json!({ "results": results, "outcomes": outcomes }))
        } else {
            let message = format!("{retry} of {count} events must be retried; Event Grid will resend the batch");
            tracing::warn!(
                function,
                request_id,
                events = count,
                retry,
                delivery_count,
                subscription,
                status = 500,
                "{message}"
            );
            WebhookResponse::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({ "error": message, "results": results, "outcomes": outcomes }),
            )
        }
    }

    fn authenticate(&self, request: &WebhookRequest) -> Result<(), Refusal> {
        let expected = self.secret.as_ref().map_err(|error| Refusal {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            reason: format!("not configured: {error}"),
        })?;
        let unauthorized = |reason: &str| Refusal { status: StatusCode::UNAUTHORIZED, reason: reason.to_owned() };
        // The header wins when both are present: it is the form the deployment notes recommend.
        let presented: Option<Vec<u8>> = match request.headers.get(secret::HEADER) {
            Some(value) => Some(value.as_bytes().to_vec()),
            None => url::form_urlencoded::parse(request.query.as_bytes())
                .find(|(name, _)| name == secret::QUERY_PARAMETER)
                .map(|(_, value)| value.as_bytes().to_vec()),
        };
        match presented {
            None => Err(unauthorized(&format!(
                "no webhook secret: send it in the {} header or the {} query parameter",
                secret::HEADER,
                secret::QUERY_PARAMETER
            ))),
            Some(presented) if expected.matches(&presented) => Ok(()),
            Some(_) => Err(unauthorized("the webhook secret does not match")),
        }
    }
}

/// Why a request is refused before anything runs. The reason never contains a secret.
struct Refusal {
    status: StatusCode,
    reason: String,
}

/// The CloudEvents abuse-protection handshake: allow the origin that asked (Event Grid sends
/// `eventgrid.azure.net`).
fn options(function: &str, request_id: &str, headers: &HeaderMap) -> WebhookResponse {
    match header(headers, delivery::WEBHOOK_REQUEST_ORIGIN) {
        Some(origin) if !origin.is_empty() => {
            tracing::info!(function, request_id, origin, "CloudEvents validation answered");
            WebhookResponse::new(StatusCode::OK, json!({}))
                .with_header(delivery::WEBHOOK_ALLOWED_ORIGIN, origin)
                .with_header(delivery::WEBHOOK_ALLOWED_RATE, "*")
        }
        _ => bad_request(
            function,
            request_id,
            format!(
                "OPTIONS without a {} header is not a CloudEvents validation request",
                delivery::WEBHOOK_REQUEST_ORIGIN
            ),
        ),
    }
}

/// The delivery's kind from `aeg-event-type`. A CloudEvents batch without the header is taken as a
/// notification: CloudEvents deliveries are defined by their content type, not by Event Grid's header.
fn delivery_kind(headers: &HeaderMap) -> Result<DeliveryKind, delivery::DeliveryError> {
    let value = header(headers, delivery::EVENT_TYPE_HEADER);
    let cloud_events = header(headers, "content-type").is_some_and(|content_type| {
        content_type.trim_start().to_ascii_lowercase().starts_with("application/cloudevents")
    });
    if value.is_none() && cloud_events {
        return Ok(DeliveryKind::Notification);
    }
    DeliveryKind::from_header(value)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// `413`: final for Event Grid (it dead-letters), and nothing was run.
fn too_large(function: &str, request_id: &str, message: String) -> WebhookResponse {
    tracing::warn!(function, request_id, status = 413, error = %message, "webhook request refused");
    WebhookResponse::error(StatusCode::PAYLOAD_TOO_LARGE, message)
}

fn bad_request(function: &str, request_id: &str, message: String) -> WebhookResponse {
    tracing::warn!(function, request_id, status = 400, error = %message, "webhook request refused");
    WebhookResponse::error(StatusCode::BAD_REQUEST, message)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http::HeaderValue;
    use keyturn_events::Event;

    use super::*;
    use crate::outcome::{HandlerError, Outcome};

    const SECRET: &str = "0123456789abcdef0123456789abcdef";
    const NEAR_EXPIRY: &str = include_str!("../../../events/fixtures/eventgrid-secret-near-expiry.json");
    const CLOUD_EVENT: &str = include_str!("../../../events/fixtures/cloudevents-secret-near-expiry.json");
    const VALIDATION: &str = include_str!("../../../events/fixtures/eventgrid-subscription-validation.json");

    /// A webhook whose handler answers by subject: `retry` → retryable error, `reject` → permanent error,
    /// anything else → done. Counts calls.
    fn webhook(secret: Result<WebhookSecret, SecretError>) -> (EventGridEndpoint, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        let deps: Result<(), String> = Ok(());
        let invoker = Invoker::new("near-expiry", deps, move |event: Event, _deps: Arc<()>| {
            counted.fetch_add(1, Ordering::SeqCst);
            std::future::ready(match event.subject.as_str() {
                "retry" => Err(HandlerError::retryable("vault answered 503")),
                "reject" => Err(HandlerError::permanent("no policy")),
                _ => Ok(Outcome::done(event.id)),
            })
        });
        (EventGridEndpoint::new(invoker, secret), calls)
    }

    fn configured() -> (EventGridEndpoint, Arc<AtomicUsize>) {
        webhook(WebhookSecret::new(SECRET.into()))
    }

    fn event(id: &str, subject: &str) -> Value {
        let mut event: Value = serde_json::from_str(NEAR_EXPIRY).unwrap();
        event["id"] = json!(id);
        event["subject"] = json!(subject);
        event
    }

    fn post(kind: Option<&str>, body: &Value) -> WebhookRequest {
        let mut headers = HeaderMap::new();
        headers.insert(secret::HEADER, HeaderValue::from_static(SECRET));
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        if let Some(kind) = kind {
            headers.insert(delivery::EVENT_TYPE_HEADER, HeaderValue::from_str(kind).unwrap());
        }
        WebhookRequest { method: Method::POST, headers, query: String::new(), body: serde_json::to_vec(body).unwrap() }
    }

    #[tokio::test]
    async fn a_batch_where_every_event_is_acknowledged_answers_200_with_each_result() {
        let (webhook, calls) = configured();
        let batch = json!([event("a", "db-password"), event("b", "reject")]);
        let response = webhook.handle("req-1", post(Some("Notification"), &batch)).await;
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(
            response.body,
            json!({
                "results": ["done: a", "rejected: no policy"],
                "outcomes": [{"status": "done", "message": "a"}, {"status": "rejected", "message": "no policy"}]
            })
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn one_retryable_event_fails_the_whole_batch_with_500() {
        let (webhook, calls) = configured();
        let batch = json!([event("a", "db-password"), event("b", "retry")]);
        let response = webhook.handle("req-1", post(Some("Notification"), &batch)).await;
        assert_eq!(response.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.body["results"], json!(["done: a", "retry: vault answered 503"]));
        assert_eq!(response.body["outcomes"], json!([{"status": "done", "message": "a"}, null]));
        assert!(response.body["error"].as_str().unwrap().starts_with("1 of 2 events must be retried"));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn without_the_right_secret_nothing_runs() {
        let (webhook, calls) = configured();
        let batch = json!([event("a", "db-password")]);

        let mut missing = post(Some("Notification"), &batch);
        missing.headers.remove(secret::HEADER);
        let response = webhook.handle("r", missing.clone()).await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED);
        assert!(response.body["error"].as_str().unwrap().starts_with("no webhook secret"));

        let mut wrong = post(Some("Notification"), &batch);
        wrong.headers.insert(secret::HEADER, HeaderValue::from_static("0123456789abcdef0123456789abcdeF"));
        let response = webhook.handle("r", wrong).await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED);
        assert!(!response.body.to_string().contains(SECRET));

        // Not even the handshakes are answered without it.
        let mut options = missing.clone();
        options.method = Method::OPTIONS;
        options.headers.insert(delivery::WEBHOOK_REQUEST_ORIGIN, HeaderValue::from_static("eventgrid.azure.net"));
        assert_eq!(webhook.handle("r", options).await.status, StatusCode::UNAUTHORIZED);
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn the_secret_may_come_in_the_query_and_is_url_decoded() {
        let secret = "a+b/c=d0123456789abcdef";
        let (webhook, calls) = webhook(WebhookSecret::new(secret.into()));
        let mut request = post(Some("Notification"), &json!([event("a", "db-password")]));
        request.headers.remove(secret::HEADER);
        request.query = "other=1&secret=a%2Bb%2Fc%3Dd0123456789abcdef".to_owned();
        assert_eq!(webhook.handle("r", request.clone()).await.status, StatusCode::OK);
        // `+` in a query means a space: an unencoded base64 secret does not match.
        request.query = format!("secret={secret}");
        assert_eq!(webhook.handle("r", request).await.status, StatusCode::UNAUTHORIZED);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_unusable_secret_setting_refuses_everything_with_500() {
        let (webhook, calls) = webhook(Err(SecretError::Missing));
        let response = webhook.handle("r", post(Some("Notification"), &json!([event("a", "x")]))).await;
        assert_eq!(response.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            response.body["error"].as_str().unwrap().starts_with("not configured: KEYTURN_WEBHOOK_SECRET is not set")
        );
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn both_validation_handshakes_are_answered() {
        let (webhook, calls) = configured();
        let validation: Value = serde_json::from_str(VALIDATION).unwrap();
        let code = validation[0]["data"]["validationCode"].clone();
        let response = webhook.handle("r", post(Some("SubscriptionValidation"), &validation)).await;
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(response.body, json!({"validationResponse": code}));

        let mut options = post(None, &json!(null));
        options.method = Method::OPTIONS;
        options.body.clear();
        options.headers.insert(delivery::WEBHOOK_REQUEST_ORIGIN, HeaderValue::from_static("eventgrid.azure.net"));
        let response = webhook.handle("r", options.clone()).await;
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(response.headers["webhook-allowed-origin"], "eventgrid.azure.net");

        options.headers.remove(delivery::WEBHOOK_REQUEST_ORIGIN);
        assert_eq!(webhook.handle("r", options).await.status, StatusCode::BAD_REQUEST);
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn cloud_events_need_no_event_type_header() {
        let (webhook, calls) = configured();
        let mut request = post(None, &json!([serde_json::from_str::<Value>(CLOUD_EVENT).unwrap()]));
        request
            .headers
            .insert("content-type", HeaderValue::from_static("application/cloudevents-batch+json; charset=utf-8"));
        let response = webhook.handle("r", request).await;
        assert_eq!(response.status, StatusCode::OK, "{:?}", response.body);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn what_can_never_succeed_is_a_400_and_runs_nothing() {
        let (webhook, calls) = configured();
        let cases = [
            (post(None, &json!([event("a", "x")])), "the aeg-event-type header is missing"),
            (post(Some("Ping"), &json!([event("a", "x")])), "the aeg-event-type header is 'Ping'"),
            (post(Some("Notification"), &json!([event("a", "x"), 3])), "the body is not a batch of events: [1]"),
            (post(Some("SubscriptionValidation"), &json!([event("a", "x")])), "validation request:"),
        ];
        for (request, expected) in cases {
            let response = webhook.handle("r", request).await;
            assert_eq!(response.status, StatusCode::BAD_REQUEST);
            let error = response.body["error"].as_str().unwrap();
            assert!(error.starts_with(expected), "{error}");
        }
        let mut get = post(Some("Notification"), &json!([]));
        get.method = Method::GET;
        let response = webhook.handle("r", get).await;
        assert_eq!(response.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers["allow"], "POST, OPTIONS");
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_body_or_batch_larger_than_event_grid_sends_is_a_413_and_runs_nothing() {
        let (webhook, calls) = configured();
        let mut huge = post(Some("Notification"), &json!([event("a", "x")]));
        huge.body = vec![b' '; MAX_BODY_BYTES + 1];
        let response = webhook.handle("r", huge).await;
        assert_eq!(response.status, StatusCode::PAYLOAD_TOO_LARGE);
        let error = response.body["error"].as_str().unwrap();
        assert!(
            error.starts_with(&format!("the body is {} bytes; a delivery is at most", MAX_BODY_BYTES + 1)),
            "{error}"
        );

        // Small events, many of them: under the byte limit, over the count.
        let tiny = json!({"id": "t", "subject": "s", "eventType": "x", "data": {}});
        let many = Value::Array(vec![tiny; MAX_EVENTS + 1]);
        let response = webhook.handle("r", post(Some("Notification"), &many)).await;
        assert_eq!(response.status, StatusCode::PAYLOAD_TOO_LARGE);
        let error = response.body["error"].as_str().unwrap();
        assert!(error.contains(&format!("holds {} events", MAX_EVENTS + 1)), "{error}");
        assert_eq!(calls.load(Ordering::SeqCst), 0, "nothing ran");
    }

    #[tokio::test]
    async fn deletion_is_acknowledged_without_running_anything() {
        let (webhook, calls) = configured();
        let response = webhook.handle("r", post(Some("SubscriptionDeletion"), &json!([]))).await;
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }
}
