//! Shared by the integration tests: a notification from a real event fixture, a tracing capture, and a real
//! HTTP receiver on loopback that checks what a real webhook receiver, Slack or Teams would check.
// Each test binary uses part of this module; and, as in the tests themselves, a panic here is a failed test
// with a line number (clippy's allow-unwrap-in-tests only covers #[test] functions).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{HeaderMap, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use keyturn_notify::{Action, Notification, SIGNATURE_HEADER, verify_signature};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::Barrier;
use tokio::task::JoinHandle;

/// The signing secret every sink's `/webhook` route verifies with.
pub(crate) const WEBHOOK_SECRET: &str = "whsec-test-0123456789abcdef";

/// Every test is bounded by this.
pub(crate) const TEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A near-expiry notification for the secret in the events crate's fixture, with `event_id`.
pub(crate) fn notification(event_id: &str) -> Notification {
    let event =
        keyturn_events::Event::from_slice(include_bytes!("../../../events/fixtures/eventgrid-secret-near-expiry.json"))
            .unwrap();
    let mut n = Notification::for_event(
        &event,
        Action::NotRotated { reason: "the secret has no keyturn rotation policy; rotate it by hand.".into() },
    )
    .unwrap();
    n.event_id = event_id.to_owned();
    n
}

/// Everything tracing writes while installed, at every level, from every crate.
#[derive(Clone, Default)]
pub(crate) struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    /// Installs the capture for the current thread (the tests run on a current-thread runtime).
    pub(crate) fn install(&self) -> tracing::subscriber::DefaultGuard {
        let writer = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// How a sink answers.
#[derive(Clone)]
pub(crate) enum Mode {
    /// Like the real receiver: checks the request and answers as the service would.
    Up,
    /// 503 with an error page that quotes the path it was called on (as many web servers do).
    Down,
    /// Never answers.
    Hang,
    /// Answers only once this many requests are waiting at the same time (proves concurrent sending).
    Together(Arc<Barrier>),
}

/// One request as the sink received it, with the sink's verdict on it.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) path_and_query: String,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    /// `Ok` when the request is what the route's real receiver accepts; else why not.
    pub(crate) verdict: Result<(), String>,
}

