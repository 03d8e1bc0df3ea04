//! Microsoft.Storage/storageAccounts, REST API 2025-06-01 (azure-rest-api-specs
//! `specification/storage/resource-manager/Microsoft.Storage/stable/2025-06-01/storage.json`):
//! `POST .../listKeys` → `StorageAccountListKeysResult` `{"keys":[{"keyName":"key1","value":"...","permissions":
//! "FULL","creationTime":"..."}, {key2}]}`; `POST .../regenerateKey` with `{"keyName":"key1"|"key2"}` → 200, the
//! same shape with the new key.

use super::arm_time;
use super::keys::{KeyType, Regenerate, Regenerated, Resource, base64_key};

pub(super) const STORAGE: KeyType = KeyType {
    name: "Microsoft.Storage/storageAccounts",
    api_version: "2025-06-01",
    shapes: &[&["storageAccounts", "*"]],
    keys: &["key1", "key2"],
    list_action: "listKeys",
    regenerate: Regenerate::Body { action: "regenerateKey", field: "keyName", names: &["key1", "key2"] },
    answer,
    regenerated: Regenerated::Keys,
    // A real account key: 64 random bytes, standard base64 (88 characters).
    new_key: || base64_key(64),
};

fn answer(account: &Resource) -> serde_json::Value {
    let keys: Vec<serde_json::Value> = account
        .keys
        .iter()
        .zip(STORAGE.keys)
        .map(|(key, name)| {
            serde_json::json!({
                "keyName": name,
                "value": key.value,
                "permissions": "FULL",
                "creationTime": arm_time(key.created),
            })
        })
        .collect();
    serde_json::json!({ "keys": keys })
}
