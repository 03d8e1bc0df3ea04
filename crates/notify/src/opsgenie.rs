//! Opsgenie, through its Alert API: `POST /v2/alerts` creates an alert with an alias ([`crate::alert_key`],
//! one per object version; an open alert with the same alias only counts up), `POST
//! /v2/alerts/{alias}/close?identifierType=alias` closes it when keyturn rotated the object. Authorization is
//! the header `GenieKey <api-key>`.
//!
//! Channel URL: `opsgenie://<api-key>@api.opsgenie.com` (EU instance: `api.eu.opsgenie.com`);
//! `opsgenie+http://` for a loopback test receiver. Options: `min_severity`, `timeout`. The API key is a
//! secret: it prints as `****` and is scrubbed from every error.
//!
//! Answers: 202 `{"result":"Request will be processed","requestId":..}`: Opsgenie processes requests
//! asynchronously, and keyturn does not poll `GET /v2/alerts/requests/{requestId}` (a close of an alert that
//! is already closed fails there, harmlessly). 401/403/422 are refusals (not retried); 429 and 5xx are
//! retried with back-off (see [`crate::paging`]). Field limits applied before sending: message 130
//! characters, alias 512, description 15,000, 20 tags of 50, details 8,000 in all.

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde_json::{Map, Value, json};

use crate::channel::{ChannelConfig, ChannelError, ChannelId, ChannelKind, Target};
use crate::message::{Notification, Severity};
use crate::paging::{PageAction, PagerUrl, alert_key, cut, page_action, parse_url, send_with_retries};
use crate::secret::Secret;
use crate::transport::Failure;

pub(crate) const ALERTS_PATH: &str = "/v2/alerts";
/// Opsgenie's limits.
pub(crate) const MESSAGE_MAX: usize = 130;
pub(crate) const ALIAS_MAX: usize = 512;
pub(crate) const DESCRIPTION_MAX: usize = 15_000;
pub(crate) const TAGS_MAX: usize = 20;
pub(crate) const TAG_MAX: usize = 50;
pub(crate) const DETAILS_MAX_TOTAL: usize = 8_000;
const EXAMPLE: &str = "opsgenie://<api-key>@api.opsgenie.com";

/// Where and how an Opsgenie channel sends.
#[derive(Debug)]
pub(crate) struct OpsgenieTarget {
    /// `https://api.opsgenie.com` (no trailing slash).
    base: String,
    authorization: Secret,
    min_severity: Severity,
}

pub(crate) fn parse(index: usize, text: &str, inner_scheme: &str, rest: &str) -> Result<ChannelConfig, ChannelError> {
    let PagerUrl { base, key, min_severity, timeout, endpoint, mut scrubber } =
        parse_url(index, text, ChannelKind::Opsgenie, inner_scheme, rest, "API key", EXAMPLE)?;
    if !key.expose().chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(ChannelError::new(
            index,
            Some(&endpoint),
            "the API key holds characters other than letters, digits and dashes: use the key of an Opsgenie \
             API integration",
        ));
    }
    let authorization = Secret::new(format!("GenieKey {}", key.expose()));
    scrubber.add(authorization.expose());
    Ok(ChannelConfig {
        id: ChannelId::new(index, ChannelKind::Opsgenie, endpoint),
        timeout,
        target: Target::Opsgenie(OpsgenieTarget {
            base: base.as_str().trim_end_matches('/').to_owned(),
            authorization,
            min_severity,
        }),
        scrubber,
    })
}

/// Opsgenie priorities: P1 is the most urgent.
fn priority(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "P1",
        Severity::Warning => "P3",
        Severity::Info => "P5",
    }
}

/// The create body for `n`.
pub(crate) fn create_body(n: &Notification) -> Value {
    let tags: Vec<String> = [
        "keyturn".to_owned(),
        format!("vault:{}", n.vault),
        format!("kind:{}", n.kind.as_str().to_ascii_lowercase()),
        format!("severity:{}", n.severity),
    ]
    .iter()
    .map(|t| cut(t, TAG_MAX))
    .take(TAGS_MAX)
    .collect();
    // Details are kept whole, in order, while they fit the total limit (keys and values counted).
    let mut details = Map::new();
    let mut used = 0;
    for (label, value) in n.facts() {
        let value = cut(&value, 500);
        let size = label.chars().count() + value.chars().count();
        if used + size > DETAILS_MAX_TOTAL {
            break;
        }
        used += size;
        details.insert(label.to_owned(), Value::String(value));
    }
    let mut description = format!("{}\n\n{}", n.headline(), n.action.summary());
    if let Some(link) = &n.portal_link {
        description.push_str(&format!("\n\nOpen in the Azure portal: {link}"));
    }
    json!({
        "message": cut(&n.title(), MESSAGE_MAX),
        "alias": cut(&alert_key(n), ALIAS_MAX),
        "description": cut(&description, DESCRIPTION_MAX),
        "tags": tags,
        "details": details,
        "entity": format!("{} {}/{}", n.kind, n.vault, n.name),
        "source": "keyturn",
        "priority": priority(n.severity),
    })
}

