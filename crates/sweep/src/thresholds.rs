//! Expiry thresholds: "days before expiry" at which the sweep tells someone, and how urgent each is.
//!
//! The list comes from the object's `KeyturnThresholds` tag when it has one, else from the deployment's
//! default ([`DEFAULT_THRESHOLDS`], IBM Secrets Manager's practice plus a two-week and a three-day step).
//! A threshold of `0` is the expiry itself.
//!
//! Only the most recently crossed threshold is ever due: an object first seen 10 days before expiry with
//! the default list gets the 14-day notice, not three notices at once for 60, 30 and 14 days. The larger
//! thresholds it skipped are reported as superseded, and can never fire later because a smaller one already
//! did.

use std::fmt;

use chrono::{DateTime, Duration, Utc};
use keyturn_notify::Severity;

/// The tag that overrides the deployment's threshold list for one object, e.g. `KeyturnThresholds=30,7,0`.
pub const THRESHOLDS_TAG: &str = "KeyturnThresholds";
/// The deployment default when the setting is absent.
pub const DEFAULT_THRESHOLDS: &str = "60,30,14,7,3,1,0";
/// The largest threshold accepted: ten years ahead is already beyond any sensible expiry.
pub const MAX_THRESHOLD_DAYS: u32 = 3650;
/// At most this many thresholds in one list, so a tag cannot make every sweep send a notice.
pub const MAX_THRESHOLDS: usize = 20;

/// A threshold list that cannot be used. It quotes the list, which is a tag value or a setting, never a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}='{text}': {reason} (expected days before expiry, e.g. {DEFAULT_THRESHOLDS})")]
pub struct ThresholdError {
    source_name: String,
    text: String,
    reason: String,
}

/// Days before expiry at which to notify, largest first, without duplicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thresholds(Vec<u32>);

impl Default for Thresholds {
    fn default() -> Self {
        // DEFAULT_THRESHOLDS is a constant that the tests parse: the fallback is never taken.
        Self::parse(DEFAULT_THRESHOLDS, "default").unwrap_or_else(|_| Self(vec![30, 7, 0]))
    }
}

impl Thresholds {
    /// Parses a list such as `60,30,14,7,3,1,0` (also `60d, 30d`, separated by `,`, `;` or spaces, in any
    /// order). `source_name` names where it came from in errors: the tag or the setting.
    pub fn parse(text: &str, source_name: &str) -> Result<Self, ThresholdError> {
        let err = |reason: String| ThresholdError {
            source_name: source_name.to_owned(),
            text: text.chars().take(100).collect(),
            reason,
        };
        let mut days = Vec::new();
        for item in text.split([',', ';', ' ', '\t']).map(str::trim).filter(|i| !i.is_empty()) {
            let number = item.strip_suffix(['d', 'D']).unwrap_or(item);
            if number.starts_with('-') {
                return Err(err(format!("'{item}' is negative; 0 is the expiry itself")));
            }
            let value: u32 = number.parse().map_err(|_| err(format!("'{item}' is not a whole number of days")))?;
            if value > MAX_THRESHOLD_DAYS {
                return Err(err(format!("{value} days is more than {MAX_THRESHOLD_DAYS}")));
            }
            days.push(value);
        }
        if days.is_empty() {
            return Err(err("no threshold given".into()));
        }
        days.sort_unstable_by(|a, b| b.cmp(a));
        days.dedup();
        if days.len() > MAX_THRESHOLDS {
            return Err(err(format!("{} thresholds; at most {MAX_THRESHOLDS}", days.len())));
        }
        Ok(Self(days))
    }

    /// The object's own list from its `KeyturnThresholds` tag (`tag_value`), else `default`. A tag that does
    /// not parse is an error, not a silent fallback: its owner meant something by it.
    /// The deployment's default list: `KEYTURN_SWEEP_THRESHOLDS` when it is set, [`DEFAULT_THRESHOLDS`] otherwise.
    /// The sweep and `keyturn check` read it from the same settings, so the report shows what the sweep does.
    pub fn for_deployment(settings: &keyturn_config::SweepSettings) -> Result<Self, ThresholdError> {
        match &settings.thresholds {
            Some(text) => Self::parse(text, keyturn_config::sweep::SWEEP_THRESHOLDS),
            None => Ok(Self::default()),
        }
    }

    pub fn for_object(tag_value: Option<&str>, default: &Self) -> Result<Self, ThresholdError> {
        match tag_value.map(str::trim) {
            Some(value) if !value.is_empty() => Self::parse(value, THRESHOLDS_TAG),
            _ => Ok(default.clone()),
        }
    }

    /// Days before expiry, largest first.
    pub fn days(&self) -> &[u32] {
        &self.0
    }

    /// The instant `threshold` days before `expires`.
    pub fn crossing(expires: DateTime<Utc>, threshold: u32) -> DateTime<Utc> {
        expires - Duration::days(i64::from(threshold))
    }

    /// The threshold due at `now` for an object version expiring at `expires`: the smallest one already
    /// crossed (a threshold of N days is crossed from `expires - N days` on). `None` before the largest.
    pub fn due(&self, expires: DateTime<Utc>, now: DateTime<Utc>, escalation: &Escalation) -> Option<Due> {
        let crossed: Vec<u32> = self.0.iter().copied().filter(|&t| Self::crossing(expires, t) <= now).collect();
        let (&threshold, larger) = crossed.split_last()?;
        Some(Due {
            threshold,
            crossed_at: Self::crossing(expires, threshold),
            severity: escalation.severity(threshold),
            superseded: larger.to_vec(),
        })
    }

