//! Real notification receivers on loopback for the end-to-end tests: [`HttpSink`] answers as keyturn's
//! webhook receiver, Slack and a Teams workflow would (checking the signature and the payload shapes), and
//! [`SmtpSink`] is a real SMTP server (aiosmtpd, run with the interpreter in `KEYTURN_PYTHON`).
//!
//! As everywhere in this crate, a missing prerequisite panics with what to do: a test fails, never skips.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

/// The signing secret of the sink's `/webhook` route.
pub const WEBHOOK_SECRET: &str = "whsec-e2e-0123456789abcdef";

/// One request as the sink received it, with its verdict.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub body: String,
    /// What the sink answered.
    pub status: u16,
    /// `Ok` when the request is what the route's real receiver accepts; else why not (or `down`).
    pub verdict: Result<(), String>,
}

impl Received {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// Accepted as a real receiver would accept it.
    pub fn accepted(&self) -> bool {
        self.verdict.is_ok() && (200..300).contains(&self.status)
    }
}

#[derive(Default)]
struct SinkState {
    down: Mutex<bool>,
    received: Mutex<Vec<Received>>,
}

/// A real HTTP/1.1 server on 127.0.0.1 with three routes: `/webhook` (keyturn's signed JSON),
/// `/services/...` (a Slack incoming webhook), `/teams/...` (a Teams workflow). Stops when dropped.
#[derive(Debug)]
pub struct HttpSink {
    pub addr: SocketAddr,
    state: Arc<SinkState>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for SinkState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkState").finish_non_exhaustive()
    }
}

