//! The HTTP side of every SDK client keyturn builds: one reqwest client (with the process's shared trust roots,
//! `KEYTURN_CA_FILE` included, and a per-try timeout) and a retry policy whose every wait is bounded.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use azure_core::http::headers::{HeaderName, RETRY_AFTER};
use azure_core::http::policies::{RetryHeaders, RetryPolicy};
use azure_core::http::{ClientOptions, RetryOptions, StatusCode, Transport};
use keyturn_config::RetrySettings;

use crate::VaultError;

/// The client options every keyturn SDK client (credentials included) is built with.
pub fn client_options(retry: &RetrySettings, ca_file: Option<&Path>) -> Result<ClientOptions, VaultError> {
    let http = http_client(retry, ca_file)?;
    Ok(ClientOptions {
        transport: Some(Transport::new(Arc::new(http))),
        retry: RetryOptions::custom(Arc::new(BoundedRetry::new(*retry))),
        ..ClientOptions::default()
    })
}

fn http_client(retry: &RetrySettings, ca_file: Option<&Path>) -> Result<reqwest::Client, VaultError> {
    // The process's one set of trust roots (see keyturn-tls): the file is checked now, the system store read on
    // the first handshake, once for every client.
    let roots = keyturn_tls::TrustRoots::for_ca_file(ca_file).map_err(|e| VaultError::Setup(e.to_string()))?;
    let tls = roots
        .client_config(keyturn_tls::Alpn::Http)
        .map_err(|e| VaultError::Setup(format!("building the TLS configuration: {e}")))?;
    reqwest::Client::builder()
        .timeout(retry.http_timeout)
        .connect_timeout(retry.http_timeout.min(std::time::Duration::from_secs(10)))
        .tls_backend_preconfigured(tls)
        .build()
        .map_err(|e| VaultError::Setup(format!("building the HTTP client: {e}")))
}

/// Exponential back-off with every wait capped, so no wait can outlast the function timeout.
///
/// The SDK's own exponential policy honours `Retry-After` without any cap: a throttled vault answering
/// `Retry-After: 3600` would park the invocation for an hour. Here the service's hint lengthens a wait up to
/// `max_delay` and no further; if that is not enough, the call fails after its last retry with the 429, which
/// is retryable, and Event Grid redelivers later. A 429 without `Retry-After` (what Key Vault actually sends)
/// backs off 1, 2, 4, 8, 16 s with the default settings.
#[derive(Debug)]
pub(crate) struct BoundedRetry {
    settings: RetrySettings,
    headers: RetryHeaders,
}

impl BoundedRetry {
    pub(crate) fn new(settings: RetrySettings) -> Self {
        let headers = RetryHeaders {
            retry_headers: vec![
                HeaderName::from_static("retry-after-ms"),
                HeaderName::from_static("x-ms-retry-after-ms"),
                RETRY_AFTER,
            ],
        };
        Self { settings, headers }
    }

    /// The wait before retry number `retry` (1-based), given the service's `Retry-After` if it sent one.
    pub(crate) fn wait_for(&self, retry: u32, retry_after: Option<std::time::Duration>) -> std::time::Duration {
        let computed = self.settings.delay(retry);
        retry_after.map_or(computed, |hint| hint.max(computed)).min(self.settings.max_delay)
    }
}

fn to_std(duration: azure_core::time::Duration) -> std::time::Duration {
    // A negative duration (a Retry-After date in the past) means "now".
    std::time::Duration::try_from(duration).unwrap_or_default()
}

fn to_sdk(duration: std::time::Duration) -> azure_core::time::Duration {
    azure_core::time::Duration::try_from(duration).unwrap_or(azure_core::time::Duration::MAX)
}

impl RetryPolicy for BoundedRetry {
    fn is_expired(&self, _since_start: azure_core::time::Duration, retry_count: u32) -> bool {
        // Time is bounded by the retry count: every try has a timeout and every wait a cap
        // (`RetrySettings::worst_case`, checked against the function timeout when the settings are read).
        retry_count >= self.settings.max_retries
    }

    fn retry_headers(&self) -> Option<&RetryHeaders> {
        Some(&self.headers)
    }

    fn retry_status_codes(&self) -> &[StatusCode] {
        // Empty means the SDK's defaults: 408, 429, 500, 502, 503, 504.
        &[]
    }

    fn sleep_duration(&self, retry_count: u32) -> azure_core::time::Duration {
        to_sdk(self.settings.delay(retry_count))
    }

    // The trait is declared with `#[async_trait]`; this is the signature that macro expands to, written out
    // so that keyturn needs no proc-macro for one method.
    fn wait<'life0, 'async_trait>(
        &'life0 self,
        retry_count: u32,
        retry_after: Option<azure_core::time::Duration>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        let wait = self.wait_for(retry_count, retry_after.map(to_std));
        tracing::debug!(retry = retry_count, wait_ms = wait.as_millis() as u64, "retrying a call to Azure");
        Box::pin(tokio::time::sleep(wait))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_429_without_retry_after_backs_off_1_2_4_8_16_seconds() {
        let policy = BoundedRetry::new(RetrySettings::default());
        let waits: Vec<u64> = (1..=5).map(|r| policy.wait_for(r, None).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16]);
        assert!(!policy.is_expired(azure_core::time::Duration::ZERO, 4));
        assert!(policy.is_expired(azure_core::time::Duration::ZERO, 5));
    }

    #[test]
    fn retry_after_lengthens_a_wait_but_never_past_the_cap() {
        let policy = BoundedRetry::new(RetrySettings::default());
        assert_eq!(policy.wait_for(1, Some(Duration::from_secs(5))), Duration::from_secs(5));
        assert_eq!(policy.wait_for(1, Some(Duration::from_secs(3600))), Duration::from_secs(16));
        // A shorter hint than the back-off does not shorten it.
        assert_eq!(policy.wait_for(3, Some(Duration::from_millis(10))), Duration::from_secs(4));
        assert_eq!(to_std(azure_core::time::Duration::seconds(-3)), Duration::ZERO);
    }

    #[test]
    fn an_unreadable_or_empty_ca_file_is_a_setup_error_naming_the_setting() {
        let settings = RetrySettings::default();
        let missing = client_options(&settings, Some(Path::new("/nonexistent/ca.pem"))).unwrap_err();
        assert!(missing.to_string().contains("KEYTURN_CA_FILE: cannot read '/nonexistent/ca.pem'"), "{missing}");
        let dir = std::env::temp_dir().join(format!("keyturn-vault-ca-{}", std::process::id()));
        std::fs::write(&dir, "not a certificate").unwrap();
        let empty = client_options(&settings, Some(&dir)).unwrap_err();
        std::fs::remove_file(&dir).unwrap();
        assert!(empty.to_string().contains("holds no certificate"), "{empty}");
        assert!(client_options(&settings, None).is_ok());
    }
}
