//! The Azure key family: Azure resources with two keys, one regenerated while the other stays valid (storage
//! accounts, Cosmos DB, Azure Cache for Redis, Service Bus and Event Hubs authorization rules, Azure AI services
//! and Azure OpenAI, Azure AI Search admin keys). One provider, `azure-key`, with a row per resource type
//! ([`table`]); `storage-account-key` is the same provider restricted to storage accounts (its older name).
//!
//! The contract of Microsoft's rotation samples: tag `CredentialId` = the key the secret holds (`key1`/`key2`,
//! `primary`/`secondary`, ... as the type's row names them), `ProviderAddress` = the resource id; the type comes
//! from the id. A rotation regenerates the key the secret does NOT hold, through Azure Resource Manager with the
//! handler's own identity, stores it, and switches `CredentialId`. The stored key stays valid throughout, so
//! there is nothing to set and nothing is ever stranded; the previous version keeps working after a rotation
//! until the next one regenerates it ([`previous_key`]: what `keyturn rollback` relies on).
//!
//! Bindings (issue 13): `ProviderAddress` may only pick among the resources `KEYTURN_AZURE_KEY_RESOURCES` (or
//! `KEYTURN_STORAGE_ACCOUNTS`) binds to the secret's vault (and name); any other resource is refused permanently
//! before Resource Manager is called, so a writer of one secret cannot regenerate (and receive) the keys of a
//! resource whose real users they would break. Without a binding the provider is not registered.
//!
//! Replays: a duplicate delivery is already "already rotated" in the engine. A replay after a crash between the
//! regeneration and the promotion must not regenerate again (the key would change twice). Most services report
//! no key creation time, so before regenerating the provider records, in the pending home
//! ([`pending`](crate::provider::pending)), a fingerprint (SHA-256) of the key it is about to replace. A replay
//! of the same rotation that finds the key's fingerprint changed knows the regeneration happened and takes the
//! key as it is; one that finds it unchanged regenerates. No key value is ever written anywhere but the live
//! secret; the fingerprint of a random key of 128 bits or more reveals nothing of it.

pub mod arm;
pub mod table;

use std::sync::Arc;
use std::time::Duration;

use keyturn_config::SecretString;
use keyturn_config::azure_keys::{AZURE_KEY_RESOURCES, AzureKeyBindings, AzureKeyType, STORAGE_ACCOUNTS};
use keyturn_vault::KeyVault;
use keyturn_vault::model::{SecretProperties, Tags};

use self::arm::KeyCalls;
use self::table::{ResourceSpec, Slot};
use crate::arm::ArmClient;
use crate::policy::{CREDENTIAL_ID, PROVIDER_ADDRESS, tag};
use crate::provider::pending::PendingHome;
use crate::provider::{Pending, PreviousCredential, Provider, ProviderError, ProviderFuture, RotationContext};

/// `KeyturnRotation=azure-key`: any type of the family.
pub const NAME: &str = "azure-key";
/// `KeyturnRotation=storage-account-key`: storage accounts only (the provider's name before the family).
pub const STORAGE_NAME: &str = "storage-account-key";
/// Tag on the pending home: the fingerprint of the key a rotation is about to regenerate.
pub const REPLACING_FINGERPRINT: &str = "KeyturnReplacingKeyFingerprint";

/// How long, after a regeneration Resource Manager accepted, the new key may take to show in the list answer
/// (Cosmos DB regenerates in a long-running operation), polled every [`POLL`].
const SETTLE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(250);

/// `KeyturnRotation=azure-key` (or `storage-account-key`).
#[derive(Debug, Clone)]
pub struct AzureKeys {
    name: &'static str,
    /// `Some`: the only type this name rotates (`storage-account-key`).
    only: Option<AzureKeyType>,
    calls: KeyCalls,
    bindings: AzureKeyBindings,
    home: PendingHome,
}

/// What a secret's tags point at, checked: its type's row, the resource, and the two keys.
struct Target<'a> {
    row: &'static ResourceSpec,
    resource: &'a str,
    stored: Slot,
    other: Slot,
}

impl AzureKeys {
    /// `azure-key`: calls Resource Manager through `arm` for the resources `bindings` binds; `vault` holds the
    /// pending homes (the replay fingerprints).
    pub fn new(arm: ArmClient, bindings: AzureKeyBindings, vault: Arc<dyn KeyVault>) -> Self {
        Self { name: NAME, only: None, calls: KeyCalls::new(NAME, arm), bindings, home: PendingHome::new(vault, NAME) }
    }

    /// The same provider under its older name, for storage accounts only.
    pub fn storage_accounts_only(&self) -> Self {
        Self {
            name: STORAGE_NAME,
            only: Some(AzureKeyType::StorageAccount),
            calls: self.calls.for_provider(STORAGE_NAME),
            bindings: self.bindings.clone(),
            home: self.home.for_provider(STORAGE_NAME),
        }
    }

    fn error(&self, message: impl Into<String>, retryable: bool) -> ProviderError {
        ProviderError { provider: self.name, message: message.into(), retryable }
    }

