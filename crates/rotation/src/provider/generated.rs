//! The generated provider: the secret is keyturn's to invent (an API key, a shared secret, a password
//! the consumer reads from Key Vault). A new value from the OS CSPRNG in the policy's format; nothing to
//! set or test elsewhere.

use chrono::{DateTime, Utc};
use keyturn_vault::model::SecretProperties;

use crate::generate::generate;
use crate::provider::{Pending, PreviousCredential, Provider, ProviderError, ProviderFuture, RotationContext};

/// `KeyturnRotation=generated`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Generated;

impl Provider for Generated {
    fn name(&self) -> &'static str {
        "generated"
    }

    fn create_pending<'a>(&'a self, ctx: &'a RotationContext<'a>) -> ProviderFuture<'a, Pending> {
        Box::pin(async move {
            let value = generate(ctx.policy.format).map_err(|e| ProviderError {
                provider: self.name(),
                message: e.to_string(),
                retryable: true,
            })?;
            Ok(Pending { value, tags: Default::default() })
        })
    }

    /// Nothing outside Key Vault was changed: the previous value is exactly as valid as it was for whatever reads
    /// it from the vault.
    fn previous_credential(
        &self,
        _latest: &SecretProperties,
        _previous: &SecretProperties,
        _now: DateTime<Utc>,
    ) -> PreviousCredential {
        PreviousCredential::Survives { until: None }
    }
}
