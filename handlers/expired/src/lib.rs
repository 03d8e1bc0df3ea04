//! The `expired` handler: Key Vault says a secret, key or certificate version has expired. keyturn tells
//! people at critical severity, including whether the expired version is still enabled (read from the
//! vault: the event does not say), and acts only where the object opts in with `KeyturnExpiredAction`
//! (docs/policy-tags.md):
//!
//! - absent or `notify`: notify only;
//! - `rotate`: an emergency rotation through the rotation engine (same contract as near-expiry: the
//!   object's rotation policy, the lock, and no action once the event's version is no longer the latest);
//! - `disable`: the EXPIRED version is disabled; no other version is ever touched.
//!
//! An action is taken only on the vault's own word: anyone who can reach the function endpoint (or publish to
//! its topic) could send an `*Expired` event for a version that has not expired, and disabling it would take a
//! healthy credential away. So before `disable` or `rotate` the version's `exp` is compared with the vault's
//! clock, as the vault's answer tells it (its HTTP `Date`; see [`vault_says`]); a version the vault does not hold
//! expired (not yet, or never: no `exp`) is left alone, the event is rejected for good naming why, and the
//! notification is a warning, not the critical expiry message.
//!
//! The action comes first and the notification says what it did. A retryable failure of the action is
//! still notified (the critical message must not wait for the vault to recover), then the invocation fails
//! so that Event Grid redelivers; a redelivery finds the action done (already rotated, already disabled).
//!
//! The typed outcome's `action`: `notified` (nothing configured, or nothing to do), `disabled`, `rotated`,
//! `renewal-started`, `already-rotated`, `not-opted-in`, `native-rotation`, `manual-action-due` (the engine's
//! labels for an emergency rotation), or `invalid-policy` / `failed` with a rejection.
//!
//! | tags and state | action | outcome |
//! |---|---|---|
//! | no `KeyturnExpiredAction` (or `notify`) | notified | done, critical notification |
//! | `disable`, version enabled | disabled | done; the version is disabled, no other touched |
//! | `disable`, version already disabled | notified | done, nothing changed |
//! | `rotate` | the engine's label (`rotated`, `already-rotated`, ...) | done |
//! | `rotate` or `disable`, but the vault's clock says the version has not expired (or it has no `exp`) | not-expired | rejected, nothing changed, warning notification |
//! | `rotate` or `disable` failing permanently, a wrong tag | failed / invalid-policy | rejected, after notifying |
//! | the action failing retryably, or a channel refusing | — | retry (500), after notifying where possible |
//! | a vault outside the allow-list, another event type | not-allowed / not-served | rejected / skipped, nothing sent |
//!
//! # Layout
//! - this file: [`handle`] (the event parsed once) and [`decide`] (on the typed object); `src/main.rs`: the
//!   binary, wiring only; `src/tests.rs`: every row of the table above against the in-memory fakes.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use keyturn_deps::{Accepted, Deps, ErrorClass};
use keyturn_events::{Event, Lifecycle};
use keyturn_host::{HandlerError, Outcome};
use keyturn_notify::{Action, Severity};
use keyturn_rotation::RotationOutcome;
use keyturn_rotation::policy::{EXPIRED_ACTION, ExpiredAction, ReplicaOf};
use keyturn_vault::{VersionProperties, VersionUpdate};

/// The function's name: its folder under function-definitions/, its route, its binary.
pub const FUNCTION: &str = "expired";

/// How far in the future of the vault's clock an `exp` may still lie and count as passed. Key Vault raises
/// `*Expired` once its clock passes `exp`, so the vault's own time is past it by the time the event arrives; this
/// allowance covers clocks that tell slightly different times (Key Vault's front ends, or this handler's clock
/// where an answer carries no `Date`). Acting up to five minutes early is all a forged event can gain.
pub const EXPIRY_SKEW: TimeDelta = TimeDelta::minutes(5);

/// The outcome's action word when the vault says the version has not expired.
const NOT_EXPIRED: &str = "not-expired";

/// What the vault says about the version's expiry, by its own clock.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expiry {
    /// `exp` has passed (within [`EXPIRY_SKEW`]).
    Passed,
    /// `exp` is still ahead of `now`, the time `clock` told.
    Ahead { expires: DateTime<Utc>, now: DateTime<Utc>, clock: &'static str },
    /// The version has no `exp`: Key Vault never raises `*Expired` for it.
    Never,
}

/// Judges the version's `exp` against the vault's time when it answered (its `Date` header). Key Vault sends
/// `Date` on every response, so the fallback to this handler's clock should never run; if it does, the
/// refusal says which clock judged (on the local stack, whose vault clock tests move ahead of the machine's, a
/// real expiry could then be refused rather than a forged one accepted).
fn vault_says(properties: &VersionProperties) -> Expiry {
    let (now, clock) = match properties.vault_time {
        Some(vault_time) => (vault_time, "the vault's clock"),
        None => (Utc::now(), "this handler's clock (the vault's answer had no Date)"),
    };
    match properties.expires {
        None => Expiry::Never,
        Some(expires) if expires <= now + EXPIRY_SKEW => Expiry::Passed,
        Some(expires) => Expiry::Ahead { expires, now, clock },
    }
}