    /// The secret's tags checked against the table and the bindings, before anything is asked of Resource Manager.
    fn target<'a>(&self, ctx: &'a RotationContext<'a>) -> Result<Target<'a>, ProviderError> {
        let address = ctx.policy.provider_address.as_deref();
        let kinds = match self.only {
            Some(only) => only.arm_type().to_owned(),
            None => AzureKeyType::all_arm_types(),
        };
        let kind = address.and_then(AzureKeyType::of).filter(|kind| self.only.is_none_or(|only| only == *kind));
        let (Some(resource), Some(kind)) = (address, kind) else {
            return Err(self.error(
                format!(
                    "tag {PROVIDER_ADDRESS} must be the resource id of one of {kinds} \
                     (/subscriptions/<s>/resourceGroups/<g>/providers/<type>/<name>), not {address:?}"
                ),
                false,
            ));
        };
        let resource = resource.trim_end_matches('/');
        let row = table::row(kind);
        let credential_id = ctx.policy.credential_id.as_deref();
        let Some((stored, other)) = credential_id.and_then(|id| row.slots(id)) else {
            return Err(self.error(
                format!(
                    "tag {CREDENTIAL_ID} must name the key the secret holds, one of {} for a {}, not {credential_id:?}",
                    row.credential_ids(),
                    kind.arm_type()
                ),
                false,
            ));
        };
        if !self.bindings.allows(ctx.vault, ctx.name, resource) {
            return Err(self.error(
                format!(
                    "{resource} is not bound to secret '{}' in vault '{}' (neither {AZURE_KEY_RESOURCES} nor \
                     {STORAGE_ACCOUNTS} has an entry for it); nothing was asked of Resource Manager",
                    ctx.name, ctx.vault
                ),
                false,
            ));
        }
        Ok(Target { row, resource, stored, other })
    }

    /// The current value of `slot`.
    async fn key(&self, target: &Target<'_>, slot: Slot) -> Result<String, ProviderError> {
        let answer = self.calls.list(target.resource, target.row.list_action, target.row.api_version).await?;
        target.row.read(&answer, slot).map(str::to_owned).ok_or_else(|| {
            self.error(format!("{} answered no {} (its {})", target.resource, slot.credential_id, slot.answer), false)
        })
    }

