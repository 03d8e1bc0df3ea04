//! Every row of the decision table (crate docs) against the in-memory fakes: no process, no socket.

use keyturn_deps::testing::{World, event};
use keyturn_events::KeyVaultEventType::{self, *};
use keyturn_host::{Outcome, Status};
use keyturn_notify::{Action, Severity};
use keyturn_vault::Collection;
use keyturn_vault::model::{CertificatePolicy, KeyRotationPolicy};

use crate::handle;

const CHANNELS: &str = "slack://hooks.slack.com/services/T/B/X";
const OPTED_IN: &[(&str, &str)] = &[("KeyturnRotation", "generated"), ("ValidityPeriodDays", "60")];
const ENABLED: &[(&str, &str)] = &[("KeyturnRotation", "enabled")];

fn world() -> World {
    World::new(&[], CHANNELS).unwrap()
}

async fn deliver(
    world: &World,
    event_type: KeyVaultEventType,
    name: &str,
    version: &str,
) -> Result<Outcome, keyturn_host::HandlerError> {
    handle(event("e1", event_type, "kv-one", name, version), world.deps.clone()).await
}

#[tokio::test]
async fn a_rotated_secret_or_key_is_done_and_info() {
    let world = world();
    world.vault.add("kv-one", Collection::Secrets, "db", "v1", OPTED_IN);
    let outcome = deliver(&world, SecretNearExpiry, "db", "v1").await.unwrap();
    assert_eq!((outcome.status, outcome.action.as_deref()), (Status::Done, Some("rotated")));
    let new = world.vault.versions_of("kv-one", Collection::Secrets, "db").pop().unwrap();
    assert_eq!(outcome.version_before.as_deref(), Some("v1"));
    assert_eq!(outcome.version_after.as_deref(), Some(new.version.as_str()));
    assert_eq!(outcome.notified, ["slack+https://hooks.slack.com"]);
    assert!(outcome.message.ends_with("; notified 1 channel"), "{}", outcome.message);
    let sent = world.notifier.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].severity, &sent[0].action), (Severity::Info, &Action::Rotated { new_version: new.version }));

    world.vault.add("kv-one", Collection::Keys, "signing", "k1", ENABLED);
    let outcome = deliver(&world, KeyNearExpiry, "signing", "k1").await.unwrap();
    assert_eq!((outcome.status, outcome.action.as_deref()), (Status::Done, Some("rotated")));
    assert_eq!(world.vault.count("kv-one", Collection::Keys, "signing"), 2);
}

#[tokio::test]
async fn a_started_certificate_renewal_is_done_and_info() {
    let world = world();
    world.vault.add("kv-one", Collection::Certificates, "tls", "c1", ENABLED);
    let outcome = deliver(&world, CertificateNearExpiry, "tls", "c1").await.unwrap();
    assert_eq!((outcome.status, outcome.action.as_deref()), (Status::Done, Some("renewal-started")));
    assert_eq!(world.notifier.sent()[0].severity, Severity::Info);
}

#[tokio::test]
async fn not_opted_in_is_skipped_and_a_warning() {
    let world = world();
    world.vault.add("kv-one", Collection::Secrets, "plain", "p1", &[]);
    let outcome = deliver(&world, SecretNearExpiry, "plain", "p1").await.unwrap();
    assert_eq!((outcome.status, outcome.action.as_deref()), (Status::Skipped, Some("not-opted-in")));
    assert_eq!(world.vault.count("kv-one", Collection::Secrets, "plain"), 1);
    let sent = world.notifier.sent();
    assert_eq!(sent[0].severity, Severity::Warning);
    assert!(matches!(&sent[0].action, Action::NotRotated { reason } if reason.contains("rotate it by hand")));
}

#[tokio::test]
async fn a_certificate_keyturn_cannot_renew_is_skipped_and_a_warning() {
    let world = world();
    world.vault.add("kv-one", Collection::Certificates, "imported", "c1", ENABLED);
    world.vault.set_certificate_policy(CertificatePolicy { issuer: Some("Unknown".into()), auto_renew: false }, None);
    let outcome = deliver(&world, CertificateNearExpiry, "imported", "c1").await.unwrap();
    assert_eq!((outcome.status, outcome.action.as_deref()), (Status::Skipped, Some("manual-action-due")));
    assert_eq!(world.notifier.sent()[0].severity, Severity::Warning);
}

#[tokio::test]
async fn left_to_key_vaults_own_policy_is_skipped_and_a_warning() {
    let world = world();
    world.vault.add("kv-one", Collection::Keys, "auto", "k1", ENABLED);
    world.vault.set_key_rotation(KeyRotationPolicy { rotates: true, trigger: Some("timeAfterCreate P90D".into()) });
    let outcome = deliver(&world, KeyNearExpiry, "auto", "k1").await.unwrap();
    assert_eq!((outcome.status, outcome.action.as_deref()), (Status::Skipped, Some("native-rotation")));
    let sent = world.notifier.sent();
    assert!(
        matches!(&sent[0].action, Action::NotRotated { reason } if reason.contains("Key Vault rotates it")),
        "{:?}",
        sent[0].action
    );
    assert!(!world.vault.calls().iter().any(|call| call.starts_with("rotate_key")));
}

