//! What the engine decided, as the handler's outcome: one line naming the object and what happens next.
//!
//! - keyturn changed the vault (a new version, a renewal started) → [`Outcome::Done`];
//! - nothing for keyturn to do (already rotated, Key Vault's own policy rotates it, not opted in, a person
//!   must act) → [`Outcome::Skipped`], whose line says what a person must do, if anything;
//! - a failure → [`HandlerError`] through `keyturn_deps::ErrorClass`, retryable exactly when the engine says a
//!   redelivery could help (throttling, vault 5xx, lock held, network); permanent ones (a vault outside the
//!   allow-list, a wrong policy tag, an event without a version) are acknowledged as rejected.
//!
//! With notification channels configured, the line says how many have the message: [`with_notified`].

use keyturn_events::ObjectKind;
use keyturn_host::{HandlerError, Outcome};
use keyturn_rotation::RotationOutcome;

/// The object an event names, for messages: `kv-one/db-password`.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub vault: &'a str,
    pub kind: ObjectKind,
    pub name: &'a str,
}

impl std::fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.vault, self.name)
    }
}

impl Target<'_> {
    /// The object with its kind, as errors name it: `secret kv-one/db-password`.
    pub fn described(&self) -> String {
        format!("{} {self}", self.kind.as_str().to_ascii_lowercase())
    }

    /// What a person does when keyturn cannot: certificates are renewed, the rest rotated.
    pub fn manual_action(&self) -> &'static str {
        match self.kind {
            ObjectKind::Certificate => "manual renewal due",
            _ => "manual rotation due",
        }
    }
}

/// The handler's outcome for what the engine decided.
pub fn outcome(target: &Target<'_>, outcome: RotationOutcome) -> Outcome {
    match outcome {
        RotationOutcome::Rotated { from, to, expires } => {
            let expires = expires.map(|exp| format!(", expires {}", exp.format("%Y-%m-%d"))).unwrap_or_default();
            Outcome::Done(format!("rotated {target} from {from} to {to}{expires}"))
        }
        RotationOutcome::RenewalStarted { from, status } => Outcome::Done(format!(
            "renewal of {target} started through its certificate policy (replacing {from}; operation {status})"
        )),
        RotationOutcome::AlreadyRotated { event_version, latest } => {
            Outcome::Skipped(format!("{target} already rotated to {latest} (the event is about {event_version})"))
        }
        RotationOutcome::NativeRotationConfigured { detail } => {
            Outcome::Skipped(format!("{target} is left to Key Vault's own policy: {detail}"))
        }
        RotationOutcome::NotOptedIn => Outcome::Skipped(format!(
            "{target} not opted in (tag KeyturnRotation absent or off): {}",
            target.manual_action()
        )),
        RotationOutcome::ManualActionDue { reason } => {
            Outcome::Skipped(format!("{target}: {}: {reason}", target.manual_action()))
        }
    }
}

/// The outcome (or permanent error) with how many channels have the message: `...; notified 3 channels`.
pub fn with_notified(result: Result<Outcome, HandlerError>, channels: usize) -> Result<Outcome, HandlerError> {
    let notified = format!("notified {channels} channel{}", if channels == 1 { "" } else { "s" });
    match result {
        Ok(Outcome::Done(line)) => Ok(Outcome::Done(format!("{line}; {notified}"))),
        Ok(Outcome::Skipped(line)) => Ok(Outcome::Skipped(format!("{line}; {notified}"))),
        Ok(Outcome::Rejected(line)) => Ok(Outcome::Rejected(format!("{line}; {notified}"))),
        Err(error) if error.is_retryable() => Err(HandlerError::retryable(format!("{}; {notified}", error.message()))),
        Err(error) => Err(HandlerError::permanent(format!("{}; {notified}", error.message()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const SECRET: Target<'static> = Target { vault: "kv-one", kind: ObjectKind::Secret, name: "db-password" };
    const CERT: Target<'static> = Target { vault: "kv-one", kind: ObjectKind::Certificate, name: "tls" };

    #[test]
    fn a_rotation_is_done_and_names_both_versions_and_the_new_expiry() {
        let expires = chrono::Utc.with_ymd_and_hms(2027, 1, 20, 8, 30, 0).single();
        let outcome = outcome(&SECRET, RotationOutcome::Rotated { from: "v1".into(), to: "v2".into(), expires });
        assert_eq!(outcome, Outcome::Done("rotated kv-one/db-password from v1 to v2, expires 2027-01-20".into()));
        let key = Target { kind: ObjectKind::Key, name: "signing", ..SECRET };
        let outcome =
            super::outcome(&key, RotationOutcome::Rotated { from: "a".into(), to: "b".into(), expires: None });
        assert_eq!(outcome, Outcome::Done("rotated kv-one/signing from a to b".into()));
    }

    #[test]
    fn nothing_to_do_is_skipped_and_says_what_a_person_must_do() {
        let already = RotationOutcome::AlreadyRotated { event_version: "v1".into(), latest: "v2".into() };
        assert_eq!(
            outcome(&SECRET, already),
            Outcome::Skipped("kv-one/db-password already rotated to v2 (the event is about v1)".into())
        );
        assert_eq!(
            outcome(&SECRET, RotationOutcome::NotOptedIn),
            Outcome::Skipped(
                "kv-one/db-password not opted in (tag KeyturnRotation absent or off): manual rotation due".into()
            )
        );
        let manual = outcome(&CERT, RotationOutcome::ManualActionDue { reason: "issuer 'Unknown'".into() });
        assert_eq!(manual, Outcome::Skipped("kv-one/tls: manual renewal due: issuer 'Unknown'".into()));
        let native = outcome(&CERT, RotationOutcome::NativeRotationConfigured { detail: "AutoRenew".into() });
        assert!(matches!(&native, Outcome::Skipped(m) if m.contains("Key Vault's own policy")), "{native:?}");
    }

    #[test]
    fn a_started_renewal_is_done() {
        let outcome =
            outcome(&CERT, RotationOutcome::RenewalStarted { from: "c1".into(), status: "inProgress".into() });
        assert!(matches!(&outcome, Outcome::Done(m) if m.starts_with("renewal of kv-one/tls") && m.contains("c1")));
    }

    #[test]
    fn the_line_says_how_many_channels_have_the_message_and_keeps_the_class() {
        let done = with_notified(Ok(Outcome::Done("rotated kv-one/db from a to b".into())), 2);
        assert_eq!(done, Ok(Outcome::Done("rotated kv-one/db from a to b; notified 2 channels".into())));
        let one = with_notified(Ok(Outcome::Skipped("kv-one/db not opted in".into())), 1);
        assert_eq!(one, Ok(Outcome::Skipped("kv-one/db not opted in; notified 1 channel".into())));
        let refused = with_notified(Err(HandlerError::permanent("secret kv-one/db: wrong tag")), 3).unwrap_err();
        assert!(!refused.is_retryable());
        assert_eq!(refused.message(), "secret kv-one/db: wrong tag; notified 3 channels");
        assert_eq!(SECRET.described(), "secret kv-one/db-password");
    }
}
