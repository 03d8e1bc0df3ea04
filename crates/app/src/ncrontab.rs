//! NCRONTAB, the schedule grammar of Azure Functions timer triggers (the sweep's `KEYTURN_SWEEP_SCHEDULE`), as the
//! Functions host reads it: six fields, `{second} {minute} {hour} {day} {month} {day-of-week}`.
//!
//! Each field is `*`, a value, a range `a-b`, a step `*/n`, `a-b/n` or `a/n` (from `a` to the field's last value),
//! or a comma-separated list of those. Months may be named (`Jan`, `January`) and days of the week too (`Mon`,
//! `Monday`); the day of the week runs 0-6 from Sunday. A time matches when every field matches it, the day of
//! the month **and** the day of the week (NCRONTAB, unlike Unix cron, does not take either one). Five-field Unix
//! expressions and the `hh:mm:ss` TimeSpan form (App Service plans only) are refused, as the host refuses them
//! where keyturn deploys. Times are UTC.
//!
//! The Functions host stand-in checks a timer's schedule with [`Schedule::parse`] before it starts (an invalid one
//! keeps the function from being indexed, as on the real host) and runs it with [`Schedule::next_after`].

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, TimeDelta, Timelike, Utc};

/// How far ahead [`Schedule::next_after`] looks: long enough for the rarest schedule that ever fires (a date that
/// falls on one weekday only every 28 years, such as 29 February on a Monday).
const SEARCH_DAYS: i64 = 366 * 30;

/// A parsed NCRONTAB schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    expression: String,
    seconds: Field,
    minutes: Field,
    hours: Field,
    days: Field,
    months: Field,
    weekdays: Field,
}

/// Why an expression is not a schedule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{expression}' is not an NCRONTAB schedule: {reason}")]
pub struct ScheduleError {
    pub expression: String,
    pub reason: String,
}

/// The values one field allows, as a bit set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Field(u64);

impl Field {
    fn contains(self, value: u32) -> bool {
        value < 64 && self.0 & (1 << value) != 0
    }

    /// The first allowed value at or after `from`, up to `last`.
    fn first_from(self, from: u32, last: u32) -> Option<u32> {
        (from..=last).find(|value| self.contains(*value))
    }
}

/// One of the six fields: its name (for errors), its range and the names its values may go by.
struct Kind {
    name: &'static str,
    first: u32,
    last: u32,
    names: &'static [&'static str],
}

const KINDS: [Kind; 6] = [
    Kind { name: "second", first: 0, last: 59, names: &[] },
    Kind { name: "minute", first: 0, last: 59, names: &[] },
    Kind { name: "hour", first: 0, last: 23, names: &[] },
    Kind { name: "day", first: 1, last: 31, names: &[] },
    Kind {
        name: "month",
        first: 1,
        last: 12,
        names: &[
            "january",
            "february",
            "march",
            "april",
            "may",
            "june",
            "july",
            "august",
            "september",
            "october",
            "november",
            "december",
        ],
    },
    Kind {
        name: "day-of-week",
        first: 0,
        last: 6,
        names: &["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"],
    },
];

impl Kind {
    /// A number, or a name (whole, or its first three letters or more), as the field's value.
    fn value(&self, text: &str) -> Result<u32, String> {
        if let Ok(number) = text.parse::<u32>() {
            return if (self.first..=self.last).contains(&number) {
                Ok(number)
            } else {
                Err(format!("{number} is outside {}-{}", self.first, self.last))
            };
        }
        let lower = text.to_ascii_lowercase();
        let named = (lower.len() >= 3).then(|| self.names.iter().position(|name| name.starts_with(&lower))).flatten();
        match named {
            Some(index) => Ok(self.first + u32::try_from(index).unwrap_or_default()),
            None if self.names.is_empty() => Err(format!("'{text}' is not a number")),
            None => Err(format!("'{text}' is neither a number nor a {} name", self.name)),
        }
    }

