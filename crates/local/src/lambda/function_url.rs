//! A function URL in front of the Runtime API, as AWS's function URLs (auth type NONE) behave
//! (urls-invocation.html): any method and path, turned into a payload-2.0 event (header names lower-cased,
//! repeated headers joined with commas, bodies whose content type is not text base64-encoded), one invocation
//! per request, and the function's answer turned back into HTTP. A failed or timed-out invocation is `502`;
//! a request body over Lambda's 6 MB payload limit is `413` and invokes nothing.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use keyturn_host::aws_lambda::function_url::HttpResponse;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use warp::Filter;
use warp::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use warp::reply::Reply;

use super::LambdaError;
use super::runtime_api::{Completion, RuntimeApi};

/// Lambda's payload limit for a synchronous invocation (request and response), in bytes.
pub const PAYLOAD_LIMIT: usize = 6 * 1024 * 1024;

/// Content types a function URL passes as text; anything else is base64-encoded.
const TEXT_TYPES: [&str; 4] =
    ["application/json", "application/xml", "application/javascript", "application/x-www-form-urlencoded"];

/// Serves the function URL for `runtime` on an ephemeral loopback port; the task ends when aborted.
pub(crate) async fn start(runtime: RuntimeApi) -> Result<(SocketAddr, JoinHandle<()>), LambdaError> {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .map_err(|source| LambdaError::Bind { what: "function URL", source })?;
    let addr = listener.local_addr().map_err(|source| LambdaError::Bind { what: "function URL", source })?;
    let requests = Arc::new(AtomicU64::new(1));
    let route = warp::method()
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .and(warp::body::bytes())
        .then(move |method: Method, path: warp::path::FullPath, query: String, headers: HeaderMap, body: Bytes| {
            let runtime = runtime.clone();
            let id = requests.fetch_add(1, Ordering::Relaxed);
            async move {
                if body.len() > PAYLOAD_LIMIT {
                    return message(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "Request must be smaller than 6291456 bytes for the InvokeFunction operation",
                    );
                }
                let event = http_event(id, &method, path.as_str(), &query, &headers, &body);
                match runtime.invoke(event).await {
                    Ok(Completion::Response(answer)) => http_answer(answer),
                    Ok(Completion::Error { .. }) | Err(_) => message(StatusCode::BAD_GATEWAY, "Internal Server Error"),
                }
            }
        });
    let task = tokio::spawn(warp::serve(route).incoming(listener).run());
    Ok((addr, task))
}

fn message(status: StatusCode, text: &str) -> warp::reply::Response {
    warp::reply::with_status(warp::reply::json(&json!({"Message": text})), status).into_response()
}

/// The payload-2.0 event for one request, as a function URL builds it.
fn http_event(id: u64, method: &Method, path: &str, query: &str, headers: &HeaderMap, body: &[u8]) -> Value {
    let mut joined: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        joined
            .entry(name.as_str().to_owned())
            .and_modify(|existing| {
                existing.push(',');
                existing.push_str(&value);
            })
            .or_insert(value);
    }
    let content_type = joined.get("content-type").map(|c| c.to_ascii_lowercase()).unwrap_or_default();
    let text = content_type.starts_with("text/") || TEXT_TYPES.iter().any(|t| content_type.starts_with(t));
    let now = chrono::Utc::now();
    let mut event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": joined,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "local",
            "domainName": "local.lambda-url.local.on.aws",
            "domainPrefix": "local",
            "http": {
                "method": method.as_str(),
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": joined.get("user-agent").cloned().unwrap_or_default()
            },
            "requestId": format!("url-{id}"),
            "routeKey": "$default",
            "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
            "timeEpoch": now.timestamp_millis()
        },
        "isBase64Encoded": !text && !body.is_empty()
    });
    if !query.is_empty() {
        // Repeated parameters joined with commas, as the function URL does.
        let mut parameters: BTreeMap<String, String> = BTreeMap::new();
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            parameters
                .entry(name.into_owned())
                .and_modify(|existing| {
                    existing.push(',');
                    existing.push_str(&value);
                })
                .or_insert_with(|| value.into_owned());
        }
        event["queryStringParameters"] = json!(parameters);
    }
    if !body.is_empty() {
        event["body"] = if text { json!(String::from_utf8_lossy(body)) } else { json!(STANDARD.encode(body)) };
    }
    event
}

