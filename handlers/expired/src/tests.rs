//! Every row of the decision table (crate docs) against the in-memory fakes: no process, no socket.

use keyturn_deps::testing::{World, event};
use keyturn_events::KeyVaultEventType::{self, *};
use keyturn_host::{HandlerError, Outcome, Status};
use keyturn_notify::{Action, Severity};
use keyturn_vault::Collection;

use crate::handle;

const CHANNELS: &str = "slack://hooks.slack.com/services/T/B/X";

fn world() -> World {
    World::new(&[], CHANNELS).unwrap()
}

async fn deliver(
    world: &World,
    event_type: KeyVaultEventType,
    name: &str,
    version: &str,
) -> Result<Outcome, HandlerError> {
    handle(event("e1", event_type, "kv-one", name, version), world.deps.clone()).await
}

fn summary(world: &World) -> String {
    let sent = world.notifier.sent();
    assert_eq!(sent.last().map(|n| n.severity), Some(Severity::Critical), "{sent:?}");
    match &sent.last().unwrap().action {
        Action::Informed { summary } => summary.clone(),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn no_action_tag_notifies_at_critical_severity_and_changes_nothing() {
    let world = world();
    world.vault.add("kv-one", Collection::Secrets, "api", "v1", &[]);
    let outcome = deliver(&world, SecretExpired, "api", "v1").await.unwrap();
    assert_eq!((outcome.status, outcome.action.as_deref()), (Status::Done, Some("notified")));
    assert_eq!(outcome.notified, ["slack+https://hooks.slack.com"]);
    assert!(summary(&world).contains("is still enabled"));
    assert!(!world.vault.calls().iter().any(|call| call.starts_with("update_version")));
}

#[tokio::test]
async fn disable_disables_the_expired_version_only_and_only_once() {
    let world = world();
    world.vault.add("kv-one", Collection::Secrets, "api", "v1", &[("KeyturnExpiredAction", "disable")]);
    world.vault.add("kv-one", Collection::Secrets, "api", "v2", &[("KeyturnExpiredAction", "disable")]);
    let outcome = deliver(&world, SecretExpired, "api", "v1").await.unwrap();
    assert_eq!((outcome.status, outcome.action.as_deref()), (Status::Done, Some("disabled")));
    let versions = world.vault.versions_of("kv-one", Collection::Secrets, "api");
    assert_eq!((versions[0].enabled, versions[1].enabled), (false, true));
    assert!(summary(&world).contains("is disabled"));
    // A redelivery finds it disabled already.
    let again = deliver(&world, SecretExpired, "api", "v1").await.unwrap();
    assert_eq!(again.action.as_deref(), Some("notified"));
    assert!(again.message.contains("did not need to disable it"), "{}", again.message);
}

#[tokio::test]
async fn rotate_is_an_emergency_rotation_through_the_engine() {
    let world = world();
    let tags = &[("KeyturnExpiredAction", "rotate"), ("KeyturnRotation", "generated"), ("ValidityPeriodDays", "30")];
    world.vault.add("kv-one", Collection::Secrets, "db", "v1", tags);
    let outcome = deliver(&world, SecretExpired, "db", "v1").await.unwrap();
    assert_eq!((outcome.status, outcome.action.as_deref()), (Status::Done, Some("rotated")));
    let latest = world.vault.versions_of("kv-one", Collection::Secrets, "db").pop().unwrap();
    assert_eq!(outcome.version_after.as_deref(), Some(latest.version.as_str()));
    assert_eq!(outcome.version_before.as_deref(), Some("v1"));

    // Without a rotation policy the engine does nothing, and the message says someone must.
    world.vault.add("kv-one", Collection::Secrets, "bare", "b1", &[("KeyturnExpiredAction", "rotate")]);
    let outcome = deliver(&world, SecretExpired, "bare", "b1").await.unwrap();
    assert_eq!(outcome.action.as_deref(), Some("not-opted-in"));
    assert!(summary(&world).contains("someone must rotate it"));
}

#[tokio::test]
async fn a_wrong_tag_is_rejected_after_notifying() {
    let world = world();
    world.vault.add("kv-one", Collection::Keys, "k", "k1", &[("KeyturnExpiredAction", "delete")]);
    let outcome = deliver(&world, KeyExpired, "k", "k1").await.unwrap();
    assert_eq!((outcome.status, outcome.action.as_deref()), (Status::Rejected, Some("invalid-policy")));
    assert!(outcome.message.contains("KeyturnExpiredAction"), "{}", outcome.message);
    assert!(summary(&world).starts_with("keyturn did nothing"));
}

#[tokio::test]
async fn a_failing_vault_or_channel_is_retried() {
    let world = world();
    world.vault.add("kv-one", Collection::Secrets, "api", "v1", &[]);
    world.notifier.refuse(true);
    let error = deliver(&world, SecretExpired, "api", "v1").await.unwrap_err();
    assert!(error.is_retryable() && error.message().contains("notifying"), "{error}");
    world.notifier.refuse(false);
    world.vault.fail_with(Some(503));
    let error = deliver(&world, SecretExpired, "api", "v1").await.unwrap_err();
    assert!(error.is_retryable() && error.message().contains("reading the expired version"), "{error}");
}

#[tokio::test]
async fn a_foreign_vault_or_another_event_type_touches_nothing() {
    let world = world();
    let foreign = handle(event("e1", SecretExpired, "kv-evil", "api", "v1"), world.deps.clone()).await.unwrap();
    assert_eq!((foreign.status, foreign.action.as_deref()), (Status::Rejected, Some("not-allowed")));
    let other = deliver(&world, SecretNearExpiry, "api", "v1").await.unwrap();
    assert_eq!((other.status, other.action.as_deref()), (Status::Skipped, Some("not-served")));
    assert!(world.vault.calls().is_empty());
    assert!(world.notifier.sent().is_empty());
}

#[tokio::test]
async fn a_replica_is_never_disabled_or_rotated_whatever_its_tags_say() {
    let world = world();
    for action in ["disable", "rotate"] {
        let name = format!("copy-{action}");
        let tags = &[
            ("KeyturnExpiredAction", action),
            ("KeyturnRotation", "generated"),
            ("ValidityPeriodDays", "30"),
            ("KeyturnReplicaOf", "kv-two/copy/x"),
        ];
        world.vault.add("kv-one", Collection::Secrets, &name, "r1", tags);
        let outcome = deliver(&world, SecretExpired, &name, "r1").await.unwrap();
        assert_eq!((outcome.status, outcome.action.as_deref()), (Status::Done, Some("replica")), "{action}");
        assert!(summary(&world).contains("replica of kv-two/copy/x"), "{action}");
        let versions = world.vault.versions_of("kv-one", Collection::Secrets, &name);
        assert_eq!(versions.len(), 1, "{action}");
        assert!(versions[0].enabled, "{action}");
    }
    assert!(!world.vault.calls().iter().any(|call| call.starts_with("update_version")));
}