    fn parse(&self, text: &str) -> Result<Field, String> {
        let mut bits = 0u64;
        for element in text.split(',') {
            let (range, step) = match element.split_once('/') {
                Some((range, step)) => {
                    let step: u32 = step.parse().map_err(|_| format!("step '{step}' is not a number"))?;
                    if step == 0 {
                        return Err("a step of 0".to_owned());
                    }
                    (range, step)
                }
                None => (element, 1),
            };
            let (from, to) = match range {
                "*" => (self.first, self.last),
                _ => match range.split_once('-') {
                    Some((from, to)) => (self.value(from)?, self.value(to)?),
                    // `a/n` runs from `a` to the end; a lone `a` is just `a`.
                    None if step > 1 || element.contains('/') => (self.value(range)?, self.last),
                    None => {
                        let value = self.value(range)?;
                        (value, value)
                    }
                },
            };
            if from > to {
                return Err(format!("range {from}-{to} runs backwards"));
            }
            for value in (from..=to).step_by(step as usize) {
                bits |= 1 << value;
            }
        }
        Ok(Field(bits))
    }
}

impl Schedule {
    /// Parses an NCRONTAB expression (six fields, see the module documentation).
    pub fn parse(expression: &str) -> Result<Self, ScheduleError> {
        let error = |reason: String| ScheduleError { expression: expression.to_owned(), reason };
        let fields: Vec<&str> = expression.split_whitespace().collect();
        if fields.len() != KINDS.len() {
            let hint = if expression.contains(':') && fields.len() == 1 {
                "a TimeSpan (hh:mm:ss) runs only on an App Service plan; "
            } else {
                ""
            };
            return Err(error(format!(
                "it has {} field(s); {hint}Azure Functions timers take six: {{second}} {{minute}} {{hour}} {{day}} \
                 {{month}} {{day-of-week}}, e.g. \"0 0 * * * *\" (hourly) or \"0 30 2 * * Sat\"",
                fields.len()
            )));
        }
        let mut parsed = [Field(0); 6];
        for ((slot, kind), text) in parsed.iter_mut().zip(&KINDS).zip(&fields) {
            *slot = kind.parse(text).map_err(|reason| error(format!("the {} field '{text}': {reason}", kind.name)))?;
        }
        let [seconds, minutes, hours, days, months, weekdays] = parsed;
        Ok(Self { expression: expression.to_owned(), seconds, minutes, hours, days, months, weekdays })
    }

