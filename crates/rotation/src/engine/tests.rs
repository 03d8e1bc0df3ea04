//! The engine against an in-memory vault: the decision table, the lock, and what a new version carries.

use std::time::Duration;

use chrono::TimeZone;
use keyturn_events::{ObjectKind, ObjectRef};
use keyturn_vault::Collection;
use keyturn_vault::model::{CertificatePolicy, KeyRotationPolicy};
use keyturn_vault::ops::KeyVault;
use keyturn_vault::testing::{FakeVault, FakeVersion};

use super::*;
use crate::{InProcessLock, LockError};

/// What a near-expiry event about `vault/name` at `version` asks the engine to do.
fn event(kind: ObjectKind, vault: &str, name: &str, version: &str) -> Request {
    Request { object: ObjectRef::new(vault, kind, name, version).unwrap(), event_id: "event-1".to_owned() }
}

/// The vault collection of an object kind.
fn collection(kind: ObjectKind) -> Collection {
    match kind {
        ObjectKind::Key => Collection::Keys,
        ObjectKind::Certificate => Collection::Certificates,
        _ => Collection::Secrets,
    }
}

/// The public in-memory vault (`keyturn_vault::testing`), holding vault `kv`, addressed by kind.
trait ByKind {
    fn add_version(&self, kind: ObjectKind, name: &str, version: &str, tags: &[(&str, &str)]);
    fn versions(&self, kind: ObjectKind, name: &str) -> usize;
}

impl ByKind for FakeVault {
    fn add_version(&self, kind: ObjectKind, name: &str, version: &str, tags: &[(&str, &str)]) {
        self.add("kv", collection(kind), name, version, tags);
    }
    fn versions(&self, kind: ObjectKind, name: &str) -> usize {
        self.count("kv", collection(kind), name)
    }
}

fn fake_with(kind: ObjectKind, name: &str, version: &str, tags: &[(&str, &str)]) -> FakeVault {
    let vault = FakeVault::new(&["kv"]);
    vault.add_version(kind, name, version, tags);
    vault
}

const OPTED_IN: &[(&str, &str)] =
    &[("KeyturnRotation", "generated"), ("ValidityPeriodDays", "60"), ("owner", "team-a")];

fn fixed_now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

fn engine(vault: Arc<FakeVault>) -> Engine {
    Engine::new(vault, Arc::new(InProcessLock::default()), Providers::standard()).with_clock(Arc::new(fixed_now))
}

#[tokio::test]
async fn an_opted_in_secret_gets_a_new_version_with_its_tags_provenance_and_expiry() {
    let vault = Arc::new(fake_with(ObjectKind::Secret, "db", "v1", OPTED_IN));
    let outcome = engine(vault.clone()).rotate(&event(ObjectKind::Secret, "kv", "db", "v1")).await.unwrap();
    let expires = fixed_now() + chrono::Duration::days(60);
    assert_eq!(
        outcome,
        RotationOutcome::Rotated { from: "v1".into(), to: "v-new-1".into(), expires: Some(expires), health: None }
    );
    assert!(outcome.acted());

    let stored = vault.latest_secret("kv", "db").await.unwrap();
    let props = stored.properties;
    assert_eq!(props.expires, Some(expires));
    assert_eq!(props.not_before, Some(fixed_now()));
    assert_eq!(props.content_type.as_deref(), Some("text/plain"));
    assert_eq!(props.tags.get("KeyturnRotation").map(String::as_str), Some("generated"));
    assert_eq!(props.tags.get("ValidityPeriodDays").map(String::as_str), Some("60"));
    assert_eq!(props.tags.get("owner").map(String::as_str), Some("team-a"));
    assert_eq!(props.tags.get("KeyturnRotatedFrom").map(String::as_str), Some("v1"));
    assert_eq!(props.tags.get("KeyturnEventId").map(String::as_str), Some("event-1"));
    // The default format: a 32-character password, not the old value.
    assert_eq!(stored.value.len(), 32);
    assert_ne!(stored.value.expose(), "value-of-v1");
}

