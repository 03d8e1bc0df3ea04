//! Storage account keys, a dual credential, with the contract of Microsoft's rotation sample: tag
//! `CredentialId` = `key1` | `key2` (the key the secret holds), `ProviderAddress` = the storage account's
//! resource id. A rotation regenerates the key the secret does NOT hold, through Azure Resource Manager with
//! the handler's own identity, stores it, and switches `CredentialId`. The stored key stays valid
//! throughout, so there is nothing to set and nothing is ever stranded.
//!
//! Bindings (issue 13): `ProviderAddress` may only pick among the accounts `KEYTURN_STORAGE_ACCOUNTS` binds
//! to the secret's vault (and name); any other account is refused permanently before Resource Manager is
//! called, so a writer of one secret cannot regenerate (and receive) the keys of an account whose real users
//! they would break. Without a binding the provider is not registered.
//!
//! Replays: the engine already turns a duplicate delivery into "already rotated". A replay after a crash
//! between the regeneration and the promotion finds the other key newer than the live version (its
//! `creationTime` after the version's `nbf`, which keyturn sets to the rotation's time) and uses it instead of
//! regenerating again.
//!
//! There is no Rust management SDK for Microsoft.Storage in the Azure SDK 1.x, so the two calls
//! (`listKeys`, `regenerateKey`, API version [`API_VERSION`]) are made through [`ArmClient`] (`crate::arm`).

use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use azure_core::http::{ClientOptions, Method, Url};
use chrono::{DateTime, Utc};
use keyturn_config::SecretString;
use keyturn_config::providers::{STORAGE_ACCOUNTS, StorageBinding};
use keyturn_vault::model::{SecretProperties, Tags};
use serde::Deserialize;

use crate::arm::ArmClient;
use crate::policy::{CREDENTIAL_ID, PROVIDER_ADDRESS, tag};
use crate::provider::{Pending, PreviousCredential, Provider, ProviderError, ProviderFuture, RotationContext};

/// The Microsoft.Storage REST API version keyturn calls.
pub const API_VERSION: &str = "2023-05-01";
const NAME: &str = "storage-account-key";

