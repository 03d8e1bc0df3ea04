//! The report: one table of what was rotated, mirrored, notified (and where) and skipped (and why), the
//! canary's verdict, and a summary of deliveries and what was stopped.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::DateTime;
use keyturn_local::keyvault::StoredKind;
use keyturn_local::receivers::{HttpSink, Received};
use keyturn_rotation::policy::{self, REPLICA_OF};

use super::answers::Declined;
use super::stage::{Observed, Timeline, canary_verdict};
use super::vault::{Expect, latest, object_label};
use super::{CANARY, JUMP_DAYS, MIRROR, VAULT};
use crate::output::{self, Output, Tone};

/// The final table's rows and what did not happen.
#[derive(Debug)]
pub(super) struct Report {
    pub(super) rows: Vec<Vec<(String, Option<Tone>)>>,
    pub(super) missing: Vec<String>,
    /// Distinct events delivered, and how many of them needed more than one attempt.
    pub(super) events: usize,
    pub(super) retried: usize,
    pub(super) dead_lettered: usize,
    pub(super) notifications: usize,
    pub(super) channel: String,
}

impl Report {
    pub(super) fn new(observed: &Observed<'_>, sink: &HttpSink, timeline: &Timeline) -> Self {
        let mut rows = Vec::new();
        let row = |result: &str, tone: Tone, object: String, detail: String| {
            vec![(result.to_owned(), Some(tone)), (object, None), (detail, None)]
        };

        for seeded in observed.seeded.iter().filter(|s| s.expect == Expect::Rotated) {
            let Some(now) = latest(observed.store, seeded.kind, VAULT, seeded.name) else { continue };
            if now.id == seeded.version {
                continue;
            }
            let result = if seeded.kind == StoredKind::Certificate { "renewed" } else { "rotated" };
            rows.push(row(
                result,
                Tone::Good,
                seeded.label(),
                format!("{} → {}, {}", short(&seeded.version), short(&now.id), expiry(now.exp)),
            ));
        }
        for seeded in observed.seeded.iter().filter(|s| s.mirrored) {
            let Some(copy) = latest(observed.store, seeded.kind, MIRROR, seeded.name) else { continue };
            let Some(source) = policy::tag(&copy.tags, REPLICA_OF) else { continue };
            let source_version = source.rsplit('/').next().unwrap_or_default();
            rows.push(row(
                "mirrored",
                Tone::Good,
                object_label(seeded.kind, MIRROR, seeded.name),
                format!("copy of {VAULT}/{} {} ({REPLICA_OF})", seeded.name, short(source_version)),
            ));
        }

        let mut seen = BTreeSet::new();
        let mut notified: Vec<&Received> = observed
            .notifications()
            // A redelivered event may notify twice; receivers deduplicate on the event id, so does the table.
            .filter(|n| seen.insert((n.field("/event_id").to_owned(), n.field("/event_type").to_owned())))
            .collect();
        // Most severe first; an object's notifications together, in the order they arrived.
        notified
            .sort_by_key(|n| (severity_rank(n.field("/severity")), n.field("/object/vault"), n.field("/object/name")));
        for notification in notified {
            let severity = notification.field("/severity");
            let tone = match severity {
                "critical" => Tone::Bad,
                "warning" => Tone::Warn,
                _ => Tone::Dim,
            };
            let kind = notification.field("/object/kind").to_ascii_lowercase();
            let object =
                format!("{kind} {}/{}", notification.field("/object/vault"), notification.field("/object/name"));
            let mut detail = format!("{severity} → webhook {}: {}", sink.addr.ip(), notification.field("/headline"));
            if notification.field("/action/type") == "rotated" {
                detail.push_str(&format!(", rotated to {}", short(notification.field("/action/new_version"))));
            }
            rows.push(row("notified", tone, object, detail));
        }

        let mut said = BTreeSet::new();
        for answer in &observed.answers {
            let (result, tone, rest) = match answer.declined() {
                Some((Declined::Skipped, rest)) => ("skipped", Tone::Warn, rest),
                Some((Declined::Rejected, rest)) => ("rejected", Tone::Bad, rest),
                Some((Declined::Deferred, rest)) => ("deferred", Tone::Warn, rest),
                None => continue,
            };
            // A duplicate delivery gets the same answer twice.
            if !said.insert((answer.function.as_str(), answer.text())) {
                continue;
            }
            let (object, why) = answer
                .object_and_why()
                .unwrap_or_else(|| (answer.subject.clone().unwrap_or_default(), rest.to_owned()));
            rows.push(row(result, tone, object, format!("{}: {why}", answer.function)));
        }

        let canary = object_label(StoredKind::Secret, VAULT, CANARY);
        match timeline.canary_version.as_deref().map(|v| (v, canary_verdict(observed.store, v))) {
            Some((version, Some(verdict))) => rows.push(row(
                "canary",
                if verdict.starts_with("pass") { Tone::Good } else { Tone::Bad },
                canary,
                format!("{verdict} (test-event, recorded on version {})", short(version)),
            )),
            Some((version, None)) => {
                rows.push(row("canary", Tone::Bad, canary, format!("no verdict on version {}", short(version))));
            }
            None => rows.push(row("canary", Tone::Bad, canary, "no new version written".to_owned())),
        }

        let mut events: BTreeMap<&str, u32> = BTreeMap::new();
        for attempt in &observed.attempts {
            for id in &attempt.event_ids {
                let most = events.entry(id.as_str()).or_default();
                *most = (*most).max(attempt.attempt);
            }
        }
        Self {
            rows,
            missing: observed.missing(),
            events: events.len(),
            retried: events.values().filter(|attempts| **attempts > 1).count(),
            dead_lettered: observed.dead_letters.len(),
            notifications: observed.notifications().count(),
            channel: format!("webhook {}", sink.addr),
        }
    }

