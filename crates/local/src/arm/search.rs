//! Microsoft.Search/searchServices (Azure AI Search admin keys), REST API 2025-05-01 (azure-rest-api-specs
//! `specification/search/resource-manager/Microsoft.Search/stable/2025-05-01/search.json`): `POST .../listAdminKeys`
//! → `AdminKeyResult` `{"primaryKey","secondaryKey"}`; `POST .../regenerateAdminKey/{keyKind}` (`primary` |
//! `secondary`, no body) → 200, the same shape with the new key.

use super::keys::{KeyType, Regenerate, Regenerated, Resource, hex_key};

pub(super) const SEARCH: KeyType = KeyType {
    name: "Microsoft.Search/searchServices",
    api_version: "2025-05-01",
    shapes: &[&["searchServices", "*"]],
    keys: &["primary", "secondary"],
    list_action: "listAdminKeys",
    regenerate: Regenerate::Path { action: "regenerateAdminKey", names: &["primary", "secondary"] },
    answer,
    regenerated: Regenerated::Keys,
    new_key: hex_key,
};

fn answer(service: &Resource) -> serde_json::Value {
    serde_json::json!({ "primaryKey": service.keys[0].value, "secondaryKey": service.keys[1].value })
}
