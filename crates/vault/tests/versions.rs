//! [`keyturn_vault::Versions`] against the Key Vault emulator: one named version (not the latest) of a secret, key
//! and certificate is read, disabled and re-tagged, and a disabled version's attributes still come back
//! (Key Vault refuses to GET it, so they are read from the versions listing).
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
use keyturn_vault::model::Tags;
use keyturn_vault::{AzureKeyVault, Collection, Inventory, VersionProperties, VersionUpdate, Versions};

const SCENARIO: &str = "KT_VERSIONS_SCENARIO";
const TEST: &str = "one_named_version_of_each_kind_is_read_and_changed";
const VAULT: &str = "kv-versions";
const OLD_EXPIRES: i64 = 1_900_000_000;
/// How far the emulator's clock is moved ahead of the machine's once seeded.
const CLOCK_AHEAD_DAYS: i64 = 100;

fn tags(pairs: &[(&str, &str)]) -> Tags {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// The oldest version of an object: never the latest, which is what these operations exist for.
async fn oldest(vault: &AzureKeyVault, collection: Collection, name: &str) -> String {
    let versions = vault.versions(VAULT, collection, name).await.unwrap();
    versions.first().and_then(|v| v.version.clone()).unwrap()
}

async fn scenario() {
    let vault = AzureKeyVault::from_settings(&keyturn_config::Settings::from_env().unwrap()).unwrap();
    let old_expires = chrono::DateTime::from_timestamp(OLD_EXPIRES, 0);

    let old = oldest(&vault, Collection::Secrets, "db").await;
    let secret = vault.secret_version(VAULT, "db", &old).await.unwrap();
    assert_eq!(secret.value.expose(), "old value", "the named version's value, not the latest's");
    assert_eq!(secret.properties.version, old);
    assert_eq!(secret.properties.content_type.as_deref(), Some("text/plain"));
    assert_eq!(secret.properties.tags, tags(&[("generation", "1")]));
    assert!(secret.properties.enabled);
    assert_eq!(secret.properties.expires, old_expires);
    let properties = vault.version_properties(VAULT, Collection::Secrets, "db", &old).await.unwrap();
    assert_eq!(
        properties.clone().timeless(),
        VersionProperties {
            version: old.clone(),
            enabled: true,
            tags: tags(&[("generation", "1")]),
            not_before: None,
            expires: old_expires,
            vault_time: None,
        }
    );
    assert_vault_time(&properties, "a version read");

    for (collection, name) in
        [(Collection::Secrets, "db"), (Collection::Keys, "signing"), (Collection::Certificates, "tls")]
    {
        let version = oldest(&vault, collection, name).await;
        let retired = tags(&[("retired", "yes")]);
        let update = VersionUpdate { enabled: Some(false), tags: Some(retired.clone()) };
        let updated = vault.update_version(VAULT, collection, name, &version, update).await.unwrap();
        assert_eq!(updated.version, version, "{collection:?}");
        assert!(!updated.enabled, "{collection:?}");
        assert_eq!(updated.tags, retired, "{collection:?}");
        assert_vault_time(&updated, &format!("{collection:?} updated"));
        let read = vault.version_properties(VAULT, collection, name, &version).await.unwrap();
        // Read from the listing after the GET's refusal: the vault's time is the refusal's.
        assert_vault_time(&read, &format!("{collection:?} disabled, read"));
        assert_eq!(
            read.timeless(),
            updated.clone().timeless(),
            "{collection:?}: a disabled version reads back as it was left"
        );

        // `None` leaves a field as it is.
        let update = VersionUpdate { enabled: Some(true), tags: None };
        let enabled = vault.update_version(VAULT, collection, name, &version, update).await.unwrap();
        assert!(enabled.enabled, "{collection:?}");
        assert_eq!(enabled.tags, retired, "{collection:?}");
        assert_eq!(
            vault.version_properties(VAULT, collection, name, &version).await.unwrap().timeless(),
            enabled.timeless()
        );
    }

    let missing = vault
        .version_properties(VAULT, Collection::Keys, "signing", "0123456789abcdef0123456789abcdef")
        .await
        .unwrap_err();
    assert_eq!(missing.status(), Some(404), "{missing}");
    let refused = vault.secret_version("kv-elsewhere", "db", &old).await.unwrap_err();
    assert!(matches!(refused, keyturn_vault::VaultError::NotAllowed { .. }), "{refused}");
}

/// Asserts that `properties` carry the vault's time, not the machine's: the emulator's clock was moved
/// [`CLOCK_AHEAD_DAYS`] ahead after seeding, and its `Date` header follows it (as Key Vault's tells its own time).
fn assert_vault_time(properties: &VersionProperties, what: &str) {
    let vault_time = properties.vault_time.unwrap_or_else(|| panic!("{what}: no Date in the vault's answer"));
    let ahead = vault_time - chrono::Utc::now();
    let expected = chrono::TimeDelta::days(CLOCK_AHEAD_DAYS);
    assert!(
        (ahead - expected).abs() < chrono::TimeDelta::minutes(1),
        "{what}: the vault's time {vault_time} is not its clock's ({ahead} ahead of the machine's)"
    );
}

fn seed(kv: &keyturn_local::keyvault::RunningEmulator) {
    let store = kv.store();
    let secret = |value: &str, exp: Option<i64>, generation: &str| SecretSpec {
        value: value.into(),
        content_type: Some("text/plain".into()),
        attributes: AttributeInput { exp, ..Default::default() },
        tags: BTreeMap::from([("generation".to_owned(), generation.to_owned())]),
    };
    let key = || KeySpecInput {
        kty: "EC".into(),
        spec: KeySpec::Ec(Curve::P256),
        key_ops: None,
        attributes: AttributeInput::default(),
        tags: BTreeMap::new(),
    };
    let policy = || CertificatePolicy {
        issuer: Some(IssuerParams { name: Some("Self".into()), ..Default::default() }),
        x509_props: Some(X509Props { subject: Some("CN=tls.example.test".into()), ..Default::default() }),
        ..Default::default()
    };
    // Two versions of each, a second apart so "oldest" is unambiguous (creation times are whole seconds).
    for round in ["1", "2"] {
        let value = if round == "1" { "old value" } else { "new value" };
        store.set_secret(VAULT, "db", secret(value, (round == "1").then_some(OLD_EXPIRES), round)).unwrap();
        store.create_key(VAULT, "signing", key()).unwrap();
        store.create_certificate(VAULT, "tls", Some(policy()), AttributeInput::default(), BTreeMap::new()).unwrap();
        kv.clock().advance(Duration::from_secs(1));
    }
    // The vault's clock now runs ahead of the machine's (less than the certificates' year of validity).
    kv.clock().advance(Duration::from_secs(CLOCK_AHEAD_DAYS as u64 * 86_400));
}

#[tokio::test]
async fn one_named_version_of_each_kind_is_read_and_changed() {
    if std::env::var(SCENARIO).is_ok() {
        return scenario().await;
    }
    let kv = KeyVaultEmulator::builder().vault(VAULT).no_throttling().start().await.unwrap();
    // A broad client of the emulator as the system-assigned identity (strict RBAC by default): its role, visibly.
    kv.grant_system_identity("Key Vault Administrator").unwrap();
    seed(&kv);
    support::run_child(TEST, &kv, VAULT, &[(SCENARIO, "1".to_owned())], "the versions scenario").await;
    kv.shutdown().await;
}
