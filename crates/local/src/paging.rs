//! Local stand-ins for the two paging services keyturn's notify crate sends to, following their documented
//! contracts, so tests see what the real services would answer:
//!
//! - [`PagerDutyReceiver`]: PagerDuty Events API v2, `POST /v2/enqueue` (no auth header; the routing key is in
//!   the body). 202 `{"status":"success","message":"Event processed","dedup_key"}`; 400
//!   `{"status","message","errors"}` for an event that is not valid (bad JSON, a routing key that is not 32
//!   characters, an unknown `event_action`, a trigger without `payload.summary`/`source`/`severity` or with
//!   another severity, a `summary` over 1,024 characters, a `dedup_key` over 255, an acknowledge or resolve
//!   without `dedup_key`, a body over 512 KB); 429 and 500 on demand ([`PagerDutyReceiver::throttle_next`],
//!   [`PagerDutyReceiver::fail_next`]). A trigger with the key of an open alert joins it; a resolve with no
//!   open alert is accepted and dropped, as PagerDuty does.
//! - [`OpsgenieReceiver`]: Opsgenie Alert API, `POST /v2/alerts`, `POST /v2/alerts/{identifier}/close
//!   ?identifierType=id|alias|tiny`, `GET /v2/alerts/requests/{requestId}`, all with `Authorization: GenieKey
//!   <key>` (401 without a key it knows). 202 `{"result":"Request will be processed","took","requestId"}`;
//!   422 for a body that is not valid (no `message`, or a field over its documented limit: message 130,
//!   alias 512, description 15,000, 20 tags of 50, details 8,000, priority outside P1-P5); 429 on demand,
//!   with `X-RateLimit-State: THROTTLED`. A create with the alias of an open alert counts it up; a close is
//!   processed asynchronously (the request's status says whether the alert existed).
//!
//! Where a vendor documents a limit but not its answer to a request over it, the receiver refuses (400 or
//! 422): like the rest of the local stack it is never kinder than the service. Both listen on 127.0.0.1,
//! over plain HTTP (`start`; the notify crate accepts `pagerduty+http://` and `opsgenie+http://` for
//! loopback only) or over HTTPS with a fresh local CA (`start_https`), as the real services are called.
//! The keys they see are test values, but they are still never logged.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::keyvault::server::{self, ServerHandle, ServerResponse};
use crate::tls::{LocalCa, LocalCaError};

/// PagerDuty's body limit.
pub const PAGERDUTY_MAX_BODY: usize = 512 * 1024;
const PD_SUMMARY_MAX: usize = 1024;
const PD_DEDUP_KEY_MAX: usize = 255;
const PD_ROUTING_KEY_LEN: usize = 32;
/// Opsgenie's field limits.
const OG_MESSAGE_MAX: usize = 130;
const OG_ALIAS_MAX: usize = 512;
const OG_DESCRIPTION_MAX: usize = 15_000;
const OG_TAGS_MAX: usize = 20;
const OG_TAG_MAX: usize = 50;
const OG_DETAILS_MAX: usize = 8_000;
/// No request body the receivers accept is larger; anything larger is refused before parsing.
const READ_LIMIT: usize = 2 * PAGERDUTY_MAX_BODY;

/// Failures starting a receiver.
#[derive(Debug, thiserror::Error)]
pub enum PagingError {
    #[error("binding the paging receiver on 127.0.0.1 failed: {0}")]
    Bind(std::io::Error),
    #[error("creating the paging receiver's CA directory {path}: {source}")]
    CaDir { path: std::path::PathBuf, source: std::io::Error },
    #[error(transparent)]
    Tls(#[from] LocalCaError),
}

/// A bound listener: its base URL, and the TLS acceptor and CA when it speaks HTTPS.
struct Bound {
    listener: TcpListener,
    url: String,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    ca: Option<LocalCa>,
}

/// Binds 127.0.0.1 on a port the OS picks; with `ca_dir`, generates a CA there and serves HTTPS.
async fn bind(ca_dir: Option<&Path>) -> Result<Bound, PagingError> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.map_err(PagingError::Bind)?;
    let port = listener.local_addr().map_err(PagingError::Bind)?.port();
    match ca_dir {
        None => Ok(Bound { listener, url: format!("http://127.0.0.1:{port}"), acceptor: None, ca: None }),
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|source| PagingError::CaDir { path: dir.to_owned(), source })?;
            let ca = LocalCa::generate(dir, &[])?;
            let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config());
            Ok(Bound { listener, url: format!("https://127.0.0.1:{port}"), acceptor: Some(acceptor), ca: Some(ca) })
        }
    }
}

