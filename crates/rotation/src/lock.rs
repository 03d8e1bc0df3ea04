//! The per-object rotation lock: concurrent deliveries of the same event (Event Grid delivers at least
//! once, and may deliver to two instances at the same moment) must not both rotate.
//!
//! A lock is a lease: it always expires, so a holder that crashed or hung cannot block the object's
//! rotation for longer than the lease. A lock already held is a retryable error: Event Grid redelivers
//! later, by when the holder has finished and the redelivery finds the rotation already done.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;

pub mod blob;

/// Why the lock could not be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockError {
    #[error("rotation of '{key}' is already in progress elsewhere (lock held)")]
    Held { key: String },
    #[error("rotation lock for '{key}': {message}")]
    Backend { key: String, message: String },
    /// The fence before a promotion found the lease gone (it expired unrenewed, or was broken): another
    /// delivery may be rotating the object now, so this one promotes nothing.
    #[error(
        "the rotation lock on '{key}' was lost before the promotion (its lease expired or was broken); nothing was \
         promoted, a redelivery finishes the rotation"
    )]
    Lost { key: String },
}

impl LockError {
    /// All are worth a redelivery: a held lock is released or expires, a backend recovers, and after a lost
    /// lease the redelivery resumes the rotation (or finds it done by whoever took the lock over).
    pub fn is_retryable(&self) -> bool {
        true
    }
}

/// A held lock. Release it when done; dropping it without releasing leaves it to expire (in-process
/// locks release on drop).
pub trait LockGuard: Send + Sync + fmt::Debug {
    /// The fence, checked immediately before a promotion: proves that this holder still holds the lock now,
    /// and extends it (a renewal, which the store refuses once the lease was broken or taken over), so the
    /// promotion that follows has a whole lease to finish in. Gone → [`LockError::Lost`].
    fn confirm(&self) -> BoxFuture<'_, Result<(), LockError>>;

    fn release(self: Box<Self>) -> BoxFuture<'static, Result<(), LockError>>;
}

/// Where locks live.
pub trait RotationLock: Send + Sync + fmt::Debug {
    /// Takes the lock on `key` without waiting: held elsewhere → [`LockError::Held`].
    fn acquire<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Box<dyn LockGuard>, LockError>>;
}

/// The lock key of an object: vault, kind and name, lowercase (Key Vault names are case-insensitive).
pub fn lock_key(vault: &str, kind: keyturn_events::ObjectKind, name: &str) -> String {
    format!("{vault}/{}/{name}", kind.as_str()).to_ascii_lowercase()
}

/// Locks inside this process, for single-process (local) runs.
#[derive(Debug, Clone)]
pub struct InProcessLock {
    lease: Duration,
    held: Arc<Mutex<HashMap<String, Holder>>>,
}

#[derive(Debug, Clone, Copy)]
struct Holder {
    token: u64,
    since: Instant,
}

impl InProcessLock {
    /// Locks that expire after `lease`, like a blob lease.
    pub fn new(lease: Duration) -> Self {
        Self { lease, held: Arc::default() }
    }
}

impl Default for InProcessLock {
    /// A 60-second lease, the longest finite blob lease.
    fn default() -> Self {
        Self::new(Duration::from_secs(60))
    }
}

// A std Mutex, not tokio's: it is held for a map lookup only, never across an await.
fn lock_map(held: &Mutex<HashMap<String, Holder>>) -> std::sync::MutexGuard<'_, HashMap<String, Holder>> {
    // A poisoned map only means a thread panicked between two map operations; the map itself is valid.
    held.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl RotationLock for InProcessLock {
    fn acquire<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Box<dyn LockGuard>, LockError>> {
        Box::pin(async move {
            static NEXT_TOKEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
            let mut held = lock_map(&self.held);
            let now = Instant::now();
            if let Some(holder) = held.get(key)
                && now.duration_since(holder.since) < self.lease
            {
                return Err(LockError::Held { key: key.to_owned() });
            }
            let token = NEXT_TOKEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            held.insert(key.to_owned(), Holder { token, since: now });
            let guard: Box<dyn LockGuard> =
                Box::new(InProcessGuard { key: key.to_owned(), token, held: self.held.clone() });
            Ok(guard)
        })
    }
}

