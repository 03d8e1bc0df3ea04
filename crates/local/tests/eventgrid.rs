//! The Event Grid emulator against a real HTTP receiver on loopback: what arrives, when it is retried,
//! when it is given up on, and what the clock makes happen.

// Test helpers outside #[test] fns: a panic here is a failed test, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use keyturn_events::{Event, KeyVaultEventType, ObjectKind, Schema};
use keyturn_local::clock::Clock;
use keyturn_local::eventgrid::{EndpointType, EventGrid, EventGridOptions, ObjectChange, Subscription};
use serde_json::{Value, json};
use warp::Filter;
use warp::http::{HeaderMap, StatusCode};

const SETTLE: Duration = Duration::from_secs(20);

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }
    fn events(&self) -> Vec<Event> {
        let batch: Vec<Value> = serde_json::from_slice(&self.body).unwrap();
        batch.into_iter().map(|v| Event::from_value(v).unwrap()).collect()
    }
}

type Script = Arc<dyn Fn(&Received, usize) -> (StatusCode, Value) + Send + Sync>;

/// An HTTP endpoint on loopback that records every request and answers as `script` says (given the request
/// and how many requests came before it).
struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start(script: impl Fn(&Received, usize) -> (StatusCode, Value) + Send + Sync + 'static) -> Self {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let script: Script = Arc::new(script);
        let recorder = got.clone();
        let route = warp::method().and(warp::header::headers_cloned()).and(warp::body::bytes()).map(
            move |method: warp::http::Method, headers: HeaderMap, body: bytes::Bytes| {
                let received = Received { method: method.to_string(), headers, body: body.to_vec() };
                let n = {
                    let mut got = recorder.lock().unwrap();
                    got.push(received.clone());
                    got.len() - 1
                };
                let (status, reply) = script(&received, n);
                let mut response = warp::reply::with_status(warp::reply::json(&reply), status).into_response();
                if received.method == "OPTIONS" {
                    response.headers_mut().insert("WebHook-Allowed-Origin", "eventgrid.azure.net".parse().unwrap());
                }
                response
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(warp::serve(route).incoming(listener).run());
        Self { addr, got }
    }

    fn url(&self) -> url::Url {
        url::Url::parse(&format!("http://{}/api/events", self.addr)).unwrap()
    }

    fn posts(&self) -> Vec<Received> {
        self.got.lock().unwrap().iter().filter(|r| r.method == "POST").cloned().collect()
    }

    fn delivered_types(&self) -> Vec<String> {
        self.posts().iter().flat_map(Received::events).map(|e| e.event_type().to_owned()).collect()
    }
}

use warp::Reply;

fn ok() -> (StatusCode, Value) {
    (StatusCode::OK, json!({}))
}

fn start() -> DateTime<Utc> {
    DateTime::from_timestamp(1_750_000_000, 0).unwrap()
}

fn fast() -> EventGridOptions {
    EventGridOptions { time_scale: 0.001, ..EventGridOptions::default() }
}

fn new_secret(name: &str, version: &str, exp_days: Option<i64>) -> ObjectChange {
    ObjectChange {
        vault: "kv-one".into(),
        kind: ObjectKind::Secret,
        name: name.into(),
        version: version.into(),
        not_before: None,
        expires: exp_days.map(|d| start() + TimeDelta::days(d)),
        new_version: true,
    }
}

fn azure_function(receiver: &Receiver, name: &str) -> Subscription {
    Subscription::new(name, receiver.url(), EndpointType::AzureFunction)
}

#[tokio::test]
async fn a_new_version_is_delivered_as_event_grid_would() {
    let receiver = Receiver::start(|_, _| ok()).await;
    let grid = EventGrid::start(Clock::starting_at(start()), fast());
    grid.subscribe(azure_function(&receiver, "keyturn-new-version")).await.unwrap();

    grid.observe(new_secret("db-password", "0123456789abcdef0123456789abcdef", Some(90)));
    assert!(grid.settled(SETTLE).await);

    let posts = receiver.posts();
    assert_eq!(posts.len(), 1);
    let post = &posts[0];
    assert_eq!(post.header("aeg-event-type"), "Notification");
    assert_eq!(post.header("aeg-delivery-count"), "0");
    assert_eq!(post.header("aeg-subscription-name"), "KEYTURN-NEW-VERSION");
    assert!(post.header("content-type").starts_with("application/json"));
    let body: Value = serde_json::from_slice(&post.body).unwrap();
    assert!(body.is_array(), "Event Grid always posts an array");
    let event = &post.events()[0];
    let kv = event.key_vault().unwrap();
    assert_eq!(kv.event_type, KeyVaultEventType::SecretNewVersionCreated);
    assert_eq!(
        kv.object.id().as_str(),
        "https://kv-one.vault.azure.net/secrets/db-password/0123456789abcdef0123456789abcdef"
    );
    assert_eq!(kv.object.expires(), Some(start() + TimeDelta::days(90)));
    assert_eq!(event.subject, "db-password");
    assert!(event.source.ends_with("/providers/Microsoft.KeyVault/vaults/kv-one"));
    let lag = event.time.unwrap() - start();
    assert!(lag >= TimeDelta::zero() && lag < TimeDelta::seconds(5), "event time is the clock's time, off by {lag}");
}

#[tokio::test]
async fn cloud_events_subscriptions_get_cloud_events() {
    let receiver = Receiver::start(|_, _| ok()).await;
    let grid = EventGrid::start(Clock::starting_at(start()), fast());
    grid.subscribe(azure_function(&receiver, "ce").schema(Schema::CloudEvents)).await.unwrap();
    grid.observe(new_secret("a", "v1", None));
    assert!(grid.settled(SETTLE).await);
    let post = &receiver.posts()[0];
    assert!(post.header("content-type").starts_with("application/cloudevents-batch+json"));
    let body: Value = serde_json::from_slice(&post.body).unwrap();
    assert_eq!(body[0]["specversion"], "1.0");
    assert_eq!(post.events()[0].schema, Schema::CloudEvents);
}

#[tokio::test]
async fn filters_pick_event_types_and_subjects() {
    let receiver = Receiver::start(|_, _| ok()).await;
    let grid = EventGrid::start(Clock::starting_at(start()), fast());
    grid.subscribe(
        azure_function(&receiver, "canary")
            .event_types([KeyVaultEventType::SecretNewVersionCreated.as_str()])
            .subject_begins_with("keyturn-canary"),
    )
    .await
    .unwrap();
    grid.observe(new_secret("db-password", "v1", None));
    grid.observe(new_secret("KEYTURN-CANARY", "v1", None));
    grid.observe(ObjectChange { kind: ObjectKind::Key, ..new_secret("keyturn-canary-key", "v1", None) });
    assert!(grid.settled(SETTLE).await);
    let subjects: Vec<String> = receiver.posts().iter().flat_map(Received::events).map(|e| e.subject).collect();
    assert_eq!(subjects, ["KEYTURN-CANARY"]);
}

#[tokio::test]
async fn the_clock_brings_near_expiry_then_expired_for_the_current_version_only() {
    let receiver = Receiver::start(|_, _| ok()).await;
    let clock = Clock::starting_at(start());
    let grid = EventGrid::start(clock.clone(), fast());
    grid.subscribe(
        azure_function(&receiver, "expiry")
            .event_types([KeyVaultEventType::SecretNearExpiry.as_str(), KeyVaultEventType::SecretExpired.as_str()]),
    )
    .await
    .unwrap();
    grid.observe(new_secret("rotated", "old", Some(31)));
    grid.observe(new_secret("rotated", "new", Some(120)));
    grid.observe(new_secret("kept", "v1", Some(31)));

    clock.advance(Duration::from_secs(86_400));
    wait_for(|| receiver.posts().len() == 1).await;
    assert!(grid.settled(SETTLE).await);
    let event = &receiver.posts()[0].events()[0];
    assert_eq!(event.event_type(), KeyVaultEventType::SecretNearExpiry.as_str());
    assert_eq!(event.key_vault().unwrap().object.version(), Some("v1"));
    assert_eq!(
        event.time.unwrap().date_naive(),
        (start() + TimeDelta::days(1)).date_naive(),
        "event time is clock time"
    );

    clock.advance(Duration::from_secs(30 * 86_400));
    wait_for(|| receiver.posts().len() == 2).await;
    assert_eq!(receiver.delivered_types()[1], KeyVaultEventType::SecretExpired.as_str());

    // Nothing more, however far the clock goes, until the new version's own deadlines.
    clock.advance(Duration::from_secs(10 * 86_400));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.posts().len(), 2);
}