/// The channel URL keyturn is configured with: `<vendor>://` over HTTPS, `<vendor>+http://` over HTTP.
fn channel_url(vendor: &str, url: &str, key: &str) -> String {
    match url.strip_prefix("https://") {
        Some(host) => format!("{vendor}://{key}@{host}"),
        None => format!("{vendor}+http://{key}@{}", url.trim_start_matches("http://")),
    }
}

/// Answers chosen by the test for the next requests, before any validation.
#[derive(Debug, Default)]
struct Faults {
    throttle: usize,
    fail: usize,
}

impl Faults {
    fn take(&mut self) -> Option<StatusCode> {
        if self.throttle > 0 {
            self.throttle -= 1;
            Some(StatusCode::TOO_MANY_REQUESTS)
        } else if self.fail > 0 {
            self.fail -= 1;
            Some(StatusCode::INTERNAL_SERVER_ERROR)
        } else {
            None
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a request panicked between two map operations; the maps are still consistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, ()> {
    let limited = http_body_util::Limited::new(req.into_body(), READ_LIMIT);
    limited.collect().await.map(|c| c.to_bytes()).map_err(|_| ())
}

/// `%XX` escapes in a path segment decoded (an alias such as `keyturn:kv1:...` arrives as `keyturn%3Akv1%3A...`).
fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn chars(v: &Value) -> usize {
    v.as_str().map_or(0, |s| s.chars().count())
}

// ---- PagerDuty --------------------------------------------------------------------------------------------

/// An alert as the PagerDuty receiver holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PagerDutyAlert {
    pub dedup_key: String,
    /// `triggered` or `resolved`.
    pub status: String,
    pub severity: String,
    pub summary: String,
    /// Triggers received for this key while it was open (1 for a single page).
    pub triggers: u32,
    /// The whole last trigger event as received, routing key included.
    pub last_trigger: Value,
}

/// One request the PagerDuty receiver answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PagerDutyRequest {
    pub status: u16,
    pub event_action: Option<String>,
    pub dedup_key: Option<String>,
}

#[derive(Debug, Default)]
struct PdState {
    faults: Faults,
    /// By routing key, then dedup key.
    alerts: BTreeMap<String, BTreeMap<String, PagerDutyAlert>>,
    requests: Vec<PagerDutyRequest>,
    dropped: u32,
}

/// A running PagerDuty Events API v2 stand-in. Dropping it stops the listener.
#[derive(Debug)]
pub struct PagerDutyReceiver {
    url: String,
    ca: Option<LocalCa>,
    state: Arc<Mutex<PdState>>,
    server: Option<ServerHandle>,
}

impl PagerDutyReceiver {
    /// A receiver over plain HTTP.
    pub async fn start() -> Result<Self, PagingError> {
        Self::serve(bind(None).await?)
    }

    /// A receiver over HTTPS, with a CA generated in `ca_dir` (created if missing; [`Self::ca_pem`] is what
    /// clients trust).
    pub async fn start_https(ca_dir: &Path) -> Result<Self, PagingError> {
        Self::serve(bind(Some(ca_dir)).await?)
    }

    fn serve(bound: Bound) -> Result<Self, PagingError> {
        let state = Arc::new(Mutex::new(PdState::default()));
        let shared = state.clone();
        let server = server::spawn(bound.listener, bound.acceptor, move |req| pagerduty(shared.clone(), req));
        tracing::info!(url = %bound.url, "PagerDuty receiver listening");
        Ok(Self { url: bound.url, ca: bound.ca, state, server: Some(server) })
    }

