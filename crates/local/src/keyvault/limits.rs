//! Service throttling (Key Vault's per-vault, per-10-second limits) and fault injection (a share of 500/503
//! answers and added latency, per operation kind).

use http::StatusCode;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

/// What an incoming request does, for throttling and fault injection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OperationKind {
    SecretCreate,
    SecretRead,
    SecretUpdate,
    SecretDelete,
    KeyCreate,
    KeyRead,
    KeyUpdate,
    KeyDelete,
    CertificateCreate,
    CertificateRead,
    CertificateUpdate,
    CertificateDelete,
}

impl OperationKind {
    /// Every kind, for rules that apply to all operations.
    pub const ALL: [OperationKind; 12] = [
        Self::SecretCreate,
        Self::SecretRead,
        Self::SecretUpdate,
        Self::SecretDelete,
        Self::KeyCreate,
        Self::KeyRead,
        Self::KeyUpdate,
        Self::KeyDelete,
        Self::CertificateCreate,
        Self::CertificateRead,
        Self::CertificateUpdate,
        Self::CertificateDelete,
    ];

    /// The service's throttling bucket. Certificate issuance creates a key, so it counts as a key create;
    /// other certificate operations count with the vault's secret/"all other" transactions.
    fn class(self) -> usize {
        match self {
            Self::SecretCreate => 0,
            Self::SecretRead | Self::SecretUpdate | Self::SecretDelete => 1,
            Self::KeyCreate | Self::CertificateCreate => 2,
            Self::KeyRead | Self::KeyUpdate | Self::KeyDelete => 3,
            Self::CertificateRead | Self::CertificateUpdate | Self::CertificateDelete => 1,
        }
    }
}

/// Throttling limits per vault per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttling {
    pub window: Duration,
    /// Secret creates (set secret).
    pub secret_create: u32,
    /// All other secret (and certificate) operations.
    pub secret_other: u32,
    /// Key creates (create, rotate, certificate issuance): software RSA-2048's limit.
    pub key_create: u32,
    /// All other key operations.
    pub key_other: u32,
    /// A `Retry-After` header (whole seconds) on 429s. The service sends none, so neither does the default.
    pub retry_after: Option<Duration>,
}

impl Default for Throttling {
    fn default() -> Self {
        Self::key_vault()
    }
}

impl Throttling {
    /// Key Vault's published limits: per vault per 10 s, secret create 300, other secret operations 4,000,
    /// RSA-2048 key create 20, other key operations 4,000; no Retry-After.
    pub fn key_vault() -> Self {
        Self {
            window: Duration::from_secs(10),
            secret_create: 300,
            secret_other: 4000,
            key_create: 20,
            key_other: 4000,
            retry_after: None,
        }
    }

    fn limit(&self, class: usize) -> u32 {
        match class {
            0 => self.secret_create,
            1 => self.secret_other,
            2 => self.key_create,
            _ => self.key_other,
        }
    }
}

/// Counts requests of one vault in the current window.
#[derive(Debug)]
pub struct Throttler {
    limits: Throttling,
    // std Mutex: four counters and an Instant, held for nanoseconds.
    window: Mutex<(Instant, [u32; 4])>,
}

impl Throttler {
    pub fn new(limits: Throttling) -> Self {
        Self { limits, window: Mutex::new((Instant::now(), [0; 4])) }
    }

    /// Counts one request; `Err(retry_after)` when it is over the limit.
    ///
    /// Windows are measured in real time, not by the movable clock: throttling is about request rate, and a
    /// test that jumps the clock a month should not reset anyone's budget.
    pub fn admit(&self, kind: OperationKind) -> Result<(), Option<Duration>> {
        let class = kind.class();
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        if window.0.elapsed() >= self.limits.window {
            *window = (Instant::now(), [0; 4]);
        }
        window.1[class] = window.1[class].saturating_add(1);
        if window.1[class] > self.limits.limit(class) { Err(self.limits.retry_after) } else { Ok(()) }
    }
}

/// Injected failures and latency for one operation kind.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FaultRule {
    /// Share of requests (0.0-1.0) answered 500 InternalServerError.
    pub internal_error_share: f64,
    /// Share of requests (0.0-1.0) answered 503 ServiceUnavailable.
    pub unavailable_share: f64,
    /// Added before every answer.
    pub latency: Duration,
}