#[derive(Debug)]
struct InProcessGuard {
    key: String,
    token: u64,
    held: Arc<Mutex<HashMap<String, Holder>>>,
}

impl Drop for InProcessGuard {
    fn drop(&mut self) {
        let mut held = lock_map(&self.held);
        // After the lease expired someone else may hold the key: remove only our own holding.
        if held.get(&self.key).is_some_and(|h| h.token == self.token) {
            held.remove(&self.key);
        }
    }
}

impl LockGuard for InProcessGuard {
    fn confirm(&self) -> BoxFuture<'_, Result<(), LockError>> {
        let mut held = lock_map(&self.held);
        // Like a blob lease: renewable while nobody else took it, even after it expired.
        let result = match held.get_mut(&self.key) {
            Some(holder) if holder.token == self.token => {
                holder.since = Instant::now();
                Ok(())
            }
            _ => Err(LockError::Lost { key: self.key.clone() }),
        };
        Box::pin(async move { result })
    }

    fn release(self: Box<Self>) -> BoxFuture<'static, Result<(), LockError>> {
        drop(self);
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_held_key_is_refused_until_released_and_other_keys_are_independent() {
        let lock = InProcessLock::default();
        let guard = lock.acquire("kv/secret/a").await.unwrap();
        let error = lock.acquire("kv/secret/a").await.unwrap_err();
        assert_eq!(error, LockError::Held { key: "kv/secret/a".into() });
        assert!(error.is_retryable());
        let other = lock.acquire("kv/secret/b").await.unwrap();
        guard.release().await.unwrap();
        lock.acquire("kv/secret/a").await.unwrap().release().await.unwrap();
        drop(other);
        lock.acquire("kv/secret/b").await.unwrap();
    }

    #[tokio::test]
    async fn a_lease_expires_so_a_stuck_holder_blocks_for_the_lease_only() {
        let lock = InProcessLock::new(Duration::from_millis(50));
        let stuck = lock.acquire("k").await.unwrap();
        assert!(lock.acquire("k").await.is_err());
        tokio::time::sleep(Duration::from_millis(60)).await;
        let taken_over = lock.acquire("k").await.unwrap();
        // The stuck holder finishing late must not release the new holder's lock.
        stuck.release().await.unwrap();
        assert!(lock.acquire("k").await.is_err());
        taken_over.release().await.unwrap();
        assert!(lock.acquire("k").await.is_ok());
    }

    #[tokio::test]
    async fn a_holder_whose_lease_was_taken_over_cannot_confirm_it_and_a_live_one_renews_it() {
        let lock = InProcessLock::new(Duration::from_millis(50));
        let stuck = lock.acquire("k").await.unwrap();
        stuck.confirm().await.unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
        // Expired, but nobody took it: still this holder's (as Azure renews an expired, untaken lease).
        stuck.confirm().await.unwrap();
        assert!(lock.acquire("k").await.is_err(), "the confirmation renewed the lease");
        tokio::time::sleep(Duration::from_millis(60)).await;
        let taken_over = lock.acquire("k").await.unwrap();
        let error = stuck.confirm().await.unwrap_err();
        assert_eq!(error, LockError::Lost { key: "k".into() });
        assert!(error.is_retryable());
        taken_over.confirm().await.unwrap();
    }

    #[test]
    fn keys_name_vault_kind_and_object_case_insensitively() {
        assert_eq!(
            lock_key("Contoso", keyturn_events::ObjectKind::Secret, "DB-Password"),
            "contoso/secret/db-password"
        );
    }
}
