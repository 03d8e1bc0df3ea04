//! Which Key Vault events the vault's changes and the clock's movement produce.
//!
//! Key Vault sends `*NewVersionCreated` for every new version, and `*NearExpiry` / `*Expired` for the
//! CURRENT version of an object only, when the clock reaches exp − lead time and exp. A new version replaces
//! the one being watched; moving a version's exp re-arms the events that have not yet become due.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use keyturn_events::{KeyVaultEventType, Lifecycle, ObjectKind};

/// A change in the vault that Event Grid hears about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectChange {
    pub vault: String,
    pub kind: ObjectKind,
    pub name: String,
    pub version: String,
    pub not_before: Option<DateTime<Utc>>,
    pub expires: Option<DateTime<Utc>>,
    /// A new version (fires `*NewVersionCreated`), or new attributes on an existing one (fires nothing itself).
    pub new_version: bool,
}

/// An event the tracker decided is due, before it is dressed as an [`keyturn_events::Event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DueEvent {
    pub(crate) event_type: KeyVaultEventType,
    pub(crate) change: ObjectChange,
}

#[derive(Debug)]
struct Watched {
    change: ObjectChange,
    near_expiry_sent: bool,
    expired_sent: bool,
}

/// The current version of every object, and which expiry events it has had.
#[derive(Debug)]
pub(crate) struct ExpiryTracker {
    /// How long before exp `*NearExpiry` fires: 30 days for secrets and certificates (not configurable in Key
    /// Vault); keys follow their rotation policy's Notify action, for which 30 days is the default.
    lead: TimeDelta,
    // Keyed by (vault, kind, lower-cased name): Key Vault names are case-insensitive.
    watched: HashMap<(String, ObjectKind, String), Watched>,
}

impl ExpiryTracker {
    pub(crate) fn new(lead: TimeDelta) -> Self {
        Self { lead, watched: HashMap::new() }
    }

    /// Records a change; returns the `*NewVersionCreated` event it causes, if any.
    pub(crate) fn observe(&mut self, change: ObjectChange) -> Option<DueEvent> {
        let key = (change.vault.clone(), change.kind, change.name.to_ascii_lowercase());
        if change.new_version {
            self.watched.insert(key, Watched { change: change.clone(), near_expiry_sent: false, expired_sent: false });
            let event_type = KeyVaultEventType::for_object(change.kind, Lifecycle::NewVersionCreated)?;
            return Some(DueEvent { event_type, change });
        }
        // Attributes of an older version do not matter: only the current one is watched.
        if let Some(watched) = self.watched.get_mut(&key).filter(|w| w.change.version == change.version) {
            if watched.change.expires != change.expires {
                watched.near_expiry_sent = false;
                watched.expired_sent = false;
            }
            watched.change = change;
        }
        None
    }

    /// Brings the watched state in line with what the vault says is current, without publishing
    /// `*NewVersionCreated`: used when the stack starts over persisted state and to pick up attribute changes
    /// (the vault's change feed carries new versions only). A deadline already behind `now` for an object not
    /// watched before counts as sent: Key Vault would have sent it while the stack was down, not now.
    pub(crate) fn sync(&mut self, change: ObjectChange, now: DateTime<Utc>) {
        let key = (change.vault.clone(), change.kind, change.name.to_ascii_lowercase());
        match self.watched.get_mut(&key) {
            Some(watched) if watched.change.version == change.version => {
                if watched.change.expires != change.expires {
                    watched.near_expiry_sent = false;
                    watched.expired_sent = false;
                }
                watched.change = change;
            }
            _ => {
                let (near_expiry_sent, expired_sent) =
                    change.expires.map_or((false, false), |exp| (now >= exp - self.lead, now >= exp));
                self.watched.insert(key, Watched { change, near_expiry_sent, expired_sent });
            }
        }
    }

