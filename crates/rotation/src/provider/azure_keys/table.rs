//! The Azure key family's table: one row per resource type, saying how Resource Manager lists and regenerates
//! its two keys. Everything type-specific lives here; the provider (`azure_keys.rs`) and the client (`arm.rs`)
//! are the same for every row.
//!
//! Each API version is the newest stable one published in Azure/azure-rest-api-specs
//! (`specification/<service>/resource-manager/<namespace>/stable/<version>/`), cited on its row; the local
//! stack's ARM emulator (crates/local/src/arm/) requires exactly these versions.
//!
//! Replay safety does not rely on the services: only storage accounts report a key's `creationTime`, so the
//! provider records the regenerated key's previous fingerprint before regenerating (see `azure_keys.rs`), which
//! works the same for every row.

use keyturn_config::azure_keys::AzureKeyType;
use serde_json::Value;

/// One key of a resource: how a secret's `CredentialId` names it, where the list answer holds it, and how the
/// regenerate call names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// The `CredentialId` tag value (case-insensitive on input; written back as spelled here).
    pub credential_id: &'static str,
    /// The list answer's field holding it (or, for [`KeyList::NamedArray`], its `keyName`).
    pub answer: &'static str,
    /// The value the regenerate call names it by.
    pub regenerate: &'static str,
}

/// The shape of a list answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyList {
    /// One top-level field per key: `{"primaryKey": "...", "secondaryKey": "..."}`.
    Fields,
    /// Storage's `{"keys": [{"keyName": "key1", "value": "...", ...}, ...]}`.
    NamedArray,
}

/// How a key is regenerated: always `POST`, with the key named in a JSON body or in the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Regenerate {
    /// `POST {id}/{action}` with `{"<field>": "<slot.regenerate>"}`.
    Body { action: &'static str, field: &'static str },
    /// `POST {id}/{action}/{slot.regenerate}` with no body (Azure AI Search).
    Path { action: &'static str },
}

/// One resource type of the family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceSpec {
    pub kind: AzureKeyType,
    /// The REST API version of the type's resource provider.
    pub api_version: &'static str,
    /// `POST {id}/{list_action}` answers every key.
    pub list_action: &'static str,
    pub list: KeyList,
    pub regenerate: Regenerate,
    /// The key pairs; within a pair, a rotation regenerates the key the secret does not hold.
    pub pairs: &'static [[Slot; 2]],
}

const fn slot(credential_id: &'static str, answer: &'static str, regenerate: &'static str) -> Slot {
    Slot { credential_id, answer, regenerate }
}

// Microsoft.Storage, stable/2025-06-01/storage.json: StorageAccounts_ListKeys, StorageAccounts_RegenerateKey
// (StorageAccountRegenerateKeyParameters.keyName), answering StorageAccountListKeysResult.
const STORAGE: ResourceSpec = ResourceSpec {
    kind: AzureKeyType::StorageAccount,
    api_version: "2025-06-01",
    list_action: "listKeys",
    list: KeyList::NamedArray,
    regenerate: Regenerate::Body { action: "regenerateKey", field: "keyName" },
    pairs: &[[slot("key1", "key1", "key1"), slot("key2", "key2", "key2")]],
};

// Microsoft.DocumentDB, stable/2025-10-15/cosmos-db.json: DatabaseAccounts_ListKeys (DatabaseAccountListKeysResult:
// the read-write and read-only master keys), DatabaseAccounts_RegenerateKey (DatabaseAccountRegenerateKeyParameters
// .keyKind; a long-running operation answering 200 or 202 without a body).
const COSMOS_DB: ResourceSpec = ResourceSpec {
    kind: AzureKeyType::CosmosDbAccount,
    api_version: "2025-10-15",
    list_action: "listKeys",
    list: KeyList::Fields,
    regenerate: Regenerate::Body { action: "regenerateKey", field: "keyKind" },
    pairs: &[
        [slot("primary", "primaryMasterKey", "primary"), slot("secondary", "secondaryMasterKey", "secondary")],
        [
            slot("primaryReadonly", "primaryReadonlyMasterKey", "primaryReadonly"),
            slot("secondaryReadonly", "secondaryReadonlyMasterKey", "secondaryReadonly"),
        ],
    ],
};

// Microsoft.Cache, stable/2024-11-01/redis.json: Redis_ListKeys, Redis_RegenerateKey (RedisRegenerateKeyParameters
// .keyType: Primary | Secondary), answering RedisAccessKeys.
const REDIS: ResourceSpec = ResourceSpec {
    kind: AzureKeyType::RedisCache,
    api_version: "2024-11-01",
    list_action: "listKeys",
    list: KeyList::Fields,
    regenerate: Regenerate::Body { action: "regenerateKey", field: "keyType" },
    pairs: &[[slot("primary", "primaryKey", "Primary"), slot("secondary", "secondaryKey", "Secondary")]],
};

