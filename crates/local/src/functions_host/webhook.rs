//! `/runtime/webhooks/eventgrid?functionName=<fn>`: the Event Grid extension's endpoint, answering as the real
//! one does (Azure/azure-sdk-for-net, Microsoft.Azure.WebJobs.Extensions.EventGrid, `HttpRequestProcessor`):
//!
//! | request | answer |
//! |---|---|
//! | host stopped (too many crashes) | `503` with the reason |
//! | no or unknown `functionName` | `404` `cannot find function: '<fn>'` |
//! | `OPTIONS` (CloudEvents handshake) | `200` with `WebHook-Allowed-Origin` |
//! | `aeg-event-type` missing or unknown | `400` |
//! | `SubscriptionValidation` | `200` `{"validationResponse": "<code>"}` |
//! | `Unsubscribe` (the extension's name) or `SubscriptionDeletion` | `202` |
//! | `Notification` | one invocation per event, all at once: `202` if all succeeded, else `500` |
//!
//! The Event Grid side of the protocol (header, batch, validation code) is `keyturn_events::delivery`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use keyturn_events::delivery::{self, DeliveryKind};
use serde_json::Value;
use warp::Filter;
use warp::http::{HeaderMap, Method, StatusCode};
use warp::reply::{Reply, Response};

use keyturn_app::FunctionDefinition;

/// The path of the Event Grid extension's webhook on the Functions host.
pub const WEBHOOK_PATH: &str = "/runtime/webhooks/eventgrid";

/// The `aeg-event-type` value the Functions extension answers with 202 (Event Grid's docs call it
/// `SubscriptionDeletion`; the stand-in accepts both).
const UNSUBSCRIBE: &str = "Unsubscribe";

/// The origins the extension echoes back in the CloudEvents handshake; any other gets the public cloud's.
const KNOWN_ORIGINS: [&str; 5] = [
    "eventgrid.azure.net",
    "eventgrid.azure.us",
    "eventgrid.azure.eaglex.ic.gov",
    "eventgrid.azure.microsoft.scloud",
    "eventgrid.azure.cn",
];

/// What the webhook needs from the rest of the host: a way to invoke a function with one event, and whether
/// the host has stopped. A trait so the protocol can be tested without a handler process.
pub(crate) trait Dispatch: Send + Sync + 'static {
    /// Invokes `function` with one event; the error says why the invocation failed.
    fn invoke<'a>(&'a self, function: &'a FunctionDefinition, event: Value) -> BoxFuture<'a, Result<(), String>>;

    /// `Some(reason)` once the host has stopped for good (it then answers every request with 503).
    fn stopped(&self) -> Option<String>;
}

/// The webhook as a warp filter, so it can be served on any listener.
pub(crate) fn routes(
    functions: Arc<BTreeMap<String, FunctionDefinition>>,
    dispatch: Arc<dyn Dispatch>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    warp::method().and(warp::path::full()).and(query).and(warp::header::headers_cloned()).and(warp::body::bytes()).then(
        move |method: Method, path: warp::path::FullPath, query: String, headers: HeaderMap, body: Bytes| {
            let functions = Arc::clone(&functions);
            let dispatch = Arc::clone(&dispatch);
            async move {
                let request = Request { method, path: path.as_str(), query: &query, headers: &headers, body };
                handle(&functions, dispatch.as_ref(), request).await.into_response()
            }
        },
    )
}

/// Rejections warp itself raises (e.g. a body it cannot read) answered as plain text.
pub(crate) async fn recover(rejection: warp::Rejection) -> Result<Response, Infallible> {
    Ok(text(StatusCode::BAD_REQUEST, format!("the request could not be read: {rejection:?}")))
}

struct Request<'a> {
    method: Method,
    path: &'a str,
    query: &'a str,
    headers: &'a HeaderMap,
    body: Bytes,
}

/// The webhook's answer, kept plain so the protocol is tested without reading HTTP bodies.
#[derive(Debug, PartialEq)]
struct Answer {
    status: StatusCode,
    /// `WebHook-Allowed-Origin`, on the CloudEvents handshake only.
    allowed_origin: Option<&'static str>,
    body: Body,
}