impl Expiry {
    /// Why an action would not be on the vault's word, if it would not.
    fn refusal(&self, version: &str) -> Option<String> {
        let time = |at: &DateTime<Utc>| at.format("%Y-%m-%d %H:%M:%S UTC").to_string();
        match self {
            Expiry::Passed => None,
            Expiry::Ahead { expires, now, clock } => Some(format!(
                "version {version} has not expired: it expires {} and {clock} reads {}",
                time(expires),
                time(now)
            )),
            Expiry::Never => Some(format!("version {version} has not expired: it has no expiry date")),
        }
    }
}

/// What keyturn did about the expired version, before notifying.
#[derive(Debug)]
struct Acted {
    /// The sentence for the notification and the outcome line.
    summary: String,
    /// The outcome's action word.
    action: &'static str,
    /// Whether keyturn changed the vault (a new version, a disabled version).
    changed: bool,
    /// Whether keyturn disabled the expired version.
    disabled: bool,
    /// The version keyturn made (an emergency rotation).
    version_after: Option<String>,
    /// A failure to report after notifying: retryable → the invocation fails; permanent → rejected.
    failure: Option<HandlerError>,
    /// The vault says the version has not expired: the event was not its word.
    not_expired: bool,
}

impl Acted {
    fn nothing(action: &'static str, summary: String) -> Self {
        Acted {
            summary,
            action,
            changed: false,
            disabled: false,
            version_after: None,
            failure: None,
            not_expired: false,
        }
    }

    fn failed(action: &'static str, summary: String, failure: HandlerError) -> Self {
        Acted { failure: Some(failure), ..Self::nothing(action, summary) }
    }
}

#[cfg(test)]
mod tests;

/// Notifies about an expired version and acts per its opt-in tag.
pub async fn handle(event: Event, deps: Arc<Deps>) -> Result<Outcome, HandlerError> {
    let accepted = match deps.accept(&event, Lifecycle::Expired, FUNCTION) {
        Ok(accepted) => accepted,
        Err(outcome) => return Ok(*outcome),
    };
    let _turn = deps.turn().await;
    decide(&accepted, &deps).await
}

/// The decision for an accepted event (the table in the crate docs).
pub async fn decide(accepted: &Accepted, deps: &Deps) -> Result<Outcome, HandlerError> {
    let object = &accepted.object;
    let (vault, name, version, collection) = (object.vault(), object.name(), object.version(), accepted.collection);
    let target = object.described();
    let properties = deps
        .versions()
        .version_properties(vault, collection, name, version)
        .await
        .map_err(|e| e.handler_error(format!("{target}: reading the expired version {version}")))?;

    // A replica is rotated and disabled through its source only (its copied tags, if any, are not its own).
    let replica = ReplicaOf::from_tags(&properties.tags);
    // Why acting would not be on the vault's word, if it would not be.
    let refusal = vault_says(&properties).refusal(version);
    let acted = match ExpiredAction::from_tags(&properties.tags) {
        _ if replica.is_some() => Acted::nothing(
            "replica",
            format!(
                "it is a replica of {} (KeyturnReplicaOf): keyturn never rotates or disables a copy; its source's \
                 expiry is acted on instead.",
                replica.as_ref().map(ToString::to_string).unwrap_or_default()
            ),
        ),
        Err(policy) => Acted::failed(
            "invalid-policy",
            format!("keyturn did nothing: {policy}."),
            HandlerError::permanent(format!("{target}: {policy}")),
        ),
        Ok(ExpiredAction::Notify) => Acted::nothing(
            "notified",
            format!("no action is configured ({EXPIRED_ACTION} absent or notify): someone must act."),
        ),
        Ok(action) if refusal.is_some() => not_expired(action, refusal.as_deref().unwrap_or_default(), &target),
        Ok(ExpiredAction::Disable) if !properties.enabled => {
            Acted::nothing("notified", format!("keyturn did not need to disable it ({EXPIRED_ACTION}=disable)."))
        }
        Ok(ExpiredAction::Disable) => {
            let update = VersionUpdate { enabled: Some(false), tags: None };
            match deps.versions().update_version(vault, collection, name, version, update).await {
                Ok(_) => Acted {
                    changed: true,
                    disabled: true,
                    ..Acted::nothing(
                        "disabled",
                        format!("keyturn disabled it ({EXPIRED_ACTION}=disable); no other version was touched."),
                    )
                },
                Err(error) => Acted::failed(
                    "failed",
                    format!("keyturn could not disable it ({EXPIRED_ACTION}=disable): {error}."),
                    error.handler_error(format!("{target}: disabling version {version}")),
                ),
            }
        }
        Ok(ExpiredAction::Rotate) => rotate(accepted, deps).await,
    };

    // The enabled flag as it is now (after a disable, it is off).
    let enabled_now = properties.enabled && !acted.disabled;
    let state = match (enabled_now, acted.not_expired) {
        (true, false) => format!(
            "The expired version {version} is still enabled: consumers reading the secret's latest version or this version may still be using it."
        ),
        (false, false) => format!("The expired version {version} is disabled."),
        (true, true) => format!("Version {version} is still enabled."),
        (false, true) => format!("Version {version} is disabled."),
    };
    let summary = format!("{} {state}", acted.summary);
    let mut notification = accepted.notification(Action::Informed { summary: summary.clone() });
    if acted.not_expired {
        // Not the critical expiry message: the vault says nothing expired; someone should look at the sender.
        notification.severity = Severity::Warning;
    }
    tracing::info!(
        vault,
        object = name,
        version,
        enabled = enabled_now,
        changed = acted.changed,
        "expired version: {summary}"
    );
    // A critical message that did not go out is worth Event Grid's retries whatever the action did: the
    // redelivery repeats no action (already rotated, already disabled) and reaches only the missed channels.
    let delivery = match deps.notifier().send(&notification).await {
        Ok(delivery) => delivery,
        Err(error) => {
            let also = acted.failure.map(|f| format!(" (and: {})", f.message())).unwrap_or_default();
            return Err(HandlerError::retryable(format!("{target}: notifying: {error}{also}")));
        }
    };
    let channels = delivery.channels();
    let notified = channels.len();
    let typed = |outcome: Outcome| {
        outcome
            .about(object)
            .action(acted.action)
            .versions(Some(version.to_owned()), acted.version_after.clone())
            .notified(channels.clone())
    };
    if let Some(failure) = &acted.failure {
        return match failure.is_retryable() {
            true => Err(failure.clone()),
            false => Ok(typed(Outcome::rejected(format!(
                "{}; {summary} (notified {notified} channel(s))",
                failure.message()
            )))),
        };
    }
    Ok(typed(Outcome::done(format!(
        "{target} version {version} expired: {summary} (notified {notified} channel(s) at critical severity)"
    ))))
}

