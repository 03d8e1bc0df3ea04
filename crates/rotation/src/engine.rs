//! [`Engine`]: the rotation contract (ARCHITECTURE.md, "Rotation contract") for one near-expiry event.
//!
//! 1. The vault must be allow-listed: checked before any network call.
//! 2. Read the latest version; if it is not the event's version, the rotation already happened.
//! 3. Read the policy from its tags; no opt-in → nothing to do. (Before the lock: an object that does not
//!    opt in never costs a lock.)
//! 4. Take the object's lock; re-read and re-check 2 and 3 under it, since another delivery may have
//!    finished in between.
//! 5. Rotate: secrets through their provider's steps and one `set_secret`; keys with Key Vault's rotate
//!    operation unless their own rotation policy already rotates them; certificates through their policy
//!    when the issuer can issue and no AutoRenew action is set, else manual action is due.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use keyturn_events::{Event, ObjectKind};
use keyturn_vault::KeyVault;
use keyturn_vault::model::{MAX_TAGS, NewSecretVersion, SecretVersion, Tags};

use crate::RotationError;
use crate::lock::{LockGuard, RotationLock, lock_key};
use crate::outcome::RotationOutcome;
use crate::policy::{self, Policy, PolicyError, Rotation};
use crate::provider::{Providers, RotationContext};

/// The source of "now" (a test or the local stack may move it).
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// Issuer providers Key Vault can request certificates from by itself (integrated CAs).
const INTEGRATED_CAS: &[&str] = &["DigiCert", "GlobalSign"];

/// Idempotency: act only while the event's version is still the latest.
pub fn already_rotated(event_version: &str, latest: &str) -> Option<RotationOutcome> {
    (!event_version.eq_ignore_ascii_case(latest))
        .then(|| RotationOutcome::AlreadyRotated { event_version: event_version.to_owned(), latest: latest.to_owned() })
}

/// The rotation engine, built once per process and shared by every invocation.
#[derive(Clone)]
pub struct Engine {
    vault: Arc<dyn KeyVault>,
    lock: Arc<dyn RotationLock>,
    providers: Providers,
    clock: Clock,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("vault", &self.vault)
            .field("lock", &self.lock)
            .field("providers", &self.providers.names())
            .finish_non_exhaustive()
    }
}

/// What the event names, checked.
struct Target<'e> {
    vault: &'e str,
    kind: ObjectKind,
    name: &'e str,
    version: &'e str,
    event_id: &'e str,
}

impl Engine {
    pub fn new(vault: Arc<dyn KeyVault>, lock: Arc<dyn RotationLock>, providers: Providers) -> Self {
        Self { vault, lock, providers, clock: Arc::new(Utc::now) }
    }

    /// Replaces the clock (tests, the local stack's movable clock).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Rotates the object a Key Vault event names, per its policy.
    pub async fn rotate(&self, event: &Event) -> Result<RotationOutcome, RotationError> {
        let key_vault = event
            .key_vault()
            .ok_or_else(|| RotationError::Event(format!("'{}' is not a Key Vault event", event.event_type())))?;
        let object = &key_vault.object;
        let target = Target {
            vault: object.vault_name(),
            kind: object.kind(),
            name: object.name(),
            version: object
                .version()
                .ok_or_else(|| RotationError::Event(format!("the event names no version of '{}'", object.name())))?,
            event_id: &event.id,
        };
        // Before anything that could touch the network.
        self.vault.check_allowed(target.vault)?;
        let outcome = match target.kind {
            ObjectKind::Secret => self.rotate_secret(&target).await,
            ObjectKind::Key => self.rotate_key(&target).await,
            ObjectKind::Certificate => self.rotate_certificate(&target).await,
            ObjectKind::Vault => Err(RotationError::Event("a vault-level event names nothing to rotate".to_owned())),
        };
        match &outcome {
            Ok(outcome) => tracing::info!(
                vault = target.vault,
                kind = %target.kind,
                object = target.name,
                version = target.version,
                event_id = target.event_id,
                outcome = outcome.label(),
                "{outcome}"
            ),
            Err(error) => tracing::warn!(
                vault = target.vault,
                kind = %target.kind,
                object = target.name,
                version = target.version,
                event_id = target.event_id,
                retryable = error.is_retryable(),
                %error,
                "rotation failed"
            ),
        }
        outcome
    }

    /// Runs `work` under the object's lock, releasing it whatever `work` returns.
    async fn locked<T>(
        &self,
        target: &Target<'_>,
        work: impl std::future::Future<Output = Result<T, RotationError>>,
    ) -> Result<T, RotationError> {
        let guard: Box<dyn LockGuard> = self.lock.acquire(&lock_key(target.vault, target.kind, target.name)).await?;
        let result = work.await;
        if let Err(error) = guard.release().await {
            // The lease expires on its own; a failed release only delays the next rotation of this object.
            tracing::warn!(object = target.name, %error, "releasing the rotation lock failed; it will expire");
        }
        result
    }

