//! Rotation windows: when a rotation of an object nearing expiry may start (the near-expiry handler's and the
//! sweep's). Outside its window a near-expiry rotation is deferred until the window next opens; an expired
//! object is never held back. [`crate::plan::window`] is the decision table's row that applies it.
//!
//! It lives beside the other policy tags because the rotation engine applies it; `keyturn_sweep` re-exports it
//! (`keyturn_sweep::window`, `keyturn_sweep::RotationWindows`, ...) for the scheduled sweep.
//!
//! The tag (grammar in docs/policy-tags.md, "Rotation windows"):
//! ```text
//! KeyturnRotationWindow = window *( ("," | ";") window )
//! window = [days] time "-" time [zone]
//! days   = day *( ("," | " ") day )     ; Mon..Sun or Monday..Sunday, any case
//!        | day "-" day                   ; a range, which may wrap: Fri-Mon
//!        | "Daily" | "*"                 ; every day (also when days are left out)
//! time   = H:MM | HH:MM                  ; 00:00 to 24:00 (24:00 only as an end)
//! zone   = "UTC" | "Z" | ["UTC"] ("+" | "-") HH[:MM]   ; a fixed offset; UTC when left out
//! ```
//! e.g. `Sat 02:00-04:00 UTC`, `Mon-Fri 22:00-02:00 +01:00; Sun 00:00-24:00`, `Tue,Thu 03:00-05:00`.
//! A window whose end is not after its start crosses midnight and ends the next day; its days are the days
//! it starts on. Named time zones other than UTC are refused: their offset changes with daylight saving,
//! and a window must mean the same hours all year; write the offset.

use std::fmt;

use chrono::{DateTime, Datelike, Duration, FixedOffset, Offset, Timelike, Utc};

/// The tag holding an object's rotation windows, e.g. `KeyturnRotationWindow=Sat 02:00-04:00 UTC`.
pub const ROTATION_WINDOW_TAG: &str = "KeyturnRotationWindow";

const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const FULL_DAY_NAMES: [&str; 7] = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];
const SECS_PER_DAY: i64 = 86_400;
const SECS_PER_WEEK: i64 = 7 * SECS_PER_DAY;
/// The largest offset any place on Earth uses (Kiribati, UTC+14).
const MAX_OFFSET_MINUTES: i32 = 14 * 60;

/// A window tag that cannot be used: what was wrong, quoting the part of the tag at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{ROTATION_WINDOW_TAG}='{text}': {reason}")]
pub struct WindowError {
    text: String,
    reason: String,
}

impl From<WindowError> for crate::policy::PolicyError {
    /// A window tag that does not parse is a policy tag that is wrong, like any other.
    fn from(error: WindowError) -> Self {
        Self { tag: ROTATION_WINDOW_TAG, problem: format!("'{}': {}", error.text, error.reason) }
    }
}

/// One window: the days it starts on, its start and length, in a fixed offset from UTC.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Window {
    /// Monday first.
    days: [bool; 7],
    /// Seconds after local midnight.
    start: i64,
    /// Seconds, 1 to 24 hours.
    length: i64,
    offset: FixedOffset,
}

impl Window {
    /// Seconds since local Monday 00:00 at which this window opens, one per day it starts on.
    fn starts(&self) -> impl Iterator<Item = i64> + '_ {
        (0..7).filter(|&d| self.days[d]).map(move |d| d as i64 * SECS_PER_DAY + self.start)
    }

    /// Local seconds of the week for `now` in this window's offset.
    fn week_second(&self, now: DateTime<Utc>) -> i64 {
        let local = now.with_timezone(&self.offset);
        i64::from(local.weekday().num_days_from_monday()) * SECS_PER_DAY + i64::from(local.num_seconds_from_midnight())
    }

    fn is_open(&self, now: DateTime<Utc>) -> bool {
        let at = self.week_second(now);
        // A window that opened late on Sunday may still be open early on Monday: look one week back too.
        self.starts().any(|s| {
            (s <= at && at < s + self.length) || (s - SECS_PER_WEEK <= at && at < s - SECS_PER_WEEK + self.length)
        })
    }

    /// Seconds from `now` (whole seconds) until this window next opens, strictly later than now.
    fn until_next_start(&self, now: DateTime<Utc>) -> Option<i64> {
        let at = self.week_second(now);
        self.starts().map(|s| (s - at).rem_euclid(SECS_PER_WEEK)).map(|d| if d == 0 { SECS_PER_WEEK } else { d }).min()
    }
}