#[tokio::test]
async fn a_fast_clock_reaches_deadlines_without_jumps() {
    let receiver = Receiver::start(|_, _| ok()).await;
    let clock = Clock::starting_at(start());
    let grid = EventGrid::start(clock.clone(), fast());
    grid.subscribe(azure_function(&receiver, "near").event_types([KeyVaultEventType::SecretNearExpiry.as_str()]))
        .await
        .unwrap();
    // Due in 30 days and an hour: NearExpiry is an hour of event time away.
    let mut soon = new_secret("soon", "v1", None);
    soon.expires = Some(start() + TimeDelta::days(30) + TimeDelta::hours(1));
    grid.observe(soon);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(receiver.posts().is_empty(), "not due yet at real speed");
    // An hour of event time per 100 ms.
    clock.set_speed(36_000.0);
    wait_for(|| receiver.posts().len() == 1).await;
    assert_eq!(receiver.delivered_types(), [KeyVaultEventType::SecretNearExpiry.as_str()]);
}

#[tokio::test]
async fn failures_are_retried_on_the_scaled_schedule_until_delivered() {
    let receiver =
        Receiver::start(|_, n| if n < 2 { (StatusCode::INTERNAL_SERVER_ERROR, json!({})) } else { ok() }).await;
    let grid = EventGrid::start(Clock::starting_at(start()), fast());
    grid.subscribe(azure_function(&receiver, "retry")).await.unwrap();
    let began = std::time::Instant::now();
    grid.observe(new_secret("a", "v1", None));
    assert!(grid.settled(SETTLE).await);
    let posts = receiver.posts();
    assert_eq!(posts.len(), 3);
    assert_eq!(posts.iter().map(|p| p.header("aeg-delivery-count").to_owned()).collect::<Vec<_>>(), ["0", "1", "2"]);
    let ids: Vec<String> = posts.iter().map(|p| p.events()[0].id.clone()).collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "a redelivery carries the same event id");
    // 10 s + 30 s of event time at 1/1000 scale.
    assert!(began.elapsed() >= Duration::from_millis(40), "{:?}", began.elapsed());
    let outcomes: Vec<String> = grid.attempts().iter().map(|a| a.outcome.clone()).collect();
    assert_eq!(outcomes, ["GenericError", "GenericError", "Delivered"]);
    assert!(grid.dead_letters().is_empty());
}

