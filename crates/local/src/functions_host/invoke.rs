//! One invocation, as the Functions host makes it: `POST /<function>` to the handler with the custom-handler
//! envelope, bounded by `functionTimeout`, failed by any non-2xx answer or by the handler process dying.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keyturn_host::azure_functions::wire::{INVOCATION_ID_HEADER, InvocationRequest, InvocationResponse};
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use super::output::{HandlerOutput, OutputLine, Stream};
use super::worker::WorkerStatus;
use keyturn_app::FunctionDefinition;

/// The host version the stand-in announces; the major version is the one keyturn targets.
pub const HOST_VERSION: &str = "4.0.0-keyturn-local";
/// Invocations kept for [`InvocationLog::records`].
const KEPT_RECORDS: usize = 10_000;
/// How long an invocation that found nobody listening waits for the supervisor to notice the handler died.
const UNREACHABLE_GRACE: Duration = Duration::from_secs(2);
/// How much of a failed answer's body goes into the error.
const BODY_EXCERPT: usize = 512;

/// Why an invocation failed. Every variant makes the delivery answer 500, so Event Grid delivers again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvocationError {
    #[error("the handler is not running: {0}")]
    NotRunning(String),
    #[error("the handler did not become ready within {0:?}")]
    NotReady(Duration),
    #[error("the handler process {pid} exited during the invocation")]
    WorkerExited { pid: u32 },
    #[error("the handler did not answer within the function timeout ({0:?})")]
    Timeout(Duration),
    #[error("cannot connect to the handler: {0}")]
    Unreachable(String),
    #[error("the HTTP call to the handler failed: {0}")]
    Transport(String),
    #[error("the handler answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("the handler answered {status} with a body that is not an invocation response: {reason}")]
    BadResponse { status: u16, reason: String },
    #[error("no timer-triggered function named '{0}' is served here")]
    NoSuchTimer(String),
}

/// What happened to one invocation, kept so tests and `keyturn dev` can show it.
#[derive(Debug, Clone, PartialEq)]
pub struct InvocationRecord {
    pub function: String,
    /// The id sent in `X-Azure-Functions-InvocationId`.
    pub invocation_id: String,
    /// The event's `id`, when it has one.
    pub event_id: Option<String>,
    /// The event's `subject`, when it has one.
    pub subject: Option<String>,
    pub result: Result<InvocationResponse, InvocationError>,
}

/// The invocations made so far, oldest first, bounded.
#[derive(Debug, Clone, Default)]
pub(crate) struct InvocationLog {
    // A std Mutex: held only to push or copy, never across an await.
    records: Arc<Mutex<VecDeque<InvocationRecord>>>,
}

impl InvocationLog {
    pub(crate) fn records(&self) -> Vec<InvocationRecord> {
        self.locked().iter().cloned().collect()
    }

