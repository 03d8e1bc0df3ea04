//! [`RotationError`]: a rotation that could not reach a decision, and whether a redelivery could help.

use crate::lock::LockError;
use crate::policy::PolicyError;
use crate::provider::ProviderError;

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    /// The event cannot be acted on (no version, an object kind keyturn does not rotate).
    #[error("event: {0}")]
    Event(String),
    #[error(transparent)]
    Vault(#[from] keyturn_vault::VaultError),
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The object's tags opt in but are wrong; the message names the tag.
    #[error("rotation policy: {0}")]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The fence found a version newer than the one the rotation started from: someone else promoted
    /// meanwhile. Nothing was promoted; the redelivery finds the object already rotated.
    #[error("{object}: version {latest} appeared while rotating from {planned}; nothing was promoted")]
    Superseded { object: String, planned: String, latest: String },
}

impl RotationError {
    /// Retryable errors go back to Event Grid (HTTP 500 → redelivery); the rest are permanent.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Event(_) | Self::Policy(_) => false,
            Self::Vault(e) => e.is_retryable(),
            Self::Lock(e) => e.is_retryable(),
            Self::Provider(e) => e.retryable,
            Self::Superseded { .. } => true,
        }
    }
}
