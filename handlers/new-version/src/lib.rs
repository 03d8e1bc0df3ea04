//! The `new-version` handler: a secret, key or certificate has a new version. keyturn tells consumers:
//!
//! - a notification (info), for the names `KEYTURN_NOTIFY_NEW_VERSION_NAMES` selects (all by default);
//! - mirror replication, for secrets tagged `KeyturnMirror=<vault>[,<vault>]`: the new version (value,
//!   content type, tags, `exp`, `nbf`) is copied into each mirror vault, tagged
//!   `KeyturnReplicaOf=<vault>/<name>/<version>`.
//!
//! Replication is safe to repeat and cannot loop:
//! - only the source's latest version is copied (an older event arriving late must not overwrite a newer
//!   copy; the newer version's own event copies it);
//! - a mirror whose latest version already carries this source version is skipped;
//! - a version carrying `KeyturnReplicaOf` is never copied onward;
//! - a mirror vault must be in `KEYTURN_VAULTS` or `KEYTURN_MIRROR_VAULTS`: any other is refused before
//!   anything is sent to it, and the event is rejected (no retry can fix a tag or a setting);
//! - a destination secret that exists and is not a replica of this same source (`KeyturnReplicaOf` naming
//!   this vault and name) is never overwritten: refused, rejected, and notified as a warning whatever
//!   `KEYTURN_NOTIFY_NEW_VERSION_NAMES` selects.
//!
//! Keys and certificates are notified but never mirrored: their key material cannot be exported.
//! The canary secret's versions belong to the `test-event` handler and are skipped here.
//!
//! The typed outcome's `action`: `mirrored` (a copy was written), `notified` (nothing to copy, channels told),
//! `not-notified` (`KEYTURN_NOTIFY_NEW_VERSION_NAMES` does not select the name), `mirror-refused` (rejected: a
//! mirror vault outside the allow-list, the source's own vault, a bad tag), `canary` (skipped).
//!
//! # Layout
//! - this file: [`handle`] (the event parsed once) and [`decide`] (on the typed object); [`mirror`]: the
//!   replication of one secret version; `src/main.rs`: wiring; `src/tests.rs`: every rule above against the
//!   in-memory fakes.

pub mod mirror;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use keyturn_deps::{Accepted, Deps, ErrorClass};
use keyturn_events::{Event, Lifecycle, ObjectKind};
use keyturn_host::{HandlerError, Outcome};
use keyturn_notify::{Action, Severity};
use keyturn_rotation::policy::{self, MIRROR};

/// The function's name: its folder under function-definitions/, its route, its binary.
pub const FUNCTION: &str = "new-version";

/// Mirrors the new version where its tag says, then notifies.
pub async fn handle(event: Event, deps: Arc<Deps>) -> Result<Outcome, HandlerError> {
    let accepted = match deps.accept(&event, Lifecycle::NewVersionCreated, FUNCTION) {
        Ok(accepted) => accepted,
        Err(outcome) => return Ok(*outcome),
    };
    let _turn = deps.turn().await;
    decide(&accepted, &deps).await
}

/// The decision for an accepted event (the rules in the crate docs).
pub async fn decide(accepted: &Accepted, deps: &Deps) -> Result<Outcome, HandlerError> {
    let object = &accepted.object;
    let (vault, name, version, kind) = (object.vault(), object.name(), object.version(), object.kind());
    let target = object.described();
    if kind == ObjectKind::Secret && deps.canary().is_some_and(|canary| canary.eq_ignore_ascii_case(name)) {
        return Ok(Outcome::skipped(format!(
            "{target} is the canary secret (KEYTURN_CANARY_SECRET): its versions are the test-event handler's"
        ))
        .about(object)
        .action("canary"));
    }

    let report = match kind {
        ObjectKind::Secret => mirror::mirror(deps, object).await?,
        _ => {
            // Only to say why a mirror tag is ignored: the tag is on the version.
            let properties = deps
                .versions()
                .version_properties(vault, accepted.collection, name, version)
                .await
                .map_err(|e| e.handler_error(format!("{target}: reading version {version}")))?;
            let mut report = mirror::Report::default();
            if policy::tag(&properties.tags, MIRROR).is_some() {
                report.notes.push(format!(
                    "{MIRROR} ignored: a {kind}'s key material cannot be exported, so it is never mirrored"
                ));
            }
            report
        }
    };

    let summary = report.summary();
    let refused = !report.refused.is_empty();
    // A refusal is always told (whatever the name filter says), as a warning: someone tagged a mirror the
    // deployment does not allow, or a destination would have been overwritten.
    let (notified, channels) = if refused || deps.new_version_names().matches(name) {
        let text = format!("A new version exists; consumers that cache this object should reload it. {summary}");
        let text = text.trim_end().to_owned();
        let mut notification = accepted.notification(Action::Informed { summary: text });
        if refused {
            notification.severity = notification.severity.max(Severity::Warning);
        }
        let delivery =
            deps.notifier().send(&notification).await.map_err(|e| e.handler_error(format!("{target}: notifying")))?;
        let channels = delivery.channels();
        (format!("notified {} channel(s)", channels.len()), Some(channels))
    } else {
        ("not notified (KEYTURN_NOTIFY_NEW_VERSION_NAMES does not select it)".to_owned(), None)
    };
    let mut line = format!("{target} version {version}: {notified}");
    if !summary.is_empty() {
        line = format!("{line}; {summary}");
    }
    let (outcome, action) = if refused {
        (Outcome::rejected(line), "mirror-refused")
    } else if !report.copied.is_empty() {
        (Outcome::done(line), "mirrored")
    } else if channels.is_some() {
        (Outcome::done(line), "notified")
    } else {
        (Outcome::done(line), "not-notified")
    };
    Ok(outcome
        .about(object)
        .action(action)
        .versions(Some(version.to_owned()), None)
        .notified(channels.unwrap_or_default()))
}