    pub(super) fn print(
        &self,
        output: &Output,
        timeline: &Timeline,
        pids: &[(&str, u32)],
        survivors: &[String],
        elapsed: Duration,
    ) {
        let mut lines = vec![
            output.paint(Tone::Strong, "keyturn demo: what happened"),
            String::new(),
            output::table(output, &["RESULT", "OBJECT", "DETAIL"], &self.rows),
            String::new(),
            format!(
                "clock moved {JUMP_DAYS} days, {} → {} (rotated secrets' expiries count from real time, the \
                 handlers' clock; keys' and certificates' from the vault's)",
                timeline.today.format("%Y-%m-%d"),
                timeline.moved_to.format("%Y-%m-%d")
            ),
            format!(
                "{} events delivered to {} handlers ({} retried), {} dead-lettered; {} notifications to {}, signatures valid",
                self.events,
                pids.len(),
                self.retried,
                self.dead_lettered,
                self.notifications,
                self.channel
            ),
        ];
        let stopped = pids.iter().map(|(name, pid)| format!("{name} (pid {pid})")).collect::<Vec<_>>().join(", ");
        if survivors.is_empty() {
            lines.push(format!("nothing left running: stopped {stopped}; the stack is down"));
        } else {
            lines.push(output.paint(Tone::Bad, &format!("STILL RUNNING: {}", survivors.join(", "))));
        }
        for stage in &timeline.timed_out {
            lines.push(output.paint(Tone::Warn, &format!("{stage}: did not finish in time")));
        }
        let verdict = if self.missing.is_empty() && survivors.is_empty() {
            output.paint(Tone::Good, "every expected step happened")
        } else {
            output.paint(Tone::Bad, "some expected steps did not happen (see below)")
        };
        lines.push(format!("{verdict}; finished in {:.1} s", elapsed.as_secs_f64()));
        output.line(&lines.join("\n"));
    }
}

pub(super) fn severity_rank(severity: &str) -> u8 {
    match severity {
        "critical" => 0,
        "warning" => 1,
        _ => 2,
    }
}

/// A version id as people quote it: the first 8 characters.
pub(super) fn short(version: &str) -> &str {
    version.get(..8).unwrap_or(version)
}

pub(super) fn expiry(exp: Option<i64>) -> String {
    match exp.and_then(|exp| DateTime::from_timestamp(exp, 0)) {
        Some(exp) => format!("expires {}", exp.format("%Y-%m-%d %H:%M UTC")),
        None => "no expiry".to_owned(),
    }
}
