//! The post-promotion health check: right after a rotation promoted a secret's new version, the probe the
//! deployment binds to the secret (`KEYTURN_HEALTH_PROBES`) is asked whether the secret's consumers still work.
//! Its answer goes into the rotation's outcome with what a person can do if it failed: whether
//! `keyturn rollback` can restore the previous credential ([`crate::provider::Provider::previous_credential`]).
//!
//! The request: `POST <url>` with `{"vault","name","version","previousVersion","eventId"}` (never a value) and
//! `X-Keyturn-Signature` as the webhook channel signs. 2xx passes; anything else, or no answer within
//! [`TIMEOUT`], fails. A failed probe is not retried and does not fail the event: the rotation is done; the
//! failure is reported (a warning notification) for a person to decide.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use keyturn_config::health::HealthProbes;
use keyturn_vault::model::SecretProperties;

use crate::provider::{PreviousCredential, Provider, ProviderError};

/// How long a probe may take to answer.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// What the probe said after a rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub passed: bool,
    /// The probe's answer, in a line (a status, or why it could not be reached; never a body).
    pub detail: String,
    /// What `keyturn rollback <vault>/<name>` can do: restore the previous credential, or why not.
    pub rollback: String,
}

/// The deployment's probes and the client that calls them.
#[derive(Debug, Clone)]
pub struct HealthProber {
    probes: HealthProbes,
    http: reqwest::Client,
}

impl HealthProber {
    /// `None` without probes; else a client trusting the platform's roots plus the PEM bundle at `ca_file`.
    pub fn new(probes: &HealthProbes, ca_file: Option<&Path>) -> Result<Option<Self>, ProviderError> {
        if probes.probes.is_empty() {
            return Ok(None);
        }
        let setup = |message: String| ProviderError { provider: "health-probe", message, retryable: false };
        let roots = keyturn_tls::TrustRoots::for_ca_file(ca_file).map_err(|e| setup(e.to_string()))?;
        let tls = roots
            .client_config(keyturn_tls::Alpn::Http)
            .map_err(|e| setup(format!("building the TLS configuration: {e}")))?;
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            // A signed request is for the configured URL only.
            .redirect(reqwest::redirect::Policy::none())
            .tls_backend_preconfigured(tls)
            .build()
            .map_err(|e| setup(format!("building the HTTP client: {e}")))?;
        Ok(Some(Self { probes: probes.clone(), http }))
    }

    /// Asks the probe of `vault/name` about `promoted` (which replaced `previous`); `None` when none is bound.
    pub async fn check(
        &self,
        (vault, name, event_id): (&str, &str, &str),
        previous: &SecretProperties,
        promoted: &SecretProperties,
        provider: &dyn Provider,
        now: DateTime<Utc>,
    ) -> Option<HealthCheck> {
        let probe = self.probes.for_secret(vault, name)?;
        let body = serde_json::json!({
            "vault": vault,
            "name": name,
            "version": promoted.version,
            "previousVersion": previous.version,
            "eventId": event_id,
        })
        .to_string();
        let secret = self.probes.secret.as_ref().map(|s| s.expose().as_bytes().to_vec()).unwrap_or_default();
        let signature = keyturn_notify::sign(&secret, now.timestamp(), body.as_bytes());
        let answer = self
            .http
            .post(probe.url.clone())
            .header("content-type", "application/json")
            .header(keyturn_notify::SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await;
        let (passed, detail) = match answer {
            Ok(response) if response.status().is_success() => (true, format!("HTTP {}", response.status().as_u16())),
            Ok(response) => (false, format!("HTTP {}", response.status().as_u16())),
            // reqwest's error names the URL, which has no query (the setting refuses one).
            Err(error) => (false, format!("no answer: {error}")),
        };
        let target = format!("{vault}/{name}");
        let rollback = match provider.previous_credential(promoted, previous, now) {
            PreviousCredential::Survives { .. } => {
                format!("`keyturn rollback {target}` restores the previous credential ({})", previous.version)
            }
            PreviousCredential::Revoked(reason) => format!("`keyturn rollback` cannot help: {reason}"),
        };
        tracing::info!(vault, object = name, version = %promoted.version, passed, %detail, "health probe");
        Some(HealthCheck { passed, detail, rollback })
    }
}