/// The refusal to `action` on an event the vault does not back (`why`), about `target`.
fn not_expired(action: ExpiredAction, why: &str, target: &str) -> Acted {
    let opt_in = format!("{EXPIRED_ACTION}={}", action.as_str());
    Acted {
        not_expired: true,
        ..Acted::failed(
            NOT_EXPIRED,
            format!(
                "keyturn did nothing ({opt_in}): the vault says {why}. The event is not the vault's word (forged, or \
                 the expiry was extended since)."
            ),
            HandlerError::permanent(format!("{target}: the vault says {why}; keyturn does not act on this event")),
        )
    }
}

/// The emergency rotation, in the engine's words.
async fn rotate(accepted: &Accepted, deps: &Deps) -> Acted {
    let opt_in = format!("{EXPIRED_ACTION}=rotate");
    let target = accepted.object.described();
    // An expired object is never held back by its rotation window.
    match deps.engine().rotate_expired(&accepted.rotation_request()).await {
        Ok(outcome) => {
            let action = outcome.label();
            match outcome {
                RotationOutcome::Rotated { to, .. } => Acted {
                    changed: true,
                    version_after: Some(to.clone()),
                    ..Acted::nothing(
                        action,
                        format!("keyturn rotated it in an emergency ({opt_in}): the new version is {to}."),
                    )
                },
                RotationOutcome::RenewalStarted { status, .. } => Acted {
                    changed: true,
                    ..Acted::nothing(
                        action,
                        format!(
                            "keyturn started a renewal through the certificate's policy ({opt_in}; operation {status})."
                        ),
                    )
                },
                RotationOutcome::AlreadyRotated { latest, .. } => {
                    Acted::nothing(action, format!("it was already rotated: the latest version is {latest}."))
                }
                RotationOutcome::NotOptedIn => Acted::nothing(
                    action,
                    format!(
                        "{opt_in} is set but the object has no rotation policy (KeyturnRotation): someone must rotate it."
                    ),
                ),
                RotationOutcome::NativeRotationConfigured { detail } => {
                    Acted::nothing(action, format!("it is left to Key Vault's own policy ({detail})."))
                }
                RotationOutcome::Replica { source } => Acted::nothing(
                    action,
                    format!("it is a replica of {source}: keyturn never rotates a copy; its source is rotated."),
                ),
                RotationOutcome::ManualActionDue { reason } => {
                    Acted::nothing(action, format!("keyturn cannot rotate it: {reason}; someone must."))
                }
                // `rotate_expired` never defers; should an engine ever do so, say it plainly.
                RotationOutcome::Deferred { until, window } => Acted::nothing(
                    action,
                    format!("keyturn deferred its rotation to {until} (window {window}); someone must rotate it now."),
                ),
            }
        }
        Err(error) => Acted::failed(
            "failed",
            format!("the emergency rotation failed: {error}."),
            error.handler_error(format!("{target}: emergency rotation")),
        ),
    }
}
