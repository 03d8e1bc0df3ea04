//! [`served`]: which events a Key Vault handler acts on. Event Grid subscriptions filter by event type,
//! but a subscription can be misconfigured: an event meant for another handler is acknowledged with the
//! reason, never retried.

use keyturn_events::{Event, KeyVaultEvent, Lifecycle, Payload};
use keyturn_host::Outcome;

/// The Key Vault payload of an event of `lifecycle`, or the skip that says why `function` does not act.
pub fn served<'e>(event: &'e Event, lifecycle: Lifecycle, function: &str) -> Result<&'e KeyVaultEvent, Outcome> {
    let serves = match lifecycle {
        Lifecycle::NewVersionCreated => "Secret/Key/CertificateNewVersionCreated",
        Lifecycle::NearExpiry => "Secret/Key/CertificateNearExpiry",
        Lifecycle::Expired => "Secret/Key/CertificateExpired",
        Lifecycle::AccessPolicyChanged => "VaultAccessPolicyChanged",
    };
    match &event.payload {
        Payload::KeyVault(key_vault) if key_vault.event_type.lifecycle() == lifecycle => Ok(key_vault),
        Payload::KeyVault(key_vault) => Err(Outcome::Skipped(format!(
            "{} is not an event {function} acts on; it serves {serves} only",
            key_vault.event_type.as_str()
        ))),
        Payload::SubscriptionValidation(_) => {
            Err(Outcome::Skipped("a subscription validation event is answered by the host".to_owned()))
        }
        Payload::Unknown(unknown) => Err(Outcome::Skipped(format!(
            "'{}' is not a Key Vault event; {function} serves {serves} only",
            unknown.event_type
        ))),
    }
}

/// The vault collection holding objects of `kind`; `None` for vault-level events.
pub fn collection_of(kind: keyturn_events::ObjectKind) -> Option<keyturn_vault::Collection> {
    match kind {
        keyturn_events::ObjectKind::Secret => Some(keyturn_vault::Collection::Secrets),
        keyturn_events::ObjectKind::Key => Some(keyturn_vault::Collection::Keys),
        keyturn_events::ObjectKind::Certificate => Some(keyturn_vault::Collection::Certificates),
        keyturn_events::ObjectKind::Vault => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(event_type: &str) -> Event {
        let json = format!(
            r#"{{"id":"e1","topic":"/subscriptions/s/resourceGroups/r/providers/Microsoft.KeyVault/vaults/kv-one",
            "subject":"db","eventType":"{event_type}","eventTime":"2026-01-01T00:00:00Z",
            "data":{{"Id":"https://kv-one.vault.azure.net/secrets/db/0123456789abcdef0123456789abcdef",
            "VaultName":"kv-one","ObjectType":"Secret","ObjectName":"db",
            "Version":"0123456789abcdef0123456789abcdef","NBF":null,"EXP":1767225600}},
            "dataVersion":"1","metadataVersion":"1"}}"#
        );
        Event::from_slice(json.as_bytes()).unwrap()
    }

    #[test]
    fn only_the_lifecycle_served_is_acted_on() {
        assert!(served(&event("Microsoft.KeyVault.SecretExpired"), Lifecycle::Expired, "expired").is_ok());
        let Err(Outcome::Skipped(reason)) =
            served(&event("Microsoft.KeyVault.SecretNearExpiry"), Lifecycle::Expired, "expired")
        else {
            panic!("near expiry served by expired")
        };
        assert!(reason.contains("Microsoft.KeyVault.SecretNearExpiry") && reason.contains("Expired only"), "{reason}");
        let Err(Outcome::Skipped(reason)) =
            served(&event("Microsoft.Storage.BlobCreated"), Lifecycle::NewVersionCreated, "new-version")
        else {
            panic!("foreign event served")
        };
        assert!(reason.contains("not a Key Vault event"), "{reason}");
    }
}
