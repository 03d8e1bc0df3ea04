//! The channel list's grammar (docs/notifications.md, "Channel URLs"): one setting, several URLs, each naming
//! a kind of channel by its scheme. Parsing checks everything that can be checked without sending, and its
//! errors name a channel by position and `scheme://host` only, never by its full text.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use lettre::message::Mailbox;
use percent_encoding::percent_decode_str;
use url::Url;

use crate::secret::{Scrubber, Secret};

/// The longest per-channel timeout accepted: a notification must fit in one function invocation.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(300);
/// A webhook signing secret shorter than this is refused: it could be guessed.
pub const MIN_SIGNING_SECRET_LEN: usize = 16;

/// The host of Slack incoming webhooks; a plain `https://` URL on it is a Slack channel.
const SLACK_HOST: &str = "hooks.slack.com";
/// Hosts of Teams workflow ("Post to a channel when a webhook request is received") URLs; a plain `https://`
/// URL under one of them is a Teams channel.
const TEAMS_HOST_SUFFIXES: &[&str] = &[".logic.azure.com", ".powerplatform.com"];

/// The schemes a channel may start with (lowercase); a `,` or `;` splits two channels only when one of
/// these follows it.
const SCHEMES: &[&str] = &[
    "webhook+https",
    "webhook+http",
    "slack",
    "slack+https",
    "slack+http",
    "teams+https",
    "teams+http",
    "smtp",
    "smtps",
    "pagerduty",
    "pagerduty+https",
    "pagerduty+http",
    "opsgenie",
    "opsgenie+https",
    "opsgenie+http",
    "https",
    "http",
];

/// What a channel is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    /// keyturn's own JSON, signed (`webhook+https://`).
    Webhook,
    /// A Slack incoming webhook, Block Kit message (`slack://`).
    Slack,
    /// A Teams workflow webhook, Adaptive Card (`teams+https://`).
    Teams,
    /// Email over SMTP (`smtp://`, `smtps://`).
    Email,
    /// PagerDuty Events API v2 (`pagerduty://<routing-key>@events.pagerduty.com`).
    PagerDuty,
    /// Opsgenie Alert API (`opsgenie://<api-key>@api.opsgenie.com`).
    Opsgenie,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Slack => "slack",
            Self::Teams => "teams",
            Self::Email => "email",
            Self::PagerDuty => "pagerduty",
            Self::Opsgenie => "opsgenie",
        }
    }
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A channel's identity for logs, errors and deduplication: its position in the list (1-based) and
/// `scheme://host[:port]`, which carry no secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChannelId {
    index: usize,
    kind: ChannelKind,
    endpoint: String,
}

impl ChannelId {
    /// The position in the channel list, from 1.
    pub fn index(&self) -> usize {
        self.index
    }
    pub fn kind(&self) -> ChannelKind {
        self.kind
    }
    /// `scheme://host[:port]`, e.g. `slack+https://hooks.slack.com` or `smtp://mail.example.com:587`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

impl ChannelId {
    pub(crate) fn new(index: usize, kind: ChannelKind, endpoint: String) -> Self {
        Self { index, kind, endpoint }
    }
}

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "channel {} ({})", self.index, self.endpoint)
    }
}

/// A channel list that cannot be used; the message names the channel by position and `scheme://host` only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("notification channel {index}{}: {reason}", endpoint.as_ref().map(|e| format!(" ({e})")).unwrap_or_default())]
pub struct ChannelError {
    index: usize,
    endpoint: Option<String>,
    reason: String,
}

impl ChannelError {
    pub(crate) fn new(index: usize, endpoint: Option<&str>, reason: impl Into<String>) -> Self {
        Self { index, endpoint: endpoint.map(str::to_owned), reason: reason.into() }
    }
    /// The position of the failing channel in the list, from 1.
    pub fn index(&self) -> usize {
        self.index
    }
}

/// One parsed channel.
#[derive(Debug)]
pub(crate) struct ChannelConfig {
    pub(crate) id: ChannelId,
    /// `None`: the notifier's default.
    pub(crate) timeout: Option<Duration>,
    pub(crate) target: Target,
    pub(crate) scrubber: Scrubber,
}

