//! Which thresholds have fired, durably: each threshold fires once per object version, across sweeps,
//! restarts and sweeps running at the same time.
//!
//! Firing is two steps, so a notice that could not be delivered is not lost:
//! 1. [`ThresholdStore::claim`]: exactly one sweep gets [`Claim::Claimed`]; every other gets
//!    [`Claim::AlreadyFired`] or [`Claim::InProgress`].
//! 2. After delivery, [`ThresholdStore::complete`] marks it fired for good; after a failed delivery,
//!    [`ThresholdStore::release`] gives it back so a later sweep sends it (a paging channel that is down
//!    gets the page on a later sweep).
//!
//! A sweep that dies between the two steps leaves a claim behind; once it is older than the store's claim
//! lifetime another sweep may take it over (again exactly one wins). A notice may then go out twice (the
//! dead sweep may have delivered before dying): at-least-once, never zero, and every notice carries the
//! object version so receivers (PagerDuty's `dedup_key`, Opsgenie's alias) fold the duplicates.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Duration, Utc};
use futures::future::BoxFuture;

use crate::object::ObjectVersion;
use crate::thresholds::{Due, Escalation, Thresholds};

/// How long a claim holds before another sweep may take it over: longer than any function invocation
/// (the Consumption plan's longest `functionTimeout` is 10 minutes), so a live sweep never loses its claim.
pub const DEFAULT_CLAIM_LIFETIME: Duration = Duration::minutes(15);

/// What a claim is about: one threshold of one object version, optionally for one channel; or one
/// dead-letter blob, which the sweep reports and re-drives once ([`ThresholdKey::dead_letter`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ThresholdKey {
    /// The record's name in the store.
    path: String,
    /// What it is about, for messages: `7-day threshold of Secret kv1/db version 0f26...`.
    described: String,
}

/// The prefix of dead-letter records: `_` cannot begin a vault name, so they never meet a threshold's path.
const DEAD_LETTER_PREFIX: &str = "_dead-letters/";

impl ThresholdKey {
    pub fn new(object: ObjectVersion, threshold: u32) -> Self {
        Self {
            path: format!("{}/{threshold}d", object.path()),
            described: format!("{threshold}-day threshold of {object}"),
        }
    }

    /// The same threshold, claimed for `channel` (a stable name such as `c2-slack`: letters, digits, `-`).
    pub fn on_channel(mut self, channel: &str) -> Self {
        self.path = format!("{}/{channel}", self.path);
        self.described = format!("{} for {channel}", self.described);
        self
    }

    /// The dead-letter blob `blob` (its name in the dead-letter container): claimed by the one sweep that
    /// reports it and re-drives what it holds, completed once that is done.
    pub fn dead_letter(blob: &str) -> Self {
        Self { path: format!("{DEAD_LETTER_PREFIX}{blob}"), described: format!("dead letter {blob}") }
    }

    /// `<vault>/<kind>/<name>/<version>/<threshold>d[/<channel>]`, or `_dead-letters/<blob>`: the record's
    /// name in the store.
    pub fn path(&self) -> String {
        self.path.clone()
    }
}

impl fmt::Display for ThresholdKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.described)
    }
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This sweep owns the threshold now: send, then [`ThresholdStore::complete`] or
    /// [`ThresholdStore::release`].
    Claimed(ClaimToken),
    /// It fired already (`at`, by `sweep`): nothing to send.
    AlreadyFired { at: DateTime<Utc>, sweep: String },
    /// Another sweep claimed it at `since` and has not finished: not ours.
    InProgress { since: DateTime<Utc>, sweep: String },
}

/// Proof of a claim: the record's version (its ETag) when this sweep wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimToken {
    pub key: ThresholdKey,
    /// This claim replaced a stale one left by a sweep that did not finish.
    pub taken_over: bool,
    pub(crate) etag: String,
}

/// The store could not answer. Retryable: the next sweep asks again, and nothing was sent meanwhile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("threshold state for {key}: {message}")]
    Backend { key: String, message: String },
    /// Completing found the record changed: the claim outlived its lifetime and another sweep took it over.
    #[error(
        "threshold state for {key}: the claim was taken over by another sweep before it completed (it \
         outlived the claim lifetime); the notice may be sent twice"
    )]
    ClaimLost { key: String },
}

