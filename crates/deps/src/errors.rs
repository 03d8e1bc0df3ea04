//! [`ErrorClass`]: the one mapping from library errors to [`HandlerError`], by their retryable class.
//!
//! Each library says whether a later delivery could help (`is_retryable`); a handler keeps that class and
//! adds what the error was about. A retryable error fails the invocation (Event Grid redelivers); a
//! permanent one is acknowledged with its reason.

use keyturn_host::HandlerError;
use keyturn_notify::NotifyError;
use keyturn_rotation::{LockError, RotationError};
use keyturn_vault::VaultError;

/// An error whose class (retryable or permanent) its library decides.
pub trait ErrorClass: std::fmt::Display {
    fn is_retryable(&self) -> bool;

    /// The handler's error: `context: error`, in the library's class.
    fn handler_error(&self, context: impl std::fmt::Display) -> HandlerError {
        let message = format!("{context}: {self}");
        if self.is_retryable() { HandlerError::retryable(message) } else { HandlerError::permanent(message) }
    }
}

impl ErrorClass for VaultError {
    fn is_retryable(&self) -> bool {
        VaultError::is_retryable(self)
    }
}

impl ErrorClass for RotationError {
    fn is_retryable(&self) -> bool {
        RotationError::is_retryable(self)
    }
}

impl ErrorClass for LockError {
    fn is_retryable(&self) -> bool {
        LockError::is_retryable(self)
    }
}

/// Always retryable: the redelivery goes only to the channels that did not accept the event yet.
impl ErrorClass for NotifyError {
    fn is_retryable(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_library_class_is_kept_and_the_context_named() {
        let refused = VaultError::NotAllowed { vault: "evil".into() }.handler_error("secret evil/db");
        assert!(!refused.is_retryable());
        assert!(refused.message().starts_with("secret evil/db: vault 'evil' is not in the allow-list"), "{refused}");
        let throttled = VaultError::Http {
            operation: "get secret",
            object: "kv/db".into(),
            status: 429,
            code: Some("Throttled".into()),
            message: "slow down".into(),
        };
        assert!(throttled.handler_error("x").is_retryable());
        let held = LockError::Held { key: "kv/secret/db".into() }.handler_error("lock");
        assert!(held.is_retryable());
        let notify = NotifyError { event_id: "e1".into(), failures: vec![], sent: vec![], already_accepted: vec![] };
        assert!(notify.handler_error("notify").is_retryable());
    }
}