    /// `http://127.0.0.1:<port>` or `https://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The CA certificate (PEM) of an HTTPS receiver.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca.as_ref().map(LocalCa::ca_pem)
    }

    /// The keyturn channel URL for an integration with `routing_key`.
    pub fn channel_url(&self, routing_key: &str) -> String {
        channel_url("pagerduty", &self.url, routing_key)
    }

    /// The next `n` requests are answered 429, as PagerDuty throttles.
    pub fn throttle_next(&self, n: usize) {
        lock(&self.state).faults.throttle = n;
    }

    /// The next `n` requests are answered 500 (the service is down).
    pub fn fail_next(&self, n: usize) {
        lock(&self.state).faults.fail = n;
    }

    /// Every alert of the integration `routing_key`, by dedup key.
    pub fn alerts(&self, routing_key: &str) -> BTreeMap<String, PagerDutyAlert> {
        lock(&self.state).alerts.get(routing_key).cloned().unwrap_or_default()
    }

    /// Every request answered, in order.
    pub fn requests(&self) -> Vec<PagerDutyRequest> {
        lock(&self.state).requests.clone()
    }

    /// Acknowledges and resolves accepted but dropped (no open alert with their key).
    pub fn dropped(&self) -> u32 {
        lock(&self.state).dropped
    }

    /// Stops accepting and waits for open connections.
    pub async fn shutdown(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }
}

fn pd_invalid(errors: &[String]) -> (StatusCode, Value) {
    (
        StatusCode::BAD_REQUEST,
        json!({"status": "invalid event", "message": "Event object is invalid", "errors": errors}),
    )
}

async fn pagerduty(state: Arc<Mutex<PdState>>, req: Request<Incoming>) -> ServerResponse {
    if req.method() != Method::POST || req.uri().path() != "/v2/enqueue" {
        return server::json_response(StatusCode::NOT_FOUND, &json!({"status": "not found", "message": "Not Found"}));
    }
    let body = read_body(req).await;
    let mut st = lock(&state);
    let (status, answer, action, key) = match st.faults.take() {
        Some(StatusCode::TOO_MANY_REQUESTS) => (
            StatusCode::TOO_MANY_REQUESTS,
            json!({"status": "throttle event", "message": "Requests for this service are arriving too quickly. Please retry later."}),
            None,
            None,
        ),
        Some(status) => (status, json!({"status": "error", "message": "Internal Server Error"}), None, None),
        None => {
            let (status, answer, action, key) = match body {
                Ok(bytes) => pd_accept(&mut st, &bytes),
                Err(()) => {
                    let (s, a) = pd_invalid(&["Event object is too large".into()]);
                    (s, a, None, None)
                }
            };
            (status, answer, action, key)
        }
    };
    st.requests.push(PagerDutyRequest { status: status.as_u16(), event_action: action, dedup_key: key });
    server::json_response(status, &answer)
}

