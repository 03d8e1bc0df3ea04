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
//! - consumer refresh, for the apps `KEYTURN_CONSUMERS` binds to the object's vault and name ([`consumers`]):
//!   App Service and Functions apps refresh their Key Vault references, Container Apps restart their active
//!   revisions; each consumer once per version, across redeliveries. A consumer whose call failed retryably
//!   (throttled, Resource Manager down) fails the invocation, so Event Grid delivers the event again and only
//!   the consumers still due are called; the notification is sent once every consumer is done. A consumer
//!   refused for good (a missing role, an app that does not exist) is reported, and the notification is a
//!   warning.
//!
//! Keys and certificates are notified but never mirrored: their key material cannot be exported.
//! The canary secret's versions belong to the `test-event` handler and are skipped here.
//!
//! The typed outcome's `action`: `mirrored` (a copy was written), `notified` (nothing to copy, channels told),
//! `not-notified` (`KEYTURN_NOTIFY_NEW_VERSION_NAMES` does not select the name), `mirror-refused` (rejected: a
//! mirror vault outside the allow-list, the source's own vault, a bad tag), `canary` (skipped).
//!
//! # Layout
//! - this file: [`NewVersion`] (the handler's dependencies), [`handle`] (the event parsed once) and [`decide`]
//!   (on the typed object); [`mirror`]: the replication of one secret version; [`consumers`]: the consumer
//!   refresh and its record ([`blob_record`]: the record in the lock container); `src/main.rs`: wiring;
//!   `src/tests.rs`: every rule above against the in-memory fakes.

pub mod blob_record;
pub mod consumers;
pub mod mirror;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use keyturn_config::LockSettings;
use keyturn_deps::{Accepted, Deps, DepsError, ErrorClass};
use keyturn_rotation::arm::ArmClient;
use keyturn_rotation::lock::blob::lock_container;

use crate::blob_record::BlobRecord;
use crate::consumers::{ArmRefresher, ConsumerRefresh, InProcessRecord, RefreshRecord};
use keyturn_events::{Event, Lifecycle, ObjectKind};
use keyturn_host::{HandlerError, Outcome};
use keyturn_notify::{Action, Severity};
use keyturn_rotation::policy::{self, MIRROR};

/// The function's name: its folder under function-definitions/, its route, its binary.
pub const FUNCTION: &str = "new-version";

/// What the handler builds once: the shared dependencies and, when `KEYTURN_CONSUMERS` names any, the consumer
/// refresh.
#[derive(Debug, Clone)]
pub struct NewVersion {
    pub deps: Arc<Deps>,
    pub consumers: Option<ConsumerRefresh>,
}

/// Why the handler cannot work (every invocation fails with it until it is fixed).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Deps(#[from] DepsError),
    #[error("{0}")]
    Vault(#[from] keyturn_vault::VaultError),
    #[error("the consumer refresh record: {0}")]
    Record(#[from] keyturn_rotation::LockSetupError),
}

impl NewVersion {
    /// Reads the settings from the process environment and builds everything.
    pub fn from_env() -> Result<Self, SetupError> {
        Self::new(Deps::from_env()?)
    }

    /// The handler over `deps`, with the consumer refresh its settings ask for: calls through Resource Manager
    /// (`KEYTURN_ARM_ENDPOINT`) with the handler's credential, recorded in the lock container when the deployment
    /// has one (`KEYTURN_LOCK_ACCOUNT_URL`), else in this process.
    pub fn new(deps: Deps) -> Result<Self, SetupError> {
        let settings = deps.settings();
        let consumers =
            if settings.consumers.is_empty() {
                None
            } else {
                let options = keyturn_vault::http::client_options(&settings.retry, settings.ca_file.as_deref())?;
                let arm =
                    ArmClient::new(settings.providers.arm_endpoint.clone(), deps.credential().clone(), options.clone());
                let record: Arc<dyn RefreshRecord> =
                    match &settings.lock {
                        LockSettings::InProcess => Arc::new(InProcessRecord::default()),
                        LockSettings::BlobLease { account_url, container } => Arc::new(BlobRecord::new(
                            lock_container(account_url, container, deps.credential().clone(), options)?,
                        )),
                    };
                Some(ConsumerRefresh { refresher: Arc::new(ArmRefresher::new(arm)), record })
            };
        Ok(Self { deps: Arc::new(deps), consumers })
    }
}

/// Mirrors the new version where its tag says, refreshes its consumers, then notifies.
pub async fn handle(event: Event, handler: Arc<NewVersion>) -> Result<Outcome, HandlerError> {
    let deps = &handler.deps;
    let accepted = match deps.accept(&event, Lifecycle::NewVersionCreated, FUNCTION) {
        Ok(accepted) => accepted,
        Err(outcome) => return Ok(*outcome),
    };
    let _turn = deps.turn().await;
    decide(&accepted, &handler).await
}

/// The decision for an accepted event (the rules in the crate docs).
pub async fn decide(accepted: &Accepted, handler: &NewVersion) -> Result<Outcome, HandlerError> {
    let deps = handler.deps.as_ref();
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
            let mut report = mirror::MirrorReport::default();
            if policy::tag(&properties.tags, MIRROR).is_some() {
                report.notes.push(format!(
                    "{MIRROR} ignored: a {kind}'s key material cannot be exported, so it is never mirrored"
                ));
            }
            report
        }
    };

    let consumers = match &handler.consumers {
        Some(refresh) => {
            let bound = deps.settings().consumers.of(vault, name);
            consumers::refresh(refresh.refresher.as_ref(), refresh.record.as_ref(), object, &bound).await
        }
        None => consumers::RefreshReport::default(),
    };
    if consumers.retry {
        // Event Grid delivers the event again; the consumers done are recorded and skipped then, and the
        // channels are told once, when every consumer is done.
        return Err(HandlerError::retryable(format!(
            "{target} version {version}: a consumer refresh must be retried. {}",
            consumers.summary()
        )));
    }

    let summary =
        [report.summary(), consumers.summary()].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" ");
    let refused = !report.refused.is_empty();
    let warn = refused || consumers.failed();
    // A refusal is always told (whatever the name filter says), as a warning: someone tagged a mirror the
    // deployment does not allow, or a destination would have been overwritten, or a consumer refused its refresh.
    let (notified, channels) = if warn || deps.new_version_names().matches(name) {
        let text = format!("A new version exists; consumers that cache this object should reload it. {summary}");
        let text = text.trim_end().to_owned();
        let mut notification = accepted.notification(Action::Informed { summary: text });
        if warn {
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
        .notified(channels.unwrap_or_default())
        .targets(consumers.results))
}
