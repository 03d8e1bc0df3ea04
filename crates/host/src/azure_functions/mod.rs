//! The Azure Functions custom-handler adapter: an HTTP server on `127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT`
//! that answers the Functions host (see `reference/functions-custom-handler.md`).
//!
//! | request | answer |
//! |---|---|
//! | `GET /` | `200` readiness (the host polls it until any answer arrives) |
//! | `POST /<function>` with `{"Data": {"eventGridEvent": ...}}` | `200` `{"Outputs":{},"Logs":["done: ..."],"ReturnValue":{"status":"done",...}}` (the typed outcome) when the event is acknowledged, `500` when it must come back |
//! | the envelope is not JSON, has no `Data` or no `eventGridEvent` | `400`: the deployment does not match (the real host never sends that) |
//! | a body over [`BODY_LIMIT`] | `413` |
//! | any other route | `404` naming what this handler serves |
//!
//! A failed invocation's body is ignored by the host, so its reason also goes to stderr, which the host records
//! as an error. Every non-2xx fails the invocation and Event Grid delivers the event again: nothing is lost.

pub mod wire;

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use futures::{Stream, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use warp::Filter;
use warp::http::{HeaderMap, Method, StatusCode};
use warp::reply::{Reply, Response};

use crate::invoke::{Invoker, Trigger, Verdict};
use crate::shutdown;
use wire::{INVOCATION_ID_HEADER, InvocationRequest, InvocationResponse};

/// The largest request body accepted: Event Grid events are at most 1 MB, so anything near this is not an
/// invocation from a real host.
pub const BODY_LIMIT: usize = 4 * 1024 * 1024;

/// How much of an oversized body is read (and thrown away) before answering `413`: answering while the client
/// is still sending makes many clients see a reset connection instead of the answer. Past this, the connection
/// is simply dropped.
const OVERSIZE_DRAIN_LIMIT: usize = 64 * 1024 * 1024;

/// How long a stop waits for running invocations before exiting anyway. Event Grid redelivers whatever was
/// cut short.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the adapter until SIGTERM/SIGINT: binds `127.0.0.1:port`, serves, drains, and returns the exit code
/// (never 0, see [`crate::shutdown`]).
pub async fn run(port: u16, invoker: Invoker) -> ExitCode {
    // Signal handlers first: a stop asked for while binding must not be lost.
    let stop = shutdown::signal();
    let listener = match TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await {
        Ok(listener) => listener,
        Err(error) => {
            let message = format!("cannot listen on 127.0.0.1:{port}: {error}");
            tracing::error!(function = invoker.function(), port, %error, "cannot listen");
            write_stderr(invoker.function(), None, &message);
            return ExitCode::from(shutdown::EXIT_SERVER_FAILED);
        }
    };
    tracing::info!(function = invoker.function(), port, configured = invoker.not_configured().is_none(), "listening");
    match serve(listener, invoker, stop, DRAIN_TIMEOUT).await {
        Ok(stopped) => {
            let code = stopped.cause.exit_code();
            if stopped.abandoned == 0 {
                tracing::info!(cause = ?stopped.cause, exit_code = code, "stopped");
            } else {
                tracing::error!(
                    cause = ?stopped.cause,
                    exit_code = code,
                    abandoned = stopped.abandoned,
                    "stopped before every invocation finished; Event Grid will redeliver those events"
                );
            }
            ExitCode::from(code)
        }
        Err(error) => {
            tracing::error!(%error, "server failed");
            ExitCode::from(shutdown::EXIT_SERVER_FAILED)
        }
    }
}

/// How [`serve`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped<T> {
    /// What the shutdown future resolved to.
    pub cause: T,
    /// Invocations still running when the drain timeout ran out (0 after a clean drain).
    pub abandoned: usize,
}

/// The server stopped without its shutdown future having resolved.
#[derive(Debug, thiserror::Error)]
#[error("the HTTP server stopped without being asked to: {0}")]
pub struct ServeError(String);

