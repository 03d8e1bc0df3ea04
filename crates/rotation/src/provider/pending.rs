//! The pending home: where a single-credential provider keeps a new value between "created" and "promoted".
//!
//! Key Vault has no staging labels: every `set_secret` on the live secret is at once the version consumers
//! read. So a value that the credential's owner has not accepted yet lives in a sibling secret,
//! `<name>-keyturn-pending`, tagged with the rotation it belongs to (the live version it replaces). A replay
//! after a crash finds it there and resumes with the same value instead of inventing another one, which
//! would strand whichever value the owner had already accepted.
//!
//! After promotion the pending home gets one more version holding a marker (no credential) with state
//! `promoted`. It is never deleted: soft delete would block the name for the retention period, and the next
//! rotation could not recreate it. A pending home whose rotation is not the live secret's current version is
//! stale (a crash after promotion leaves one) and is simply overwritten by the next rotation.

use std::sync::Arc;

use keyturn_config::SecretString;
use keyturn_vault::model::{NewSecretVersion, SecretProperties, Tags};
use keyturn_vault::{KeyVault, VaultError};

use crate::policy::tag;
use crate::provider::{Pending, ProviderError, ProviderFuture, RotationContext};

/// The suffix of a pending home's name.
pub const SUFFIX: &str = "-keyturn-pending";
/// Tag: the live version the pending value replaces (the rotation it belongs to).
pub const PENDING_FOR: &str = "KeyturnPendingFor";
/// Tag: the live secret it belongs to.
pub const PENDING_OF: &str = "KeyturnPendingOf";
/// Tag: `pending` while the value awaits promotion, `promoted` after.
pub const STATE: &str = "KeyturnPendingState";
/// Tag: the event that created the pending value.
pub const PENDING_EVENT: &str = "KeyturnPendingEvent";
/// Tag on a promoted marker: the live version the value became.
pub const PROMOTED_VERSION: &str = "KeyturnPromotedVersion";
/// The pending home's own tags; every other tag on it is one of the pending value's tag changes.
const OWN_TAGS: [&str; 5] = [PENDING_FOR, PENDING_OF, STATE, PENDING_EVENT, PROMOTED_VERSION];

const STATE_PENDING: &str = "pending";
const STATE_PROMOTED: &str = "promoted";

/// Key Vault's longest object name.
const MAX_NAME: usize = 127;

/// The pending home of the secrets of one vault access.
#[derive(Debug, Clone)]
pub struct PendingHome {
    vault: Arc<dyn KeyVault>,
    provider: &'static str,
}

impl PendingHome {
    pub fn new(vault: Arc<dyn KeyVault>, provider: &'static str) -> Self {
        Self { vault, provider }
    }

    /// The same homes, for a provider registered under another name.
    pub fn for_provider(&self, provider: &'static str) -> Self {
        Self { vault: self.vault.clone(), provider }
    }

    /// The pending home's name for the live secret `name`.
    pub fn name_for(&self, name: &str) -> Result<String, ProviderError> {
        let pending = format!("{name}{SUFFIX}");
        if pending.len() > MAX_NAME {
            return Err(self.error(
                format!(
                    "the secret name '{name}' is too long for its pending home '{pending}' (Key Vault allows \
                     {MAX_NAME} characters); shorten the name to {} characters or fewer",
                    MAX_NAME - SUFFIX.len()
                ),
                false,
            ));
        }
        Ok(pending)
    }

