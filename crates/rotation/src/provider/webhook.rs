//! The webhook rotator: for credentials keyturn cannot change itself. keyturn asks the user's own HTTPS
//! endpoint for the new credential with a signed request describing the rotation, keeps the answer in the
//! pending home, asks the endpoint to confirm it works, and promotes it. The contract (request, signature,
//! responses, status codes) is docs/providers.md, "webhook".
//!
//! Rotators are configured, not named by URL in tags: `KEYTURN_WEBHOOK_ROTATORS` lists
//! `name=https://host/path?secret=<signing secret>&vaults=<vault>[,<vault>][&names=<name or prefix*>,...]`
//! entries (`;`-separated) and the secret's tag `KeyturnWebhook` picks one by name. A tag can therefore
//! never send keyturn's requests (or a secret's new value) to an endpoint the deployment did not choose,
//! and a rotator serves only the vaults (and names) its entry binds it to: a writer of a secret elsewhere
//! cannot make it act with their `CredentialId`/`ProviderAddress` (refused before any request). An entry
//! without `vaults=` is a configuration error: a rotator with no binding is never registered.
//!
//! Nothing the rotator could read is put in an error: reqwest's errors lose their URL (a query may carry
//! `code=`/`sig=` tokens), a malformed answer is described by its kind and position only (serde's type
//! errors quote the value, which may be the credential), and the answer's size limit is enforced while
//! reading it.
//!
//! Requests are signed exactly like keyturn's notification webhooks ([`keyturn_notify::sign`]: HMAC-SHA256 over
//! `"<unix seconds>.<body>"` in `X-Keyturn-Signature`), so one receiver-side check serves both.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use keyturn_config::SecretString;
use keyturn_config::notify::NameFilter;
use keyturn_vault::KeyVault;
use keyturn_vault::model::{SecretProperties, Tags};
use serde::Deserialize;

use crate::policy::{CREDENTIAL_ID, tag};
use crate::provider::pending::PendingHome;
use crate::provider::{Pending, Provider, ProviderError, ProviderFuture, RotationContext};

/// Tag: the configured rotator that rotates this secret.
pub const WEBHOOK: &str = "KeyturnWebhook";
/// Header: the rotation's id, the same on every attempt of one rotation (a rotator can deduplicate on it).
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
/// A signing secret shorter than this is refused: it could be guessed.
pub const MIN_SECRET_LEN: usize = 16;
const NAME: &str = "webhook";
const TIMEOUT: Duration = Duration::from_secs(30);
/// The most keyturn reads of a response.
const MAX_RESPONSE: usize = 64 * 1024;

/// One configured rotator.
#[derive(Clone)]
struct Rotator {
    url: url::Url,
    secret: SecretString,
    /// The vaults it serves (lowercase); never empty.
    vaults: Vec<String>,
    /// The secret names it serves there (`names=`; every name when absent).
    names: NameFilter,
}

/// `KeyturnRotation=webhook`.
#[derive(Clone)]
pub struct Webhook {
    rotators: BTreeMap<String, Rotator>,
    http: reqwest::Client,
    home: PendingHome,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names and hosts only: URLs may carry tokens, and every entry carries its signing secret.
        let rotators: Vec<String> =
            self.rotators.iter().map(|(n, r)| format!("{n}={}", r.url.host_str().unwrap_or_default())).collect();
        f.debug_struct("Webhook").field("rotators", &rotators).finish_non_exhaustive()
    }
}

/// A problem in `KEYTURN_WEBHOOK_ROTATORS`; names the entry by position and name, never its secret.
fn config_error(message: String) -> ProviderError {
    ProviderError { provider: NAME, message: format!("KEYTURN_WEBHOOK_ROTATORS: {message}"), retryable: false }
}