#[tokio::test]
async fn a_bad_request_is_dead_lettered_at_once_with_the_services_record() {
    let receiver = Receiver::start(|_, _| (StatusCode::BAD_REQUEST, json!({}))).await;
    let dir = tempfile::tempdir().unwrap();
    let grid = EventGrid::start(Clock::starting_at(start()), fast());
    grid.subscribe(azure_function(&receiver, "bad").dead_letter_dir(dir.path())).await.unwrap();
    grid.observe(new_secret("a", "v1", None));
    assert!(grid.settled(SETTLE).await);

    assert_eq!(receiver.posts().len(), 1, "400 is never retried");
    let letters = grid.dead_letters();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].dead_letter_reason, "UndeliverableDueToHttpBadRequest");
    assert_eq!(letters[0].last_http_status_code, Some(400));

    let files = files_under(dir.path());
    assert_eq!(files.len(), 1);
    assert!(files[0].starts_with(dir.path().join("BAD")), "{:?}", files[0]);
    let blob: Value = serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap();
    let record = &blob[0];
    assert_eq!(record["deadLetterReason"], "UndeliverableDueToHttpBadRequest");
    assert_eq!(record["deliveryAttempts"], 1);
    assert_eq!(record["lastDeliveryOutcome"], "BadRequest");
    assert_eq!(record["lastHttpStatusCode"], 400);
    assert!(record["publishTime"].is_string() && record["lastDeliveryAttemptTime"].is_string());
    assert_eq!(record["eventType"], KeyVaultEventType::SecretNewVersionCreated.as_str());
}

