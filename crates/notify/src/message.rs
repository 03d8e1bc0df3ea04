//! What a notification says: the object's metadata, what keyturn did or why it did not, and how urgent it is.
//! It has no field for a secret value, so no channel can ever render one.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use keyturn_events::{Event, KeyVaultEventType, Lifecycle, ObjectKind, VaultObject};
use serde_json::{Value, json};
use url::Url;

/// How urgent a notification is. Ordered: `Info < Warning < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Something happened that needs no action: a rotation succeeded, a new version exists.
    Info,
    /// Action is due: the object expires soon and keyturn did not rotate it.
    Warning,
    /// The object has expired.
    Critical,
}

impl Severity {
    /// For the event a notification reports and what keyturn did about it:
    /// expired = critical; near expiry without rotation = warning; rotated, new version and the rest = info.
    pub fn classify(event_type: KeyVaultEventType, action: &Action) -> Self {
        match (event_type.lifecycle(), action) {
            (Lifecycle::Expired, _) => Self::Critical,
            (Lifecycle::NearExpiry, Action::Rotated { .. }) => Self::Info,
            (Lifecycle::NearExpiry, _) => Self::Warning,
            (Lifecycle::NewVersionCreated | Lifecycle::AccessPolicyChanged, _) => Self::Info,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What keyturn did about the event, in words an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// keyturn made a new version (a secret rotation, a key rotation, a certificate renewal).
    Rotated { new_version: String },
    /// keyturn did not rotate: `reason` says why and what is due (no rotation policy on the object, native
    /// auto-renewal configured, the provider refused).
    NotRotated { reason: String },
    /// Nothing was due; the message informs (a new version exists, a test event). `summary` says what.
    Informed { summary: String },
}

impl Action {
    /// One sentence for the message body.
    pub fn summary(&self) -> String {
        match self {
            Self::Rotated { new_version } => format!("keyturn rotated it: the new version is {new_version}."),
            Self::NotRotated { reason } => format!("keyturn did not rotate it: {reason}"),
            Self::Informed { summary } => summary.clone(),
        }
    }

    fn to_json(&self) -> Value {
        match self {
            Self::Rotated { new_version } => json!({ "type": "rotated", "new_version": new_version }),
            Self::NotRotated { reason } => json!({ "type": "not_rotated", "reason": reason }),
            Self::Informed { .. } => json!({ "type": "informed" }),
        }
    }
}

/// One notification: metadata only, never a secret value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The Event Grid event id; a redelivery carries the same id, so receivers can deduplicate on it.
    pub event_id: String,
    pub event_type: KeyVaultEventType,
    pub severity: Severity,
    pub vault: String,
    pub kind: ObjectKind,
    /// The object's name (for vault-level events, the vault's).
    pub name: String,
    /// The version the event is about.
    pub version: Option<String>,
    pub expires: Option<DateTime<Utc>>,
    pub action: Action,
    /// The object's page in the Azure portal, when the event names its vault's resource id.
    pub portal_link: Option<Url>,
    /// When the event happened, if Event Grid said.
    pub occurred_at: Option<DateTime<Utc>>,
}

impl Notification {
    /// The notification for a Key Vault event and what keyturn did about it; `None` for other events.
    pub fn for_event(event: &Event, action: Action) -> Option<Self> {
        let kv = event.key_vault()?;
        let mut notification = Self::for_object(&event.id, kv.event_type, &kv.object, action);
        notification.portal_link = portal_link(&event.source, &kv.object);
        notification.occurred_at = event.time;
        Some(notification)
    }

    /// The notification for an object, with the severity [`Severity::classify`] gives; no portal link.
    pub fn for_object(event_id: &str, event_type: KeyVaultEventType, object: &VaultObject, action: Action) -> Self {
        Self {
            event_id: event_id.to_owned(),
            event_type,
            severity: Severity::classify(event_type, &action),
            vault: object.vault_name().to_owned(),
            kind: object.kind(),
            name: object.name().to_owned(),
            version: object.version().map(str::to_owned),
            expires: object.expires(),
            action,
            portal_link: None,
            occurred_at: None,
        }
    }