#[derive(Debug, PartialEq)]
enum Body {
    Empty,
    Text(String),
    Json(Value),
}

impl Answer {
    fn status(status: StatusCode) -> Self {
        Answer { status, allowed_origin: None, body: Body::Empty }
    }

    fn text(status: StatusCode, message: String) -> Self {
        Answer { status, allowed_origin: None, body: Body::Text(message) }
    }

    fn into_response(self) -> Response {
        let mut response = match self.body {
            Body::Empty => self.status.into_response(),
            Body::Text(message) => warp::reply::with_status(message, self.status).into_response(),
            Body::Json(value) => warp::reply::with_status(warp::reply::json(&value), self.status).into_response(),
        };
        if let Some(origin) = self.allowed_origin {
            response
                .headers_mut()
                .insert(delivery::WEBHOOK_ALLOWED_ORIGIN, warp::http::HeaderValue::from_static(origin));
        }
        response
    }
}

async fn handle(
    functions: &BTreeMap<String, FunctionDefinition>,
    dispatch: &dyn Dispatch,
    request: Request<'_>,
) -> Answer {
    // ASP.NET routes without regard to case.
    if !request.path.eq_ignore_ascii_case(WEBHOOK_PATH) {
        return Answer::text(
            StatusCode::NOT_FOUND,
            format!(
                "no route {}: the Functions host stand-in serves {WEBHOOK_PATH}?functionName=<function>",
                request.path
            ),
        );
    }
    if let Some(reason) = dispatch.stopped() {
        return Answer::text(StatusCode::SERVICE_UNAVAILABLE, format!("the Functions host is not running: {reason}"));
    }
    let name = url::form_urlencoded::parse(request.query.as_bytes())
        .find(|(key, _)| key.eq_ignore_ascii_case("functionName"))
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default();
    let Some(function) = functions.get(&name) else {
        tracing::info!(function = %name, known = ?functions.keys().collect::<Vec<_>>(), "cannot find function");
        return Answer::text(StatusCode::NOT_FOUND, format!("cannot find function: '{name}'"));
    };

    if request.method == Method::OPTIONS {
        return Answer {
            status: StatusCode::OK,
            allowed_origin: Some(allowed_origin(request.headers)),
            body: Body::Empty,
        };
    }
    if request.method != Method::POST {
        return Answer::text(
            StatusCode::METHOD_NOT_ALLOWED,
            format!(
                "{} is not supported: Event Grid delivers with POST (and OPTIONS for the handshake)",
                request.method
            ),
        );
    }

    let header =
        request.headers.get(delivery::EVENT_TYPE_HEADER).map(|value| value.to_str().unwrap_or("(not text)").trim());
    if header.is_some_and(|value| value.eq_ignore_ascii_case(UNSUBSCRIBE)) {
        tracing::info!(function = %function.name, "unsubscribe");
        return Answer::status(StatusCode::ACCEPTED);
    }
    // .NET reads the body as text, which drops a UTF-8 byte order mark; JSON parsers do not.
    let body = request.body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&request.body);
    let kind = match DeliveryKind::from_header(header) {
        Ok(kind) => kind,
        Err(error) => return Answer::text(StatusCode::BAD_REQUEST, error.to_string()),
    };
    match kind {
        DeliveryKind::SubscriptionValidation => {
            match delivery::split_batch(body).and_then(|batch| delivery::validation_response(&batch)) {
                Ok(answer) => {
                    tracing::info!(function = %function.name, "subscription validation handshake");
                    Answer { status: StatusCode::OK, allowed_origin: None, body: Body::Json(answer) }
                }
                Err(error) => {
                    Answer::text(StatusCode::BAD_REQUEST, format!("not a subscription validation request: {error}"))
                }
            }
        }
        DeliveryKind::SubscriptionDeletion => Answer::status(StatusCode::ACCEPTED),
        DeliveryKind::Notification => match delivery::split_batch(body) {
            Ok(events) => notify(function, dispatch, events).await,
            Err(error) => Answer::text(StatusCode::BAD_REQUEST, format!("the body is not a batch of events: {error}")),
        },
    }
}