fn pd_accept(st: &mut PdState, bytes: &[u8]) -> (StatusCode, Value, Option<String>, Option<String>) {
    let invalid = |errors: Vec<String>, action: Option<String>| {
        let (s, a) = pd_invalid(&errors);
        (s, a, action, None)
    };
    if bytes.len() > PAGERDUTY_MAX_BODY {
        return invalid(vec!["Event object is too large".into()], None);
    }
    let event: Value = match serde_json::from_slice(bytes) {
        Ok(v @ Value::Object(_)) => v,
        _ => return invalid(vec!["JSON parse error".into()], None),
    };
    let action = event["event_action"].as_str().map(str::to_owned);
    let mut errors = Vec::new();
    let routing_key = event["routing_key"].as_str().unwrap_or_default().to_owned();
    if routing_key.chars().count() != PD_ROUTING_KEY_LEN {
        errors.push("'routing_key' must be 32 characters".to_owned());
    }
    match action.as_deref() {
        Some("trigger") => {
            let payload = &event["payload"];
            for field in ["summary", "source", "severity"] {
                if chars(&payload[field]) == 0 {
                    errors.push(format!("'payload.{field}' is missing or blank"));
                }
            }
            if !matches!(payload["severity"].as_str(), None | Some("critical" | "error" | "warning" | "info")) {
                errors.push("'payload.severity' must be one of critical, error, warning, info".into());
            }
            if chars(&payload["summary"]) > PD_SUMMARY_MAX {
                errors.push(format!("'payload.summary' is longer than {PD_SUMMARY_MAX} characters"));
            }
        }
        Some("acknowledge" | "resolve") => {
            if chars(&event["dedup_key"]) == 0 {
                errors.push("'dedup_key' is required for acknowledge and resolve".into());
            }
        }
        _ => errors.push("'event_action' must be one of trigger, acknowledge, resolve".into()),
    }
    if chars(&event["dedup_key"]) > PD_DEDUP_KEY_MAX {
        errors.push(format!("'dedup_key' is longer than {PD_DEDUP_KEY_MAX} characters"));
    }
    if !errors.is_empty() {
        return invalid(errors, action);
    }
    let dedup_key = match event["dedup_key"].as_str() {
        Some(key) if !key.is_empty() => key.to_owned(),
        // PagerDuty generates one for a trigger without a key.
        _ => uuid::Uuid::new_v4().simple().to_string(),
    };
    let alerts = st.alerts.entry(routing_key).or_default();
    match action.as_deref() {
        Some("trigger") => {
            let payload = &event["payload"];
            match alerts.get_mut(&dedup_key) {
                Some(alert) if alert.status == "triggered" => {
                    alert.triggers += 1;
                    alert.last_trigger = event.clone();
                }
                _ => {
                    alerts.insert(
                        dedup_key.clone(),
                        PagerDutyAlert {
                            dedup_key: dedup_key.clone(),
                            status: "triggered".into(),
                            severity: payload["severity"].as_str().unwrap_or_default().to_owned(),
                            summary: payload["summary"].as_str().unwrap_or_default().to_owned(),
                            triggers: 1,
                            last_trigger: event.clone(),
                        },
                    );
                }
            }
        }
        _ => match alerts.get_mut(&dedup_key) {
            Some(alert) if alert.status == "triggered" && action.as_deref() == Some("resolve") => {
                alert.status = "resolved".into();
            }
            Some(alert) if alert.status == "triggered" => {}
            _ => st.dropped += 1,
        },
    }
    (
        StatusCode::ACCEPTED,
        json!({"status": "success", "message": "Event processed", "dedup_key": dedup_key}),
        action,
        Some(dedup_key),
    )
}

// ---- Opsgenie ---------------------------------------------------------------------------------------------

/// An alert as the Opsgenie receiver holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpsgenieAlert {
    pub id: String,
    pub alias: String,
    pub message: String,
    pub priority: String,
    /// `open` or `closed`.
    pub status: String,
    /// Creates received for this alias while it was open (1 for a single alert).
    pub count: u32,
    pub tags: Vec<String>,
    /// The whole last create request's body.
    pub last_create: Value,
    /// The close request's note.
    pub close_note: Option<String>,
}

/// One request the Opsgenie receiver answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpsgenieRequest {
    pub status: u16,
    /// `create`, `close` or `status`.
    pub action: String,
    pub alias: Option<String>,
}

#[derive(Debug, Default)]
struct OgState {
    faults: Faults,
    keys: Vec<String>,
    /// By alert id.
    alerts: BTreeMap<String, OpsgenieAlert>,
    /// Request id → (action, success, alert id, status text).
    processed: BTreeMap<String, (String, bool, Option<String>, String)>,
    requests: Vec<OpsgenieRequest>,
}

/// A running Opsgenie Alert API stand-in. Dropping it stops the listener.
#[derive(Debug)]
pub struct OpsgenieReceiver {
    url: String,
    ca: Option<LocalCa>,
    state: Arc<Mutex<OgState>>,
    server: Option<ServerHandle>,
}