/// Durable, shared threshold state. `now` is the sweep's clock (the local stack moves it).
pub trait ThresholdStore: Send + Sync + fmt::Debug {
    /// Claims `key` for the sweep `sweep_id`.
    fn claim<'a>(
        &'a self,
        key: &'a ThresholdKey,
        sweep_id: &'a str,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Claim, StateError>>;

    /// Marks a claimed threshold as fired for good.
    fn complete<'a>(&'a self, token: &'a ClaimToken, now: DateTime<Utc>) -> BoxFuture<'a, Result<(), StateError>>;

    /// Gives a claim back (its notice was not delivered), so a later sweep claims it again. A claim that
    /// another sweep took over meanwhile is left alone.
    fn release<'a>(&'a self, token: &'a ClaimToken) -> BoxFuture<'a, Result<(), StateError>>;
}

/// The threshold due for one object version at `now`, claimed for the sweep `sweep_id`: `Some` when this
/// sweep must send its notice (then [`ThresholdStore::complete`] or [`ThresholdStore::release`] the token);
/// `None` when no threshold is due, or it fired already, or another sweep is sending it.
pub async fn claim_due(
    store: &dyn ThresholdStore,
    object: &ObjectVersion,
    expires: DateTime<Utc>,
    thresholds: &Thresholds,
    escalation: &Escalation,
    sweep_id: &str,
    now: DateTime<Utc>,
) -> Result<Option<(Due, ClaimToken)>, StateError> {
    let Some(due) = thresholds.due(expires, now, escalation) else { return Ok(None) };
    let key = ThresholdKey::new(object.clone(), due.threshold);
    match store.claim(&key, sweep_id, now).await? {
        Claim::Claimed(token) => Ok(Some((due, token))),
        Claim::AlreadyFired { .. } | Claim::InProgress { .. } => Ok(None),
    }
}

/// A record's two states, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Claimed,
    Fired,
}

impl Phase {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Claimed => "claimed",
            Self::Fired => "fired",
        }
    }
    pub(crate) fn parse(text: &str) -> Option<Self> {
        [Self::Claimed, Self::Fired].into_iter().find(|p| p.as_str() == text)
    }
}

/// What a claim attempt should do given the record found: shared by both stores so they decide alike.
pub(crate) fn judge(
    phase: Phase,
    at: DateTime<Utc>,
    sweep: String,
    now: DateTime<Utc>,
    lifetime: Duration,
) -> Option<Claim> {
    match phase {
        Phase::Fired => Some(Claim::AlreadyFired { at, sweep }),
        Phase::Claimed if now < at + lifetime => Some(Claim::InProgress { since: at, sweep }),
        // Stale: the caller may take it over.
        Phase::Claimed => None,
    }
}

#[derive(Debug, Clone)]
struct Record {
    phase: Phase,
    at: DateTime<Utc>,
    sweep: String,
    etag: u64,
}

/// Threshold state in this process's memory, for unit tests and single-process runs: it forgets everything
/// on restart.
#[derive(Debug)]
pub struct MemoryThresholdStore {
    lifetime: Duration,
    // A std Mutex: held for a map lookup and never across an await.
    records: Mutex<(u64, HashMap<String, Record>)>,
}

impl Default for MemoryThresholdStore {
    fn default() -> Self {
        Self::new(DEFAULT_CLAIM_LIFETIME)
    }
}

impl MemoryThresholdStore {
    pub fn new(claim_lifetime: Duration) -> Self {
        Self { lifetime: claim_lifetime, records: Mutex::new((0, HashMap::new())) }
    }

    fn with<T>(&self, f: impl FnOnce(&mut u64, &mut HashMap<String, Record>) -> T) -> T {
        // Every change is one insert or remove: a panic elsewhere cannot leave a record half-written.
        let mut guard = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        let (counter, map) = &mut *guard;
        f(counter, map)
    }
}

