//! Every rule of the crate docs against the in-memory fakes: no process, no socket.

use keyturn_deps::testing::{World, event};
use keyturn_events::KeyVaultEventType::{self, *};
use keyturn_host::{HandlerError, Outcome, Status};
use keyturn_vault::Collection;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use keyturn_config::Consumer;
use keyturn_rotation::arm::ArmCallError;

use crate::consumers::{ConsumerRefresh, InProcessRecord, Refresher};
use crate::{NewVersion, handle};

const CHANNELS: &str = "slack://hooks.slack.com/services/T/B/X";
const SETTINGS: &[(&str, &str)] = &[
    ("KEYTURN_VAULTS", "kv-one=https://127.0.0.1:9,kv-two=https://127.0.0.1:9"),
    ("KEYTURN_MIRROR_VAULTS", "kv-dr=https://127.0.0.1:9"),
    ("KEYTURN_CANARY_SECRET", "keyturn-canary"),
];

fn world() -> World {
    World::new(SETTINGS, CHANNELS).unwrap()
}

async fn deliver(
    world: &World,
    event_type: KeyVaultEventType,
    name: &str,
    version: &str,
) -> Result<Outcome, HandlerError> {
    handle(event("e1", event_type, "kv-one", name, version), handler(world, None)).await
}

fn handler(world: &World, consumers: Option<ConsumerRefresh>) -> Arc<NewVersion> {
    Arc::new(NewVersion { deps: world.deps.clone(), consumers })
}

#[tokio::test]
async fn a_new_version_without_mirrors_is_notified() {
    let world = world();
    world.vault.add("kv-one", Collection::Secrets, "db", "v1", &[]);
    let outcome = deliver(&world, SecretNewVersionCreated, "db", "v1").await.unwrap();
    assert_eq!((outcome.status, outcome.action.as_deref()), (Status::Done, Some("notified")));
    assert_eq!(outcome.notified, ["slack+https://hooks.slack.com"]);
    assert_eq!(world.notifier.sent().len(), 1);
}

#[tokio::test]
async fn a_mirrored_secret_is_copied_once_into_allowed_vaults_and_tagged_as_a_replica() {
    let world = world();
    world.vault.add("kv-one", Collection::Secrets, "app", "v1", &[("KeyturnMirror", "kv-two, kv-dr")]);
    let outcome = deliver(&world, SecretNewVersionCreated, "app", "v1").await.unwrap();
    assert_eq!((outcome.status, outcome.action.as_deref()), (Status::Done, Some("mirrored")));
    for mirror in ["kv-two", "kv-dr"] {
        let copies = world.vault.versions_of(mirror, Collection::Secrets, "app");
        assert_eq!(copies.len(), 1, "{mirror}");
        assert_eq!(copies[0].tags.get("KeyturnReplicaOf").map(String::as_str), Some("kv-one/app/v1"));
        assert_eq!(copies[0].value.expose(), "value-of-v1");
    }
    // A redelivery finds both copies made.
    let again = deliver(&world, SecretNewVersionCreated, "app", "v1").await.unwrap();
    assert_eq!(again.action.as_deref(), Some("notified"));
    assert!(again.message.contains("Already mirrored in kv-two"), "{}", again.message);
    assert_eq!(world.vault.count("kv-two", Collection::Secrets, "app"), 1);
}

#[tokio::test]
async fn a_mirror_outside_the_lists_is_refused_and_nothing_is_sent_to_it() {
    let world = world();
    world.vault.add("kv-one", Collection::Secrets, "app", "v1", &[("KeyturnMirror", "kv-evil,kv-one")]);
    let outcome = deliver(&world, SecretNewVersionCreated, "app", "v1").await.unwrap();
    assert_eq!((outcome.status, outcome.action.as_deref()), (Status::Rejected, Some("mirror-refused")));
    assert!(
        outcome.message.contains("'kv-evil' is not in KEYTURN_VAULTS or KEYTURN_MIRROR_VAULTS"),
        "{}",
        outcome.message
    );
    assert!(outcome.message.contains("'kv-one' is the source's own vault"), "{}", outcome.message);
    assert!(!world.vault.calls().iter().any(|call| call.contains("kv-evil")));
}

