//! Pacing Key Vault requests below the service's throttling limits, so a sweep over thousands of objects, or a
//! burst of near-expiry events served by one process, loses nothing to 429s (Key Vault sends no `Retry-After`; a throttled client can only guess) and
//! still runs close to the fastest the limits allow.
//!
//! Key Vault counts requests per vault per 10 seconds (4,000 "other" secret or key operations: reads, lists,
//! updates), and per subscription at five times that. The service's windows are its own, not aligned with
//! ours, so a limiter of "N per window" that resets could still send up to 2N into one of the service's
//! windows. Instead each limit is a GCRA (a token bucket kept as one time): a steady `headroom` share of the
//! rate with a small burst, so **any** 10-second interval holds at most `headroom × N + burst + 1` requests,
//! which stays under N; and a sweep takes `1 / headroom` of the minimum time (5 % more at the default 0.95).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
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
    /// 98 % of it with a burst of 2, so any 10-second interval holds at most 294 + 3 = 297 creates: three to
    /// spare for requests bunched up on their way to the vault, and a burst of rotations still runs at 98 % of
    /// the limit. No subscription limit: it is five times the vault's and this process cannot know which
    /// vaults share a subscription.
    pub fn key_vault_secret_create() -> Self {
        Self {
            per_vault: RateLimit { requests: 300, per: Duration::from_secs(10) },
            per_subscription: None,
            headroom: 0.98,
            burst: 2,
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
        assert!(densest <= 297, "{densest} creates in 10 s");
        // 1,000 creates at 300 per 10 s: the limit allows the last to go at 33.3 s (the first 300 at once).
        let took = times[999] - start;
        let share = Duration::from_secs_f64(999.0 / 30.0).as_secs_f64() / took.as_secs_f64();
        assert!((0.97..=1.0).contains(&share), "took {took:?}: {:.1} % of the limit", share * 100.0);
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