/// The request for `n`: (path and query, body), or `None` when it is not for a pager.
pub(crate) fn request(n: &Notification, min_severity: Severity) -> Option<(String, Value)> {
    match page_action(n, min_severity) {
        PageAction::Skip => None,
        PageAction::Open => Some((ALERTS_PATH.to_owned(), create_body(n))),
        PageAction::Close => {
            let alias: String = percent_encoding::utf8_percent_encode(
                &cut(&alert_key(n), ALIAS_MAX),
                percent_encoding::NON_ALPHANUMERIC,
            )
            .collect();
            let note = cut(&n.action.summary(), 1000);
            Some((
                format!("{ALERTS_PATH}/{alias}/close?identifierType=alias"),
                json!({"source": "keyturn", "note": note}),
            ))
        }
    }
}

pub(crate) async fn deliver(
    target: &OpsgenieTarget,
    client: &reqwest::Client,
    n: &Notification,
) -> Result<(), Failure> {
    let Some((path, body)) = request(n, target.min_severity) else {
        tracing::debug!(event_id = %n.event_id, severity = %n.severity, "below the pager's minimum severity; not sent");
        return Ok(());
    };
    // Serializing a `Value` cannot fail (its map keys are strings), so the default is never used.
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let url = format!("{}{path}", target.base);
    send_with_retries(|| {
        client
            .post(&url)
            .header(AUTHORIZATION, target.authorization.expose())
            .header(CONTENT_TYPE, "application/json")
            .body(bytes.clone())
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

    fn notification(event: KeyVaultEventType, action: Action, name: &str) -> Notification {
        let object = VaultObject::new("kv1", ObjectKind::Key, name, Some("ab12"), None, None).unwrap();
        Notification::for_object("e1", event, &object, action)
    }

    #[test]
    fn an_alert_is_created_with_the_object_versions_alias_and_closed_by_it() {
        let n = notification(
            KeyVaultEventType::KeyNearExpiry,
            Action::NotRotated { reason: "no policy".into() },
            "signing",
        );
        let (path, body) = request(&n, Severity::Warning).unwrap();
        assert_eq!(path, "/v2/alerts");
        assert_eq!(body["alias"], "keyturn:kv1:key:signing:ab12");
        assert_eq!(body["priority"], "P3");
        assert_eq!(body["tags"], json!(["keyturn", "vault:kv1", "kind:key", "severity:warning"]));
        assert_eq!(body["details"]["Object"], "Key signing");

        let rotated =
            notification(KeyVaultEventType::KeyNearExpiry, Action::Rotated { new_version: "cd34".into() }, "signing");
        let (path, body) = request(&rotated, Severity::Critical).unwrap();
        assert_eq!(path, "/v2/alerts/keyturn%3Akv1%3Akey%3Asigning%3Aab12/close?identifierType=alias");
        assert_eq!(body["note"], "keyturn rotated it: the new version is cd34.");
        assert_eq!(request(&n, Severity::Critical), None, "a warning below a critical-only pager");
    }

    #[test]
    fn fields_are_cut_to_opsgenies_limits() {
        let mut n = notification(
            KeyVaultEventType::KeyExpired,
            Action::NotRotated { reason: "r".repeat(20_000) },
            &"k".repeat(127),
        );
        n.vault = "v".repeat(600);
        let body = create_body(&n);
        assert_eq!(body["message"].as_str().unwrap().chars().count(), MESSAGE_MAX);
        assert_eq!(body["alias"].as_str().unwrap().chars().count(), ALIAS_MAX);
        assert_eq!(body["description"].as_str().unwrap().chars().count(), DESCRIPTION_MAX);
        assert!(body["tags"].as_array().unwrap().iter().all(|t| t.as_str().unwrap().chars().count() <= TAG_MAX));
        let details: usize = body["details"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| k.chars().count() + v.as_str().unwrap().chars().count())
            .sum();
        assert!(details <= DETAILS_MAX_TOTAL);
    }

    #[test]
    fn the_channel_url_carries_the_api_key_which_never_prints() {
        let key = "1f2e3d4c-0000-4b5a-9c8d-7e6f5a4b3c2d";
        let notifier =
            Notifier::from_urls(&format!("opsgenie://{key}@api.eu.opsgenie.com?min_severity=critical")).unwrap();
        let id = notifier.channels().next().unwrap();
        assert_eq!((id.kind(), id.endpoint()), (ChannelKind::Opsgenie, "opsgenie+https://api.eu.opsgenie.com"));
        assert!(!format!("{notifier:?}").contains(key));
        let err = Notifier::from_urls("opsgenie://k%2Fey@api.opsgenie.com").unwrap_err().to_string();
        assert!(err.contains("other than letters, digits and dashes"), "{err}");
        let err = Notifier::from_urls("opsgenie://api.opsgenie.com").unwrap_err().to_string();
        assert!(err.contains("needs its API key"), "{err}");
    }
}
