//! Digests: one sweep's notices for one channel, grouped by vault, object kind and threshold, at most
//! [`MAX_OBJECTS_PER_MESSAGE`] objects per message (IBM Secrets Manager's limit, and what a Slack message or
//! a Teams card still shows legibly). Beyond that the digest is split: 250 objects make three messages.
//!
//! Besides thresholds, a digest lists what the sweep itself did or could not do about a missed event
//! ([`Section`]): objects it rotated because their near-expiry event was lost or dead-lettered, and
//! dead-lettered events it did not re-drive, with why.
//!
//! A [`Digest`] is data; each channel renders it its own way (Slack, Teams and email in `render`, the signed
//! webhook's JSON here in [`Digest::to_json`]), the same facts in each. Notices carry metadata only, never
//! a secret value. Pagers take no digests: they page one object version at a time.

use std::cmp::Reverse;

use chrono::{DateTime, Utc};
use keyturn_events::{ObjectKind, ObjectRef};
use serde_json::{Value, json};

use crate::message::{Severity, rfc3339};

/// At most this many objects in one message.
pub const MAX_OBJECTS_PER_MESSAGE: usize = 100;

/// Why an object version is in a digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Section {
    /// It reached a threshold (days before expiry).
    #[default]
    Threshold,
    /// The sweep rotated it this pass: its near-expiry event was lost, or dead-lettered and re-driven.
    Repaired,
    /// Its event was dead-lettered and the sweep did not re-drive it: the notice's `plan` says why.
    DeadLettered,
}

impl Section {
    /// As the webhook's digest JSON names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Threshold => "threshold",
            Self::Repaired => "repaired",
            Self::DeadLettered => "dead-lettered",
        }
    }
}

/// One object version that crossed a threshold in this sweep, or that the sweep repaired, or whose
/// dead-lettered event it reports ([`Section`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub object: ObjectRef,
    pub expires: DateTime<Utc>,
    /// Days before expiry; 0 is the expiry itself.
    pub threshold: u32,
    pub severity: Severity,
    /// What keyturn will do about it, in a few words (e.g. `keyturn rotates it 30 days before expiry`,
    /// `manual action due: no rotation policy`); for a repair, what the sweep did; for a dead letter not
    /// re-driven, why.
    pub plan: String,
    pub section: Section,
}

impl Notice {
    /// One line for a list: `db-password (version 0f264706) expires 2027-01-01 12:00 UTC: <plan>`.
    pub fn line(&self) -> String {
        let version: String = self.object.version().chars().take(8).collect();
        let when = if self.expires <= Utc::now() { "expired" } else { "expires" };
        format!(
            "{} (version {version}) {when} {}: {}",
            self.object.name(),
            self.expires.format("%Y-%m-%d %H:%M UTC"),
            self.plan
        )
    }
}

/// Notices of one section, vault, kind and threshold within one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestGroup {
    pub section: Section,
    pub vault: String,
    pub kind: ObjectKind,
    pub threshold: u32,
    pub severity: Severity,
    /// In name order.
    pub notices: Vec<Notice>,
    /// How many objects the whole group has, across messages.
    pub group_total: usize,
    /// The group started in an earlier message of this digest.
    pub continued: bool,
}

