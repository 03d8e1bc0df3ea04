//! [`Accepted`]: a delivered event parsed once into a typed, allow-listed [`ObjectRef`], or the skip that says
//! why the handler does not act on it. Every handler starts with [`crate::Deps::accept`]; everything after it
//! takes the [`Accepted`], never the event.
//!
//! The allow-list (`KEYTURN_VAULTS`) is decided here and only here, before anything could touch the network.
//! The vault client refuses a vault outside it again ([`keyturn_vault::KeyVault::check_allowed`]) as a defence
//! in depth, not as a second decision.

use chrono::{DateTime, Utc};
use keyturn_config::VaultList;
use keyturn_events::{Event, KeyVaultEventType, Lifecycle, ObjectRef, Payload, VaultObject};
use keyturn_host::Outcome;
use keyturn_notify::{Action, Notification, portal_link};
use keyturn_rotation::Request;
use keyturn_vault::{Collection, VaultError};

/// The `action` of an outcome for an event the handler does not serve.
pub const NOT_SERVED: &str = "not-served";
/// The `action` of an outcome for an event naming a vault outside the allow-list.
pub const NOT_ALLOWED: &str = "not-allowed";
/// The `action` of an outcome for an event that names no version of an object.
pub const NO_OBJECT: &str = "no-object";

/// An event a handler acts on: the object (allow-listed), and the event's provenance beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The object and version the event is about; its vault is in the allow-list.
    pub object: ObjectRef,
    /// The vault collection holding it.
    pub collection: Collection,
    /// The event's id: provenance on what keyturn writes, and the receivers' deduplication key.
    pub event_id: String,
    /// When the event happened, if Event Grid said.
    pub event_time: Option<DateTime<Utc>>,
    /// The Key Vault event type (for a keyturn test event: the object's NewVersionCreated).
    pub event_type: KeyVaultEventType,
    /// The object as the event described it (its expiry, its URL), for notifications.
    origin: VaultObject,
    /// The event's source (the vault's resource id), for the portal link.
    source: String,
}

impl Accepted {
    /// The notification about this event saying `action` (severity per `Severity::classify`).
    pub fn notification(&self, action: Action) -> Notification {
        let mut notification = Notification::for_object(&self.event_id, self.event_type, &self.origin, action);
        notification.portal_link = portal_link(&self.source, &self.origin);
        notification.occurred_at = self.event_time;
        notification
    }

    /// What the rotation engine is asked to do about this event.
    pub fn rotation_request(&self) -> Request {
        Request { object: self.object.clone(), event_id: self.event_id.clone() }
    }

    /// The object's expiry, as the event stated it.
    pub fn expires(&self) -> Option<DateTime<Utc>> {
        self.origin.expires()
    }
}

/// The Key Vault payload of an event of `lifecycle`, or the skip that says why `function` does not act.
pub(crate) fn served<'e>(
    event: &'e Event,
    lifecycle: Lifecycle,
    function: &str,
) -> Result<(KeyVaultEventType, &'e VaultObject), Box<Outcome>> {
    let serves = match lifecycle {
        Lifecycle::NewVersionCreated => "Secret/Key/CertificateNewVersionCreated",
        Lifecycle::NearExpiry => "Secret/Key/CertificateNearExpiry",
        Lifecycle::Expired => "Secret/Key/CertificateExpired",
        Lifecycle::AccessPolicyChanged => "VaultAccessPolicyChanged",
    };
    let skipped = |message: String| Box::new(Outcome::skipped(message).action(NOT_SERVED));
    match &event.payload {
        Payload::KeyVault(key_vault) if key_vault.event_type.lifecycle() == lifecycle => {
            Ok((key_vault.event_type, &key_vault.object))
        }
        Payload::KeyVault(key_vault) => {
            let mut outcome = skipped(format!(
                "{} is not an event {function} acts on; it serves {serves} only",
                key_vault.event_type.as_str()
            ));
            outcome.object = ObjectRef::from_object(&key_vault.object).ok();
            Err(outcome)
        }
        Payload::SubscriptionValidation(_) => {
            Err(skipped("a subscription validation event is answered by the host".to_owned()))
        }
        Payload::Unknown(unknown) => {
            Err(skipped(format!("'{}' is not a Key Vault event; {function} serves {serves} only", unknown.event_type)))
        }
    }
}