/// Parses `name=https://host/path?secret=...; ...`.
fn parse_rotators(raw: Option<&SecretString>) -> Result<BTreeMap<String, Rotator>, ProviderError> {
    let mut rotators = BTreeMap::new();
    let Some(raw) = raw else { return Ok(rotators) };
    for (index, entry) in raw.expose().split(';').map(str::trim).filter(|e| !e.is_empty()).enumerate() {
        let position = index + 1;
        let Some((name, url)) = entry.split_once('=') else {
            return Err(config_error(format!("entry {position} is not name=https://url")));
        };
        let name = name.trim().to_ascii_lowercase();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(config_error(format!("entry {position}: the name must be letters, digits and hyphens")));
        }
        let mut url =
            url::Url::parse(url.trim()).map_err(|_| config_error(format!("entry {position} ({name}): not a URL")))?;
        if url.scheme() != "https" || url.host().is_none() || !url.username().is_empty() {
            return Err(config_error(format!("entry {position} ({name}): must be an https URL without credentials")));
        }
        let (mut secret, mut vaults, mut names) = (None, Vec::new(), None);
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter_map(|(k, v)| match k.as_ref() {
                "secret" => {
                    secret = Some(SecretString::new(v.into_owned()));
                    None
                }
                "vaults" => {
                    vaults.extend(v.split(',').map(|v| v.trim().to_ascii_lowercase()).filter(|v| !v.is_empty()));
                    None
                }
                "names" => {
                    names = Some(v.into_owned());
                    None
                }
                _ => Some((k.into_owned(), v.into_owned())),
            })
            .collect();
        if vaults.is_empty() {
            return Err(config_error(format!(
                "entry {position} ({name}): needs &vaults=<vault>[,<vault>]: the vaults this rotator serves (a \
                 rotator with no binding is not registered)"
            )));
        }
        let names = match names.as_deref().map(NameFilter::parse) {
            None => NameFilter::default(),
            Some(Ok(filter)) => filter,
            Some(Err(bad)) => {
                return Err(config_error(format!(
                    "entry {position} ({name}): names= entry '{bad}' is not a secret name or name prefix*"
                )));
            }
        };
        url.set_query(None);
        if !kept.is_empty() {
            url.query_pairs_mut().extend_pairs(kept);
        }
        let secret = secret.filter(|s| s.len() >= MIN_SECRET_LEN).ok_or_else(|| {
            config_error(format!(
                "entry {position} ({name}): needs ?secret=<signing secret of at least {MIN_SECRET_LEN} characters>"
            ))
        })?;
        if rotators.insert(name.clone(), Rotator { url, secret, vaults, names }).is_some() {
            return Err(config_error(format!("entry {position}: the name '{name}' is used twice")));
        }
    }
    Ok(rotators)
}

/// A rotator's answer to `create`.
#[derive(Deserialize)]
struct Created {
    /// The new credential.
    value: Option<String>,
    /// Or: the rotator changed the credential itself and this references it (what the secret will hold).
    reference: Option<String>,
    /// The new `CredentialId`, for rotators that alternate credentials.
    credential_id: Option<String>,
}

impl Webhook {
    /// The rotators of `raw` (`KEYTURN_WEBHOOK_ROTATORS`), reached over TLS trusting the platform's roots
    /// plus the PEM bundle at `ca_file`; pending values are kept in `vault`.
    pub fn new(
        raw: Option<&SecretString>,
        vault: Arc<dyn KeyVault>,
        ca_file: Option<&Path>,
    ) -> Result<Self, ProviderError> {
        let rotators = parse_rotators(raw)?;
        let setup = |message: String| ProviderError { provider: NAME, message, retryable: false };
        // The process's shared trust roots (keyturn-tls): one read of the system store for every client.
        let roots = keyturn_tls::TrustRoots::for_ca_file(ca_file).map_err(|e| setup(e.to_string()))?;
        let tls = roots
            .client_config(keyturn_tls::Alpn::Http)
            .map_err(|e| setup(format!("building the TLS configuration: {e}")))?;
        let builder = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            // A signed request is for the configured URL only; a redirect could send it (and the pending
            // credential of a test request) elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .tls_backend_preconfigured(tls);
        let http = builder.build().map_err(|e| setup(format!("building the HTTP client: {e}")))?;
        Ok(Self { rotators, http, home: PendingHome::new(vault, NAME) })
    }

    fn error(message: impl Into<String>, retryable: bool) -> ProviderError {
        ProviderError { provider: NAME, message: message.into(), retryable }
    }

