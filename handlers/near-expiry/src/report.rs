//! What the engine decided, as the handler's typed outcome: the object, the action, the versions, and one
//! line naming the object and what happens next.
//!
//! - keyturn changed the vault (a new version, a renewal started) → `done`;
//! - nothing for keyturn to do (already rotated, Key Vault's own policy rotates it, not opted in, a person
//!   must act) → `skipped`, whose line says what a person must do, if anything;
//! - a rotation its `KeyturnRotationWindow` holds back → `deferred`, whose line says until when;
//! - a failure → [`HandlerError`] through `keyturn_deps::ErrorClass`, retryable exactly when the engine says a
//!   redelivery could help (throttling, vault 5xx, lock held, network); permanent ones (a wrong policy tag, a
//!   provider's refusal) are acknowledged as rejected.
//!
//! With notification channels configured, the line says how many have the message: [`with_notified`].

use keyturn_events::{ObjectKind, ObjectRef};
use keyturn_host::{HandlerError, Outcome, TargetOutcome};
use keyturn_rotation::RotationOutcome;

/// What a person does when keyturn cannot: certificates are renewed, the rest rotated.
pub fn manual_action(object: &ObjectRef) -> &'static str {
    match object.kind() {
        ObjectKind::Certificate => "manual renewal due",
        _ => "manual rotation due",
    }
}

/// The handler's outcome for what the engine decided; its `action` is the engine's label.
pub fn outcome(object: &ObjectRef, outcome: RotationOutcome) -> Outcome {
    let action = outcome.label();
    let reported = match outcome {
        RotationOutcome::Rotated { from, to, expires, health } => {
            let until = expires.map(|exp| format!(", expires {}", exp.format("%Y-%m-%d"))).unwrap_or_default();
            let mut targets = Vec::new();
            let checked = match health {
                Some(check) => {
                    let result = if check.passed { "passed" } else { "failed" };
                    let line = if check.passed {
                        format!("; health probe passed ({})", check.detail)
                    } else {
                        format!("; health probe FAILED ({}): {}", check.detail, check.rollback)
                    };
                    let detail =
                        if check.passed { check.detail } else { format!("{}; {}", check.detail, check.rollback) };
                    targets.push(TargetOutcome {
                        target: "health-probe".to_owned(),
                        result: result.to_owned(),
                        detail,
                    });
                    line
                }
                None => String::new(),
            };
            Outcome::done(format!("rotated {object} from {from} to {to}{until}{checked}"))
                .versions(Some(from), Some(to))
                .targets(targets)
        }
        RotationOutcome::RenewalStarted { from, status } => Outcome::done(format!(
            "renewal of {object} started through its certificate policy (replacing {from}; operation {status})"
        ))
        .versions(Some(from), None),
        RotationOutcome::AlreadyRotated { event_version, latest } => {
            Outcome::skipped(format!("{object} already rotated to {latest} (the event is about {event_version})"))
                .versions(Some(latest), None)
        }
        RotationOutcome::NativeRotationConfigured { detail } => {
            Outcome::skipped(format!("{object} is left to Key Vault's own policy: {detail}"))
        }
        RotationOutcome::NotOptedIn => Outcome::skipped(format!(
            "{object} not opted in (tag KeyturnRotation absent or off): {}",
            manual_action(object)
        )),
        RotationOutcome::Replica { source } => Outcome::skipped(format!(
            "{object} is a replica of {source} (KeyturnReplicaOf): never rotated by keyturn; its source is"
        )),
        RotationOutcome::ManualActionDue { reason } => {
            Outcome::skipped(format!("{object}: {}: {reason}", manual_action(object)))
        }
        RotationOutcome::Deferred { until, window } => Outcome::deferred(format!(
            "{object} deferred until {}: outside its rotation window ({window}); the scheduled sweep rotates it then",
            until.format("%Y-%m-%d %H:%M UTC")
        )),
    };
    reported.about(object).action(action)
}

