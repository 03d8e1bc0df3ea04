//! Pacing Key Vault requests below the service's throttling limits, so a sweep over thousands of objects, or a
//! burst of near-expiry events served by one process, loses nothing to 429s (Key Vault sends no `Retry-After`; a
//! throttled client can only guess) and still runs close to the fastest the limits allow.
//!
//! Key Vault counts requests per vault per 10 seconds, in separate classes ([`OperationClass`]): 300 secret
//! creates, 20 (software RSA-2048) key creates, 4,000 "other" secret or key operations (reads, lists, updates);
//! per subscription at five times that. The service's windows are its own, not aligned with ours, so a limiter
//! of "N per window" that resets could still send up to 2N into one of the service's windows. Instead each
//! limit is a GCRA (a token bucket kept as one time): a steady `headroom` share of the rate with a small burst,
//! so **any** 10-second interval holds at most `headroom × N + burst + 1` requests, which stays under N; and a
//! sweep takes `1 / headroom` of the minimum time (5 % more at the default 0.95).
//!
//! [`Pacer`] is one limit's schedule per vault (the sweep holds one); [`VaultPacing`] is the process's schedules
//! of every class, which [`crate::AzureKeyVault`] takes a turn from before each request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// A service limit: `requests` per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub requests: u32,
    pub per: Duration,
}

/// The limits one sweep paces itself to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PacerLimits {
    pub per_vault: RateLimit,
    /// Across every vault of the subscription; `None` when the vaults are in different subscriptions.
    pub per_subscription: Option<RateLimit>,
    /// The share of each limit used, 0 < headroom <= 1: the room left for other clients of the same vault
    /// and for the arrival jitter of requests.
    pub headroom: f64,
    /// Requests that may go at once before pacing starts.
    pub burst: u32,
}

impl PacerLimits {
    /// Key Vault's published limits for reads, lists and updates (secrets, keys, certificates): 4,000 per
    /// vault per 10 s, 20,000 per subscription; 95 % of them, with a burst of 20.
    pub fn key_vault() -> Self {
        let ten_seconds = Duration::from_secs(10);
        Self {
            per_vault: RateLimit { requests: 4000, per: ten_seconds },
            per_subscription: Some(RateLimit { requests: 20_000, per: ten_seconds }),
            headroom: 0.95,
            burst: 20,
        }
    }
}

impl PacerLimits {
    /// Key Vault's published limit for secret CREATE (every new version, `set_secret`): 300 per vault per 10 s.
    /// 99 % of it with no burst, so any 10-second interval holds at most 297 + 1 = 298 creates: two to spare for
    /// requests bunched up on their way to the vault, and a burst of rotations still runs at 99 % of the limit
    /// (98 % with a burst of 2 measured 96.6-97.8 % end to end: the chain's own latency comes on top of the
    /// schedule, so the schedule itself needs the last percent). No subscription limit: it is five times the vault's and this process cannot know which
    /// vaults share a subscription.
    pub fn key_vault_secret_create() -> Self {
        Self {
            per_vault: RateLimit { requests: 300, per: Duration::from_secs(10) },
            per_subscription: None,
            headroom: 0.99,
            burst: 0,
        }
    }

    /// Key Vault's published limit for key CREATE (create, rotate, and a certificate's new version, which
    /// creates its key): 20 per vault per 10 s for software RSA-2048 keys. So few that one request bunched
    /// up with another matters: 90 % of it with no burst, so any 10-second interval holds at most 18 + 1 = 19.
    /// (HSM and larger RSA keys have lower limits; keyturn cannot tell a key's limit before reading it, and
    /// the service's 429 and the retries still cover them.)
    pub fn key_vault_key_create() -> Self {
        Self {
            per_vault: RateLimit { requests: 20, per: Duration::from_secs(10) },
            per_subscription: None,
            headroom: 0.9,
            burst: 0,
        }
    }
}

