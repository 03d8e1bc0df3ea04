//! The vault as it stood before keyturn was deployed: what the demo seeds, what it expects keyturn to make of
//! each object, and how it reads versions back.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use keyturn_local::keyvault::certs::{CertificatePolicy, IssuerParams, X509Props};
use keyturn_local::keyvault::crypto::KeySpec;
use keyturn_local::keyvault::keys::{KeySpecInput, LifetimeAction, LifetimeActionType, LifetimeTrigger};
use keyturn_local::keyvault::store::AttributeInput;
use keyturn_local::keyvault::{KeyVaultEmulator, SecretSpec, ServiceError, StoredKind, VaultStore};
use keyturn_rotation::policy;

use super::{CANARY, JUMP_DAYS, MIRROR, Scratch, VALIDITY_DAYS, VAULT};
use crate::exit::CommandFailure;

/// What the demo expects keyturn to make of a seeded object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expect {
    /// near-expiry makes a new version: a secret from its policy, a key rotated, a certificate renewed; then
    /// new-version tells consumers about it.
    Rotated,
    /// near-expiry leaves it to a person: it has no rotation policy.
    Manual,
    /// expired raises the alarm at critical severity.
    Alarm,
    /// test-event records its verdict on the canary's new version.
    Canary,
}

/// One object the demo put in the vault.
#[derive(Debug, Clone)]
pub(super) struct Seeded {
    pub(super) kind: StoredKind,
    pub(super) name: &'static str,
    pub(super) version: String,
    pub(super) expect: Expect,
    /// Tagged `KeyturnMirror`: its new versions are copied into the mirror vault.
    pub(super) mirrored: bool,
}

impl Seeded {
    pub(super) fn label(&self) -> String {
        object_label(self.kind, VAULT, self.name)
    }
}

pub(super) fn object_label(kind: StoredKind, vault: &str, name: &str) -> String {
    format!("{} {vault}/{name}", kind.lower())
}

/// Seeds the vaults into the scratch state file with an emulator of their own, so that none of it raises
/// an event once the demo's stack starts over the file.
pub(super) async fn seed_state(scratch: &Scratch) -> Result<Vec<Seeded>, CommandFailure> {
    let emulator = KeyVaultEmulator::builder()
        .vault(VAULT)
        .vault(MIRROR)
        .persist_to(scratch.state())
        .ca_dir(scratch.ca())
        .start()
        .await
        .map_err(|error| CommandFailure::failed(format!("the Key Vault emulator did not start: {error}")))?;
    let seeded = seed(emulator.store(), emulator.clock().now())
        .map_err(|error| CommandFailure::failed(format!("seeding {VAULT}: {error}")));
    // Saves the state file.
    emulator.shutdown().await;
    seeded
}

/// A realistic vault on `today`: expiry dates fall where they will be after the clock moves.
pub(super) fn seed(store: &VaultStore, today: DateTime<Utc>) -> Result<Vec<Seeded>, ServiceError> {
    let after_jump = today + TimeDelta::days(JUMP_DAYS.into());
    let exp = |days: i64| Some((after_jump + TimeDelta::days(days)).timestamp());
    let validity = VALIDITY_DAYS.to_string();
    let generated = |format: &str, length: &str, owner: &str| {
        tags(&[
            (policy::ROTATION, "generated"),
            (policy::VALIDITY_PERIOD_DAYS, &validity),
            (policy::FORMAT, format),
            (policy::LENGTH, length),
            ("owner", owner),
        ])
    };
    let mut seeded = Vec::new();
    let mut secret = |name: &'static str, exp: Option<i64>, tags: BTreeMap<String, String>, expect: Expect| {
        let mirrored = tags.contains_key(policy::MIRROR);
        let spec = SecretSpec {
            // A throwaway value: demo secrets protect nothing, and no value is ever printed.
            value: uuid::Uuid::new_v4().simple().to_string(),
            content_type: Some("text/plain".to_owned()),
            attributes: AttributeInput { exp, ..AttributeInput::default() },
            tags,
        };
        let version = store.set_secret(VAULT, name, spec)?.version.version;
        seeded.push(Seeded { kind: StoredKind::Secret, name, version, expect, mirrored });
        Ok::<(), ServiceError>(())
    };

    let mut db = generated("password", "24", "payments");
    db.insert(policy::MIRROR.to_owned(), MIRROR.to_owned());
    secret("db-password", exp(20), db, Expect::Rotated)?;
    secret("webhook-signing-key", exp(25), generated("hex", "32", "integrations"), Expect::Rotated)?;
    secret("partner-sftp-password", exp(10), tags(&[("owner", "partners")]), Expect::Manual)?;
    secret("legacy-api-key", exp(-3), tags(&[("owner", "billing")]), Expect::Alarm)?;
    secret(CANARY, None, tags(&[("owner", "platform")]), Expect::Canary)?;

    let key = store.create_key(
        VAULT,
        "signing-key",
        KeySpecInput {
            kty: "RSA".to_owned(),
            spec: KeySpec::Rsa(2048),
            key_ops: None,
            attributes: AttributeInput { exp: exp(15), ..AttributeInput::default() },
            tags: tags(&[(policy::ROTATION, "enabled"), ("owner", "identity")]),
        },
    )?;
    // Notify-only, as Key Vault's default policy is (a Rotate action would leave the key to Key Vault), with
    // the expiry the rotated version gets.
    store.set_rotation_policy(
        VAULT,
        "signing-key",
        vec![LifetimeAction {
            trigger: LifetimeTrigger { time_after_create: None, time_before_expiry: Some("P30D".to_owned()) },
            action: LifetimeActionType { kind: "Notify".to_owned() },
        }],
        Some(format!("P{VALIDITY_DAYS}D")),
    )?;
    seeded.push(Seeded {
        kind: StoredKind::Key,
        name: "signing-key",
        version: key.version.version,
        expect: Expect::Rotated,
        mirrored: false,
    });

    // Two months of validity: 59-62 days from today, so 19-22 days left after the jump, and its renewal
    // (two months from the moved clock) is not near expiry itself.
    let policy = CertificatePolicy {
        issuer: Some(IssuerParams { name: Some("Self".to_owned()), ..IssuerParams::default() }),
        x509_props: Some(X509Props {
            subject: Some("CN=demo.keyturn.test".to_owned()),
            validity_months: Some(2),
            ..X509Props::default()
        }),
        lifetime_actions: Some(Vec::new()),
        ..CertificatePolicy::default()
    };
    store.create_certificate(
        VAULT,
        "web-tls",
        Some(policy),
        AttributeInput::default(),
        tags(&[(policy::ROTATION, "enabled"), ("owner", "web")]),
    )?;
    // Reading it completes the self-signed issuance.
    let cert = store.get_certificate(VAULT, "web-tls", None)?;
    seeded.push(Seeded {
        kind: StoredKind::Certificate,
        name: "web-tls",
        version: cert.version.version,
        expect: Expect::Rotated,
        mirrored: false,
    });
    Ok(seeded)
}