    fn rotator(&self, ctx: &RotationContext<'_>) -> Result<(&str, &Rotator), ProviderError> {
        let name = tag(&ctx.current.properties.tags, WEBHOOK).map(str::to_ascii_lowercase).ok_or_else(|| {
            Self::error(format!("tag {WEBHOOK} must name one of the rotators in KEYTURN_WEBHOOK_ROTATORS"), false)
        })?;
        let (name, rotator) = self.rotators.get_key_value(&name).ok_or_else(|| {
            let known: Vec<&str> = self.rotators.keys().map(String::as_str).collect();
            Self::error(
                format!(
                    "tag {WEBHOOK}: '{name}' is not a configured rotator (KEYTURN_WEBHOOK_ROTATORS has: {})",
                    if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                ),
                false,
            )
        })?;
        let vault = ctx.vault.to_ascii_lowercase();
        if !rotator.vaults.contains(&vault) || !rotator.names.matches(ctx.name) {
            return Err(Self::error(
                format!(
                    "rotator '{name}' is not bound to secret '{}' in vault '{}': its KEYTURN_WEBHOOK_ROTATORS entry \
                     serves vaults={} with its names= filter; nothing was sent to it",
                    ctx.name,
                    ctx.vault,
                    rotator.vaults.join(",")
                ),
                false,
            ));
        }
        Ok((name.as_str(), rotator))
    }

    /// The request body common to every call, plus `extra`.
    fn body(ctx: &RotationContext<'_>, kind: &str, extra: serde_json::Value) -> serde_json::Value {
        let mut body = serde_json::json!({
            "type": kind,
            "rotation_id": rotation_id(ctx),
            "vault": ctx.vault,
            "secret": ctx.name,
            "current_version": ctx.current.properties.version,
            "event_id": ctx.event_id,
            "credential_id": tag(&ctx.current.properties.tags, CREDENTIAL_ID),
            "provider_address": ctx.policy.provider_address,
            "requested_at": ctx.now.to_rfc3339(),
        });
        if let (Some(body), serde_json::Value::Object(extra)) = (body.as_object_mut(), extra) {
            body.extend(extra);
        }
        body
    }

