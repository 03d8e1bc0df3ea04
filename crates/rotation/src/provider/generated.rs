//! The generated provider: the secret is keyturn's to invent (an API key, a shared secret, a password
//! the consumer reads from Key Vault). A new value from the OS CSPRNG in the policy's format; nothing to
//! set or test elsewhere.

use crate::generate::generate;
use crate::provider::{Pending, Provider, ProviderError, ProviderFuture, RotationContext};

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
}
