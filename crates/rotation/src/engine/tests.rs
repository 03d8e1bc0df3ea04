//! The engine against an in-memory vault: the decision table, the lock, and what a new version carries.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::TimeZone;
use keyturn_config::SecretString;
use keyturn_events::{Event, ObjectKind};
use keyturn_vault::VaultError;
use keyturn_vault::model::{
    CertificatePolicy, CertificateProperties, CertificateRenewal, KeyProperties, KeyRotationPolicy, NewSecretVersion,
    SecretProperties, SecretVersion, Tags,
};
use keyturn_vault::ops::{KeyVault, VaultFuture};

use super::*;
use crate::{InProcessLock, LockError};

/// A near-expiry event in Event Grid schema, decoded the way the handler will decode it.
fn event(kind: ObjectKind, vault: &str, name: &str, version: &str) -> Event {
    let collection = kind.collection().unwrap_or_default();
    let json = format!(
        r#"{{"id":"event-1","topic":"/subscriptions/s/resourceGroups/r/providers/Microsoft.KeyVault/vaults/{vault}",
            "subject":"{name}","eventType":"Microsoft.KeyVault.{kind}NearExpiry","eventTime":"2026-01-01T00:00:00Z",
            "data":{{"Id":"https://{vault}.vault.azure.net/{collection}/{name}/{version}","VaultName":"{vault}",
            "ObjectType":"{kind}","ObjectName":"{name}","Version":"{version}","NBF":null,"EXP":null}},
            "dataVersion":"1","metadataVersion":"1"}}"#
    );
    Event::from_slice(json.as_bytes()).unwrap()
}

/// One object's versions, latest last.
#[derive(Debug, Default)]
struct FakeObject {
    versions: Vec<(String, Tags, Option<String>)>,
    values: Vec<SecretString>,
    expires: Vec<Option<DateTime<Utc>>>,
    not_before: Vec<Option<DateTime<Utc>>>,
}

#[derive(Debug, Default)]
struct FakeState {
    objects: HashMap<(ObjectKind, String), FakeObject>,
    calls: Vec<String>,
    key_policy_rotates: bool,
    cert_policy: Option<CertificatePolicy>,
    issuer_provider: Option<String>,
    /// Read delay, to let concurrent deliveries overlap.
    delay: Duration,
    next: u32,
}

#[derive(Debug, Default)]
struct FakeVault {
    state: Mutex<FakeState>,
}

impl FakeVault {
    fn with(kind: ObjectKind, name: &str, version: &str, tags: &[(&str, &str)]) -> Self {
        let vault = Self::default();
        vault.add_version(kind, name, version, tags);
        vault
    }

    fn add_version(&self, kind: ObjectKind, name: &str, version: &str, tags: &[(&str, &str)]) {
        let mut state = self.state.lock().unwrap();
        let object = state.objects.entry((kind, name.to_owned())).or_default();
        object.versions.push((
            version.to_owned(),
            tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            Some("text/plain".to_owned()),
        ));
        object.values.push(SecretString::new(format!("value-of-{version}")));
        object.expires.push(None);
        object.not_before.push(None);
    }

    fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    fn versions(&self, kind: ObjectKind, name: &str) -> usize {
        self.state.lock().unwrap().objects.get(&(kind, name.to_owned())).map_or(0, |o| o.versions.len())
    }

    fn record(&self, call: String) -> Duration {
        let mut state = self.state.lock().unwrap();
        state.calls.push(call);
        state.delay
    }

    fn not_found(operation: &'static str, name: &str) -> VaultError {
        VaultError::Http { operation, object: name.to_owned(), status: 404, code: None, message: "not found".into() }
    }

    fn latest(&self, kind: ObjectKind, name: &str) -> Option<(String, Tags, Option<DateTime<Utc>>)> {
        let state = self.state.lock().unwrap();
        let object = state.objects.get(&(kind, name.to_owned()))?;
        let (version, tags, _) = object.versions.last()?;
        Some((version.clone(), tags.clone(), object.expires.last().copied().flatten()))
    }

    fn push_new(&self, kind: ObjectKind, name: &str, tags: Tags, expires: Option<DateTime<Utc>>) -> String {
        let mut state = self.state.lock().unwrap();
        state.next += 1;
        let version = format!("v-new-{}", state.next);
        let object = state.objects.entry((kind, name.to_owned())).or_default();
        object.versions.push((version.clone(), tags, Some("text/plain".to_owned())));
        object.values.push(SecretString::new("rotated".to_owned()));
        object.expires.push(expires);
        object.not_before.push(None);
        version
    }
}

impl KeyVault for FakeVault {
    fn check_allowed(&self, vault: &str) -> Result<(), VaultError> {
        if vault == "kv" { Ok(()) } else { Err(VaultError::NotAllowed { vault: vault.to_owned() }) }
    }