impl ThresholdStore for MemoryThresholdStore {
    fn claim<'a>(
        &'a self,
        key: &'a ThresholdKey,
        sweep_id: &'a str,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Claim, StateError>> {
        let result = self.with(|counter, map| {
            let taken_over = match map.get(&key.path()) {
                Some(r) => match judge(r.phase, r.at, r.sweep.clone(), now, self.lifetime) {
                    Some(answer) => return answer,
                    None => true,
                },
                None => false,
            };
            *counter += 1;
            let record = Record { phase: Phase::Claimed, at: now, sweep: sweep_id.to_owned(), etag: *counter };
            map.insert(key.path(), record);
            Claim::Claimed(ClaimToken { key: key.clone(), taken_over, etag: counter.to_string() })
        });
        Box::pin(async move { Ok(result) })
    }

    fn complete<'a>(&'a self, token: &'a ClaimToken, now: DateTime<Utc>) -> BoxFuture<'a, Result<(), StateError>> {
        let result = self.with(|counter, map| match map.get_mut(&token.key.path()) {
            Some(r) if r.etag.to_string() == token.etag => {
                *counter += 1;
                *r = Record { phase: Phase::Fired, at: now, sweep: r.sweep.clone(), etag: *counter };
                Ok(())
            }
            _ => Err(StateError::ClaimLost { key: token.key.path() }),
        });
        Box::pin(async move { result })
    }

    fn release<'a>(&'a self, token: &'a ClaimToken) -> BoxFuture<'a, Result<(), StateError>> {
        self.with(|_, map| {
            if map.get(&token.key.path()).is_some_and(|r| r.etag.to_string() == token.etag) {
                map.remove(&token.key.path());
            }
        });
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyturn_events::ObjectKind;

    fn key(threshold: u32) -> ThresholdKey {
        ThresholdKey::new(ObjectVersion::new("kv1", ObjectKind::Secret, "db", "v1"), threshold)
    }

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2027-01-01T00:00:00Z").unwrap().with_timezone(&Utc)
    }

    /// Months of sweeps every six hours, two at a time, over objects that get rotated, with deliveries that
    /// sometimes fail: every threshold notice goes out once per object version, in order, and an object
    /// that expires always gets its expiry notice.
    #[tokio::test]
    async fn over_months_of_overlapping_sweeps_each_threshold_fires_once_per_version() {
        use std::collections::HashMap;
        let mut rng = fastrand::Rng::with_seed(12);
        let store = MemoryThresholdStore::default();
        let escalation = Escalation::default();
        let start = t0();
        /// (name, current version, expiry, thresholds, rotated at)
        type Simulated = (String, u32, DateTime<Utc>, Thresholds, Option<DateTime<Utc>>);
        let mut objects: Vec<Simulated> = (0..40)
            .map(|i| {
                let thresholds =
                    if i % 3 == 0 { Thresholds::parse("45,10,2,0", "test").unwrap() } else { Thresholds::default() };
                let expires = start + Duration::hours(rng.i64(24 * 5..24 * 100));
                let rotate = (i % 4 == 0).then(|| expires - Duration::days(rng.i64(1..20)));
                (format!("secret-{i}"), 1, expires, thresholds, rotate)
            })
            .collect();
        let mut sent: HashMap<(String, u32), Vec<u32>> = HashMap::new();
        let mut now = start;
        while now < start + Duration::days(130) {
            for (name, version, expires, thresholds, rotate) in objects.iter_mut() {
                if rotate.is_some_and(|at| now >= at) {
                    *version += 1;
                    *expires = now + Duration::days(90);
                    *rotate = None;
                }
                let object = ObjectVersion::new("kv1", ObjectKind::Secret, name, &format!("v{version}"));
                // Two sweeps at once: both claim before either finishes.
                let a = claim_due(&store, &object, *expires, thresholds, &escalation, "a", now).await.unwrap();
                let b = claim_due(&store, &object, *expires, thresholds, &escalation, "b", now).await.unwrap();
                assert!(a.is_none() || b.is_none(), "two sweeps claimed {object} at {now}");
                for (due, token) in a.into_iter().chain(b) {
                    if rng.u8(0..10) == 0 {
                        store.release(&token).await.unwrap(); // the channel was down
                        continue;
                    }
                    store.complete(&token, now).await.unwrap();
                    sent.entry((name.clone(), *version)).or_default().push(due.threshold);
                }
            }
            now += Duration::hours(6);
        }
        for ((name, version), thresholds) in &sent {
            let mut sorted = thresholds.clone();
            sorted.sort_unstable_by(|x, y| y.cmp(x));
            sorted.dedup();
            assert_eq!(&sorted, thresholds, "{name} v{version}: each once, largest first");
        }
        for (name, version, _, _, _) in &objects {
            if *version == 1 {
                // Never rotated and long expired by the end: its expiry notice went out exactly once.
                assert_eq!(sent[&(name.clone(), 1)].last(), Some(&0), "{name}");
            }
        }
        assert!(sent.keys().any(|(_, v)| *v == 2), "rotated objects start again from their new version");
    }

    #[tokio::test]
    async fn a_threshold_is_claimed_once_and_fires_once() {
        let store = MemoryThresholdStore::default();
        let Claim::Claimed(token) = store.claim(&key(7), "s1", t0()).await.unwrap() else { panic!("first claim") };
        assert!(!token.taken_over);
        let other = store.claim(&key(7), "s2", t0()).await.unwrap();
        assert_eq!(other, Claim::InProgress { since: t0(), sweep: "s1".into() });
        assert!(matches!(store.claim(&key(14), "s2", t0()).await.unwrap(), Claim::Claimed(_)), "another threshold");
        store.complete(&token, t0() + Duration::seconds(5)).await.unwrap();
        let later = store.claim(&key(7), "s3", t0() + Duration::days(400)).await.unwrap();
        assert_eq!(later, Claim::AlreadyFired { at: t0() + Duration::seconds(5), sweep: "s1".into() });
        assert_eq!(key(7).path(), "kv1/secret/db/v1/7d");
        assert_eq!(key(7).to_string(), "7-day threshold of Secret kv1/db version v1");
        let letter = ThresholdKey::dead_letter("T/SUB/2026/12/2/16/a.json");
        assert_eq!(
            (letter.path().as_str(), letter.to_string()),
            ("_dead-letters/T/SUB/2026/12/2/16/a.json", "dead letter T/SUB/2026/12/2/16/a.json".into())
        );
        assert!(
            matches!(store.claim(&letter, "s2", t0()).await.unwrap(), Claim::Claimed(_)),
            "a dead letter is claimed like a threshold"
        );
        assert_eq!(key(7).on_channel("c2-slack").path(), "kv1/secret/db/v1/7d/c2-slack");
        let slack = store.claim(&key(7).on_channel("c2-slack"), "s4", t0()).await.unwrap();
        assert!(matches!(slack, Claim::Claimed(_)), "each channel's claim is its own");
    }

    #[tokio::test]
    async fn a_released_claim_is_sent_by_a_later_sweep_and_a_stale_one_is_taken_over_once() {
        let store = MemoryThresholdStore::new(Duration::minutes(15));
        let Claim::Claimed(token) = store.claim(&key(0), "s1", t0()).await.unwrap() else { panic!() };
        store.release(&token).await.unwrap();
        let Claim::Claimed(retry) = store.claim(&key(0), "s2", t0()).await.unwrap() else { panic!("released") };

        // s2 dies holding it; after the lifetime, one sweep takes over and s2's late completion is refused.
        let late = t0() + Duration::minutes(16);
        let Claim::Claimed(taken) = store.claim(&key(0), "s3", late).await.unwrap() else { panic!("stale") };
        assert!(taken.taken_over);
        assert!(matches!(store.claim(&key(0), "s4", late).await.unwrap(), Claim::InProgress { .. }));
        assert_eq!(store.complete(&retry, late).await, Err(StateError::ClaimLost { key: key(0).path() }));
        store.release(&retry).await.unwrap(); // not its claim any more: left alone
        store.complete(&taken, late).await.unwrap();
        assert!(matches!(store.claim(&key(0), "s5", late).await.unwrap(), Claim::AlreadyFired { .. }));
    }
}