impl DigestGroup {
    /// The group's heading: `kv1 · Secrets · 14 days before expiry (100 of 250, continued)`.
    pub fn heading(&self) -> String {
        let kind = self.kind.collection().map_or_else(|| self.kind.to_string(), capitalized);
        let threshold = match (self.section, self.threshold) {
            (Section::Repaired, _) => "rotated by the sweep (missed near-expiry event)".to_owned(),
            (Section::DeadLettered, _) => "dead-lettered events not re-driven".to_owned(),
            (Section::Threshold, 0) => "at expiry".to_owned(),
            (Section::Threshold, 1) => "1 day before expiry".to_owned(),
            (Section::Threshold, days) => format!("{days} days before expiry"),
        };
        let count = if self.notices.len() == self.group_total {
            String::new()
        } else {
            let continued = if self.continued { ", continued" } else { "" };
            format!(" ({} of {}{continued})", self.notices.len(), self.group_total)
        };
        format!("{} · {kind} · {threshold}{count}", self.vault)
    }
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map(|first| first.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
}

/// One message of a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    /// This message's id: the digest's id and the part, e.g. `sweep-...-c2-part1of3`. The webhook's and the
    /// email's `X-Keyturn-Event-Id`: a receiver deduplicates on it.
    pub id: String,
    /// From 1.
    pub part: usize,
    pub parts: usize,
    /// Most urgent first: by severity, then threshold, vault, kind.
    pub groups: Vec<DigestGroup>,
    /// Objects in the whole digest, across messages.
    pub digest_total: usize,
}

impl Digest {
    /// Objects in this message.
    pub fn objects(&self) -> usize {
        self.groups.iter().map(|g| g.notices.len()).sum()
    }

    /// The highest severity in this message, for routing and colour.
    pub fn severity(&self) -> Severity {
        self.groups.iter().map(|g| g.severity).max().unwrap_or(Severity::Info)
    }

    /// The signed webhook's JSON body (docs/notifications.md, "Digest payload").
    pub fn to_json(&self) -> Value {
        let groups: Vec<Value> = self
            .groups
            .iter()
            .map(|g| {
                let objects: Vec<Value> = g
                    .notices
                    .iter()
                    .map(|n| {
                        json!({"name": n.object.name(), "version": n.object.version(),
                               "expires": rfc3339(n.expires), "plan": n.plan})
                    })
                    .collect();
                json!({"section": g.section.as_str(), "vault": g.vault, "kind": g.kind.as_str(), "threshold_days": g.threshold,
                       "severity": g.severity.as_str(), "group_total": g.group_total, "continued": g.continued,
                       "objects": objects})
            })
            .collect();
        json!({
            "type": "keyturn.digest",
            "schema_version": 1,
            "digest_id": self.id,
            "severity": self.severity().as_str(),
            "title": self.title(),
            "part": self.part,
            "parts": self.parts,
            "objects": self.objects(),
            "digest_total": self.digest_total,
            "groups": groups,
        })
    }

    /// One line for a subject or a chat title.
    pub fn title(&self) -> String {
        let plural = if self.digest_total == 1 { "" } else { "s" };
        let part = if self.parts > 1 { format!(" (part {} of {})", self.part, self.parts) } else { String::new() };
        let what = if self.groups.iter().all(|g| g.section == Section::Threshold) {
            "reached an expiry threshold"
        } else {
            "reached an expiry threshold, were repaired or dead-lettered"
        };
        format!(
            "[keyturn {}] {} object{plural} {what}{part}",
            self.severity().as_str().to_uppercase(),
            self.digest_total
        )
    }
}

