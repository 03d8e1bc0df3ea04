//! What the handlers answered, read from the one-line decision each writes to the invocation's `Logs`
//! (`done: ...`, `skipped: ...`, `rejected: ...`). The only place the demo reads handler text: when the
//! handlers return typed outcomes, this module reads their fields instead and nothing else changes.

use keyturn_local::functions_host::InvocationRecord;

use super::vault::{Seeded, object_label};
use super::{MIRROR, VAULT};

/// One handler's answer to one invocation.
#[derive(Debug, Clone)]
pub(super) struct Answer {
    pub(super) function: String,
    pub(super) subject: Option<String>,
    /// The handler's one-line decision, or why the invocation failed (`failed: ...`; Event Grid retries
    /// those).
    pub(super) text: String,
}

/// The answers in these invocation records, one per `Logs` line (a failed invocation has one of its own).
pub(super) fn answers(records: impl IntoIterator<Item = InvocationRecord>) -> Vec<Answer> {
    records
        .into_iter()
        .flat_map(|record| {
            let texts = match &record.result {
                Ok(response) => response.logs.clone(),
                Err(error) => vec![format!("failed: {error}")],
            };
            texts.into_iter().map(move |text| Answer {
                function: record.function.clone(),
                subject: record.subject.clone(),
                text,
            })
        })
        .collect()
}

/// How a handler declined to act: `skipped` (nothing to do, or not its to do) or `rejected` (can never
/// succeed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Declined {
    Skipped,
    Rejected,
}

impl Answer {
    /// Whether and how the handler declined, and its reason.
    pub(super) fn declined(&self) -> Option<(Declined, &str)> {
        if let Some(rest) = self.text.strip_prefix("skipped: ") {
            Some((Declined::Skipped, rest))
        } else if let Some(rest) = self.text.strip_prefix("rejected: ") {
            Some((Declined::Rejected, rest))
        } else {
            None
        }
    }

    /// Whether the answer is about `vault/name`.
    pub(super) fn mentions(&self, vault: &str, name: &str) -> bool {
        self.text.contains(&format!("{vault}/{name}"))
    }
}

/// The seeded object a handler's answer names (`secret kv-demo/name`), and the answer without the name when
/// it leads (`kv-demo/name not opted in ...` → `not opted in ...`).
pub(super) fn answer_object(seeded: &[Seeded], answer: &str) -> Option<(String, String)> {
    for object in seeded {
        for vault in [VAULT, MIRROR] {
            let target = format!("{vault}/{}", object.name);
            let Some(at) = answer.find(&target) else { continue };
            let after = &answer[at + target.len()..];
            // `kv-demo/db-password` must not match `kv-demo/db-password-old`.
            if after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-') {
                continue;
            }
            // Leading: at the start, or after the kind (`secret kv-demo/name: ...`).
            let leads = at == 0 || answer[..at].trim_end().eq_ignore_ascii_case(object.kind.lower());
            let why = if leads { after.trim_start_matches(':').trim_start() } else { answer };
            return Some((object_label(object.kind, vault, object.name), why.to_owned()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::vault::Expect;
    use super::*;
    use keyturn_local::keyvault::ObjectKind;

    #[test]
    fn answers_name_their_object_once() {
        let seeded = [Seeded {
            kind: ObjectKind::Secret,
            name: "partner-sftp-password",
            version: "v1".into(),
            expect: Expect::Manual,
            mirrored: false,
        }];
        let (object, why) = answer_object(
            &seeded,
            "kv-demo/partner-sftp-password not opted in (tag KeyturnRotation absent or off): manual rotation due",
        )
        .unwrap();
        assert_eq!(object, "secret kv-demo/partner-sftp-password");
        assert_eq!(why, "not opted in (tag KeyturnRotation absent or off): manual rotation due");
        let (_, why) = answer_object(&seeded, "secret kv-mirror/partner-sftp-password: refused").unwrap();
        assert_eq!(why, "refused");
        let inside = "the event is about kv-demo/partner-sftp-password, not ours";
        assert_eq!(answer_object(&seeded, inside).unwrap().1, inside);
        assert_eq!(answer_object(&seeded, "kv-demo/partner-sftp-password-old is not seeded"), None);
        assert_eq!(answer_object(&seeded, "something else entirely"), None);
    }

    #[test]
    fn declined_answers_are_told_apart_from_done_ones() {
        let answer = |text: &str| Answer { function: "near-expiry".into(), subject: None, text: text.into() };
        assert_eq!(answer("skipped: kv-demo/x not ours").declined(), Some((Declined::Skipped, "kv-demo/x not ours")));
        assert_eq!(answer("rejected: bad").declined(), Some((Declined::Rejected, "bad")));
        assert_eq!(answer("done: rotated kv-demo/x").declined(), None);
        assert!(answer("done: rotated kv-demo/x").mentions(VAULT, "x"));
    }
}
