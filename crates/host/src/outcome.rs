//! What a handler returns: a typed [`Outcome`] when it finished, a [`HandlerError`] that says whether trying
//! again could help when it did not.
//!
//! The outcome is a value, rendered to text only at the edge: the Azure adapter puts its JSON in the
//! custom-handler answer's `ReturnValue` and its one line ([`Outcome::log_line`]) in `Logs`; the Lambda
//! adapter puts both in its response. Callers (tests, `keyturn send`, the demo) read the fields.

use std::fmt;

use keyturn_events::ObjectRef;
use serde::{Deserialize, Serialize};

/// How a handler finished with an event. Every status acknowledges the event (Event Grid will not deliver it
/// again).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The handler did its job (rotated, notified, ...).
    Done,
    /// Nothing to do: already handled, not ours, or not a kind of event this handler acts on.
    Skipped,
    /// The event can never be handled (malformed, foreign vault, wrong policy tag): retrying would not help.
    Rejected,
    /// The work waits for a later time that the outcome names (a rotation window that is closed now): nothing
    /// was done, and a redelivery would not help before then; the scheduled sweep does it when the time comes.
    Deferred,
}

impl Status {
    /// `done`, `skipped`, `rejected` or `deferred`, as logs and the JSON spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Done => "done",
            Status::Skipped => "skipped",
            Status::Rejected => "rejected",
            Status::Deferred => "deferred",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a handler finished with an event, as fields. The JSON (the custom handler's `ReturnValue`, docs/handlers.md):
///
/// ```json
/// {"status":"done","object":{"vault":"kv-one","kind":"secret","name":"db","version":"0f26..."},
///  "action":"rotated","versionBefore":"0f26...","versionAfter":"fdf9...",
///  "message":"rotated kv-one/db from 0f26... to fdf9..., expires 2027-02-20; notified 1 channel",
///  "notified":["https://hooks.example.com"]}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub status: Status,
    /// The object the event named, once the event was accepted (absent for events skipped before that).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<ObjectRef>,
    /// What the handler did or decided, one stable word per handler's decision table (docs/handlers.md):
    /// `rotated`, `renewal-started`, `already-rotated`, `not-opted-in`, `native-rotation`,
    /// `manual-action-due`, `notified`, `disabled`, `mirrored`, `tested`, `not-served`, `not-allowed`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The object's latest version before the handler acted, when it read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_before: Option<String>,
    /// The version the handler made (a rotation, a mirror's copy), when it made one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_after: Option<String>,
    /// What happened, in one line a person reads (the text of the `Logs` line).
    pub message: String,
    /// The notification channels that have the handler's message (`scheme://host` each, no credentials).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notified: Vec<String>,
    /// One result per thing the handler acted on beside the object, when there are several (each consumer the
    /// `new-version` handler refreshed, a rotation's health probe).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<TargetOutcome>,
}

/// What a handler did to one target beside the event's object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetOutcome {
    /// What was acted on: a consumer's resource id, `health-probe`.
    pub target: String,
    /// One stable word: `refreshed`, `already-refreshed`, `failed`, `refused`, `passed`, ...
    pub result: String,
    /// Why, or what exactly was done, in a line a person reads (never a secret value).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

impl Outcome {
    fn new(status: Status, message: impl Into<String>) -> Self {
        Outcome {
            status,
            object: None,
            action: None,
            version_before: None,
            version_after: None,
            message: message.into(),
            notified: Vec::new(),
            targets: Vec::new(),
        }
    }

    /// The handler did its job.
    pub fn done(message: impl Into<String>) -> Self {
        Self::new(Status::Done, message)
    }

    /// Nothing to do.
    pub fn skipped(message: impl Into<String>) -> Self {
        Self::new(Status::Skipped, message)
    }

    /// The event can never be handled.
    pub fn rejected(message: impl Into<String>) -> Self {
        Self::new(Status::Rejected, message)
    }