impl Drop for HttpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl HttpSink {
    /// # Panics
    /// When no loopback port can be bound.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("binding the sink: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("the sink's address: {e}"));
        let state = Arc::new(SinkState::default());
        let served = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = served.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| answer(state.clone(), request));
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Self { addr, state, task }
    }

    /// The three channels as `KEYTURN_NOTIFY` entries, separated by spaces.
    pub fn channels(&self) -> String {
        let base = format!("127.0.0.1:{}", self.addr.port());
        format!(
            "webhook+http://{base}/webhook?secret={WEBHOOK_SECRET} slack+http://{base}/services/T0/B0/slacktoken0001 \
             teams+http://{base}/teams/workflow?sig=teamssig0001"
        )
    }

    /// While down, every request gets a 503 (and is recorded with the verdict `down`).
    pub fn set_down(&self, down: bool) {
        *lock(&self.state.down) = down;
    }

    pub fn received(&self) -> Vec<Received> {
        lock(&self.state.received).clone()
    }

    /// The body of every request received, for the leak scans.
    pub fn bodies(&self) -> Vec<String> {
        self.received().into_iter().map(|r| r.body).collect()
    }

    /// Accepted requests on a route (`/webhook`, `/services/`, `/teams/`).
    pub fn accepted_on(&self, prefix: &str) -> Vec<Received> {
        self.received().into_iter().filter(|r| r.path.starts_with(prefix) && r.accepted()).collect()
    }

    /// Waits until `done` holds for what was received.
    ///
    /// # Panics
    /// When it does not within `timeout`.
    pub async fn wait_until(&self, timeout: Duration, what: &str, done: impl Fn(&[Received]) -> bool) {
        let deadline = tokio::time::Instant::now() + timeout;
        while !done(&self.received()) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the sink did not receive {what} within {timeout:?}; it received: {:#?}",
                self.received()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn answer(state: Arc<SinkState>, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path().to_owned();
    let signature =
        request.headers().get(keyturn_notify::SIGNATURE_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let down = *lock(&state.down);
    let (status, verdict) = if down {
        (StatusCode::SERVICE_UNAVAILABLE, Err("down".to_owned()))
    } else if path.starts_with("/webhook") {
        (StatusCode::NO_CONTENT, check_webhook(signature.as_deref(), &body))
    } else if path.starts_with("/services/") {
        (StatusCode::OK, check_slack(&body))
    } else if path.starts_with("/teams/") {
        (StatusCode::ACCEPTED, check_teams(&body))
    } else {
        (StatusCode::NOT_FOUND, Err(format!("no route for {path}")))
    };
    let status = if down || verdict.is_ok() { status } else { StatusCode::BAD_REQUEST };
    lock(&state.received).push(Received {
        path,
        body: String::from_utf8_lossy(&body).into_owned(),
        status: status.as_u16(),
        verdict,
    });
    let mut response = Response::new(Full::new(Bytes::from_static(b"ok")));
    *response.status_mut() = status;
    Ok(response)
}

/// As docs/notifications.md tells receivers: the signature over the raw body, within the tolerance.
fn check_webhook(signature: Option<&str>, body: &[u8]) -> Result<(), String> {
    let header = signature.ok_or_else(|| format!("no {} header", keyturn_notify::SIGNATURE_HEADER))?;
    keyturn_notify::verify_signature(WEBHOOK_SECRET.as_bytes(), header, body, chrono::Utc::now())
        .map_err(|e| e.to_string())?;
    let json: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    if json["type"] != "keyturn.notification" || !json["event_id"].is_string() {
        return Err(format!("not a keyturn notification: {json}"));
    }
    Ok(())
}

/// What Slack validates in an incoming-webhook Block Kit message.
fn check_slack(body: &[u8]) -> Result<(), String> {
    let json: Value = serde_json::from_slice(body).map_err(|_| "invalid_payload".to_owned())?;
    if !json["text"].is_string() {
        return Err("no fallback text".into());
    }
    let blocks = json["blocks"].as_array().ok_or("invalid_blocks: no blocks")?;
    if blocks.is_empty() || blocks.len() > 50 {
        return Err("invalid_blocks: 1 to 50 blocks".into());
    }
    for block in blocks {
        let valid = match block["type"].as_str() {
            Some("header") => {
                block["text"]["type"] == "plain_text"
                    && block["text"]["text"].as_str().is_some_and(|t| t.chars().count() <= 150)
            }
            Some("section") => {
                let fields = block["fields"].as_array();
                (!block["text"].is_null() || fields.is_some())
                    && fields.is_none_or(|f| f.len() <= 10 && f.iter().all(|f| f["type"] == "mrkdwn"))
            }
            Some("context") => block["elements"].as_array().is_some_and(|e| !e.is_empty() && e.len() <= 10),
            _ => false,
        };
        if !valid {
            return Err(format!("invalid_blocks: {block}"));
        }
    }
    Ok(())
}

/// What a Teams workflow ("When a Teams webhook request is received" + "Post card") needs.
fn check_teams(body: &[u8]) -> Result<(), String> {
    let json: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let attachment = &json["attachments"][0];
    let card = &attachment["content"];
    let version: f64 = card["version"].as_str().and_then(|v| v.parse().ok()).unwrap_or(0.0);
    if json["type"] != "message"
        || attachment["contentType"] != "application/vnd.microsoft.card.adaptive"
        || card["type"] != "AdaptiveCard"
        || !(1.4..=1.5).contains(&version)
        || card["body"].as_array().is_none_or(|b| b.is_empty())
    {
        return Err(format!("not a Teams workflow message with an Adaptive Card 1.4-1.5: {json}"));
    }
    Ok(())
}

/// The Python with crates/notify/python/requirements.txt installed (`KEYTURN_PYTHON`, set by scripts/test).
///
/// # Panics
/// When it is unset or missing.
pub fn python() -> PathBuf {
    std::env::var_os("KEYTURN_PYTHON").map(PathBuf::from).filter(|p| p.exists()).unwrap_or_else(|| {
        panic!(
            "KEYTURN_PYTHON is unset or does not exist: it must name a Python with crates/notify/python/requirements.txt \
             installed (./scripts/test creates that venv and sets it)"
        )
    })
}

/// A real SMTP server (aiosmtpd, crates/notify/python/smtp_sink.py) without TLS on 127.0.0.1: the email
/// channel's loopback mode. The process is killed when this is dropped (and exits when its stdin closes).
#[derive(Debug)]
pub struct SmtpSink {
    _child: Child,
    pub port: u16,
    messages: Arc<Mutex<Vec<Value>>>,
}

impl SmtpSink {
    /// # Panics
    /// When the server does not start and report its port within 20 seconds.
    pub async fn start() -> Self {
        let script = crate::repo_root().join("crates/notify/python/smtp_sink.py");
        let mut child = Command::new(python())
            .arg(&script)
            .args(["--mode", "plain"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", script.display()));
        let stdout = child.stdout.take().unwrap_or_else(|| panic!("the SMTP sink has no stdout"));
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("the SMTP sink did not report its port within 20 s"))
            .unwrap_or_else(|e| panic!("reading the SMTP sink: {e}"))
            .unwrap_or_else(|| panic!("the SMTP sink exited before reporting its port"));
        let port = serde_json::from_str::<Value>(&first)
            .ok()
            .and_then(|v| v["port"].as_u64())
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or_else(|| panic!("the SMTP sink's first line is not {{\"port\": N}}: {first}"));
        let messages = Arc::new(Mutex::new(Vec::new()));
        let collected = messages.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(message) = serde_json::from_str::<Value>(&line) {
                    lock(&collected).push(message);
                }
            }
        });
        Self { _child: child, port, messages }
    }

    /// The channel as a `KEYTURN_NOTIFY` entry.
    pub fn channel(&self) -> String {
        format!("smtp://127.0.0.1:{}?from=keyturn@localhost&to=ops@localhost&tls=none&timeout=10", self.port)
    }

    /// The messages received so far: `{"mail_from", "rcpt_tos", "data", ...}`.
    pub fn messages(&self) -> Vec<Value> {
        lock(&self.messages).clone()
    }

    /// Waits until at least `count` messages whose data contains `needle` arrived.
    ///
    /// # Panics
    /// When they do not within `timeout`.
    pub async fn wait_for(&self, count: usize, needle: &str, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let found =
                self.messages().iter().filter(|m| m["data"].as_str().is_some_and(|d| d.contains(needle))).count();
            if found >= count {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{found} of {count} emails mentioning '{needle}' arrived within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
