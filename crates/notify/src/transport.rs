//! Sending one rendered notification over one channel: an HTTPS POST (webhook, Slack, Teams) or an SMTP
//! submission. Whatever comes back from outside is scrubbed of the channel's secrets before it is returned.

use std::error::Error as StdError;
use std::time::Duration;

use chrono::Utc;
use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use reqwest::header::CONTENT_TYPE;

use crate::channel::{ChannelConfig, SmtpTarget, SmtpTls, Target};
use crate::digest::Digest;
use crate::message::Notification;
use crate::render;
use crate::signature::{EVENT_ID_HEADER, SIGNATURE_HEADER, sign};

/// How much of a receiver's error response is shown (after scrubbing).
const DETAIL_MAX_CHARS: usize = 200;
/// How much of a receiver's error response is read at all.
const BODY_READ_MAX_BYTES: usize = 4096;

/// Why one channel did not accept a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The channel did not answer within its timeout.
    TimedOut,
    /// The receiver answered and refused (an HTTP status outside 2xx, an SMTP 4xx/5xx reply).
    Refused,
    /// The receiver could not be reached or spoken to (DNS, connection, TLS, protocol).
    Unreachable,
}

/// A failure with its details, scrubbed of the channel's secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) kind: FailureKind,
    pub(crate) detail: String,
}

/// How a channel sends.
pub(crate) enum Sender {
    Http(reqwest::Client),
    Smtp(Box<LazySmtp>),
}

/// An SMTP transport built on the first email sent: lettre builds its own TLS verifier (it takes no rustls
/// configuration from outside) and building one reads the system trust store, which a process that never sends
/// an email must not pay for at start. Everything that can be wrong with the settings is checked when the
/// notifier is built ([`smtp_sender`]); building the transport again here can then only repeat that success.
pub(crate) struct LazySmtp {
    timeout: Duration,
    extra_roots: Option<Vec<u8>>,
    transport: std::sync::OnceLock<Result<AsyncSmtpTransport<Tokio1Executor>, String>>,
}

