//! A notification receiver on loopback that answers as keyturn's signed-webhook receiver, a Slack incoming
//! webhook and a Teams workflow would, checking what each of them checks: the one receiver the demo, the
//! end-to-end tests and the notify crate's tests send to.
//!
//! Routes: `/webhook...` (keyturn's signed JSON: the signature over the raw body within the tolerance, as
//! docs/notifications.md tells receivers, then the notification's shape), `/services/...` (Slack's Block Kit
//! rules), `/teams/...` (a Teams workflow's Adaptive Card). Everything received is kept with its verdict.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{HeaderMap, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use keyturn_notify::{SIGNATURE_HEADER, verify_signature};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::Barrier;
use tokio::task::JoinHandle;

/// How the receiver answers.
#[derive(Debug, Clone)]
pub enum Mode {
    /// As the real receiver of each route: checks the request and answers as that service would.
    Up,
    /// 503 with an error page that quotes the path it was called on (as many web servers do), so a sender
    /// that echoes the page in its errors would leak the path's tokens.
    Down,
    /// Never answers.
    Hang,
    /// Answers only once this many requests are waiting at the same time (proves concurrent sending).
    Together(Arc<Barrier>),
}

/// One request as the receiver got it, with its verdict.
#[derive(Debug, Clone)]
pub struct Received {
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// What the receiver answered.
    pub status: u16,
    /// `Ok` when the route's real receiver accepts the request; else why not (`down` while down).
    pub verdict: Result<(), String>,
    json: Value,
}

impl Received {
    /// The path without the query.
    pub fn path(&self) -> &str {
        self.path_and_query.split('?').next().unwrap_or_default()
    }

    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        self.json.clone()
    }

    /// A string field of the JSON body by JSON pointer (`/object/name`); empty when absent.
    pub fn field(&self, pointer: &str) -> &str {
        self.json.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Accepted as the real receiver would accept it.
    pub fn accepted(&self) -> bool {
        self.verdict.is_ok() && (200..300).contains(&self.status)
    }
}

#[derive(Debug)]
struct State {
    secret: String,
    mode: Mutex<Mode>,
    received: Mutex<Vec<Received>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves plain data behind: keep serving it.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The receiver: a real HTTP/1.1 server on 127.0.0.1. Stops when dropped.
#[derive(Debug)]
pub struct HttpSink {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Drop for HttpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HttpSink {
    /// A receiver on a free port of 127.0.0.1 whose `/webhook` route verifies signatures made with `secret`.
    pub async fn start(secret: impl Into<String>) -> std::io::Result<Self> {
        Self::start_on(TcpListener::bind("127.0.0.1:0").await?, secret)
    }

    /// The same on `listener` (a test that stops and restarts a receiver on the same address).
    pub fn start_on(listener: TcpListener, secret: impl Into<String>) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let state =
            Arc::new(State { secret: secret.into(), mode: Mutex::new(Mode::Up), received: Mutex::new(Vec::new()) });
        let served = state.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let state = served.clone();
                connections.spawn(async move {
                    let service = service_fn(move |request| answer(state.clone(), request));
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Ok(Self { addr, state, task })
    }

    pub fn set_mode(&self, mode: Mode) {
        *lock(&self.state.mode) = mode;
    }

    /// While down, every request gets a 503 (and is kept with the verdict `down`).
    pub fn set_down(&self, down: bool) {
        self.set_mode(if down { Mode::Down } else { Mode::Up });
    }

    /// `127.0.0.1:<port>`.
    pub fn base(&self) -> String {
        format!("127.0.0.1:{}", self.addr.port())
    }

    /// The `/webhook` route's signing secret.
    pub fn secret(&self) -> &str {
        &self.state.secret
    }

    /// The signed-webhook channel as a `KEYTURN_NOTIFY` entry (plain http is accepted for loopback only).
    pub fn webhook_channel(&self) -> String {
        format!("webhook+http://{}/webhook?secret={}", self.base(), self.state.secret)
    }

    /// The three channels (webhook, Slack, Teams) as `KEYTURN_NOTIFY` entries, separated by spaces.
    pub fn channels(&self) -> String {
        let base = self.base();
        format!(
            "{} slack+http://{base}/services/T0/B0/slacktoken0001 teams+http://{base}/teams/workflow?sig=teamssig0001",
            self.webhook_channel()
        )
    }

    /// Everything received so far, oldest first.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.state.received).clone()
    }

    /// Requests on a route (`/webhook`, `/services/`, `/teams/`).
    pub fn received_on(&self, prefix: &str) -> Vec<Received> {
        self.received().into_iter().filter(|r| r.path_and_query.starts_with(prefix)).collect()
    }

    /// Accepted requests on a route.
    pub fn accepted_on(&self, prefix: &str) -> Vec<Received> {
        self.received_on(prefix).into_iter().filter(Received::accepted).collect()
    }

    /// The body of every request received, for the leak scans.
    pub fn bodies(&self) -> Vec<String> {
        self.received().iter().map(Received::text).collect()
    }