    async fn rotate_secret(&self, target: &Target<'_>) -> Result<RotationOutcome, RotationError> {
        let current = self.vault.latest_secret(target.vault, target.name).await?;
        if let Some(done) = already_rotated(target.version, &current.properties.version) {
            return Ok(done);
        }
        if Policy::from_tags(ObjectKind::Secret, &current.properties.tags)?.rotation == Rotation::NotOptedIn {
            return Ok(RotationOutcome::NotOptedIn);
        }
        drop(current);
        self.locked(target, async {
            let current = self.vault.latest_secret(target.vault, target.name).await?;
            if let Some(done) = already_rotated(target.version, &current.properties.version) {
                return Ok(done);
            }
            let policy = Policy::from_tags(ObjectKind::Secret, &current.properties.tags)?;
            let Rotation::Provider(provider_name) = &policy.rotation else {
                return Ok(RotationOutcome::NotOptedIn);
            };
            let provider = self.providers.get(provider_name).ok_or_else(|| PolicyError {
                tag: policy::ROTATION,
                problem: format!(
                    "'{provider_name}' is not a provider this deployment has; expected one of {}",
                    self.providers.names().join(", ")
                ),
            })?;
            let validity = policy.required_validity()?;
            let now = (self.clock)();
            let ctx = RotationContext {
                vault: target.vault,
                name: target.name,
                current: &current,
                policy: &policy,
                event_id: target.event_id,
                now,
            };
            let pending = provider.create_pending(&ctx).await?;
            provider.set_pending(&ctx, &pending).await?;
            provider.test_pending(&ctx, &pending).await?;
            let tags = next_tags(&current, &pending.tags, target.event_id)?;
            let expires = now + validity;
            let promoted = self
                .vault
                .set_secret(
                    target.vault,
                    target.name,
                    NewSecretVersion {
                        value: pending.value,
                        content_type: current.properties.content_type.clone(),
                        tags,
                        not_before: Some(now),
                        expires: Some(expires),
                    },
                )
                .await?;
            provider.finish(&ctx, &promoted).await?;
            Ok(RotationOutcome::Rotated {
                from: current.properties.version.clone(),
                to: promoted.version,
                expires: promoted.expires.or(Some(expires)),
            })
        })
        .await
    }

    async fn rotate_key(&self, target: &Target<'_>) -> Result<RotationOutcome, RotationError> {
        let current = self.vault.latest_key(target.vault, target.name).await?;
        if let Some(done) = already_rotated(target.version, &current.version) {
            return Ok(done);
        }
        if Policy::from_tags(ObjectKind::Key, &current.tags)?.rotation == Rotation::NotOptedIn {
            return Ok(RotationOutcome::NotOptedIn);
        }
        let native = self.vault.key_rotation_policy(target.vault, target.name).await?;
        if native.rotates {
            let trigger = native.trigger.unwrap_or_else(|| "no trigger stated".to_owned());
            return Ok(RotationOutcome::NativeRotationConfigured {
                detail: format!("the key's rotation policy has a Rotate action ({trigger})"),
            });
        }
        self.locked(target, async {
            let current = self.vault.latest_key(target.vault, target.name).await?;
            if let Some(done) = already_rotated(target.version, &current.version) {
                return Ok(done);
            }
            let rotated = self.vault.rotate_key(target.vault, target.name).await?;
            Ok(RotationOutcome::Rotated { from: current.version, to: rotated.version, expires: rotated.expires })
        })
        .await
    }

    async fn rotate_certificate(&self, target: &Target<'_>) -> Result<RotationOutcome, RotationError> {
        let current = self.vault.latest_certificate(target.vault, target.name).await?;
        if let Some(done) = already_rotated(target.version, &current.version) {
            return Ok(done);
        }
        if Policy::from_tags(ObjectKind::Certificate, &current.tags)?.rotation == Rotation::NotOptedIn {
            return Ok(RotationOutcome::NotOptedIn);
        }
        let policy = self.vault.certificate_policy(target.vault, target.name).await?;
        if policy.auto_renew {
            return Ok(RotationOutcome::NativeRotationConfigured {
                detail: "the certificate policy has an AutoRenew lifetime action".to_owned(),
            });
        }
        let issuer = policy.issuer.unwrap_or_else(|| "Unknown".to_owned());
        let can_issue = if issuer.eq_ignore_ascii_case("Self") {
            true
        } else if issuer.eq_ignore_ascii_case("Unknown") {
            false
        } else {
            let provider = self.vault.issuer_provider(target.vault, &issuer).await?;
            provider.is_some_and(|p| INTEGRATED_CAS.iter().any(|ca| ca.eq_ignore_ascii_case(&p)))
        };
        if !can_issue {
            return Ok(RotationOutcome::ManualActionDue {
                reason: format!(
                    "certificate '{}' is issued by '{issuer}', which Key Vault cannot request from by itself; \
                     renew it with its CA and merge or import the new certificate",
                    target.name
                ),
            });
        }
        self.locked(target, async {
            let current = self.vault.latest_certificate(target.vault, target.name).await?;
            if let Some(done) = already_rotated(target.version, &current.version) {
                return Ok(done);
            }
            let renewal = self.vault.renew_certificate(target.vault, target.name).await?;
            Ok(RotationOutcome::RenewalStarted { from: current.version, status: renewal.status })
        })
        .await
    }
}

/// The new version's tags: the current ones (policy included), the provider's changes, and provenance.
fn next_tags(current: &SecretVersion, changes: &Tags, event_id: &str) -> Result<Tags, PolicyError> {
    let mut tags = current.properties.tags.clone();
    for (name, value) in changes.iter().chain([
        (&policy::ROTATED_FROM.to_owned(), &current.properties.version),
        (&policy::EVENT_ID.to_owned(), &event_id.to_owned()),
    ]) {
        // Replace an existing tag of the same name whatever its case, rather than add a near-duplicate.
        tags.retain(|k, _| !k.eq_ignore_ascii_case(name));
        tags.insert(name.clone(), value.clone());
    }
    if tags.len() > MAX_TAGS {
        return Err(PolicyError {
            tag: policy::ROTATED_FROM,
            problem: format!(
                "the new version would carry {} tags (the secret's own plus keyturn's provenance) and Key Vault \
                 allows {MAX_TAGS}; remove {} tag(s) from the secret",
                tags.len(),
                tags.len() - MAX_TAGS
            ),
        });
    }
    Ok(tags)
}

#[cfg(test)]
mod tests;
