//! Bounded retries for calls to Azure.
//!
//! Each call to Key Vault (or the lock's storage account) is retried inside the process on 408, 429, 5xx and
//! connection errors, with exponential back-off (Microsoft's advice for Key Vault throttling is 1, 2, 4, 8,
//! 16 s, which the defaults reproduce) and a `Retry-After` from the service honoured but capped at the
//! longest delay. What the retries cannot fix becomes a retryable handler error, and Event Grid redelivers
//! later. The settings are checked so that one call, retries included, always ends before the function
//! timeout.

use std::time::Duration;

use crate::{ConfigError, Env};

pub const RETRY_MAX: &str = "KEYTURN_RETRY_MAX";
pub const RETRY_DELAY_MS: &str = "KEYTURN_RETRY_DELAY_MS";
pub const RETRY_MAX_DELAY_MS: &str = "KEYTURN_RETRY_MAX_DELAY_MS";
pub const HTTP_TIMEOUT_SECS: &str = "KEYTURN_HTTP_TIMEOUT_SECS";
pub const FUNCTION_TIMEOUT_SECS: &str = "KEYTURN_FUNCTION_TIMEOUT_SECS";
pub const PACING_MAX_WAIT_SECS: &str = "KEYTURN_PACING_MAX_WAIT_SECS";

/// How calls to Azure are retried and timed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySettings {
    /// Retries after the first try.
    pub max_retries: u32,
    /// The first delay; each later one doubles.
    pub initial_delay: Duration,
    /// No delay is longer, whatever the service's `Retry-After` says.
    pub max_delay: Duration,
    /// One try (connect, send, receive) may take no longer.
    pub http_timeout: Duration,
    /// The function timeout of the host (`functionTimeout` in host.json).
    pub function_timeout: Duration,
    /// The longest an invocation waits for its turn under the vault's secret-create limit, counted from its
    /// event's arrival (keyturn paces its writes to the published limit rather than learning it from 429s). A
    /// turn further away is left to a later delivery, answered at once as retryable: Event Grid waits 30 s for
    /// an answer, so the default, 25 s, leaves 5 s for the rest of the rotation (a version's tags, the
    /// notifications). Why 25 and not less: Event Grid brings a refused event back 10 s later, and a burst
    /// keeps the schedule busy through that only if it was booked at least 10 s past the moment it was refused
    /// plus the time the rest of the burst needs; at 20 s a 1,000-secret burst left the vault idle 10 s waiting
    /// for the second redelivery (76 % of the limit, measured), at 25 s it ran at 98 %. Zero turns pacing off
    /// (the service's 429s and the retries above then do the pacing).
    pub pacing_max_wait: Duration,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            max_retries: 5,
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(16),
            http_timeout: Duration::from_secs(30),
            function_timeout: Duration::from_secs(300),
            pacing_max_wait: Duration::from_secs(25),
        }
    }
}

