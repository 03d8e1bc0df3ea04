//! Microsoft.Cache/redis (Azure Cache for Redis), REST API 2024-11-01 (azure-rest-api-specs
//! `specification/redis/resource-manager/Microsoft.Cache/stable/2024-11-01/redis.json`): `POST .../listKeys` →
//! `RedisAccessKeys` `{"primaryKey","secondaryKey"}`; `POST .../regenerateKey` with `{"keyType":"Primary"|
//! "Secondary"}` → 200, the same shape with the new key.

use super::keys::{KeyType, Regenerate, Regenerated, Resource, base64_key};

pub(super) const REDIS: KeyType = KeyType {
    name: "Microsoft.Cache/redis",
    api_version: "2024-11-01",
    shapes: &[&["redis", "*"]],
    keys: &["primary", "secondary"],
    list_action: "listKeys",
    regenerate: Regenerate::Body { action: "regenerateKey", field: "keyType", names: &["Primary", "Secondary"] },
    answer,
    regenerated: Regenerated::Keys,
    // Redis access keys: 32 random bytes, base64 (44 characters).
    new_key: || base64_key(32),
};

fn answer(cache: &Resource) -> serde_json::Value {
    serde_json::json!({ "primaryKey": cache.keys[0].value, "secondaryKey": cache.keys[1].value })
}