    /// The work waits for a later time, which `message` names.
    pub fn deferred(message: impl Into<String>) -> Self {
        Self::new(Status::Deferred, message)
    }

    /// The same outcome about `object`.
    pub fn about(mut self, object: &ObjectRef) -> Self {
        self.object = Some(object.clone());
        self
    }

    /// The same outcome with its action word.
    pub fn action(mut self, action: impl Into<String>) -> Self {
        self.action = Some(action.into());
        self
    }

    /// The same outcome with the versions before and after.
    pub fn versions(mut self, before: Option<String>, after: Option<String>) -> Self {
        self.version_before = before;
        self.version_after = after;
        self
    }

    /// The same outcome with the channels that have the message.
    pub fn notified(mut self, channels: Vec<String>) -> Self {
        self.notified = channels;
        self
    }

    /// The same outcome with one result per target.
    pub fn targets(mut self, targets: Vec<TargetOutcome>) -> Self {
        self.targets = targets;
        self
    }

    /// The one-word name of the status, as it appears in logs: `done`, `skipped`, `rejected` or `deferred`.
    pub fn label(&self) -> &'static str {
        self.status.as_str()
    }

    /// What happened, in the handler's words.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The one line people read in the invocation's log: `done: rotated kv-one/db from a to b`.
    pub fn log_line(&self) -> String {
        format!("{}: {}", self.status, self.message)
    }

    /// The outcome a custom-handler answer's `ReturnValue` (or a Lambda response's `outcomes` entry) carries;
    /// `None` when it holds none (a `null`, or another function's value).
    pub fn from_return_value(value: &serde_json::Value) -> Option<Self> {
        serde_json::from_value(value.clone()).ok()
    }
}

/// Why a handler could not finish. A retryable error fails the invocation, so Event Grid delivers the event
/// again later; a permanent one is acknowledged like [`Status::Rejected`].
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
    use keyturn_events::ObjectKind;
    use serde_json::json;

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
    fn outcome_labels_and_lines() {
        assert_eq!(Outcome::done("a").label(), "done");
        assert_eq!(Outcome::skipped("b").log_line(), "skipped: b");
        assert_eq!(Outcome::rejected("c").message(), "c");
        assert_eq!(Outcome::deferred("until Saturday").log_line(), "deferred: until Saturday");
        let value = serde_json::to_value(Outcome::deferred("until Saturday")).unwrap();
        assert_eq!(value, json!({"status": "deferred", "message": "until Saturday"}));
        assert_eq!(Outcome::from_return_value(&value).map(|o| o.status), Some(Status::Deferred));
    }

    #[test]
    fn the_json_names_every_field_and_round_trips() {
        let object = ObjectRef::new("kv-one", ObjectKind::Secret, "db", "v1").unwrap();
        let outcome = Outcome::done("rotated kv-one/db from v1 to v2; notified 1 channel")
            .about(&object)
            .action("rotated")
            .versions(Some("v1".into()), Some("v2".into()))
            .notified(vec!["https://hooks.example.com".into()]);
        let value = serde_json::to_value(&outcome).unwrap();
        assert_eq!(
            value,
            json!({
                "status": "done",
                "object": {"vault": "kv-one", "kind": "secret", "name": "db", "version": "v1"},
                "action": "rotated",
                "versionBefore": "v1",
                "versionAfter": "v2",
                "message": "rotated kv-one/db from v1 to v2; notified 1 channel",
                "notified": ["https://hooks.example.com"]
            })
        );
        assert_eq!(Outcome::from_return_value(&value), Some(outcome));
        // Unset fields are left out, and read back as unset.
        let bare = serde_json::to_value(Outcome::skipped("not ours")).unwrap();
        assert_eq!(bare, json!({"status": "skipped", "message": "not ours"}));
        assert_eq!(Outcome::from_return_value(&bare), Some(Outcome::skipped("not ours")));
        assert_eq!(Outcome::from_return_value(&serde_json::Value::Null), None);
    }
}
