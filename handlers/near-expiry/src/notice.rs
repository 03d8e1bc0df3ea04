//! What the notification channels are told about one near-expiry event (the table in the crate docs).
//!
//! Severity comes from `keyturn_notify::Severity::classify` (rotated: info; anything else near expiry: warning),
//! except a started certificate renewal, which is keyturn acting and so is info.

use keyturn_deps::Accepted;
use keyturn_events::ObjectKind;
use keyturn_notify::{Action, Notification, Severity};
use keyturn_rotation::policy::EVENT_ID;
use keyturn_rotation::{RotationError, RotationOutcome};
use keyturn_vault::model::Tags;

use crate::report::manual_action;

/// The notification for what the engine decided; `None` for "already rotated", which is told by the
/// delivery that rotated (see [`made_for`]).
pub fn for_rotation(accepted: &Accepted, rotation: &RotationOutcome) -> Option<Notification> {
    let object = &accepted.object;
    let kind = object.kind().as_str().to_ascii_lowercase();
    let (by_hand, acts) = match object.kind() {
        ObjectKind::Certificate => ("renew it by hand", "renews"),
        _ => ("rotate it by hand", "rotates"),
    };
    let action = match rotation {
        RotationOutcome::Rotated { to, health: Some(check), .. } if !check.passed => {
            // The rotation is done but its consumers may be broken: a person decides, so this is a warning.
            let summary = format!(
                "keyturn rotated it to {to}, but the health probe failed ({}). {}.",
                check.detail, check.rollback
            );
            let mut notification = accepted.notification(Action::Informed { summary });
            notification.severity = notification.severity.max(Severity::Warning);
            return Some(notification);
        }
        RotationOutcome::Rotated { to, .. } => Action::Rotated { new_version: to.clone() },
        RotationOutcome::RenewalStarted { status, .. } => {
            let summary = format!(
                "keyturn started a renewal through the certificate's policy (operation {status}); the new version \
                 raises its own event when it is issued."
            );
            let mut notification = accepted.notification(Action::Informed { summary });
            // keyturn acted: this is news, not a call to act (classify makes any near-expiry without a
            // new version a warning).
            notification.severity = Severity::Info;
            return Some(notification);
        }
        RotationOutcome::AlreadyRotated { .. } => return None,
        RotationOutcome::NotOptedIn => Action::NotRotated {
            reason: format!(
                "the {kind} has no keyturn rotation policy (tag KeyturnRotation absent or off); {by_hand} before it \
                 expires."
            ),
        },
        RotationOutcome::Replica { source } => Action::NotRotated {
            reason: format!(
                "it is a replica of {source} (KeyturnReplicaOf): keyturn never rotates a copy; rotate the source \
                 and its mirroring replaces this one."
            ),
        },
        RotationOutcome::ManualActionDue { reason } => {
            Action::NotRotated { reason: format!("{reason}; {} before it expires.", manual_action(object)) }
        }
        RotationOutcome::Deferred { until, window } => Action::NotRotated {
            reason: format!(
                "its rotation window ({window}) is closed: the rotation is deferred until {}, when the scheduled sweep \
                 rotates it; without the sweep function deployed, {by_hand} in that window.",
                until.format("%Y-%m-%d %H:%M UTC")
            ),
        },
        RotationOutcome::NativeRotationConfigured { detail } => Action::NotRotated {
            reason: format!(
                "it is left to Key Vault's own policy ({detail}); check that Key Vault {acts} it before it expires."
            ),
        },
    };
    Some(accepted.notification(action))
}

/// The notification for a permanent failure (a wrong policy tag, a provider's refusal): a person must act,
/// and Event Grid will not retry.
pub fn for_failure(accepted: &Accepted, error: &RotationError) -> Notification {
    accepted
        .notification(Action::NotRotated { reason: format!("the rotation failed and will not be retried: {error}.") })
}

/// The info message for a rotation keyturn made for this event, sent again on a redelivery.
pub fn rotated(accepted: &Accepted, new_version: &str) -> Notification {
    accepted.notification(Action::Rotated { new_version: new_version.to_owned() })
}

