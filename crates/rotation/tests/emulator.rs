//! The engine and the real SDK-backed vault code (`keyturn_vault::AzureKeyVault`, built from `keyturn_config::Settings`)
//! against the local Key Vault emulator: TLS with the emulator's CA (KEYTURN_CA_FILE), the managed identity
//! endpoint, the 401 challenge, the allow-list.
//!
//! The managed identity credential reads IDENTITY_ENDPOINT/IDENTITY_HEADER from the real process
//! environment, and the workspace forbids the `unsafe` that `std::env::set_var` needs. So the test re-runs
//! this test binary as a child process (this one test, `KT_SCENARIO` naming what to do) with the
//! environment set, the way a handler process gets it. The parent owns the emulator, counts every
//! connection that reaches the allow-listed vault through a small TCP relay, and checks the store.

// Helpers outside #[test] functions panic on purpose too: a failed setup is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use keyturn_events::{ObjectKind, ObjectRef};
use keyturn_local::keyvault::certs::{CertificatePolicy, IssuerParams, X509Props};
use keyturn_local::keyvault::crypto::KeySpec;
use keyturn_local::keyvault::keys::KeySpecInput;
use keyturn_local::keyvault::store::AttributeInput;
use keyturn_local::keyvault::{KeyVaultEmulator, RunningEmulator, SecretSpec};
use keyturn_rotation::{Engine, InProcessLock, Providers, Request, RotationError, RotationOutcome};
use keyturn_vault::{AzureKeyVault, KeyVault, VaultError};

const SCENARIO: &str = "KT_SCENARIO";
const VAULT: &str = "kv-rot";
const OTHER_VAULT: &str = "other-kv";

/// What a near-expiry event about `vault/name` at `version` asks the engine to do.
fn event(kind: ObjectKind, vault: &str, name: &str, version: &str) -> Request {
    Request { object: ObjectRef::new(vault, kind, name, version).unwrap(), event_id: format!("evt-{name}") }
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is set by the parent"))
}

/// The child's engine, built the way a handler builds it: settings from the environment, clients once.
fn engine() -> (Engine, Arc<AzureKeyVault>) {
    let settings = keyturn_config::Settings::from_env().unwrap();
    let vault = Arc::new(AzureKeyVault::from_settings(&settings).unwrap());
    (Engine::new(vault.clone(), Arc::new(InProcessLock::default()), Providers::standard()), vault)
}

async fn scenario_refuse() {
    let (engine, vault) = engine();
    let error = engine.rotate(&event(ObjectKind::Secret, OTHER_VAULT, "db", &env("KT_SECRET"))).await.unwrap_err();
    assert!(matches!(error, RotationError::Vault(VaultError::NotAllowed { .. })), "{error}");
    assert!(!error.is_retryable());
    let error = vault.latest_secret(OTHER_VAULT, "db").await.unwrap_err();
    assert!(matches!(error, VaultError::NotAllowed { .. }), "{error}");
}

async fn scenario_rotate() {
    let (engine, vault) = engine();
    let (secret_v1, key_v1, cert_v1) = (env("KT_SECRET"), env("KT_KEY"), env("KT_CERT"));

    // A secret: a new version with the policy carried forward, provenance, content type and expiry.
    let before = chrono::Utc::now();
    let delivery = event(ObjectKind::Secret, VAULT, "db", &secret_v1);
    let outcome = engine.rotate(&delivery).await.unwrap();
    let RotationOutcome::Rotated { from, to, expires, .. } = &outcome else { panic!("expected a rotation: {outcome}") };
    assert_eq!(from, &secret_v1);
    let latest = vault.latest_secret(VAULT, "db").await.unwrap();
    let props = &latest.properties;
    assert_eq!(&props.version, to);
    assert_eq!(props.expires, *expires);
    let exp = props.expires.unwrap();
    assert!(exp >= before + chrono::Duration::days(60) - chrono::Duration::seconds(2), "{exp}");
    assert!(exp <= chrono::Utc::now() + chrono::Duration::days(60), "{exp}");
    assert!(props.not_before.is_some());
    assert_eq!(props.content_type.as_deref(), Some("application/x-password"));
    assert_eq!(props.tags.get("KeyturnRotation").map(String::as_str), Some("generated"));
    assert_eq!(props.tags.get("owner").map(String::as_str), Some("team-a"));
    assert_eq!(props.tags.get("KeyturnRotatedFrom"), Some(&secret_v1));
    assert_eq!(props.tags.get("KeyturnEventId").map(String::as_str), Some("evt-db"));
    assert_eq!(latest.value.len(), 24);
    assert!(latest.value.expose().bytes().all(|c| c.is_ascii_hexdigit() || c.is_ascii_alphabetic()));
    assert_ne!(latest.value.expose(), "initial-value");

    // The same delivery again: no second rotation.
    let again = engine.rotate(&delivery).await.unwrap();
    assert_eq!(again, RotationOutcome::AlreadyRotated { event_version: secret_v1.clone(), latest: to.clone() });

    // A secret without the opt-in is left alone.
    let plain = env("KT_PLAIN");
    assert_eq!(
        engine.rotate(&event(ObjectKind::Secret, VAULT, "plain", &plain)).await.unwrap(),
        RotationOutcome::NotOptedIn
    );

    // A key: Key Vault's rotate operation.
    let outcome = engine.rotate(&event(ObjectKind::Key, VAULT, "signing", &key_v1)).await.unwrap();
    let RotationOutcome::Rotated { from, to, .. } = &outcome else { panic!("expected a key rotation: {outcome}") };
    assert_eq!(from, &key_v1);
    assert_eq!(&vault.latest_key(VAULT, "signing").await.unwrap().version, to);

    // A self-signed certificate without AutoRenew: a renewal through its policy.
    let outcome = engine.rotate(&event(ObjectKind::Certificate, VAULT, "tls", &cert_v1)).await.unwrap();
    assert!(matches!(&outcome, RotationOutcome::RenewalStarted { from, .. } if from == &cert_v1), "{outcome}");
}

