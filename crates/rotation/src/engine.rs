//! [`Engine`]: the rotation contract (ARCHITECTURE.md, "Rotation contract") for one near-expiry event, carried
//! out as [`crate::plan()`] decides.
//!
//! 1. The object comes in as a [`Request`]: an allow-listed [`ObjectRef`] (the event was parsed and the vault
//!    checked once, on the way in, by `keyturn_deps::Deps::accept`; the vault client refuses a vault outside the
//!    allow-list again, as a defence in depth).
//! 2. Read the latest version and plan: a later version means the rotation already happened; no opt-in means
//!    nothing to do. (Before the lock: an object that does not opt in never costs a lock.) A key's or
//!    certificate's native policy is read only when the plan asks for it.
//!    A plan that acts waits for the object's rotation window ([`crate::plan::window`]) when it is a
//!    near-expiry rotation ([`Engine::rotate`]); an emergency one ([`Engine::rotate_expired`]) never does.
//! 3. Take the object's lock; re-read and plan again under it, since another delivery may have finished in
//!    between.
//! 4. Carry the plan out: secrets through their provider's steps and one `set_secret`; keys with Key Vault's
//!    rotate operation; certificates through their own policy.
//! 5. The fence, immediately before that promotion: the lock is confirmed still held (a blob lease renewed)
//!    and, for a secret, its latest version is still the one planned from; otherwise nothing is promoted.
//! 6. After a secret's promotion, the health probe the deployment binds to it, if any ([`health`]).

pub mod health;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use keyturn_events::{ObjectKind, ObjectRef};
use keyturn_vault::KeyVault;
use keyturn_vault::model::{MAX_TAGS, NewSecretVersion, SecretVersion, Tags};

use self::health::HealthProber;
use crate::RotationError;
use crate::lock::{LockGuard, RotationLock, lock_key};
use crate::outcome::RotationOutcome;
use crate::plan::{ExpiryStage, Native, ObjectFacts, Plan, issuer_to_look_up, plan, window};
use crate::policy::{self, Policy, PolicyError};
use crate::provider::{Providers, RotationContext};
use crate::window::WindowDecision;

/// The source of "now" for the engine (a test or the local stack may move it).
pub type NowFn = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// What the engine is asked to rotate: an allow-listed object, and the id of the event that asked (the
/// provenance a new version carries, the idempotency key a provider may hand on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub object: ObjectRef,
    pub event_id: String,
}

/// The rotation engine, built once per process and shared by every invocation.
#[derive(Clone)]
pub struct Engine {
    vault: Arc<dyn KeyVault>,
    lock: Arc<dyn RotationLock>,
    providers: Providers,
    health: Option<Arc<HealthProber>>,
    now: NowFn,
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

/// The latest version's facts, read for planning.
struct Latest {
    version: String,
    tags: Tags,
    /// The latest version's expiry (whether its rotation can wait for its window).
    expires: Option<DateTime<Utc>>,
    /// A secret's current version, value included (its provider starts from it).
    secret: Option<SecretVersion>,
}

impl Engine {
    pub fn new(vault: Arc<dyn KeyVault>, lock: Arc<dyn RotationLock>, providers: Providers) -> Self {
        Self { vault, lock, providers, health: None, now: Arc::new(Utc::now) }
    }

    /// Asks `prober` after each secret's promotion (`KEYTURN_HEALTH_PROBES`; `None`: no probe).
    pub fn with_health_prober(mut self, prober: Option<HealthProber>) -> Self {
        self.health = prober.map(Arc::new);
        self
    }

    /// Replaces the source of "now" (tests, the local stack's movable clock).
    pub fn with_clock(mut self, now: NowFn) -> Self {
        self.now = now;
        self
    }

    /// The providers this engine has, by name (for planning elsewhere, e.g. `keyturn check`).
    pub fn providers(&self) -> &Providers {
        &self.providers
    }

    /// Rotates the object `request` names, per its policy, as its expiry nears: within the object's rotation
    /// window, else [`RotationOutcome::Deferred`] until it opens.
    pub async fn rotate(&self, request: &Request) -> Result<RotationOutcome, RotationError> {
        self.rotate_on(request, ExpiryStage::NearExpiry).await
    }

    /// Rotates the object `request` names, per its policy, because its version has expired: an emergency
    /// rotation, which no rotation window holds back.
    pub async fn rotate_expired(&self, request: &Request) -> Result<RotationOutcome, RotationError> {
        self.rotate_on(request, ExpiryStage::Expired).await
    }

