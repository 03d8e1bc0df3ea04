//! PagerDuty, through its Events API v2 (`POST https://events.pagerduty.com/v2/enqueue`, no auth header: the
//! integration's routing key is in the body). One alert per object version, keyed by
//! [`crate::alert_key`] as `dedup_key`: a page is a `trigger`, a rotation sends `resolve` with the same key
//! (PagerDuty drops a resolve with no open alert, so resolving is always safe).
//!
//! Channel URL: `pagerduty://<routing-key>@events.pagerduty.com` (or the EU service region's host,
//! `events.eu.pagerduty.com`); `pagerduty+http://` for a loopback test receiver. Options: `min_severity`,
//! `timeout`. The routing key is a secret: it prints as `****` and is scrubbed from every error.
//!
//! Answers (PagerDuty's Events API v2 reference): 202 accepted; 400 the event is invalid (not retried);
//! 429 throttled and 5xx, retried with back-off (see [`crate::paging`]). Field limits applied before
//! sending: `summary` 1,024 characters, `dedup_key` 255; the body stays far below the 512 KB limit.

use chrono::Utc;
use reqwest::header::CONTENT_TYPE;
use serde_json::{Map, Value, json};

use crate::channel::{ChannelConfig, ChannelError, ChannelId, ChannelKind, Target};
use crate::message::{Notification, Severity, rfc3339};
use crate::paging::{PageAction, PagerUrl, alert_key, cut, page_action, parse_url, send_with_retries};
use crate::secret::Secret;
use crate::transport::Failure;

/// The path events are sent to.
pub(crate) const ENQUEUE_PATH: &str = "/v2/enqueue";
/// PagerDuty's limits.
pub(crate) const SUMMARY_MAX: usize = 1024;
pub(crate) const DEDUP_KEY_MAX: usize = 255;
/// An Events API v2 integration key ("routing key") is 32 characters.
const ROUTING_KEY_LEN: usize = 32;
const EXAMPLE: &str = "pagerduty://<routing-key>@events.pagerduty.com";

/// Where and how a PagerDuty channel sends.
#[derive(Debug)]
pub(crate) struct PagerDutyTarget {
    enqueue: Secret,
    routing_key: Secret,
    min_severity: Severity,
}

pub(crate) fn parse(index: usize, text: &str, inner_scheme: &str, rest: &str) -> Result<ChannelConfig, ChannelError> {
    let PagerUrl { base, key, min_severity, timeout, endpoint, scrubber } =
        parse_url(index, text, ChannelKind::PagerDuty, inner_scheme, rest, "routing key", EXAMPLE)?;
    if key.expose().chars().count() != ROUTING_KEY_LEN || !key.expose().chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(ChannelError::new(
            index,
            Some(&endpoint),
            format!(
                "the routing key is not {ROUTING_KEY_LEN} letters and digits: use the Integration Key of an \
                 Events API v2 integration"
            ),
        ));
    }
    let enqueue = Secret::new(format!("{}{}", base.as_str().trim_end_matches('/'), ENQUEUE_PATH));
    Ok(ChannelConfig {
        id: ChannelId::new(index, ChannelKind::PagerDuty, endpoint),
        timeout,
        target: Target::PagerDuty(PagerDutyTarget { enqueue, routing_key: key, min_severity }),
        scrubber,
    })
}

fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "critical",
        Severity::Warning => "warning",
        Severity::Info => "info",
    }
}

/// The Events API v2 body for `n`, or `None` when the notification is not for a pager.
pub(crate) fn event(routing_key: &str, min_severity: Severity, n: &Notification) -> Option<Value> {
    let dedup_key = cut(&alert_key(n), DEDUP_KEY_MAX);
    match page_action(n, min_severity) {
        PageAction::Skip => None,
        PageAction::Close => {
            Some(json!({"routing_key": routing_key, "event_action": "resolve", "dedup_key": dedup_key}))
        }
        PageAction::Open => {
            let details: Map<String, Value> = n
                .facts()
                .into_iter()
                .map(|(label, value)| (label.to_owned(), Value::String(value)))
                .chain([("Summary".to_owned(), Value::String(n.action.summary()))])
                .collect();
            let mut body = json!({
                "routing_key": routing_key,
                "event_action": "trigger",
                "dedup_key": dedup_key,
                "client": "keyturn",
                "payload": {
                    "summary": cut(&n.title(), SUMMARY_MAX),
                    "source": n.vault,
                    "severity": severity(n.severity),
                    "timestamp": rfc3339(n.occurred_at.unwrap_or_else(Utc::now)),
                    "component": format!("{} {}", n.kind, n.name),
                    "group": n.vault,
                    "class": n.event_type.short_name(),
                    "custom_details": details,
                },
            });
            if let Some(link) = &n.portal_link {
                body["links"] = json!([{"href": link.as_str(), "text": "Open in the Azure portal"}]);
            }
            Some(body)
        }
    }
}