/// Relays TCP connections to `target`, counting them.
async fn counting_relay(target: std::net::SocketAddr) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (addr, count)
}

fn seed(kv: &RunningEmulator) -> BTreeMap<&'static str, String> {
    let store = kv.store();
    let tags = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    store
        .set_secret(
            VAULT,
            "db",
            SecretSpec {
                value: "initial-value".into(),
                content_type: Some("application/x-password".into()),
                attributes: AttributeInput::default(),
                tags: tags(&[
                    ("KeyturnRotation", "generated"),
                    ("ValidityPeriodDays", "60"),
                    ("KeyturnFormat", "alphanumeric"),
                    ("KeyturnLength", "24"),
                    ("owner", "team-a"),
                ]),
            },
        )
        .unwrap();
    store
        .set_secret(
            VAULT,
            "plain",
            SecretSpec {
                value: "x".into(),
                content_type: None,
                attributes: AttributeInput::default(),
                tags: tags(&[("ValidityPeriodDays", "60")]),
            },
        )
        .unwrap();
    store
        .create_key(
            VAULT,
            "signing",
            KeySpecInput {
                kty: "RSA".into(),
                spec: KeySpec::Rsa(2048),
                key_ops: None,
                attributes: AttributeInput::default(),
                tags: tags(&[("KeyturnRotation", "enabled")]),
            },
        )
        .unwrap();
    let policy = CertificatePolicy {
        issuer: Some(IssuerParams { name: Some("Self".into()), ..Default::default() }),
        x509_props: Some(X509Props {
            subject: Some("CN=api.example.test".into()),
            validity_months: Some(12),
            ..Default::default()
        }),
        lifetime_actions: Some(Vec::new()),
        ..Default::default()
    };
    store
        .create_certificate(
            VAULT,
            "tls",
            Some(policy),
            AttributeInput::default(),
            tags(&[("KeyturnRotation", "enabled")]),
        )
        .unwrap();
    let mut versions = BTreeMap::new();
    for object in store.current_objects() {
        let key = match (object.kind, object.name.as_str()) {
            (keyturn_local::keyvault::StoredKind::Secret, "db") => "KT_SECRET",
            (keyturn_local::keyvault::StoredKind::Secret, "plain") => "KT_PLAIN",
            (keyturn_local::keyvault::StoredKind::Key, "signing") => "KT_KEY",
            (keyturn_local::keyvault::StoredKind::Certificate, "tls") => "KT_CERT",
            _ => continue,
        };
        versions.insert(key, object.version);
    }
    assert_eq!(versions.len(), 4, "seeded objects: {versions:?}");
    versions
}

/// Runs `scenario` in a child process of this test with the handler-like environment.
async fn run_child(scenario: &str, vault_url: &str, kv: &RunningEmulator, versions: &BTreeMap<&'static str, String>) {
    let test = "rotation_through_the_sdk_against_the_emulator";
    let child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(SCENARIO, scenario)
        .envs(kv.identity_env().vars())
        .env("KEYTURN_VAULTS", format!("{VAULT}={vault_url}"))
        .env("KEYTURN_CREDENTIAL", "managed-identity")
        .env("KEYTURN_CA_FILE", kv.ca_pem_path())
        .env("KEYTURN_RETRY_MAX", "2")
        .env("KEYTURN_RETRY_DELAY_MS", "50")
        .env("KEYTURN_RETRY_MAX_DELAY_MS", "200")
        .env("KEYTURN_HTTP_TIMEOUT_SECS", "20")
        .envs(versions.iter().map(|(k, v)| (*k, v.as_str())))
        .kill_on_drop(true)
        .output();
    let output =
        tokio::time::timeout(Duration::from_secs(120), child).await.expect("the child finished within 120 s").unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "scenario {scenario} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn rotation_through_the_sdk_against_the_emulator() {
    match std::env::var(SCENARIO).as_deref() {
        Ok("refuse") => return scenario_refuse().await,
        Ok("rotate") => return scenario_rotate().await,
        Ok(other) => panic!("unknown scenario {other}"),
        Err(_) => {}
    }
    let kv = KeyVaultEmulator::builder().vault(VAULT).vault(OTHER_VAULT).no_throttling().start().await.unwrap();
    // A broad client of the emulator as the system-assigned identity (strict RBAC by default): its role, visibly.
    kv.grant_system_identity("Key Vault Administrator").unwrap();
    let versions = seed(&kv);
    let (relay, connections) = counting_relay(kv.vault_addr(VAULT).unwrap()).await;
    let vault_url = format!("https://{relay}");

    // An event naming a vault outside the allow-list: refused, and nothing reached the emulator.
    run_child("refuse", &vault_url, &kv, &versions).await;
    assert_eq!(connections.load(Ordering::SeqCst), 0, "a refused event reached the vault");

    run_child("rotate", &vault_url, &kv, &versions).await;
    assert!(connections.load(Ordering::SeqCst) > 0, "the relay counts connections");
    let secret_versions = kv
        .store()
        .current_objects()
        .into_iter()
        .find(|o| o.vault == VAULT && o.name == "db" && o.kind == keyturn_local::keyvault::StoredKind::Secret)
        .map(|o| o.version)
        .unwrap();
    assert_ne!(secret_versions, versions["KT_SECRET"], "the emulator holds the rotated version as latest");
    // The other vault was never touched.
    assert!(kv.store().current_objects().iter().all(|o| o.vault != OTHER_VAULT));
    kv.shutdown().await;
}