#[tokio::test]
async fn idempotency_decision_table() {
    // (event version, latest version, opted in) → outcome label, versions afterwards
    for (event_version, latest, tags, label, versions_after) in [
        ("v1", "v1", OPTED_IN, "rotated", 2),
        ("v1", "v2", OPTED_IN, "already-rotated", 2),
        ("V1", "v1", OPTED_IN, "rotated", 2),
        ("v1", "v1", &[("ValidityPeriodDays", "60")][..], "not-opted-in", 1),
        ("v1", "v2", &[][..], "already-rotated", 2),
    ] {
        let vault = Arc::new(fake_with(ObjectKind::Secret, "db", "v1", tags));
        if latest == "v2" {
            vault.add_version(ObjectKind::Secret, "db", "v2", tags);
        }
        let outcome =
            engine(vault.clone()).rotate(&event(ObjectKind::Secret, "kv", "db", event_version)).await.unwrap();
        assert_eq!(outcome.label(), label, "{event_version} vs {latest}: {outcome}");
        assert_eq!(vault.versions(ObjectKind::Secret, "db"), versions_after, "{event_version} vs {latest}");
        if label == "already-rotated" {
            assert_eq!(outcome.to_string(), format!("already rotated to v2 (the event is about {event_version})"));
        }
    }
}

#[tokio::test]
async fn ten_concurrent_deliveries_rotate_exactly_once() {
    let vault = Arc::new(fake_with(ObjectKind::Secret, "db", "v1", OPTED_IN));
    vault.set_delay(Duration::from_millis(20));
    let engine = engine(vault.clone());
    let event = event(ObjectKind::Secret, "kv", "db", "v1");
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (engine, event) = (engine.clone(), event.clone());
            tokio::spawn(async move { engine.rotate(&event).await })
        })
        .collect();
    let mut rotated = 0;
    for task in tasks {
        match tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap() {
            Ok(RotationOutcome::Rotated { .. }) => rotated += 1,
            Ok(RotationOutcome::AlreadyRotated { .. }) => {}
            Err(error) => {
                assert!(error.is_retryable() && matches!(error, RotationError::Lock(LockError::Held { .. })), "{error}")
            }
            Ok(other) => panic!("unexpected outcome {other}"),
        }
    }
    assert_eq!(rotated, 1);
    assert_eq!(vault.versions(ObjectKind::Secret, "db"), 2);
    // A redelivery after the storm is a no-op.
    let again = engine.rotate(&event).await.unwrap();
    assert_eq!(again.label(), "already-rotated");
}

#[tokio::test]
async fn the_idempotency_check_is_repeated_under_the_lock() {
    // A delivery that read v1 before another one rotated, and takes the lock after it, must not rotate again:
    // simulated by a second version appearing between the first read and the locked read.
    #[derive(Debug)]
    struct RacingLock {
        inner: InProcessLock,
        vault: Arc<FakeVault>,
    }
    impl RotationLock for RacingLock {
        fn acquire<'a>(
            &'a self,
            key: &'a str,
        ) -> futures::future::BoxFuture<'a, Result<Box<dyn LockGuard>, LockError>> {
            self.vault.add_version(ObjectKind::Secret, "db", "v2-by-the-other-delivery", OPTED_IN);
            self.inner.acquire(key)
        }
    }
    let vault = Arc::new(fake_with(ObjectKind::Secret, "db", "v1", OPTED_IN));
    let lock = Arc::new(RacingLock { inner: InProcessLock::default(), vault: vault.clone() });
    let engine = Engine::new(vault.clone(), lock, Providers::standard());
    let outcome = engine.rotate(&event(ObjectKind::Secret, "kv", "db", "v1")).await.unwrap();
    assert_eq!(
        outcome,
        RotationOutcome::AlreadyRotated { event_version: "v1".into(), latest: "v2-by-the-other-delivery".into() }
    );
    assert!(!vault.calls().iter().any(|c| c.starts_with("set_secret")));
}

