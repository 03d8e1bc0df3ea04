//! A local AWS Lambda for the tests and the startup bench: the Runtime API a real Lambda execution environment
//! serves (AWS's documented protocol, runtimes-api.html), and a function URL in front of it that turns an HTTP
//! request into a payload-2.0 event and the function's answer back into HTTP, as AWS's function URLs do.
//!
//! Runtime API, served on loopback for one function:
//! - `GET /2018-06-01/runtime/invocation/next`: long-polls for the next invocation; answers its event with
//!   `Lambda-Runtime-Aws-Request-Id`, `Lambda-Runtime-Deadline-Ms`, `Lambda-Runtime-Invoked-Function-Arn`.
//! - `POST /2018-06-01/runtime/invocation/{id}/response` and `.../{id}/error`: completes it (`202`); an
//!   unknown id is `400`.
//! - `POST /2018-06-01/runtime/init/error`: recorded (`202`).

// Each user (the tests, the bench) uses a different part of this module.
// `pub` marks what the users may call; the module itself is private to each of them.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use host::aws_lambda::function_url::HttpResponse;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use warp::Filter;
use warp::http::{HeaderMap, Method, StatusCode};
use warp::reply::Reply;

/// How an invocation ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Completion {
    /// `POST .../response` with this JSON body.
    Response(Value),
    /// `POST .../error` with its `Lambda-Runtime-Function-Error-Type` header and body.
    Error { error_type: String, body: Value },
}

/// One invocation and how it ended, in the order they completed.
#[derive(Debug, Clone)]
pub struct Record {
    pub request_id: String,
    pub event: Value,
    pub completion: Completion,
}

struct Pending {
    request_id: String,
    event: Value,
    reply: oneshot::Sender<Completion>,
}

struct State {
    queue: mpsc::UnboundedSender<Pending>,
    // A tokio Mutex: held across the wait for the next invocation, so two polls never take the same one.
    incoming: tokio::sync::Mutex<mpsc::UnboundedReceiver<Pending>>,
    // std Mutexes below: held for an insert or a scan, never across an await.
    running: Mutex<HashMap<String, (Value, oneshot::Sender<Completion>)>>,
    records: Mutex<Vec<Record>>,
    init_errors: Mutex<Vec<(String, Value)>>,
    polls: AtomicUsize,
    next_id: AtomicU64,
}

/// The Runtime API of one local Lambda function.
#[derive(Clone)]
pub struct RuntimeApi {
    addr: SocketAddr,
    state: Arc<State>,
}

pub const FUNCTION_ARN: &str = "arn:aws:lambda:eu-west-1:123456789012:function:keyturn-echo";