/// Where and how a channel delivers.
#[derive(Debug)]
pub(crate) enum Target {
    Webhook { url: Secret, signing_secret: Secret },
    Slack { url: Secret },
    Teams { url: Secret },
    Email(SmtpTarget),
    PagerDuty(crate::pagerduty::PagerDutyTarget),
    Opsgenie(crate::opsgenie::OpsgenieTarget),
}

#[derive(Debug)]
pub(crate) struct SmtpTarget {
    /// A DNS name or an IP address without brackets.
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) tls: SmtpTls,
    pub(crate) credentials: Option<(String, Secret)>,
    pub(crate) from: Mailbox,
    pub(crate) to: Vec<Mailbox>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which the server must offer (`smtp://`, the default).
    StartTls,
    /// TLS from the first byte (`smtps://`).
    Implicit,
    /// No TLS at all: loopback hosts only (a test server or a local relay).
    None,
}

/// Parses a channel list: URLs separated by whitespace, or by `,` / `;` directly followed by a channel scheme.
pub(crate) fn parse_channels(list: &str) -> Result<Vec<ChannelConfig>, ChannelError> {
    split_channels(list).into_iter().enumerate().map(|(i, text)| parse_channel(i + 1, text)).collect()
}

/// The channel texts of a list. A `,` or `;` separates only where a known scheme follows it, so one inside a
/// URL (a Teams signature, a list of email recipients) never splits it.
fn split_channels(list: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for token in list.split_whitespace() {
        let mut start = 0;
        for (i, c) in token.char_indices() {
            if (c == ',' || c == ';') && starts_with_scheme(&token[i + 1..]) {
                out.push(&token[start..i]);
                start = i + 1;
            }
        }
        out.push(&token[start..]);
    }
    out.into_iter().map(|t| t.trim_matches([',', ';'])).filter(|t| !t.is_empty()).collect()
}

fn starts_with_scheme(text: &str) -> bool {
    text.split_once("://").is_some_and(|(scheme, _)| SCHEMES.contains(&scheme.to_ascii_lowercase().as_str()))
}

/// How an Azure app setting reads when its Key Vault reference could not be resolved: the reference itself.
const KEY_VAULT_REFERENCE_PREFIX: &str = "@microsoft.keyvault(";

fn parse_channel(index: usize, text: &str) -> Result<ChannelConfig, ChannelError> {
    if text.to_ascii_lowercase().starts_with(KEY_VAULT_REFERENCE_PREFIX) {
        return Err(ChannelError::new(
            index,
            None,
            "an unresolved Key Vault reference (@Microsoft.KeyVault(...)): the function app could not read the \
             secret; check that its identity may read secrets in that vault and the reference's status in the portal",
        ));
    }
    let Some((scheme, rest)) = text.split_once("://") else {
        return Err(ChannelError::new(index, None, "not a URL: expected <scheme>://... (see docs/notifications.md)"));
    };
    let scheme = scheme.to_ascii_lowercase();
    let (kind, inner_scheme) = match scheme.as_str() {
        "webhook+https" => (Some(HttpKind::Webhook), "https"),
        "webhook+http" => (Some(HttpKind::Webhook), "http"),
        "slack" | "slack+https" => (Some(HttpKind::Slack), "https"),
        "slack+http" => (Some(HttpKind::Slack), "http"),
        "teams+https" => (Some(HttpKind::Teams), "https"),
        "teams+http" => (Some(HttpKind::Teams), "http"),
        "https" => (None, "https"),
        "http" => (None, "http"),
        "smtp" | "smtps" => return parse_smtp(index, text, scheme == "smtps"),
        "pagerduty" | "pagerduty+https" => return crate::pagerduty::parse(index, text, "https", rest),
        "pagerduty+http" => return crate::pagerduty::parse(index, text, "http", rest),
        "opsgenie" | "opsgenie+https" => return crate::opsgenie::parse(index, text, "https", rest),
        "opsgenie+http" => return crate::opsgenie::parse(index, text, "http", rest),
        other => {
            return Err(ChannelError::new(
                index,
                None,
                format!(
                    "unknown scheme '{}': expected webhook+https, slack, teams+https, smtp, smtps, pagerduty or opsgenie",
                    other.chars().take(20).collect::<String>()
                ),
            ));
        }
    };
    parse_http(index, text, kind, &format!("{inner_scheme}://{rest}"))
}

