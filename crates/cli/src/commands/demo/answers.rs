//! What the handlers answered, read from the typed outcome each returns in the invocation's `ReturnValue`
//! (docs/handlers.md): its status, the object it was about, its message. The demo never parses the `Logs`
//! line; the message is shown as the handler wrote it, less the object's name when that leads it (the
//! report names the object in a column of its own).

use keyturn_host::{Outcome, Status};
use keyturn_local::functions_host::InvocationRecord;

/// One handler's answer to one invocation.
#[derive(Debug, Clone)]
pub(super) struct Answer {
    pub(super) function: String,
    pub(super) subject: Option<String>,
    /// The handler's typed outcome, or why the invocation failed (Event Grid retries those) or why its answer
    /// held no outcome.
    pub(super) outcome: Result<Outcome, String>,
}

/// The answers in these invocation records, one per invocation.
pub(super) fn answers(records: impl IntoIterator<Item = InvocationRecord>) -> Vec<Answer> {
    records
        .into_iter()
        .map(|record| {
            let outcome = match &record.result {
                Ok(response) => Outcome::from_return_value(&response.return_value)
                    .ok_or_else(|| format!("answered without an outcome: {}", response.return_value)),
                Err(error) => Err(error.to_string()),
            };
            Answer { function: record.function, subject: record.subject, outcome }
        })
        .collect()
}

/// How a handler declined to act: `skipped` (nothing to do, or not its to do) or `rejected` (can never
/// succeed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Declined {
    Skipped,
    Rejected,
    /// Nothing done yet: the work waits for a time the message names (a rotation window).
    Deferred,
}

impl Answer {
    /// Whether and how the handler declined, and its message.
    pub(super) fn declined(&self) -> Option<(Declined, &str)> {
        let outcome = self.outcome.as_ref().ok()?;
        match outcome.status {
            Status::Skipped => Some((Declined::Skipped, outcome.message())),
            Status::Rejected => Some((Declined::Rejected, outcome.message())),
            Status::Deferred => Some((Declined::Deferred, outcome.message())),
            Status::Done => None,
        }
    }

    /// Whether the answer is about `vault/name` (the outcome's object, any version).
    pub(super) fn mentions(&self, vault: &str, name: &str) -> bool {
        self.object().is_some_and(|object| object.vault() == vault && object.name() == name)
    }

    /// The answer in one line, as the `Logs` line reads (`rejected: ...`), or `failed: <why>`.
    pub(super) fn text(&self) -> String {
        match &self.outcome {
            Ok(outcome) => outcome.log_line(),
            Err(error) => format!("failed: {error}"),
        }
    }

    fn object(&self) -> Option<&keyturn_events::ObjectRef> {
        self.outcome.as_ref().ok()?.object.as_ref()
    }

    /// The object the outcome is about (`secret kv-demo/name`), and its message without the object's name
    /// when that leads it (`kv-demo/name not opted in ...` → `not opted in ...`).
    pub(super) fn object_and_why(&self) -> Option<(String, String)> {
        let object = self.object()?;
        let message = self.outcome.as_ref().ok()?.message();
        let kind = object.kind().as_str().to_ascii_lowercase();
        let target = format!("{}/{}", object.vault(), object.name());
        let why = [format!("{kind} {target}"), target.clone()]
            .iter()
            .find_map(|lead| message.strip_prefix(lead.as_str()))
            // `kv-demo/db-password` must not be taken off `kv-demo/db-password-old`.
            .filter(|rest| !rest.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-'))
            .map(|rest| rest.trim_start_matches(':').trim_start())
            .unwrap_or(message);
        Some((format!("{kind} {target}"), why.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyturn_events::{ObjectKind, ObjectRef};

    fn answer(outcome: Outcome) -> Answer {
        Answer { function: "near-expiry".into(), subject: None, outcome: Ok(outcome) }
    }

    fn about(name: &str) -> ObjectRef {
        ObjectRef::new("kv-demo", ObjectKind::Secret, name, "v1").unwrap()
    }

    #[test]
    fn answers_name_their_object_once() {
        let object = about("partner-sftp-password");
        let leading = answer(
            Outcome::skipped(
                "kv-demo/partner-sftp-password not opted in (tag KeyturnRotation absent or off): manual rotation due",
            )
            .about(&object),
        );
        let (label, why) = leading.object_and_why().unwrap();
        assert_eq!(label, "secret kv-demo/partner-sftp-password");
        assert_eq!(why, "not opted in (tag KeyturnRotation absent or off): manual rotation due");
        let kind_first = answer(Outcome::rejected("secret kv-demo/partner-sftp-password: refused").about(&object));
        assert_eq!(kind_first.object_and_why().unwrap().1, "refused");
        let inside = "the event is about kv-demo/partner-sftp-password, not ours";
        assert_eq!(answer(Outcome::skipped(inside).about(&object)).object_and_why().unwrap().1, inside);
        let longer = "kv-demo/partner-sftp-password-old is not seeded";
        assert_eq!(answer(Outcome::skipped(longer).about(&object)).object_and_why().unwrap().1, longer);
        // No object in the outcome: nothing is guessed from its text.
        assert_eq!(answer(Outcome::skipped("kv-demo/partner-sftp-password")).object_and_why(), None);
    }

    #[test]
    fn declined_answers_are_told_apart_from_done_ones() {
        let x = about("x");
        assert_eq!(
            answer(Outcome::skipped("kv-demo/x not ours")).declined(),
            Some((Declined::Skipped, "kv-demo/x not ours"))
        );
        let rejected = answer(Outcome::rejected("bad"));
        assert_eq!(rejected.declined(), Some((Declined::Rejected, "bad")));
        assert_eq!(rejected.text(), "rejected: bad");
        let done = answer(Outcome::done("rotated kv-demo/x").about(&x));
        assert_eq!(done.declined(), None);
        assert!(done.mentions("kv-demo", "x"));
        assert!(!done.mentions("kv-mirror", "x"));
        // Text that names the object is not an outcome about it.
        assert!(!answer(Outcome::done("rotated kv-demo/x")).mentions("kv-demo", "x"));
        let failed = Answer { function: "expired".into(), subject: None, outcome: Err("timed out".into()) };
        assert_eq!((failed.declined(), failed.text()), (None, "failed: timed out".to_owned()));
    }
}