/// Invokes the function once per event, all at once, as the extension's single dispatch does.
async fn notify(function: &FunctionDefinition, dispatch: &dyn Dispatch, events: Vec<Value>) -> Answer {
    let count = events.len();
    let results = futures::future::join_all(events.into_iter().map(|event| dispatch.invoke(function, event))).await;
    let failures: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    tracing::info!(function = %function.name, events = count, failed = failures.len(), "delivery");
    match failures.as_slice() {
        [] => Answer::status(StatusCode::ACCEPTED),
        [only] if count == 1 => Answer::text(StatusCode::INTERNAL_SERVER_ERROR, only.clone()),
        [first, ..] => Answer::text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{} of {count} invocations failed; the first: {first}", failures.len()),
        ),
    }
}

fn allowed_origin(headers: &HeaderMap) -> &'static str {
    let requested = headers.get(delivery::WEBHOOK_REQUEST_ORIGIN).and_then(|value| value.to_str().ok()).map(str::trim);
    requested
        .and_then(|requested| KNOWN_ORIGINS.into_iter().find(|known| *known == requested))
        .unwrap_or(KNOWN_ORIGINS[0])
}

fn text(status: StatusCode, message: String) -> Response {
    warp::reply::with_status(message, status).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::PathBuf;
    use std::sync::Mutex;

    /// Fails events whose subject is "fail"; records every event it sees.
    #[derive(Default)]
    struct FakeDispatch {
        seen: Mutex<Vec<Value>>,
        stopped: Option<String>,
    }

    impl Dispatch for FakeDispatch {
        fn invoke<'a>(&'a self, _: &'a FunctionDefinition, event: Value) -> BoxFuture<'a, Result<(), String>> {
            Box::pin(async move {
                let fail = event["subject"] == "fail";
                self.seen.lock().unwrap().push(event);
                if fail { Err("the handler answered 500: boom".into()) } else { Ok(()) }
            })
        }

        fn stopped(&self) -> Option<String> {
            self.stopped.clone()
        }
    }

    fn functions() -> BTreeMap<String, FunctionDefinition> {
        let function = FunctionDefinition {
            name: "test-event".into(),
            binding: "eventGridEvent".into(),
            trigger: "eventGridTrigger".into(),
            schedule: None,
            path: PathBuf::from("test-event/function.json"),
        };
        BTreeMap::from([(function.name.clone(), function)])
    }

    async fn call(dispatch: &FakeDispatch, method: Method, uri: &str, headers: &[(&str, &str)], body: &str) -> Answer {
        let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(warp::http::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
        }
        let request = Request { method, path, query, headers: &map, body: Bytes::from(body.to_owned()) };
        handle(&functions(), dispatch, request).await
    }

    fn text_of(answer: &Answer) -> &str {
        match &answer.body {
            Body::Text(text) => text,
            other => panic!("expected a text body, got {other:?}"),
        }
    }

    const URL: &str = "/runtime/webhooks/eventgrid?functionName=test-event";
    const NOTIFY: &[(&str, &str)] = &[("aeg-event-type", "Notification")];

    #[tokio::test]
    async fn unknown_or_missing_function_is_404() {
        let dispatch = FakeDispatch::default();
        let answer = call(&dispatch, Method::POST, "/runtime/webhooks/eventgrid?functionName=nope", NOTIFY, "[]").await;
        assert_eq!(answer.status, 404);
        assert_eq!(text_of(&answer), "cannot find function: 'nope'");
        let answer = call(&dispatch, Method::POST, "/runtime/webhooks/eventgrid", NOTIFY, "[]").await;
        assert_eq!(answer.status, 404);
        let answer = call(&dispatch, Method::OPTIONS, "/runtime/webhooks/eventgrid?functionName=x", &[], "").await;
        assert_eq!(answer.status, 404);
        let answer = call(&dispatch, Method::POST, "/api/test-event", NOTIFY, "[]").await;
        assert_eq!(answer.status, 404);
        assert!(dispatch.seen.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn missing_or_unknown_event_type_is_400() {
        let dispatch = FakeDispatch::default();
        let answer = call(&dispatch, Method::POST, URL, &[], r#"[{"subject":"a"}]"#).await;
        assert_eq!(answer.status, 400);
        assert!(text_of(&answer).contains("aeg-event-type"), "{answer:?}");
        let answer = call(&dispatch, Method::POST, URL, &[("aeg-event-type", "Ping")], "[]").await;
        assert_eq!(answer.status, 400);
        assert!(dispatch.seen.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn handshakes_are_answered_without_invoking() {
        let dispatch = FakeDispatch::default();
        let validation = json!([{"id": "1", "topic": "t", "subject": "",
            "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent", "eventTime": "2019-07-25T01:08:33Z",
            "data": {"validationCode": "abc-123"}, "dataVersion": "1", "metadataVersion": "1"}]);
        let headers = [("aeg-event-type", "SubscriptionValidation")];
        let answer = call(&dispatch, Method::POST, URL, &headers, &validation.to_string()).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body, Body::Json(json!({"validationResponse": "abc-123"})));
        let answer = call(&dispatch, Method::POST, URL, &headers, r#"[{"subject":"a"}]"#).await;
        assert_eq!(answer.status, 400);

        for kind in ["Unsubscribe", "unsubscribe", "SubscriptionDeletion"] {
            let answer = call(&dispatch, Method::POST, URL, &[("aeg-event-type", kind)], "[]").await;
            assert_eq!(answer.status, 202, "{kind}");
        }

        let origin = [("WebHook-Request-Origin", "eventgrid.azure.us")];
        let answer = call(&dispatch, Method::OPTIONS, URL, &origin, "").await;
        assert_eq!((answer.status, answer.allowed_origin), (StatusCode::OK, Some("eventgrid.azure.us")));
        let origin = [("WebHook-Request-Origin", "evil.example")];
        let answer = call(&dispatch, Method::OPTIONS, URL, &origin, "").await;
        assert_eq!(answer.allowed_origin, Some("eventgrid.azure.net"));
        let answer = call(&dispatch, Method::OPTIONS, URL, &[], "").await;
        assert_eq!(answer.allowed_origin, Some("eventgrid.azure.net"));
        assert!(dispatch.seen.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_batch_is_split_and_any_failure_fails_the_delivery() {
        let dispatch = FakeDispatch::default();
        let answer = call(&dispatch, Method::POST, URL, NOTIFY, r#"[{"subject":"a"},{"subject":"b"}]"#).await;
        assert_eq!(answer, Answer::status(StatusCode::ACCEPTED));
        assert_eq!(dispatch.seen.lock().unwrap().len(), 2);

        let answer = call(&dispatch, Method::POST, URL, NOTIFY, r#"{"subject":"single"}"#).await;
        assert_eq!(answer.status, 202);
        let answer = call(&dispatch, Method::POST, URL, NOTIFY, "\u{feff} [{\"subject\":\"bom\"}]").await;
        assert_eq!(answer.status, 202);

        let answer = call(&dispatch, Method::POST, URL, NOTIFY, r#"[{"subject":"fail"}]"#).await;
        assert_eq!(answer.status, 500);
        assert_eq!(text_of(&answer), "the handler answered 500: boom");

        let batch = r#"[{"subject":"a"},{"subject":"fail"},{"subject":"c"}]"#;
        let answer = call(&dispatch, Method::POST, URL, NOTIFY, batch).await;
        assert_eq!(answer.status, 500);
        assert_eq!(text_of(&answer), "1 of 3 invocations failed; the first: the handler answered 500: boom");
        assert_eq!(dispatch.seen.lock().unwrap().len(), 8);

        let answer = call(&dispatch, Method::POST, URL, NOTIFY, "not json").await;
        assert_eq!(answer.status, 400);
        assert!(text_of(&answer).starts_with("the body is not a batch of events"), "{answer:?}");

        let answer = call(&dispatch, Method::GET, URL, NOTIFY, "").await;
        assert_eq!(answer.status, 405);
    }

    #[tokio::test]
    async fn a_stopped_host_answers_503() {
        let dispatch = FakeDispatch { stopped: Some("the handler crashed 3 times".into()), ..FakeDispatch::default() };
        let answer = call(&dispatch, Method::POST, URL, NOTIFY, "[]").await;
        assert_eq!(answer.status, 503);
        assert!(text_of(&answer).contains("crashed 3 times"), "{answer:?}");
    }
}