    fn latest_secret<'a>(&'a self, vault: &'a str, name: &'a str) -> VaultFuture<'a, SecretVersion> {
        Box::pin(async move {
            let delay = self.record(format!("latest_secret {vault}/{name}"));
            tokio::time::sleep(delay).await;
            let state = self.state.lock().unwrap();
            let object = state
                .objects
                .get(&(ObjectKind::Secret, name.to_owned()))
                .ok_or_else(|| Self::not_found("get secret", name))?;
            let i = object.versions.len() - 1;
            let (version, tags, content_type) = object.versions[i].clone();
            Ok(SecretVersion {
                properties: SecretProperties {
                    version,
                    content_type,
                    tags,
                    enabled: true,
                    not_before: object.not_before[i],
                    expires: object.expires[i],
                },
                value: object.values[i].clone(),
            })
        })
    }

    fn set_secret<'a>(
        &'a self,
        vault: &'a str,
        name: &'a str,
        new: NewSecretVersion,
    ) -> VaultFuture<'a, SecretProperties> {
        Box::pin(async move {
            self.record(format!("set_secret {vault}/{name}"));
            let mut state = self.state.lock().unwrap();
            state.next += 1;
            let version = format!("v-new-{}", state.next);
            let object = state.objects.entry((ObjectKind::Secret, name.to_owned())).or_default();
            object.versions.push((version.clone(), new.tags.clone(), new.content_type.clone()));
            object.values.push(new.value);
            object.expires.push(new.expires);
            object.not_before.push(new.not_before);
            Ok(SecretProperties {
                version,
                content_type: new.content_type,
                tags: new.tags,
                enabled: true,
                not_before: new.not_before,
                expires: new.expires,
            })
        })
    }

    fn latest_key<'a>(&'a self, vault: &'a str, name: &'a str) -> VaultFuture<'a, KeyProperties> {
        Box::pin(async move {
            self.record(format!("latest_key {vault}/{name}"));
            let (version, tags, expires) =
                self.latest(ObjectKind::Key, name).ok_or_else(|| Self::not_found("get key", name))?;
            Ok(KeyProperties { version, tags, enabled: true, expires })
        })
    }

    fn key_rotation_policy<'a>(&'a self, vault: &'a str, name: &'a str) -> VaultFuture<'a, KeyRotationPolicy> {
        Box::pin(async move {
            self.record(format!("key_rotation_policy {vault}/{name}"));
            let rotates = self.state.lock().unwrap().key_policy_rotates;
            Ok(KeyRotationPolicy { rotates, trigger: rotates.then(|| "timeAfterCreate P90D".to_owned()) })
        })
    }

    fn rotate_key<'a>(&'a self, vault: &'a str, name: &'a str) -> VaultFuture<'a, KeyProperties> {
        Box::pin(async move {
            self.record(format!("rotate_key {vault}/{name}"));
            let (_, tags, _) = self.latest(ObjectKind::Key, name).ok_or_else(|| Self::not_found("rotate key", name))?;
            let version = self.push_new(ObjectKind::Key, name, tags.clone(), None);
            Ok(KeyProperties { version, tags, enabled: true, expires: None })
        })
    }

    fn latest_certificate<'a>(&'a self, vault: &'a str, name: &'a str) -> VaultFuture<'a, CertificateProperties> {
        Box::pin(async move {
            self.record(format!("latest_certificate {vault}/{name}"));
            let (version, tags, expires) =
                self.latest(ObjectKind::Certificate, name).ok_or_else(|| Self::not_found("get certificate", name))?;
            Ok(CertificateProperties { version, tags, enabled: true, expires })
        })
    }

    fn certificate_policy<'a>(&'a self, vault: &'a str, name: &'a str) -> VaultFuture<'a, CertificatePolicy> {
        Box::pin(async move {
            self.record(format!("certificate_policy {vault}/{name}"));
            Ok(self
                .state
                .lock()
                .unwrap()
                .cert_policy
                .clone()
                .unwrap_or(CertificatePolicy { issuer: Some("Self".into()), auto_renew: false }))
        })
    }

    fn issuer_provider<'a>(&'a self, vault: &'a str, issuer: &'a str) -> VaultFuture<'a, Option<String>> {
        Box::pin(async move {
            self.record(format!("issuer_provider {vault}/{issuer}"));
            Ok(self.state.lock().unwrap().issuer_provider.clone())
        })
    }

    fn renew_certificate<'a>(&'a self, vault: &'a str, name: &'a str) -> VaultFuture<'a, CertificateRenewal> {
        Box::pin(async move {
            self.record(format!("renew_certificate {vault}/{name}"));
            Ok(CertificateRenewal { status: "inProgress".to_owned() })
        })
    }
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
    let vault = Arc::new(FakeVault::with(ObjectKind::Secret, "db", "v1", OPTED_IN));
    let outcome = engine(vault.clone()).rotate(&event(ObjectKind::Secret, "kv", "db", "v1")).await.unwrap();
    let expires = fixed_now() + chrono::Duration::days(60);
    assert_eq!(outcome, RotationOutcome::Rotated { from: "v1".into(), to: "v-new-1".into(), expires: Some(expires) });
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
        let vault = Arc::new(FakeVault::with(ObjectKind::Secret, "db", "v1", tags));
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
    let vault = Arc::new(FakeVault::with(ObjectKind::Secret, "db", "v1", OPTED_IN));
    vault.state.lock().unwrap().delay = Duration::from_millis(20);
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
    let vault = Arc::new(FakeVault::with(ObjectKind::Secret, "db", "v1", OPTED_IN));
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
async fn a_vault_outside_the_allow_list_is_refused_without_any_vault_call() {
    let vault = Arc::new(FakeVault::with(ObjectKind::Secret, "db", "v1", OPTED_IN));
    let error = engine(vault.clone()).rotate(&event(ObjectKind::Secret, "evil", "db", "v1")).await.unwrap_err();
    assert!(matches!(error, RotationError::Vault(VaultError::NotAllowed { .. })), "{error}");
    assert!(!error.is_retryable());
    assert!(vault.calls().is_empty(), "{:?}", vault.calls());
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
        let vault = Arc::new(FakeVault::with(ObjectKind::Secret, "db", "v1", tags));
        let error = engine(vault.clone()).rotate(&event(ObjectKind::Secret, "kv", "db", "v1")).await.unwrap_err();
        assert!(!error.is_retryable(), "{error}");
        assert!(error.to_string().contains(tag), "{tags:?}: {error}");
        assert_eq!(vault.versions(ObjectKind::Secret, "db"), 1);
    }
    let vault = Arc::new(FakeVault::with(
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
    let vault = Arc::new(FakeVault::with(ObjectKind::Secret, "db", "v1", &borrowed));
    let error = engine(vault.clone()).rotate(&event(ObjectKind::Secret, "kv", "db", "v1")).await.unwrap_err();
    assert!(error.to_string().contains("would carry 17 tags"), "{error}");
    assert!(!error.is_retryable());
    assert_eq!(vault.versions(ObjectKind::Secret, "db"), 1);
}

#[tokio::test]
async fn a_provider_failure_stops_before_promotion_and_keeps_the_lock_free() {
    #[derive(Debug)]
    struct FailingTest;
    impl crate::Provider for FailingTest {
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
            Box::pin(async {
                Err(crate::provider::ProviderError {
                    provider: "generated",
                    message: "login failed".into(),
                    retryable: true,
                })
            })
        }
    }
    let vault = Arc::new(FakeVault::with(ObjectKind::Secret, "db", "v1", OPTED_IN));
    let lock = Arc::new(InProcessLock::default());
    let engine = Engine::new(vault.clone(), lock.clone(), Providers::standard().with(Arc::new(FailingTest)));
    let error = engine.rotate(&event(ObjectKind::Secret, "kv", "db", "v1")).await.unwrap_err();
    assert!(error.is_retryable());
    assert_eq!(error.to_string(), "provider generated: login failed");
    assert_eq!(vault.versions(ObjectKind::Secret, "db"), 1);
    assert!(lock.acquire("kv/secret/db").await.is_ok(), "the lock was not released");
}

