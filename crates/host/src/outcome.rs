//! What a handler returns: a typed [`Outcome`] when it finished, a [`HandlerError`] that says whether trying
//! again could help when it did not.

use std::fmt;

/// How a handler finished with an event. Every variant acknowledges the event (Event Grid will not deliver
/// it again); the text is what happened, for the invocation's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The handler did its job (rotated, notified, ...).
    Done(String),
    /// Nothing to do: already handled, not ours, or not a kind of event this handler acts on.
    Skipped(String),
    /// The event can never be handled (malformed, foreign vault, missing policy): retrying would not help.
    Rejected(String),
}

impl Outcome {
    /// The one-word name of the outcome, as it appears in logs: `done`, `skipped` or `rejected`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Done(_) => "done",
            Outcome::Skipped(_) => "skipped",
            Outcome::Rejected(_) => "rejected",
        }
    }

    /// What happened, in the handler's words.
    pub fn message(&self) -> &str {
        match self {
            Outcome::Done(message) | Outcome::Skipped(message) | Outcome::Rejected(message) => message,
        }
    }
}

/// Why a handler could not finish. A retryable error fails the invocation, so Event Grid delivers the event
/// again later; a permanent one is acknowledged like [`Outcome::Rejected`].
///
/// The message is kept as text on purpose: it crosses the adapter boundary only to be logged, and each handler
/// keeps its own typed errors (thiserror) and decides the class where it maps them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerError {
    retryable: bool,
    message: String,
}

impl HandlerError {
    /// A failure that may go away (vault 5xx/429, lock held, network): the event will be delivered again.
    pub fn retryable(reason: impl fmt::Display) -> Self {
        HandlerError { retryable: true, message: reason.to_string() }
    }

    /// A failure that no retry can fix: the event is acknowledged and the reason logged.
    pub fn permanent(reason: impl fmt::Display) -> Self {
        HandlerError { retryable: false, message: reason.to_string() }
    }

    /// Whether delivering the event again could help.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// The reason, as given to [`HandlerError::retryable`] or [`HandlerError::permanent`].
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HandlerError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_class_and_message_are_kept() {
        let retry = HandlerError::retryable("vault answered 503");
        assert!(retry.is_retryable());
        assert_eq!(retry.to_string(), "vault answered 503");

        let permanent = HandlerError::permanent(format_args!("no policy on {}", "db-password"));
        assert!(!permanent.is_retryable());
        assert_eq!(permanent.message(), "no policy on db-password");
    }

    #[test]
    fn outcome_labels() {
        assert_eq!(Outcome::Done("a".into()).label(), "done");
        assert_eq!(Outcome::Skipped("b".into()).label(), "skipped");
        assert_eq!(Outcome::Rejected("c".into()).message(), "c");
    }
}