/// The outcome (or permanent error) with the channels that have the message: `...; notified 3 channels`.
pub fn with_notified(result: Result<Outcome, HandlerError>, channels: Vec<String>) -> Result<Outcome, HandlerError> {
    let count = channels.len();
    let notified = format!("notified {count} channel{}", if count == 1 { "" } else { "s" });
    match result {
        Ok(outcome) => {
            let message = format!("{}; {notified}", outcome.message);
            Ok(Outcome { message, ..outcome }.notified(channels))
        }
        Err(error) if error.is_retryable() => Err(HandlerError::retryable(format!("{}; {notified}", error.message()))),
        Err(error) => Err(HandlerError::permanent(format!("{}; {notified}", error.message()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use keyturn_host::Status;

    fn secret() -> ObjectRef {
        ObjectRef::new("kv-one", ObjectKind::Secret, "db-password", "v1").unwrap()
    }

    fn cert() -> ObjectRef {
        ObjectRef::new("kv-one", ObjectKind::Certificate, "tls", "c1").unwrap()
    }

    #[test]
    fn a_rotation_is_done_and_names_both_versions_and_the_new_expiry() {
        let expires = chrono::Utc.with_ymd_and_hms(2027, 1, 20, 8, 30, 0).single();
        let done =
            outcome(&secret(), RotationOutcome::Rotated { from: "v1".into(), to: "v2".into(), expires, health: None });
        assert_eq!(done.status, Status::Done);
        assert_eq!(done.message, "rotated kv-one/db-password from v1 to v2, expires 2027-01-20");
        assert_eq!(
            (done.action.as_deref(), done.version_before.as_deref(), done.version_after.as_deref()),
            (Some("rotated"), Some("v1"), Some("v2"))
        );
        assert_eq!(done.object, Some(secret()));
        let key = ObjectRef::new("kv-one", ObjectKind::Key, "signing", "a").unwrap();
        let done =
            outcome(&key, RotationOutcome::Rotated { from: "a".into(), to: "b".into(), expires: None, health: None });
        assert_eq!(done.message, "rotated kv-one/signing from a to b");
    }

    #[test]
    fn nothing_to_do_is_skipped_and_says_what_a_person_must_do() {
        let already =
            outcome(&secret(), RotationOutcome::AlreadyRotated { event_version: "v1".into(), latest: "v2".into() });
        assert_eq!((already.status, already.action.as_deref()), (Status::Skipped, Some("already-rotated")));
        assert_eq!(already.message, "kv-one/db-password already rotated to v2 (the event is about v1)");
        let not_opted = outcome(&secret(), RotationOutcome::NotOptedIn);
        assert_eq!(
            not_opted.message,
            "kv-one/db-password not opted in (tag KeyturnRotation absent or off): manual rotation due"
        );
        assert_eq!(not_opted.action.as_deref(), Some("not-opted-in"));
        let manual = outcome(&cert(), RotationOutcome::ManualActionDue { reason: "issuer 'Unknown'".into() });
        assert_eq!(manual.message, "kv-one/tls: manual renewal due: issuer 'Unknown'");
        let native = outcome(&cert(), RotationOutcome::NativeRotationConfigured { detail: "AutoRenew".into() });
        assert!(native.message.contains("Key Vault's own policy"), "{native:?}");
        assert_eq!((native.status, native.action.as_deref()), (Status::Skipped, Some("native-rotation")));
    }

    #[test]
    fn a_rotation_held_back_by_its_window_is_deferred_and_says_until_when() {
        let until = chrono::Utc.with_ymd_and_hms(2026, 12, 5, 2, 0, 0).unwrap();
        let deferred = outcome(&secret(), RotationOutcome::Deferred { until, window: "Sat 02:00-04:00 UTC".into() });
        assert_eq!((deferred.status, deferred.action.as_deref()), (Status::Deferred, Some("deferred")));
        assert_eq!(
            deferred.log_line(),
            "deferred: kv-one/db-password deferred until 2026-12-05 02:00 UTC: outside its rotation window \
             (Sat 02:00-04:00 UTC); the scheduled sweep rotates it then"
        );
        assert_eq!((deferred.version_before, deferred.version_after), (None, None), "nothing was made");
    }

    #[test]
    fn a_started_renewal_is_done() {
        let started =
            outcome(&cert(), RotationOutcome::RenewalStarted { from: "c1".into(), status: "inProgress".into() });
        assert_eq!((started.status, started.action.as_deref()), (Status::Done, Some("renewal-started")));
        assert!(started.message.starts_with("renewal of kv-one/tls") && started.message.contains("c1"), "{started:?}");
    }

    #[test]
    fn the_line_says_how_many_channels_have_the_message_and_keeps_the_class() {
        let channels = vec!["https://a.example".to_owned(), "https://b.example".to_owned()];
        let done = with_notified(Ok(Outcome::done("rotated kv-one/db from a to b")), channels.clone()).unwrap();
        assert_eq!(done.message, "rotated kv-one/db from a to b; notified 2 channels");
        assert_eq!(done.notified, channels);
        let one =
            with_notified(Ok(Outcome::skipped("kv-one/db not opted in")), vec!["https://a.example".into()]).unwrap();
        assert_eq!(one.message, "kv-one/db not opted in; notified 1 channel");
        let refused = with_notified(Err(HandlerError::permanent("secret kv-one/db: wrong tag")), channels).unwrap_err();
        assert!(!refused.is_retryable());
        assert_eq!(refused.message(), "secret kv-one/db: wrong tag; notified 2 channels");
    }
}