    /// POSTs a signed body to the rotator; returns the response body of a 2xx.
    async fn call(&self, ctx: &RotationContext<'_>, body: &serde_json::Value) -> Result<Vec<u8>, ProviderError> {
        let (name, rotator) = self.rotator(ctx)?;
        let bytes = serde_json::to_vec(body).map_err(|e| Self::error(format!("encoding the request: {e}"), false))?;
        let signature =
            keyturn_notify::sign(rotator.secret.expose().as_bytes(), chrono::Utc::now().timestamp(), &bytes);
        let kind = body["type"].as_str().unwrap_or_default().to_owned();
        let doing = format!("rotator '{name}' ({kind})");
        let response = self
            .http
            .post(rotator.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(keyturn_notify::SIGNATURE_HEADER, signature)
            .header(keyturn_notify::EVENT_ID_HEADER, ctx.event_id)
            .header(IDEMPOTENCY_HEADER, rotation_id(ctx))
            .body(bytes)
            .send()
            .await
            // reqwest's message names the URL, whose query may carry an access token (`code=`, `sig=`): the
            // rotator's name says which one.
            .map_err(|e| Self::error(format!("{doing}: unreachable: {}", e.without_url()), true))?;
        let status = response.status();
        if !status.is_success() {
            // The body is never quoted: a rotator's error page could echo anything.
            let retryable = matches!(status.as_u16(), 408 | 409 | 425 | 429 | 500..=599);
            return Err(Self::error(format!("{doing}: answered HTTP {}", status.as_u16()), retryable));
        }
        // The limit holds while reading: a rotator (or whoever answers in its place) cannot make keyturn buffer
        // more than MAX_RESPONSE bytes.
        let too_large = || Self::error(format!("{doing}: the answer is larger than {MAX_RESPONSE} bytes"), false);
        if response.content_length().is_some_and(|n| n > MAX_RESPONSE as u64) {
            return Err(too_large());
        }
        let mut response = response;
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| Self::error(format!("{doing}: reading the answer: {}", e.without_url()), true))?
        {
            if body.len() + chunk.len() > MAX_RESPONSE {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// What is wrong with a JSON answer, without quoting it: serde_json's type errors quote the offending value
/// (`invalid type: integer `123456``), which may be the credential.
fn json_problem(error: &serde_json::Error) -> String {
    let kind = match error.classify() {
        serde_json::error::Category::Io => "could not be read",
        serde_json::error::Category::Syntax => "not valid JSON",
        serde_json::error::Category::Data => "a member has the wrong type or is missing",
        serde_json::error::Category::Eof => "cut short",
    };
    format!("{kind}, at line {} column {}", error.line(), error.column())
}

/// The id of one rotation, the same on every attempt: the version it replaces.
fn rotation_id(ctx: &RotationContext<'_>) -> String {
    format!("{}/{}/{}", ctx.vault, ctx.name, ctx.current.properties.version)
}

impl Provider for Webhook {
    fn name(&self) -> &'static str {
        NAME
    }

    fn create_pending<'a>(&'a self, ctx: &'a RotationContext<'a>) -> ProviderFuture<'a, Pending> {
        Box::pin(async move {
            self.rotator(ctx)?;
            if let Some(resumed) = self.home.resume(ctx).await? {
                return Ok(resumed);
            }
            let body = Self::body(ctx, "keyturn.rotation.create", serde_json::json!({}));
            let answer = self.call(ctx, &body).await?;
            let created: Created = serde_json::from_slice(&answer).map_err(|e| {
                Self::error(format!("the rotator's answer is not the documented JSON ({})", json_problem(&e)), false)
            })?;
            let value = match (created.value, created.reference) {
                (Some(value), None) | (None, Some(value)) if !value.is_empty() => SecretString::new(value),
                _ => {
                    return Err(Self::error(
                        "the rotator's answer must carry exactly one non-empty 'value' or 'reference'",
                        false,
                    ));
                }
            };
            let mut tags = Tags::new();
            if let Some(id) = created.credential_id.filter(|id| !id.trim().is_empty()) {
                tags.insert(CREDENTIAL_ID.to_owned(), id.trim().to_owned());
            }
            let pending = Pending { value, tags };
            self.home.store(ctx, &pending).await?;
            Ok(pending)
        })
    }

    fn test_pending<'a>(&'a self, ctx: &'a RotationContext<'a>, pending: &'a Pending) -> ProviderFuture<'a, ()> {
        Box::pin(async move {
            let body = Self::body(ctx, "keyturn.rotation.test", serde_json::json!({ "value": pending.value.expose() }));
            self.call(ctx, &body).await.map(|_| ())
        })
    }

    fn finish<'a>(&'a self, ctx: &'a RotationContext<'a>, promoted: &'a SecretProperties) -> ProviderFuture<'a, ()> {
        self.home.finish(ctx, promoted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<BTreeMap<String, Rotator>, ProviderError> {
        parse_rotators(Some(&SecretString::new(raw.to_owned())))
    }

    #[test]
    fn rotators_parse_with_the_secret_taken_out_of_the_url() {
        let rotators =
            parse(" Billing=https://r.example/rotate?v=2&secret=0123456789abcdef&vaults=KV-one,kv-two ; crm=https://crm.example:8443/k?secret=fedcba9876543210&vaults=kv-one&names=crm-*,api ")
                .unwrap();
        assert_eq!(rotators.keys().collect::<Vec<_>>(), ["billing", "crm"]);
        assert_eq!(rotators["billing"].url.as_str(), "https://r.example/rotate?v=2");
        assert_eq!(rotators["billing"].secret.expose(), "0123456789abcdef");
        assert_eq!(rotators["crm"].url.as_str(), "https://crm.example:8443/k");
        assert_eq!(rotators["billing"].vaults, ["kv-one", "kv-two"]);
        assert!(rotators["billing"].names.matches("anything"));
        assert!(rotators["crm"].names.matches("crm-token") && rotators["crm"].names.matches("API"));
        assert!(!rotators["crm"].names.matches("billing-token"));
        assert!(parse_rotators(None).unwrap().is_empty());
    }

    #[test]
    fn a_type_error_in_the_answer_never_quotes_it() {
        let error = serde_json::from_slice::<Created>(br#"{"value": 123456}"#).err().unwrap();
        assert!(error.to_string().contains("123456"), "serde_json quotes it: {error}");
        let said = json_problem(&error);
        assert!(!said.contains("123456"), "{said}");
        assert!(said.contains("wrong type"), "{said}");
    }

    #[test]
    fn bad_entries_are_named_without_their_secret() {
        for (raw, expected) in [
            ("billing", "entry 1 is not name=https://url"),
            ("b=http://r.example/?secret=0123456789abcdef", "must be an https URL"),
            ("b=https://r.example/?vaults=kv", "needs ?secret="),
            ("b=https://r.example/?secret=short-secret&vaults=kv", "needs ?secret="),
            ("b=https://r.example/?secret=0123456789abcdef", "needs &vaults="),
            ("b=https://r.example/?secret=0123456789abcdef&vaults=kv&names=a%20b", "names= entry 'a b'"),
            (
                "a=https://a.example/?secret=0123456789abcdef&vaults=kv;a=https://b.example/?secret=0123456789abcdef&vaults=kv",
                "used twice",
            ),
            ("a b=https://a.example/?secret=0123456789abcdef&vaults=kv", "letters, digits and hyphens"),
        ] {
            let error = parse(raw).err().unwrap();
            assert!(error.message.contains(expected), "{raw}: {error}");
            assert!(!error.message.contains("0123456789abcdef") && !error.message.contains("short-secret"), "{error}");
            assert!(!error.retryable);
        }
    }
    /// A rotator (or whoever answers at its address) that streams an endless chunked body, counting what it
    /// could write before keyturn hung up: a limit checked only after reading would never return.
    async fn endless_answer(ca: &keyturn_local::tls::LocalCa) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let written = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = written.clone();
        let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config());
        tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(socket).await.unwrap();
            let mut request = vec![0u8; 64 * 1024];
            let _ = tls.read(&mut request).await;
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
            if tls.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let chunk = format!("4000\r\n{}\r\n", "x".repeat(0x4000));
            while tls.write_all(chunk.as_bytes()).await.is_ok() {
                counter.fetch_add(0x4000, std::sync::atomic::Ordering::SeqCst);
            }
        });
        (port, written)
    }