#[tokio::test]
async fn replicas_late_events_keys_and_the_canary_are_never_copied() {
    let world = world();
    world.vault.add(
        "kv-one",
        Collection::Secrets,
        "copy",
        "r1",
        &[("KeyturnReplicaOf", "kv-two/copy/x"), ("KeyturnMirror", "kv-two")],
    );
    let replica = deliver(&world, SecretNewVersionCreated, "copy", "r1").await.unwrap();
    assert!(replica.message.contains("Not mirrored onward"), "{}", replica.message);

    world.vault.add("kv-one", Collection::Secrets, "app", "v1", &[("KeyturnMirror", "kv-two")]);
    world.vault.add("kv-one", Collection::Secrets, "app", "v2", &[("KeyturnMirror", "kv-two")]);
    let late = deliver(&world, SecretNewVersionCreated, "app", "v1").await.unwrap();
    assert!(late.message.contains("a newer version (v2) exists"), "{}", late.message);

    world.vault.add("kv-one", Collection::Keys, "signing", "k1", &[("KeyturnMirror", "kv-two")]);
    let key = deliver(&world, KeyNewVersionCreated, "signing", "k1").await.unwrap();
    assert_eq!(key.action.as_deref(), Some("notified"));
    assert!(key.message.contains("key material cannot be exported"), "{}", key.message);

    let canary = deliver(&world, SecretNewVersionCreated, "keyturn-canary", "c1").await.unwrap();
    assert_eq!((canary.status, canary.action.as_deref()), (Status::Skipped, Some("canary")));
    assert_eq!(world.vault.count("kv-two", Collection::Secrets, "app"), 0);
    assert_eq!(world.vault.count("kv-two", Collection::Secrets, "copy"), 0);
}

#[tokio::test]
async fn names_outside_the_filter_are_not_notified() {
    let mut settings = SETTINGS.to_vec();
    settings.push(("KEYTURN_NOTIFY_NEW_VERSION_NAMES", "db-*"));
    let world = World::new(&settings, CHANNELS).unwrap();
    world.vault.add("kv-one", Collection::Secrets, "app", "v1", &[]);
    let outcome = deliver(&world, SecretNewVersionCreated, "app", "v1").await.unwrap();
    assert_eq!((outcome.status, outcome.action.as_deref()), (Status::Done, Some("not-notified")));
    assert!(world.notifier.sent().is_empty());
}

#[tokio::test]
async fn failures_are_retried_and_foreign_events_touch_nothing() {
    let world = world();
    world.vault.add("kv-one", Collection::Secrets, "db", "v1", &[]);
    world.notifier.refuse(true);
    assert!(deliver(&world, SecretNewVersionCreated, "db", "v1").await.unwrap_err().is_retryable());
    world.notifier.refuse(false);
    world.vault.fail_with(Some(429));
    assert!(deliver(&world, SecretNewVersionCreated, "db", "v1").await.unwrap_err().is_retryable());
    world.vault.fail_with(None);

    let fresh = self::world();
    let foreign =
        handle(event("e1", SecretNewVersionCreated, "kv-dr", "db", "v1"), handler(&fresh, None)).await.unwrap();
    assert_eq!((foreign.status, foreign.action.as_deref()), (Status::Rejected, Some("not-allowed")));
    let other = deliver(&fresh, SecretExpired, "db", "v1").await.unwrap();
    assert_eq!(other.action.as_deref(), Some("not-served"));
    assert!(fresh.vault.calls().is_empty());
}

#[tokio::test]
async fn a_destination_secret_that_is_not_a_replica_of_this_source_is_never_overwritten() {
    use keyturn_notify::Severity;
    let world = world();
    // kv-two's own writers put a real value there; a kv-one writer tags a same-named secret to mirror into it.
    world.vault.add("kv-two", Collection::Secrets, "prod-db", "theirs", &[]);
    // A replica of another source is not this source's either.
    world.vault.add("kv-dr", Collection::Secrets, "prod-db", "other", &[("KeyturnReplicaOf", "kv-two/prod-db/x")]);
    world.vault.add("kv-one", Collection::Secrets, "prod-db", "v1", &[("KeyturnMirror", "kv-two,kv-dr")]);
    let outcome = deliver(&world, SecretNewVersionCreated, "prod-db", "v1").await.unwrap();
    assert_eq!((outcome.status, outcome.action.as_deref()), (Status::Rejected, Some("mirror-refused")));
    for mirror in ["kv-two", "kv-dr"] {
        assert!(
            outcome
                .message
                .contains(&format!("'{mirror}' already holds a 'prod-db' that is not a replica of kv-one/prod-db")),
            "{}",
            outcome.message
        );
        assert_eq!(world.vault.count(mirror, Collection::Secrets, "prod-db"), 1, "{mirror}");
    }
    let sent = world.notifier.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].severity, Severity::Warning);

    // The source's own replica is replaced by the next version, as before.
    world.vault.add("kv-one", Collection::Secrets, "app", "v1", &[("KeyturnMirror", "kv-two")]);
    deliver(&world, SecretNewVersionCreated, "app", "v1").await.unwrap();
    world.vault.add("kv-one", Collection::Secrets, "app", "v2", &[("KeyturnMirror", "kv-two")]);
    let next = deliver(&world, SecretNewVersionCreated, "app", "v2").await.unwrap();
    assert_eq!((next.status, next.action.as_deref()), (Status::Done, Some("mirrored")));
    assert_eq!(world.vault.count("kv-two", Collection::Secrets, "app"), 2);
}