/// Key Vault's throttling classes: each counts against its own per-vault limit (as the service counts them,
/// and as the local emulator enforces them: crates/local/src/keyvault/limits.rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OperationClass {
    /// A new secret version (`set_secret`).
    SecretCreate,
    /// A new key version: create, rotate, and a certificate's new version (its key is created with it).
    KeyCreate,
    /// Every other secret and certificate operation: reads, lists, updates.
    SecretOther,
    /// Every other key operation: reads, lists, updates, rotation policies.
    KeyOther,
}

impl OperationClass {
    pub const ALL: [Self; 4] = [Self::SecretCreate, Self::KeyCreate, Self::SecretOther, Self::KeyOther];

    /// The limits this class is paced to.
    pub fn limits(self) -> PacerLimits {
        match self {
            Self::SecretCreate => PacerLimits::key_vault_secret_create(),
            Self::KeyCreate => PacerLimits::key_vault_key_create(),
            Self::SecretOther | Self::KeyOther => PacerLimits::key_vault(),
        }
    }

    /// The class of a read, list or update in `collection` (certificates count with secrets).
    pub fn other(collection: crate::Collection) -> Self {
        match collection {
            crate::Collection::Keys => Self::KeyOther,
            crate::Collection::Secrets | crate::Collection::Certificates => Self::SecretOther,
        }
    }

    /// How [`crate::VaultError::Paced`] names the limit.
    pub fn describe(self) -> &'static str {
        match self {
            Self::SecretCreate => "secret-create",
            Self::KeyCreate => "key-create",
            Self::SecretOther => "secret and certificate request",
            Self::KeyOther => "key request",
        }
    }
}

/// When the work now asking for a turn began (the event's arrival), if it is bound to answer in time.
pub type StartedAt = fn() -> Option<Instant>;

/// Every request keyturn sends to Key Vault, paced to the service's per-vault limit of its
/// [`OperationClass`]: one schedule per vault and class, shared by every invocation of the process and by every
/// [`crate::AzureKeyVault`] it is given to (the monitored vaults' and the mirrors', which may name the same
/// vault). Cloning shares the schedules. The default paces nothing (the service's 429s and the retries do).
#[derive(Debug, Clone, Default)]
pub struct VaultPacing(Option<Arc<Schedules>>);

#[derive(Debug)]
struct Schedules {
    /// One pacer per class, in [`OperationClass::ALL`]'s order.
    pacers: [Pacer; 4],
    /// A turn further away than this is not taken: the request is left to a later delivery.
    max_wait: Duration,
    /// The wait counts from here when it returns a time, from the request itself otherwise.
    started_at: StartedAt,
}

impl VaultPacing {
    /// Pacing that waits at most `max_wait` for a turn, counted from the request; zero turns pacing off.
    pub fn new(max_wait: Duration) -> Self {
        Self::counted_from(max_wait, || None)
    }

    /// Pacing whose `max_wait` counts from `started_at()` when it tells (a handler passes the event's arrival:
    /// Event Grid's 30 s to answer run from delivery, not from the request), from the request otherwise.
    pub fn counted_from(max_wait: Duration, started_at: StartedAt) -> Self {
        Self((!max_wait.is_zero()).then(|| {
            Arc::new(Schedules {
                pacers: OperationClass::ALL.map(|class| Pacer::new(class.limits())),
                max_wait,
                started_at,
            })
        }))
    }