    /// The expiry events due at `now`, each returned once, and the next time anything falls due.
    pub(crate) fn due(&mut self, now: DateTime<Utc>) -> (Vec<DueEvent>, Option<DateTime<Utc>>) {
        let mut due = Vec::new();
        let mut next: Option<DateTime<Utc>> = None;
        let lead = self.lead;
        for watched in self.watched.values_mut() {
            let Some(exp) = watched.change.expires else { continue };
            for (lifecycle, at, sent) in [
                (Lifecycle::NearExpiry, exp - lead, &mut watched.near_expiry_sent),
                (Lifecycle::Expired, exp, &mut watched.expired_sent),
            ] {
                if *sent {
                    continue;
                }
                if now >= at {
                    *sent = true;
                    if let Some(event_type) = KeyVaultEventType::for_object(watched.change.kind, lifecycle) {
                        due.push(DueEvent { event_type, change: watched.change.clone() });
                    }
                } else {
                    next = Some(next.map_or(at, |n| n.min(at)));
                }
            }
        }
        // NearExpiry before Expired when both fall due in one jump, as they would in real time.
        due.sort_by_key(|d| (d.change.expires, d.event_type.lifecycle() == Lifecycle::Expired));
        (due, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(days: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap() + TimeDelta::days(days)
    }

    fn secret(version: &str, exp_day: Option<i64>, new_version: bool) -> ObjectChange {
        ObjectChange {
            vault: "kv".into(),
            kind: ObjectKind::Secret,
            name: "db".into(),
            version: version.into(),
            not_before: None,
            expires: exp_day.map(t),
            new_version,
        }
    }

    fn types(due: &[DueEvent]) -> Vec<KeyVaultEventType> {
        due.iter().map(|d| d.event_type).collect()
    }

    #[test]
    fn near_expiry_then_expired_each_once_for_the_current_version() {
        let mut tracker = ExpiryTracker::new(TimeDelta::days(30));
        let created = tracker.observe(secret("v1", Some(31), true)).unwrap();
        assert_eq!(created.event_type, KeyVaultEventType::SecretNewVersionCreated);

        let (due, next) = tracker.due(t(0));
        assert!(due.is_empty());
        assert_eq!(next, Some(t(1)));
        assert_eq!(types(&tracker.due(t(1)).0), [KeyVaultEventType::SecretNearExpiry]);
        assert!(tracker.due(t(2)).0.is_empty(), "sent once");
        assert_eq!(types(&tracker.due(t(31)).0), [KeyVaultEventType::SecretExpired]);
        assert_eq!(tracker.due(t(99)), (vec![], None));
    }

    #[test]
    fn a_jump_past_both_fires_both_in_order() {
        let mut tracker = ExpiryTracker::new(TimeDelta::days(30));
        tracker.observe(secret("v1", Some(31), true));
        let (due, _) = tracker.due(t(40));
        assert_eq!(types(&due), [KeyVaultEventType::SecretNearExpiry, KeyVaultEventType::SecretExpired]);
    }

    #[test]
    fn a_new_version_replaces_the_watched_one() {
        let mut tracker = ExpiryTracker::new(TimeDelta::days(30));
        tracker.observe(secret("v1", Some(31), true));
        tracker.observe(secret("v2", Some(90), true));
        let (due, _) = tracker.due(t(40));
        assert!(due.is_empty(), "v1 is no longer current: {due:?}");
        let (due, _) = tracker.due(t(60));
        assert_eq!(due[0].change.version, "v2");
    }

    #[test]
    fn moving_exp_rearms_and_old_versions_are_ignored() {
        let mut tracker = ExpiryTracker::new(TimeDelta::days(30));
        tracker.observe(secret("v1", Some(31), true));
        assert_eq!(tracker.due(t(1)).0.len(), 1);
        assert!(tracker.observe(secret("v1", Some(100), false)).is_none());
        assert!(tracker.due(t(2)).0.is_empty());
        assert_eq!(types(&tracker.due(t(70)).0), [KeyVaultEventType::SecretNearExpiry]);
        // An update to a version that is not current changes nothing.
        tracker.observe(secret("v0", Some(5), false));
        assert_eq!(types(&tracker.due(t(100)).0), [KeyVaultEventType::SecretExpired]);
    }

    #[test]
    fn sync_does_not_replay_the_past_but_rearms_on_new_exp() {
        let mut tracker = ExpiryTracker::new(TimeDelta::days(30));
        let mut seen = secret("v1", Some(10), false);
        tracker.sync(seen.clone(), t(20));
        assert!(tracker.due(t(20)).0.is_empty(), "expired while the stack was down: not sent now");
        seen.expires = Some(t(60));
        tracker.sync(seen, t(20));
        assert!(tracker.due(t(20)).0.is_empty());
        assert_eq!(types(&tracker.due(t(30)).0), [KeyVaultEventType::SecretNearExpiry]);
        // A version the feed never announced replaces the watched one.
        tracker.sync(secret("v2", Some(100), false), t(30));
        assert_eq!(types(&tracker.due(t(70)).0), [KeyVaultEventType::SecretNearExpiry]);
    }

    #[test]
    fn objects_without_exp_never_expire() {
        let mut tracker = ExpiryTracker::new(TimeDelta::days(30));
        tracker.observe(secret("v1", None, true));
        assert_eq!(tracker.due(t(10_000)), (vec![], None));
    }
}
