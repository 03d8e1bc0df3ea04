//! Shared access authorization rules of Microsoft.ServiceBus and Microsoft.EventHub namespaces (and of a queue,
//! topic or event hub), REST API 2024-01-01 for both (azure-rest-api-specs
//! `specification/servicebus/resource-manager/Microsoft.ServiceBus/stable/2024-01-01/AuthorizationRules.json`,
//! `specification/eventhub/resource-manager/Microsoft.EventHub/stable/2024-01-01/AuthorizationRules.json`):
//! `POST .../authorizationRules/{rule}/listKeys` → `AccessKeys` (connection strings, keys, the rule's name);
//! `POST .../regenerateKeys` with `{"keyType":"PrimaryKey"|"SecondaryKey"}` → 200, the same shape with the new key.

use super::keys::{KeyType, Regenerate, Regenerated, Resource, base64_key};

const KEY_TYPES: &[&str] = &["PrimaryKey", "SecondaryKey"];

pub(super) const SERVICE_BUS: KeyType = KeyType {
    name: "Microsoft.ServiceBus/namespaces/authorizationRules",
    api_version: "2024-01-01",
    shapes: &[
        &["namespaces", "*", "authorizationRules", "*"],
        &["namespaces", "*", "queues|topics", "*", "authorizationRules", "*"],
    ],
    keys: &["primary", "secondary"],
    list_action: "listKeys",
    regenerate: Regenerate::Body { action: "regenerateKeys", field: "keyType", names: KEY_TYPES },
    answer: service_bus_answer,
    regenerated: Regenerated::Keys,
    // SAS keys: 32 random bytes, base64 (44 characters).
    new_key: || base64_key(32),
};

pub(super) const EVENT_HUBS: KeyType = KeyType {
    name: "Microsoft.EventHub/namespaces/authorizationRules",
    shapes: &[
        &["namespaces", "*", "authorizationRules", "*"],
        &["namespaces", "*", "eventhubs", "*", "authorizationRules", "*"],
    ],
    answer: event_hubs_answer,
    ..SERVICE_BUS
};

fn service_bus_answer(rule: &Resource) -> serde_json::Value {
    answer(rule, "servicebus.windows.net", &["queues", "topics"])
}

fn event_hubs_answer(rule: &Resource) -> serde_json::Value {
    answer(rule, "servicebus.windows.net", &["eventhubs"])
}

fn answer(rule: &Resource, suffix: &str, entities: &[&str]) -> serde_json::Value {
    let namespace = rule.name_after("namespaces").unwrap_or_default();
    let name = rule.name_after("authorizationRules").unwrap_or_default();
    let entity = entities
        .iter()
        .find_map(|collection| rule.name_after(collection))
        .map(|entity| format!(";EntityPath={entity}"))
        .unwrap_or_default();
    let connection = |key: &str| {
        format!("Endpoint=sb://{namespace}.{suffix}/;SharedAccessKeyName={name};SharedAccessKey={key}{entity}")
    };
    serde_json::json!({
        "primaryConnectionString": connection(&rule.keys[0].value),
        "secondaryConnectionString": connection(&rule.keys[1].value),
        "primaryKey": rule.keys[0].value,
        "secondaryKey": rule.keys[1].value,
        "keyName": name,
    })
}