// Microsoft.ServiceBus, stable/2024-01-01/AuthorizationRules.json (Queues.json, topics.json for entity rules):
// *_ListKeys, *_RegenerateKeys (RegenerateAccessKeyParameters.keyType: PrimaryKey | SecondaryKey), answering
// AccessKeys.
const SERVICE_BUS: ResourceSpec = ResourceSpec {
    kind: AzureKeyType::ServiceBusRule,
    api_version: "2024-01-01",
    list_action: "listKeys",
    list: KeyList::Fields,
    regenerate: Regenerate::Body { action: "regenerateKeys", field: "keyType" },
    pairs: &[[slot("primary", "primaryKey", "PrimaryKey"), slot("secondary", "secondaryKey", "SecondaryKey")]],
};

// Microsoft.EventHub, stable/2024-01-01/AuthorizationRules.json (eventhubs.json for an event hub's rules): the
// same operations and shapes as Service Bus.
const EVENT_HUBS: ResourceSpec = ResourceSpec { kind: AzureKeyType::EventHubsRule, ..SERVICE_BUS };

// Microsoft.CognitiveServices, stable/2025-09-01/cognitiveservices.json: Accounts_ListKeys, Accounts_RegenerateKey
// (RegenerateKeyParameters.keyName: Key1 | Key2), answering ApiKeys {key1, key2}.
const COGNITIVE_SERVICES: ResourceSpec = ResourceSpec {
    kind: AzureKeyType::CognitiveServicesAccount,
    api_version: "2025-09-01",
    list_action: "listKeys",
    list: KeyList::Fields,
    regenerate: Regenerate::Body { action: "regenerateKey", field: "keyName" },
    pairs: &[[slot("key1", "key1", "Key1"), slot("key2", "key2", "Key2")]],
};

// Microsoft.Search, stable/2025-05-01/search.json: AdminKeys_Get (POST listAdminKeys), AdminKeys_Regenerate
// (POST regenerateAdminKey/{keyKind}: primary | secondary), answering AdminKeyResult.
const SEARCH: ResourceSpec = ResourceSpec {
    kind: AzureKeyType::SearchService,
    api_version: "2025-05-01",
    list_action: "listAdminKeys",
    list: KeyList::Fields,
    regenerate: Regenerate::Path { action: "regenerateAdminKey" },
    pairs: &[[slot("primary", "primaryKey", "primary"), slot("secondary", "secondaryKey", "secondary")]],
};

/// The row of `kind` (every type has one: the match is exhaustive).
pub fn row(kind: AzureKeyType) -> &'static ResourceSpec {
    match kind {
        AzureKeyType::StorageAccount => &STORAGE,
        AzureKeyType::CosmosDbAccount => &COSMOS_DB,
        AzureKeyType::RedisCache => &REDIS,
        AzureKeyType::ServiceBusRule => &SERVICE_BUS,
        AzureKeyType::EventHubsRule => &EVENT_HUBS,
        AzureKeyType::CognitiveServicesAccount => &COGNITIVE_SERVICES,
        AzureKeyType::SearchService => &SEARCH,
    }
}

impl ResourceSpec {
    /// `(the key the secret holds, the key a rotation regenerates)` for a `CredentialId`; `None` when this type has
    /// no key of that name.
    pub fn slots(&self, credential_id: &str) -> Option<(Slot, Slot)> {
        self.pairs.iter().find_map(|[a, b]| {
            if a.credential_id.eq_ignore_ascii_case(credential_id) {
                Some((*a, *b))
            } else if b.credential_id.eq_ignore_ascii_case(credential_id) {
                Some((*b, *a))
            } else {
                None
            }
        })
    }

    /// The `CredentialId` values this type accepts, for error messages.
    pub fn credential_ids(&self) -> String {
        self.pairs.iter().flatten().map(|s| s.credential_id).collect::<Vec<_>>().join(", ")
    }

    /// The regenerate call for `slot`: the path suffix after the resource id, and the JSON body.
    pub fn regenerate_request(&self, slot: Slot) -> (String, Option<String>) {
        match self.regenerate {
            Regenerate::Body { action, field } => {
                (action.to_owned(), Some(serde_json::json!({ field: slot.regenerate }).to_string()))
            }
            Regenerate::Path { action } => (format!("{action}/{}", slot.regenerate), None),
        }
    }

