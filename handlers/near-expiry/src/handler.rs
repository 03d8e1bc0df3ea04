//! [`handle`]: one delivered event through the rotation engine, then to the notification channels.

use std::sync::Arc;

use keyturn_deps::{Deps, ErrorClass, served};
use keyturn_events::{Event, Lifecycle, ObjectKind};
use keyturn_host::{HandlerError, Outcome};
use keyturn_notify::Notification;
use keyturn_rotation::RotationOutcome;

use crate::report::{self, Target};
use crate::{FUNCTION, notice};

/// Rotates the object a `*NearExpiry` event names and tells the channels; any other event is skipped with
/// the reason.
///
/// Duplicate, concurrent and late deliveries are safe: the engine acts only while the event's version is
/// the object's latest, under the object's lock. A notification a channel did not accept fails the
/// invocation (retryable) whatever the rotation did; the redelivery rotates nothing again.
pub async fn handle(event: Event, deps: Arc<Deps>) -> Result<Outcome, HandlerError> {
    let key_vault = match served(&event, Lifecycle::NearExpiry, FUNCTION) {
        Ok(key_vault) => key_vault,
        Err(skipped) => return Ok(skipped),
    };
    let object = &key_vault.object;
    let target = Target { vault: object.vault_name(), kind: object.kind(), name: object.name() };
    // Checked here too (the engine checks first thing) so that a foreign vault's event is refused before
    // anything, a notification included: the channels are this deployment's.
    deps.vault().check_allowed(target.vault).map_err(|e| e.handler_error(target.described()))?;
    let _turn = deps.turn().await;
    let (result, notification) = match deps.engine().rotate(&event).await {
        Ok(rotation) => {
            let notification = match &rotation {
                RotationOutcome::AlreadyRotated { latest, .. } if !deps.notifier().is_empty() => {
                    made_for_this_event(&event, &deps, &target, latest).await?
                }
                other => notice::for_rotation(&event, &target, other),
            };
            (Ok(report::outcome(&target, rotation)), notification)
        }
        // Nothing to tell yet: Event Grid redelivers, and that delivery's outcome is what the channels get.
        Err(error) if error.is_retryable() => return Err(error.handler_error(target.described())),
        Err(error) => (Err(error.handler_error(target.described())), notice::for_failure(&event, &error)),
    };
    let Some(notification) = notification.filter(|_| !deps.notifier().is_empty()) else {
        return result;
    };
    match deps.notifier().send(&notification).await {
        Ok(delivery) => report::with_notified(result, delivery.sent.len() + delivery.already_accepted.len()),
        Err(error) => {
            let line = match &result {
                Ok(outcome) => format!("{}: {}", outcome.label(), outcome.message()),
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
    event: &Event,
    deps: &Deps,
    target: &Target<'_>,
    latest: &str,
) -> Result<Option<Notification>, HandlerError> {
    if target.kind != ObjectKind::Secret {
        return Ok(None);
    }
    let latest_version = deps
        .versions()
        .version_properties(target.vault, keyturn_vault::Collection::Secrets, target.name, latest)
        .await
        .map_err(|e| e.handler_error(format!("{}: reading the latest version {latest}", target.described())))?;
    Ok(notice::made_for(&latest_version.tags, &event.id).then(|| notice::rotated(event, latest)).flatten())
}
