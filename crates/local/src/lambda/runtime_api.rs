//! The Lambda Runtime API of one function, as a Lambda execution environment serves it to the function's
//! process (AWS's documented protocol, runtimes-api.html), on loopback:
//!
//! - `GET /2018-06-01/runtime/invocation/next`: long-polls for the next invocation and answers its event with
//!   `Lambda-Runtime-Aws-Request-Id`, `Lambda-Runtime-Deadline-Ms`, `Lambda-Runtime-Invoked-Function-Arn` and
//!   `Lambda-Runtime-Trace-Id`.
//! - `POST /2018-06-01/runtime/invocation/{id}/response` and `.../{id}/error`: complete it (`202`); an unknown
//!   id is `400 InvalidRequestID`.
//! - `POST /2018-06-01/runtime/init/error`: the process reports why it cannot start (`202`); invocations
//!   waiting for it fail with that error, as on Lambda.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use keyturn_host::aws_lambda::function_url::HttpResponse;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use warp::Filter;
use warp::http::{HeaderMap, HeaderValue, StatusCode};
use warp::reply::Reply;

use super::{FunctionConfig, LambdaError};

/// The header carrying an error's class, on `.../error` and `/runtime/init/error`.
const ERROR_TYPE_HEADER: &str = "Lambda-Runtime-Function-Error-Type";
/// The `errorType` Lambda gives an invocation whose process exited under it or before it started.
pub const EXIT_ERROR: &str = "Runtime.ExitError";

/// How an invocation ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Completion {
    /// `POST .../response` with this JSON body.
    Response(Value),
    /// `POST .../error` with its `Lambda-Runtime-Function-Error-Type` header and body, or the error Lambda
    /// itself records (`Runtime.ExitError` when the process is gone, the init error when it could not start).
    Error { error_type: String, body: Value },
}

/// One invocation and how it ended, in the order they completed.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub request_id: String,
    pub event: Value,
    pub completion: Completion,
    /// From the moment the function took the invocation (its `GET .../next` answered) to its completion:
    /// Lambda's billed `Duration`. Zero for an invocation failed before the function took it.
    pub duration: Duration,
}

/// What a process reported on `/runtime/init/error`.
#[derive(Debug, Clone, PartialEq)]
pub struct InitError {
    pub error_type: String,
    pub body: Value,
}

/// An invocation did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvokeError {
    #[error("the function did not complete the invocation within its timeout of {0:?}")]
    TimedOut(Duration),
}

struct Queued {
    request_id: String,
    event: Value,
    reply: oneshot::Sender<Completion>,
}

struct Running {
    event: Value,
    reply: oneshot::Sender<Completion>,
    taken_at: Instant,
}

struct State {
    function: Arc<FunctionConfig>,
    queue: mpsc::UnboundedSender<Queued>,
    // A tokio Mutex: held across the wait for the next invocation, so two polls never take the same one.
    incoming: tokio::sync::Mutex<mpsc::UnboundedReceiver<Queued>>,
    // std Mutexes below: held for an insert, a removal or a copy, never across an await.
    running: Mutex<HashMap<String, Running>>,
    invocations: Mutex<Vec<Invocation>>,
    init_errors: Mutex<Vec<InitError>>,
    /// Why no process serves this function now (it exited), if so: new invocations fail at once.
    gone: Mutex<Option<Completion>>,
    first_poll: Mutex<Option<Instant>>,
    polls: watch::Sender<usize>,
    next_id: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind, still consistent enough to read.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The Runtime API of one local Lambda function. Cloning it shares the same function.
#[derive(Clone)]
pub struct RuntimeApi {
    addr: SocketAddr,
    state: Arc<State>,
}

impl std::fmt::Debug for RuntimeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeApi").field("addr", &self.addr).field("function", &self.state.function.name).finish()
    }
}

impl RuntimeApi {
    /// Serves the Runtime API for `function` on an ephemeral loopback port; the task ends when aborted.
    pub(crate) async fn start(function: Arc<FunctionConfig>) -> Result<(Self, JoinHandle<()>), LambdaError> {
        let (queue, incoming) = mpsc::unbounded_channel();
        let state = Arc::new(State {
            function,
            queue,
            incoming: tokio::sync::Mutex::new(incoming),
            running: Mutex::default(),
            invocations: Mutex::default(),
            init_errors: Mutex::default(),
            gone: Mutex::default(),
            first_poll: Mutex::default(),
            polls: watch::channel(0).0,
            next_id: AtomicU64::new(1),
        });
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(|source| LambdaError::Bind { what: "Runtime API", source })?;
        let addr = listener.local_addr().map_err(|source| LambdaError::Bind { what: "Runtime API", source })?;
        let task = tokio::spawn(warp::serve(routes(Arc::clone(&state))).incoming(listener).run());
        Ok((RuntimeApi { addr, state }, task))
    }

