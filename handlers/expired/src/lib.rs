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
//! The action comes first and the notification says what it did. A retryable failure of the action is
//! still notified (the critical message must not wait for the vault to recover), then the invocation fails
//! so that Event Grid redelivers; a redelivery finds the action done (already rotated, already disabled).
//!
//! # Layout
//! - this file: [`handle`] and the decision; `src/main.rs`: the binary, wiring only.

use std::sync::Arc;

use keyturn_deps::{Deps, ErrorClass, collection_of, served};
use keyturn_events::{Event, Lifecycle};
use keyturn_host::{HandlerError, Outcome};
use keyturn_notify::{Action, Notification};
use keyturn_rotation::RotationOutcome;
use keyturn_rotation::policy::{EXPIRED_ACTION, ExpiredAction};
use keyturn_vault::VersionUpdate;

/// The function's name: its folder under function-definitions/, its route, its binary.
pub const FUNCTION: &str = "expired";

/// What keyturn did about the expired version, before notifying.
#[derive(Debug)]
struct Acted {
    /// The sentence for the notification and the outcome line.
    summary: String,
    /// Whether keyturn changed the vault (a new version, a disabled version).
    changed: bool,
    /// Whether keyturn disabled the expired version.
    disabled: bool,
    /// A failure to report after notifying: retryable → the invocation fails; permanent → rejected.
    failure: Option<HandlerError>,
}

/// Notifies about an expired version and acts per its opt-in tag.
pub async fn handle(event: Event, deps: Arc<Deps>) -> Result<Outcome, HandlerError> {
    let key_vault = match served(&event, Lifecycle::Expired, FUNCTION) {
        Ok(key_vault) => key_vault,
        Err(skipped) => return Ok(skipped),
    };
    let _turn = deps.turn().await;
    let object = &key_vault.object;
    let (vault, name) = (object.vault_name(), object.name());
    let target = format!("{} {vault}/{name}", object.kind().as_str().to_ascii_lowercase());
    // Before anything that could touch the network.
    deps.vault().check_allowed(vault).map_err(|e| e.handler_error(&target))?;
    let (Some(version), Some(collection)) = (object.version(), collection_of(object.kind())) else {
        return Ok(Outcome::Rejected(format!("{target}: the event names no version of an object")));
    };
    let properties = deps
        .versions()
        .version_properties(vault, collection, name, version)
        .await
        .map_err(|e| e.handler_error(format!("{target}: reading the expired version {version}")))?;

    let acted = match ExpiredAction::from_tags(&properties.tags) {
        Err(policy) => Acted {
            summary: format!("keyturn did nothing: {policy}."),
            changed: false,
            disabled: false,
            failure: Some(HandlerError::permanent(format!("{target}: {policy}"))),
        },
        Ok(ExpiredAction::Notify) => Acted {
            summary: format!("no action is configured ({EXPIRED_ACTION} absent or notify): someone must act."),
            changed: false,
            disabled: false,
            failure: None,
        },
        Ok(ExpiredAction::Disable) if !properties.enabled => Acted {
            summary: format!("keyturn did not need to disable it ({EXPIRED_ACTION}=disable)."),
            changed: false,
            disabled: false,
            failure: None,
        },
        Ok(ExpiredAction::Disable) => {
            let update = VersionUpdate { enabled: Some(false), tags: None };
            match deps.versions().update_version(vault, collection, name, version, update).await {
                Ok(_) => Acted {
                    summary: format!("keyturn disabled it ({EXPIRED_ACTION}=disable); no other version was touched."),
                    changed: true,
                    disabled: true,
                    failure: None,
                },
                Err(error) => Acted {
                    summary: format!("keyturn could not disable it ({EXPIRED_ACTION}=disable): {error}."),
                    changed: false,
                    disabled: false,
                    failure: Some(error.handler_error(format!("{target}: disabling version {version}"))),
                },
            }
        }
        Ok(ExpiredAction::Rotate) => rotate(&event, &deps, &target).await,
    };

    // The enabled flag as it is now (after a disable, it is off).
    let enabled_now = properties.enabled && !acted.disabled;
    let state = if enabled_now {
        format!(
            "The expired version {version} is still enabled: consumers reading the secret's latest version or this version may still be using it."
        )
    } else {
        format!("The expired version {version} is disabled.")
    };
    let summary = format!("{} {state}", acted.summary);
    let notification = Notification::for_event(&event, Action::Informed { summary: summary.clone() })
        .ok_or_else(|| HandlerError::permanent(format!("{target}: not a Key Vault event")))?;
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
    let notified = delivery.sent.len() + delivery.already_accepted.len();
    if let Some(failure) = acted.failure {
        return match failure.is_retryable() {
            true => Err(failure),
            false => {
                Ok(Outcome::Rejected(format!("{}; {summary} (notified {notified} channel(s))", failure.message())))
            }
        };
    }
    Ok(Outcome::Done(format!(
        "{target} version {version} expired: {summary} (notified {notified} channel(s) at critical severity)"
    )))
}

/// The emergency rotation, in the engine's words.
async fn rotate(event: &Event, deps: &Deps, target: &str) -> Acted {
    let opt_in = format!("{EXPIRED_ACTION}=rotate");
    match deps.engine().rotate(event).await {
        Ok(RotationOutcome::Rotated { to, .. }) => Acted {
            summary: format!("keyturn rotated it in an emergency ({opt_in}): the new version is {to}."),
            changed: true,
            disabled: false,
            failure: None,
        },
        Ok(RotationOutcome::RenewalStarted { status, .. }) => Acted {
            summary: format!(
                "keyturn started a renewal through the certificate's policy ({opt_in}; operation {status})."
            ),
            changed: true,
            disabled: false,
            failure: None,
        },
        Ok(RotationOutcome::AlreadyRotated { latest, .. }) => Acted {
            summary: format!("it was already rotated: the latest version is {latest}."),
            changed: false,
            disabled: false,
            failure: None,
        },
        Ok(RotationOutcome::NotOptedIn) => Acted {
            summary: format!(
                "{opt_in} is set but the object has no rotation policy (KeyturnRotation): someone must rotate it."
            ),
            changed: false,
            disabled: false,
            failure: None,
        },
        Ok(RotationOutcome::NativeRotationConfigured { detail }) => Acted {
            summary: format!("it is left to Key Vault's own policy ({detail})."),
            changed: false,
            disabled: false,
            failure: None,
        },
        Ok(RotationOutcome::ManualActionDue { reason }) => Acted {
            summary: format!("keyturn cannot rotate it: {reason}; someone must."),
            changed: false,
            disabled: false,
            failure: None,
        },
        Err(error) => Acted {
            summary: format!("the emergency rotation failed: {error}."),
            changed: false,
            disabled: false,
            failure: Some(error.handler_error(format!("{target}: emergency rotation"))),
        },
    }
}