/// `object` (named by `event` as an event of `event_type`) as an [`Accepted`], if its vault is in `vaults`
/// and it names a version of a secret, key or certificate; else the rejection that says why.
pub(crate) fn admit(
    vaults: &VaultList,
    event: &Event,
    object: &VaultObject,
    event_type: KeyVaultEventType,
) -> Result<Accepted, Box<Outcome>> {
    let described =
        format!("{} {}/{}", object.kind().as_str().to_ascii_lowercase(), object.vault_name(), object.name());
    let reference = ObjectRef::from_object(object);
    if vaults.get(object.vault_name()).is_none() {
        let refused = VaultError::NotAllowed { vault: object.vault_name().to_owned() };
        let mut outcome = Outcome::rejected(format!("{described}: {refused}")).action(NOT_ALLOWED);
        // Named in the outcome (nothing was read or sent): whoever reads it sees which object was refused.
        outcome.object = reference.ok();
        return Err(Box::new(outcome));
    }
    let reference = reference.map_err(|error| {
        let message = format!("{described}: the event names no version of an object ({error})");
        Box::new(Outcome::rejected(message).action(NO_OBJECT))
    })?;
    let collection = match object.kind() {
        keyturn_events::ObjectKind::Key => Collection::Keys,
        keyturn_events::ObjectKind::Certificate => Collection::Certificates,
        // `from_object` refused the vault kind.
        _ => Collection::Secrets,
    };
    Ok(Accepted {
        object: reference,
        collection,
        event_id: event.id.clone(),
        event_time: event.time,
        event_type,
        origin: object.clone(),
        source: event.source.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyturn_host::Status;

    fn event(event_type: &str, vault: &str) -> Event {
        let json = format!(
            r#"{{"id":"e1","topic":"/subscriptions/s/resourceGroups/r/providers/Microsoft.KeyVault/vaults/{vault}",
            "subject":"db","eventType":"{event_type}","eventTime":"2026-01-01T00:00:00Z",
            "data":{{"Id":"https://{vault}.vault.azure.net/secrets/db/0123456789abcdef0123456789abcdef",
            "VaultName":"{vault}","ObjectType":"Secret","ObjectName":"db",
            "Version":"0123456789abcdef0123456789abcdef","NBF":null,"EXP":1767225600}},
            "dataVersion":"1","metadataVersion":"1"}}"#
        );
        Event::from_slice(json.as_bytes()).unwrap()
    }

    fn accept(event: &Event, lifecycle: Lifecycle, function: &str) -> Result<Accepted, Box<Outcome>> {
        let vaults = VaultList::parse("KEYTURN_VAULTS", "kv-one=https://127.0.0.1:8443").unwrap();
        let (event_type, object) = served(event, lifecycle, function)?;
        admit(&vaults, event, object, event_type)
    }

    #[test]
    fn only_the_lifecycle_served_is_acted_on() {
        let accepted =
            accept(&event("Microsoft.KeyVault.SecretExpired", "kv-one"), Lifecycle::Expired, "expired").unwrap();
        assert_eq!(
            accepted.object,
            ObjectRef::new("kv-one", keyturn_events::ObjectKind::Secret, "db", "0123456789abcdef0123456789abcdef")
                .unwrap()
        );
        assert_eq!((accepted.collection, accepted.event_id.as_str()), (Collection::Secrets, "e1"));
        assert_eq!(accepted.rotation_request().event_id, "e1");
        let skipped =
            accept(&event("Microsoft.KeyVault.SecretNearExpiry", "kv-one"), Lifecycle::Expired, "expired").unwrap_err();
        assert_eq!((skipped.status, skipped.action.as_deref()), (Status::Skipped, Some(NOT_SERVED)));
        assert!(
            skipped.message.contains("Microsoft.KeyVault.SecretNearExpiry") && skipped.message.contains("Expired only"),
            "{skipped:?}"
        );
        let foreign =
            accept(&event("Microsoft.Storage.BlobCreated", "kv-one"), Lifecycle::NewVersionCreated, "new-version");
        assert!(foreign.unwrap_err().message.contains("not a Key Vault event"));
    }

    #[test]
    fn a_vault_outside_the_allow_list_is_rejected_once_here_with_its_name() {
        let refused =
            accept(&event("Microsoft.KeyVault.SecretNearExpiry", "kv-evil"), Lifecycle::NearExpiry, "near-expiry")
                .unwrap_err();
        assert_eq!(refused.status, Status::Rejected);
        assert_eq!(refused.action.as_deref(), Some(NOT_ALLOWED));
        assert_eq!(refused.object.as_ref().map(ObjectRef::vault), Some("kv-evil"));
        assert_eq!(
            refused.message,
            "secret kv-evil/db: vault 'kv-evil' is not in the allow-list (KEYTURN_VAULTS); nothing was sent to it"
        );
        // Case-insensitive, as Key Vault's names are.
        assert!(
            accept(&event("Microsoft.KeyVault.SecretNearExpiry", "KV-ONE"), Lifecycle::NearExpiry, "near-expiry")
                .is_ok()
        );
    }

    #[test]
    fn the_notification_keeps_the_events_provenance() {
        let accepted =
            accept(&event("Microsoft.KeyVault.SecretNearExpiry", "kv-one"), Lifecycle::NearExpiry, "near-expiry")
                .unwrap();
        let notification = accepted.notification(Action::Rotated { new_version: "v2".into() });
        assert_eq!(notification.event_id, "e1");
        assert_eq!(notification.event_type, KeyVaultEventType::SecretNearExpiry);
        assert!(notification.portal_link.is_some());
        assert_eq!(notification.expires, accepted.expires());
        assert!(notification.occurred_at.is_some());
    }
}