impl LazySmtp {
    /// The transport for `target`, the channel's own (the notifier pairs each channel with its sender).
    fn transport(&self, target: &SmtpTarget) -> Result<&AsyncSmtpTransport<Tokio1Executor>, String> {
        self.transport
            .get_or_init(|| {
                smtp_transport(target, self.timeout, self.extra_roots.as_deref(), true).map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Http(_) => f.write_str("Sender::Http"),
            Self::Smtp(_) => f.write_str("Sender::Smtp"),
        }
    }
}

/// The sender of one email channel. `extra_roots` (PEM) are trusted beside the platform's roots. The settings
/// (and the roots) are checked now; the transport itself is built on the first email ([`LazySmtp`]).
pub(crate) fn smtp_sender(
    target: &SmtpTarget,
    timeout: Duration,
    extra_roots: Option<&[u8]>,
) -> Result<Sender, lettre::transport::smtp::Error> {
    smtp_transport(target, timeout, extra_roots, false)?;
    Ok(Sender::Smtp(Box::new(LazySmtp {
        timeout,
        extra_roots: extra_roots.map(<[u8]>::to_vec),
        transport: std::sync::OnceLock::new(),
    })))
}

/// Builds the transport of one email channel; with `tls_roots` false, everything but the TLS verifier (which
/// reads the system store), so the settings are checked without that cost.
fn smtp_transport(
    target: &SmtpTarget,
    timeout: Duration,
    extra_roots: Option<&[u8]>,
    tls_roots: bool,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, lettre::transport::smtp::Error> {
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(target.host.clone())
        .port(target.port)
        .timeout(Some(timeout));
    if target.tls != SmtpTls::None {
        let mut params = TlsParameters::builder(target.host.clone());
        if let Some(pem) = extra_roots {
            params = params.add_root_certificate(Certificate::from_pem(pem)?);
        }
        if tls_roots {
            let params = params.build_rustls()?;
            builder = builder.tls(match target.tls {
                SmtpTls::Implicit => Tls::Wrapper(params),
                _ => Tls::Required(params),
            });
        }
    }
    if let Some((user, password)) = &target.credentials {
        builder = builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
    }
    Ok(builder.build())
}

/// Delivers `n` over `channel` once. The caller bounds it in time.
pub(crate) async fn deliver(channel: &ChannelConfig, sender: &Sender, n: &Notification) -> Result<(), Failure> {
    let result = match (&channel.target, sender) {
        (Target::Webhook { url, signing_secret }, Sender::Http(client)) => {
            post_signed(client, url, signing_secret, &n.event_id, &n.to_json()).await
        }
        (Target::Slack { url }, Sender::Http(client)) => post(client.post(url.expose()).json(&render::slack(n))).await,
        (Target::Teams { url }, Sender::Http(client)) => post(client.post(url.expose()).json(&render::teams(n))).await,
        (Target::Email(target), Sender::Smtp(transport)) => {
            send_email(target, transport, render::email(n), &n.event_id).await
        }
        (Target::PagerDuty(target), Sender::Http(client)) => crate::pagerduty::deliver(target, client, n).await,
        (Target::Opsgenie(target), Sender::Http(client)) => crate::opsgenie::deliver(target, client, n).await,
        _ => Err(mismatch()),
    };
    result.map_err(|f| Failure { detail: channel.scrubber.clean(&f.detail, DETAIL_MAX_CHARS), ..f })
}

/// Delivers one digest message over `channel` once. A pager takes no digest (it pages object versions one
/// by one): asking is refused, never silently dropped.
pub(crate) async fn deliver_digest(channel: &ChannelConfig, sender: &Sender, d: &Digest) -> Result<(), Failure> {
    let result = match (&channel.target, sender) {
        (Target::Webhook { url, signing_secret }, Sender::Http(client)) => {
            post_signed(client, url, signing_secret, &d.id, &d.to_json()).await
        }
        (Target::Slack { url }, Sender::Http(client)) => {
            post(client.post(url.expose()).json(&render::slack_digest(d))).await
        }
        (Target::Teams { url }, Sender::Http(client)) => {
            post(client.post(url.expose()).json(&render::teams_digest(d))).await
        }
        (Target::Email(target), Sender::Smtp(transport)) => {
            send_email(target, transport, render::email_digest(d), &d.id).await
        }
        (Target::PagerDuty(_) | Target::Opsgenie(_), _) => Err(Failure {
            kind: FailureKind::Refused,
            detail: "a pager takes pages about one object version, not digests".into(),
        }),
        _ => Err(mismatch()),
    };
    result.map_err(|f| Failure { detail: channel.scrubber.clean(&f.detail, DETAIL_MAX_CHARS), ..f })
}

/// The notifier pairs each target with the sender built for it; a mismatch is a bug worth a loud error rather
/// than a panic in the middle of an invocation.
fn mismatch() -> Failure {
    Failure { kind: FailureKind::Unreachable, detail: "internal error: channel and sender disagree".into() }
}

/// The generic webhook: `body` as JSON, signed with the channel's secret, with its id in a header.
async fn post_signed(
    client: &reqwest::Client,
    url: &crate::secret::Secret,
    signing_secret: &crate::secret::Secret,
    id: &str,
    body: &serde_json::Value,
) -> Result<(), Failure> {
    // Serializing a `Value` cannot fail (its map keys are strings), so the default is never used.
    let body = serde_json::to_vec(body).unwrap_or_default();
    let signature = sign(signing_secret.expose().as_bytes(), Utc::now().timestamp(), &body);
    let request = client
        .post(url.expose())
        .header(CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, signature)
        .header(EVENT_ID_HEADER, id)
        .body(body);
    post(request).await
}

async fn post(request: reqwest::RequestBuilder) -> Result<(), Failure> {
    let mut response = request.send().await.map_err(|e| Failure {
        kind: if e.is_timeout() { FailureKind::TimedOut } else { FailureKind::Unreachable },
        // Without the URL: it is the channel's secret.
        detail: error_chain(&e.without_url()),
    })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let mut body = Vec::new();
    while body.len() < BODY_READ_MAX_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&body);
    let detail = if text.trim().is_empty() { format!("HTTP {status}") } else { format!("HTTP {status}: {text}") };
    Err(Failure { kind: FailureKind::Refused, detail })
}

/// An error and its sources, joined: reqwest's own message alone ("error sending request") hides the cause.
pub(crate) fn error_chain(error: &dyn StdError) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    // Libraries often repeat their cause in their own message ("Connection error: Connection error: ...").
    let mut segments: Vec<&str> = Vec::new();
    let joined = parts.join(": ");
    for segment in joined.split(": ") {
        if segments.last() != Some(&segment) {
            segments.push(segment);
        }
    }
    segments.join(": ")
}