/// An object's rotation windows: rotation may start whenever any of them is open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationWindows {
    windows: Vec<Window>,
    text: String,
}

impl fmt::Display for RotationWindows {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl RotationWindows {
    /// Parses the tag's value (grammar in the module docs).
    pub fn parse(text: &str) -> Result<Self, WindowError> {
        let whole = text.trim();
        let err = |part: &str, reason: String| WindowError { text: part.chars().take(100).collect(), reason };
        if whole.is_empty() {
            return Err(err(whole, "empty: write e.g. Sat 02:00-04:00 UTC".into()));
        }
        let mut windows = Vec::new();
        // Days listed before a segment that has the times: "Tue,Thu 03:00-05:00" splits into "Tue" and
        // "Thu 03:00-05:00", and "Tue" belongs to the window that follows.
        let mut pending_days: Vec<&str> = Vec::new();
        for segment in whole.split([',', ';']).map(str::trim) {
            if segment.is_empty() {
                return Err(err(whole, "an empty entry between separators".into()));
            }
            let Some(time_at) = segment.find(|c: char| c.is_ascii_digit()) else {
                pending_days.push(segment);
                continue;
            };
            let (day_part, time_part) = segment.split_at(time_at);
            let day_part = day_part.trim();
            let mut day_items: Vec<&str> = std::mem::take(&mut pending_days);
            // "Mon - Fri" is the range Mon-Fri, however it is spaced.
            let day_part = day_part.split('-').map(str::trim).collect::<Vec<_>>().join("-");
            day_items.extend(day_part.split_whitespace());
            let days = parse_days(&day_items).map_err(|reason| err(segment, reason))?;
            let (start, end, zone) = parse_times(time_part).map_err(|reason| err(segment, reason))?;
            if start == end {
                return Err(err(
                    segment,
                    "the window starts and ends at the same time; for a whole day write 00:00-24:00".into(),
                ));
            }
            let offset = parse_zone(zone).map_err(|reason| err(segment, reason))?;
            let length = if end > start { end - start } else { SECS_PER_DAY - start + end };
            windows.push(Window { days, start, length, offset });
        }
        if let Some(days) = pending_days.first() {
            return Err(err(days, "days without a time range: write e.g. Sat 02:00-04:00".into()));
        }
        Ok(Self { windows, text: whole.to_owned() })
    }

    /// The object's windows from its tag's value; `None` (rotate any time) without one.
    pub fn for_object(tag_value: Option<&str>) -> Result<Option<Self>, WindowError> {
        match tag_value.map(str::trim) {
            Some(value) if !value.is_empty() => Self::parse(value).map(Some),
            _ => Ok(None),
        }
    }

    /// Whether a window is open at `now`.
    pub fn is_open(&self, now: DateTime<Utc>) -> bool {
        self.windows.iter().any(|w| w.is_open(now))
    }

    /// `now` if a window is open; else when the next one opens (within a week, whole seconds).
    pub fn next_open(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        if self.is_open(now) {
            return now;
        }
        let whole = now.with_nanosecond(0).unwrap_or(now);
        // Every window opens at least once a week, so there is always a next start.
        let wait = self.windows.iter().filter_map(|w| w.until_next_start(now)).min().unwrap_or(SECS_PER_WEEK);
        whole + Duration::seconds(wait)
    }
}

/// Whether a rotation the sweep wants to make may start now, given the object's windows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowDecision {
    /// No window set, or one is open: rotate.
    Open,
    /// Outside every window: defer until the next one opens.
    Deferred { until: DateTime<Utc> },
    /// Outside every window, but rotate anyway, for `reason`.
    Overridden { reason: Override },
}