#[tokio::test]
async fn policy_problems_are_permanent_and_name_the_tag() {
    for (tags, tag) in [
        (&[("KeyturnRotation", "generated")][..], "ValidityPeriodDays"),
        (&[("KeyturnRotation", "postgres"), ("ValidityPeriodDays", "30")][..], "KeyturnRotation"),
        (
            &[("KeyturnRotation", "generated"), ("ValidityPeriodDays", "30"), ("KeyturnFormat", "emoji")][..],
            "KeyturnFormat",
        ),
    ] {
        let vault = Arc::new(fake_with(ObjectKind::Secret, "db", "v1", tags));
        let error = engine(vault.clone()).rotate(&event(ObjectKind::Secret, "kv", "db", "v1")).await.unwrap_err();
        assert!(!error.is_retryable(), "{error}");
        assert!(error.to_string().contains(tag), "{tags:?}: {error}");
        assert_eq!(vault.versions(ObjectKind::Secret, "db"), 1);
    }
    let vault = Arc::new(fake_with(
        ObjectKind::Secret,
        "db",
        "v1",
        &[("KeyturnRotation", "postgres"), ("ValidityPeriodDays", "30")],
    ));
    let error = engine(vault).rotate(&event(ObjectKind::Secret, "kv", "db", "v1")).await.unwrap_err();
    assert!(error.to_string().contains("expected one of generated"), "{error}");
}

#[tokio::test]
async fn a_secret_whose_tags_leave_no_room_for_provenance_is_not_rotated() {
    let mut tags: Vec<(String, String)> = (0..13).map(|i| (format!("t{i}"), "x".to_owned())).collect();
    tags.push(("KeyturnRotation".into(), "generated".into()));
    tags.push(("ValidityPeriodDays".into(), "60".into()));
    let borrowed: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let vault = Arc::new(fake_with(ObjectKind::Secret, "db", "v1", &borrowed));
    let error = engine(vault.clone()).rotate(&event(ObjectKind::Secret, "kv", "db", "v1")).await.unwrap_err();
    assert!(error.to_string().contains("would carry 17 tags"), "{error}");
    assert!(!error.is_retryable());
    assert_eq!(vault.versions(ObjectKind::Secret, "db"), 1);
}

#[tokio::test]
async fn a_provider_failure_stops_before_promotion_and_keeps_the_lock_free() {
    let failing = DuringTheTestStep {
        hook: Box::new(|| {
            Box::pin(async {
                Err(crate::provider::ProviderError {
                    provider: "generated",
                    message: "login failed".into(),
                    retryable: true,
                })
            })
        }),
    };
    let vault = Arc::new(fake_with(ObjectKind::Secret, "db", "v1", OPTED_IN));
    let lock = Arc::new(InProcessLock::default());
    let engine = Engine::new(vault.clone(), lock.clone(), Providers::standard().with(Arc::new(failing)));
    let error = engine.rotate(&event(ObjectKind::Secret, "kv", "db", "v1")).await.unwrap_err();
    assert!(error.is_retryable());
    assert_eq!(error.to_string(), "provider generated: login failed");
    assert_eq!(vault.versions(ObjectKind::Secret, "db"), 1);
    assert!(lock.acquire("kv/secret/db").await.is_ok(), "the lock was not released");
}

#[tokio::test]
async fn keys_rotate_unless_their_own_policy_does() {
    let tags = &[("KeyturnRotation", "enabled")][..];
    let vault = Arc::new(fake_with(ObjectKind::Key, "signing", "k1", tags));
    let outcome = engine(vault.clone()).rotate(&event(ObjectKind::Key, "kv", "signing", "k1")).await.unwrap();
    assert!(matches!(&outcome, RotationOutcome::Rotated { from, .. } if from == "k1"), "{outcome}");
    assert_eq!(vault.versions(ObjectKind::Key, "signing"), 2);

    let vault = Arc::new(fake_with(ObjectKind::Key, "signing", "k1", tags));
    vault.set_key_rotation(KeyRotationPolicy { rotates: true, trigger: Some("timeAfterCreate P90D".to_owned()) });
    let outcome = engine(vault.clone()).rotate(&event(ObjectKind::Key, "kv", "signing", "k1")).await.unwrap();
    assert_eq!(outcome.label(), "native-rotation");
    assert!(outcome.to_string().contains("Rotate action (timeAfterCreate P90D)"), "{outcome}");
    assert!(!vault.calls().iter().any(|c| c.starts_with("rotate_key")));

    let vault = Arc::new(fake_with(ObjectKind::Key, "signing", "k1", &[]));
    assert_eq!(
        engine(vault).rotate(&event(ObjectKind::Key, "kv", "signing", "k1")).await.unwrap(),
        RotationOutcome::NotOptedIn
    );
}

