//! What the two pagers (PagerDuty, Opsgenie) share: one alert per object version, keyed by [`alert_key`];
//! the channel URL grammar `<scheme>://<key>@<host>[:port][?options]`; which notifications page, which
//! resolve and which are not for a pager; and bounded retries on the answers their APIs say to retry
//! (429 and 5xx).
//!
//! Which notification does what:
//! - keyturn rotated the object ([`Action::Rotated`]): the alert of the version it rotated away from is
//!   resolved (PagerDuty) or closed (Opsgenie), whatever its severity: the problem is gone;
//! - at or above the channel's `min_severity` (default `warning`): an alert for that object version is
//!   opened; sending it again only adds to the open alert (the vendors deduplicate on the key);
//! - below it (a new version exists, an info-level notice): nothing is sent, and the channel counts as
//!   having accepted it.

use std::time::Duration;

use percent_encoding::percent_decode_str;
use url::Url;

use crate::channel::{ChannelError, ChannelKind, authority, is_loopback, parse_timeout};
use crate::message::{Action, Notification, Severity};
use crate::secret::{Scrubber, Secret};
use crate::transport::{Failure, FailureKind, error_chain};

/// How many times a pager request is sent at most when its API answers 429 or 5xx.
const ATTEMPTS: u32 = 3;
/// The first wait between attempts; it doubles. Both vendors say to retry "after some time"; the whole
/// send stays inside the channel's timeout, and a send that still fails is retried by the caller later
/// (Event Grid's redelivery, the next sweep).
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// A `Retry-After` longer than this is not waited for within one send.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(5);
/// How much of an error response is read.
const BODY_READ_MAX_BYTES: usize = 4096;

/// The key of the one alert an object version has: `keyturn:<vault>:<kind>:<name>:<version>`, lower case
/// (Key Vault names are case-insensitive), e.g. `keyturn:kv1:secret:db-password:0f2647...`. It is PagerDuty's
/// `dedup_key` and Opsgenie's alias, so a page repeated by a later sweep or a redelivered event joins the open
/// alert, and a rotation closes exactly the alert of the version it replaced. Vault and object names hold
/// only letters, digits and dashes, so `:` cannot be ambiguous; the key is at most ~210 characters, within
/// PagerDuty's 255 and Opsgenie's 512.
pub fn alert_key(n: &Notification) -> String {
    let mut key = format!("keyturn:{}:{}:{}", n.vault, n.kind.as_str(), n.name);
    if let Some(version) = &n.version {
        key.push(':');
        key.push_str(version);
    }
    key.to_ascii_lowercase()
}

/// What a pager does with one notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PageAction {
    /// Open (or add to) the object version's alert.
    Open,
    /// Resolve or close it.
    Close,
    /// Not for a pager.
    Skip,
}

pub(crate) fn page_action(n: &Notification, min_severity: Severity) -> PageAction {
    match &n.action {
        Action::Rotated { .. } => PageAction::Close,
        _ if n.severity >= min_severity => PageAction::Open,
        _ => PageAction::Skip,
    }
}

/// A pager channel's URL, parsed.
#[derive(Debug)]
pub(crate) struct PagerUrl {
    /// `scheme://host[:port]`, no credentials, no path: the API's paths are appended.
    pub(crate) base: Url,
    pub(crate) key: Secret,
    pub(crate) min_severity: Severity,
    pub(crate) timeout: Option<Duration>,
    pub(crate) endpoint: String,
    pub(crate) scrubber: Scrubber,
}