/// `KeyturnRotation=storage-account-key`.
#[derive(Debug, Clone)]
pub struct StorageKeys {
    arm: ArmClient,
    bindings: Vec<StorageBinding>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeysResult {
    #[serde(default)]
    keys: Vec<KeyOut>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeyOut {
    key_name: String,
    value: Option<String>,
    creation_time: Option<DateTime<Utc>>,
}

impl StorageKeys {
    /// Calls Resource Manager at `endpoint` (`KEYTURN_ARM_ENDPOINT`) with `credential`, for the accounts
    /// `bindings` (`KEYTURN_STORAGE_ACCOUNTS`) bind.
    pub fn new(
        endpoint: Url,
        credential: Arc<dyn TokenCredential>,
        options: ClientOptions,
        bindings: Vec<StorageBinding>,
    ) -> Self {
        Self { arm: ArmClient::new(endpoint, credential, options), bindings }
    }

    fn error(message: impl Into<String>, retryable: bool) -> ProviderError {
        ProviderError { provider: NAME, message: message.into(), retryable }
    }

    /// `POST {account}/{action}?api-version=...`, answering the account's keys.
    async fn call(&self, account: &str, action: &str, body: Option<&str>) -> Result<KeysResult, ProviderError> {
        let path = format!("{}/{action}", account.trim_end_matches('/'));
        let doing = format!("{action} on {account}");
        let body = self
            .arm
            .send(Method::Post, &path, API_VERSION, body, &[200], &doing)
            .await
            .map_err(|e| Self::error(e.message, e.retryable))?;
        // The body holds account keys: parse it without ever quoting it in an error.
        serde_json::from_slice(&body)
            .map_err(|_| Self::error(format!("{doing}: the response is not a key list"), false))
    }

    fn key_of(
        result: &KeysResult,
        name: &str,
        account: &str,
    ) -> Result<(SecretString, Option<DateTime<Utc>>), ProviderError> {
        let key = result
            .keys
            .iter()
            .find(|k| k.key_name.eq_ignore_ascii_case(name))
            .ok_or_else(|| Self::error(format!("{account} answered no {name}"), false))?;
        let value = key
            .value
            .clone()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| Self::error(format!("{account} answered {name} without a value"), false))?;
        Ok((SecretString::new(value), key.creation_time))
    }
}

/// The key a rotation regenerates: the one `CredentialId` does not name.
fn other_key(credential_id: Option<&str>) -> Result<(&'static str, &'static str), ProviderError> {
    match credential_id.map(str::to_ascii_lowercase).as_deref() {
        Some("key1") => Ok(("key1", "key2")),
        Some("key2") => Ok(("key2", "key1")),
        other => Err(StorageKeys::error(
            format!("tag {CREDENTIAL_ID} must be key1 or key2 (the key the secret holds), not {other:?}"),
            false,
        )),
    }
}

/// Whether `previous` holds the other key of the pair than `latest` (which the rotation did not regenerate).
fn previous_key(latest: &SecretProperties, previous: &SecretProperties) -> PreviousCredential {
    let held = |p: &SecretProperties| tag(&p.tags, CREDENTIAL_ID).map(str::to_ascii_lowercase);
    match (held(previous), held(latest)) {
        (Some(before), Some(now)) if before != now && other_key(Some(&before)).is_ok() => {
            PreviousCredential::Survives { until: None }
        }
        (before, now) => PreviousCredential::Revoked(format!(
            "{NAME}: the previous version holds {} and the latest {}: only a version holding the other key of the \
             pair is known to still work",
            before.as_deref().unwrap_or("no CredentialId"),
            now.as_deref().unwrap_or("no CredentialId")
        )),
    }
}

/// A storage account's resource id, checked (it becomes the request path).
fn account_id(address: Option<&str>) -> Result<&str, ProviderError> {
    let invalid = || {
        StorageKeys::error(
            format!(
                "tag {PROVIDER_ADDRESS} must be the storage account's resource id \
                 (/subscriptions/<s>/resourceGroups/<g>/providers/Microsoft.Storage/storageAccounts/<a>), not {address:?}"
            ),
            false,
        )
    };
    let address = address.ok_or_else(invalid)?;
    let segments: Vec<&str> = address.trim_end_matches('/').split('/').collect();
    let safe =
        |s: &str| !s.chars().all(|c| c == '.') && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.()".contains(c));
    match segments.as_slice() {
        ["", sub, s, rgs, g, providers, ns, kind, a]
            if sub.eq_ignore_ascii_case("subscriptions")
                && rgs.eq_ignore_ascii_case("resourceGroups")
                && providers.eq_ignore_ascii_case("providers")
                && ns.eq_ignore_ascii_case("Microsoft.Storage")
                && kind.eq_ignore_ascii_case("storageAccounts")
                && [s, g, a].iter().all(|p| safe(p)) =>
        {
            Ok(address.trim_end_matches('/'))
        }
        _ => Err(invalid()),
    }
}

impl Provider for StorageKeys {
    fn name(&self) -> &'static str {
        NAME
    }