    /// Regenerates `target.other`, whose value is `before`, and waits for the new key to show.
    async fn regenerate(
        &self,
        ctx: &RotationContext<'_>,
        target: &Target<'_>,
        before: &str,
    ) -> Result<String, ProviderError> {
        let (path, body) = target.row.regenerate_request(target.other);
        self.calls.regenerate(target.resource, &path, target.row.api_version, body).await?;
        tracing::info!(
            secret = ctx.name,
            resource = target.resource,
            stored = target.stored.credential_id,
            regenerated = target.other.credential_id,
            "key regeneration accepted"
        );
        let deadline = tokio::time::Instant::now() + SETTLE;
        loop {
            let now = self.key(target, target.other).await?;
            if now != before {
                return Ok(now);
            }
            if tokio::time::Instant::now() >= deadline {
                // The replay finds the fingerprint changed once the service has finished, and takes that key.
                return Err(self.error(
                    format!(
                        "{} of {} still shows its previous value {}s after the regeneration was accepted; retrying",
                        target.other.credential_id,
                        target.resource,
                        SETTLE.as_secs()
                    ),
                    true,
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// The fingerprint of a key recorded before it is regenerated: hex SHA-256 (a one-way function of a random key).
fn fingerprint(key: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `previous`'s key still works now that `latest` is live: yes when both name the same resource and hold
/// the two keys of one pair (a rotation regenerated the key `previous` did NOT hold, so `previous`'s key stays
/// valid until the next rotation); otherwise nothing says it does.
pub fn previous_key(provider: &str, latest: &SecretProperties, previous: &SecretProperties) -> PreviousCredential {
    let address =
        |p: &SecretProperties| tag(&p.tags, PROVIDER_ADDRESS).map(|a| a.trim_end_matches('/').to_ascii_lowercase());
    let held = |p: &SecretProperties| tag(&p.tags, CREDENTIAL_ID).map(str::to_owned);
    let kind = address(latest).as_deref().and_then(AzureKeyType::of);
    let pair = match (kind, held(previous), held(latest)) {
        (Some(kind), Some(before), Some(now)) if address(previous) == address(latest) => {
            table::row(kind).slots(&before).is_some_and(|(_, other)| other.credential_id.eq_ignore_ascii_case(&now))
        }
        _ => false,
    };
    if pair {
        return PreviousCredential::Survives { until: None };
    }
    PreviousCredential::Revoked(format!(
        "{provider}: the previous version holds {} and the latest {} (of {}): only a version holding the other key \
         of the same resource's pair is known to still work",
        held(previous).as_deref().unwrap_or("no CredentialId"),
        held(latest).as_deref().unwrap_or("no CredentialId"),
        tag(&latest.tags, PROVIDER_ADDRESS).unwrap_or("no ProviderAddress"),
    ))
}

impl Provider for AzureKeys {
    fn name(&self) -> &'static str {
        self.name
    }

    fn create_pending<'a>(&'a self, ctx: &'a RotationContext<'a>) -> ProviderFuture<'a, Pending> {
        Box::pin(async move {
            let target = self.target(ctx)?;
            let other_now = self.key(&target, target.other).await?;
            let recorded = self.home.resume(ctx).await?;
            let replacing = recorded.as_ref().and_then(|p| tag(&p.tags, REPLACING_FINGERPRINT));
            let value = match replacing {
                // An earlier attempt of this rotation recorded the key it replaced, and the key has changed since.
                Some(replaced) if replaced != fingerprint(&other_now) => {
                    tracing::info!(
                        secret = ctx.name,
                        key = target.other.credential_id,
                        "the key was regenerated by an earlier attempt of this rotation; using it"
                    );
                    other_now
                }
                _ => {
                    let marker = Pending {
                        value: SecretString::new(format!(
                            "regenerating {} of {} (no credential)",
                            target.other.credential_id, target.resource
                        )),
                        tags: Tags::from([(REPLACING_FINGERPRINT.to_owned(), fingerprint(&other_now))]),
                    };
                    self.home.store(ctx, &marker).await?;
                    self.regenerate(ctx, &target, &other_now).await?
                }
            };
            Ok(Pending {
                value: SecretString::new(value),
                tags: Tags::from([(CREDENTIAL_ID.to_owned(), target.other.credential_id.to_owned())]),
            })
        })
    }

    fn test_pending<'a>(&'a self, ctx: &'a RotationContext<'a>, pending: &'a Pending) -> ProviderFuture<'a, ()> {
        Box::pin(async move {
            // The key must still be the resource's: someone regenerating it meanwhile would make it dead on arrival.
            let target = self.target(ctx)?;
            if self.key(&target, target.other).await? != pending.value.expose() {
                return Err(self.error(
                    format!(
                        "{} of {} changed during the rotation; retrying",
                        target.other.credential_id, target.resource
                    ),
                    true,
                ));
            }
            Ok(())
        })
    }

    fn previous_credential(
        &self,
        latest: &SecretProperties,
        previous: &SecretProperties,
        _now: chrono::DateTime<chrono::Utc>,
    ) -> PreviousCredential {
        previous_key(self.name, latest, previous)
    }

    fn finish<'a>(&'a self, ctx: &'a RotationContext<'a>, promoted: &'a SecretProperties) -> ProviderFuture<'a, ()> {
        self.home.finish(ctx, promoted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_is_sha256_hex_and_never_the_key() {
        let key = "c2VjcmV0LWtleS12YWx1ZS0wMDAx";
        let print = fingerprint(key);
        assert_eq!(print.len(), 64);
        assert!(!print.contains(key));
        assert_eq!(print, fingerprint(key));
        assert_ne!(print, fingerprint("c2VjcmV0LWtleS12YWx1ZS0wMDAy"));
        assert_eq!(fingerprint("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn only_a_previous_version_holding_the_other_key_of_the_same_resource_can_be_restored() {
        const ACCOUNT: &str = "/subscriptions/0/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/a";
        const COSMOS: &str = "/subscriptions/0/resourceGroups/g/providers/Microsoft.DocumentDB/databaseAccounts/c";
        let holding = |key: Option<&str>, address: &str| SecretProperties {
            version: "v".into(),
            content_type: None,
            tags: key
                .map(|k| (CREDENTIAL_ID.to_owned(), k.to_owned()))
                .into_iter()
                .chain([(PROVIDER_ADDRESS.to_owned(), address.to_owned())])
                .collect(),
            enabled: true,
            not_before: None,
            expires: None,
        };
        let survives = PreviousCredential::Survives { until: None };
        assert_eq!(previous_key(NAME, &holding(Some("key2"), ACCOUNT), &holding(Some("Key1"), ACCOUNT)), survives);
        let (primary, secondary) = (holding(Some("secondary"), COSMOS), holding(Some("primary"), COSMOS));
        assert_eq!(previous_key(NAME, &primary, &secondary), survives);
        for (latest, previous) in [
            (holding(Some("key1"), ACCOUNT), holding(Some("key1"), ACCOUNT)),
            (holding(Some("key2"), ACCOUNT), holding(None, ACCOUNT)),
            (holding(Some("key2"), ACCOUNT), holding(Some("primary"), ACCOUNT)),
            (holding(Some("key2"), ACCOUNT), holding(Some("key1"), &ACCOUNT.replace("/a", "/b"))),
            // A read-only key is not the other key of a read-write one.
            (holding(Some("secondary"), COSMOS), holding(Some("primaryReadonly"), COSMOS)),
        ] {
            let PreviousCredential::Revoked(reason) = previous_key(NAME, &latest, &previous) else {
                panic!("{latest:?} after {previous:?}")
            };
            assert!(reason.starts_with("azure-key: the previous version holds"), "{reason}");
        }
    }
}