impl OpsgenieReceiver {
    /// A receiver over plain HTTP that accepts the API keys `keys` (any other is answered 401).
    pub async fn start(keys: Vec<String>) -> Result<Self, PagingError> {
        Self::serve(bind(None).await?, keys)
    }

    /// The same over HTTPS, with a CA generated in `ca_dir`.
    pub async fn start_https(keys: Vec<String>, ca_dir: &Path) -> Result<Self, PagingError> {
        Self::serve(bind(Some(ca_dir)).await?, keys)
    }

    fn serve(bound: Bound, keys: Vec<String>) -> Result<Self, PagingError> {
        let state = Arc::new(Mutex::new(OgState { keys, ..OgState::default() }));
        let shared = state.clone();
        let server = server::spawn(bound.listener, bound.acceptor, move |req| opsgenie(shared.clone(), req));
        tracing::info!(url = %bound.url, "Opsgenie receiver listening");
        Ok(Self { url: bound.url, ca: bound.ca, state, server: Some(server) })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The CA certificate (PEM) of an HTTPS receiver.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca.as_ref().map(LocalCa::ca_pem)
    }

    /// The keyturn channel URL for `api_key`.
    pub fn channel_url(&self, api_key: &str) -> String {
        channel_url("opsgenie", &self.url, api_key)
    }

    /// The next `n` requests are answered 429, as Opsgenie's rate limiter does.
    pub fn throttle_next(&self, n: usize) {
        lock(&self.state).faults.throttle = n;
    }

    /// The next `n` requests are answered 500.
    pub fn fail_next(&self, n: usize) {
        lock(&self.state).faults.fail = n;
    }

    /// Every alert, by alias (the latest alert of an alias when it was reopened).
    pub fn alerts(&self) -> BTreeMap<String, OpsgenieAlert> {
        lock(&self.state).alerts.values().map(|a| (a.alias.clone(), a.clone())).collect()
    }

    pub fn requests(&self) -> Vec<OpsgenieRequest> {
        lock(&self.state).requests.clone()
    }

    pub async fn shutdown(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }
}

fn og_answer(status: StatusCode, mut body: Value, request_id: &str) -> ServerResponse {
    body["took"] = json!(0.002);
    body["requestId"] = json!(request_id);
    let mut response = server::json_response(status, &body);
    if status == StatusCode::TOO_MANY_REQUESTS {
        response.headers_mut().insert("X-RateLimit-State", HeaderValue::from_static("THROTTLED"));
    }
    response
}

async fn opsgenie(state: Arc<Mutex<OgState>>, req: Request<Incoming>) -> ServerResponse {
    let request_id = uuid::Uuid::new_v4().to_string();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let authorized_key = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("GenieKey "))
        .map(|k| k.trim().to_owned());
    let segments: Vec<String> = path.trim_start_matches('/').split('/').map(percent_decode).collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let action = match (&method, segments.as_slice()) {
        (&Method::POST, ["v2", "alerts"]) => "create",
        (&Method::POST, ["v2", "alerts", _, "close"]) => "close",
        (&Method::GET, ["v2", "alerts", "requests", _]) => "status",
        _ => {
            return og_answer(
                StatusCode::NOT_FOUND,
                json!({"message": "Could not find the requested resource"}),
                &request_id,
            );
        }
    };
    let body = read_body(req).await;
    let mut st = lock(&state);
    let (status, answer, alias) = if let Some(fault) = st.faults.take() {
        let message = if fault == StatusCode::TOO_MANY_REQUESTS {
            "You are making too many requests! To avoid errors, we recommend you limit requests."
        } else {
            "Internal Server Error"
        };
        (fault, json!({"message": message}), None)
    } else if !authorized_key.as_ref().is_some_and(|k| st.keys.contains(k)) {
        (StatusCode::UNAUTHORIZED, json!({"message": "Could not authenticate"}), None)
    } else {
        match (action, body) {
            (_, Err(())) => (StatusCode::UNPROCESSABLE_ENTITY, json!({"message": "Request body is too large"}), None),
            ("create", Ok(bytes)) => og_create(&mut st, &bytes, &request_id),
            ("close", Ok(bytes)) => og_close(&mut st, segments[2], &query, &bytes, &request_id),
            (_, Ok(_)) => match st.processed.get(segments[3]) {
                Some((action, success, alert_id, text)) => (
                    StatusCode::OK,
                    json!({"data": {"success": success, "action": action, "alertId": alert_id, "status": text}}),
                    None,
                ),
                None => (StatusCode::NOT_FOUND, json!({"message": "Request not found"}), None),
            },
        }
    };
    st.requests.push(OpsgenieRequest { status: status.as_u16(), action: action.to_owned(), alias });
    og_answer(status, answer, &request_id)
}