    #[tokio::test]
    async fn a_too_large_answer_is_refused_while_reading_and_no_error_shows_the_url_query() {
        use keyturn_vault::model::{SecretProperties, SecretVersion};
        let dir = tempfile::tempdir().unwrap();
        let ca = keyturn_local::tls::LocalCa::generate(dir.path(), &[]).unwrap();
        let (port, written) = endless_answer(&ca).await;
        // A port nothing listens on, for the unreachable rotator.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let raw = format!(
            "big=https://127.0.0.1:{port}/rotate?code=fn-code-0123456789&secret=0123456789abcdef&vaults=kv;\
             gone=https://127.0.0.1:{closed}/rotate?sig=sas-sig-0123456789&secret=0123456789abcdef&vaults=kv"
        );
        let vault: Arc<dyn KeyVault> = Arc::new(keyturn_vault::testing::FakeVault::new(&["kv"]));
        let webhook = Webhook::new(Some(&SecretString::new(raw)), vault, Some(ca.ca_pem_path())).unwrap();
        for (rotator, retryable, says) in [("big", false, "larger than 65536 bytes"), ("gone", true, "unreachable")] {
            let tags: Tags = [
                ("KeyturnRotation".to_owned(), "webhook".to_owned()),
                ("ValidityPeriodDays".to_owned(), "30".to_owned()),
                (WEBHOOK.to_owned(), rotator.to_owned()),
            ]
            .into_iter()
            .collect();
            let policy = crate::Policy::from_tags(keyturn_events::ObjectKind::Secret, &tags).unwrap();
            let current = SecretVersion {
                properties: SecretProperties {
                    version: "0123456789abcdef0123456789abcdef".into(),
                    content_type: None,
                    tags,
                    enabled: true,
                    not_before: None,
                    expires: None,
                },
                value: SecretString::new("current-value".into()),
            };
            let ctx = RotationContext {
                vault: "kv",
                name: "api-token",
                current: &current,
                policy: &policy,
                event_id: "e1",
                now: chrono::Utc::now(),
            };
            let error = tokio::time::timeout(Duration::from_secs(20), webhook.create_pending(&ctx))
                .await
                .expect("the answer was refused while reading, not read to its (missing) end")
                .unwrap_err();
            assert!(error.message.contains(says), "{rotator}: {error}");
            assert_eq!(error.retryable, retryable, "{rotator}: {error}");
            for query in ["code=", "fn-code-0123456789", "sig=", "sas-sig-0123456789", "0123456789abcdef"] {
                assert!(!error.to_string().contains(query), "{rotator}: the URL's query is shown: {error}");
            }
        }
        // keyturn stopped reading just past the limit: the server could not push much more than that (the
        // socket buffers hold some), nowhere near the megabytes an unbounded read would take.
        let sent = written.load(std::sync::atomic::Ordering::SeqCst);
        assert!(sent >= MAX_RESPONSE, "the server wrote only {sent} bytes: the limit was not reached");
        assert!(sent < 64 * MAX_RESPONSE, "the server wrote {sent} bytes before keyturn hung up");
    }
}