    /// One line: what happened to which object, e.g. `Secret db-password expires on 2026-06-01 12:00 UTC`.
    pub fn headline(&self) -> String {
        let what = match self.event_type.lifecycle() {
            Lifecycle::NearExpiry => match self.expires {
                Some(at) => format!("expires on {}", at.format("%Y-%m-%d %H:%M UTC")),
                None => "expires soon".to_owned(),
            },
            Lifecycle::Expired => "has expired".to_owned(),
            Lifecycle::NewVersionCreated => "has a new version".to_owned(),
            Lifecycle::AccessPolicyChanged => "had its access policy changed".to_owned(),
        };
        format!("{} {} {what}", self.kind, self.name)
    }

    /// The email subject and chat title: severity, headline and vault.
    pub fn title(&self) -> String {
        format!("[keyturn {}] {} (vault {})", self.severity.as_str().to_uppercase(), self.headline(), self.vault)
    }

    /// The labelled facts every channel shows, in order.
    pub fn facts(&self) -> Vec<(&'static str, String)> {
        vec![
            ("Vault", self.vault.clone()),
            ("Object", format!("{} {}", self.kind, self.name)),
            ("Version", self.version.clone().unwrap_or_else(|| "-".to_owned())),
            ("Expires", self.expires.map_or_else(|| "no expiry set".to_owned(), rfc3339)),
            ("Severity", self.severity.to_string()),
            ("Event", self.event_type.short_name().to_owned()),
            ("Event id", self.event_id.clone()),
        ]
    }

