//! The three Microsoft Graph calls the `entra-app-secret` provider makes, and their wire shapes: read an
//! application's passwordCredentials, addPassword, removePassword (v1.0). There is no Graph SDK in the Azure SDK
//! for Rust, so they are made with reqwest over the process's shared TLS roots (keyturn-tls), with a bearer
//! token for Graph from the handler's own credential (its managed identity in Azure).
//!
//! Retries: throttling (429) and unavailability (503, 504) are retried within the `KEYTURN_RETRY_*` bounds,
//! honouring `Retry-After`, as are connections that never reached Graph. A timeout after the request was sent is
//! not retried here, since addPassword is not idempotent: the error is retryable, and the redelivery finds (and
//! removes) whatever the lost answer had added, by its display name.
//!
//! Nothing Graph answers about a secret is ever quoted: `secretText` goes straight into a [`SecretString`], a
//! malformed answer is described by its kind only, and `hint` (the secret's first characters) is never read.

use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use chrono::{DateTime, SecondsFormat, Utc};
use keyturn_config::{RetrySettings, SecretString};
use serde::Deserialize;
use url::Url;

use super::NAME;
use crate::provider::ProviderError;

/// The Graph version keyturn calls.
pub const GRAPH_VERSION: &str = "v1.0";

/// A password as Graph lists it (without its secret).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PasswordCredential {
    pub key_id: String,
    pub display_name: Option<String>,
    pub end_date_time: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApplicationPasswords {
    #[serde(default)]
    password_credentials: Vec<PasswordCredential>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Added {
    key_id: String,
    secret_text: Option<String>,
}

#[derive(Deserialize)]
struct GraphErrorBody {
    error: GraphErrorDetail,
}

#[derive(Deserialize)]
struct GraphErrorDetail {
    code: String,
    message: Option<String>,
}

/// A password addPassword made: its key id and its secret (which Graph never shows again).
#[derive(Debug)]
pub struct NewPassword {
    pub key_id: String,
    pub secret: SecretString,
}

/// A Graph client for one process.
#[derive(Clone)]
pub struct GraphClient {
    endpoint: Url,
    scope: String,
    http: reqwest::Client,
    credential: Arc<dyn TokenCredential>,
    retry: RetrySettings,
}

impl std::fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphClient").field("endpoint", &self.endpoint.as_str()).finish_non_exhaustive()
    }
}

/// Whether a failed request may be sent again without the risk of doing its work twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resend {
    /// Graph answered that it did nothing (429, 503, 504), or the connection was never made.
    Safe,
    /// Anything else.
    No,
}

fn error(message: impl Into<String>, retryable: bool) -> ProviderError {
    ProviderError { provider: NAME, message: message.into(), retryable }
}

