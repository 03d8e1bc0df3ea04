//! [`keyturn_vault::Inventory`] against the Key Vault emulator: listings follow every `nextLink` (the emulator pages
//! at 25 items, as Key Vault does), versions come back oldest first, and certificate-backing keys and
//! secrets, where listed, are marked managed.
//!
//! As in `emulator.rs`, the managed identity credential reads IDENTITY_ENDPOINT from the real process
//! environment, so the test re-runs itself as a child process with that environment.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use keyturn_local::keyvault::certs::{IssuerParams, X509Props};
use keyturn_local::keyvault::crypto::{Curve, KeySpec};
use keyturn_local::keyvault::keys::KeySpecInput;
use keyturn_local::keyvault::store::AttributeInput;
use keyturn_local::keyvault::{CertificatePolicy, KeyVaultEmulator, SecretSpec};
use keyturn_vault::{AzureKeyVault, Collection, Inventory};

const SCENARIO: &str = "KT_INVENTORY_SCENARIO";
const TEST: &str = "listings_page_through_everything_the_vault_holds";
const VAULT: &str = "kv-list";
const SECRETS: usize = 60;
const KEYS: usize = 27;
const VERSIONS: usize = 31;

async fn scenario() {
    let vault = AzureKeyVault::from_settings(&keyturn_config::Settings::from_env().unwrap()).unwrap();

    let secrets = vault.list(VAULT, Collection::Secrets).await.unwrap();
    let unmanaged: Vec<_> = secrets.iter().filter(|s| !s.managed).collect();
    assert_eq!(unmanaged.len(), SECRETS + 1, "every secret across three pages, plus the versioned one");
    // Whether a certificate's backing secret and key are listed at all varies; when they are, they are managed.
    assert!(secrets.iter().filter(|s| s.name == "tls").all(|s| s.managed), "{secrets:?}");
    let tagged = secrets.iter().find(|s| s.name == "secret-007").unwrap();
    assert_eq!(tagged.tags.get("KeyturnRotation").map(String::as_str), Some("generated"));
    assert_eq!(tagged.expires.map(|e| e.timestamp()), Some(1_900_000_007));
    assert_eq!(tagged.version, None, "a collection listing names objects, not versions");

    let keys = vault.list(VAULT, Collection::Keys).await.unwrap();
    assert_eq!(keys.iter().filter(|k| !k.managed).count(), KEYS);
    assert!(keys.iter().filter(|k| k.name == "tls").all(|k| k.managed), "{keys:?}");

    let certificates = vault.list(VAULT, Collection::Certificates).await.unwrap();
    assert_eq!(certificates.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["tls"]);

    let versions = vault.versions(VAULT, Collection::Secrets, "rolling").await.unwrap();
    assert_eq!(versions.len(), VERSIONS, "versions across two pages");
    let current = keyturn_vault::inventory::current(&versions).unwrap();
    assert_eq!(current.version.as_deref(), std::env::var("KT_ROLLING_LATEST").ok().as_deref());
    assert_eq!(current.tags.get("n").map(String::as_str), Some("30"));

    let key_versions = vault.versions(VAULT, Collection::Keys, "key-003").await.unwrap();
    assert_eq!(key_versions.len(), 1);
    assert!(key_versions[0].version.is_some());
    let cert_versions = vault.versions(VAULT, Collection::Certificates, "tls").await.unwrap();
    assert_eq!(cert_versions.len(), 1);

    let refused = vault.list("kv-elsewhere", Collection::Secrets).await.unwrap_err();
    assert!(matches!(refused, keyturn_vault::VaultError::NotAllowed { .. }), "{refused}");
}

fn seed(kv: &keyturn_local::keyvault::RunningEmulator) -> String {
    let store = kv.store();
    let secret = |value: &str, exp: Option<i64>, tags: BTreeMap<String, String>| SecretSpec {
        value: value.into(),
        content_type: None,
        attributes: AttributeInput { exp, ..Default::default() },
        tags,
    };
    for i in 0..SECRETS {
        let tags = BTreeMap::from([("KeyturnRotation".to_owned(), "generated".to_owned())]);
        store.set_secret(VAULT, &format!("secret-{i:03}"), secret("v", Some(1_900_000_000 + i as i64), tags)).unwrap();
    }
    let mut latest = String::new();
    for n in 0..VERSIONS {
        let tags = BTreeMap::from([("n".to_owned(), n.to_string())]);
        latest = store.set_secret(VAULT, "rolling", secret("v", None, tags)).unwrap().version.version;
        // Creation times are whole seconds: move the clock so "created last" is unambiguous.
        kv.clock().advance(Duration::from_secs(1));
    }
    for i in 0..KEYS {
        let input = KeySpecInput {
            kty: "EC".into(),
            spec: KeySpec::Ec(Curve::P256),
            key_ops: None,
            attributes: AttributeInput::default(),
            tags: BTreeMap::new(),
        };
        store.create_key(VAULT, &format!("key-{i:03}"), input).unwrap();
    }
    let policy = CertificatePolicy {
        issuer: Some(IssuerParams { name: Some("Self".into()), ..Default::default() }),
        x509_props: Some(X509Props { subject: Some("CN=tls.example.test".into()), ..Default::default() }),
        ..Default::default()
    };
    store.create_certificate(VAULT, "tls", Some(policy), AttributeInput::default(), BTreeMap::new()).unwrap();
    latest
}

#[tokio::test]
async fn listings_page_through_everything_the_vault_holds() {
    if std::env::var(SCENARIO).is_ok() {
        return scenario().await;
    }
    let kv = KeyVaultEmulator::builder().vault(VAULT).no_throttling().start().await.unwrap();
    // A broad client of the emulator as the system-assigned identity (strict RBAC by default): its role, visibly.
    kv.grant_system_identity("Key Vault Administrator").unwrap();
    let latest = seed(&kv);
    let extra = [(SCENARIO, "1".to_owned()), ("KT_ROLLING_LATEST", latest)];
    support::run_child(TEST, &kv, VAULT, &extra, "the listing scenario").await;
    kv.shutdown().await;
}