#[tokio::test]
async fn keys_rotate_unless_their_own_policy_does() {
    let tags = &[("KeyturnRotation", "enabled")][..];
    let vault = Arc::new(FakeVault::with(ObjectKind::Key, "signing", "k1", tags));
    let outcome = engine(vault.clone()).rotate(&event(ObjectKind::Key, "kv", "signing", "k1")).await.unwrap();
    assert!(matches!(&outcome, RotationOutcome::Rotated { from, .. } if from == "k1"), "{outcome}");
    assert_eq!(vault.versions(ObjectKind::Key, "signing"), 2);

    let vault = Arc::new(FakeVault::with(ObjectKind::Key, "signing", "k1", tags));
    vault.state.lock().unwrap().key_policy_rotates = true;
    let outcome = engine(vault.clone()).rotate(&event(ObjectKind::Key, "kv", "signing", "k1")).await.unwrap();
    assert_eq!(outcome.label(), "native-rotation");
    assert!(outcome.to_string().contains("Rotate action (timeAfterCreate P90D)"), "{outcome}");
    assert!(!vault.calls().iter().any(|c| c.starts_with("rotate_key")));

    let vault = Arc::new(FakeVault::with(ObjectKind::Key, "signing", "k1", &[]));
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
        let vault = Arc::new(FakeVault::with(ObjectKind::Certificate, "tls", "c1", tags));
        {
            let mut state = vault.state.lock().unwrap();
            state.cert_policy = Some(CertificatePolicy { issuer: Some(issuer.to_owned()), auto_renew });
            state.issuer_provider = provider.map(str::to_owned);
        }
        let outcome = engine(vault.clone()).rotate(&event(ObjectKind::Certificate, "kv", "tls", "c1")).await.unwrap();
        assert_eq!(outcome.label(), label, "{issuer}: {outcome}");
        let renewed = vault.calls().iter().any(|c| c.starts_with("renew_certificate"));
        assert_eq!(renewed, label == "renewal-started", "{issuer}");
        if label == "manual-action-due" {
            assert!(outcome.to_string().contains(&format!("issued by '{issuer}'")), "{outcome}");
        }
    }
}