fn og_invalid(errors: BTreeMap<&str, String>) -> (StatusCode, Value, Option<String>) {
    (StatusCode::UNPROCESSABLE_ENTITY, json!({"message": "Request body is not valid", "errors": errors}), None)
}

fn og_create(st: &mut OgState, bytes: &[u8], request_id: &str) -> (StatusCode, Value, Option<String>) {
    let Ok(body @ Value::Object(_)) = serde_json::from_slice::<Value>(bytes) else {
        return og_invalid(BTreeMap::from([("body", "Request body is not valid JSON".to_owned())]));
    };
    let mut errors = BTreeMap::new();
    let message = body["message"].as_str().unwrap_or_default().trim().to_owned();
    if message.is_empty() {
        errors.insert("message", "Message can not be empty.".to_owned());
    }
    for (field, max) in [("message", OG_MESSAGE_MAX), ("alias", OG_ALIAS_MAX), ("description", OG_DESCRIPTION_MAX)] {
        if chars(&body[field]) > max {
            errors.insert(field, format!("{field} can not be longer than {max} characters."));
        }
    }
    let tags: Vec<String> = body["tags"]
        .as_array()
        .map(|t| t.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    if tags.len() > OG_TAGS_MAX || tags.iter().any(|t| t.chars().count() > OG_TAG_MAX) {
        errors.insert("tags", format!("at most {OG_TAGS_MAX} tags of at most {OG_TAG_MAX} characters."));
    }
    let details: usize = body["details"]
        .as_object()
        .map(|d| d.iter().map(|(k, v)| k.chars().count() + v.as_str().map_or(0, |s| s.chars().count())).sum())
        .unwrap_or(0);
    if details > OG_DETAILS_MAX {
        errors.insert("details", format!("details can not be longer than {OG_DETAILS_MAX} characters in total."));
    }
    let priority = body["priority"].as_str().unwrap_or("P3").to_owned();
    if !matches!(priority.as_str(), "P1" | "P2" | "P3" | "P4" | "P5") {
        errors.insert("priority", "Priority should be one of [P1, P2, P3, P4, P5].".to_owned());
    }
    if !errors.is_empty() {
        return og_invalid(errors);
    }
    let alias = body["alias"].as_str().map(str::to_owned).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let open = st.alerts.values_mut().find(|a| a.alias == alias && a.status == "open");
    let id = match open {
        Some(alert) => {
            alert.count += 1;
            alert.last_create = body.clone();
            alert.id.clone()
        }
        None => {
            let id = uuid::Uuid::new_v4().to_string();
            st.alerts.insert(
                id.clone(),
                OpsgenieAlert {
                    id: id.clone(),
                    alias: alias.clone(),
                    message,
                    priority,
                    status: "open".into(),
                    count: 1,
                    tags,
                    last_create: body.clone(),
                    close_note: None,
                },
            );
            id
        }
    };
    st.processed.insert(request_id.to_owned(), ("Create".into(), true, Some(id), "Created alert".into()));
    (StatusCode::ACCEPTED, json!({"result": "Request will be processed"}), Some(alias))
}

fn og_close(
    st: &mut OgState,
    identifier: &str,
    query: &str,
    bytes: &[u8],
    request_id: &str,
) -> (StatusCode, Value, Option<String>) {
    let identifier_type = query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == "identifierType")
        .map_or("id", |(_, v)| v);
    if !matches!(identifier_type, "id" | "alias" | "tiny") {
        return og_invalid(BTreeMap::from([(
            "identifierType",
            "Identifier type should be one of [id, alias, tiny].".to_owned(),
        )]));
    }
    let body: Value = if bytes.is_empty() { json!({}) } else { serde_json::from_slice(bytes).unwrap_or(Value::Null) };
    if !body.is_object() {
        return og_invalid(BTreeMap::from([("body", "Request body is not valid JSON".to_owned())]));
    }
    let found = st.alerts.values_mut().find(|a| {
        a.status == "open"
            && match identifier_type {
                "alias" => a.alias == identifier,
                _ => a.id == identifier,
            }
    });
    let (success, id, text) = match found {
        Some(alert) => {
            alert.status = "closed".into();
            alert.close_note = body["note"].as_str().map(str::to_owned);
            (true, Some(alert.id.clone()), "Closed alert".to_owned())
        }
        None => (false, None, "Alert does not exist".to_owned()),
    };
    st.processed.insert(request_id.to_owned(), ("Close".into(), success, id, text));
    let alias = (identifier_type == "alias").then(|| identifier.to_owned());
    (StatusCode::ACCEPTED, json!({"result": "Request will be processed"}), alias)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    async fn post(url: &str, body: &Value) -> (u16, Value) {
        let response = reqwest::Client::new().post(url).json(body).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    fn trigger(key: &str) -> Value {
        json!({"routing_key": KEY, "event_action": "trigger", "dedup_key": key,
               "payload": {"summary": "s", "source": "kv1", "severity": "critical"}})
    }

    #[tokio::test]
    async fn pagerduty_accepts_triggers_joins_them_by_key_and_resolves() {
        let pd = PagerDutyReceiver::start().await.unwrap();
        let url = format!("{}/v2/enqueue", pd.url());
        let (status, body) = post(&url, &trigger("k1")).await;
        assert_eq!((status, body["status"].as_str(), body["dedup_key"].as_str()), (202, Some("success"), Some("k1")));
        post(&url, &trigger("k1")).await;
        assert_eq!(pd.alerts(KEY)["k1"].triggers, 2);
        let (status, _) = post(&url, &json!({"routing_key": KEY, "event_action": "resolve", "dedup_key": "k1"})).await;
        assert_eq!((status, pd.alerts(KEY)["k1"].status.as_str()), (202, "resolved"));
        post(&url, &json!({"routing_key": KEY, "event_action": "resolve", "dedup_key": "nothing-open"})).await;
        assert_eq!(pd.dropped(), 1);
        pd.shutdown().await;
    }

    #[tokio::test]
    async fn pagerduty_refuses_invalid_events_and_throttles_on_demand() {
        let pd = PagerDutyReceiver::start().await.unwrap();
        let url = format!("{}/v2/enqueue", pd.url());
        for (event, expected) in [
            (
                json!({"routing_key": "short", "event_action": "trigger", "payload": {"summary": "s", "source": "x", "severity": "info"}}),
                "32 characters",
            ),
            (json!({"routing_key": KEY, "event_action": "page"}), "'event_action'"),
            (
                json!({"routing_key": KEY, "event_action": "trigger", "payload": {"summary": "s", "source": "x", "severity": "high"}}),
                "payload.severity",
            ),
            (
                json!({"routing_key": KEY, "event_action": "trigger", "payload": {"source": "x", "severity": "info"}}),
                "payload.summary",
            ),
            (
                json!({"routing_key": KEY, "event_action": "trigger", "payload": {"summary": "s".repeat(1025), "source": "x", "severity": "info"}}),
                "longer than 1024",
            ),
            (json!({"routing_key": KEY, "event_action": "resolve"}), "dedup_key"),
            (
                json!({"routing_key": KEY, "event_action": "trigger", "dedup_key": "d".repeat(256), "payload": {"summary": "s", "source": "x", "severity": "info"}}),
                "longer than 255",
            ),
            (
                json!({"routing_key": KEY, "event_action": "trigger", "payload": {"summary": "s", "source": "x", "severity": "info", "custom_details": {"big": "x".repeat(PAGERDUTY_MAX_BODY)}}}),
                "too large",
            ),
        ] {
            let (status, body) = post(&url, &event).await;
            assert_eq!(status, 400, "{event}");
            assert_eq!(body["message"], "Event object is invalid");
            assert!(body["errors"].to_string().contains(expected), "{body}");
        }
        pd.throttle_next(1);
        assert_eq!(post(&url, &trigger("k")).await.0, 429);
        pd.fail_next(1);
        assert_eq!(post(&url, &trigger("k")).await.0, 500);
        assert_eq!(post(&url, &trigger("k")).await.0, 202);
        assert!(pd.alerts(KEY).contains_key("k"));
    }

    #[tokio::test]
    async fn opsgenie_needs_its_key_creates_by_alias_and_closes_asynchronously() {
        let og = OpsgenieReceiver::start(vec!["genie-1".into()]).await.unwrap();
        let client = reqwest::Client::new();
        let create = json!({"message": "m", "alias": "a:1", "priority": "P1"});
        let send = |path: &str, key: Option<&str>, body: Value| {
            let mut request = client.post(format!("{}{path}", og.url())).json(&body);
            if let Some(key) = key {
                request = request.header("Authorization", format!("GenieKey {key}"));
            }
            request.send()
        };
        assert_eq!(send("/v2/alerts", None, create.clone()).await.unwrap().status(), 401);
        assert_eq!(send("/v2/alerts", Some("other"), create.clone()).await.unwrap().status(), 401);
        let response = send("/v2/alerts", Some("genie-1"), create.clone()).await.unwrap();
        assert_eq!(response.status(), 202);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["result"], "Request will be processed");
        send("/v2/alerts", Some("genie-1"), create.clone()).await.unwrap();
        assert_eq!(og.alerts()["a:1"].count, 2);

        let closed =
            send("/v2/alerts/a%3A1/close?identifierType=alias", Some("genie-1"), json!({"note": "n"})).await.unwrap();
        assert_eq!(closed.status(), 202);
        let request_id = closed.json::<Value>().await.unwrap()["requestId"].as_str().unwrap().to_owned();
        assert_eq!(
            (og.alerts()["a:1"].status.as_str(), og.alerts()["a:1"].close_note.as_deref()),
            ("closed", Some("n"))
        );
        let again = send("/v2/alerts/a%3A1/close?identifierType=alias", Some("genie-1"), json!({})).await.unwrap();
        let again_id = again.json::<Value>().await.unwrap()["requestId"].as_str().unwrap().to_owned();
        let status = |id: String| {
            client
                .get(format!("{}/v2/alerts/requests/{id}", og.url()))
                .header("Authorization", "GenieKey genie-1")
                .send()
        };
        let first: Value = status(request_id).await.unwrap().json().await.unwrap();
        assert_eq!(first["data"]["success"], true);
        let second: Value = status(again_id).await.unwrap().json().await.unwrap();
        assert_eq!(
            (second["data"]["success"].as_bool(), second["data"]["status"].as_str()),
            (Some(false), Some("Alert does not exist"))
        );

        for (body, field) in [
            (json!({"alias": "x"}), "message"),
            (json!({"message": "m".repeat(131)}), "message"),
            (json!({"message": "m", "tags": vec!["t"; 21]}), "tags"),
            (json!({"message": "m", "details": {"d": "x".repeat(8001)}}), "details"),
            (json!({"message": "m", "priority": "P0"}), "priority"),
        ] {
            let response = send("/v2/alerts", Some("genie-1"), body.clone()).await.unwrap();
            assert_eq!(response.status(), 422, "{body}");
            let answer: Value = response.json().await.unwrap();
            assert!(answer["errors"][field].is_string(), "{answer}");
        }
        og.throttle_next(1);
        let throttled = send("/v2/alerts", Some("genie-1"), create).await.unwrap();
        assert_eq!(throttled.status(), 429);
        assert_eq!(throttled.headers()["X-RateLimit-State"], "THROTTLED");
    }
}
