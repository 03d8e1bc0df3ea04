//! A movable clock shared by the whole local stack.
//!
//! The Key Vault emulator stamps `created`/`updated` and judges `exp` with it; the Event Grid emulator fires
//! NearExpiry (exp − 30 days) and Expired (exp) from the same clock. Tests jump it forward with
//! [`Clock::advance`] instead of waiting a month; a demo can run it at N× real time with [`Clock::set_speed`].
//! Anyone who schedules by this clock subscribes with [`Clock::subscribe`] and re-checks its deadlines
//! whenever the clock jumps or changes speed (plain `tokio::time::sleep` knows nothing of jumps).

use chrono::{DateTime, TimeDelta, Utc};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// A clock that reads real time shifted by an offset and scaled by a speed factor.
///
/// Cheap to clone: clones share the same time (an `Arc` inside).
#[derive(Clone, Debug)]
pub struct Clock {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    // A std Mutex: held for a few arithmetic operations only, never across an await.
    state: Mutex<State>,
    // Carries the clock's reading at the last jump or speed change; subscribers wake on every change.
    changed: watch::Sender<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy)]
struct State {
    /// Real instant at which `anchor_time` was the clock's reading.
    anchor_instant: Instant,
    anchor_time: DateTime<Utc>,
    /// Virtual seconds per real second.
    speed: f64,
}

impl State {
    fn now(&self) -> DateTime<Utc> {
        let real = self.anchor_instant.elapsed();
        let scaled = real.mul_f64(self.speed);
        self.anchor_time + TimeDelta::from_std(scaled).unwrap_or(TimeDelta::MAX)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl Clock {
    /// A clock that starts at the real current time and runs at real speed.
    pub fn system() -> Self {
        Self::starting_at(Utc::now())
    }

    /// A clock that starts at `start` and runs at real speed from there.
    pub fn starting_at(start: DateTime<Utc>) -> Self {
        let (changed, _) = watch::channel(start);
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State { anchor_instant: Instant::now(), anchor_time: start, speed: 1.0 }),
                changed,
            }),
        }
    }

    /// The clock's current reading.
    pub fn now(&self) -> DateTime<Utc> {
        self.state().now()
    }

    /// Jumps the clock forward by `by` and notifies subscribers.
    pub fn advance(&self, by: Duration) {
        let delta = TimeDelta::from_std(by).unwrap_or(TimeDelta::MAX);
        self.rebase(|state, now| {
            state.anchor_time = now + delta;
        });
    }

    /// Sets the clock to `to` (which may be in the past) and notifies subscribers.
    pub fn set(&self, to: DateTime<Utc>) {
        self.rebase(|state, _| state.anchor_time = to);
    }

    /// Runs the clock at `speed` × real time from now on (1.0 = real time; 0.0 = frozen).
    ///
    /// Negative or non-finite speeds are treated as 0 (a clock never runs backwards on its own).
    pub fn set_speed(&self, speed: f64) {
        let speed = if speed.is_finite() && speed > 0.0 { speed } else { 0.0 };
        self.rebase(|state, now| {
            state.anchor_time = now;
            state.speed = speed;
        });
    }

    /// The current speed factor.
    pub fn speed(&self) -> f64 {
        self.state().speed
    }

    /// A receiver that wakes whenever the clock jumps or changes speed; its value is the reading at that moment.
    pub fn subscribe(&self) -> watch::Receiver<DateTime<Utc>> {
        self.inner.changed.subscribe()
    }

    /// How long to wait in real time until the clock reads `at` (zero if it already has; `None` if frozen).
    ///
    /// Schedulers sleep for this long or until [`Clock::subscribe`] reports a change, whichever comes first.
    pub fn real_time_until(&self, at: DateTime<Utc>) -> Option<Duration> {
        let state = self.state();
        let remaining = at - state.now();
        let Ok(remaining) = remaining.to_std() else {
            return Some(Duration::ZERO);
        };
        if state.speed == 0.0 {
            return None;
        }
        Some(remaining.div_f64(state.speed))
    }

    fn state(&self) -> State {
        *self.inner.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn rebase(&self, change: impl FnOnce(&mut State, DateTime<Utc>)) {
        let reading = {
            let mut state = self.inner.state.lock().unwrap_or_else(PoisonError::into_inner);
            let now = state.now();
            state.anchor_instant = Instant::now();
            state.anchor_time = now;
            change(&mut state, now);
            state.now()
        };
        // send_replace: succeeds even when nobody subscribes yet.
        self.inner.changed.send_replace(reading);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_moves_every_clone_and_notifies() {
        let clock = Clock::starting_at(DateTime::from_timestamp(1_000_000, 0).unwrap());
        let other = clock.clone();
        let mut changes = clock.subscribe();
        clock.advance(Duration::from_secs(86_400));
        let now = other.now().timestamp();
        assert!((1_086_400..1_086_402).contains(&now), "{now}");
        assert!(changes.has_changed().unwrap());
        assert_eq!(changes.borrow_and_update().timestamp() / 10, 108_640);
    }

    #[test]
    fn frozen_clock_does_not_move_and_reports_no_wait() {
        let start = DateTime::from_timestamp(2_000_000, 0).unwrap();
        let clock = Clock::starting_at(start);
        clock.set_speed(0.0);
        let frozen = clock.now();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(clock.now(), frozen);
        assert_eq!(clock.real_time_until(frozen + TimeDelta::seconds(5)), None);
        assert_eq!(clock.real_time_until(frozen - TimeDelta::seconds(5)), Some(Duration::ZERO));
    }

    #[test]
    fn speed_scales_real_time() {
        let clock = Clock::system();
        clock.set_speed(1000.0);
        let before = clock.now();
        std::thread::sleep(Duration::from_millis(20));
        let elapsed = clock.now() - before;
        assert!(elapsed >= TimeDelta::seconds(19), "{elapsed}");
        let wait = clock.real_time_until(clock.now() + TimeDelta::seconds(100)).unwrap();
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
    }
}