/// Serves [`routes`] on `listener` until `shutdown` resolves, then stops accepting connections and waits up to
/// `drain_timeout` for running invocations to finish.
///
/// I/O and the stop signal are passed in, so tests bind port 0 and stop the server when they choose.
pub async fn serve<S>(
    listener: TcpListener,
    invoker: Invoker,
    shutdown: S,
    drain_timeout: Duration,
) -> Result<Stopped<S::Output>, ServeError>
where
    S: Future + Send + 'static,
    S::Output: Send + 'static,
{
    let (stop_sender, stop_receiver) = tokio::sync::oneshot::channel();
    let graceful = async move {
        // The receiver lives until this resolves unless `serve` itself was dropped: nothing to report then.
        let _ = stop_sender.send(shutdown.await);
    };
    let server = warp::serve(routes(invoker.clone())).incoming(listener).graceful(graceful).run();
    let server = tokio::spawn(server);

    let cause = match stop_receiver.await {
        Ok(cause) => cause,
        // The sender went away unsent: the server task ended, which it only does after the signal.
        Err(_) => {
            let reason = match server.await {
                Err(join_error) if join_error.is_panic() => "it panicked".to_owned(),
                Err(join_error) => join_error.to_string(),
                Ok(()) => "it returned".to_owned(),
            };
            return Err(ServeError(reason));
        }
    };
    tracing::info!(
        function = invoker.function(),
        in_flight = invoker.in_flight(),
        "stop requested; draining running invocations"
    );
    let server_abort = server.abort_handle();
    let drained = tokio::time::timeout(drain_timeout, async {
        // Connections first (their invocations answer), then invocations whose caller hung up.
        let _ = server.await;
        invoker.idle().await;
    })
    .await;
    if drained.is_err() {
        server_abort.abort();
    }
    Ok(Stopped { cause, abandoned: invoker.in_flight() })
}

/// The adapter's routes, without a socket: serve them with [`serve`], or test them with `warp::test`. They
/// never reject: every request gets an answer, unknown routes a `404` naming what this handler serves.
pub fn routes(
    invoker: Invoker,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static {
    let function = invoker.function();
    let configured = invoker.not_configured().is_none();

    let readiness = warp::get()
        .and(warp::path::end())
        .map(move || warp::reply::json(&json!({"function": function, "configured": configured})).into_response());

    let invocation = warp::post()
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(move |name: String, headers: HeaderMap, body| {
            let invoker = invoker.clone();
            async move { invocation(&invoker, &name, &headers, body).await }
        });

    let fallback = warp::method().and(warp::path::full()).map(move |method: Method, path: warp::path::FullPath| {
        let message = format!(
            "no route for {method} {path}; this handler answers GET / (readiness) and POST /{function}",
            path = path.as_str()
        );
        tracing::warn!(function, %method, path = path.as_str(), "no such route");
        error_reply(StatusCode::NOT_FOUND, &message)
    });

    readiness.or(invocation).unify().or(fallback).unify()
}

/// One `POST /<name>`: check the route, unwrap the envelope, invoke, map the verdict to the wire.
async fn invocation<B, C>(invoker: &Invoker, name: &str, headers: &HeaderMap, body: B) -> Response
where
    B: Stream<Item = Result<C, warp::Error>>,
    C: Buf,
{
    let function = invoker.function();
    let invocation_id = invocation_id(headers);

    // Function names are case-insensitive in the Functions host.
    if !name.eq_ignore_ascii_case(function) {
        let message = format!("no function named '{name}' here; this handler serves '{function}'");
        tracing::warn!(invocation_id, function, route = name, "no such function");
        write_stderr(function, Some(&invocation_id), &message);
        return error_reply(StatusCode::NOT_FOUND, &message);
    }

    let event = match read_body(body).await.and_then(|body| envelope_input(&body, invoker.trigger())) {
        Ok(event) => event,
        Err(error) => {
            let status = error.status();
            tracing::warn!(
                invocation_id,
                function,
                status = status.as_u16(),
                %error,
                "invocation envelope refused"
            );
            write_stderr(function, Some(&invocation_id), &error.to_string());
            return error_reply(status, &error.to_string());
        }
    };

    match invoker.invoke(&invocation_id, event).await {
        Verdict::Acknowledge(outcome) => {
            let response = InvocationResponse::for_outcome(&outcome);
            warp::reply::json(&response).into_response()
        }
        Verdict::Retry(failure) => {
            let message = failure.to_string();
            write_stderr(function, Some(&invocation_id), &message);
            error_reply(StatusCode::INTERNAL_SERVER_ERROR, &message)
        }
    }
}

/// The host's invocation id, or a process-local one so that log lines still group (the real host always
/// sends the header; hand-made requests may not).
fn invocation_id(headers: &HeaderMap) -> String {
    static LOCAL: AtomicU64 = AtomicU64::new(1);
    headers
        .get(INVOCATION_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|value| !value.is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| format!("local-{}", LOCAL.fetch_add(1, Ordering::Relaxed)))
}

/// Why a request is not an invocation this adapter can run: always a deployment mismatch, never the event's
/// fault (the event itself is judged by [`Invoker::invoke`]).
#[derive(Debug, thiserror::Error)]
enum EnvelopeError {
    #[error("the request body is larger than the {} MiB limit", BODY_LIMIT / (1024 * 1024))]
    TooLarge,
    #[error("the request body could not be read: {0}")]
    Unreadable(String),
    #[error("the request body is not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("the request body is not a custom-handler invocation ({{\"Data\": {{...}}, \"Metadata\": {{...}}}}): {0}")]
    NotAnInvocation(String),
    #[error(
        "\"Data\" has no \"{binding}\" binding (it has: {found}); the function's {binding_type} binding must be named \"{binding}\""
    )]
    MissingBinding { binding: &'static str, binding_type: &'static str, found: BindingNames },
    #[error("\"Data.{binding}\" is a string but not JSON: {source}")]
    BindingNotJson { binding: &'static str, source: serde_json::Error },
}