pub(super) fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect()
}

/// One version of an object, whatever its kind.
#[derive(Debug, Clone)]
pub(super) struct VersionInfo {
    pub(super) id: String,
    pub(super) exp: Option<i64>,
    pub(super) tags: BTreeMap<String, String>,
}

/// Every version of an object, oldest first; none when it does not exist.
pub(super) fn versions(store: &VaultStore, kind: StoredKind, vault: &str, name: &str) -> Vec<VersionInfo> {
    pub(super) fn info<D>(version: &keyturn_local::keyvault::store::Version<D>) -> VersionInfo {
        VersionInfo { id: version.version.clone(), exp: version.attributes.exp, tags: version.tags.clone() }
    }
    let listed = match kind {
        StoredKind::Secret => {
            store.list_secret_versions(vault, name).map(|v| v.iter().map(|v| info(&v.version)).collect())
        }
        StoredKind::Key => store.list_key_versions(vault, name).map(|v| v.iter().map(|v| info(&v.version)).collect()),
        StoredKind::Certificate => {
            store.list_certificate_versions(vault, name).map(|v| v.iter().map(|v| info(&v.version)).collect())
        }
    };
    listed.unwrap_or_default()
}

pub(super) fn latest(store: &VaultStore, kind: StoredKind, vault: &str, name: &str) -> Option<VersionInfo> {
    versions(store, kind, vault, name).pop()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_seeded_vault_is_due_only_after_the_clock_moves() {
        let kv = KeyVaultEmulator::builder().vault(VAULT).vault(MIRROR).start().await.unwrap();
        let today = kv.clock().now();
        let seeded = seed(kv.store(), today).unwrap();
        let after_jump = today + TimeDelta::days(JUMP_DAYS.into());
        let lead = TimeDelta::days(30);
        for object in &seeded {
            let exp = latest(kv.store(), object.kind, VAULT, object.name).unwrap().exp;
            let label = object.label();
            match object.expect {
                Expect::Canary => assert_eq!(exp, None, "{label}"),
                _ => {
                    let exp = DateTime::from_timestamp(exp.unwrap(), 0).unwrap();
                    assert!(exp - lead > today, "{label} is already near expiry before the jump");
                    assert!(exp - lead <= after_jump, "{label} is not near expiry after the jump");
                    assert_eq!(exp <= after_jump, object.expect == Expect::Alarm, "{label}");
                }
            }
        }
        let expects: Vec<Expect> = seeded.iter().map(|s| s.expect).collect();
        assert_eq!(expects.iter().filter(|e| **e == Expect::Rotated).count(), 4);
        assert!(seeded.iter().any(|s| s.mirrored));
        // A rotated version (valid VALIDITY_DAYS from the real clock) is not near expiry after the jump.
        assert!(today + TimeDelta::days(VALIDITY_DAYS.into()) - lead > after_jump);
        kv.shutdown().await;
    }
}