    fn create_pending<'a>(&'a self, ctx: &'a RotationContext<'a>) -> ProviderFuture<'a, Pending> {
        Box::pin(async move {
            let (stored, other) = other_key(ctx.policy.credential_id.as_deref())?;
            let account = account_id(ctx.policy.provider_address.as_deref())?;
            if !StorageBinding::allows(&self.bindings, ctx.vault, ctx.name, account) {
                return Err(Self::error(
                    format!(
                        "{account} is not bound to secret '{}' in vault '{}' ({STORAGE_ACCOUNTS} has no entry for it); \
                         nothing was asked of Resource Manager",
                        ctx.name, ctx.vault
                    ),
                    false,
                ));
            }
            let keys = self.call(account, "listKeys", None).await?;
            let (value, created) = Self::key_of(&keys, other, account)?;
            let value = match (created, ctx.current.properties.not_before) {
                // Regenerated after the live version was stored: by a crashed attempt of this rotation.
                (Some(created), Some(stored_at)) if created > stored_at => {
                    tracing::info!(
                        secret = ctx.name,
                        key = other,
                        "the other key is newer than the stored version; using it"
                    );
                    value
                }
                _ => {
                    let body = serde_json::json!({ "keyName": other }).to_string();
                    let keys = self.call(account, "regenerateKey", Some(&body)).await?;
                    tracing::info!(secret = ctx.name, stored, regenerated = other, "storage account key regenerated");
                    Self::key_of(&keys, other, account)?.0
                }
            };
            Ok(Pending { value, tags: Tags::from([(CREDENTIAL_ID.to_owned(), other.to_owned())]) })
        })
    }

    fn test_pending<'a>(&'a self, ctx: &'a RotationContext<'a>, pending: &'a Pending) -> ProviderFuture<'a, ()> {
        Box::pin(async move {
            // The key must still be the account's: someone regenerating it meanwhile would make it dead on arrival.
            let (_, other) = other_key(ctx.policy.credential_id.as_deref())?;
            let account = account_id(ctx.policy.provider_address.as_deref())?;
            let (value, _) = Self::key_of(&self.call(account, "listKeys", None).await?, other, account)?;
            if value != pending.value {
                return Err(Self::error(format!("{other} of {account} changed during the rotation; retrying"), true));
            }
            Ok(())
        })
    }

    /// The rotation regenerated the key the previous version did NOT hold, so the previous key still works,
    /// provided the two versions hold different keys (each rotation switches `CredentialId`).
    fn previous_credential(
        &self,
        latest: &SecretProperties,
        previous: &SecretProperties,
        _now: DateTime<Utc>,
    ) -> PreviousCredential {
        previous_key(latest, previous)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_previous_version_holding_the_other_key_can_be_restored() {
        let holding = |key: Option<&str>| SecretProperties {
            version: "v".into(),
            content_type: None,
            tags: key.map(|k| Tags::from([(CREDENTIAL_ID.to_owned(), k.to_owned())])).unwrap_or_default(),
            enabled: true,
            not_before: None,
            expires: None,
        };
        assert_eq!(
            previous_key(&holding(Some("key2")), &holding(Some("Key1"))),
            PreviousCredential::Survives { until: None }
        );
        for (latest, previous) in [(Some("key1"), Some("key1")), (Some("key2"), None), (Some("key2"), Some("primary"))]
        {
            let PreviousCredential::Revoked(reason) = previous_key(&holding(latest), &holding(previous)) else {
                panic!("{latest:?} after {previous:?}")
            };
            assert!(reason.starts_with("storage-account-key: the previous version holds"), "{reason}");
        }
    }

    #[test]
    fn the_other_key_and_the_account_id_are_checked() {
        assert_eq!(other_key(Some("Key1")).unwrap(), ("key1", "key2"));
        assert_eq!(other_key(Some("key2")).unwrap(), ("key2", "key1"));
        for bad in [None, Some("primary"), Some("")] {
            let error = other_key(bad).unwrap_err();
            assert!(!error.retryable && error.message.contains("CredentialId"), "{error}");
        }
        let id = "/subscriptions/0000/resourceGroups/rg-1/providers/Microsoft.Storage/storageAccounts/acct1/";
        assert_eq!(account_id(Some(id)).unwrap(), id.trim_end_matches('/'));
        for bad in [
            "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Sql/servers/db",
            "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/a?x=1",
            "/subscriptions/0000/resourceGroups/../providers/Microsoft.Storage/storageAccounts/a/..",
            "https://evil.example/subscriptions/0/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/a",
        ] {
            assert!(account_id(Some(bad)).is_err(), "{bad}");
        }
    }
}