    /// Where it listens: the value of `AWS_LAMBDA_RUNTIME_API` (`127.0.0.1:<port>`, no scheme).
    pub fn address(&self) -> SocketAddr {
        self.addr
    }

    /// Queues an invocation with `event` and waits for the function to complete it, for at most the function's
    /// timeout. When no process serves the function (it exited), it fails at once with `Runtime.ExitError`.
    pub async fn invoke(&self, event: Value) -> Result<Completion, InvokeError> {
        let timeout = self.state.function.timeout;
        let request_id = uuid::Uuid::new_v4().to_string();
        if let Some(gone) = lock(&self.state.gone).clone() {
            self.state.record(Invocation { request_id, event, completion: gone.clone(), duration: Duration::ZERO });
            return Ok(gone);
        }
        let (reply, completed) = oneshot::channel();
        // The receiver lives in `state` as long as the sender: sending cannot fail.
        let _ = self.state.queue.send(Queued { request_id, event, reply });
        match tokio::time::timeout(timeout, completed).await {
            Ok(Ok(completion)) => Ok(completion),
            // A dropped reply only happens when the API itself stops; to the caller that is a timeout too.
            Ok(Err(_)) | Err(_) => Err(InvokeError::TimedOut(timeout)),
        }
    }

    /// Every completed invocation so far, in completion order.
    pub fn invocations(&self) -> Vec<Invocation> {
        lock(&self.state.invocations).clone()
    }

    /// The function URL answers so far: the completed invocations whose response is an HTTP response.
    pub fn http_responses(&self) -> Vec<HttpResponse> {
        self.invocations()
            .into_iter()
            .filter_map(|invocation| match invocation.completion {
                Completion::Response(body) => serde_json::from_value(body).ok(),
                Completion::Error { .. } => None,
            })
            .collect()
    }

    /// Every `/runtime/init/error` report so far.
    pub fn init_errors(&self) -> Vec<InitError> {
        lock(&self.state.init_errors).clone()
    }

    /// How many `GET .../next` requests arrived (a process that never polls is not running on Lambda).
    pub fn polls(&self) -> usize {
        *self.state.polls.borrow()
    }

    /// When the first `GET .../next` arrived: the end of the first process's init phase.
    pub fn first_poll(&self) -> Option<Instant> {
        *lock(&self.state.first_poll)
    }

    /// Waits until more than `seen` polls have arrived. Bound it with a timeout.
    pub(crate) async fn polled_after(&self, seen: usize) {
        let mut polls = self.state.polls.subscribe();
        // The sender lives in `state`, which `self` holds: the wait cannot fail.
        let _ = polls.wait_for(|polls| *polls > seen).await;
    }

    /// A process serves the function again (a new one was started): invocations queue for it.
    pub(crate) fn serving(&self) {
        *lock(&self.state.gone) = None;
    }

    /// The process exited: what it was running and what waits for it fail, as Lambda fails them, and so does
    /// every later invocation until [`RuntimeApi::serving`]. `reason` is e.g. `exit status 78`.
    pub(crate) fn process_exited(&self, reason: &str) {
        let error = |request_id: &str| Completion::Error {
            error_type: EXIT_ERROR.to_owned(),
            body: json!({
                "errorType": EXIT_ERROR,
                "errorMessage": format!("RequestId: {request_id} Error: Runtime exited with error: {reason}"),
            }),
        };
        *lock(&self.state.gone) = Some(error("none"));
        let running: Vec<(String, Running)> = lock(&self.state.running).drain().collect();
        for (request_id, running) in running {
            let completion = error(&request_id);
            self.state.complete(request_id, running.event, completion, running.taken_at.elapsed(), running.reply);
        }
        self.state.fail_queued(|request_id| error(request_id));
    }
}

impl State {
    /// Fails every queued invocation with what `error` says. A poll in progress holds the queue: a process
    /// is then waiting for work, and the queue is empty.
    fn fail_queued(&self, error: impl Fn(&str) -> Completion) {
        let Ok(mut incoming) = self.incoming.try_lock() else { return };
        while let Ok(Queued { request_id, event, reply }) = incoming.try_recv() {
            let completion = error(&request_id);
            self.complete(request_id, event, completion, Duration::ZERO, reply);
        }
    }

