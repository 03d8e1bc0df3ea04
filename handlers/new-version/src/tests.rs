//! Every rule of the crate docs against the in-memory fakes: no process, no socket.

use keyturn_deps::testing::{World, event};
use keyturn_events::KeyVaultEventType::{self, *};
use keyturn_host::{HandlerError, Outcome, Status};
use keyturn_vault::Collection;

use crate::handle;

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
    handle(event("e1", event_type, "kv-one", name, version), world.deps.clone()).await
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
    let foreign = handle(event("e1", SecretNewVersionCreated, "kv-dr", "db", "v1"), fresh.deps.clone()).await.unwrap();
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