    /// The expression as written.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The first time strictly after `after` that the schedule fires (whole seconds, UTC); `None` when it never
    /// fires (a date no month has, such as 31 February).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // The next whole second after `after`.
        let start = after.with_nanosecond(0)? + TimeDelta::seconds(1);
        let mut date = start.date_naive();
        let mut from = Some(start.time());
        for _ in 0..SEARCH_DAYS {
            if self.runs_on(date)
                && let Some(time) = self.first_time(from)
            {
                return Some(date.and_time(time).and_utc());
            }
            date = date.succ_opt()?;
            from = None;
        }
        None
    }

    fn runs_on(&self, date: NaiveDate) -> bool {
        self.days.contains(date.day())
            && self.months.contains(date.month())
            && self.weekdays.contains(date.weekday().num_days_from_sunday())
    }

    /// The first time of day the schedule fires at or after `from` (any time of the day when `None`).
    fn first_time(&self, from: Option<NaiveTime>) -> Option<NaiveTime> {
        let (h0, m0, s0) = from.map_or((0, 0, 0), |t| (t.hour(), t.minute(), t.second()));
        let mut hour = self.hours.first_from(h0, 23);
        while let Some(h) = hour {
            let mut minute = self.minutes.first_from(if h == h0 { m0 } else { 0 }, 59);
            while let Some(m) = minute {
                let second_floor = if (h, m) == (h0, m0) { s0 } else { 0 };
                if let Some(second) = self.seconds.first_from(second_floor, 59) {
                    return NaiveTime::from_hms_opt(h, m, second);
                }
                minute = self.minutes.first_from(m + 1, 59);
            }
            hour = self.hours.first_from(h + 1, 23);
        }
        None
    }
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(expression: &str) -> Result<Self, Self::Err> {
        Self::parse(expression)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expression)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn next(expression: &str, after: &str) -> Option<String> {
        Schedule::parse(expression).unwrap().next_after(at(after)).map(|t| t.to_rfc3339())
    }

    #[test]
    fn the_default_sweep_schedule_fires_at_the_top_of_every_hour() {
        assert_eq!(next("0 0 * * * *", "2026-12-02T19:47:09Z").as_deref(), Some("2026-12-02T20:00:00+00:00"));
        // Strictly after: a time on the schedule gives the next one.
        assert_eq!(next("0 0 * * * *", "2026-12-02T20:00:00Z").as_deref(), Some("2026-12-02T21:00:00+00:00"));
        assert_eq!(next("0 0 * * * *", "2026-12-31T23:30:00Z").as_deref(), Some("2027-01-01T00:00:00+00:00"));
    }

    #[test]
    fn steps_ranges_lists_and_names() {
        assert_eq!(next("*/15 * * * * *", "2026-12-02T10:00:14.5Z").as_deref(), Some("2026-12-02T10:00:15+00:00"));
        assert_eq!(next("*/15 * * * * *", "2026-12-02T10:00:45Z").as_deref(), Some("2026-12-02T10:01:00+00:00"));
        assert_eq!(next("0 5/20 * * * *", "2026-12-02T10:46:00Z").as_deref(), Some("2026-12-02T11:05:00+00:00"));
        assert_eq!(next("0 0 9-17/4 * * *", "2026-12-02T13:00:01Z").as_deref(), Some("2026-12-02T17:00:00+00:00"));
        assert_eq!(next("0 30 2,14 * * *", "2026-12-02T03:00:00Z").as_deref(), Some("2026-12-02T14:30:00+00:00"));
        // 2026-12-05 is a Saturday.
        assert_eq!(next("0 30 2 * * Sat", "2026-12-02T03:00:00Z").as_deref(), Some("2026-12-05T02:30:00+00:00"));
        assert_eq!(next("0 30 2 * * saturday", "2026-12-02T03:00:00Z").as_deref(), Some("2026-12-05T02:30:00+00:00"));
        assert_eq!(next("0 0 0 1 Jan,Jul *", "2026-12-02T00:00:00Z").as_deref(), Some("2027-01-01T00:00:00+00:00"));
        assert_eq!(next("0 0 0 * * 1-5", "2026-12-04T12:00:00Z").as_deref(), Some("2026-12-07T00:00:00+00:00"));
    }

    #[test]
    fn day_and_day_of_week_must_both_match_and_month_ends_are_respected() {
        // The 13th that is a Friday: 2027-08-13.
        assert_eq!(next("0 0 0 13 * 5", "2026-12-02T00:00:00Z").as_deref(), Some("2027-08-13T00:00:00+00:00"));
        // The 31st skips months without one; 29 February waits for a leap year.
        assert_eq!(next("0 0 0 31 * *", "2027-04-01T00:00:00Z").as_deref(), Some("2027-05-31T00:00:00+00:00"));
        assert_eq!(next("0 0 0 29 2 *", "2026-12-02T00:00:00Z").as_deref(), Some("2028-02-29T00:00:00+00:00"));
        // 29 February on a Monday: 2044.
        assert_eq!(next("0 0 0 29 Feb Mon", "2026-12-02T00:00:00Z").as_deref(), Some("2044-02-29T00:00:00+00:00"));
        // A date no month has: never.
        assert_eq!(next("0 0 0 31 2 *", "2026-12-02T00:00:00Z"), None);
    }

    #[test]
    fn what_the_host_refuses_is_refused_with_the_field_named() {
        let refused = |expression: &str| Schedule::parse(expression).unwrap_err().to_string();
        let five = refused("0 * * * *");
        assert!(five.contains("it has 5 field(s)") && five.contains("take six"), "{five}");
        let span = refused("00:05:00");
        assert!(span.contains("TimeSpan (hh:mm:ss) runs only on an App Service plan"), "{span}");
        assert!(refused("0 0 25 * * *").contains("the hour field '25': 25 is outside 0-23"));
        assert!(refused("0 0 * 0 * *").contains("the day field '0': 0 is outside 1-31"));
        assert!(refused("0 0 * * * 7").contains("the day-of-week field '7': 7 is outside 0-6"));
        assert!(refused("0 */0 * * * *").contains("a step of 0"));
        assert!(refused("0 0 * * Foo *").contains("'Foo' is neither a number nor a month name"));
        assert!(refused("0 0 5-2 * * *").contains("range 5-2 runs backwards"));
        assert!(refused("x 0 * * * *").contains("the second field 'x': 'x' is not a number"));
        assert!(refused("").contains("it has 0 field(s)"));
    }
}
