//! The local stack's management API: plain HTTP on loopback, for the people and tools driving a running
//! stack (`keyturn dev`, scripts, a real `func start` pointed at it). It moves the shared clock, publishes
//! events, creates Event Grid subscriptions and shows what was delivered.
//!
//! | method and path | does |
//! |---|---|
//! | `GET /` | what the stack serves (the `about` document given at start) |
//! | `GET /clock` | `{"now": "<RFC 3339>", "speed": 1.0}` |
//! | `POST /clock/advance` | `{"days": 30, "hours": 0, "minutes": 0, "seconds": 0}` (any subset) moves the clock forward |
//! | `POST /clock/speed` | `{"speed": 86400}`: event time per real second |
//! | `POST /events` | an event or an array of events (either schema) published to every matching subscription |
//! | `POST /subscriptions` | creates a subscription (body: see [`SubscriptionRequest`]; `advancedFilters` with `StringIn`/`StringNotIn` on `subject`) |
//! | `GET /deliveries` | every delivery attempt so far |
//! | `GET /dead-letters` | every dead-lettered batch so far |

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use keyturn_events::{Event, Schema};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use warp::http::StatusCode;
use warp::reply::{Json, WithStatus};
use warp::{Filter, Rejection};

use crate::clock::Clock;
use crate::eventgrid::{EndpointType, EventGrid, SubjectFilter, Subscription};

/// The largest request body accepted (a batch of events is far smaller).
const BODY_LIMIT: u64 = 4 * 1024 * 1024;

/// What the management API works on.
#[derive(Debug, Clone)]
pub struct Management {
    pub clock: Clock,
    pub grid: EventGrid,
    /// Served at `GET /`: vault URLs, CA path, identity endpoint, ...
    pub about: Value,
}

/// `POST /subscriptions`: Event Grid's own property names.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubscriptionRequest {
    pub name: String,
    pub endpoint_url: url::Url,
    /// `WebHook` (default) or `AzureFunction`.
    #[serde(default)]
    pub endpoint_type: Option<String>,
    /// `EventGridSchema` (default) or `CloudEventSchemaV1_0`.
    #[serde(default)]
    pub event_delivery_schema: Option<String>,
    #[serde(default)]
    pub included_event_types: Vec<String>,
    #[serde(default)]
    pub subject_begins_with: Option<String>,
    #[serde(default)]
    pub subject_ends_with: Option<String>,
    /// Event Grid's advanced filters; keyturn's local stack understands `StringIn` and `StringNotIn` on `subject`.
    #[serde(default)]
    pub advanced_filters: Vec<AdvancedFilter>,
    #[serde(default)]
    pub max_delivery_attempts: Option<u32>,
    #[serde(default)]
    pub event_time_to_live_in_minutes: Option<u64>,
    #[serde(default)]
    pub max_events_per_batch: Option<usize>,
    #[serde(default)]
    pub dead_letter_dir: Option<PathBuf>,
}

/// One of Event Grid's advanced filters, in its own JSON shape.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdvancedFilter {
    pub operator_type: String,
    pub key: String,
    pub values: Vec<String>,
}