impl EnvelopeError {
    fn status(&self) -> StatusCode {
        match self {
            EnvelopeError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// The binding names present under `Data`, for the "missing binding" message.
#[derive(Debug)]
struct BindingNames(Vec<String>);

impl fmt::Display for BindingNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        for (index, name) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(", ")?;
            }
            write!(f, "\"{name}\"")?;
        }
        Ok(())
    }
}

/// Reads the body up to [`BODY_LIMIT`], whatever `Content-Length` claims (chunked bodies have none).
async fn read_body<B, C>(body: B) -> Result<BytesMut, EnvelopeError>
where
    B: Stream<Item = Result<C, warp::Error>>,
    C: Buf,
{
    let mut body = std::pin::pin!(body);
    let mut collected = BytesMut::new();
    let mut seen = 0usize;
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|error| EnvelopeError::Unreadable(error.to_string()))?;
        seen = seen.saturating_add(chunk.remaining());
        if seen > BODY_LIMIT {
            if seen > OVERSIZE_DRAIN_LIMIT {
                break;
            }
            // Keep reading (and dropping) so the client finishes sending and sees the 413.
            chunk.advance(chunk.remaining());
            continue;
        }
        while chunk.has_remaining() {
            let piece = chunk.chunk();
            collected.extend_from_slice(piece);
            let read = piece.len();
            chunk.advance(read);
        }
    }
    if seen > BODY_LIMIT {
        return Err(EnvelopeError::TooLarge);
    }
    Ok(collected)
}

/// Unwraps `Data.<binding>` for the function's trigger (`eventGridEvent`, `timer`): the input as a JSON
/// object, or as a JSON-encoded string.
fn envelope_input(body: &[u8], trigger: Trigger) -> Result<Value, EnvelopeError> {
    let body: Value = serde_json::from_slice(body).map_err(EnvelopeError::NotJson)?;
    // serde would also take a struct from an array (`[data, metadata]`): only an object is an envelope.
    if !body.is_object() {
        return Err(EnvelopeError::NotAnInvocation(format!(
            "expected a JSON object, found {}",
            keyturn_events::json_kind(&body)
        )));
    }
    let mut request: InvocationRequest =
        serde_json::from_value(body).map_err(|error| EnvelopeError::NotAnInvocation(error.to_string()))?;
    let binding = trigger.binding_name();
    match request.data.remove(binding) {
        Some(Value::String(encoded)) => {
            serde_json::from_str(&encoded).map_err(|source| EnvelopeError::BindingNotJson { binding, source })
        }
        Some(input) => Ok(input),
        None => Err(EnvelopeError::MissingBinding {
            binding,
            binding_type: trigger.binding_type(),
            found: BindingNames(request.data.keys().cloned().collect()),
        }),
    }
}

fn error_reply(status: StatusCode, message: &str) -> Response {
    warp::reply::with_status(warp::reply::json(&json!({"error": message})), status).into_response()
}

/// The Functions host records a handler's stderr as errors and ignores a failed invocation's body: the reason
/// for every failed invocation goes here, one plain line.
fn write_stderr(function: &str, invocation_id: Option<&str>, message: &str) {
    let mut stderr = std::io::stderr().lock();
    // A closed stderr must not turn a failed invocation into a crash; there is nowhere else to report it.
    let _ = match invocation_id {
        Some(id) => writeln!(stderr, "{function}: invocation {id} failed: {message}"),
        None => writeln!(stderr, "{function}: {message}"),
    };
}