#[tokio::test]
async fn a_permanent_failure_is_rejected_and_a_warning() {
    let world = world();
    world.vault.add("kv-one", Collection::Secrets, "broken", "b1", &[("KeyturnRotation", "generated")]);
    let error = deliver(&world, SecretNearExpiry, "broken", "b1").await.unwrap_err();
    assert!(!error.is_retryable());
    assert!(
        error.message().contains("ValidityPeriodDays") && error.message().ends_with("; notified 1 channel"),
        "{error}"
    );
    let sent = world.notifier.sent();
    assert!(matches!(&sent[0].action, Action::NotRotated { reason } if reason.contains("will not be retried")));
}

#[tokio::test]
async fn already_rotated_tells_again_only_what_keyturn_made_for_this_event() {
    let world = world();
    world.vault.add("kv-one", Collection::Secrets, "db", "v1", OPTED_IN);
    deliver(&world, SecretNearExpiry, "db", "v1").await.unwrap();
    // The redelivery of the same event: the new version carries its id, so the info message goes out again.
    let again = deliver(&world, SecretNearExpiry, "db", "v1").await.unwrap();
    assert_eq!((again.status, again.action.as_deref()), (Status::Skipped, Some("already-rotated")));
    assert_eq!(world.notifier.sent().len(), 2);
    assert_eq!(world.notifier.sent()[1], world.notifier.sent()[0]);
    // Another event about the old version (someone else rotated): nothing to tell.
    let other = handle(event("e2", SecretNearExpiry, "kv-one", "db", "v1"), world.deps.clone()).await.unwrap();
    assert_eq!(other.action.as_deref(), Some("already-rotated"));
    assert!(other.notified.is_empty());
    assert_eq!(world.notifier.sent().len(), 2);
}

#[tokio::test]
async fn a_retryable_failure_fails_the_invocation_and_tells_no_one() {
    let world = world();
    world.vault.add("kv-one", Collection::Secrets, "db", "v1", OPTED_IN);
    world.vault.fail_with(Some(503));
    let error = deliver(&world, SecretNearExpiry, "db", "v1").await.unwrap_err();
    assert!(error.is_retryable(), "{error}");
    assert!(world.notifier.sent().is_empty());
}

#[tokio::test]
async fn a_channel_that_refuses_fails_the_invocation_after_the_rotation() {
    let world = world();
    world.vault.add("kv-one", Collection::Secrets, "db", "v1", OPTED_IN);
    world.notifier.refuse(true);
    let error = deliver(&world, SecretNearExpiry, "db", "v1").await.unwrap_err();
    assert!(error.is_retryable() && error.message().starts_with("done: rotated kv-one/db from v1 to "), "{error}");
    assert_eq!(world.vault.count("kv-one", Collection::Secrets, "db"), 2);
}

#[tokio::test]
async fn a_foreign_vault_or_another_event_type_touches_nothing_and_tells_no_one() {
    let world = world();
    let foreign = handle(event("e1", SecretNearExpiry, "kv-evil", "db", "v1"), world.deps.clone()).await.unwrap();
    assert_eq!((foreign.status, foreign.action.as_deref()), (Status::Rejected, Some("not-allowed")));
    assert!(foreign.message.contains("vault 'kv-evil' is not in the allow-list"), "{}", foreign.message);
    let other = deliver(&world, SecretExpired, "db", "v1").await.unwrap();
    assert_eq!((other.status, other.action.as_deref()), (Status::Skipped, Some("not-served")));
    assert!(world.vault.calls().is_empty(), "{:?}", world.vault.calls());
    assert!(world.notifier.sent().is_empty());
}

#[tokio::test]
async fn with_no_channel_the_outcome_is_the_same_without_notifying() {
    let world = World::new(&[], "").unwrap();
    world.vault.add("kv-one", Collection::Secrets, "db", "v1", OPTED_IN);
    let outcome = deliver(&world, SecretNearExpiry, "db", "v1").await.unwrap();
    assert_eq!(outcome.action.as_deref(), Some("rotated"));
    assert!(outcome.notified.is_empty() && !outcome.message.contains("notified"), "{}", outcome.message);
}

#[tokio::test]
async fn a_replica_is_never_rotated_its_source_is() {
    let world = world();
    let mut tags = OPTED_IN.to_vec();
    tags.push(("KeyturnReplicaOf", "kv-two/db/s1"));
    world.vault.add("kv-one", Collection::Secrets, "db", "r1", &tags);
    let outcome = deliver(&world, SecretNearExpiry, "db", "r1").await.unwrap();
    assert_eq!((outcome.status, outcome.action.as_deref()), (Status::Skipped, Some("replica")));
    assert!(outcome.message.contains("replica of kv-two/db/s1"), "{}", outcome.message);
    assert_eq!(world.vault.count("kv-one", Collection::Secrets, "db"), 1);
    let sent = world.notifier.sent();
    assert!(matches!(&sent[0].action, Action::NotRotated { reason } if reason.contains("rotate the source")));
}