/// Fault rules per operation kind.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    rules: HashMap<OperationKind, FaultRule>,
}

impl Faults {
    /// No faults.
    pub fn none() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the rule for `kind`.
    pub fn with(mut self, kind: OperationKind, rule: FaultRule) -> Self {
        self.rules.insert(kind, rule);
        self
    }

    /// Applies `rule` to every operation kind.
    pub fn with_all(mut self, rule: FaultRule) -> Self {
        for kind in OperationKind::ALL {
            self.rules.insert(kind, rule);
        }
        self
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// Decides, per request, whether to inject a fault.
///
/// Shares are deterministic rather than random: each kind accumulates its share per request and fails
/// whenever the accumulator passes 1, so a 0.25 share fails exactly every fourth request (when a 500 and a
/// 503 fall due on the same request, the 503 moves to the next one). Tests can then assert counts instead
/// of probabilities.
#[derive(Debug, Default)]
pub struct FaultInjector {
    faults: RwLock<Faults>,
    // (500 accumulator, 503 accumulator) per kind.
    accumulators: Mutex<HashMap<OperationKind, (f64, f64)>>,
}

impl FaultInjector {
    pub fn new(faults: Faults) -> Self {
        Self { faults: RwLock::new(faults), accumulators: Mutex::new(HashMap::new()) }
    }

    /// Replaces the rules (and restarts the share counting).
    pub fn set(&self, faults: Faults) {
        *self.faults.write().unwrap_or_else(PoisonError::into_inner) = faults;
        self.accumulators.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }

    /// The latency to add and the status to fail with, if any.
    pub fn decide(&self, kind: OperationKind) -> (Duration, Option<StatusCode>) {
        let rule = {
            let faults = self.faults.read().unwrap_or_else(PoisonError::into_inner);
            match faults.rules.get(&kind) {
                Some(rule) => *rule,
                None => return (Duration::ZERO, None),
            }
        };
        let mut accumulators = self.accumulators.lock().unwrap_or_else(PoisonError::into_inner);
        let acc = accumulators.entry(kind).or_insert((0.0, 0.0));
        acc.0 += rule.internal_error_share.clamp(0.0, 1.0);
        acc.1 += rule.unavailable_share.clamp(0.0, 1.0);
        // The small epsilon absorbs float drift so that e.g. 10 × 0.1 reaches 1.
        let status = if acc.0 >= 1.0 - 1e-9 {
            acc.0 -= 1.0;
            Some(StatusCode::INTERNAL_SERVER_ERROR)
        } else if acc.1 >= 1.0 - 1e-9 {
            acc.1 -= 1.0;
            Some(StatusCode::SERVICE_UNAVAILABLE)
        } else {
            None
        };
        (rule.latency, status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttler_refuses_past_the_limit_per_class() {
        let limits = Throttling { secret_create: 2, ..Throttling::key_vault() };
        let t = Throttler::new(limits);
        assert!(t.admit(OperationKind::SecretCreate).is_ok());
        assert!(t.admit(OperationKind::SecretCreate).is_ok());
        assert_eq!(t.admit(OperationKind::SecretCreate), Err(None));
        assert!(t.admit(OperationKind::SecretRead).is_ok(), "other classes keep their own budget");
    }

    #[test]
    fn fault_shares_are_exact() {
        let injector = FaultInjector::new(Faults::none().with(
            OperationKind::SecretRead,
            FaultRule { internal_error_share: 0.1, unavailable_share: 0.2, latency: Duration::ZERO },
        ));
        let outcomes: Vec<_> = (0..100).map(|_| injector.decide(OperationKind::SecretRead).1).collect();
        let count = |s| outcomes.iter().filter(|o| **o == Some(s)).count();
        assert_eq!(count(StatusCode::INTERNAL_SERVER_ERROR), 10);
        assert!((19..=20).contains(&count(StatusCode::SERVICE_UNAVAILABLE)));
        assert_eq!(injector.decide(OperationKind::KeyRead), (Duration::ZERO, None));
    }
}