/// `host[:port]` as written, for a channel's identity.
pub(crate) fn authority(url: &Url) -> String {
    match url.port() {
        Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_owned(),
    }
}

pub(crate) fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost") || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

pub(crate) fn parse_timeout(index: usize, endpoint: &str, value: &str) -> Result<Duration, ChannelError> {
    value
        .parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .filter(|d| !d.is_zero() && *d <= MAX_TIMEOUT)
        .ok_or_else(|| {
            ChannelError::new(
                index,
                Some(endpoint),
                format!("timeout='{value}' is not a number of seconds above 0 and at most {}", MAX_TIMEOUT.as_secs()),
            )
        })
}

/// The channel kinds delivered over HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HttpKind {
    Webhook,
    Slack,
    Teams,
}

impl HttpKind {
    fn channel_kind(self) -> ChannelKind {
        match self {
            Self::Webhook => ChannelKind::Webhook,
            Self::Slack => ChannelKind::Slack,
            Self::Teams => ChannelKind::Teams,
        }
    }
}

fn parse_http(index: usize, text: &str, kind: Option<HttpKind>, inner: &str) -> Result<ChannelConfig, ChannelError> {
    // url's messages describe the failure, never the input, so they are safe to show.
    let url = Url::parse(inner).map_err(|e| ChannelError::new(index, None, format!("not a valid URL: {e}")))?;
    let host = url.host_str().unwrap_or_default().to_owned();
    if host.is_empty() {
        return Err(ChannelError::new(index, None, "the URL has no host"));
    }
    let kind = match kind {
        Some(kind) => kind,
        None if host.eq_ignore_ascii_case(SLACK_HOST) => HttpKind::Slack,
        None if TEAMS_HOST_SUFFIXES.iter().any(|s| host.to_ascii_lowercase().ends_with(s)) => HttpKind::Teams,
        None => {
            return Err(ChannelError::new(
                index,
                Some(&format!("{}://{}", url.scheme(), authority(&url))),
                "cannot tell which kind of channel this is: write webhook+https://, slack+https:// or teams+https://",
            ));
        }
    };
    let endpoint = format!("{}+{}://{}", kind.channel_kind().as_str(), url.scheme(), authority(&url));
    if url.scheme() == "http" && !is_loopback(&host) {
        return Err(ChannelError::new(
            index,
            Some(&endpoint),
            "plain http is only accepted for loopback hosts (tests); use https",
        ));
    }

    // keyturn's own options are taken out of the query; every other parameter (a Teams signature, an API
    // version) goes to the receiver exactly as written.
    let mut timeout = None;
    let mut signing_secret = None;
    let mut kept = Vec::new();
    for pair in url.query().unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode_str(value).decode_utf8_lossy();
        match key {
            "timeout" => timeout = Some(parse_timeout(index, &endpoint, &value)?),
            "secret" if kind == HttpKind::Webhook => signing_secret = Some(Secret::new(value.into_owned())),
            _ => kept.push(pair),
        }
    }
    let mut called = url.clone();
    let kept_query = kept.join("&");
    called.set_query(if kept.is_empty() { None } else { Some(&kept_query) });

    let mut scrubber = Scrubber::default();
    scrubber.add(text);
    scrubber.add(inner);
    scrubber.add(called.as_str());
    scrubber.add(url.path());
    if let Some(password) = url.password() {
        scrubber.add(password);
        scrubber.add(&percent_decode_str(password).decode_utf8_lossy());
    }
    for (_, value) in url.query_pairs() {
        scrubber.add(&value);
    }
    for pair in &kept {
        scrubber.add(pair.split_once('=').map_or(*pair, |(_, v)| v));
    }

    let url = Secret::new(called.as_str());
    let target = match kind {
        HttpKind::Webhook => {
            let Some(signing_secret) = signing_secret else {
                return Err(ChannelError::new(
                    index,
                    Some(&endpoint),
                    format!(
                        "a webhook needs a signing secret: add ?secret=<at least {MIN_SIGNING_SECRET_LEN} characters>"
                    ),
                ));
            };
            if signing_secret.expose().chars().count() < MIN_SIGNING_SECRET_LEN {
                return Err(ChannelError::new(
                    index,
                    Some(&endpoint),
                    format!("the webhook signing secret is shorter than {MIN_SIGNING_SECRET_LEN} characters"),
                ));
            }
            scrubber.add(signing_secret.expose());
            Target::Webhook { url, signing_secret }
        }
        HttpKind::Slack => Target::Slack { url },
        HttpKind::Teams => Target::Teams { url },
    };
    Ok(ChannelConfig { id: ChannelId { index, kind: kind.channel_kind(), endpoint }, timeout, target, scrubber })
}