pub(crate) async fn deliver(
    target: &PagerDutyTarget,
    client: &reqwest::Client,
    n: &Notification,
) -> Result<(), Failure> {
    let Some(body) = event(target.routing_key.expose(), target.min_severity, n) else {
        tracing::debug!(event_id = %n.event_id, severity = %n.severity, "below the pager's minimum severity; not sent");
        return Ok(());
    };
    // Serializing a `Value` cannot fail (its map keys are strings), so the default is never used.
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    send_with_retries(|| {
        client.post(target.enqueue.expose()).header(CONTENT_TYPE, "application/json").body(bytes.clone())
    })
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Action;
    use crate::notifier::Notifier;
    use keyturn_events::{KeyVaultEventType, ObjectKind, VaultObject};

    const KEY: &str = "0123456789abcdef0123456789ABCDEF";

    fn notification(event: KeyVaultEventType, action: Action, name: &str) -> Notification {
        let object = VaultObject::new("kv1", ObjectKind::Secret, name, Some("0f26"), None, None).unwrap();
        Notification::for_object("e1", event, &object, action)
    }

    #[test]
    fn a_page_is_a_trigger_with_the_object_versions_key_and_a_rotation_resolves_it() {
        let n = notification(
            KeyVaultEventType::SecretExpired,
            Action::NotRotated { reason: "no policy".into() },
            "db-password",
        );
        let body = event(KEY, Severity::Warning, &n).unwrap();
        assert_eq!(body["event_action"], "trigger");
        assert_eq!(body["dedup_key"], "keyturn:kv1:secret:db-password:0f26");
        assert_eq!(body["payload"]["severity"], "critical");
        assert_eq!(body["payload"]["summary"], "[keyturn CRITICAL] Secret db-password has expired (vault kv1)");
        assert_eq!(body["payload"]["source"], "kv1");
        assert_eq!(body["payload"]["custom_details"]["Version"], "0f26");

        let rotated = notification(
            KeyVaultEventType::SecretNearExpiry,
            Action::Rotated { new_version: "v2".into() },
            "db-password",
        );
        let body = event(KEY, Severity::Critical, &rotated).unwrap();
        assert_eq!(
            body,
            json!({"routing_key": KEY, "event_action": "resolve", "dedup_key": "keyturn:kv1:secret:db-password:0f26"})
        );
        let info = notification(
            KeyVaultEventType::SecretNewVersionCreated,
            Action::Informed { summary: "new".into() },
            "db-password",
        );
        assert_eq!(event(KEY, Severity::Warning, &info), None);
    }

    #[test]
    fn fields_are_cut_to_pagerdutys_limits() {
        let mut n =
            notification(KeyVaultEventType::SecretExpired, Action::NotRotated { reason: "x".into() }, &"n".repeat(127));
        n.vault = "v".repeat(2000);
        let body = event(KEY, Severity::Warning, &n).unwrap();
        assert_eq!(body["payload"]["summary"].as_str().unwrap().chars().count(), SUMMARY_MAX);
        assert_eq!(body["dedup_key"].as_str().unwrap().chars().count(), DEDUP_KEY_MAX);
    }

    #[test]
    fn the_channel_url_needs_a_32_character_routing_key_which_never_prints() {
        let notifier = Notifier::from_urls(&format!("pagerduty://{KEY}@events.eu.pagerduty.com")).unwrap();
        let id = notifier.channels().next().unwrap();
        assert_eq!((id.kind(), id.endpoint()), (ChannelKind::PagerDuty, "pagerduty+https://events.eu.pagerduty.com"));
        assert!(!format!("{notifier:?}").contains(KEY));
        let err = Notifier::from_urls("pagerduty://short-k3y@events.pagerduty.com").unwrap_err().to_string();
        assert!(err.contains("not 32 letters and digits"), "{err}");
        assert!(!err.contains("short-k3y"), "{err}");
    }
}