#[tokio::test]
async fn a_replica_never_carries_the_tags_that_ask_keyturn_to_act() {
    let world = world();
    let tags = &[
        ("KeyturnMirror", "kv-two"),
        ("KeyturnRotation", "generated"),
        ("ValidityPeriodDays", "30"),
        ("KeyturnExpiredAction", "disable"),
        ("owner", "team-a"),
    ];
    world.vault.add("kv-one", Collection::Secrets, "db", "v1", tags);
    deliver(&world, SecretNewVersionCreated, "db", "v1").await.unwrap();
    let copy = world.vault.versions_of("kv-two", Collection::Secrets, "db").pop().unwrap();
    assert!(!copy.tags.contains_key("KeyturnRotation") && !copy.tags.contains_key("KeyturnExpiredAction"));
    assert_eq!(copy.tags.get("owner").map(String::as_str), Some("team-a"));
    assert_eq!(copy.tags.get("KeyturnReplicaOf").map(String::as_str), Some("kv-one/db/v1"));
}

#[tokio::test]
async fn with_routes_a_tag_may_only_pick_the_destinations_routed_for_its_source_and_name() {
    let mut settings = SETTINGS.to_vec();
    settings.push(("KEYTURN_MIRROR_ROUTES", "kv-one/app-*=kv-dr"));
    let world = World::new(&settings, CHANNELS).unwrap();
    // kv-two is reachable (KEYTURN_VAULTS) but no route gives it to kv-one; other-db is no app-* name.
    world.vault.add("kv-one", Collection::Secrets, "app-web", "v1", &[("KeyturnMirror", "kv-dr,kv-two")]);
    world.vault.add("kv-one", Collection::Secrets, "other-db", "v1", &[("KeyturnMirror", "kv-dr")]);
    let outcome = deliver(&world, SecretNewVersionCreated, "app-web", "v1").await.unwrap();
    assert_eq!((outcome.status, outcome.action.as_deref()), (Status::Rejected, Some("mirror-refused")));
    assert!(
        outcome.message.contains("'kv-two' is not a destination KEYTURN_MIRROR_ROUTES gives kv-one/app-web"),
        "{}",
        outcome.message
    );
    assert_eq!(world.vault.count("kv-dr", Collection::Secrets, "app-web"), 1, "the routed destination got its copy");
    assert_eq!(world.vault.count("kv-two", Collection::Secrets, "app-web"), 0);
    let unrouted = deliver(&world, SecretNewVersionCreated, "other-db", "v1").await.unwrap();
    assert_eq!(unrouted.status, Status::Rejected, "{unrouted:?}");
    assert_eq!(world.vault.count("kv-dr", Collection::Secrets, "other-db"), 0);
    assert!(!world.vault.calls().iter().any(|call| call.contains("kv-two")), "{:?}", world.vault.calls());
}

/// A Resource Manager stand-in: per consumer, how many calls fail first (with the status given), and how many
/// calls each consumer received.
#[derive(Debug, Default)]
struct FakeRefresher {
    failures: Mutex<HashMap<String, (u32, u16)>>,
    calls: Mutex<HashMap<String, u32>>,
}

impl FakeRefresher {
    fn failing(self, id: &str, times: u32, status: u16) -> Self {
        self.failures.lock().unwrap().insert(id.to_ascii_lowercase(), (times, status));
        self
    }

    fn calls(&self, id: &str) -> u32 {
        self.calls.lock().unwrap().get(&id.to_ascii_lowercase()).copied().unwrap_or(0)
    }
}