fn parse_smtp(index: usize, text: &str, implicit_tls: bool) -> Result<ChannelConfig, ChannelError> {
    let url = Url::parse(text).map_err(|e| ChannelError::new(index, None, format!("not a valid URL: {e}")))?;
    let host = url.host_str().unwrap_or_default().to_owned();
    if host.is_empty() {
        return Err(ChannelError::new(index, None, "the URL has no host"));
    }
    let port = url.port().unwrap_or(if implicit_tls { 465 } else { 587 });
    let endpoint = format!("{}://{host}:{port}", url.scheme());
    let err = |reason: String| ChannelError::new(index, Some(&endpoint), reason);

    let mut tls = if implicit_tls { SmtpTls::Implicit } else { SmtpTls::StartTls };
    let mut timeout = None;
    let mut from = None;
    let mut to = Vec::new();
    for (key, value) in url.query_pairs() {
        match key.as_ref() {
            "timeout" => timeout = Some(parse_timeout(index, &endpoint, &value)?),
            "from" => {
                from =
                    Some(value.parse::<Mailbox>().map_err(|e| err(format!("from='{value}' is not an address: {e}")))?)
            }
            "to" => {
                for address in value.split(',').map(str::trim).filter(|a| !a.is_empty()) {
                    to.push(
                        address
                            .parse::<Mailbox>()
                            .map_err(|e| err(format!("to='{address}' is not an address: {e}")))?,
                    );
                }
            }
            "tls" => {
                tls = match (value.as_ref(), implicit_tls) {
                    ("starttls", false) => SmtpTls::StartTls,
                    ("none", false) if is_loopback(&host) => SmtpTls::None,
                    ("none", false) => return Err(err("tls=none is only accepted for loopback hosts (tests)".into())),
                    ("implicit", true) => SmtpTls::Implicit,
                    (other, false) => return Err(err(format!("tls='{other}': expected starttls or none"))),
                    (other, true) => {
                        return Err(err(format!("tls='{other}': smtps:// always uses implicit TLS")));
                    }
                }
            }
            other => {
                return Err(err(format!("unknown option '{other}': expected from, to, tls or timeout")));
            }
        }
    }
    let from = from.ok_or_else(|| err("an email channel needs a sender: add ?from=<address>".into()))?;
    if to.is_empty() {
        return Err(err("an email channel needs at least one recipient: add &to=<address>".into()));
    }

    let mut scrubber = Scrubber::default();
    scrubber.add(text);
    let credentials = match (url.username(), url.password()) {
        ("", None) => None,
        ("", Some(_)) => return Err(err("a password without a user name".into())),
        (_, None) => return Err(err("a user name without a password".into())),
        (user, Some(password)) => {
            let password = percent_decode_str(password)
                .decode_utf8()
                .map_err(|_| err("the password is not valid percent-encoded UTF-8".into()))?;
            let user = percent_decode_str(user)
                .decode_utf8()
                .map_err(|_| err("the user name is not valid percent-encoded UTF-8".into()))?;
            scrubber.add(url.password().unwrap_or_default());
            scrubber.add(&password);
            Some((user.into_owned(), Secret::new(password.into_owned())))
        }
    };
    let bare_host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    Ok(ChannelConfig {
        id: ChannelId { index, kind: ChannelKind::Email, endpoint },
        timeout,
        target: Target::Email(SmtpTarget { host: bare_host, port, tls, credentials, from, to }),
        scrubber,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> ChannelConfig {
        let mut channels = parse_channels(text).unwrap();
        assert_eq!(channels.len(), 1, "{text}");
        channels.remove(0)
    }

    fn url_of(target: &Target) -> &str {
        match target {
            Target::Webhook { url, .. } | Target::Slack { url } | Target::Teams { url } => url.expose(),
            Target::Email(_) | Target::PagerDuty(_) | Target::Opsgenie(_) => panic!("not a chat or webhook channel"),
        }
    }

    #[test]
    fn channels_split_on_whitespace_and_on_separators_followed_by_a_scheme_only() {
        let list = "slack://hooks.slack.com/services/T/B/X,teams+https://a.logic.azure.com/w?sig=a,b;c\n\
                    smtp://mail.example.com?from=k@example.com&to=a@example.com,b@example.com ; \
                    webhook+https://r.example/h?secret=0123456789abcdef;";
        let channels = parse_channels(list).unwrap();
        let kinds: Vec<_> = channels.iter().map(|c| c.id.kind()).collect();
        assert_eq!(kinds, [ChannelKind::Slack, ChannelKind::Teams, ChannelKind::Email, ChannelKind::Webhook]);
        assert_eq!(url_of(&channels[1].target), "https://a.logic.azure.com/w?sig=a,b;c");
        let Target::Email(smtp) = &channels[2].target else { panic!() };
        assert_eq!(smtp.to.len(), 2);
        assert_eq!(channels.iter().map(|c| c.id.index()).collect::<Vec<_>>(), [1, 2, 3, 4]);
        assert!(parse_channels("  \n ").unwrap().is_empty());
    }

    #[test]
    fn plain_https_urls_are_recognised_by_host_and_others_must_say_their_kind() {
        assert_eq!(one("https://hooks.slack.com/services/T/B/X").id.kind(), ChannelKind::Slack);
        assert_eq!(
            one("https://prod-01.westeurope.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke?sig=x")
                .id
                .kind(),
            ChannelKind::Teams
        );
        assert_eq!(
            one("https://default0a.environment.api.powerplatform.com/powerautomate/x?sig=y").id.kind(),
            ChannelKind::Teams
        );
        let err = parse_channels("https://receiver.example/hook/t0ken").unwrap_err();
        assert!(err.to_string().contains("cannot tell which kind"), "{err}");
        assert!(!err.to_string().contains("t0ken"), "{err}");
    }

    #[test]
    fn keyturn_options_are_taken_out_and_the_receivers_own_parameters_kept_verbatim() {
        let c = one("teams+https://x.logic.azure.com/w?api-version=2016-06-01&sig=a%2Fb&timeout=2.5");
        assert_eq!(url_of(&c.target), "https://x.logic.azure.com/w?api-version=2016-06-01&sig=a%2Fb");
        assert_eq!(c.timeout, Some(Duration::from_millis(2500)));
        assert_eq!(c.id.endpoint(), "teams+https://x.logic.azure.com");

        let c = one("webhook+https://r.example:8443/h?secret=s3cr3t-s3cr3t-s3cr3t");
        let Target::Webhook { url, signing_secret } = &c.target else { panic!() };
        assert_eq!(url.expose(), "https://r.example:8443/h");
        assert_eq!(signing_secret.expose(), "s3cr3t-s3cr3t-s3cr3t");
        assert_eq!(c.id.to_string(), "channel 1 (webhook+https://r.example:8443)");
    }

    #[test]
    fn plain_http_is_for_loopback_only() {
        assert!(parse_channels("webhook+http://127.0.0.1:9/h?secret=0123456789abcdef").is_ok());
        assert!(parse_channels("slack+http://[::1]:9/services/x").is_ok());
        assert!(parse_channels("teams+http://localhost:9/x").is_ok());
        let err = parse_channels("slack+http://hooks.slack.com/services/T/B/X").unwrap_err();
        assert!(err.to_string().contains("only accepted for loopback"), "{err}");
        let err = parse_channels("smtp://mail.example.com?from=a@b.c&to=d@e.f&tls=none").unwrap_err();
        assert!(err.to_string().contains("loopback"), "{err}");
    }

    #[test]
    fn webhooks_need_a_long_enough_signing_secret() {
        let err = parse_channels("webhook+https://r.example/h").unwrap_err();
        assert!(err.to_string().contains("needs a signing secret"), "{err}");
        let err = parse_channels("webhook+https://r.example/h?secret=short-one").unwrap_err();
        assert!(err.to_string().contains("shorter than 16"), "{err}");
        assert!(!err.to_string().contains("short-one"), "{err}");
    }

    #[test]
    fn smtp_urls_carry_server_tls_credentials_and_addresses() {
        let c = one(
            "smtp://ops%40example.com:p%40ss%3Aword@mail.example.com?from=keyturn%20%3Ckt@example.com%3E&to=a@example.com&to=b@example.com",
        );
        let Target::Email(smtp) = &c.target else { panic!() };
        assert_eq!((smtp.host.as_str(), smtp.port, smtp.tls), ("mail.example.com", 587, SmtpTls::StartTls));
        let (user, password) = smtp.credentials.as_ref().unwrap();
        assert_eq!((user.as_str(), password.expose()), ("ops@example.com", "p@ss:word"));
        assert_eq!(smtp.from.to_string(), "keyturn <kt@example.com>");
        assert_eq!(smtp.to.len(), 2);
        assert_eq!(c.id.endpoint(), "smtp://mail.example.com:587");

        let c = one("smtps://u:pw@[::1]?from=a@b.c&to=d@e.f&timeout=3");
        let Target::Email(smtp) = &c.target else { panic!() };
        assert_eq!((smtp.host.as_str(), smtp.port, smtp.tls), ("::1", 465, SmtpTls::Implicit));
        assert_eq!(c.timeout, Some(Duration::from_secs(3)));
    }

    #[test]
    fn smtp_mistakes_are_named_without_the_password() {
        for (text, expected) in [
            ("smtp://u:hunter2-pw@m.example?to=a@b.c", "needs a sender"),
            ("smtp://u:hunter2-pw@m.example?from=a@b.c", "at least one recipient"),
            ("smtp://u:hunter2-pw@m.example?from=a@b.c&to=d@e.f&tls=ssl", "expected starttls or none"),
            ("smtps://u:hunter2-pw@m.example?from=a@b.c&to=d@e.f&tls=starttls", "always uses implicit TLS"),
            ("smtp://u:hunter2-pw@m.example?from=a@b.c&to=d@e.f&form=x", "unknown option 'form'"),
            ("smtp://u:hunter2-pw@m.example?from=a@b.c&to=d@e.f&timeout=0", "timeout='0'"),
            ("smtp://:hunter2-pw@m.example?from=a@b.c&to=d@e.f", "password without a user name"),
            ("smtp://u:hunter2-pw@m.example?from=nope&to=d@e.f", "from='nope'"),
        ] {
            let err = parse_channels(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
            assert!(err.contains("smtp") && err.contains("m.example"), "{err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn an_unresolved_key_vault_reference_is_recognised() {
        let err = parse_channels("@Microsoft.KeyVault(SecretUri=https://kv1.vault.azure.net/secrets/keyturn-notify/)")
            .unwrap_err();
        assert!(err.to_string().contains("unresolved Key Vault reference"), "{err}");
    }

    #[test]
    fn unknown_schemes_and_non_urls_are_refused_without_echoing_them() {
        let err = parse_channels("slack://hooks.slack.com/x ftp://files.example/t0ken").unwrap_err();
        assert_eq!(err.index(), 2);
        assert!(err.to_string().contains("unknown scheme 'ftp'"), "{err}");
        let err = parse_channels("xoxb-t0ken-t0ken").unwrap_err();
        assert!(err.to_string().contains("not a URL"), "{err}");
        assert!(!err.to_string().contains("t0ken"), "{err}");
    }
}