/// The HTTP response for the function's answer. An answer without `statusCode` is, as on AWS, a `200` JSON
/// body; one that cannot be turned into HTTP (a bad status, base64, header) is `502`.
fn http_answer(answer: Value) -> warp::reply::Response {
    if answer.get("statusCode").is_none() {
        let mut response = warp::reply::Response::new(answer.to_string().into());
        response.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
        return response;
    }
    let Some(response) = structured_answer(answer) else {
        return message(StatusCode::BAD_GATEWAY, "Internal Server Error");
    };
    response
}

fn structured_answer(answer: Value) -> Option<warp::reply::Response> {
    let answer: HttpResponse = serde_json::from_value(answer).ok()?;
    let body = if answer.is_base64_encoded { STANDARD.decode(answer.body).ok()? } else { answer.body.into_bytes() };
    let mut response = warp::reply::Response::new(body.into());
    *response.status_mut() = StatusCode::from_u16(answer.status_code).ok()?;
    for (name, value) in answer.headers {
        response.headers_mut().insert(HeaderName::try_from(name).ok()?, HeaderValue::try_from(value).ok()?);
    }
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_becomes_a_payload_2_event() {
        let mut headers = HeaderMap::new();
        headers.insert("Content-Type", HeaderValue::from_static("application/cloudevents-batch+json; charset=utf-8"));
        headers.append("x-repeated", HeaderValue::from_static("a"));
        headers.append("x-repeated", HeaderValue::from_static("b"));
        let event = http_event(7, &Method::POST, "/", "secret=abc&k=1&k=2", &headers, br#"[{"id":"1"}]"#);
        assert_eq!(event["version"], "2.0");
        assert_eq!(event["headers"]["x-repeated"], "a,b");
        assert_eq!(event["rawQueryString"], "secret=abc&k=1&k=2");
        assert_eq!(event["queryStringParameters"], json!({"secret": "abc", "k": "1,2"}));
        assert_eq!(event["requestContext"]["http"]["method"], "POST");
        assert_eq!(event["isBase64Encoded"], true, "a CloudEvents batch is not a text type");
        assert_eq!(STANDARD.decode(event["body"].as_str().unwrap()).unwrap(), br#"[{"id":"1"}]"#);
        // And the adapter the handlers use reads it back.
        let request = keyturn_host::aws_lambda::function_url::HttpRequest::from_event(event).unwrap();
        assert_eq!(request.body_bytes().unwrap(), br#"[{"id":"1"}]"#);
    }

    #[test]
    fn json_bodies_stay_text_and_empty_requests_have_no_body_or_query() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        let event = http_event(1, &Method::POST, "/", "", &headers, b"[]");
        assert_eq!((event["isBase64Encoded"].clone(), event["body"].clone()), (json!(false), json!("[]")));
        assert!(event.get("queryStringParameters").is_none());
        let event = http_event(2, &Method::OPTIONS, "/", "", &HeaderMap::new(), b"");
        assert!(event.get("body").is_none());
        assert_eq!(event["isBase64Encoded"], false);
    }

    #[test]
    fn answers_become_http_and_bad_ones_502() {
        let answer =
            http_answer(json!({"statusCode": 401, "headers": {"x-a": "1"}, "body": "{}", "isBase64Encoded": false}));
        assert_eq!((answer.status(), answer.headers()["x-a"].to_str().unwrap()), (StatusCode::UNAUTHORIZED, "1"));
        let answer = http_answer(json!({"statusCode": 200, "body": "aGk=", "isBase64Encoded": true}));
        assert_eq!(answer.status(), StatusCode::OK);
        assert_eq!(http_answer(json!({"statusCode": 1000})).status(), StatusCode::BAD_GATEWAY);
        assert_eq!(
            http_answer(json!({"statusCode": 200, "body": "!", "isBase64Encoded": true})).status(),
            StatusCode::BAD_GATEWAY
        );
        let plain = http_answer(json!({"hello": "world"}));
        assert_eq!(
            (plain.status(), plain.headers()["content-type"].to_str().unwrap()),
            (StatusCode::OK, "application/json")
        );
    }
}