    fn push(&self, record: InvocationRecord) {
        let mut records = self.locked();
        if records.len() == KEPT_RECORDS {
            records.pop_front();
        }
        records.push_back(record);
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, VecDeque<InvocationRecord>> {
        // Poisoned only by a panic while pushing; the records are still whole.
        self.records.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Makes invocations against whichever handler process is running.
#[derive(Debug, Clone)]
pub(crate) struct Invoker {
    pub(crate) client: reqwest::Client,
    pub(crate) status: watch::Receiver<WorkerStatus>,
    pub(crate) output: HandlerOutput,
    /// `None`: unbounded (`functionTimeout: -1`).
    pub(crate) function_timeout: Option<Duration>,
    /// How long an invocation waits for a (re)starting handler to become ready.
    pub(crate) ready_wait: Duration,
    pub(crate) log: InvocationLog,
}

impl Invoker {
    /// Invokes `function` with one event and records the result.
    pub(crate) async fn invoke(
        &self,
        function: &FunctionDefinition,
        event: Value,
    ) -> Result<InvocationResponse, InvocationError> {
        let invocation_id = uuid::Uuid::new_v4().to_string();
        let text = |key: &str| event.get(key).and_then(Value::as_str).map(str::to_owned);
        let (event_id, subject) = (text("id"), text("subject"));
        let result = self.call(function, event, &invocation_id).await;
        match &result {
            Ok(response) => {
                tracing::info!(function = %function.name, %invocation_id, event_id, "invocation succeeded");
                let pid = self.current_pid();
                for line in &response.logs {
                    self.output.push(OutputLine { stream: Stream::InvocationLog, pid, text: line.clone() });
                }
            }
            Err(error) => {
                tracing::warn!(function = %function.name, %invocation_id, event_id, %error, "invocation failed");
            }
        }
        self.log.push(InvocationRecord {
            function: function.name.clone(),
            invocation_id,
            event_id,
            subject,
            result: result.clone(),
        });
        result
    }

    async fn call(
        &self,
        function: &FunctionDefinition,
        event: Value,
        invocation_id: &str,
    ) -> Result<InvocationResponse, InvocationError> {
        let body = request_body(function, event);
        let worker = self.running_worker().await?;
        match self.attempt(function, body.clone(), invocation_id, worker).await {
            Err(InvocationError::Unreachable(reason)) => {
                // Nothing listens where the handler was: it died and its supervisor has not seen the exit yet.
                // The request never reached a handler, so sending it to the restarted one duplicates nothing.
                let (_, _, generation) = worker;
                let mut status = self.status.clone();
                let moved_on = tokio::time::timeout(
                    UNREACHABLE_GRACE,
                    status.wait_for(|status| !is_generation(status, generation)),
                )
                .await
                .is_ok_and(|changed| changed.is_ok());
                if !moved_on {
                    return Err(InvocationError::Unreachable(reason));
                }
                let worker = self.running_worker().await?;
                self.attempt(function, body, invocation_id, worker).await
            }
            result => result,
        }
    }

    /// One HTTP call to one handler process.
    async fn attempt(
        &self,
        function: &FunctionDefinition,
        body: Vec<u8>,
        invocation_id: &str,
        (pid, port, generation): (u32, u16, u64),
    ) -> Result<InvocationResponse, InvocationError> {
        let request = self
            .client
            .post(format!("http://127.0.0.1:{port}/{}", function.name))
            .header(http::header::CONTENT_TYPE, "application/json; charset=utf-8")
            .header(http::header::USER_AGENT, format!("Azure-Functions-Host/{HOST_VERSION}"))
            .header(INVOCATION_ID_HEADER, invocation_id)
            .header("X-Azure-Functions-HostVersion", HOST_VERSION)
            .header("traceparent", traceparent())
            .body(body);
        let call = async {
            let response = request.send().await.map_err(transport)?;
            let status = response.status();
            let body = response.bytes().await.map_err(transport)?;
            Ok::<_, InvocationError>((status, body))
        };
        let bounded = async {
            match self.function_timeout {
                Some(limit) => tokio::time::timeout(limit, call).await.unwrap_or(Err(InvocationError::Timeout(limit))),
                None => call.await,
            }
        };
        let mut status = self.status.clone();
        let (status_code, body) = tokio::select! {
            answered = bounded => answered?,
            // The real host fails in-flight invocations when the process dies, whatever the socket does.
            _ = status.wait_for(|status| !is_generation(status, generation)) => {
                return Err(InvocationError::WorkerExited { pid });
            }
        };
        if !status_code.is_success() {
            return Err(InvocationError::Status { status: status_code.as_u16(), body: excerpt(&body) });
        }
        serde_json::from_slice(&body).map_err(|error| InvocationError::BadResponse {
            status: status_code.as_u16(),
            reason: if body.is_empty() { "the body is empty".to_owned() } else { error.to_string() },
        })
    }

    /// Waits until a handler process is ready (it may be restarting) and returns its pid, port and generation.
    async fn running_worker(&self) -> Result<(u32, u16, u64), InvocationError> {
        let mut status = self.status.clone();
        let settled =
            tokio::time::timeout(self.ready_wait, status.wait_for(|status| *status != WorkerStatus::Starting))
                .await
                .map_err(|_| InvocationError::NotReady(self.ready_wait))?
                .map(|status| status.clone())
                .map_err(|_| InvocationError::NotRunning("the host is shutting down".to_owned()))?;
        match settled {
            WorkerStatus::Running { pid, port, generation } => Ok((pid, port, generation)),
            WorkerStatus::Exited => Err(InvocationError::NotRunning(
                "it exited with code 0 and, like on the real host, is not restarted; restart the host".to_owned(),
            )),
            WorkerStatus::Failed(reason) => Err(InvocationError::NotRunning(reason)),
            WorkerStatus::ShutDown => Err(InvocationError::NotRunning("the host was shut down".to_owned())),
            WorkerStatus::Starting => Err(InvocationError::NotReady(self.ready_wait)),
        }
    }

    fn current_pid(&self) -> u32 {
        match *self.status.borrow() {
            WorkerStatus::Running { pid, .. } => pid,
            _ => 0,
        }
    }
}

fn is_generation(status: &WorkerStatus, generation: u64) -> bool {
    matches!(status, WorkerStatus::Running { generation: running, .. } if *running == generation)
}

/// The custom-handler envelope: the event under the function's binding name, and the trigger metadata the
/// host adds (handlers must not rely on it, but it is there on the real host).
fn request_body(function: &FunctionDefinition, event: Value) -> Vec<u8> {
    let metadata = json!({
        "data": event.get("data").cloned().unwrap_or(Value::Null),
        "sys": {
            "MethodName": function.name,
            "UtcNow": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "RandGuid": uuid::Uuid::new_v4().to_string(),
        },
    });
    let mut data = Map::new();
    data.insert(function.binding.clone(), event);
    let request = InvocationRequest { data, metadata };
    // Serializing a tree of `serde_json::Value`s cannot fail: every key is a string.
    serde_json::to_vec(&request).unwrap_or_default()
}

/// A W3C trace context header, as the real host sends one.
fn traceparent() -> String {
    let trace = uuid::Uuid::new_v4().simple().to_string();
    let span = &uuid::Uuid::new_v4().simple().to_string()[..16];
    format!("00-{trace}-{span}-01")
}

fn transport(error: reqwest::Error) -> InvocationError {
    let connect = error.is_connect();
    // The error chain holds the useful part ("connection refused", "connection reset").
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    if connect { InvocationError::Unreachable(message) } else { InvocationError::Transport(message) }
}

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".to_owned();
    }
    match text.char_indices().nth(BODY_EXCERPT) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn the_envelope_carries_the_event_under_the_binding_name() {
        let function = FunctionDefinition {
            name: "near-expiry".into(),
            binding: "myEvent".into(),
            trigger: "eventGridTrigger".into(),
            schedule: None,
            path: PathBuf::from("near-expiry/function.json"),
        };
        let event = json!({"id": "1", "data": {"VaultName": "kv"}});
        let body: Value = serde_json::from_slice(&request_body(&function, event.clone())).unwrap();
        assert_eq!(body["Data"]["myEvent"], event);
        assert_eq!(body["Metadata"]["data"], json!({"VaultName": "kv"}));
        assert_eq!(body["Metadata"]["sys"]["MethodName"], "near-expiry");
        let decoded: InvocationRequest = serde_json::from_value(body).unwrap();
        assert_eq!(decoded.data.len(), 1);
    }

    #[test]
    fn traceparent_is_well_formed() {
        let header = traceparent();
        let parts: Vec<&str> = header.split('-').collect();
        assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), [2, 32, 16, 2]);
        assert!(parts.iter().all(|p| p.bytes().all(|b| b.is_ascii_hexdigit())));
    }

    #[test]
    fn long_bodies_are_cut_and_empty_ones_named() {
        assert_eq!(excerpt(b""), "(empty body)");
        assert_eq!(excerpt(b" oops \n"), "oops");
        let long = "é".repeat(BODY_EXCERPT + 10);
        assert_eq!(excerpt(long.as_bytes()).chars().count(), BODY_EXCERPT + 3);
    }
}