/// Whether a secret version's provenance tags say keyturn made it for the event `event_id`.
pub fn made_for(tags: &Tags, event_id: &str) -> bool {
    tags.iter().any(|(name, value)| name.eq_ignore_ascii_case(EVENT_ID) && value == event_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyturn_events::{Event, Lifecycle};
    use keyturn_vault::VaultError;

    /// The rotation `check` was about, with its probe passing.
    fn passed(check: keyturn_rotation::HealthCheck) -> RotationOutcome {
        let health = Some(keyturn_rotation::HealthCheck { passed: true, detail: "HTTP 200".into(), ..check });
        RotationOutcome::Rotated { from: "v1".into(), to: "v2".into(), expires: None, health }
    }

    fn accepted(kind: &str) -> Accepted {
        let collection = format!("{}s", kind.to_ascii_lowercase());
        let json = format!(
            r#"{{"id":"e1","topic":"/subscriptions/s/resourceGroups/r/providers/Microsoft.KeyVault/vaults/kv-one",
            "subject":"db","eventType":"Microsoft.KeyVault.{kind}NearExpiry","eventTime":"2026-01-01T00:00:00Z",
            "data":{{"Id":"https://kv-one.vault.azure.net/{collection}/db/0123456789abcdef0123456789abcdef",
            "VaultName":"kv-one","ObjectType":"{kind}","ObjectName":"db",
            "Version":"0123456789abcdef0123456789abcdef","NBF":null,"EXP":1767225600}},
            "dataVersion":"1","metadataVersion":"1"}}"#
        );
        let event = Event::from_slice(json.as_bytes()).unwrap();
        let world = keyturn_deps::testing::World::new(&[], "").unwrap();
        world.deps.accept(&event, Lifecycle::NearExpiry, "near-expiry").unwrap()
    }

    #[test]
    fn a_rotation_is_info_and_names_the_new_version() {
        let outcome = RotationOutcome::Rotated { from: "v1".into(), to: "v2".into(), expires: None, health: None };
        let n = for_rotation(&accepted("Secret"), &outcome).unwrap();
        assert_eq!(n.severity, Severity::Info);
        assert_eq!(n.action, Action::Rotated { new_version: "v2".into() });
        assert_eq!(n.event_id, "e1");
        assert_eq!(rotated(&accepted("Secret"), "v2"), n, "a redelivery sends the same message");
    }

    #[test]
    fn a_rotation_whose_health_probe_failed_is_a_warning_saying_whether_rollback_can_help() {
        let check = keyturn_rotation::HealthCheck {
            passed: false,
            detail: "HTTP 503".into(),
            rollback: "`keyturn rollback kv-one/db` restores the previous credential (v1)".into(),
        };
        let outcome =
            RotationOutcome::Rotated { from: "v1".into(), to: "v2".into(), expires: None, health: Some(check.clone()) };
        let n = for_rotation(&accepted("Secret"), &outcome).unwrap();
        assert_eq!(n.severity, Severity::Warning);
        let Action::Informed { summary } = &n.action else { panic!("{:?}", n.action) };
        assert_eq!(
            summary,
            "keyturn rotated it to v2, but the health probe failed (HTTP 503). `keyturn rollback kv-one/db` restores \
             the previous credential (v1)."
        );
        assert_eq!(for_rotation(&accepted("Secret"), &passed(check)).unwrap().severity, Severity::Info);
    }

    #[test]
    fn whatever_keyturn_did_not_rotate_is_a_warning_saying_what_is_due() {
        let cases = [
            ("Secret", RotationOutcome::NotOptedIn, "rotate it by hand"),
            ("Certificate", RotationOutcome::NotOptedIn, "renew it by hand"),
            (
                "Certificate",
                RotationOutcome::ManualActionDue { reason: "issuer 'Unknown'".into() },
                "manual renewal due",
            ),
            (
                "Certificate",
                RotationOutcome::NativeRotationConfigured { detail: "AutoRenew".into() },
                "Key Vault renews it",
            ),
            (
                "Secret",
                RotationOutcome::Deferred {
                    until: chrono::DateTime::from_timestamp(1_764_900_000, 0).unwrap(),
                    window: "Sat 02:00-04:00 UTC".into(),
                },
                "(Sat 02:00-04:00 UTC) is closed: the rotation is deferred until 2025-12-05 02:00 UTC",
            ),
        ];
        for (kind, outcome, due) in cases {
            let n = for_rotation(&accepted(kind), &outcome).unwrap();
            assert_eq!(n.severity, Severity::Warning, "{outcome}");
            let Action::NotRotated { reason } = &n.action else { panic!("{outcome}: {:?}", n.action) };
            assert!(reason.contains(due), "{reason}");
        }
        let failed = RotationError::Vault(VaultError::NotAllowed { vault: "x".into() });
        assert_eq!(for_failure(&accepted("Secret"), &failed).severity, Severity::Warning);
    }

    #[test]
    fn a_started_renewal_is_info_and_already_rotated_is_told_elsewhere() {
        let started = RotationOutcome::RenewalStarted { from: "c1".into(), status: "inProgress".into() };
        let n = for_rotation(&accepted("Certificate"), &started).unwrap();
        assert_eq!(n.severity, Severity::Info);
        assert!(n.action.summary().contains("inProgress"), "{:?}", n.action);
        let already = RotationOutcome::AlreadyRotated { event_version: "v1".into(), latest: "v2".into() };
        assert!(for_rotation(&accepted("Secret"), &already).is_none());
    }

    #[test]
    fn provenance_names_the_event_that_made_a_version() {
        let tags: Tags = [("keyturneventid".to_owned(), "e1".to_owned())].into_iter().collect();
        assert!(made_for(&tags, "e1"));
        assert!(!made_for(&tags, "e2"));
        assert!(!made_for(&Tags::new(), "e1"));
    }
}