impl RetrySettings {
    /// The delay before retry number `retry` (1-based): `initial * 2^(retry-1)`, capped at `max_delay`.
    pub fn delay(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1));
        self.initial_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// The longest one call can take: every try timing out, every delay at its longest (a `Retry-After`
    /// is capped at `max_delay`, so it can lengthen a delay only up to that).
    pub fn worst_case(&self) -> Duration {
        let tries = self.http_timeout.saturating_mul(self.max_retries + 1);
        let waits = (1..=self.max_retries).map(|r| self.max_delay.max(self.delay(r))).sum::<Duration>();
        tries + waits
    }

    pub(crate) fn from_env(env: &Env<'_>) -> Result<Self, Vec<ConfigError>> {
        let defaults = Self::default();
        let mut errors = Vec::new();
        let mut number = |name, default: u64, min, max| {
            env.number(name, default, min, max).unwrap_or_else(|e| {
                errors.push(e);
                default
            })
        };
        let settings = Self {
            max_retries: number(RETRY_MAX, defaults.max_retries.into(), 0, 10) as u32,
            initial_delay: Duration::from_millis(number(RETRY_DELAY_MS, 1_000, 1, 60_000)),
            max_delay: Duration::from_millis(number(RETRY_MAX_DELAY_MS, 16_000, 1, 120_000)),
            http_timeout: Duration::from_secs(number(HTTP_TIMEOUT_SECS, 30, 1, 600)),
            function_timeout: Duration::from_secs(number(FUNCTION_TIMEOUT_SECS, 300, 10, 86_400)),
            pacing_max_wait: Duration::from_secs(number(PACING_MAX_WAIT_SECS, 25, 0, 3_600)),
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        if settings.initial_delay > settings.max_delay {
            return Err(vec![ConfigError::other(
                RETRY_DELAY_MS,
                format!("must not exceed {RETRY_MAX_DELAY_MS} ({} ms)", settings.max_delay.as_millis()),
            )]);
        }
        if settings.pacing_max_wait >= settings.function_timeout {
            return Err(vec![ConfigError::other(
                PACING_MAX_WAIT_SECS,
                format!(
                    "must be less than {FUNCTION_TIMEOUT_SECS}={} s: an invocation waiting that long for its turn \
                     would be cut off by the host",
                    settings.function_timeout.as_secs()
                ),
            )]);
        }
        if settings.worst_case() >= settings.function_timeout {
            return Err(vec![ConfigError::other(
                RETRY_MAX,
                format!(
                    "one call could take {} s ({} tries of up to {HTTP_TIMEOUT_SECS}={} s plus delays of up to \
                     {RETRY_MAX_DELAY_MS}={} ms), which is not less than {FUNCTION_TIMEOUT_SECS}={} s; \
                     lower the retries or timeouts",
                    settings.worst_case().as_secs(),
                    settings.max_retries + 1,
                    settings.http_timeout.as_secs(),
                    settings.max_delay.as_millis(),
                    settings.function_timeout.as_secs()
                ),
            )]);
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::lookup;

    fn parse(pairs: &[(&str, &str)]) -> Result<RetrySettings, Vec<ConfigError>> {
        let lookup = lookup(pairs);
        RetrySettings::from_env(&Env::new(&lookup))
    }

    #[test]
    fn the_defaults_are_microsofts_throttling_advice_and_fit_the_default_function_timeout() {
        let settings = parse(&[]).unwrap();
        assert_eq!(settings, RetrySettings::default());
        let delays: Vec<u64> = (1..=settings.max_retries).map(|r| settings.delay(r).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16]);
        assert!(settings.worst_case() < settings.function_timeout);
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        let settings = parse(&[
            ("KEYTURN_RETRY_MAX", "8"),
            ("KEYTURN_RETRY_DELAY_MS", "10"),
            ("KEYTURN_RETRY_MAX_DELAY_MS", "50"),
        ])
        .unwrap();
        let delays: Vec<u128> = (1..=8).map(|r| settings.delay(r).as_millis()).collect();
        assert_eq!(delays, [10, 20, 40, 50, 50, 50, 50, 50]);
    }

    #[test]
    fn settings_that_could_outlast_the_function_timeout_are_refused() {
        let errors =
            parse(&[("KEYTURN_HTTP_TIMEOUT_SECS", "60"), ("KEYTURN_FUNCTION_TIMEOUT_SECS", "300")]).unwrap_err();
        assert_eq!(errors[0].variable(), "KEYTURN_RETRY_MAX");
        assert!(errors[0].to_string().contains("one call could take 440 s"), "{}", errors[0]);
    }

    #[test]
    fn bad_numbers_are_named_with_their_range() {
        let errors = parse(&[("KEYTURN_RETRY_MAX", "-1"), ("KEYTURN_HTTP_TIMEOUT_SECS", "0")]).unwrap_err();
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].to_string(), "KEYTURN_RETRY_MAX: '-1' is not valid; expected a whole number from 0 to 10");
        assert_eq!(errors[1].variable(), "KEYTURN_HTTP_TIMEOUT_SECS");
        let errors = parse(&[("KEYTURN_RETRY_DELAY_MS", "5000"), ("KEYTURN_RETRY_MAX_DELAY_MS", "1000")]).unwrap_err();
        assert_eq!(errors[0].variable(), "KEYTURN_RETRY_DELAY_MS");
    }

    #[test]
    fn pacing_waits_20_s_by_default_can_be_turned_off_and_never_outlasts_the_function() {
        assert_eq!(parse(&[]).unwrap().pacing_max_wait, Duration::from_secs(25));
        assert_eq!(parse(&[("KEYTURN_PACING_MAX_WAIT_SECS", "0")]).unwrap().pacing_max_wait, Duration::ZERO);
        let errors =
            parse(&[("KEYTURN_PACING_MAX_WAIT_SECS", "60"), ("KEYTURN_FUNCTION_TIMEOUT_SECS", "60")]).unwrap_err();
        assert_eq!(errors[0].variable(), "KEYTURN_PACING_MAX_WAIT_SECS");
        assert!(errors[0].to_string().contains("KEYTURN_FUNCTION_TIMEOUT_SECS=60 s"), "{}", errors[0]);
    }
}
