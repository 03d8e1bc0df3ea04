//! Which channels already accepted which event, so a redelivery of the event (Event Grid retries an
//! invocation that failed because one channel was down) goes only to the channels that have not.
//!
//! The record lives in this process's memory, bounded in size and age: across processes (scale-out, a
//! restart) a channel may receive a duplicate, which is why every message carries the event id.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub(crate) struct AcceptedRecord {
    capacity: usize,
    ttl: Duration,
    // A std Mutex, not tokio's: it is held for a few map operations and never across an await.
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    by_event: HashMap<String, Entry>,
    /// Event ids oldest first, for eviction.
    order: VecDeque<String>,
}

#[derive(Debug)]
struct Entry {
    first_recorded: Instant,
    channels: HashSet<usize>,
}

impl AcceptedRecord {
    /// Remembers at most `capacity` events, each for `ttl` after its first acceptance.
    pub(crate) fn new(capacity: usize, ttl: Duration) -> Self {
        Self { capacity: capacity.max(1), ttl, inner: Mutex::new(Inner::default()) }
    }

    /// The channel indices that accepted `event_id` (within the record's bounds).
    pub(crate) fn accepted(&self, event_id: &str, now: Instant) -> HashSet<usize> {
        let mut inner = self.lock();
        self.evict(&mut inner, now);
        inner.by_event.get(event_id).map(|e| e.channels.clone()).unwrap_or_default()
    }

    pub(crate) fn record(&self, event_id: &str, channel: usize, now: Instant) {
        let mut inner = self.lock();
        self.evict(&mut inner, now);
        if let Some(entry) = inner.by_event.get_mut(event_id) {
            entry.channels.insert(channel);
            return;
        }
        inner.by_event.insert(event_id.to_owned(), Entry { first_recorded: now, channels: HashSet::from([channel]) });
        inner.order.push_back(event_id.to_owned());
        while inner.order.len() > self.capacity {
            if let Some(oldest) = inner.order.pop_front() {
                inner.by_event.remove(&oldest);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The record is a cache of facts already true; a panic elsewhere while it was held cannot have left it
        // in a state worse than "forgot something", so a poisoned lock is used as is.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn evict(&self, inner: &mut Inner, now: Instant) {
        while let Some(oldest) = inner.order.front() {
            let expired =
                inner.by_event.get(oldest).is_none_or(|e| now.saturating_duration_since(e.first_recorded) >= self.ttl);
            if !expired {
                break;
            }
            if let Some(oldest) = inner.order.pop_front() {
                inner.by_event.remove(&oldest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_channels_are_remembered_per_event() {
        let record = AcceptedRecord::new(10, Duration::from_secs(60));
        let now = Instant::now();
        record.record("e1", 1, now);
        record.record("e1", 3, now);
        record.record("e2", 2, now);
        assert_eq!(record.accepted("e1", now), HashSet::from([1, 3]));
        assert_eq!(record.accepted("e2", now), HashSet::from([2]));
        assert!(record.accepted("e3", now).is_empty());
    }

    #[test]
    fn the_oldest_events_are_forgotten_beyond_capacity_or_age() {
        let record = AcceptedRecord::new(2, Duration::from_secs(60));
        let t0 = Instant::now();
        record.record("e1", 1, t0);
        record.record("e2", 1, t0 + Duration::from_secs(30));
        record.record("e3", 1, t0 + Duration::from_secs(31));
        assert!(record.accepted("e1", t0 + Duration::from_secs(31)).is_empty(), "over capacity");
        assert_eq!(record.accepted("e2", t0 + Duration::from_secs(89)), HashSet::from([1]));
        assert!(record.accepted("e2", t0 + Duration::from_secs(90)).is_empty(), "older than the ttl");
        assert_eq!(record.accepted("e3", t0 + Duration::from_secs(90)), HashSet::from([1]));
    }
}