impl Refresher for FakeRefresher {
    fn refresh<'a>(&'a self, consumer: &'a Consumer) -> BoxFuture<'a, Result<String, ArmCallError>> {
        *self.calls.lock().unwrap().entry(consumer.id().to_owned()).or_default() += 1;
        let mut failures = self.failures.lock().unwrap();
        let result = match failures.get_mut(consumer.id()) {
            Some((left, status)) if *left > 0 => {
                *left -= 1;
                let status = *status;
                Err(ArmCallError {
                    message: format!("HTTP {status}"),
                    status: Some(status),
                    code: None,
                    retryable: status >= 500,
                })
            }
            _ => Ok("done".to_owned()),
        };
        Box::pin(async move { result })
    }
}

const WEB: &str = "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Web/sites/web-shop";
const APP: &str = "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.App/containerApps/orders";
const GONE: &str = "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Web/sites/gone";

fn consumer_world() -> World {
    let consumers = format!("kv-one/app-*={WEB},{APP}; kv-one/app-web={GONE}");
    let mut settings = SETTINGS.to_vec();
    settings.push(("KEYTURN_CONSUMERS", &consumers));
    World::new(&settings, CHANNELS).unwrap()
}

#[tokio::test]
async fn a_consumer_that_fails_twice_is_refreshed_by_redeliveries_and_exactly_once_after_success() {
    let world = consumer_world();
    world.vault.add("kv-one", Collection::Secrets, "app-api", "v1", &[]);
    let fake = Arc::new(FakeRefresher::default().failing(APP, 2, 503));
    let refresh = ConsumerRefresh { refresher: fake.clone(), record: Arc::new(InProcessRecord::default()) };
    let handler = handler(&world, Some(refresh));
    let deliver = || handle(event("e1", SecretNewVersionCreated, "kv-one", "app-api", "v1"), handler.clone());

    for attempt in 1..=2 {
        let error = deliver().await.unwrap_err();
        assert!(error.is_retryable() && error.message().contains("must be retried"), "{attempt}: {error:?}");
        assert!(world.notifier.sent().is_empty(), "the channels are told once every consumer is done");
    }
    let outcome = deliver().await.unwrap();
    assert_eq!(outcome.status, Status::Done);
    let results: Vec<(&str, &str)> = outcome.targets.iter().map(|t| (t.target.as_str(), t.result.as_str())).collect();
    assert_eq!(
        results,
        [(WEB.to_ascii_lowercase().as_str(), "already-refreshed"), (APP.to_ascii_lowercase().as_str(), "refreshed")]
    );
    assert_eq!((fake.calls(WEB), fake.calls(APP)), (1, 3), "the web app once; the container app until it succeeded");
    // A duplicate delivery after success calls nobody.
    deliver().await.unwrap();
    assert_eq!((fake.calls(WEB), fake.calls(APP)), (1, 3));
    assert_eq!(world.notifier.sent().len(), 2);
    // A new version is a new refresh.
    world.vault.add("kv-one", Collection::Secrets, "app-api", "v2", &[]);
    handle(event("e2", SecretNewVersionCreated, "kv-one", "app-api", "v2"), handler.clone()).await.unwrap();
    assert_eq!((fake.calls(WEB), fake.calls(APP)), (2, 4));
}

#[tokio::test]
async fn a_consumer_refused_for_good_is_reported_and_warned_without_holding_the_others_back() {
    use keyturn_notify::Severity;
    let world = consumer_world();
    world.vault.add("kv-one", Collection::Secrets, "app-web", "v1", &[]);
    world.vault.add("kv-one", Collection::Secrets, "db", "v1", &[]);
    let fake = Arc::new(FakeRefresher::default().failing(GONE, 1, 404));
    let handler = handler(
        &world,
        Some(ConsumerRefresh { refresher: fake.clone(), record: Arc::new(InProcessRecord::default()) }),
    );
    let outcome =
        handle(event("e1", SecretNewVersionCreated, "kv-one", "app-web", "v1"), handler.clone()).await.unwrap();
    assert_eq!(outcome.status, Status::Done);
    let failed: Vec<&str> =
        outcome.targets.iter().filter(|t| t.result == "failed").map(|t| t.target.as_str()).collect();
    assert_eq!(failed, [GONE.to_ascii_lowercase()]);
    assert_eq!(outcome.targets.iter().filter(|t| t.result == "refreshed").count(), 2);
    assert!(outcome.message.contains("Consumers that failed"), "{}", outcome.message);
    assert_eq!(world.notifier.sent()[0].severity, Severity::Warning);
    // A name no entry covers has no consumer.
    let other = handle(event("e2", SecretNewVersionCreated, "kv-one", "db", "v1"), handler).await.unwrap();
    assert!(other.targets.is_empty());
    assert_eq!(fake.calls(WEB), 1);
}