impl RuntimeApi {
    pub async fn start() -> Self {
        let (queue, incoming) = mpsc::unbounded_channel();
        let state = Arc::new(State {
            queue,
            incoming: tokio::sync::Mutex::new(incoming),
            running: Mutex::default(),
            records: Mutex::default(),
            init_errors: Mutex::default(),
            polls: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
        });

        let with_state = {
            let state = Arc::clone(&state);
            warp::any().map(move || Arc::clone(&state))
        };
        let next = warp::get()
            .and(warp::path!("2018-06-01" / "runtime" / "invocation" / "next"))
            .and(with_state.clone())
            .then(|state: Arc<State>| async move {
                state.polls.fetch_add(1, Ordering::SeqCst);
                let pending = state.incoming.lock().await.recv().await;
                let Some(Pending { request_id, event, reply }) = pending else {
                    return StatusCode::SERVICE_UNAVAILABLE.into_response();
                };
                state.running.lock().unwrap().insert(request_id.clone(), (event.clone(), reply));
                let deadline = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + Duration::from_secs(30);
                let mut response = warp::reply::json(&event).into_response();
                let headers = response.headers_mut();
                headers.insert("Lambda-Runtime-Aws-Request-Id", request_id.parse().unwrap());
                headers.insert("Lambda-Runtime-Deadline-Ms", deadline.as_millis().to_string().parse().unwrap());
                headers.insert("Lambda-Runtime-Invoked-Function-Arn", FUNCTION_ARN.parse().unwrap());
                headers.insert("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000".parse().unwrap());
                response
            });
        let complete = warp::post()
            .and(warp::path!("2018-06-01" / "runtime" / "invocation" / String / String))
            .and(warp::header::headers_cloned())
            .and(warp::body::bytes())
            .and(with_state.clone())
            .map(|request_id: String, kind: String, headers: HeaderMap, body: Bytes, state: Arc<State>| {
                let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let completion = match kind.as_str() {
                    "response" => Completion::Response(body),
                    "error" => Completion::Error {
                        error_type: headers
                            .get("Lambda-Runtime-Function-Error-Type")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned(),
                        body,
                    },
                    _ => return StatusCode::NOT_FOUND.into_response(),
                };
                let Some((event, reply)) = state.running.lock().unwrap().remove(&request_id) else {
                    return warp::reply::with_status(
                        warp::reply::json(
                            &json!({"errorMessage": "unknown request id", "errorType": "InvalidRequestID"}),
                        ),
                        StatusCode::BAD_REQUEST,
                    )
                    .into_response();
                };
                state.records.lock().unwrap().push(Record { request_id, event, completion: completion.clone() });
                let _ = reply.send(completion);
                warp::reply::with_status(warp::reply::json(&json!({"status": "OK"})), StatusCode::ACCEPTED)
                    .into_response()
            });
        let init_error = warp::post()
            .and(warp::path!("2018-06-01" / "runtime" / "init" / "error"))
            .and(warp::header::headers_cloned())
            .and(warp::body::bytes())
            .and(with_state)
            .map(|headers: HeaderMap, body: Bytes, state: Arc<State>| {
                let error_type = headers
                    .get("Lambda-Runtime-Function-Error-Type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                state.init_errors.lock().unwrap().push((error_type, body));
                warp::reply::with_status(warp::reply::json(&json!({"status": "OK"})), StatusCode::ACCEPTED)
                    .into_response()
            });

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(warp::serve(next.or(complete).unify().or(init_error).unify()).incoming(listener).run());
        RuntimeApi { addr, state }
    }

    /// The value of `AWS_LAMBDA_RUNTIME_API` for a function polling this server.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// The environment Lambda gives a function, pointing at this Runtime API.
    pub fn lambda_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_LAMBDA_RUNTIME_API", self.address()),
            ("AWS_LAMBDA_FUNCTION_NAME", "keyturn-echo".to_owned()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".to_owned()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        ]
    }

    /// Queues an invocation with `event` and waits for the function to complete it (or `limit` to pass).
    pub async fn invoke(&self, event: Value, limit: Duration) -> Option<Completion> {
        let request_id = format!("req-{}", self.state.next_id.fetch_add(1, Ordering::SeqCst));
        let (reply, completed) = oneshot::channel();
        self.state.queue.send(Pending { request_id, event, reply }).ok()?;
        tokio::time::timeout(limit, completed).await.ok()?.ok()
    }

    /// Every completed invocation so far, in completion order.
    pub fn records(&self) -> Vec<Record> {
        self.state.records.lock().unwrap().clone()
    }

    /// The function URL responses so far (completed invocations that answered an HTTP request).
    pub fn http_responses(&self) -> Vec<HttpResponse> {
        self.records()
            .into_iter()
            .filter_map(|record| match record.completion {
                Completion::Response(body) => serde_json::from_value(body).ok(),
                Completion::Error { .. } => None,
            })
            .collect()
    }

    pub fn init_errors(&self) -> Vec<(String, Value)> {
        self.state.init_errors.lock().unwrap().clone()
    }

    /// How many `GET .../next` requests arrived (a function that never polls is not running on Lambda).
    pub fn polls(&self) -> usize {
        self.state.polls.load(Ordering::SeqCst)
    }
}

/// A function URL: HTTP in, payload-2.0 event to the Runtime API, the function's answer back out. As AWS's,
/// it answers `502` when the invocation fails and base64-encodes bodies whose content type is not text.
pub struct FunctionUrl {
    addr: SocketAddr,
}

/// How long the function URL waits for the function (Event Grid itself waits 30 s).
const FUNCTION_URL_TIMEOUT: Duration = Duration::from_secs(30);

impl FunctionUrl {
    pub async fn start(runtime: RuntimeApi) -> Self {
        let requests = Arc::new(AtomicU64::new(1));
        let route = warp::method()
            .and(warp::path::full())
            .and(warp::query::raw().or(warp::any().map(String::new)).unify())
            .and(warp::header::headers_cloned())
            .and(warp::body::bytes())
            .then(move |method: Method, path: warp::path::FullPath, query: String, headers: HeaderMap, body: Bytes| {
                let runtime = runtime.clone();
                let id = requests.fetch_add(1, Ordering::SeqCst);
                async move {
                    let event = http_event(id, &method, path.as_str(), &query, &headers, &body);
                    match runtime.invoke(event, FUNCTION_URL_TIMEOUT).await {
                        Some(Completion::Response(answer)) => http_answer(answer),
                        Some(Completion::Error { .. }) => warp::reply::with_status(
                            warp::reply::json(&json!({"Message": "Internal Server Error"})),
                            StatusCode::BAD_GATEWAY,
                        )
                        .into_response(),
                        None => StatusCode::GATEWAY_TIMEOUT.into_response(),
                    }
                }
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(warp::serve(route).incoming(listener).run());
        FunctionUrl { addr }
    }

    pub fn url(&self) -> url::Url {
        url::Url::parse(&format!("http://{}/", self.addr)).unwrap()
    }
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
    let text = content_type.starts_with("text/")
        || ["application/json", "application/xml", "application/javascript"]
            .iter()
            .any(|t| content_type.starts_with(t));
    let mut event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": joined,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "local",
            "domainName": "local.lambda-url.eu-west-1.on.aws",
            "http": {"method": method.as_str(), "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": ""},
            "requestId": format!("url-{id}"),
            "routeKey": "$default",
            "stage": "$default",
            "timeEpoch": SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
        },
        "isBase64Encoded": !text && !body.is_empty()
    });
    if !body.is_empty() {
        event["body"] = if text { json!(String::from_utf8_lossy(body)) } else { json!(STANDARD.encode(body)) };
    }
    event
}

fn http_answer(answer: Value) -> warp::reply::Response {
    let Ok(answer) = serde_json::from_value::<HttpResponse>(answer) else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let body = if answer.is_base64_encoded { STANDARD.decode(answer.body).unwrap() } else { answer.body.into_bytes() };
    let mut response = warp::reply::Response::new(body.into());
    *response.status_mut() = StatusCode::from_u16(answer.status_code).unwrap();
    for (name, value) in answer.headers {
        response
            .headers_mut()
            .insert(warp::http::HeaderName::try_from(name).unwrap(), warp::http::HeaderValue::try_from(value).unwrap());
    }
    response
}