    /// The generic webhook's JSON body (docs/notifications.md, "Webhook payload").
    pub fn to_json(&self) -> Value {
        json!({
            "type": "keyturn.notification",
            "schema_version": 1,
            "event_id": self.event_id,
            "event_type": self.event_type.as_str(),
            "severity": self.severity.as_str(),
            "headline": self.headline(),
            "summary": self.action.summary(),
            "action": self.action.to_json(),
            "object": {
                "vault": self.vault,
                "kind": self.kind.as_str(),
                "name": self.name,
                "version": self.version,
                "expires": self.expires.map(rfc3339),
            },
            "portal_link": self.portal_link.as_ref().map(Url::as_str),
            "occurred_at": self.occurred_at.map(rfc3339),
        })
    }
}

pub(crate) fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The object's list in the Azure portal, from the vault's ARM resource id (Event Grid's `topic`/`source`):
/// `https://portal.azure.com/#@/resource/subscriptions/.../vaults/<vault>/secrets`. The sovereign clouds have
/// their own portals, told apart by the vault's DNS suffix.
pub fn portal_link(resource_id: &str, object: &VaultObject) -> Option<Url> {
    let lower = resource_id.to_ascii_lowercase();
    if !lower.starts_with("/subscriptions/") || !lower.contains("/providers/microsoft.keyvault/vaults/") {
        return None;
    }
    let vault_host = object.id().host_str().unwrap_or_default();
    let portal = if vault_host.ends_with(".vault.azure.cn") {
        "portal.azure.cn"
    } else if vault_host.ends_with(".vault.usgovcloudapi.net") {
        "portal.azure.us"
    } else {
        "portal.azure.com"
    };
    let blade = object.kind().collection().unwrap_or("overview");
    Url::parse(&format!("https://{portal}/#@/resource{}/{blade}", resource_id.trim_end_matches('/'))).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARM: &str =
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv1";

    fn object(expires: Option<DateTime<Utc>>) -> VaultObject {
        VaultObject::new("kv1", ObjectKind::Secret, "db-password", Some("abc123"), None, expires).unwrap()
    }

    #[test]
    fn severity_follows_the_event_and_what_keyturn_did() {
        use KeyVaultEventType::*;
        let rotated = Action::Rotated { new_version: "v2".into() };
        let not = Action::NotRotated { reason: "no rotation policy".into() };
        let informed = Action::Informed { summary: "a new version exists".into() };
        assert_eq!(Severity::classify(SecretExpired, &rotated), Severity::Critical);
        assert_eq!(Severity::classify(CertificateExpired, &not), Severity::Critical);
        assert_eq!(Severity::classify(SecretNearExpiry, &not), Severity::Warning);
        assert_eq!(Severity::classify(KeyNearExpiry, &informed), Severity::Warning);
        assert_eq!(Severity::classify(SecretNearExpiry, &rotated), Severity::Info);
        assert_eq!(Severity::classify(SecretNewVersionCreated, &informed), Severity::Info);
        assert!(Severity::Info < Severity::Warning && Severity::Warning < Severity::Critical);
    }

    #[test]
    fn a_notification_from_a_delivered_event_carries_its_metadata_and_a_portal_link() {
        let event =
            Event::from_slice(include_bytes!("../../events/fixtures/eventgrid-secret-near-expiry.json")).unwrap();
        let n = Notification::for_event(&event, Action::NotRotated { reason: "no rotation policy".into() }).unwrap();
        let kv = event.key_vault().unwrap();
        assert_eq!(n.event_id, event.id);
        assert_eq!(n.severity, Severity::Warning);
        assert_eq!((n.vault.as_str(), n.name.as_str()), (kv.object.vault_name(), kv.object.name()));
        assert_eq!(n.expires, kv.object.expires());
        let link = n.portal_link.clone().unwrap();
        assert_eq!(link.host_str(), Some("portal.azure.com"));
        assert!(link.as_str().ends_with(&format!("{}/secrets", event.source)), "{link}");
        assert_eq!(n.occurred_at, event.time);
        assert!(n.title().starts_with("[keyturn WARNING] Secret "), "{}", n.title());
    }

    #[test]
    fn headlines_and_json_say_what_happened() {
        let expires = DateTime::parse_from_rfc3339("2026-06-01T12:00:00Z").unwrap().with_timezone(&Utc);
        let n = Notification::for_object(
            "evt-1",
            KeyVaultEventType::SecretNearExpiry,
            &object(Some(expires)),
            Action::Rotated { new_version: "def456".into() },
        );
        assert_eq!(n.headline(), "Secret db-password expires on 2026-06-01 12:00 UTC");
        assert_eq!(n.title(), "[keyturn INFO] Secret db-password expires on 2026-06-01 12:00 UTC (vault kv1)");
        let json = n.to_json();
        assert_eq!(json["event_id"], "evt-1");
        assert_eq!(json["severity"], "info");
        assert_eq!(json["action"], json!({"type": "rotated", "new_version": "def456"}));
        assert_eq!(json["summary"], "keyturn rotated it: the new version is def456.");
        assert_eq!(json["object"]["expires"], "2026-06-01T12:00:00Z");
        assert_eq!(json["portal_link"], Value::Null);

        let n = Notification::for_object(
            "evt-2",
            KeyVaultEventType::SecretExpired,
            &object(None),
            Action::NotRotated { reason: "no policy".into() },
        );
        assert_eq!(n.headline(), "Secret db-password has expired");
        assert!(n.facts().contains(&("Expires", "no expiry set".to_owned())));
    }

    #[test]
    fn portal_links_need_an_arm_id_and_follow_the_cloud() {
        assert!(portal_link("not-an-arm-id", &object(None)).is_none());
        let link = portal_link(ARM, &object(None)).unwrap();
        assert_eq!(link.as_str(), format!("https://portal.azure.com/#@/resource{ARM}/secrets"));
        let event = Event::from_value(json!({
            "id": "e", "topic": ARM, "subject": "k", "eventType": "Microsoft.KeyVault.KeyNearExpiry",
            "eventTime": "2026-01-01T00:00:00Z", "dataVersion": "1", "metadataVersion": "1",
            "data": {"Id": "https://kv1.vault.azure.cn/keys/k/v1", "VaultName": "kv1", "ObjectType": "Key",
                     "ObjectName": "k", "Version": "v1"}
        }))
        .unwrap();
        let link = portal_link(ARM, &event.key_vault().unwrap().object).unwrap();
        assert_eq!(link.as_str(), format!("https://portal.azure.cn/#@/resource{ARM}/keys"));
    }
}