    /// The pending value (and its tag changes) of THIS rotation, the one replacing `ctx.current`, if a
    /// previous attempt left one.
    pub async fn resume(&self, ctx: &RotationContext<'_>) -> Result<Option<Pending>, ProviderError> {
        let name = self.name_for(ctx.name)?;
        let stored = match self.vault.latest_secret(ctx.vault, &name).await {
            Ok(stored) => stored,
            Err(error) if error.status() == Some(404) => return Ok(None),
            Err(error) => return Err(self.vault_error("reading the pending home", &error)),
        };
        let tags = &stored.properties.tags;
        let ours = stored.properties.enabled
            && tag(tags, PENDING_FOR).is_some_and(|v| v.eq_ignore_ascii_case(&ctx.current.properties.version))
            && tag(tags, PENDING_OF).is_some_and(|v| v.eq_ignore_ascii_case(ctx.name))
            && tag(tags, STATE) == Some(STATE_PENDING);
        if ours {
            tracing::info!(
                secret = ctx.name,
                pending_home = %name,
                pending_version = %stored.properties.version,
                "resuming from the pending value a previous attempt left"
            );
            let changes = tags
                .iter()
                .filter(|(k, _)| !OWN_TAGS.iter().any(|own| own.eq_ignore_ascii_case(k)))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            Ok(Some(Pending { value: stored.value, tags: changes }))
        } else {
            // Another rotation's leftovers (or a promoted marker): not ours to resume.
            Ok(None)
        }
    }

    /// Stores `pending` (value and tag changes) as this rotation's pending value.
    pub async fn store(&self, ctx: &RotationContext<'_>, pending: &Pending) -> Result<(), ProviderError> {
        let name = self.name_for(ctx.name)?;
        let mut tags = pending.tags.clone();
        tags.extend(self.tags(ctx, STATE_PENDING));
        let new = NewSecretVersion {
            value: pending.value.clone(),
            content_type: Some("application/x-keyturn-pending".to_owned()),
            tags,
            not_before: None,
            // No expiry: a pending home must never raise near-expiry events of its own.
            expires: None,
        };
        let stored = self
            .vault
            .set_secret(ctx.vault, &name, new)
            .await
            .map_err(|e| self.vault_error("writing the pending home", &e))?;
        tracing::info!(secret = ctx.name, pending_home = %name, pending_version = %stored.version, "pending value stored");
        Ok(())
    }

    /// A provider's step 5 when its only clean-up is the pending home ([`PendingHome::mark_promoted`]): never
    /// fails.
    pub fn finish<'a>(
        &'a self,
        ctx: &'a RotationContext<'a>,
        promoted: &'a SecretProperties,
    ) -> ProviderFuture<'a, ()> {
        Box::pin(async move {
            self.mark_promoted(ctx, promoted).await;
            Ok(())
        })
    }

    /// Marks the pending home promoted: a version holding no credential, so the value lives in one place.
    /// A failure is logged, not returned: the live secret is already rotated, and a stale pending home is
    /// harmless (the next rotation overwrites it).
    pub async fn mark_promoted(&self, ctx: &RotationContext<'_>, promoted: &SecretProperties) {
        let Ok(name) = self.name_for(ctx.name) else { return };
        let mut tags = self.tags(ctx, STATE_PROMOTED);
        tags.insert(PROMOTED_VERSION.to_owned(), promoted.version.clone());
        let new = NewSecretVersion {
            value: SecretString::new(format!("promoted to {}", promoted.version)),
            content_type: Some("text/plain".to_owned()),
            tags,
            not_before: None,
            expires: None,
        };
        match self.vault.set_secret(ctx.vault, &name, new).await {
            Ok(_) => tracing::info!(secret = ctx.name, pending_home = %name, "pending home marked promoted"),
            Err(error) => tracing::warn!(
                secret = ctx.name,
                pending_home = %name,
                %error,
                "marking the pending home promoted failed; the next rotation overwrites it"
            ),
        }
    }

    fn tags(&self, ctx: &RotationContext<'_>, state: &str) -> Tags {
        Tags::from([
            (PENDING_FOR.to_owned(), ctx.current.properties.version.clone()),
            (PENDING_OF.to_owned(), ctx.name.to_owned()),
            (STATE.to_owned(), state.to_owned()),
            (PENDING_EVENT.to_owned(), ctx.event_id.to_owned()),
        ])
    }

    fn error(&self, message: String, retryable: bool) -> ProviderError {
        ProviderError { provider: self.provider, message, retryable }
    }

    fn vault_error(&self, doing: &str, error: &VaultError) -> ProviderError {
        self.error(format!("{doing}: {error}"), error.is_retryable())
    }
}
