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
//!   anything is sent to it, and the event is rejected (no retry can fix a tag or a setting).
//!
//! Keys and certificates are notified but never mirrored: their key material cannot be exported.
//! The canary secret's versions belong to the `test-event` handler and are skipped here.
//!
//! # Layout
//! - this file: [`handle`]; [`mirror`]: the replication of one secret version; `src/main.rs`: wiring.

pub mod mirror;

use std::sync::Arc;

use keyturn_deps::{Deps, ErrorClass, collection_of, served};
use keyturn_events::{Event, Lifecycle, ObjectKind};
use keyturn_host::{HandlerError, Outcome};
use keyturn_notify::{Action, Notification};
use keyturn_rotation::policy::{self, MIRROR};

/// The function's name: its folder under function-definitions/, its route, its binary.
pub const FUNCTION: &str = "new-version";

/// Mirrors the new version where its tag says, then notifies.
pub async fn handle(event: Event, deps: Arc<Deps>) -> Result<Outcome, HandlerError> {
    let key_vault = match served(&event, Lifecycle::NewVersionCreated, FUNCTION) {
        Ok(key_vault) => key_vault,
        Err(skipped) => return Ok(skipped),
    };
    let _turn = deps.turn().await;
    let object = &key_vault.object;
    let (vault, name, kind) = (object.vault_name(), object.name(), object.kind());
    let target = format!("{} {vault}/{name}", kind.as_str().to_ascii_lowercase());
    // Before anything that could touch the network.
    deps.vault().check_allowed(vault).map_err(|e| e.handler_error(&target))?;
    let (Some(version), Some(collection)) = (object.version(), collection_of(kind)) else {
        return Ok(Outcome::Rejected(format!("{target}: the event names no version of an object")));
    };
    if kind == ObjectKind::Secret && deps.canary().is_some_and(|canary| canary.eq_ignore_ascii_case(name)) {
        return Ok(Outcome::Skipped(format!(
            "{target} is the canary secret (KEYTURN_CANARY_SECRET): its versions are the test-event handler's"
        )));
    }

    let report = match kind {
        ObjectKind::Secret => mirror::mirror(&deps, vault, name, version).await?,
        _ => {
            // Only to say why a mirror tag is ignored: the tag is on the version.
            let properties = deps
                .versions()
                .version_properties(vault, collection, name, version)
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
    let notified = if deps.new_version_names().matches(name) {
        let text = format!("A new version exists; consumers that cache this object should reload it. {summary}");
        let text = text.trim_end().to_owned();
        let notification = Notification::for_event(&event, Action::Informed { summary: text })
            .ok_or_else(|| HandlerError::permanent(format!("{target}: not a Key Vault event")))?;
        let delivery =
            deps.notifier().send(&notification).await.map_err(|e| e.handler_error(format!("{target}: notifying")))?;
        format!("notified {} channel(s)", delivery.sent.len() + delivery.already_accepted.len())
    } else {
        "not notified (KEYTURN_NOTIFY_NEW_VERSION_NAMES does not select it)".to_owned()
    };
    let mut line = format!("{target} version {version}: {notified}");
    if !summary.is_empty() {
        line = format!("{line}; {summary}");
    }
    if report.refused.is_empty() { Ok(Outcome::Done(line)) } else { Ok(Outcome::Rejected(line)) }
}
