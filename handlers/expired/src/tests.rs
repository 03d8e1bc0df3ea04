//! Every row of the decision table (crate docs) against the in-memory fakes: no process, no socket.

use chrono::{TimeDelta, Utc};
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

/// Adds `version` (with `tags`, enabled) expiring `exp` from the test's clock: negative, it has expired.
fn add_expiring(
    world: &World,
    collection: Collection,
    name: &str,
    version: &str,
    tags: &[(&str, &str)],
    exp: TimeDelta,
) {
    world.vault.add_expiring("kv-one", collection, name, version, tags, Some(Utc::now() + exp));
}

/// Adds `version` of a secret, expired an hour ago.
fn add_expired(world: &World, name: &str, version: &str, tags: &[(&str, &str)]) {
    add_expiring(world, Collection::Secrets, name, version, tags, -TimeDelta::hours(1));
}

fn summary(world: &World) -> String {
    summary_at(world, Severity::Critical)
}

/// The last notification's summary, asserting its severity.
fn summary_at(world: &World, severity: Severity) -> String {
    let sent = world.notifier.sent();
    assert_eq!(sent.last().map(|n| n.severity), Some(severity), "{sent:?}");
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
    add_expired(&world, "api", "v1", &[("KeyturnExpiredAction", "disable")]);
    add_expiring(&world, Collection::Secrets, "api", "v2", &[("KeyturnExpiredAction", "disable")], TimeDelta::days(60));
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
    add_expired(&world, "db", "v1", tags);
    let outcome = deliver(&world, SecretExpired, "db", "v1").await.unwrap();
    assert_eq!((outcome.status, outcome.action.as_deref()), (Status::Done, Some("rotated")));
    let latest = world.vault.versions_of("kv-one", Collection::Secrets, "db").pop().unwrap();
    assert_eq!(outcome.version_after.as_deref(), Some(latest.version.as_str()));
    assert_eq!(outcome.version_before.as_deref(), Some("v1"));

    // Without a rotation policy the engine does nothing, and the message says someone must.
    add_expired(&world, "bare", "b1", &[("KeyturnExpiredAction", "rotate")]);
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

/// Asserts the last delivery was refused because the vault says the version has not expired: rejected for good,
/// nothing changed in the vault, and a warning (not the critical expiry message) saying why.
fn assert_not_expired(world: &World, outcome: &Outcome, name: &str, why: &str) {
    assert_eq!((outcome.status, outcome.action.as_deref()), (Status::Rejected, Some("not-expired")), "{outcome:#?}");
    assert!(outcome.message.contains(why), "{}", outcome.message);
    let summary = summary_at(world, Severity::Warning);
    assert!(summary.contains(why) && summary.contains("keyturn did nothing"), "{summary}");
    assert!(summary.contains("is still enabled") && !summary.contains("expired version"), "{summary}");
    let versions = world.vault.versions_of("kv-one", Collection::Secrets, name);
    assert!(versions.iter().all(|v| v.enabled), "{versions:?}");
    let calls = world.vault.calls();
    let changes = [format!("update_version kv-one/{name}"), format!("set_secret kv-one/{name}")];
    assert!(!calls.iter().any(|call| changes.contains(call)), "{calls:?}");
}

/// A forged `*Expired` event for a version that has not expired: neither `disable` nor `rotate` acts on it.
#[tokio::test]
async fn an_action_is_refused_for_a_version_the_vaults_clock_says_has_not_expired() {
    let world = world();
    for action in ["disable", "rotate"] {
        let name = format!("live-{action}");
        let tags = &[("KeyturnExpiredAction", action), ("KeyturnRotation", "generated"), ("ValidityPeriodDays", "30")];
        add_expiring(&world, Collection::Secrets, &name, "v1", tags, TimeDelta::days(10));
        let outcome = deliver(&world, SecretExpired, &name, "v1").await.unwrap();
        assert_not_expired(&world, &outcome, &name, "version v1 has not expired: it expires ");
        assert!(outcome.message.contains("the vault's clock reads"), "{}", outcome.message);
        assert!(outcome.message.contains(&format!("KeyturnExpiredAction={action}")), "{}", outcome.message);
        assert_eq!(world.vault.count("kv-one", Collection::Secrets, &name), 1, "{action}: no new version");
    }
    // Keys and certificates alike.
    add_expiring(&world, Collection::Keys, "k", "k1", &[("KeyturnExpiredAction", "disable")], TimeDelta::days(10));
    let outcome = deliver(&world, KeyExpired, "k", "k1").await.unwrap();
    assert_eq!((outcome.status, outcome.action.as_deref()), (Status::Rejected, Some("not-expired")));
    assert!(world.vault.versions_of("kv-one", Collection::Keys, "k")[0].enabled);
}

/// A version without `exp` never expires in Key Vault's eyes (it raises no `*Expired` for it): an event saying
/// otherwise is not acted on either.
#[tokio::test]
async fn an_action_is_refused_for_a_version_without_an_expiry() {
    let world = world();
    world.vault.add("kv-one", Collection::Secrets, "forever", "f1", &[("KeyturnExpiredAction", "disable")]);
    let outcome = deliver(&world, SecretExpired, "forever", "f1").await.unwrap();
    assert_not_expired(&world, &outcome, "forever", "version f1 has not expired: it has no expiry date");
}

/// The vault's clock is the judge, not this handler's: on the local stack the vault's clock runs ahead (its
/// expiries are real there), and a vault clock behind the handler's means the vault has not expired it yet.
#[tokio::test]
async fn the_vaults_clock_decides_whichever_way_it_differs_from_the_handlers() {
    let world = world();
    let disable = &[("KeyturnExpiredAction", "disable")];
    add_expiring(&world, Collection::Secrets, "ahead", "a1", disable, TimeDelta::days(10));
    world.vault.set_clock_ahead(TimeDelta::days(11));
    let outcome = deliver(&world, SecretExpired, "ahead", "a1").await.unwrap();
    assert_eq!((outcome.status, outcome.action.as_deref()), (Status::Done, Some("disabled")), "{outcome:#?}");
    assert!(!world.vault.versions_of("kv-one", Collection::Secrets, "ahead")[0].enabled);

    add_expiring(&world, Collection::Secrets, "behind", "b1", disable, -TimeDelta::hours(1));
    world.vault.set_clock_ahead(-TimeDelta::hours(2));
    let outcome = deliver(&world, SecretExpired, "behind", "b1").await.unwrap();
    assert_not_expired(&world, &outcome, "behind", "version b1 has not expired");
}

/// Clocks differ by seconds: an `exp` within [`crate::EXPIRY_SKEW`] of the vault's time counts as passed, and
/// one beyond it does not.
#[tokio::test]
async fn an_expiry_within_the_skew_allowance_counts_as_passed() {
    let world = world();
    let disable = &[("KeyturnExpiredAction", "disable")];
    add_expiring(&world, Collection::Secrets, "nearly", "n1", disable, crate::EXPIRY_SKEW - TimeDelta::minutes(1));
    let outcome = deliver(&world, SecretExpired, "nearly", "n1").await.unwrap();
    assert_eq!(outcome.action.as_deref(), Some("disabled"), "{outcome:#?}");

    add_expiring(&world, Collection::Secrets, "later", "l1", disable, crate::EXPIRY_SKEW + TimeDelta::minutes(1));
    let outcome = deliver(&world, SecretExpired, "later", "l1").await.unwrap();
    assert_not_expired(&world, &outcome, "later", "version l1 has not expired");
}

/// Without a `Date` in the vault's answer (Key Vault always sends one), this handler's clock stands in, and the
/// refusal says so.
#[tokio::test]
async fn without_a_date_from_the_vault_the_handlers_clock_judges_and_says_so() {
    let world = world();
    world.vault.omit_date(true);
    add_expired(&world, "gone", "g1", &[("KeyturnExpiredAction", "disable")]);
    let outcome = deliver(&world, SecretExpired, "gone", "g1").await.unwrap();
    assert_eq!(outcome.action.as_deref(), Some("disabled"), "{outcome:#?}");

    add_expiring(&world, Collection::Secrets, "live", "l1", &[("KeyturnExpiredAction", "disable")], TimeDelta::days(1));
    let outcome = deliver(&world, SecretExpired, "live", "l1").await.unwrap();
    assert_not_expired(&world, &outcome, "live", "this handler's clock (the vault's answer had no Date) reads");
}

/// Notifying is not an action: with no action tag, the event is notified as before, whatever the vault's clock.
#[tokio::test]
async fn notify_only_is_unchanged_by_the_vaults_clock() {
    let world = world();
    add_expiring(&world, Collection::Secrets, "quiet", "q1", &[], TimeDelta::days(10));
    let outcome = deliver(&world, SecretExpired, "quiet", "q1").await.unwrap();
    assert_eq!((outcome.status, outcome.action.as_deref()), (Status::Done, Some("notified")));
    assert!(summary(&world).contains("no action is configured"));
}