#[tokio::test]
async fn unauthorized_is_final_for_webhooks_only() {
    let receiver = Receiver::start(|r, _| {
        if r.header("aeg-event-type") == "SubscriptionValidation" {
            validation_answer(r)
        } else {
            (StatusCode::UNAUTHORIZED, json!({}))
        }
    })
    .await;
    let grid = EventGrid::start(Clock::starting_at(start()), fast());
    grid.subscribe(Subscription::new("hook", receiver.url(), EndpointType::Webhook)).await.unwrap();
    grid.subscribe(azure_function(&receiver, "func").max_delivery_attempts(3)).await.unwrap();
    grid.observe(new_secret("a", "v1", None));
    assert!(grid.settled(SETTLE).await);
    let reasons: HashMap<String, (String, u32)> = grid
        .dead_letters()
        .into_iter()
        .map(|l| (l.subscription, (l.dead_letter_reason, l.delivery_attempts)))
        .collect();
    assert_eq!(reasons["hook"], ("UndeliverableDueToHttpUnauthorized".to_owned(), 1));
    assert_eq!(reasons["func"], ("MaxDeliveryAttemptsExceeded".to_owned(), 3));
}

#[tokio::test]
async fn an_endpoint_that_is_down_exhausts_the_time_to_live() {
    // Nothing listens on this port once the listener is dropped: every attempt is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = url::Url::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
    let grid = EventGrid::start(Clock::starting_at(start()), fast());
    // 10 minutes to live: attempts at 0, 10 s, 40 s, 100 s, 400 s; the next (at 1000 s) is past the TTL.
    grid.subscribe(Subscription::new("down", url, EndpointType::AzureFunction).event_ttl(Duration::from_secs(600)))
        .await
        .unwrap();
    grid.observe(new_secret("a", "v1", None));
    assert!(grid.settled(SETTLE).await);
    let letter = &grid.dead_letters()[0];
    assert_eq!(letter.dead_letter_reason, "TimeToLiveExceeded");
    assert_eq!(letter.delivery_attempts, 5);
    assert_eq!(letter.last_delivery_outcome, "GenericError");
    assert_eq!(letter.last_http_status_code, None);
}

#[tokio::test]
async fn webhooks_must_pass_the_validation_handshake() {
    let good = Receiver::start(|r, _| validation_answer(r)).await;
    let grid = EventGrid::start(Clock::starting_at(start()), fast());
    grid.subscribe(Subscription::new("good", good.url(), EndpointType::Webhook)).await.unwrap();
    assert_eq!(good.got.lock().unwrap()[0].header("aeg-event-type"), "SubscriptionValidation");

    let wrong_code = Receiver::start(|_, _| (StatusCode::OK, json!({"validationResponse": "not-the-code"}))).await;
    let err = grid.subscribe(Subscription::new("wrong", wrong_code.url(), EndpointType::Webhook)).await.unwrap_err();
    assert!(err.to_string().contains("validation handshake"), "{err}");

    let accepted_only = Receiver::start(|_, _| (StatusCode::ACCEPTED, json!({}))).await;
    assert!(grid.subscribe(Subscription::new("202", accepted_only.url(), EndpointType::Webhook)).await.is_err());

    // CloudEvents webhooks: the OPTIONS handshake (the receiver answers with WebHook-Allowed-Origin).
    let ce = Receiver::start(|_, _| ok()).await;
    grid.subscribe(Subscription::new("ce", ce.url(), EndpointType::Webhook).schema(Schema::CloudEvents)).await.unwrap();
    let options = ce.got.lock().unwrap()[0].clone();
    assert_eq!((options.method.as_str(), options.header("webhook-request-origin")), ("OPTIONS", "eventgrid.azure.net"));

    let err = grid
        .subscribe(Subscription::new("bad-limits", good.url(), EndpointType::Webhook).max_delivery_attempts(0))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("maxDeliveryAttempts"), "{err}");
}

