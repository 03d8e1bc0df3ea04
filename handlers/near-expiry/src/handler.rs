//! [`handle`]: one delivered event through the rotation engine.

use std::sync::Arc;

use events::{Event, KeyVaultEvent, Lifecycle, Payload};
use host::{HandlerError, Outcome};

use crate::Deps;
use crate::report::{self, Target};

/// Rotates the object a `*NearExpiry` event names; any other event is skipped with the reason.
///
/// Duplicate, concurrent and late deliveries are safe: the engine acts only while the event's version is
/// the object's latest, under the object's lock.
pub async fn handle(event: Event, deps: Arc<Deps>) -> Result<Outcome, HandlerError> {
    let key_vault = match served(&event) {
        Ok(key_vault) => key_vault,
        Err(skipped) => return Ok(skipped),
    };
    let object = &key_vault.object;
    let target = Target { vault: object.vault_name(), kind: object.kind(), name: object.name() };
    let _turn = deps.turn().await;
    match deps.engine().rotate(&event).await {
        Ok(outcome) => Ok(report::outcome(&target, outcome)),
        Err(error) => Err(report::error(&target, &error)),
    }
}

/// The Key Vault payload of an event this handler acts on, or the skip that says why it does not.
///
/// Event Grid subscriptions filter by event type, but a subscription can be misconfigured (or a batch can
/// mix types): an event meant for another handler is acknowledged, never retried.
pub fn served(event: &Event) -> Result<&KeyVaultEvent, Outcome> {
    let key_vault = match &event.payload {
        Payload::KeyVault(key_vault) => key_vault,
        Payload::SubscriptionValidation(_) => {
            return Err(Outcome::Skipped("a subscription validation event is answered by the host".to_owned()));
        }
        Payload::Unknown(unknown) => {
            return Err(Outcome::Skipped(format!(
                "'{}' is not a Key Vault event; near-expiry serves *NearExpiry events only",
                unknown.event_type
            )));
        }
    };
    let event_type = key_vault.event_type;
    if event_type.lifecycle() != Lifecycle::NearExpiry {
        return Err(Outcome::Skipped(format!(
            "{} is not a near-expiry event; near-expiry serves Secret/Key/CertificateNearExpiry only",
            event_type.as_str()
        )));
    }
    Ok(key_vault)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(event_type: &str) -> Event {
        event_of("Secret", event_type)
    }

    fn event_of(kind: &str, event_type: &str) -> Event {
        let collection = format!("{}s", kind.to_ascii_lowercase());
        let json = format!(
            r#"{{"id":"e1","topic":"/subscriptions/s/resourceGroups/r/providers/Microsoft.KeyVault/vaults/kv-one",
            "subject":"db","eventType":"{event_type}","eventTime":"2026-01-01T00:00:00Z",
            "data":{{"Id":"https://kv-one.vault.azure.net/{collection}/db/0123456789abcdef0123456789abcdef",
            "VaultName":"kv-one","ObjectType":"{kind}","ObjectName":"db",
            "Version":"0123456789abcdef0123456789abcdef","NBF":null,"EXP":1767225600}},
            "dataVersion":"1","metadataVersion":"1"}}"#
        );
        Event::from_slice(json.as_bytes()).unwrap()
    }

    #[test]
    fn near_expiry_events_of_every_object_kind_are_served() {
        for kind in ["Secret", "Key", "Certificate"] {
            let event = event_of(kind, &format!("Microsoft.KeyVault.{kind}NearExpiry"));
            assert!(served(&event).is_ok(), "{kind}NearExpiry");
        }
    }

    #[test]
    fn other_key_vault_events_are_skipped_naming_their_type() {
        for event_type in ["Microsoft.KeyVault.SecretExpired", "Microsoft.KeyVault.SecretNewVersionCreated"] {
            let Err(Outcome::Skipped(reason)) = served(&event(event_type)) else { panic!("{event_type} served") };
            assert!(reason.contains(event_type), "{reason}");
        }
    }

    #[test]
    fn unknown_events_and_handshakes_are_skipped() {
        let Err(Outcome::Skipped(reason)) = served(&event("Microsoft.Storage.BlobCreated")) else { panic!() };
        assert!(reason.contains("Microsoft.Storage.BlobCreated"), "{reason}");
        let validation = Event::from_slice(
            br#"{"id":"v","topic":"t","subject":"","eventType":"Microsoft.EventGrid.SubscriptionValidationEvent",
            "eventTime":"2026-01-01T00:00:00Z","data":{"validationCode":"c"},"dataVersion":"1","metadataVersion":"1"}"#,
        )
        .unwrap();
        assert!(matches!(served(&validation), Err(Outcome::Skipped(_))));
    }
}