    async fn rotate_on(&self, request: &Request, stage: ExpiryStage) -> Result<RotationOutcome, RotationError> {
        let object = &request.object;
        let outcome = self.rotate_object(request, stage).await;
        match &outcome {
            Ok(outcome) => tracing::info!(
                vault = object.vault(),
                kind = %object.kind(),
                object = object.name(),
                version = object.version(),
                event_id = request.event_id,
                outcome = outcome.label(),
                "{outcome}"
            ),
            Err(error) => tracing::warn!(
                vault = object.vault(),
                kind = %object.kind(),
                object = object.name(),
                version = object.version(),
                event_id = request.event_id,
                retryable = error.is_retryable(),
                %error,
                "rotation failed"
            ),
        }
        outcome
    }

    async fn rotate_object(&self, request: &Request, stage: ExpiryStage) -> Result<RotationOutcome, RotationError> {
        let object = &request.object;
        let names = self.providers.names();
        let latest = self.latest(object).await?;
        let mut native = Native::Unread;
        let mut planned = plan(&facts(object, &latest), &native, &names)?;
        if planned == Plan::ReadNativePolicy {
            native = self.native(object).await?;
            planned = plan(&facts(object, &latest), &native, &names)?;
        }
        if let Some(decided) = decided(planned.clone()) {
            return Ok(decided);
        }
        match window(&planned, &latest.tags, latest.expires, stage, (self.now)())? {
            WindowDecision::Open => {}
            WindowDecision::Deferred { until } => {
                let window = policy::tag(&latest.tags, policy::ROTATION_WINDOW).unwrap_or_default().to_owned();
                return Ok(RotationOutcome::Deferred { until, window });
            }
            WindowDecision::Overridden { reason } => tracing::info!(
                vault = object.vault(),
                object = object.name(),
                "rotating outside the object's rotation window ({}): {reason}",
                policy::ROTATION_WINDOW
            ),
        }
        drop(latest);
        let key = lock_key(object.vault(), object.kind(), object.name());
        let guard: Box<dyn LockGuard> = self.lock.acquire(&key).await?;
        let result = self.rotate_locked(request, &native, &names, guard.as_ref()).await;
        if let Err(error) = guard.release().await {
            // The lease expires on its own; a failed release only delays the next rotation of this object.
            tracing::warn!(object = object.name(), %error, "releasing the rotation lock failed; it will expire");
        }
        result
    }

    /// Step 4, under the object's lock (`lock`, confirmed again right before the promotion).
    async fn rotate_locked(
        &self,
        request: &Request,
        native: &Native,
        names: &[&str],
        lock: &dyn LockGuard,
    ) -> Result<RotationOutcome, RotationError> {
        let object = &request.object;
        // Another delivery may have rotated while this one waited: read and plan again under the lock.
        let latest = self.latest(object).await?;
        let planned = plan(&facts(object, &latest), native, names)?;
        match planned {
            Plan::RotateSecret { provider, validity } => {
                let Some(current) = latest.secret else {
                    return Err(RotationError::Event(format!("{}: no current secret version", object.described())));
                };
                self.rotate_secret(request, &current, &provider, validity, lock).await
            }
            // Key Vault's operation is itself the promotion, right after the locked read: the lease is what
            // is left to check.
            Plan::RotateKey => {
                lock.confirm().await?;
                let rotated = self.vault.rotate_key(object.vault(), object.name()).await?;
                Ok(RotationOutcome::Rotated {
                    from: latest.version,
                    to: rotated.version,
                    expires: rotated.expires,
                    health: None,
                })
            }
            Plan::RenewCertificate { .. } => {
                lock.confirm().await?;
                let renewal = self.vault.renew_certificate(object.vault(), object.name()).await?;
                Ok(RotationOutcome::RenewalStarted { from: latest.version, status: renewal.status })
            }
            // Every plan that acts is matched above; `decided` names the outcome of the others (a later
            // version, an opt-in removed meanwhile, ...).
            other => Ok(decided(other).unwrap_or(RotationOutcome::NotOptedIn)),
        }
    }

    /// The object's latest version and its tags.
    async fn latest(&self, object: &ObjectRef) -> Result<Latest, RotationError> {
        let (vault, name) = (object.vault(), object.name());
        Ok(match object.kind() {
            ObjectKind::Secret => {
                let secret = self.vault.latest_secret(vault, name).await?;
                Latest {
                    version: secret.properties.version.clone(),
                    tags: secret.properties.tags.clone(),
                    expires: secret.properties.expires,
                    secret: Some(secret),
                }
            }
            ObjectKind::Key => {
                let key = self.vault.latest_key(vault, name).await?;
                Latest { version: key.version, tags: key.tags, expires: key.expires, secret: None }
            }
            ObjectKind::Certificate => {
                let certificate = self.vault.latest_certificate(vault, name).await?;
                Latest {
                    version: certificate.version,
                    tags: certificate.tags,
                    expires: certificate.expires,
                    secret: None,
                }
            }
            ObjectKind::Vault => {
                return Err(RotationError::Event("a vault-level event names nothing to rotate".to_owned()));
            }
        })
    }