    /// Waits for the turn of `operation` on `object` (in `vault`) under its class's limit, or refuses at once
    /// (retryable [`crate::VaultError::Paced`], nothing sent) when the turn is further than the longest wait
    /// from the start.
    pub async fn wait_for_turn(
        &self,
        class: OperationClass,
        operation: &'static str,
        vault: &str,
        object: &str,
    ) -> Result<(), crate::VaultError> {
        let Some(schedules) = &self.0 else { return Ok(()) };
        let now = Instant::now();
        let waited = (schedules.started_at)().map_or(Duration::ZERO, |started| now - started);
        let may_wait = schedules.max_wait.saturating_sub(waited);
        let pacer = &schedules.pacers[class as usize];
        match pacer.try_reserve(vault, now, may_wait) {
            Some(turn) => {
                tokio::time::sleep_until(turn).await;
                Ok(())
            }
            None => Err(crate::VaultError::Paced {
                operation,
                object: object.to_owned(),
                limit: class.describe(),
                max_wait: schedules.max_wait,
            }),
        }
    }

    /// Refuses at once, as [`VaultPacing::wait_for_turn`] would (retryable [`crate::VaultError::Paced`]), when
    /// the turn of `class` in `vault` would lie further than the longest wait even if only the `ahead` requests
    /// already in the process booked first; books nothing. For a handler to turn an event away on arrival,
    /// rather than after it has waited its place among the process's invocations: Event Grid redelivers a
    /// refused event 10 s after the answer, so an early answer brings it back while the schedule still has work.
    pub fn admit(
        &self,
        class: OperationClass,
        operation: &'static str,
        vault: &str,
        object: &str,
        ahead: usize,
    ) -> Result<(), crate::VaultError> {
        let Some(schedules) = &self.0 else { return Ok(()) };
        let now = Instant::now();
        let waited = (schedules.started_at)().map_or(Duration::ZERO, |started| now - started);
        let may_wait = schedules.max_wait.saturating_sub(waited);
        let earliest = schedules.pacers[class as usize].earliest_after(vault, now, ahead);
        if earliest <= now + may_wait {
            Ok(())
        } else {
            Err(crate::VaultError::Paced {
                operation,
                object: object.to_owned(),
                limit: class.describe(),
                max_wait: schedules.max_wait,
            })
        }
    }
}

/// One limit's state: the theoretical arrival time of the next request.
#[derive(Debug, Clone, Copy)]
struct Gcra {
    /// Time between requests at the paced rate.
    interval: Duration,
    /// How far ahead of the schedule a request may go (the burst).
    tolerance: Duration,
    tat: Option<Instant>,
}

impl Gcra {
    fn new(limit: RateLimit, headroom: f64, burst: u32) -> Self {
        let rate = f64::from(limit.requests.max(1)) * headroom.clamp(0.01, 1.0);
        let interval = limit.per.div_f64(rate);
        Self { interval, tolerance: interval * burst, tat: None }
    }

    /// The earliest time a request may go at or after `now`.
    fn earliest(&self, now: Instant) -> Instant {
        match self.tat {
            Some(tat) => now.max(tat.checked_sub(self.tolerance).unwrap_or(now)),
            None => now,
        }
    }

    /// [`Gcra::earliest`] after `ahead` requests were recorded at their earliest.
    fn earliest_after(&self, now: Instant, ahead: u32) -> Instant {
        let mut gcra = *self;
        for _ in 0..ahead.min(100_000) {
            let at = gcra.earliest(now);
            gcra.record(at);
        }
        gcra.earliest(now)
    }

    fn record(&mut self, at: Instant) {
        let tat = self.tat.map_or(at, |tat| tat.max(at));
        self.tat = Some(tat + self.interval);
    }
}

#[derive(Debug)]
struct State {
    vaults: HashMap<String, Gcra>,
    subscription: Option<Gcra>,
}

/// Paces requests to the limits; share one per sweep (it is `Sync`).
#[derive(Debug)]
pub struct Pacer {
    limits: PacerLimits,
    // A std Mutex: held to compute one time, never across an await.
    state: Mutex<State>,
}

impl Pacer {
    pub fn new(limits: PacerLimits) -> Self {
        let subscription = limits.per_subscription.map(|l| Gcra::new(l, limits.headroom, limits.burst));
        Self { limits, state: Mutex::new(State { vaults: HashMap::new(), subscription }) }
    }