/// Parses `<scheme>://<key>@<host>[:port][/][?timeout=..&min_severity=..]` for a pager of `kind`.
/// `key_name` and `example` phrase the errors (`routing key`, `pagerduty://<routing-key>@events.pagerduty.com`).
pub(crate) fn parse_url(
    index: usize,
    text: &str,
    kind: ChannelKind,
    inner_scheme: &str,
    rest: &str,
    key_name: &str,
    example: &str,
) -> Result<PagerUrl, ChannelError> {
    let inner = format!("{inner_scheme}://{rest}");
    let url = Url::parse(&inner).map_err(|e| ChannelError::new(index, None, format!("not a valid URL: {e}")))?;
    let host = url.host_str().unwrap_or_default().to_owned();
    if host.is_empty() {
        return Err(ChannelError::new(index, None, format!("the URL has no host: write {example}")));
    }
    let endpoint = format!("{}+{}://{}", kind.as_str(), url.scheme(), authority(&url));
    let err = |reason: String| ChannelError::new(index, Some(&endpoint), reason);
    if url.scheme() == "http" && !is_loopback(&host) {
        return Err(err("plain http is only accepted for loopback hosts (tests); use https".into()));
    }
    if url.password().is_some() {
        return Err(err(format!("the {key_name} goes in the user name only: {example}")));
    }
    let key = percent_decode_str(url.username())
        .decode_utf8()
        .map_err(|_| err(format!("the {key_name} is not valid percent-encoded UTF-8")))?
        .into_owned();
    if key.is_empty() {
        return Err(err(format!("a {} channel needs its {key_name}: {example}", kind.as_str())));
    }
    if !matches!(url.path(), "" | "/") {
        return Err(err("the URL has a path; write only the host (keyturn adds the API's path)".into()));
    }
    let mut timeout = None;
    let mut min_severity = Severity::Warning;
    for (name, value) in url.query_pairs() {
        match name.as_ref() {
            "timeout" => timeout = Some(parse_timeout(index, &endpoint, &value)?),
            "min_severity" => {
                min_severity = match value.as_ref() {
                    "info" => Severity::Info,
                    "warning" => Severity::Warning,
                    "critical" => Severity::Critical,
                    other => return Err(err(format!("min_severity='{other}': expected info, warning or critical"))),
                }
            }
            other => return Err(err(format!("unknown option '{other}': expected min_severity or timeout"))),
        }
    }
    let mut scrubber = Scrubber::default();
    scrubber.add(text);
    scrubber.add(&inner);
    scrubber.add(url.username());
    scrubber.add(&key);
    let mut base = url.clone();
    // Clearing the credentials and query of a URL with a host cannot fail.
    let _ = base.set_username("");
    base.set_query(None);
    base.set_path("");
    Ok(PagerUrl { base, key: Secret::new(key), min_severity, timeout, endpoint, scrubber })
}

/// The delay a `Retry-After` header asks for, in its delay-seconds form (what PagerDuty, Opsgenie and Microsoft
/// Graph send); `None` when absent or an HTTP date.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// Sends one request (rebuilt per attempt), retrying 429 and 5xx answers and connection failures up to
/// [`ATTEMPTS`] times. Ok with the 2xx answer's body; otherwise the last failure. Another 4xx is the
/// vendor refusing this request as it is: not retried.
pub(crate) async fn send_with_retries(
    build: impl Fn() -> reqwest::RequestBuilder,
) -> Result<(reqwest::StatusCode, String), Failure> {
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        let (failure, retry_after) = match build().send().await {
            Ok(response) => {
                let status = response.status();
                let retry_after = retry_after(response.headers());
                let body = read_body(response).await;
                if status.is_success() {
                    return Ok((status, body));
                }
                let detail =
                    if body.trim().is_empty() { format!("HTTP {status}") } else { format!("HTTP {status}: {body}") };
                let failure = Failure { kind: FailureKind::Refused, detail };
                if !(status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error()) {
                    return Err(failure);
                }
                (failure, retry_after)
            }
            Err(e) => {
                let kind = if e.is_timeout() { FailureKind::TimedOut } else { FailureKind::Unreachable };
                // Without the URL: it may carry the channel's key.
                (Failure { kind, detail: error_chain(&e.without_url()) }, None)
            }
        };
        if attempt >= ATTEMPTS {
            return Err(Failure { detail: format!("{} (after {attempt} attempts)", failure.detail), ..failure });
        }
        let wait = retry_after.filter(|d| *d <= MAX_RETRY_AFTER).unwrap_or(backoff);
        // Only the kind: the detail holds the service's answer, which is scrubbed of the channel's key by the
        // caller, not here.
        tracing::debug!(attempt, wait_ms = wait.as_millis() as u64, failure = ?failure.kind, "pager request failed; retrying");
        tokio::time::sleep(wait).await;
        backoff *= 2;
        attempt += 1;
    }
}