/// Why a window does not hold a rotation back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Override {
    /// The object has expired: an expired object is never held back by a window.
    Expired,
    /// The next window opens at `next_open`, at or after the expiry: waiting would let the object expire,
    /// which is the outage the rotation exists to prevent.
    NextWindowAfterExpiry { next_open: DateTime<Utc> },
}

impl fmt::Display for Override {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Expired => f.write_str("the object has expired, and an expired object is never held back"),
            Self::NextWindowAfterExpiry { next_open } => {
                write!(f, "its next window opens {}, at or after its expiry", next_open.format("%Y-%m-%d %H:%M UTC"))
            }
        }
    }
}

impl WindowDecision {
    /// The decision for an object with `windows` (none: rotate any time) expiring at `expires`, at `now`.
    pub fn decide(windows: Option<&RotationWindows>, expires: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Self {
        let Some(windows) = windows else { return Self::Open };
        if windows.is_open(now) {
            return Self::Open;
        }
        match expires {
            Some(exp) if exp <= now => Self::Overridden { reason: Override::Expired },
            Some(exp) => {
                let next_open = windows.next_open(now);
                if next_open >= exp {
                    Self::Overridden { reason: Override::NextWindowAfterExpiry { next_open } }
                } else {
                    Self::Deferred { until: next_open }
                }
            }
            None => Self::Deferred { until: windows.next_open(now) },
        }
    }
}

fn day_index(name: &str) -> Option<usize> {
    let lower = name.to_ascii_lowercase();
    FULL_DAY_NAMES.iter().position(|full| lower == *full || (lower.len() == 3 && full.starts_with(&lower)))
}

fn parse_days(items: &[&str]) -> Result<[bool; 7], String> {
    if items.is_empty() {
        return Ok([true; 7]);
    }
    let mut days = [false; 7];
    for item in items {
        if item.eq_ignore_ascii_case("daily") || *item == "*" {
            days = [true; 7];
            continue;
        }
        let unknown = |name: &str| format!("'{name}' is not a day: expected {} (or Daily)", DAY_NAMES.join(", "));
        match item.split_once('-') {
            Some((from, to)) => {
                let from_i = day_index(from.trim()).ok_or_else(|| unknown(from.trim()))?;
                let to_i = day_index(to.trim()).ok_or_else(|| unknown(to.trim()))?;
                // A range may wrap around the week's end: Fri-Mon is Fri, Sat, Sun, Mon.
                let mut d = from_i;
                loop {
                    days[d] = true;
                    if d == to_i {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => days[day_index(item).ok_or_else(|| unknown(item))?] = true,
        }
    }
    Ok(days)
}

/// `HH:MM-HH:MM rest` → (start, end, rest), in seconds after midnight.
fn parse_times(text: &str) -> Result<(i64, i64, &str), String> {
    let (start_text, rest) =
        text.split_once('-').ok_or_else(|| format!("'{}' is not a time range: expected HH:MM-HH:MM", text.trim()))?;
    let rest = rest.trim_start();
    let end_len = rest.find(|c: char| !(c.is_ascii_digit() || c == ':')).unwrap_or(rest.len());
    let (end_text, zone) = rest.split_at(end_len);
    let start = parse_time(start_text.trim())?;
    if start == SECS_PER_DAY {
        return Err("a window cannot start at 24:00; write 00:00".into());
    }
    let end = parse_time(end_text)?;
    // 24:00 is the end of the day; as a start-of-next-day it is 00:00 again for the crossing rule.
    Ok((start, if end == SECS_PER_DAY && start == 0 { end } else { end % SECS_PER_DAY }, zone.trim()))
}

fn parse_time(text: &str) -> Result<i64, String> {
    let bad = || format!("'{text}' is not a time of day (H:MM or HH:MM, 00:00 to 24:00)");
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: i64 = h.parse().map_err(|_| bad())?;
    let m: i64 = m.parse().map_err(|_| bad())?;
    if m > 59 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 3600 + m * 60)
}

fn parse_zone(text: &str) -> Result<FixedOffset, String> {
    let upper = text.to_ascii_uppercase();
    let signed = match upper.as_str() {
        "" | "UTC" | "Z" | "GMT" => return Ok(Utc.fix()),
        other => other.strip_prefix("UTC").or_else(|| other.strip_prefix("GMT")).unwrap_or(other),
    };
    let bad = || {
        format!(
            "'{text}' is not a zone keyturn accepts: write UTC or a fixed offset such as +01:00 or UTC-05:30 \
             (named zones change with daylight saving)"
        )
    };
    let (sign, digits) = match signed.chars().next() {
        Some('+') => (1, &signed[1..]),
        Some('-') => (-1, &signed[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = match digits.split_once(':') {
        Some((h, m)) => (h, m),
        None if digits.len() == 4 => digits.split_at(2),
        None => (digits, "0"),
    };
    if h.is_empty() || h.len() > 2 || m.is_empty() || m.len() > 2 {
        return Err(bad());
    }
    let h: i32 = h.parse().map_err(|_| bad())?;
    let m: i32 = m.parse().map_err(|_| bad())?;
    let minutes = h * 60 + m;
    if m > 59 || minutes > MAX_OFFSET_MINUTES {
        return Err(format!("'{text}': an offset is at most 14:00 from UTC"));
    }
    FixedOffset::east_opt(sign * minutes * 60).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    // 2026-12-05 is a Saturday.
    #[test]
    fn the_example_opens_on_saturday_between_two_and_four_utc() {
        let w = RotationWindows::parse("Sat 02:00-04:00 UTC").unwrap();
        assert!(!w.is_open(at("2026-12-05T01:59:59Z")));
        assert!(w.is_open(at("2026-12-05T02:00:00Z")));
        assert!(w.is_open(at("2026-12-05T03:59:59Z")));
        assert!(!w.is_open(at("2026-12-05T04:00:00Z")));
        assert_eq!(w.next_open(at("2026-12-05T04:00:00Z")), at("2026-12-12T02:00:00Z"));
        assert_eq!(w.next_open(at("2026-12-02T10:30:15.5Z")), at("2026-12-05T02:00:00Z"));
        assert_eq!(w.next_open(at("2026-12-05T03:00:00Z")), at("2026-12-05T03:00:00Z"), "open: now");
    }

    #[test]
    fn windows_cross_midnight_and_the_week_end_in_their_own_offset() {
        // Sunday 23:00 to Monday 01:00 at UTC+02:00 is Sunday 21:00 to 23:00 UTC.
        let w = RotationWindows::parse("sun 23:00-01:00 +02:00").unwrap();
        assert!(w.is_open(at("2026-12-06T21:00:00Z")));
        assert!(w.is_open(at("2026-12-06T22:59:00Z")));
        assert!(!w.is_open(at("2026-12-06T23:00:00Z")));
        // A Sunday-night window at UTC-05:00 is open early on Monday UTC.
        let w = RotationWindows::parse("Sunday 22:00-02:00 UTC-5").unwrap();
        assert!(w.is_open(at("2026-12-07T03:00:00Z")), "Sun 22:00 local = Mon 03:00 UTC");
        assert!(w.is_open(at("2026-12-07T06:59:00Z")));
        assert!(!w.is_open(at("2026-12-07T07:00:00Z")));
        assert_eq!(w.next_open(at("2026-12-07T07:00:00Z")), at("2026-12-14T03:00:00Z"));
    }

    #[test]
    fn days_come_as_names_lists_ranges_wrapping_ranges_or_not_at_all() {
        let open_days = |text: &str| RotationWindows::parse(text).unwrap().windows[0].days;
        let t = true;
        let f = false;
        assert_eq!(open_days("Mon-Fri 01:00-02:00"), [t, t, t, t, t, f, f]);
        assert_eq!(open_days("Fri-Mon 01:00-02:00"), [t, f, f, f, t, t, t]);
        assert_eq!(open_days("Tue,Thu 01:00-02:00"), [f, t, f, t, f, f, f]);
        assert_eq!(open_days("Tue, thursday sat 01:00-02:00"), [f, t, f, t, f, t, f]);
        assert_eq!(open_days("01:00-02:00"), [t; 7]);
        assert_eq!(open_days("Daily 00:00-24:00"), [t; 7]);
        assert_eq!(open_days("Sat - Sun 01:00 - 02:00 UTC"), [f, f, f, f, f, t, t]);
        let all_day = RotationWindows::parse("Wed 00:00-24:00").unwrap();
        assert!(all_day.is_open(at("2026-12-02T00:00:00Z")) && all_day.is_open(at("2026-12-02T23:59:59Z")));
        assert!(!all_day.is_open(at("2026-12-03T00:00:00Z")));
    }

    #[test]
    fn several_windows_are_separated_by_semicolons_or_commas() {
        let w = RotationWindows::parse("Sat 02:00-04:00 UTC; Tue,Thu 03:00-05:00 +01:00, Sun 10:00-11:00").unwrap();
        assert_eq!(w.windows.len(), 3);
        assert!(w.is_open(at("2026-12-01T02:30:00Z")), "Tue 03:30 at +01:00");
        assert!(w.is_open(at("2026-12-06T10:30:00Z")));
        assert_eq!(w.next_open(at("2026-12-01T05:00:00Z")), at("2026-12-03T02:00:00Z"), "Thu 03:00 at +01:00");
    }

    #[test]
    fn mistakes_are_named() {
        for (text, expected) in [
            ("", "empty"),
            ("Sat 25:00-04:00", "'25:00' is not a time of day"),
            ("Sat 02:60-04:00", "'02:60' is not a time of day"),
            ("Sat 2-4", "'2' is not a time of day"),
            ("Sat 02:00", "is not a time range"),
            ("Sat 02:00-02:00", "starts and ends at the same time"),
            ("Sat 24:00-02:00", "cannot start at 24:00"),
            ("Caturday 02:00-04:00", "'Caturday' is not a day"),
            ("Mon-Funday 02:00-04:00", "'Funday' is not a day"),
            ("Sat 02:00-04:00 Europe/Paris", "named zones change with daylight saving"),
            ("Sat 02:00-04:00 CET", "'CET' is not a zone"),
            ("Sat 02:00-04:00 +15:00", "at most 14:00"),
            ("Sat 02:00-04:00;;Sun 02:00-04:00", "an empty entry"),
            ("Sat 02:00-04:00, Sun", "days without a time range"),
        ] {
            let error = RotationWindows::parse(text).unwrap_err().to_string();
            assert!(error.starts_with("KeyturnRotationWindow='"), "{error}");
            assert!(error.contains(expected), "{text}: {error}");
        }
        assert_eq!(RotationWindows::for_object(None).unwrap(), None);
        assert_eq!(RotationWindows::for_object(Some(" ")).unwrap(), None);
    }

    #[test]
    fn near_expiry_defers_to_the_window_but_expiry_is_never_waited_for() {
        let w = RotationWindows::parse("Sat 02:00-04:00 UTC").unwrap();
        let wednesday = at("2026-12-02T10:00:00Z");
        let saturday = at("2026-12-05T02:00:00Z");
        assert_eq!(WindowDecision::decide(None, Some(wednesday), wednesday), WindowDecision::Open);
        assert_eq!(WindowDecision::decide(Some(&w), Some(at("2027-01-01T00:00:00Z")), saturday), WindowDecision::Open);
        assert_eq!(
            WindowDecision::decide(Some(&w), Some(at("2027-01-01T00:00:00Z")), wednesday),
            WindowDecision::Deferred { until: saturday }
        );
        assert_eq!(
            WindowDecision::decide(Some(&w), Some(at("2026-12-01T00:00:00Z")), wednesday),
            WindowDecision::Overridden { reason: Override::Expired }
        );
        assert_eq!(
            WindowDecision::decide(Some(&w), Some(at("2026-12-04T12:00:00Z")), wednesday),
            WindowDecision::Overridden { reason: Override::NextWindowAfterExpiry { next_open: saturday } }
        );
        assert_eq!(WindowDecision::decide(Some(&w), None, wednesday), WindowDecision::Deferred { until: saturday });
    }

    /// The examples docs/policy-tags.md gives, with what it says about them.
    #[test]
    fn the_documented_examples_mean_what_the_docs_say() {
        let weekday_nights = RotationWindows::parse("Mon-Fri 22:00-02:00 +01:00").unwrap();
        assert!(weekday_nights.is_open(at("2026-12-04T21:00:00Z")), "Friday 22:00 at +01:00");
        assert!(weekday_nights.is_open(at("2026-12-05T00:59:00Z")), "Friday's runs into Saturday");
        assert!(!weekday_nights.is_open(at("2026-12-05T21:30:00Z")), "not Saturday night");
        let two = RotationWindows::parse("Tue,Thu 03:00-05:00; Sun 00:00-24:00").unwrap();
        assert!(two.is_open(at("2026-12-03T04:00:00Z")) && two.is_open(at("2026-12-06T23:59:00Z")));
        let offset = RotationWindows::parse("01:00-03:00 UTC-05:00").unwrap();
        assert!(offset.is_open(at("2026-12-02T06:00:00Z")) && !offset.is_open(at("2026-12-02T08:00:00Z")));
        let midnight = RotationWindows::parse("Sun 23:00-01:00").unwrap();
        assert!(midnight.is_open(at("2026-12-07T00:30:00Z")), "open until 01:00 on Monday");
        assert_eq!(
            RotationWindows::parse("Sat 25:00-04:00").unwrap_err().to_string(),
            "KeyturnRotationWindow='Sat 25:00-04:00': '25:00' is not a time of day (H:MM or HH:MM, 00:00 to 24:00)"
        );
    }

    /// An independent oracle: the set of open minutes of the week, built by walking each window minute by
    /// minute in UTC, compared with `is_open` and `next_open` at random instants over random windows.
    #[test]
    fn is_open_and_next_open_agree_with_a_minute_by_minute_oracle() {
        let mut rng = fastrand::Rng::with_seed(16);
        let monday = at("2026-11-30T00:00:00Z");
        for case in 0..300 {
            let mut parts = Vec::new();
            let mut oracle = vec![false; 7 * 1440];
            for _ in 0..rng.usize(1..=3) {
                let first = rng.usize(0..7);
                let last = if rng.bool() { first } else { rng.usize(0..7) };
                let start = rng.i64(0..24 * 60);
                let mut end = rng.i64(0..=24 * 60);
                if end == start {
                    end = (start + 1) % (24 * 60);
                }
                let offset_min = rng.i32(-14 * 4..=14 * 4) * 15;
                let sign = if offset_min < 0 { '-' } else { '+' };
                parts.push(format!(
                    "{}-{} {:02}:{:02}-{:02}:{:02} UTC{sign}{:02}:{:02}",
                    DAY_NAMES[first],
                    DAY_NAMES[last],
                    start / 60,
                    start % 60,
                    end / 60,
                    end % 60,
                    offset_min.abs() / 60,
                    offset_min.abs() % 60
                ));
                let length = if end > start { end - start } else { 24 * 60 - start + end };
                let mut d = first;
                loop {
                    let local_start = d as i64 * 1440 + start;
                    for m in 0..length {
                        let utc_minute = (local_start + m - i64::from(offset_min)).rem_euclid(7 * 1440);
                        oracle[utc_minute as usize] = true;
                    }
                    if d == last {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            let text = parts.join("; ");
            let w = RotationWindows::parse(&text).unwrap_or_else(|e| panic!("case {case}: {e}"));
            for _ in 0..40 {
                let minute = rng.i64(0..7 * 1440);
                let now = monday + Duration::minutes(minute) + Duration::seconds(rng.i64(0..60));
                assert_eq!(w.is_open(now), oracle[minute as usize], "case {case} '{text}' at {now}");
                let next = w.next_open(now);
                let expected = (0..=7 * 1440)
                    .map(|k| minute + k)
                    .find(|m| oracle[(m % (7 * 1440)) as usize])
                    .map(|m| if m == minute { now } else { monday + Duration::minutes(m) })
                    .unwrap();
                assert_eq!(next, expected, "case {case} '{text}' from {now}");
            }
        }
    }
}