impl GraphClient {
    /// A client for the Graph at `endpoint` (`KEYTURN_GRAPH_ENDPOINT`), authenticating with `credential`, trusting
    /// the platform's roots plus `ca_file`.
    pub fn new(
        endpoint: Url,
        credential: Arc<dyn TokenCredential>,
        retry: &RetrySettings,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Self, ProviderError> {
        let roots = keyturn_tls::TrustRoots::for_ca_file(ca_file).map_err(|e| error(e.to_string(), false))?;
        let tls = roots
            .client_config(keyturn_tls::Alpn::Http)
            .map_err(|e| error(format!("building the TLS configuration: {e}"), false))?;
        let http = reqwest::Client::builder()
            .timeout(retry.http_timeout)
            .connect_timeout(Duration::from_secs(10))
            // The bearer token is for Graph only; never follow an answer elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .tls_backend_preconfigured(tls)
            .build()
            .map_err(|e| error(format!("building the HTTP client: {e}"), false))?;
        let scope = crate::provider::token_scope(&endpoint, "https://graph.microsoft.com/.default");
        Ok(Self { endpoint, scope, http, credential, retry: *retry })
    }

    fn url(&self, app: &str, action: Option<&str>) -> Url {
        let mut url = self.endpoint.clone();
        let path = match action {
            Some(action) => format!("/{GRAPH_VERSION}/applications/{app}/{action}"),
            None => format!("/{GRAPH_VERSION}/applications/{app}"),
        };
        url.set_path(&path);
        url
    }

    /// The application's passwords.
    pub async fn passwords(&self, app: &str) -> Result<Vec<PasswordCredential>, ProviderError> {
        let mut url = self.url(app, None);
        url.query_pairs_mut().append_pair("$select", "passwordCredentials");
        let doing = format!("reading the passwords of application {app}");
        let body = self.send(&doing, reqwest::Method::GET, url, None).await?;
        let parsed: ApplicationPasswords = serde_json::from_slice(&body)
            .map_err(|_| error(format!("{doing}: Graph's answer is not an application"), false))?;
        Ok(parsed.password_credentials)
    }

    /// addPassword: a new password named `display_name`, valid until `end`.
    pub async fn add_password(
        &self,
        app: &str,
        display_name: &str,
        end: DateTime<Utc>,
    ) -> Result<NewPassword, ProviderError> {
        let body = serde_json::json!({
            "passwordCredential": {
                "displayName": display_name,
                "endDateTime": end.to_rfc3339_opts(SecondsFormat::Secs, true),
            }
        });
        let doing = format!("adding a password to application {app}");
        let answer = self.send(&doing, reqwest::Method::POST, self.url(app, Some("addPassword")), Some(body)).await?;
        // The answer holds the secret: parse it without ever quoting it in an error.
        let added: Added = serde_json::from_slice(&answer)
            .map_err(|_| error(format!("{doing}: Graph's answer is not a passwordCredential"), false))?;
        let secret = added
            .secret_text
            .filter(|s| !s.is_empty())
            .ok_or_else(|| error(format!("{doing}: Graph's answer has no secretText"), false))?;
        Ok(NewPassword { key_id: added.key_id, secret: SecretString::new(secret) })
    }

    /// removePassword of `key_id`.
    pub async fn remove_password(&self, app: &str, key_id: &str) -> Result<(), ProviderError> {
        let body = serde_json::json!({ "keyId": key_id });
        let doing = format!("removing password {key_id} from application {app}");
        self.send(&doing, reqwest::Method::POST, self.url(app, Some("removePassword")), Some(body)).await?;
        Ok(())
    }

    /// Sends one request with a Graph token, retrying what is safe to resend; the body of a 2xx.
    async fn send(
        &self,
        doing: &str,
        method: reqwest::Method,
        url: Url,
        body: Option<serde_json::Value>,
    ) -> Result<Vec<u8>, ProviderError> {
        let mut delay = self.retry.initial_delay;
        let mut attempt = 0;
        loop {
            let (failure, resend, retry_after) = match self.send_once(doing, method.clone(), url.clone(), &body).await {
                Ok(answer) => return Ok(answer),
                Err(failed) => failed,
            };
            if resend == Resend::No || attempt >= self.retry.max_retries {
                return Err(failure);
            }
            attempt += 1;
            let wait = retry_after.unwrap_or(delay).min(self.retry.max_delay);
            tracing::info!(attempt, wait_ms = wait.as_millis() as u64, problem = %failure.message, "retrying a Graph call");
            tokio::time::sleep(wait).await;
            delay = (delay * 2).min(self.retry.max_delay);
        }
    }

    async fn send_once(
        &self,
        doing: &str,
        method: reqwest::Method,
        url: Url,
        body: &Option<serde_json::Value>,
    ) -> Result<Vec<u8>, (ProviderError, Resend, Option<Duration>)> {
        let token = self.credential.get_token(&[self.scope.as_str()], None).await.map_err(|e| {
            (error(format!("{doing}: getting a token for Microsoft Graph failed: {e}"), true), Resend::No, None)
        })?;
        let mut request = self.http.request(method, url).bearer_auth(token.token.secret());
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = match request.send().await {
            Ok(response) => response,
            // reqwest's error without its URL: no query string in any message.
            Err(e) => {
                let resend = if e.is_connect() { Resend::Safe } else { Resend::No };
                let e = e.without_url();
                return Err((error(format!("{doing}: Microsoft Graph could not be reached: {e}"), true), resend, None));
            }
        };
        let status = response.status();
        let retry_after = keyturn_notify::paging::retry_after(response.headers());
        let answer = response.bytes().await.map_err(|e| {
            (error(format!("{doing}: reading Graph's answer failed: {}", e.without_url()), true), Resend::No, None)
        })?;
        if status.is_success() {
            return Ok(answer.to_vec());
        }
        let described = match serde_json::from_slice::<GraphErrorBody>(&answer) {
            Ok(body) => {
                format!("{} ({}): {}", status.as_u16(), body.error.code, body.error.message.unwrap_or_default())
            }
            Err(_) => status.as_u16().to_string(),
        };
        let retryable = matches!(status.as_u16(), 408 | 429 | 500..=599);
        let resend = if matches!(status.as_u16(), 429 | 503 | 504) { Resend::Safe } else { Resend::No };
        Err((error(format!("{doing}: HTTP {described}"), retryable), resend, retry_after))
    }
}