    /// The next threshold to cross after `now`, and when: what a report shows as "next notice".
    pub fn next(&self, expires: DateTime<Utc>, now: DateTime<Utc>) -> Option<(u32, DateTime<Utc>)> {
        self.0.iter().map(|&t| (t, Self::crossing(expires, t))).find(|(_, at)| *at > now)
    }
}

impl fmt::Display for Thresholds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list: Vec<String> = self.0.iter().map(u32::to_string).collect();
        f.write_str(&list.join(","))
    }
}

/// A threshold due for an object version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// Days before expiry; 0 is the expiry itself.
    pub threshold: u32,
    /// When the threshold was crossed.
    pub crossed_at: DateTime<Utc>,
    pub severity: Severity,
    /// Larger thresholds crossed too but never to be sent: this one is more urgent and says more.
    pub superseded: Vec<u32>,
}

/// How urgency rises as expiry nears, by the threshold crossed:
/// - `threshold <= critical_within_days` (default 7): **critical** (a page);
/// - `threshold <= warning_within_days` (default 30, Key Vault's own near-expiry point): **warning**;
/// - any larger threshold: **info** (a digest line).
///
/// The expiry itself (threshold 0) is always critical.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Escalation {
    warning_within_days: u32,
    critical_within_days: u32,
}

impl Default for Escalation {
    fn default() -> Self {
        Self { warning_within_days: 30, critical_within_days: 7 }
    }
}

impl Escalation {
    /// Fails when critical would start before warning.
    pub fn new(warning_within_days: u32, critical_within_days: u32) -> Result<Self, String> {
        if critical_within_days > warning_within_days {
            return Err(format!(
                "escalation: critical within {critical_within_days} days starts before warning within \
                 {warning_within_days} days; critical must be the nearer to expiry"
            ));
        }
        Ok(Self { warning_within_days, critical_within_days })
    }

    pub fn severity(&self, threshold: u32) -> Severity {
        if threshold <= self.critical_within_days {
            Severity::Critical
        } else if threshold <= self.warning_within_days {
            Severity::Warning
        } else {
            Severity::Info
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn lists_parse_in_any_order_and_spelling_and_the_default_is_valid() {
        assert_eq!(Thresholds::default().days(), [60, 30, 14, 7, 3, 1, 0]);
        assert_eq!(Thresholds::parse("0, 7d;30 7", "t").unwrap().days(), [30, 7, 0]);
        assert_eq!(Thresholds::parse("90D", "t").unwrap().to_string(), "90");
    }

    #[test]
    fn bad_lists_say_what_was_wrong_and_where_it_came_from() {
        for (text, expected) in [
            ("60,x,7", "'x' is not a whole number of days"),
            ("30,-1", "'-1' is negative; 0 is the expiry itself"),
            (" , ", "no threshold given"),
            ("4000", "4000 days is more than 3650"),
            ("1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21", "21 thresholds; at most 20"),
        ] {
            let err = Thresholds::parse(text, THRESHOLDS_TAG).unwrap_err().to_string();
            assert!(err.starts_with("KeyturnThresholds='"), "{err}");
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn an_objects_tag_overrides_the_default_and_a_bad_tag_is_not_ignored() {
        let default = Thresholds::default();
        assert_eq!(Thresholds::for_object(None, &default).unwrap(), default);
        assert_eq!(Thresholds::for_object(Some("  "), &default).unwrap(), default);
        assert_eq!(Thresholds::for_object(Some("7,0"), &default).unwrap().days(), [7, 0]);
        assert!(Thresholds::for_object(Some("soon"), &default).is_err());
    }

    #[test]
    fn only_the_most_recently_crossed_threshold_is_due() {
        let t = Thresholds::default();
        let e = Escalation::default();
        let expires = at("2027-03-01T12:00:00Z");
        assert_eq!(t.due(expires, at("2026-12-31T11:59:59Z"), &e), None, "61 days minus a second: nothing yet");
        let due = t.due(expires, at("2026-12-31T12:00:00Z"), &e).unwrap();
        assert_eq!((due.threshold, due.severity, due.superseded.clone()), (60, Severity::Info, vec![]));
        let due = t.due(expires, at("2027-02-19T00:00:00Z"), &e).unwrap();
        assert_eq!((due.threshold, due.severity, due.superseded), (14, Severity::Warning, vec![60, 30]));
        assert_eq!(due.crossed_at, at("2027-02-15T12:00:00Z"));
        let due = t.due(expires, at("2027-02-22T12:00:00Z"), &e).unwrap();
        assert_eq!((due.threshold, due.severity), (7, Severity::Critical));
        let due = t.due(expires, at("2028-01-01T00:00:00Z"), &e).unwrap();
        assert_eq!((due.threshold, due.severity), (0, Severity::Critical), "long expired: the expiry itself");
        assert_eq!(t.next(expires, at("2027-02-19T00:00:00Z")), Some((7, at("2027-02-22T12:00:00Z"))));
        assert_eq!(t.next(expires, at("2027-03-01T12:00:00Z")), None);
    }

    #[test]
    fn severity_rises_as_expiry_nears() {
        let e = Escalation::default();
        let severities: Vec<Severity> = [60, 31, 30, 14, 8, 7, 1, 0].map(|t| e.severity(t)).to_vec();
        use Severity::*;
        assert_eq!(severities, [Info, Info, Warning, Warning, Warning, Critical, Critical, Critical]);
        let strict = Escalation::new(60, 14).unwrap();
        assert_eq!((strict.severity(60), strict.severity(14)), (Warning, Critical));
        assert_eq!(Escalation::new(0, 0).unwrap().severity(0), Critical);
        assert!(Escalation::new(7, 14).unwrap_err().contains("critical must be the nearer"));
    }
}