    /// The value of `slot` in a list answer; `None` when the answer does not hold it (or holds it empty).
    pub fn read<'a>(&self, answer: &'a Value, slot: Slot) -> Option<&'a str> {
        let value = match self.list {
            KeyList::Fields => answer.get(slot.answer),
            KeyList::NamedArray => answer.get("keys")?.as_array()?.iter().find_map(|key| {
                key.get("keyName")?.as_str()?.eq_ignore_ascii_case(slot.answer).then(|| key.get("value"))?
            }),
        };
        value?.as_str().filter(|v| !v.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(type, the CredentialId held, the one regenerated, (regenerate path, body), a list answer)`.
    type Case = (AzureKeyType, &'static str, &'static str, (&'static str, Option<&'static str>), Value);

    /// Each row's regenerate request and list answer, in the shapes of the REST API specs' examples.
    #[test]
    fn every_row_names_the_other_key_and_reads_the_services_answer() {
        let cases: [Case; 7] = [
            (
                AzureKeyType::StorageAccount,
                "KEY1",
                "key2",
                ("regenerateKey", Some(r#"{"keyName":"key2"}"#)),
                serde_json::json!({"keys": [
                    {"keyName": "key1", "value": "one", "permissions": "FULL", "creationTime": "2021-03-18T04:42:22.4322836Z"},
                    {"keyName": "key2", "value": "two", "permissions": "FULL", "creationTime": "2021-03-18T04:42:22.4322836Z"}
                ]}),
            ),
            (
                AzureKeyType::CosmosDbAccount,
                "secondaryReadonly",
                "primaryReadonly",
                ("regenerateKey", Some(r#"{"keyKind":"primaryReadonly"}"#)),
                serde_json::json!({"primaryMasterKey": "a", "secondaryMasterKey": "b",
                    "primaryReadonlyMasterKey": "two", "secondaryReadonlyMasterKey": "one"}),
            ),
            (
                AzureKeyType::RedisCache,
                "primary",
                "secondary",
                ("regenerateKey", Some(r#"{"keyType":"Secondary"}"#)),
                serde_json::json!({"primaryKey": "one", "secondaryKey": "two"}),
            ),
            (
                AzureKeyType::ServiceBusRule,
                "secondary",
                "primary",
                ("regenerateKeys", Some(r#"{"keyType":"PrimaryKey"}"#)),
                serde_json::json!({"primaryConnectionString": "Endpoint=sb://x/;SharedAccessKey=two",
                    "secondaryConnectionString": "Endpoint=sb://x/;SharedAccessKey=one",
                    "primaryKey": "two", "secondaryKey": "one", "keyName": "send"}),
            ),
            (
                AzureKeyType::EventHubsRule,
                "PRIMARY",
                "secondary",
                ("regenerateKeys", Some(r#"{"keyType":"SecondaryKey"}"#)),
                serde_json::json!({"primaryKey": "one", "secondaryKey": "two", "keyName": "RootManageSharedAccessKey"}),
            ),
            (
                AzureKeyType::CognitiveServicesAccount,
                "key2",
                "key1",
                ("regenerateKey", Some(r#"{"keyName":"Key1"}"#)),
                serde_json::json!({"key1": "two", "key2": "one"}),
            ),
            (
                AzureKeyType::SearchService,
                "primary",
                "secondary",
                ("regenerateAdminKey/secondary", None),
                serde_json::json!({"primaryKey": "one", "secondaryKey": "two"}),
            ),
        ];
        for (kind, stored_id, other_id, (path, body), answer) in cases {
            let row = row(kind);
            assert_eq!(row.kind, kind);
            let (stored, other) = row.slots(stored_id).unwrap();
            assert_eq!(other.credential_id, other_id, "{kind:?}");
            assert_eq!(row.regenerate_request(other), (path.to_owned(), body.map(str::to_owned)), "{kind:?}");
            assert_eq!(row.read(&answer, stored), Some("one"), "{kind:?}");
            assert_eq!(row.read(&answer, other), Some("two"), "{kind:?}");
            assert_eq!(row.read(&serde_json::json!({}), other), None, "{kind:?}: an answer without the key");
            assert!(row.slots("tertiary").is_none(), "{kind:?}");
        }
    }

    #[test]
    fn an_empty_key_is_no_key() {
        let answer = serde_json::json!({"keys": [{"keyName": "key1", "value": ""}]});
        let (key1, _) = STORAGE.slots("key1").unwrap();
        assert_eq!(STORAGE.read(&answer, key1), None);
        assert_eq!(
            row(AzureKeyType::CosmosDbAccount).credential_ids(),
            "primary, secondary, primaryReadonly, secondaryReadonly"
        );
    }
}
