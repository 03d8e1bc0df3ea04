//! Microsoft.CognitiveServices/accounts (Azure AI services, Azure OpenAI), REST API 2025-09-01
//! (azure-rest-api-specs `specification/cognitiveservices/resource-manager/Microsoft.CognitiveServices/stable/
//! 2025-09-01/cognitiveservices.json`): `POST .../listKeys` → `ApiKeys` `{"key1","key2"}`; `POST .../regenerateKey`
//! with `{"keyName":"Key1"|"Key2"}` → 200, the same shape with the new key.

use super::keys::{KeyType, Regenerate, Regenerated, Resource, hex_key};

pub(super) const COGNITIVE_SERVICES: KeyType = KeyType {
    name: "Microsoft.CognitiveServices/accounts",
    api_version: "2025-09-01",
    shapes: &[&["accounts", "*"]],
    keys: &["key1", "key2"],
    list_action: "listKeys",
    regenerate: Regenerate::Body { action: "regenerateKey", field: "keyName", names: &["Key1", "Key2"] },
    answer,
    regenerated: Regenerated::Keys,
    new_key: hex_key,
};

fn answer(account: &Resource) -> serde_json::Value {
    serde_json::json!({ "key1": account.keys[0].value, "key2": account.keys[1].value })
}
