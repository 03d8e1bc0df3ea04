//! [`RotationOutcome`]: what a rotation attempt did, in words a log line and a notification can use.

use std::fmt;

use chrono::{DateTime, Utc};

use crate::engine::health::HealthCheck;

/// The result of a rotation attempt that ran to a decision (failures are [`crate::RotationError`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotationOutcome {
    /// A new version exists; `health` is what the deployment's health probe said about it, when one is bound.
    Rotated { from: String, to: String, expires: Option<DateTime<Utc>>, health: Option<HealthCheck> },
    /// The event's version is no longer the latest: a rotation already happened (a duplicate or late
    /// delivery, or someone rotated by hand). Nothing was done.
    AlreadyRotated { event_version: String, latest: String },
    /// The object's tags do not opt in to rotation (`KeyturnRotation`). Nothing was done.
    NotOptedIn,
    /// The object is a replica (`KeyturnReplicaOf` = `source`): its source is rotated and mirrored here.
    /// Nothing was done.
    Replica { source: String },
    /// Key Vault's own policy rotates or renews this object; keyturn does not double-rotate.
    NativeRotationConfigured { detail: String },
    /// keyturn cannot rotate this object; a person must.
    ManualActionDue { reason: String },
    /// A certificate renewal was started through the certificate's policy; its new version raises its
    /// own event when issued.
    RenewalStarted { from: String, status: String },
    /// Near expiry, outside every window of the object's `KeyturnRotationWindow` (`window`, the tag's value),
    /// and the next one opens at `until`, before the expiry: nothing was done; the rotation waits for it.
    Deferred { until: DateTime<Utc>, window: String },
}

impl RotationOutcome {
    /// A short stable label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Rotated { .. } => "rotated",
            Self::AlreadyRotated { .. } => "already-rotated",
            Self::NotOptedIn => "not-opted-in",
            Self::Replica { .. } => "replica",
            Self::NativeRotationConfigured { .. } => "native-rotation",
            Self::ManualActionDue { .. } => "manual-action-due",
            Self::RenewalStarted { .. } => "renewal-started",
            Self::Deferred { .. } => "deferred",
        }
    }

    /// Whether keyturn changed the vault.
    pub fn acted(&self) -> bool {
        matches!(self, Self::Rotated { .. } | Self::RenewalStarted { .. })
    }
}

impl fmt::Display for RotationOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rotated { from, to, expires, health } => {
                write!(f, "rotated from {from} to {to}")?;
                if let Some(exp) = expires {
                    write!(f, ", expires {}", exp.to_rfc3339())?;
                }
                match health {
                    Some(check) if check.passed => write!(f, "; health probe passed ({})", check.detail),
                    Some(check) => write!(f, "; health probe FAILED ({}): {}", check.detail, check.rollback),
                    None => Ok(()),
                }
            }
            Self::AlreadyRotated { event_version, latest } => {
                write!(f, "already rotated to {latest} (the event is about {event_version})")
            }
            Self::NotOptedIn => f.write_str("not rotated: the object does not opt in (tag KeyturnRotation)"),
            Self::Replica { source } => {
                write!(f, "not rotated: a replica of {source} (KeyturnReplicaOf); its source is rotated and mirrored")
            }
            Self::NativeRotationConfigured { detail } => {
                write!(f, "not rotated: Key Vault's own policy handles it ({detail})")
            }
            Self::ManualActionDue { reason } => write!(f, "manual action due: {reason}"),
            Self::RenewalStarted { from, status } => {
                write!(f, "renewal of {from} started through the certificate policy (operation {status})")
            }
            Self::Deferred { until, window } => write!(
                f,
                "deferred until {}: outside its rotation window ({window})",
                until.format("%Y-%m-%d %H:%M UTC")
            ),
        }
    }
}