    fn complete(
        &self,
        request_id: String,
        event: Value,
        completion: Completion,
        duration: Duration,
        reply: oneshot::Sender<Completion>,
    ) {
        self.record(Invocation { request_id, event, completion: completion.clone(), duration });
        // The invoker may have given up waiting (timeout): nobody to tell then.
        let _ = reply.send(completion);
    }

    fn record(&self, invocation: Invocation) {
        lock(&self.invocations).push(invocation);
    }
}

fn routes(
    state: Arc<State>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible> + Clone {
    let with_state = warp::any().map(move || Arc::clone(&state));
    let next = warp::get()
        .and(warp::path!("2018-06-01" / "runtime" / "invocation" / "next"))
        .and(with_state.clone())
        .then(next);
    let complete = warp::post()
        .and(warp::path!("2018-06-01" / "runtime" / "invocation" / String / String))
        .and(warp::header::headers_cloned())
        .and(warp::body::bytes())
        .and(with_state.clone())
        .map(complete);
    let init_error = warp::post()
        .and(warp::path!("2018-06-01" / "runtime" / "init" / "error"))
        .and(warp::header::headers_cloned())
        .and(warp::body::bytes())
        .and(with_state)
        .map(init_error);
    next.or(complete)
        .unify()
        .or(init_error)
        .unify()
        .recover(|_| async { Ok::<_, std::convert::Infallible>(StatusCode::NOT_FOUND.into_response()) })
        .unify()
}

async fn next(state: Arc<State>) -> warp::reply::Response {
    lock(&state.first_poll).get_or_insert_with(Instant::now);
    state.polls.send_modify(|polls| *polls += 1);
    let queued = state.incoming.lock().await.recv().await;
    let Some(Queued { request_id, event, reply }) = queued else {
        // The sender lives in `state`: the queue never closes while this runs.
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let function = &state.function;
    let deadline = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default() + function.timeout;
    let trace =
        format!("Root=1-{:08x}-{:024x};Sampled=0", deadline.as_secs(), state.next_id.fetch_add(1, Ordering::Relaxed));
    lock(&state.running).insert(request_id.clone(), Running { event: event.clone(), reply, taken_at: Instant::now() });
    let mut response = warp::reply::json(&event).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        ("Lambda-Runtime-Aws-Request-Id", request_id),
        ("Lambda-Runtime-Deadline-Ms", deadline.as_millis().to_string()),
        ("Lambda-Runtime-Invoked-Function-Arn", function.arn()),
        ("Lambda-Runtime-Trace-Id", trace),
    ] {
        // A uuid, digits, an ARN of a function name Lambda accepts, hex: all valid header values.
        if let Ok(value) = HeaderValue::try_from(value) {
            headers.insert(name, value);
        }
    }
    response
}

fn complete(
    request_id: String,
    kind: String,
    headers: HeaderMap,
    body: Bytes,
    state: Arc<State>,
) -> warp::reply::Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let completion = match kind.as_str() {
        "response" => Completion::Response(body),
        "error" => Completion::Error { error_type: error_type(&headers), body },
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let Some(running) = lock(&state.running).remove(&request_id) else {
        let answer =
            json!({"errorMessage": format!("unknown request id {request_id}"), "errorType": "InvalidRequestID"});
        return warp::reply::with_status(warp::reply::json(&answer), StatusCode::BAD_REQUEST).into_response();
    };
    state.complete(request_id, running.event, completion, running.taken_at.elapsed(), running.reply);
    accepted()
}

fn init_error(headers: HeaderMap, body: Bytes, state: Arc<State>) -> warp::reply::Response {
    let error_type = error_type(&headers);
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    tracing::warn!(function = %state.function.name, %error_type, %body, "the function reported an init error");
    lock(&state.init_errors).push(InitError { error_type: error_type.clone(), body: body.clone() });
    // Lambda fails the invocation that started this environment with the reported error.
    state.fail_queued(|_| Completion::Error { error_type: error_type.clone(), body: body.clone() });
    accepted()
}

fn error_type(headers: &HeaderMap) -> String {
    headers.get(ERROR_TYPE_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

fn accepted() -> warp::reply::Response {
    warp::reply::with_status(warp::reply::json(&json!({"status": "OK"})), StatusCode::ACCEPTED).into_response()
}
