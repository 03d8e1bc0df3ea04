//! The webhook's shared secret: Event Grid sends no credential of its own to a webhook, so the subscription
//! carries one as a static delivery header ([`HEADER`]) or in the endpoint URL's query ([`QUERY_PARAMETER`]),
//! and every request without it is refused before anything runs.

use std::fmt;

use subtle::{Choice, ConstantTimeEq};
use zeroize::Zeroizing;

/// The delivery header that carries the secret (configured on the Event Grid subscription).
pub const HEADER: &str = "x-keyturn-webhook-secret";
/// The query parameter that carries the secret when it is part of the endpoint URL instead.
pub const QUERY_PARAMETER: &str = "secret";
/// Shorter secrets are refused: they could be guessed by an endpoint that anyone on the internet can reach.
pub const MIN_LENGTH: usize = 16;

/// Why there is no usable secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error(
        "{} is not set; refusing every webhook request until it is (Event Grid keeps the events)",
        crate::adapter::WEBHOOK_SECRET_VARIABLE
    )]
    Missing,
    #[error(
        "{} is {length} characters long; at least {MIN_LENGTH} are required (e.g. `openssl rand -hex 32`); refusing every webhook request until it is fixed",
        crate::adapter::WEBHOOK_SECRET_VARIABLE
    )]
    TooShort { length: usize },
}

/// The expected secret. Debug prints `****`; the memory is wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Zeroizing<Vec<u8>>);

impl WebhookSecret {
    /// Takes the configured value; surrounding whitespace (a trailing newline from a secrets store) is dropped.
    pub fn new(value: String) -> Result<Self, SecretError> {
        let value = Zeroizing::new(value);
        let trimmed = value.trim();
        if trimmed.chars().count() < MIN_LENGTH {
            return Err(SecretError::TooShort { length: trimmed.chars().count() });
        }
        Ok(Self(Zeroizing::new(trimmed.as_bytes().to_vec())))
    }

    /// Whether `presented` is the secret, in time that depends only on the expected secret's length (never on
    /// where the first differing byte is, nor on how long the presented value is).
    pub fn matches(&self, presented: &[u8]) -> bool {
        let expected = self.0.as_slice();
        let mut equal = Choice::from(u8::from(presented.len() == expected.len()));
        for (index, byte) in expected.iter().enumerate() {
            // Past the presented value's end, compare against 0: the lengths already differ, so the answer is
            // false either way, and the loop runs the same number of times.
            let other = presented.get(index).copied().unwrap_or(0);
            equal &= byte.ct_eq(&other);
        }
        equal.into()
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALUE: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn only_the_exact_value_matches() {
        let secret = WebhookSecret::new(format!("{VALUE}\n")).unwrap();
        assert!(secret.matches(VALUE.as_bytes()));
        assert!(!secret.matches(b""));
        assert!(!secret.matches(&VALUE.as_bytes()[..31]));
        assert!(!secret.matches(format!("{VALUE}0").as_bytes()));
        assert!(!secret.matches(VALUE.to_uppercase().as_bytes()));
        let mut last_differs = VALUE.as_bytes().to_vec();
        last_differs[31] = b'0';
        assert!(!secret.matches(&last_differs));
    }

    #[test]
    fn short_secrets_are_refused_and_the_value_never_printed() {
        assert_eq!(WebhookSecret::new("  short  ".into()), Err(SecretError::TooShort { length: 5 }));
        let secret = WebhookSecret::new(VALUE.into()).unwrap();
        assert_eq!(format!("{secret:?}"), "****");
        assert_eq!(format!("{:?}", Ok::<_, SecretError>(secret)), "Ok(****)");
        assert!(SecretError::Missing.to_string().starts_with("KEYTURN_WEBHOOK_SECRET is not set"));
    }
}