async fn read_body(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < BODY_READ_MAX_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// `text` cut to at most `max` characters, with an ellipsis when cut.
pub(crate) fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyturn_events::{KeyVaultEventType, ObjectKind, VaultObject};

    fn notification(event: KeyVaultEventType, action: Action) -> Notification {
        let object = VaultObject::new("KV1", ObjectKind::Secret, "DB-Password", Some("0F26AB"), None, None).unwrap();
        Notification::for_object("e1", event, &object, action)
    }

    #[test]
    fn one_key_per_object_version_in_lower_case() {
        let n = notification(KeyVaultEventType::SecretNearExpiry, Action::NotRotated { reason: "x".into() });
        assert_eq!(alert_key(&n), "keyturn:kv1:secret:db-password:0f26ab");
    }

    #[test]
    fn rotations_close_urgent_notices_open_and_the_rest_is_not_for_a_pager() {
        use KeyVaultEventType::*;
        let rotated = notification(SecretNearExpiry, Action::Rotated { new_version: "v2".into() });
        let manual = notification(SecretNearExpiry, Action::NotRotated { reason: "no policy".into() });
        let expired = notification(SecretExpired, Action::NotRotated { reason: "no policy".into() });
        let new_version = notification(SecretNewVersionCreated, Action::Informed { summary: "new".into() });
        assert_eq!(page_action(&rotated, Severity::Warning), PageAction::Close);
        assert_eq!(page_action(&rotated, Severity::Critical), PageAction::Close);
        assert_eq!(page_action(&manual, Severity::Warning), PageAction::Open);
        assert_eq!(page_action(&manual, Severity::Critical), PageAction::Skip);
        assert_eq!(page_action(&expired, Severity::Critical), PageAction::Open);
        assert_eq!(page_action(&new_version, Severity::Warning), PageAction::Skip);
        assert_eq!(page_action(&new_version, Severity::Info), PageAction::Open);
    }

    #[test]
    fn urls_carry_the_key_as_user_name_and_never_echo_it_in_errors() {
        let u = parse_url(
            1,
            "pagerduty://k3yk3yk3y@events.eu.pagerduty.com?min_severity=critical&timeout=4",
            ChannelKind::PagerDuty,
            "https",
            "k3yk3yk3y@events.eu.pagerduty.com?min_severity=critical&timeout=4",
            "routing key",
            "ex",
        )
        .unwrap();
        assert_eq!(u.base.as_str(), "https://events.eu.pagerduty.com/");
        assert_eq!(
            (u.key.expose(), u.min_severity, u.timeout),
            ("k3yk3yk3y", Severity::Critical, Some(Duration::from_secs(4)))
        );
        assert_eq!(u.endpoint, "pagerduty+https://events.eu.pagerduty.com");
        assert_eq!(u.scrubber.clean("bad key k3yk3yk3y", 100), "bad key ****");

        for (rest, scheme, expected) in [
            ("events.pagerduty.com", "https", "needs its routing key"),
            ("k3yk3yk3y:pw@events.pagerduty.com", "https", "goes in the user name only"),
            ("k3yk3yk3y@events.pagerduty.com/v2/enqueue", "https", "has a path"),
            ("k3yk3yk3y@events.pagerduty.com?severity=info", "https", "unknown option 'severity'"),
            ("k3yk3yk3y@events.pagerduty.com?min_severity=high", "https", "min_severity='high'"),
            ("k3yk3yk3y@events.pagerduty.com", "http", "only accepted for loopback"),
        ] {
            let text = format!("pagerduty://{rest}");
            let err =
                parse_url(3, &text, ChannelKind::PagerDuty, scheme, rest, "routing key", "ex").unwrap_err().to_string();
            assert!(err.contains(expected), "{rest}: {err}");
            assert!(!err.contains("k3yk3yk3y"), "{err}");
        }
    }
}