impl Received {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

struct SinkState {
    mode: Mutex<Mode>,
    received: Mutex<Vec<Received>>,
}

/// A real HTTP/1.1 server on 127.0.0.1. Routes: `/webhook...` (keyturn's signed JSON), `/services/...`
/// (Slack incoming webhook), `/teams/...` (Teams workflow). Stops when dropped.
pub(crate) struct Sink {
    pub(crate) addr: SocketAddr,
    state: Arc<SinkState>,
    task: JoinHandle<()>,
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Sink {
    pub(crate) async fn start(mode: Mode) -> Self {
        Self::start_on(TcpListener::bind("127.0.0.1:0").await.unwrap(), mode)
    }

    pub(crate) fn start_on(listener: TcpListener, mode: Mode) -> Self {
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(SinkState { mode: Mutex::new(mode), received: Mutex::new(Vec::new()) });
        let served = state.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let state = served.clone();
                connections.spawn(async move {
                    let service = service_fn(move |req| handle(state.clone(), req));
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Self { addr, state, task }
    }

    pub(crate) fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = mode;
    }

    pub(crate) fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    pub(crate) fn received_on(&self, prefix: &str) -> Vec<Received> {
        self.received().into_iter().filter(|r| r.path_and_query.starts_with(prefix)).collect()
    }

    pub(crate) fn base(&self) -> String {
        format!("127.0.0.1:{}", self.addr.port())
    }
}

async fn handle(state: Arc<SinkState>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path_and_query = req.uri().path_and_query().map(ToString::to_string).unwrap_or_default();
    let headers = req.headers().clone();
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let mode = state.mode.lock().unwrap().clone();
    let (status, reply, verdict) = match mode {
        Mode::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            (StatusCode::OK, String::new(), Ok(()))
        }
        Mode::Down => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("<html><body>Cannot POST {path_and_query}: service unavailable</body></html>"),
            Err("down".to_owned()),
        ),
        Mode::Together(barrier) => {
            barrier.wait().await;
            (StatusCode::OK, "ok".to_owned(), Ok(()))
        }
        Mode::Up => judge(&path_and_query, &headers, &body),
    };
    state.received.lock().unwrap().push(Received { path_and_query, headers, body, verdict });
    Ok(Response::builder().status(status).body(Full::new(Bytes::from(reply))).unwrap())
}

/// What the real receiver of each route would answer.
fn judge(path: &str, headers: &HeaderMap, body: &[u8]) -> (StatusCode, String, Result<(), String>) {
    let (ok, verdict) = if path.starts_with("/webhook") {
        (StatusCode::NO_CONTENT, check_webhook(headers, body))
    } else if path.starts_with("/services/") {
        (StatusCode::OK, check_slack(body))
    } else if path.starts_with("/teams/") {
        (StatusCode::ACCEPTED, check_teams(body))
    } else {
        (StatusCode::NOT_FOUND, Err(format!("no route for {path}")))
    };
    match verdict {
        Ok(()) => (ok, if ok == StatusCode::OK { "ok".into() } else { String::new() }, Ok(())),
        Err(why) => (StatusCode::BAD_REQUEST, why.clone(), Err(why)),
    }
}

/// As docs/notifications.md tells receivers: verify the signature against the raw body and the clock.
fn check_webhook(headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
    let header = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| format!("no {SIGNATURE_HEADER} header"))?;
    verify_signature(WEBHOOK_SECRET.as_bytes(), header, body, Utc::now()).map_err(|e| e.to_string())?;
    let json: Value = serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
    if json["type"] != "keyturn.notification" || !json["event_id"].is_string() {
        return Err(format!("not a keyturn notification: {json}"));
    }
    Ok(())
}

/// Slack's rules for an incoming-webhook Block Kit message, as far as it validates them.
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
        match block["type"].as_str() {
            Some("header") => {
                let text = &block["text"];
                if text["type"] != "plain_text" || text["text"].as_str().is_none_or(|t| t.chars().count() > 150) {
                    return Err("invalid_blocks: header needs plain_text of at most 150 characters".into());
                }
            }
            Some("section") => {
                let fields = block["fields"].as_array();
                if block["text"].is_null() && fields.is_none() {
                    return Err("invalid_blocks: section needs text or fields".into());
                }
                if fields.is_some_and(|f| f.len() > 10 || f.iter().any(|f| f["type"] != "mrkdwn")) {
                    return Err("invalid_blocks: at most 10 mrkdwn fields".into());
                }
            }
            Some("context") => {
                if block["elements"].as_array().is_none_or(|e| e.is_empty() || e.len() > 10) {
                    return Err("invalid_blocks: context needs 1 to 10 elements".into());
                }
            }
            other => return Err(format!("invalid_blocks: unexpected block type {other:?}")),
        }
    }
    Ok(())
}

/// What the Teams workflow ("When a Teams webhook request is received" + "Post card") needs.
fn check_teams(body: &[u8]) -> Result<(), String> {
    let json: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    if json["type"] != "message" {
        return Err("envelope type must be 'message'".into());
    }
    let attachment = &json["attachments"][0];
    if attachment["contentType"] != "application/vnd.microsoft.card.adaptive" {
        return Err("the attachment is not an Adaptive Card".into());
    }
    let card = &attachment["content"];
    if card["type"] != "AdaptiveCard" {
        return Err("content.type must be AdaptiveCard".into());
    }
    let version: f64 = card["version"].as_str().and_then(|v| v.parse().ok()).ok_or("no card version")?;
    if !(1.4..=1.5).contains(&version) {
        return Err(format!("card version {version} is not one Teams renders (1.4-1.5)"));
    }
    if card["body"].as_array().is_none_or(|b| b.is_empty()) {
        return Err("the card has no body".into());
    }
    Ok(())
}