/// `X-Keyturn-Event-Id`, so mail rules and receivers can deduplicate without parsing the body.
#[derive(Debug, Clone)]
struct EventIdHeader(String);

impl Header for EventIdHeader {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str(EVENT_ID_HEADER)
    }
    fn parse(s: &str) -> Result<Self, Box<dyn StdError + Send + Sync>> {
        Ok(Self(s.to_owned()))
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// An event id as a header value: only characters that cannot fold, inject or need encoding.
fn header_safe(id: &str) -> String {
    id.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')).take(200).collect()
}

fn build_email(target: &SmtpTarget, email: render::Email, id: &str) -> Result<Message, lettre::error::Error> {
    let mut builder =
        Message::builder().from(target.from.clone()).subject(email.subject).header(EventIdHeader(header_safe(id)));
    for to in &target.to {
        builder = builder.to(Mailbox::clone(to));
    }
    builder.multipart(
        MultiPart::alternative()
            .singlepart(SinglePart::builder().header(ContentType::TEXT_PLAIN).body(email.text))
            .singlepart(SinglePart::builder().header(ContentType::TEXT_HTML).body(email.html)),
    )
}

async fn send_email(target: &SmtpTarget, lazy: &LazySmtp, email: render::Email, id: &str) -> Result<(), Failure> {
    let transport = lazy.transport(target).map_err(|e| Failure {
        kind: FailureKind::Unreachable,
        detail: format!("the SMTP transport could not be built: {e}"),
    })?;
    let message = build_email(target, email, id)
        .map_err(|e| Failure { kind: FailureKind::Refused, detail: format!("the email could not be built: {e}") })?;
    transport.send(message).await.map(|_| ()).map_err(|e| Failure {
        kind: if e.is_timeout() {
            FailureKind::TimedOut
        } else if e.is_transient() || e.is_permanent() {
            FailureKind::Refused
        } else {
            FailureKind::Unreachable
        },
        detail: error_chain(&e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Action;
    use keyturn_events::{KeyVaultEventType, ObjectKind, VaultObject};

    #[test]
    fn error_chains_are_joined_without_repeating_a_cause() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "Connection error: Connection error: {}", self.0)
            }
        }
        impl StdError for Outer {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let error = Outer(std::io::Error::other("invalid peer certificate: UnknownIssuer"));
        assert_eq!(error_chain(&error), "Connection error: invalid peer certificate: UnknownIssuer");
    }

    #[test]
    fn event_ids_become_safe_header_values() {
        assert_eq!(header_safe("17381e47-8a73-bae1-010e-51e730cacb66"), "17381e47-8a73-bae1-010e-51e730cacb66");
        assert_eq!(header_safe("evil\r\nBcc: x@y.z"), "evilBcc:xy.z");
    }

    #[test]
    fn an_email_is_multipart_alternative_with_the_event_id_header() {
        let object = VaultObject::new("kv1", ObjectKind::Key, "signing", Some("v9"), None, None).unwrap();
        let n = Notification::for_object(
            "e-1",
            KeyVaultEventType::KeyNewVersionCreated,
            &object,
            Action::Informed { summary: "A new version exists.".into() },
        );
        let target = SmtpTarget {
            host: "mail.example".into(),
            port: 587,
            tls: SmtpTls::StartTls,
            credentials: None,
            from: "keyturn <kt@example.com>".parse().unwrap(),
            to: vec!["a@example.com".parse().unwrap(), "b@example.com".parse().unwrap()],
        };
        let text =
            String::from_utf8(build_email(&target, render::email(&n), &n.event_id).unwrap().formatted()).unwrap();
        assert!(text.contains("Subject: [keyturn INFO] Key signing has a new version (vault kv1)"), "{text}");
        assert!(text.contains("X-Keyturn-Event-Id: e-1"), "{text}");
        assert!(text.contains("To: a@example.com, b@example.com"), "{text}");
        assert!(text.contains("multipart/alternative"), "{text}");
        assert!(text.contains("Content-Type: text/plain") && text.contains("Content-Type: text/html"), "{text}");
    }
}
