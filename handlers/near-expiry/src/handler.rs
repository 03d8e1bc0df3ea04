//! [`handle`]: one delivered event parsed once ([`Deps::accept`]), then [`decide`] on the typed object: the
//! rotation engine, then the notification channels.

use std::sync::Arc;

use keyturn_deps::{Accepted, Deps, ErrorClass};
use keyturn_events::{Event, Lifecycle, ObjectKind};
use keyturn_host::{HandlerError, Outcome};
use keyturn_notify::Notification;
use keyturn_rotation::RotationOutcome;

use crate::{FUNCTION, notice, report};

/// Rotates the object a `*NearExpiry` event names and tells the channels; any other event is skipped with
/// the reason, an event about a vault outside the allow-list is rejected before anything else.
pub async fn handle(event: Event, deps: Arc<Deps>) -> Result<Outcome, HandlerError> {
    let accepted = match deps.accept(&event, Lifecycle::NearExpiry, FUNCTION) {
        Ok(accepted) => accepted,
        Err(outcome) => return Ok(*outcome),
    };
    // A rotation creates a version: turned away now, rather than after waiting for a permit, when the vault's
    // create schedule is booked past the longest wait (Event Grid brings the event back while it still has work).
    let _turn = match deps.turn_to_create(&accepted.object).await {
        Ok(turn) => turn,
        Err(paced) => return Err(paced.handler_error(accepted.object.described())),
    };
    decide(&accepted, &deps).await
}

/// The decision for an accepted event (the table in the crate docs).
///
/// Duplicate, concurrent and late deliveries are safe: the engine acts only while the event's version is
/// the object's latest, under the object's lock. A notification a channel did not accept fails the
/// invocation (retryable) whatever the rotation did; the redelivery rotates nothing again.
pub async fn decide(accepted: &Accepted, deps: &Deps) -> Result<Outcome, HandlerError> {
    let object = &accepted.object;
    let (result, notification) = match deps.engine().rotate(&accepted.rotation_request()).await {
        Ok(rotation) => {
            let notification = match &rotation {
                RotationOutcome::AlreadyRotated { latest, .. } if !deps.notifier().is_empty() => {
                    made_for_this_event(accepted, deps, latest).await?
                }
                other => notice::for_rotation(accepted, other),
            };
            (Ok(report::outcome(object, rotation)), notification)
        }
        // Nothing to tell yet: Event Grid redelivers, and that delivery's outcome is what the channels get.
        Err(error) if error.is_retryable() => return Err(error.handler_error(object.described())),
        Err(error) => (Err(error.handler_error(object.described())), Some(notice::for_failure(accepted, &error))),
    };
    let Some(notification) = notification.filter(|_| !deps.notifier().is_empty()) else {
        return result;
    };
    match deps.notifier().send(&notification).await {
        Ok(delivery) => report::with_notified(result, delivery.channels()),
        Err(error) => {
            let line = match &result {
                Ok(outcome) => outcome.log_line(),
                Err(failure) => failure.message().to_owned(),
            };
            Err(HandlerError::retryable(format!("{line}; notifying: {error}")))
        }
    }
}

/// For a redelivery that finds the object already rotated: the info message again if keyturn rotated it for
/// this very event (the first delivery's notification may have failed), else nothing.
///
/// Only secrets carry that provenance (`KeyturnEventId` on the new version); see the crate docs for keys
/// and certificates.
async fn made_for_this_event(
    accepted: &Accepted,
    deps: &Deps,
    latest: &str,
) -> Result<Option<Notification>, HandlerError> {
    let object = &accepted.object;
    if object.kind() != ObjectKind::Secret {
        return Ok(None);
    }
    let latest_version = deps
        .versions()
        .version_properties(object.vault(), accepted.collection, object.name(), latest)
        .await
        .map_err(|e| e.handler_error(format!("{}: reading the latest version {latest}", object.described())))?;
    Ok(notice::made_for(&latest_version.tags, &accepted.event_id).then(|| notice::rotated(accepted, latest)))
}
