//! The story: the clock moves, the canary gets a new version, and the demo waits until what should have
//! happened has happened and nothing is in flight; then what is missing, if anything.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use keyturn_local::keyvault::store::AttributeInput;
use keyturn_local::keyvault::{SecretSpec, StoredKind, VaultStore};
use keyturn_local::receivers::{HttpSink, Received};
use keyturn_local::stack::LocalStack;
use keyturn_rotation::policy::{self, CANARY_RESULT, REPLICA_OF, ROTATED_FROM};

use super::answers::{Answer, Declined, answers};
use super::report::short;
use super::vault::{Expect, Seeded, latest, tags, versions};
use super::{CANARY, JUMP_DAYS, MIRROR, QUIET, VAULT};
use crate::commands::dev::Running;
use crate::output::Output;

/// The clock's dates and the canary version the demo wrote.
#[derive(Debug, Clone)]
pub(super) struct Timeline {
    pub(super) today: DateTime<Utc>,
    pub(super) moved_to: DateTime<Utc>,
    pub(super) canary_version: Option<String>,
    /// Stages that ran out of time (what is missing is then in the report).
    pub(super) timed_out: Vec<&'static str>,
}

/// What the demo looks at while it runs.
pub(super) struct Stage<'a> {
    pub(super) stack: &'a LocalStack,
    pub(super) running: &'a [Running],
    pub(super) sink: &'a HttpSink,
    pub(super) seeded: &'a [Seeded],
    pub(super) output: &'a Output,
    pub(super) timeout: Duration,
}

/// Everything observable at one moment.
pub(super) struct Observed<'a> {
    pub(super) store: &'a VaultStore,
    pub(super) seeded: &'a [Seeded],
    pub(super) answers: Vec<Answer>,
    pub(super) received: Vec<Received>,
    pub(super) attempts: Vec<keyturn_local::eventgrid::Attempt>,
    pub(super) dead_letters: Vec<keyturn_local::eventgrid::DeadLetter>,
    pub(super) canary_version: Option<&'a str>,
}