#[tokio::test]
async fn certificates_renew_when_the_issuer_can_issue_and_otherwise_say_manual_action_is_due() {
    let tags = &[("KeyturnRotation", "enabled")][..];
    for (issuer, provider, auto_renew, label) in [
        ("Self", None, false, "renewal-started"),
        ("Self", None, true, "native-rotation"),
        ("Unknown", None, false, "manual-action-due"),
        ("my-digicert", Some("DigiCert"), false, "renewal-started"),
        ("my-internal-ca", Some("OneCertV2-PrivateCA"), false, "manual-action-due"),
    ] {
        let vault = Arc::new(fake_with(ObjectKind::Certificate, "tls", "c1", tags));
        vault.set_certificate_policy(CertificatePolicy { issuer: Some(issuer.to_owned()), auto_renew }, provider);
        let outcome = engine(vault.clone()).rotate(&event(ObjectKind::Certificate, "kv", "tls", "c1")).await.unwrap();
        assert_eq!(outcome.label(), label, "{issuer}: {outcome}");
        let renewed = vault.calls().iter().any(|c| c.starts_with("renew_certificate"));
        assert_eq!(renewed, label == "renewal-started", "{issuer}");
        if label == "manual-action-due" {
            assert!(outcome.to_string().contains(&format!("issued by '{issuer}'")), "{outcome}");
        }
    }
}

/// The window row (`plan::window`) as the engine applies it. `fixed_now()` is a Sunday at 12:00 UTC; the window
/// opens on Saturday 2026-03-07 at 02:00 UTC, before the version's expiry a month later.
#[tokio::test]
async fn a_near_expiry_rotation_waits_for_its_window_and_an_expired_one_never_does() {
    let window = ("KeyturnRotationWindow", "Sat 02:00-04:00 UTC");
    let add = |vault: &FakeVault, tags: &[(&str, &str)]| {
        let mut version = vault.versions_of("kv", Collection::Secrets, "db").pop().unwrap();
        version.tags = tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        version.expires = Some(fixed_now() + chrono::Duration::days(30));
        vault.push("kv", Collection::Secrets, "db", FakeVersion { version: "v2".into(), ..version });
    };
    let vault = Arc::new(fake_with(ObjectKind::Secret, "db", "v1", OPTED_IN));
    let mut tags = OPTED_IN.to_vec();
    tags.push(window);
    add(&vault, &tags);
    let request = event(ObjectKind::Secret, "kv", "db", "v2");

    let deferred = engine(vault.clone()).rotate(&request).await.unwrap();
    let saturday = Utc.with_ymd_and_hms(2026, 3, 7, 2, 0, 0).unwrap();
    assert_eq!(deferred, RotationOutcome::Deferred { until: saturday, window: "Sat 02:00-04:00 UTC".into() });
    assert_eq!(deferred.label(), "deferred");
    assert!(!deferred.acted());
    assert_eq!(
        deferred.to_string(),
        "deferred until 2026-03-07 02:00 UTC: outside its rotation window (Sat 02:00-04:00 UTC)"
    );
    assert_eq!(vault.versions(ObjectKind::Secret, "db"), 2, "nothing written");

    // Inside the window, the same request rotates.
    let in_window = engine(vault.clone()).with_clock(Arc::new(move || saturday + chrono::Duration::minutes(30)));
    assert!(matches!(in_window.rotate(&request).await.unwrap(), RotationOutcome::Rotated { .. }));
    assert_eq!(vault.versions(ObjectKind::Secret, "db"), 3);

    // An expired object's emergency rotation is never held back, whatever the window says.
    let expired = Arc::new(fake_with(ObjectKind::Secret, "db", "v1", OPTED_IN));
    add(&expired, &tags);
    let outcome = engine(expired.clone()).rotate_expired(&request).await.unwrap();
    assert!(matches!(&outcome, RotationOutcome::Rotated { from, .. } if from == "v2"), "{outcome}");

    // A window tag that does not parse stops a near-expiry rotation as a policy problem, naming the tag.
    let mistyped = Arc::new(fake_with(ObjectKind::Secret, "db", "v1", OPTED_IN));
    let mut bad = OPTED_IN.to_vec();
    bad.push(("KeyturnRotationWindow", "Caturday 02:00-04:00"));
    add(&mistyped, &bad);
    let error = engine(mistyped.clone()).rotate(&request).await.unwrap_err();
    assert!(!error.is_retryable());
    assert!(
        error.to_string().contains("KeyturnRotationWindow: 'Caturday 02:00-04:00': 'Caturday' is not a day"),
        "{error}"
    );
    assert_eq!(mistyped.versions(ObjectKind::Secret, "db"), 2);
}

