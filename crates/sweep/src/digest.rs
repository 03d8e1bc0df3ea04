//! Digests: one sweep's notices for one channel, grouped by vault, object kind and threshold, at most
//! [`MAX_OBJECTS_PER_MESSAGE`] objects per message (IBM Secrets Manager's limit, and what a Slack message or
//! a Teams card still shows legibly). Beyond that the digest is split: 250 objects make three messages.
//!
//! This is data for the renderers (Slack, Teams, email, the signed webhook), not text: each renders a
//! [`Digest`] its own way. Notices carry metadata only, never a secret value.

use std::cmp::Reverse;

use chrono::{DateTime, Utc};
use keyturn_events::ObjectKind;
use keyturn_notify::Severity;

use crate::object::ObjectVersion;

/// At most this many objects in one message.
pub const MAX_OBJECTS_PER_MESSAGE: usize = 100;

/// One object version that crossed a threshold in this sweep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub object: ObjectVersion,
    pub expires: DateTime<Utc>,
    /// Days before expiry; 0 is the expiry itself.
    pub threshold: u32,
    pub severity: Severity,
}

/// Notices of one vault, kind and threshold within one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestGroup {
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

/// One message of a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
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

    /// One line for a subject or a chat title.
    pub fn title(&self) -> String {
        let plural = if self.digest_total == 1 { "" } else { "s" };
        let part = if self.parts > 1 { format!(" (part {} of {})", self.part, self.parts) } else { String::new() };
        format!(
            "[keyturn {}] {} object{plural} reached an expiry threshold{part}",
            self.severity().as_str().to_uppercase(),
            self.digest_total
        )
    }
}

/// Groups `notices` and splits them into messages of at most `max_per_message` objects (at least 1). The same
/// object version and threshold listed twice counts once. No notice, no message.
pub fn digest(mut notices: Vec<Notice>, max_per_message: usize) -> Vec<Digest> {
    let max = max_per_message.max(1);
    let group_key =
        |n: &Notice| (Reverse(n.severity), n.threshold, n.object.vault().to_owned(), n.object.kind().as_str());
    notices.sort_by(|a, b| {
        group_key(a)
            .cmp(&group_key(b))
            .then_with(|| (a.object.name(), a.object.version()).cmp(&(b.object.name(), b.object.version())))
    });
    notices.dedup_by(|a, b| a.object == b.object && a.threshold == b.threshold);
    let total = notices.len();

    // Whole groups first, then cut into messages; a group cut in two says so in the second message.
    let mut groups: Vec<DigestGroup> = Vec::new();
    for notice in notices {
        match groups.last_mut() {
            Some(g)
                if g.vault == notice.object.vault()
                    && g.kind == notice.object.kind()
                    && g.threshold == notice.threshold
                    && g.severity == notice.severity =>
            {
                g.notices.push(notice);
                g.group_total += 1;
            }
            _ => groups.push(DigestGroup {
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
        .map(|(i, groups)| Digest { part: i + 1, parts, groups, digest_total: total })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn notice(vault: &str, kind: ObjectKind, name: &str, threshold: u32, severity: Severity) -> Notice {
        let expires = DateTime::parse_from_rfc3339("2027-03-01T00:00:00Z").unwrap().with_timezone(&Utc);
        Notice {
            object: ObjectVersion::new(vault, kind, name, "v1"),
            expires: expires + Duration::days(i64::from(threshold)),
            threshold,
            severity,
        }
    }

    #[test]
    fn two_hundred_and_fifty_objects_arrive_as_three_messages_of_at_most_a_hundred() {
        let notices: Vec<Notice> =
            (0..250).map(|i| notice("kv1", ObjectKind::Secret, &format!("s{i:03}"), 30, Severity::Warning)).collect();
        let messages = digest(notices, MAX_OBJECTS_PER_MESSAGE);
        assert_eq!(messages.iter().map(Digest::objects).collect::<Vec<_>>(), [100, 100, 50]);
        assert!(messages.iter().all(|m| m.parts == 3 && m.digest_total == 250));
        assert_eq!(messages[2].title(), "[keyturn WARNING] 250 objects reached an expiry threshold (part 3 of 3)");
        assert_eq!((messages[0].groups[0].continued, messages[1].groups[0].continued), (false, true));
        assert_eq!(messages[1].groups[0].group_total, 250);
        assert_eq!(messages[1].groups[0].notices[0].object.name(), "s100", "name order, nothing lost or repeated");
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
        let messages = digest(notices, MAX_OBJECTS_PER_MESSAGE);
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
        assert!(digest(Vec::new(), 100).is_empty());
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
            let messages = digest(notices, limit);
            let counts: Vec<usize> = messages.iter().map(Digest::objects).collect();
            assert_eq!(counts.iter().sum::<usize>(), n);
            assert_eq!(messages.len(), n.div_ceil(limit.max(1)), "{n} objects, limit {limit}");
            assert!(counts.iter().all(|&c| c >= 1 && c <= limit.max(1)));
        }
    }
}