    /// Waits until `done` holds for what was received; false when `timeout` passes first.
    pub async fn wait_until(&self, timeout: Duration, done: impl Fn(&[Received]) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !done(&self.received()) {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }
}

async fn answer(state: Arc<State>, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path_and_query = request.uri().path_and_query().map(ToString::to_string).unwrap_or_default();
    let headers = request.headers().clone();
    let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let mode = lock(&state.mode).clone();
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
        Mode::Up => judge(&state.secret, &path_and_query, &headers, &body),
    };
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    lock(&state.received).push(Received { path_and_query, headers, body, status: status.as_u16(), verdict, json });
    let mut response = Response::new(Full::new(Bytes::from(reply)));
    *response.status_mut() = status;
    Ok(response)
}

/// What the real receiver of each route would answer: its success status, or 400 with why.
fn judge(secret: &str, path: &str, headers: &HeaderMap, body: &[u8]) -> (StatusCode, String, Result<(), String>) {
    let (ok, verdict) = if path.starts_with("/webhook") {
        (StatusCode::NO_CONTENT, check_webhook(secret, headers, body))
    } else if path.starts_with("/services/") {
        (StatusCode::OK, check_slack(body))
    } else if path.starts_with("/teams/") {
        (StatusCode::ACCEPTED, check_teams(body))
    } else {
        (StatusCode::NOT_FOUND, Err(format!("no route for {}", path.split('?').next().unwrap_or_default())))
    };
    match verdict {
        Ok(()) => (ok, if ok == StatusCode::OK { "ok".into() } else { String::new() }, Ok(())),
        Err(why) if ok == StatusCode::NOT_FOUND => (ok, why.clone(), Err(why)),
        Err(why) => (StatusCode::BAD_REQUEST, why.clone(), Err(why)),
    }
}

/// As docs/notifications.md tells receivers: verify the signature against the raw body and the clock, then
/// read the notification.
fn check_webhook(secret: &str, headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
    let header = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| format!("no {SIGNATURE_HEADER} header"))?;
    verify_signature(secret.as_bytes(), header, body, chrono::Utc::now()).map_err(|e| e.to_string())?;
    let json: Value = serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
    let notification = json["type"] == "keyturn.notification" && json["event_id"].is_string();
    // The sweep's digests (docs/notifications.md, "Digest payload").
    let digest = json["type"] == "keyturn.digest" && json["digest_id"].is_string() && json["groups"].is_array();
    if !notification && !digest {
        return Err(format!("not a keyturn notification or digest: {json}"));
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

/// What a Teams workflow ("When a Teams webhook request is received" + "Post card") needs.
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

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123";

    fn signed(secret: &str, at: chrono::DateTime<chrono::Utc>, body: &[u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let signature = keyturn_notify::sign(secret.as_bytes(), at.timestamp(), body);
        headers.insert(SIGNATURE_HEADER, signature.parse().unwrap());
        headers
    }

    #[test]
    fn the_webhook_accepts_only_what_the_channel_secret_signed_recently() {
        let body = br#"{"type":"keyturn.notification","event_id":"e1","severity":"critical"}"#;
        let now = chrono::Utc::now();
        assert_eq!(check_webhook(SECRET, &signed(SECRET, now, body), body), Ok(()));
        assert!(check_webhook(SECRET, &signed("another-secret-of-20", now, body), body).is_err());
        let unsigned = check_webhook(SECRET, &HeaderMap::new(), body).unwrap_err();
        assert!(unsigned.contains("X-Keyturn-Signature"), "{unsigned}");
        let replayed = signed(SECRET, now - chrono::TimeDelta::minutes(10), body);
        assert!(check_webhook(SECRET, &replayed, body).is_err());
        let other = br#"{"severity":"critical"}"#;
        assert!(check_webhook(SECRET, &signed(SECRET, now, other), other).unwrap_err().contains("not a keyturn"));
    }

    #[test]
    fn slack_and_teams_shapes_are_checked_as_the_services_check_them() {
        let slack = br#"{"text":"t","blocks":[{"type":"header","text":{"type":"plain_text","text":"h"}},{"type":"section","fields":[{"type":"mrkdwn","text":"f"}]},{"type":"context","elements":[{"type":"mrkdwn","text":"c"}]}]}"#;
        assert_eq!(check_slack(slack), Ok(()));
        assert!(check_slack(br#"{"text":"t","blocks":[{"type":"image"}]}"#).unwrap_err().contains("image"));
        assert!(check_slack(br#"{"blocks":[]}"#).is_err());
        let teams = br#"{"type":"message","attachments":[{"contentType":"application/vnd.microsoft.card.adaptive","content":{"type":"AdaptiveCard","version":"1.5","body":[{"type":"TextBlock","text":"x"}]}}]}"#;
        assert_eq!(check_teams(teams), Ok(()));
        let old = String::from_utf8_lossy(teams).replace("1.5", "1.6");
        assert!(check_teams(old.as_bytes()).unwrap_err().contains("1.6"));
    }

    #[tokio::test]
    async fn it_answers_as_each_service_and_keeps_every_request_with_its_verdict() {
        let sink = HttpSink::start(SECRET).await.unwrap();
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let post =
            |path: &str, body: &'static str| client.post(format!("http://{}{path}", sink.base())).body(body).send();
        assert_eq!(post("/webhook", "{}").await.unwrap().status(), 400);
        assert_eq!(post("/elsewhere", "{}").await.unwrap().status(), 404);
        sink.set_down(true);
        let down = post("/services/T0/B0/token", "{}").await.unwrap();
        assert_eq!(down.status(), 503);
        assert!(down.text().await.unwrap().contains("/services/T0/B0/token"));
        sink.set_down(false);

        let received = sink.received();
        assert_eq!(received.len(), 3);
        assert!(received[0].verdict.as_ref().unwrap_err().contains("X-Keyturn-Signature"));
        assert_eq!(received[2].verdict, Err("down".to_owned()));
        assert!(sink.accepted_on("/").is_empty());
        assert_eq!(sink.received_on("/services/").len(), 1);
        assert!(sink.wait_until(Duration::from_millis(50), |r| r.len() == 3).await);
        assert!(!sink.wait_until(Duration::from_millis(50), |r| r.len() == 4).await);
        assert!(
            sink.channels()
                .starts_with(&format!("webhook+http://{}/webhook?secret={SECRET} slack+http://", sink.base()))
        );
    }
}