impl Stage<'_> {
    pub(super) async fn play(&self) -> Timeline {
        let clock = self.stack.emulator().clock();
        let today = clock.now();
        let mut timed_out = Vec::new();
        clock.advance(Duration::from_secs(u64::from(JUMP_DAYS) * 86_400));
        let moved_to = clock.now();
        self.output.status(&format!(
            "moved the clock {JUMP_DAYS} days ({} → {}): Event Grid sends NearExpiry and Expired events",
            today.format("%Y-%m-%d"),
            moved_to.format("%Y-%m-%d")
        ));
        if !self.wait("rotations and notifications", |observed| observed.expiry_missing().is_empty()).await {
            timed_out.push("rotations and notifications");
        }

        let spec = SecretSpec {
            value: uuid::Uuid::new_v4().simple().to_string(),
            content_type: Some("text/plain".to_owned()),
            attributes: AttributeInput::default(),
            tags: tags(&[("owner", "platform")]),
        };
        let canary_version = match self.stack.emulator().store().set_secret(VAULT, CANARY, spec) {
            Ok(view) => Some(view.version.version),
            Err(error) => {
                self.output.warn(&format!("writing a new version of the canary {VAULT}/{CANARY}: {error}"));
                None
            }
        };
        if let Some(version) = &canary_version {
            self.output.status(&format!(
                "wrote version {} of the canary {VAULT}/{CANARY}: test-event checks the whole path",
                short(version)
            ));
            let version = version.clone();
            let verdict = move |observed: &Observed<'_>| canary_verdict(observed.store, &version).is_some();
            if !self.wait("the canary check", verdict).await {
                timed_out.push("the canary check");
            }
        }
        Timeline { today, moved_to, canary_version, timed_out }
    }

    /// Waits until `done` holds, Event Grid has nothing in flight and nothing has happened for [`QUIET`];
    /// false when the stage's time runs out first. Progress goes to stderr as it changes.
    pub(super) async fn wait(&self, what: &str, done: impl Fn(&Observed<'_>) -> bool) -> bool {
        let started = Instant::now();
        let mut last_activity = (0, 0, 0);
        let mut last_change = Instant::now();
        let mut last_report = Instant::now();
        loop {
            let observed = self.observe(None);
            let activity = (observed.attempts.len(), observed.answers.len(), observed.received.len());
            if activity != last_activity {
                last_activity = activity;
                last_change = Instant::now();
            }
            if done(&observed) && last_change.elapsed() >= QUIET && self.stack.grid().settled(Duration::ZERO).await {
                return true;
            }
            if started.elapsed() >= self.timeout {
                self.output.warn(&format!("{what}: still incomplete after {} s", self.timeout.as_secs()));
                return false;
            }
            if last_report.elapsed() >= Duration::from_secs(1) {
                last_report = Instant::now();
                self.output.status(&format!(
                    "{what}: {} deliveries, {} handler answers, {} notifications so far",
                    activity.0, activity.1, activity.2
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(super) fn observe<'s>(&'s self, canary_version: Option<&'s str>) -> Observed<'s> {
        let answers = answers(self.running.iter().flat_map(|r| r.host.invocations()));
        Observed {
            store: self.stack.emulator().store(),
            seeded: self.seeded,
            answers,
            received: self.sink.received(),
            attempts: self.stack.grid().attempts(),
            dead_letters: self.stack.grid().dead_letters(),
            canary_version,
        }
    }
}

/// The verdict test-event recorded on a canary version, if any yet.
pub(super) fn canary_verdict(store: &VaultStore, version: &str) -> Option<String> {
    let versions = versions(store, StoredKind::Secret, VAULT, CANARY);
    let found = versions.into_iter().find(|v| v.id == version)?;
    policy::tag(&found.tags, CANARY_RESULT).map(str::to_owned)
}

impl Observed<'_> {
    /// The notifications that arrived with a valid signature.
    pub(super) fn notifications(&self) -> impl Iterator<Item = &Received> {
        self.received.iter().filter(|r| r.accepted())
    }

    pub(super) fn notified(&self, vault: &str, name: &str, matches: impl Fn(&Received) -> bool) -> bool {
        self.notifications().any(|n| {
            n.field("/object/vault") == vault && n.field("/object/name").eq_ignore_ascii_case(name) && matches(n)
        })
    }

    /// What the clock's move should have caused and has not (yet).
    pub(super) fn expiry_missing(&self) -> Vec<String> {
        let mut missing = Vec::new();
        for seeded in self.seeded {
            let label = seeded.label();
            match seeded.expect {
                Expect::Rotated => {
                    let Some(now) = latest(self.store, seeded.kind, VAULT, seeded.name) else {
                        missing.push(format!("{label} is gone"));
                        continue;
                    };
                    if now.id == seeded.version {
                        missing.push(format!("{label} was not rotated (near-expiry)"));
                        continue;
                    }
                    // keyturn's provenance on a secret it rotated (keys and certificates get theirs from Key Vault).
                    let from = policy::tag(&now.tags, ROTATED_FROM);
                    if seeded.kind == StoredKind::Secret && from != Some(seeded.version.as_str()) {
                        missing.push(format!("{label}'s new version has {ROTATED_FROM}={}", from.unwrap_or("(none)")));
                    }
                    if !self.notified(VAULT, seeded.name, |n| is_near_expiry(n) && n.field("/severity") == "info") {
                        missing.push(format!("no notification that {label} was rotated (near-expiry)"));
                    }
                    if !self.notified(VAULT, seeded.name, |n| is_new_version(n, &now.id)) {
                        missing.push(format!("no notification of {label}'s new version (new-version)"));
                    }
                    if seeded.mirrored {
                        missing.extend(self.mirror_missing(seeded, &now.id));
                    }
                }
                Expect::Manual => {
                    if !self.answers.iter().any(|a| a.function == "near-expiry" && a.mentions(VAULT, seeded.name)) {
                        missing.push(format!("near-expiry did not answer about {label}"));
                    }
                    if !self.notified(VAULT, seeded.name, |n| is_near_expiry(n) && n.field("/severity") == "warning") {
                        missing.push(format!("no warning that {label} needs a manual rotation (near-expiry)"));
                    }
                }
                Expect::Alarm => {
                    if !self.notified(VAULT, seeded.name, |n| n.field("/severity") == "critical") {
                        missing.push(format!("no critical notification about the expired {label} (expired)"));
                    }
                }
                Expect::Canary => {}
            }
        }
        missing
    }

    /// The mirror's copy of `source_version`, and its own notification.
    pub(super) fn mirror_missing(&self, seeded: &Seeded, source_version: &str) -> Vec<String> {
        let replica_of = format!("{VAULT}/{}/{source_version}", seeded.name);
        let copy = latest(self.store, seeded.kind, MIRROR, seeded.name)
            .filter(|copy| policy::tag(&copy.tags, REPLICA_OF) == Some(replica_of.as_str()));
        match copy {
            None => vec![format!("{} was not copied to {MIRROR} (new-version)", seeded.label())],
            Some(copy) if !self.notified(MIRROR, seeded.name, |n| is_new_version(n, &copy.id)) => {
                vec![format!("no notification of the copy in {MIRROR}/{} (new-version)", seeded.name)]
            }
            Some(_) => Vec::new(),
        }
    }

    /// What the canary stage should have caused and has not.
    pub(super) fn canary_missing(&self) -> Vec<String> {
        let Some(version) = self.canary_version else {
            return vec![format!("no new version of the canary {VAULT}/{CANARY} was written")];
        };
        match canary_verdict(self.store, version) {
            Some(verdict) if verdict.starts_with("pass") => Vec::new(),
            Some(verdict) => vec![format!("the canary check failed: {CANARY_RESULT}={verdict}")],
            None => vec![format!("test-event recorded no verdict on the canary version {}", short(version))],
        }
    }

    /// Everything that did not go as it should: the expected effects, plus no dead letter, no rejected
    /// event and no badly signed notification.
    pub(super) fn missing(&self) -> Vec<String> {
        let mut missing = self.expiry_missing();
        missing.extend(self.canary_missing());
        for letter in &self.dead_letters {
            missing.push(format!(
                "an event for {} was dead-lettered: {} after {} attempt(s) ({})",
                letter.subscription, letter.dead_letter_reason, letter.delivery_attempts, letter.last_delivery_outcome
            ));
        }
        for answer in self.answers.iter().filter(|a| matches!(a.declined(), Some((Declined::Rejected, _)))) {
            missing.push(format!("{} {}", answer.function, answer.text()));
        }
        for request in &self.received {
            if let Err(reason) = &request.verdict {
                missing.push(format!("a notification was refused by the receiver: {reason}"));
            }
        }
        missing
    }
}

pub(super) fn is_near_expiry(notification: &Received) -> bool {
    notification.field("/event_type").ends_with("NearExpiry")
}

pub(super) fn is_new_version(notification: &Received, version: &str) -> bool {
    notification.field("/event_type").ends_with("NewVersionCreated") && notification.field("/object/version") == version
}