impl SubscriptionRequest {
    fn into_subscription(self) -> Result<Subscription, String> {
        let kind = match self.endpoint_type.as_deref() {
            None => EndpointType::Webhook,
            Some(t) if t.eq_ignore_ascii_case("WebHook") => EndpointType::Webhook,
            Some(t) if t.eq_ignore_ascii_case("AzureFunction") => EndpointType::AzureFunction,
            Some(other) => return Err(format!("endpointType '{other}' is not WebHook or AzureFunction")),
        };
        let schema = match self.event_delivery_schema.as_deref() {
            None => Schema::EventGrid,
            Some(s) if s.eq_ignore_ascii_case("EventGridSchema") => Schema::EventGrid,
            Some(s) if s.eq_ignore_ascii_case("CloudEventSchemaV1_0") => Schema::CloudEvents,
            Some(other) => {
                return Err(format!("eventDeliverySchema '{other}' is not EventGridSchema or CloudEventSchemaV1_0"));
            }
        };
        let mut sub = Subscription::new(&self.name, self.endpoint_url, kind)
            .schema(schema)
            .event_types(self.included_event_types);
        if let Some(p) = self.subject_begins_with {
            sub = sub.subject_begins_with(&p);
        }
        if let Some(s) = self.subject_ends_with {
            sub = sub.subject_ends_with(&s);
        }
        for filter in self.advanced_filters {
            if !filter.key.eq_ignore_ascii_case("subject") {
                return Err(format!("advanced filter on '{}': only 'subject' is supported locally", filter.key));
            }
            let filter = match filter.operator_type.as_str() {
                "StringIn" => SubjectFilter::In(filter.values),
                "StringNotIn" => SubjectFilter::NotIn(filter.values),
                other => {
                    return Err(format!(
                        "advanced filter operator '{other}' is not supported locally (StringIn, StringNotIn)"
                    ));
                }
            };
            sub = sub.subject_filter(filter);
        }
        if let Some(n) = self.max_delivery_attempts {
            sub = sub.max_delivery_attempts(n);
        }
        if let Some(m) = self.event_time_to_live_in_minutes {
            sub = sub.event_ttl(Duration::from_secs(m.saturating_mul(60)));
        }
        if let Some(n) = self.max_events_per_batch {
            sub = sub.max_events_per_batch(n);
        }
        if let Some(dir) = self.dead_letter_dir {
            sub = sub.dead_letter_dir(dir);
        }
        Ok(sub)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Advance {
    #[serde(default)]
    days: u64,
    #[serde(default)]
    hours: u64,
    #[serde(default)]
    minutes: u64,
    #[serde(default)]
    seconds: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Speed {
    speed: f64,
}

/// The routes, for serving or for `warp::test` without a socket.
pub fn routes(m: Management) -> impl Filter<Extract = (WithStatus<Json>,), Error = Infallible> + Clone {
    let with = move || {
        let m = m.clone();
        warp::any().map(move || m.clone())
    };
    let about = warp::path::end().and(warp::get()).and(with()).map(|m: Management| ok(m.about.clone()));
    let clock = warp::path!("clock").and(warp::get()).and(with()).map(|m: Management| ok(clock_json(&m.clock)));
    let advance = warp::path!("clock" / "advance").and(warp::post()).and(json_body()).and(with()).map(
        |body: Result<Advance, String>, m: Management| match body {
            Ok(a) => {
                let seconds = a.days * 86_400 + a.hours * 3_600 + a.minutes * 60 + a.seconds;
                m.clock.advance(Duration::from_secs(seconds));
                ok(clock_json(&m.clock))
            }
            Err(e) => bad_request(e),
        },
    );
    let speed = warp::path!("clock" / "speed").and(warp::post()).and(json_body()).and(with()).map(
        |body: Result<Speed, String>, m: Management| match body {
            Ok(s) if s.speed.is_finite() && s.speed > 0.0 => {
                m.clock.set_speed(s.speed);
                ok(clock_json(&m.clock))
            }
            Ok(s) => bad_request(format!("speed must be a positive number, not {}", s.speed)),
            Err(e) => bad_request(e),
        },
    );
    let publish = warp::path!("events").and(warp::post()).and(warp::body::bytes()).and(with()).map(
        |body: bytes::Bytes, m: Management| {
            let batch = match keyturn_events::delivery::split_batch(&body) {
                Ok(batch) => batch,
                Err(e) => return bad_request(e.to_string()),
            };
            let mut decoded = Vec::with_capacity(batch.len());
            for (i, raw) in batch.into_iter().enumerate() {
                match Event::from_value(raw) {
                    Ok(event) => decoded.push(event),
                    Err(e) => return bad_request(format!("event [{i}]: {e}")),
                }
            }
            let ids: Vec<String> = decoded.iter().map(|e| e.id.clone()).collect();
            for event in decoded {
                m.grid.publish(event);
            }
            ok(json!({ "published": ids }))
        },
    );
    let subscribe = warp::path!("subscriptions").and(warp::post()).and(json_body()).and(with()).then(
        |body: Result<SubscriptionRequest, String>, m: Management| async move {
            let subscription = match body.and_then(SubscriptionRequest::into_subscription) {
                Ok(s) => s,
                Err(e) => return bad_request(e),
            };
            let name = subscription.name.clone();
            match m.grid.subscribe(subscription).await {
                Ok(()) => with_status(json!({ "name": name }), StatusCode::CREATED),
                Err(e) => bad_request(e.to_string()),
            }
        },
    );
    let deliveries =
        warp::path!("deliveries").and(warp::get()).and(with()).map(|m: Management| ok(json!(m.grid.attempts())));
    let dead_letters =
        warp::path!("dead-letters").and(warp::get()).and(with()).map(|m: Management| ok(json!(m.grid.dead_letters())));

    about
        .or(clock)
        .unify()
        .or(advance)
        .unify()
        .or(speed)
        .unify()
        .or(publish)
        .unify()
        .or(subscribe)
        .unify()
        .or(deliveries)
        .unify()
        .or(dead_letters)
        .unify()
        .recover(|rejection: Rejection| async move { Ok::<_, Infallible>(rejected(&rejection)) })
        .unify()
}

/// A running management API.
#[derive(Debug)]
pub struct ManagementServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl ManagementServer {
    /// Serves the API on `listener` (bind 127.0.0.1:0 for an ephemeral port).
    pub fn serve(listener: TcpListener, m: Management) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let task = tokio::spawn(warp::serve(routes(m)).incoming(listener).run());
        Ok(Self { addr, task })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for ManagementServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn json_body<T: serde::de::DeserializeOwned + Send>()
-> impl Filter<Extract = (Result<T, String>,), Error = Rejection> + Clone {
    warp::body::content_length_limit(BODY_LIMIT).and(warp::body::bytes()).map(|body: bytes::Bytes| {
        let mut de = serde_json::Deserializer::from_slice(&body);
        serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            if matches!(path.as_str(), "." | "?") {
                e.into_inner().to_string()
            } else {
                format!("{path}: {}", e.into_inner())
            }
        })
    })
}

fn clock_json(clock: &Clock) -> Value {
    json!({ "now": clock.now().to_rfc3339(), "speed": clock.speed() })
}

fn with_status(body: Value, status: StatusCode) -> WithStatus<Json> {
    warp::reply::with_status(warp::reply::json(&body), status)
}

fn ok(body: Value) -> WithStatus<Json> {
    with_status(body, StatusCode::OK)
}

fn bad_request(message: impl Into<String>) -> WithStatus<Json> {
    with_status(json!({ "error": message.into() }), StatusCode::BAD_REQUEST)
}

fn rejected(rejection: &Rejection) -> WithStatus<Json> {
    if rejection.is_not_found() {
        with_status(
            json!({ "error": "no such management route; see GET / and the module docs" }),
            StatusCode::NOT_FOUND,
        )
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        with_status(json!({ "error": "method not allowed on this route" }), StatusCode::METHOD_NOT_ALLOWED)
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        with_status(json!({ "error": format!("body over {BODY_LIMIT} bytes") }), StatusCode::PAYLOAD_TOO_LARGE)
    } else {
        with_status(json!({ "error": format!("{rejection:?}") }), StatusCode::BAD_REQUEST)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, TimeDelta, Utc};

    fn management() -> Management {
        let clock = Clock::starting_at(DateTime::from_timestamp(1_750_000_000, 0).unwrap());
        let grid = EventGrid::start(clock.clone(), crate::eventgrid::EventGridOptions::default());
        Management { clock, grid, about: json!({"vaults": {"kv": "https://127.0.0.1:1"}}) }
    }

    async fn call(m: &Management, method: &str, path: &str, body: &str) -> (StatusCode, Value) {
        let response = warp::test::request().method(method).path(path).body(body).reply(&routes(m.clone())).await;
        let value = serde_json::from_slice(response.body()).unwrap_or(Value::Null);
        (response.status(), value)
    }

    #[tokio::test]
    async fn the_clock_moves_by_the_given_amount() {
        let m = management();
        let before = m.clock.now();
        let (status, body) = call(&m, "POST", "/clock/advance", r#"{"days": 30, "hours": 1}"#).await;
        assert_eq!(status, StatusCode::OK);
        let moved = m.clock.now() - before;
        assert!(
            moved >= TimeDelta::days(30) + TimeDelta::hours(1)
                && moved < TimeDelta::days(30) + TimeDelta::hours(1) + TimeDelta::seconds(5)
        );
        let now: DateTime<Utc> = body["now"].as_str().unwrap().parse().unwrap();
        assert!(now - before >= TimeDelta::days(30));
    }

    #[tokio::test]
    async fn bad_bodies_are_named() {
        let m = management();
        let (status, body) = call(&m, "POST", "/clock/advance", r#"{"weeks": 1}"#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["error"].as_str().unwrap().contains("weeks"), "{body}");
        let (status, body) = call(&m, "POST", "/clock/speed", r#"{"speed": -2}"#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["error"].as_str().unwrap().contains("positive"), "{body}");
        let (status, body) = call(&m, "POST", "/events", r#"[{"id": "1"}]"#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["error"].as_str().unwrap().starts_with("event [0]"), "{body}");
        let (status, body) = call(
            &m,
            "POST",
            "/subscriptions",
            r#"{"name": "s", "endpointUrl": "http://127.0.0.1:9/", "endpointType": "Queue"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["error"].as_str().unwrap().contains("Queue"), "{body}");
        assert_eq!(call(&m, "GET", "/nothing", "").await.0, StatusCode::NOT_FOUND);
        assert_eq!(call(&m, "DELETE", "/clock", "").await.0, StatusCode::METHOD_NOT_ALLOWED);
    }

    #[tokio::test]
    async fn about_speed_and_empty_logs_are_served() {
        let m = management();
        assert_eq!(call(&m, "GET", "/", "").await.1["vaults"]["kv"], "https://127.0.0.1:1");
        let (status, body) = call(&m, "POST", "/clock/speed", r#"{"speed": 86400}"#).await;
        assert_eq!((status, body["speed"].as_f64()), (StatusCode::OK, Some(86_400.0)));
        assert_eq!(call(&m, "GET", "/deliveries", "").await.1, json!([]));
        assert_eq!(call(&m, "GET", "/dead-letters", "").await.1, json!([]));
    }
}