/// Groups `notices` and splits them into messages of at most `max_per_message` objects (at least 1), each
/// with an id made from `id` and its part. The same object version and threshold listed twice counts once.
/// No notice, no message.
pub fn digest(mut notices: Vec<Notice>, max_per_message: usize, id: &str) -> Vec<Digest> {
    let max = max_per_message.max(1);
    let group_key = |n: &Notice| {
        (Reverse(n.severity), n.section, n.threshold, n.object.vault().to_owned(), n.object.kind().as_str())
    };
    notices.sort_by(|a, b| {
        group_key(a)
            .cmp(&group_key(b))
            .then_with(|| (a.object.name(), a.object.version()).cmp(&(b.object.name(), b.object.version())))
    });
    notices.dedup_by(|a, b| a.object == b.object && a.threshold == b.threshold && a.section == b.section);
    let total = notices.len();

    // Whole groups first, then cut into messages; a group cut in two says so in the second message.
    let mut groups: Vec<DigestGroup> = Vec::new();
    for notice in notices {
        match groups.last_mut() {
            Some(g)
                if g.section == notice.section
                    && g.vault == notice.object.vault()
                    && g.kind == notice.object.kind()
                    && g.threshold == notice.threshold
                    && g.severity == notice.severity =>
            {
                g.notices.push(notice);
                g.group_total += 1;
            }
            _ => groups.push(DigestGroup {
                section: notice.section,
                vault: notice.object.vault().to_owned(),
                kind: notice.object.kind(),
                threshold: notice.threshold,
                severity: notice.severity,
                notices: vec![notice],
                group_total: 1,
                continued: false,
            }),
        }
    }

    let mut messages: Vec<Vec<DigestGroup>> = Vec::new();
    let mut room = 0;
    for mut group in groups {
        while !group.notices.is_empty() {
            if room == 0 {
                messages.push(Vec::new());
                room = max;
            }
            let rest = if group.notices.len() > room { group.notices.split_off(room) } else { Vec::new() };
            room -= group.notices.len();
            let next = DigestGroup { notices: rest, continued: true, ..group.clone() };
            if let Some(message) = messages.last_mut() {
                message.push(DigestGroup { notices: std::mem::take(&mut group.notices), ..group.clone() });
            }
            group = next;
        }
    }
    let parts = messages.len();
    messages
        .into_iter()
        .enumerate()
        .map(|(i, groups)| Digest {
            id: format!("{id}-part{}of{parts}", i + 1),
            part: i + 1,
            parts,
            groups,
            digest_total: total,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn notice(vault: &str, kind: ObjectKind, name: &str, threshold: u32, severity: Severity) -> Notice {
        let expires = DateTime::parse_from_rfc3339("2027-03-01T00:00:00Z").unwrap().with_timezone(&Utc);
        Notice {
            object: ObjectRef::new(vault, kind, name, "v1").unwrap(),
            expires: expires + Duration::days(i64::from(threshold)),
            threshold,
            severity,
            plan: "manual action due".into(),
            section: Section::Threshold,
        }
    }

    #[test]
    fn two_hundred_and_fifty_objects_arrive_as_three_messages_of_at_most_a_hundred() {
        let notices: Vec<Notice> =
            (0..250).map(|i| notice("kv1", ObjectKind::Secret, &format!("s{i:03}"), 30, Severity::Warning)).collect();
        let messages = digest(notices, MAX_OBJECTS_PER_MESSAGE, "d");
        assert_eq!(messages.iter().map(Digest::objects).collect::<Vec<_>>(), [100, 100, 50]);
        assert!(messages.iter().all(|m| m.parts == 3 && m.digest_total == 250));
        assert_eq!(messages[2].title(), "[keyturn WARNING] 250 objects reached an expiry threshold (part 3 of 3)");
        assert_eq!((messages[0].groups[0].continued, messages[1].groups[0].continued), (false, true));
        assert_eq!(messages[1].groups[0].group_total, 250);
        assert_eq!(messages[1].groups[0].notices[0].object.name(), "s100", "name order, nothing lost or repeated");
        assert_eq!(messages[1].groups[0].heading(), "kv1 · Secrets · 30 days before expiry (100 of 250, continued)");
        assert_eq!(messages[1].id, "d-part2of3");
        let json = messages[2].to_json();
        assert_eq!(
            (json["part"].as_u64(), json["objects"].as_u64(), json["digest_total"].as_u64()),
            (Some(3), Some(50), Some(250))
        );
        assert_eq!(json["groups"][0]["objects"][0]["name"], "s200");
        assert_eq!(json["groups"][0]["threshold_days"], 30);
    }

    #[test]
    fn notices_are_grouped_by_vault_kind_and_threshold_most_urgent_first() {
        let notices = vec![
            notice("kv2", ObjectKind::Key, "k1", 60, Severity::Info),
            notice("kv1", ObjectKind::Secret, "b", 7, Severity::Critical),
            notice("kv1", ObjectKind::Secret, "a", 7, Severity::Critical),
            notice("kv1", ObjectKind::Certificate, "c", 7, Severity::Critical),
            notice("kv1", ObjectKind::Secret, "a", 7, Severity::Critical), // listed twice
            notice("kv1", ObjectKind::Secret, "z", 30, Severity::Warning),
            notice("kv1", ObjectKind::Secret, "x", 0, Severity::Critical),
        ];
        let messages = digest(notices, MAX_OBJECTS_PER_MESSAGE, "d");
        assert_eq!(messages.len(), 1);
        let m = &messages[0];
        let groups: Vec<(&str, &str, u32, usize)> =
            m.groups.iter().map(|g| (g.vault.as_str(), g.kind.as_str(), g.threshold, g.notices.len())).collect();
        assert_eq!(
            groups,
            [
                ("kv1", "Secret", 0, 1),
                ("kv1", "Certificate", 7, 1),
                ("kv1", "Secret", 7, 2),
                ("kv1", "Secret", 30, 1),
                ("kv2", "Key", 60, 1)
            ]
        );
        assert_eq!((m.objects(), m.digest_total, m.severity()), (6, 6, Severity::Critical));
        assert_eq!(m.title(), "[keyturn CRITICAL] 6 objects reached an expiry threshold");
        assert!(digest(Vec::new(), 100, "d").is_empty());
    }

    #[test]
    fn repairs_and_dead_letters_not_re_driven_have_their_own_groups() {
        let threshold = notice("kv1", ObjectKind::Secret, "db", 30, Severity::Info);
        let repaired = Notice {
            plan: "rotated from v1 to v2: its near-expiry event was dead-lettered".into(),
            section: Section::Repaired,
            ..threshold.clone()
        };
        let dead = Notice {
            object: ObjectRef::new("kv1", ObjectKind::Secret, "api", "v7").unwrap(),
            plan: "not re-driven: already rotated to v8".into(),
            section: Section::DeadLettered,
            ..threshold.clone()
        };
        let messages = digest(vec![dead, threshold, repaired], MAX_OBJECTS_PER_MESSAGE, "d");
        let m = &messages[0];
        let headings: Vec<String> = m.groups.iter().map(DigestGroup::heading).collect();
        assert_eq!(
            headings,
            [
                "kv1 · Secrets · 30 days before expiry",
                "kv1 · Secrets · rotated by the sweep (missed near-expiry event)",
                "kv1 · Secrets · dead-lettered events not re-driven"
            ],
            "the same object version as a threshold and as a repair is listed in both"
        );
        assert_eq!(m.title(), "[keyturn INFO] 3 objects reached an expiry threshold, were repaired or dead-lettered");
        assert_eq!(m.to_json()["groups"][1]["section"], "repaired");
        assert!(m.groups[2].notices[0].line().ends_with("not re-driven: already rotated to v8"));
    }

    #[test]
    fn every_object_lands_in_exactly_one_message_whatever_the_limit() {
        let mut rng = fastrand::Rng::with_seed(100);
        for _ in 0..200 {
            let n = rng.usize(0..400);
            let limit = rng.usize(0..130);
            let notices: Vec<Notice> = (0..n)
                .map(|i| {
                    let threshold = [60, 30, 7, 0][rng.usize(0..4)];
                    let kind = [ObjectKind::Secret, ObjectKind::Key, ObjectKind::Certificate][rng.usize(0..3)];
                    notice(&format!("kv{}", rng.usize(0..3)), kind, &format!("o{i}"), threshold, Severity::Info)
                })
                .collect();
            let messages = digest(notices, limit, "d");
            let counts: Vec<usize> = messages.iter().map(Digest::objects).collect();
            assert_eq!(counts.iter().sum::<usize>(), n);
            assert_eq!(messages.len(), n.div_ceil(limit.max(1)), "{n} objects, limit {limit}");
            assert!(counts.iter().all(|&c| c >= 1 && c <= limit.max(1)));
        }
    }
}