    /// Reserves the next slot for a request to `vault` at or after `now`, and returns it.
    pub fn reserve(&self, vault: &str, now: Instant) -> Instant {
        self.reserve_within(vault, now, None).unwrap_or(now)
    }

    /// Like [`Pacer::reserve`], but reserves nothing and returns `None` when the next slot is more than
    /// `max_wait` after `now`: a caller with a deadline gives the slot to someone who can use it.
    pub fn try_reserve(&self, vault: &str, now: Instant, max_wait: Duration) -> Option<Instant> {
        self.reserve_within(vault, now, Some(max_wait))
    }

    fn reserve_within(&self, vault: &str, now: Instant, max_wait: Option<Duration>) -> Option<Instant> {
        // The state is a few times; a panic elsewhere cannot leave it worse than slightly conservative.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let State { vaults, subscription } = &mut *state;
        let limits = self.limits;
        let vault_gcra = vaults
            .entry(vault.to_ascii_lowercase())
            .or_insert_with(|| Gcra::new(limits.per_vault, limits.headroom, limits.burst));
        let mut at = vault_gcra.earliest(now);
        if let Some(sub) = subscription.as_ref() {
            at = at.max(sub.earliest(now));
        }
        if max_wait.is_some_and(|max| at > now + max) {
            return None;
        }
        vault_gcra.record(at);
        if let Some(sub) = subscription.as_mut() {
            sub.record(at);
        }
        Some(at)
    }

    /// The earliest a request to `vault` could go at or after `now` if `ahead` others booked first; books nothing.
    pub fn earliest_after(&self, vault: &str, now: Instant, ahead: usize) -> Instant {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let limits = self.limits;
        let ahead = u32::try_from(ahead).unwrap_or(u32::MAX);
        let vault_gcra = state
            .vaults
            .get(&vault.to_ascii_lowercase())
            .copied()
            .unwrap_or_else(|| Gcra::new(limits.per_vault, limits.headroom, limits.burst));
        let mut at = vault_gcra.earliest_after(now, ahead);
        if let Some(sub) = state.subscription.as_ref() {
            at = at.max(sub.earliest_after(now, ahead));
        }
        at
    }