#[tokio::test]
async fn duplicates_can_be_injected() {
    let receiver = Receiver::start(|_, _| ok()).await;
    let options = EventGridOptions { duplicate_share: 1.0, ..fast() };
    let grid = EventGrid::start(Clock::starting_at(start()), options);
    grid.subscribe(azure_function(&receiver, "dup")).await.unwrap();
    grid.observe(new_secret("a", "v1", None));
    assert!(grid.settled(SETTLE).await);
    wait_for(|| receiver.posts().len() == 2).await;
    let ids: Vec<String> = receiver.posts().iter().map(|p| p.events()[0].id.clone()).collect();
    assert_eq!(ids[0], ids[1]);
}

#[tokio::test]
async fn reordering_can_be_injected() {
    let receiver = Receiver::start(|_, _| ok()).await;
    let options = EventGridOptions { reorder_window: Duration::from_millis(300), ..fast() };
    let grid = EventGrid::start(Clock::starting_at(start()), options);
    grid.subscribe(azure_function(&receiver, "order")).await.unwrap();
    let names: Vec<String> = (0..20).map(|i| format!("s{i:02}")).collect();
    for name in &names {
        grid.observe(new_secret(name, "v1", None));
    }
    assert!(grid.settled(SETTLE).await);
    let arrived: Vec<String> = receiver.posts().iter().flat_map(Received::events).map(|e| e.subject).collect();
    let mut sorted = arrived.clone();
    sorted.sort();
    assert_eq!(sorted, names, "every event arrives");
    assert_ne!(arrived, names, "but not in the order published");
}

#[tokio::test]
async fn batches_hold_up_to_max_events_per_batch() {
    // The first delivery is slow, so the rest queue up behind it and leave in batches.
    let receiver = Receiver::start(|_, n| {
        if n == 0 {
            std::thread::sleep(Duration::from_millis(200));
        }
        ok()
    })
    .await;
    let grid = EventGrid::start(Clock::starting_at(start()), fast());
    grid.subscribe(azure_function(&receiver, "batch").max_events_per_batch(5)).await.unwrap();
    for i in 0..12 {
        grid.observe(new_secret(&format!("s{i}"), "v1", None));
    }
    assert!(grid.settled(SETTLE).await);
    let sizes: Vec<usize> = receiver.posts().iter().map(|p| p.events().len()).collect();
    assert_eq!(sizes.iter().sum::<usize>(), 12);
    assert!(sizes.iter().all(|s| *s <= 5), "{sizes:?}");
    assert!(sizes.len() < 12, "some events shared a batch: {sizes:?}");
}

fn validation_answer(r: &Received) -> (StatusCode, Value) {
    let batch: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    match keyturn_events::delivery::validation_response(batch.as_array().map(Vec::as_slice).unwrap_or_default()) {
        Ok(answer) => (StatusCode::OK, answer),
        Err(_) => ok(),
    }
}

async fn wait_for(mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + SETTLE;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "condition not met within {SETTLE:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { out.extend(files_under(&path)) } else { out.push(path) }
    }
    out
}
