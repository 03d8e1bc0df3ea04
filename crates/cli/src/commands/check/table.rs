//! The rows as people and programs read them: the terminal table and the `--json` rows (the HTML page is
//! [`super::report`]).

use chrono::{DateTime, Utc};
use keyturn_rotation::plan::{NEAR_EXPIRY_LEAD_DAYS, near_expiry_at};
use serde_json::{Value, json};

use super::Row;
use crate::output::{self, Output, Tone};

/// "in 29 days", "expired 3 days ago", "never".
pub fn relative(expires: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    let Some(expires) = expires else { return "never".to_owned() };
    let delta = expires - now;
    let span = |d: chrono::Duration| {
        let (n, unit) = if d.num_days().abs() >= 1 {
            (d.num_days().abs(), "day")
        } else if d.num_hours().abs() >= 1 {
            (d.num_hours().abs(), "hour")
        } else {
            (d.num_minutes().abs(), "minute")
        };
        format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
    };
    if delta >= chrono::Duration::zero() {
        format!("in {}", span(delta))
    } else {
        format!("expired {} ago", span(delta))
    }
}

/// `2026-12-05 02:00 UTC`.
pub(super) fn format_time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

pub(super) fn short(version: Option<&str>) -> String {
    version.map_or_else(|| "-".to_owned(), |v| v.chars().take(8).collect())
}

/// The thresholds as JSON: the days and where they came from, or the tag's error.
pub(super) fn thresholds_json(row: &Row, now: DateTime<Utc>) -> Value {
    match &row.thresholds {
        Err(error) => json!({ "error": error.to_string() }),
        Ok(thresholds) => {
            let next = row.expires.and_then(|expires| thresholds.next(expires, now));
            json!({
                "days": thresholds.days(),
                "source": if row.own_thresholds { "tag" } else { "default" },
                "next": next.map(|(days, at)| json!({ "days": days, "at": at.to_rfc3339() })),
            })
        }
    }
}

pub(super) fn row_json(row: &Row, now: DateTime<Utc>) -> Value {
    json!({
        "outcome": row.outcome(),
        "vault": row.vault,
        "kind": row.kind.as_str(),
        "name": row.name,
        "version": row.version,
        "enabled": row.enabled,
        "expires": row.expires.map(|e| e.to_rfc3339()),
        "expiresIn": relative(row.expires, now),
        "policy": row.policy,
        "nearExpiry": row.near_expiry.to_json(),
        "expired": row.expired.to_json(),
        "newVersion": row.new_version.to_json(),
        "thresholds": thresholds_json(row, now),
    })
}

pub(super) fn print_table(output: &Output, rows: &[Row], now: DateTime<Utc>) {
    let cells: Vec<Vec<(String, Option<Tone>)>> = rows
        .iter()
        .map(|r| {
            let expiry_tone = match r.expires {
                Some(e) if e <= now => Some(Tone::Bad),
                Some(e) if near_expiry_at(e) <= now => Some(Tone::Warn),
                _ => None,
            };
            vec![
                (r.vault.clone(), None),
                (r.kind.as_str().to_ascii_lowercase(), None),
                (r.name.clone(), Some(Tone::Strong)),
                (short(r.version.as_deref()), Some(Tone::Dim)),
                (
                    if r.enabled {
                        relative(r.expires, now)
                    } else {
                        format!("{} (disabled)", relative(r.expires, now))
                    },
                    expiry_tone,
                ),
                (r.policy.clone(), None),
                (r.near_expiry.text(), r.near_expiry.tone()),
                (r.expired.text(), r.expired.tone()),
                (r.new_version.text(), r.new_version.tone()),
            ]
        })
        .collect();
    output.line(&output::table(
        output,
        &["VAULT", "KIND", "NAME", "VERSION", "EXPIRES", "POLICY", "NEAR-EXPIRY", "EXPIRED", "NEW-VERSION"],
        &cells,
    ));
    let soon = rows.iter().filter(|r| r.expires.is_some_and(|e| e > now && near_expiry_at(e) <= now)).count();
    let gone = rows.iter().filter(|r| r.expires.is_some_and(|e| e <= now)).count();
    let rejected = rows.iter().filter(|r| r.near_expiry.action == "reject" || r.expired.action == "reject").count();
    output.line(&format!(
        "\n{} objects: {soon} expire within {NEAR_EXPIRY_LEAD_DAYS} days, {gone} expired, {rejected} with a policy problem",
        rows.len()
    ));
}