    /// Waits until a request to `vault` may go; returns how long it waited.
    pub async fn acquire(&self, vault: &str) -> Duration {
        let now = Instant::now();
        let at = self.reserve(vault, now);
        tokio::time::sleep_until(at).await;
        at.saturating_duration_since(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The most requests any interval of length `window` holds, over sorted times.
    fn densest(times: &[Instant], window: Duration) -> usize {
        let mut most = 0;
        let mut start = 0;
        for end in 0..times.len() {
            while times[end] - times[start] >= window {
                start += 1;
            }
            most = most.max(end - start + 1);
        }
        most
    }

    /// 10 vaults asked for 6,000 requests each at once: no 10-second interval of any vault nor of the
    /// subscription holds more than the service allows, and the whole takes at most 10 % more than the
    /// steady rate the limits allow.
    #[test]
    fn a_burst_over_ten_vaults_stays_under_every_limit_and_close_to_the_fastest_allowed() {
        let pacer = Pacer::new(PacerLimits::key_vault());
        let start = Instant::now();
        let mut by_vault: HashMap<String, Vec<Instant>> = HashMap::new();
        let mut all = Vec::new();
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..60_000 {
            let vault = format!("kv{}", rng.usize(0..10));
            let at = pacer.reserve(&vault, start);
            by_vault.entry(vault).or_default().push(at);
            all.push(at);
        }
        let ten = Duration::from_secs(10);
        for (vault, times) in &mut by_vault {
            times.sort();
            assert!(densest(times, ten) <= 4000, "{vault}: {} in 10 s", densest(times, ten));
        }
        all.sort();
        let densest_all = densest(&all, ten);
        assert!(densest_all <= 20_000, "subscription: {densest_all} in 10 s");
        assert!(densest_all >= 19_000, "the subscription limit is used, not wasted: {densest_all}");
        let took = *all.last().unwrap() - start;
        // The subscription's 2,000 per second binds: 60,000 requests need 30 s at the full rate.
        let fastest = Duration::from_secs(30);
        eprintln!(
            "60,000 requests over 10 vaults: {took:?} (the limits allow {fastest:?}); densest 10 s: {densest_all}"
        );
        assert!(took <= fastest.mul_f64(1.10), "took {took:?}, the limits allow {fastest:?}");
        assert!(took >= fastest.mul_f64(0.95), "faster than the limits allow: {took:?}");
    }

    /// 1,000 creates asked for at once in one vault: no 10-second interval holds more than the 300 Key Vault
    /// allows, and the whole runs at no less than 97 % of that limit.
    #[test]
    fn a_burst_of_secret_creates_runs_at_the_limit_without_passing_it() {
        let pacer = Pacer::new(PacerLimits::key_vault_secret_create());
        let start = Instant::now();
        let times: Vec<Instant> = (0..1000).map(|_| pacer.reserve("kv1", start)).collect();
        let densest = densest(&times, Duration::from_secs(10));
        assert!(densest <= 298, "{densest} creates in 10 s");
        // 1,000 creates at 300 per 10 s: the limit allows the last to go at 33.3 s (the first 300 at once).
        let took = times[999] - start;
        let share = Duration::from_secs_f64(999.0 / 30.0).as_secs_f64() / took.as_secs_f64();
        assert!((0.97..=1.0).contains(&share), "took {took:?}: {:.1} % of the limit", share * 100.0);
    }

    /// 100 key creates (rotations) asked for at once in one vault: no 10-second interval holds more than 19 of
    /// the 20 Key Vault allows (one spare for requests bunched up on the way), and the whole runs at 90 %.
    #[test]
    fn a_burst_of_key_creates_stays_under_the_key_create_limit() {
        let pacer = Pacer::new(OperationClass::KeyCreate.limits());
        let start = Instant::now();
        let times: Vec<Instant> = (0..100).map(|_| pacer.reserve("kv1", start)).collect();
        let densest = densest(&times, Duration::from_secs(10));
        assert!(densest <= 19, "{densest} key creates in 10 s");
        // 100 creates at 20 per 10 s: the limit allows the last at 45 s (the first 20 at once), 90 % of it ~50 s.
        let took = times[99] - start;
        assert!((Duration::from_secs(54)..=Duration::from_secs(56)).contains(&took), "took {took:?}");
    }

    /// An event is turned away on arrival when its create, behind the requests already in the process, would lie
    /// past the longest wait; nothing is booked by asking.
    #[tokio::test(start_paused = true)]
    async fn admission_counts_the_requests_ahead_and_books_nothing() {
        let pacing = VaultPacing::new(Duration::from_secs(1));
        let admit = |ahead| pacing.admit(OperationClass::SecretCreate, "rotate", "kv1", "kv1/s", ahead);
        // 297 creates per 10 s: one every 33.7 ms; 29 ahead put this one at 0.98 s, 30 at 1.01 s.
        assert!(admit(29).is_ok());
        let refused = admit(30).unwrap_err();
        assert!(refused.is_retryable(), "{refused}");
        // Asking booked nothing: the first turn is still free.
        let start = Instant::now();
        pacing.wait_for_turn(OperationClass::SecretCreate, "rotate", "kv1", "kv1/s").await.unwrap();
        assert_eq!(Instant::now(), start);
        // Another vault's schedule is its own.
        assert!(pacing.admit(OperationClass::SecretCreate, "rotate", "kv2", "kv2/s", 29).is_ok());
    }

    /// Each class has its own schedule: a vault's key-create limit being booked holds back neither its secret
    /// creates nor its reads. 40 requests of each class asked for at once, each willing to wait 1 s.
    #[tokio::test(start_paused = true)]
    async fn the_classes_of_one_vault_are_paced_apart() {
        let pacing = VaultPacing::new(Duration::from_secs(1));
        let start = Instant::now();
        let burst = |class| {
            let pacing = &pacing;
            futures::future::join_all((0..40).map(move |_| async move {
                pacing.wait_for_turn(class, "rotate key", "kv1", "kv1/k").await.map(|()| Instant::now() - start)
            }))
        };
        let (keys, secrets, reads) = futures::join!(
            burst(OperationClass::KeyCreate),
            burst(OperationClass::SecretCreate),
            burst(OperationClass::KeyOther)
        );
        let taken = |turns: &[Result<Duration, crate::VaultError>]| turns.iter().flatten().count();
        // 18 key creates per 10 s, no burst: at 0 and 0.56 s; the third would be at 1.11 s.
        assert_eq!(taken(&keys), 2);
        // 297 secret creates per 10 s, no burst: one every 33.7 ms from 0 up to 0.98 s.
        assert_eq!(taken(&secrets), 30);
        // 3,800 reads per 10 s after a burst of 21: all 40 within 53 ms.
        assert_eq!(taken(&reads), 40);
        assert!(reads.iter().flatten().all(|at| *at < Duration::from_millis(60)), "{reads:?}");

        let error = keys.iter().find_map(|turn| turn.as_ref().err()).unwrap();
        assert!(error.is_retryable());
        assert_eq!(
            error.to_string(),
            "rotate key on 'kv1/k': the vault's key-create limit is booked more than 1 s ahead; left for a later \
             delivery (paced, nothing sent)"
        );
    }

    #[test]
    fn a_slot_too_far_away_is_declined_and_left_for_others() {
        let limits = PacerLimits {
            per_vault: RateLimit { requests: 10, per: Duration::from_secs(10) },
            per_subscription: None,
            headroom: 1.0,
            burst: 0,
        };
        let pacer = Pacer::new(limits);
        let now = Instant::now();
        let max = Duration::from_millis(2500);
        let taken: Vec<Option<Instant>> = (0..5).map(|_| pacer.try_reserve("kv1", now, max)).collect();
        let second = Duration::from_secs(1);
        assert_eq!(taken, [Some(now), Some(now + second), Some(now + second * 2), None, None]);
        // The declined ones took nothing: the next slot is still the fourth.
        assert_eq!(pacer.reserve("kv1", now), now + second * 3);
    }

    #[test]
    fn one_vault_is_paced_to_its_own_limit_and_others_are_not_held_back() {
        let limits = PacerLimits {
            per_vault: RateLimit { requests: 100, per: Duration::from_secs(10) },
            per_subscription: None,
            headroom: 1.0,
            burst: 0,
        };
        let pacer = Pacer::new(limits);
        let now = Instant::now();
        let first: Vec<Instant> = (0..3).map(|_| pacer.reserve("KV1", now)).collect();
        assert_eq!(first, [now, now + Duration::from_millis(100), now + Duration::from_millis(200)]);
        assert_eq!(pacer.reserve("kv2", now), now, "another vault has its own budget");
        assert_eq!(pacer.reserve("kv1", now + Duration::from_secs(5)), now + Duration::from_secs(5), "idle: at once");
    }

    #[tokio::test(start_paused = true)]
    async fn acquire_waits_for_the_reserved_slot() {
        let limits = PacerLimits {
            per_vault: RateLimit { requests: 10, per: Duration::from_secs(1) },
            per_subscription: None,
            headroom: 1.0,
            burst: 0,
        };
        let pacer = Pacer::new(limits);
        let start = Instant::now();
        for _ in 0..5 {
            pacer.acquire("kv1").await;
        }
        assert_eq!(Instant::now() - start, Duration::from_millis(400));
    }
}