    /// Key Vault's own policy for a key or certificate (and its issuer's provider where the plan needs it).
    async fn native(&self, object: &ObjectRef) -> Result<Native, RotationError> {
        let (vault, name) = (object.vault(), object.name());
        Ok(match object.kind() {
            ObjectKind::Key => Native::Key(self.vault.key_rotation_policy(vault, name).await?),
            _ => {
                let policy = self.vault.certificate_policy(vault, name).await?;
                let issuer_provider = match issuer_to_look_up(&policy) {
                    Some(issuer) => self.vault.issuer_provider(vault, issuer).await?,
                    None => None,
                };
                Native::Certificate { policy, issuer_provider }
            }
        })
    }

    /// A secret's provider steps and the one `set_secret` that promotes the new value.
    async fn rotate_secret(
        &self,
        request: &Request,
        current: &SecretVersion,
        provider_name: &str,
        validity: chrono::Duration,
        lock: &dyn LockGuard,
    ) -> Result<RotationOutcome, RotationError> {
        let object = &request.object;
        // `plan` accepted the name only if this deployment has the provider.
        let provider = self.providers.get(provider_name).ok_or_else(|| PolicyError {
            tag: policy::ROTATION,
            problem: format!("'{provider_name}' is not a provider this deployment has"),
        })?;
        let policy = Policy::from_tags(ObjectKind::Secret, &current.properties.tags)?;
        let now = (self.now)();
        let ctx = RotationContext {
            vault: object.vault(),
            name: object.name(),
            current,
            policy: &policy,
            event_id: &request.event_id,
            now,
        };
        let pending = provider.create_pending(&ctx).await?;
        provider.set_pending(&ctx, &pending).await?;
        provider.test_pending(&ctx, &pending).await?;
        let tags = next_tags(current, &pending.tags, &request.event_id)?;
        self.fence(object, current, lock).await?;
        let expires = now + validity;
        let promoted = self
            .vault
            .set_secret(
                object.vault(),
                object.name(),
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
        let health = match &self.health {
            Some(prober) => {
                let about = (object.vault(), object.name(), request.event_id.as_str());
                prober.check(about, &current.properties, &promoted, provider.as_ref(), now).await
            }
            None => None,
        };
        Ok(RotationOutcome::Rotated {
            from: current.properties.version.clone(),
            to: promoted.version,
            expires: promoted.expires.or(Some(expires)),
            health,
        })
    }
}

impl Engine {
    /// The fence, immediately before a secret's promotion: the provider steps may have taken long enough for
    /// the lease to be lost (a frozen instance, a slow server) and for another delivery, or a person, to
    /// have written a version since. Promote only while this delivery still holds the lock and the version
    /// it planned from is still the latest; otherwise promote nothing (retryable: the redelivery resumes
    /// from the pending home, or finds the object already rotated).
    async fn fence(
        &self,
        object: &ObjectRef,
        current: &SecretVersion,
        lock: &dyn LockGuard,
    ) -> Result<(), RotationError> {
        lock.confirm().await?;
        let latest = self.vault.latest_secret(object.vault(), object.name()).await?;
        if latest.properties.version != current.properties.version {
            return Err(RotationError::Superseded {
                object: object.described(),
                planned: current.properties.version.clone(),
                latest: latest.properties.version.clone(),
            });
        }
        Ok(())
    }
}

/// The facts `plan` needs about `object`, from its latest version.
fn facts<'a>(object: &'a ObjectRef, latest: &'a Latest) -> ObjectFacts<'a> {
    ObjectFacts {
        kind: object.kind(),
        event_version: Some(object.version()),
        latest_version: &latest.version,
        tags: &latest.tags,
    }
}

/// The outcome of a plan that needs no action; `None` for one that does.
fn decided(plan: Plan) -> Option<RotationOutcome> {
    match plan {
        Plan::AlreadyRotated { event_version, latest } => {
            Some(RotationOutcome::AlreadyRotated { event_version, latest })
        }
        Plan::NotOptedIn => Some(RotationOutcome::NotOptedIn),
        Plan::Replica { source } => Some(RotationOutcome::Replica { source }),
        Plan::NativeRotation { detail } => Some(RotationOutcome::NativeRotationConfigured { detail }),
        Plan::ManualActionDue { reason } => Some(RotationOutcome::ManualActionDue { reason }),
        // Native policies are read before anything acts: a plan that still asks for them acts on nothing.
        Plan::ReadNativePolicy => Some(RotationOutcome::NotOptedIn),
        Plan::RotateSecret { .. } | Plan::RotateKey | Plan::RenewCertificate { .. } => None,
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
