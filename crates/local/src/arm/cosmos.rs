//! Microsoft.DocumentDB/databaseAccounts, REST API 2025-10-15 (azure-rest-api-specs
//! `specification/cosmos-db/resource-manager/Microsoft.DocumentDB/stable/2025-10-15/cosmos-db.json`):
//! `POST .../listKeys` → `DatabaseAccountListKeysResult` (the read-write and read-only master keys);
//! `POST .../regenerateKey` with `{"keyKind":"primary"|"secondary"|"primaryReadonly"|"secondaryReadonly"}` → 202
//! Accepted without a body (a long-running operation: the new key shows a moment later).

use super::keys::{KeyType, Regenerate, Regenerated, Resource, base64_key};

const KINDS: &[&str] = &["primary", "secondary", "primaryReadonly", "secondaryReadonly"];

pub(super) const COSMOS_DB: KeyType = KeyType {
    name: "Microsoft.DocumentDB/databaseAccounts",
    api_version: "2025-10-15",
    shapes: &[&["databaseAccounts", "*"]],
    keys: KINDS,
    list_action: "listKeys",
    regenerate: Regenerate::Body { action: "regenerateKey", field: "keyKind", names: KINDS },
    answer,
    regenerated: Regenerated::Accepted,
    // Cosmos DB keys: 64 random bytes, base64 (88 characters).
    new_key: || base64_key(64),
};

fn answer(account: &Resource) -> serde_json::Value {
    let key = |i: usize| account.keys[i].value.clone();
    serde_json::json!({
        "primaryMasterKey": key(0),
        "secondaryMasterKey": key(1),
        "primaryReadonlyMasterKey": key(2),
        "secondaryReadonlyMasterKey": key(3),
    })
}