/// The `generated` provider with `hook` as its test step, run while the engine holds the lock: what happens
/// to the world between the provider's steps and the promotion (or the step's own failure).
struct DuringTheTestStep {
    hook: Box<dyn Fn() -> crate::provider::ProviderFuture<'static, ()> + Send + Sync>,
}

impl std::fmt::Debug for DuringTheTestStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DuringTheTestStep")
    }
}

impl crate::Provider for DuringTheTestStep {
    fn name(&self) -> &'static str {
        "generated"
    }
    fn create_pending<'a>(
        &'a self,
        ctx: &'a RotationContext<'a>,
    ) -> crate::provider::ProviderFuture<'a, crate::provider::Pending> {
        crate::provider::generated::Generated.create_pending(ctx)
    }
    fn test_pending<'a>(
        &'a self,
        _: &'a RotationContext<'a>,
        _: &'a crate::provider::Pending,
    ) -> crate::provider::ProviderFuture<'a, ()> {
        (self.hook)()
    }
}

#[tokio::test]
async fn a_lease_lost_before_the_promotion_promotes_nothing_and_is_retried() {
    // The lease runs out during a slow provider step and another delivery takes the lock over: the first
    // must not promote on top of it.
    let lock = Arc::new(InProcessLock::new(Duration::from_millis(50)));
    let other = lock.clone();
    let taken_over: Arc<std::sync::Mutex<Option<Box<dyn LockGuard>>>> = Arc::default();
    let holder = taken_over.clone();
    let provider = DuringTheTestStep {
        hook: Box::new(move || {
            let (other, holder) = (other.clone(), holder.clone());
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(80)).await;
                let guard = other.acquire("kv/secret/db").await.expect("the lease expired");
                *holder.lock().unwrap() = Some(guard);
                Ok(())
            })
        }),
    };
    let vault = Arc::new(fake_with(ObjectKind::Secret, "db", "v1", OPTED_IN));
    let engine = Engine::new(vault.clone(), lock, Providers::standard().with(Arc::new(provider)));
    let error = engine.rotate(&event(ObjectKind::Secret, "kv", "db", "v1")).await.unwrap_err();
    assert!(matches!(&error, RotationError::Lock(LockError::Lost { key }) if key == "kv/secret/db"), "{error}");
    assert!(error.is_retryable());
    assert!(error.to_string().contains("nothing was promoted"), "{error}");
    assert_eq!(vault.versions(ObjectKind::Secret, "db"), 1);
    assert!(!vault.calls().iter().any(|c| c.starts_with("set_secret")), "{:?}", vault.calls());
    assert!(taken_over.lock().unwrap().is_some(), "the other delivery holds the lock");
}

#[tokio::test]
async fn a_version_written_during_the_rotation_stops_the_promotion_and_the_redelivery_finds_it() {
    // A person (or another tool) writes a version while keyturn's provider works: keyturn must not bury it
    // under its own.
    let vault = Arc::new(fake_with(ObjectKind::Secret, "db", "v1", OPTED_IN));
    let writer = vault.clone();
    let provider = DuringTheTestStep {
        hook: Box::new(move || {
            writer.add_version(ObjectKind::Secret, "db", "v2-written-meanwhile", OPTED_IN);
            Box::pin(async { Ok(()) })
        }),
    };
    let engine =
        Engine::new(vault.clone(), Arc::new(InProcessLock::default()), Providers::standard().with(Arc::new(provider)));
    let request = event(ObjectKind::Secret, "kv", "db", "v1");
    let error = engine.rotate(&request).await.unwrap_err();
    assert!(
        matches!(&error, RotationError::Superseded { planned, latest, .. } if planned == "v1" && latest == "v2-written-meanwhile"),
        "{error}"
    );
    assert!(error.is_retryable());
    assert_eq!(vault.versions(ObjectKind::Secret, "db"), 2, "only the version written meanwhile");
    assert!(!vault.calls().iter().any(|c| c.starts_with("set_secret")), "{:?}", vault.calls());
    let again = engine.rotate(&request).await.unwrap();
    assert_eq!(again.label(), "already-rotated");
}
