//! What every resource type of the key family shares: a resource holding named keys, how often each was
//! regenerated, and the list and regenerate operations. Each type's module fills a [`KeyType`] with its
//! service's shapes.

use std::collections::BTreeMap;
use std::sync::MutexGuard;
use std::time::Duration;

use base64::Engine as _;
use http::StatusCode;

use super::{Resources, arm_error, lock};
use crate::keyvault::server::{self, ServerResponse};

/// One resource type: its API version, its resource ids, its keys and its wire shapes.
#[derive(Debug)]
pub(super) struct KeyType {
    /// The type as ARM spells it, for messages.
    pub name: &'static str,
    /// The one API version served (the newest stable one published in Azure/azure-rest-api-specs).
    pub api_version: &'static str,
    /// The resource id's segments after the provider namespace: `*` is a name, `a|b` one of the literals.
    pub shapes: &'static [&'static [&'static str]],
    /// The emulator's names for the keys (what [`super::RunningArm::key`] takes), in the order `answer` reads them.
    pub keys: &'static [&'static str],
    /// `POST {id}/{list_action}` answers the keys.
    pub list_action: &'static str,
    pub regenerate: Regenerate,
    /// The list answer (and the regenerate answer of types that answer the keys).
    pub answer: fn(&Resource) -> serde_json::Value,
    /// How a regeneration is answered.
    pub regenerated: Regenerated,
    /// A new key in the service's format.
    pub new_key: fn() -> String,
}

/// How a regenerate request names its key: `names[i]` names `keys[i]` (case-insensitive).
#[derive(Debug)]
pub(super) enum Regenerate {
    /// `POST {id}/{action}` with `{"<field>": "<name>"}`.
    Body { action: &'static str, field: &'static str, names: &'static [&'static str] },
    /// `POST {id}/{action}/{name}`, no body.
    Path { action: &'static str, names: &'static [&'static str] },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Regenerated {
    /// 200 with the keys, the new one included.
    Keys,
    /// 202 Accepted without a body: a long-running operation; the new key shows [`ACCEPTED_DELAY`] later.
    Accepted,
}

/// How long an accepted regeneration takes to show (Cosmos DB's take seconds to minutes in Azure).
const ACCEPTED_DELAY: Duration = Duration::from_millis(300);

/// What a request asks of a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Operation<'a> {
    List,
    /// Regenerate; a [`Regenerate::Path`] type's key name comes from the path.
    Regenerate(Option<&'a str>),
}

impl KeyType {
    /// How many segments after the namespace the resource id of `rest` has, if `rest` starts with one.
    pub(super) fn resource_length(&self, rest: &[&str]) -> Option<usize> {
        self.shapes.iter().find_map(|shape| {
            let matches = rest.len() >= shape.len()
                && shape.iter().zip(rest).all(|(pattern, segment)| match *pattern {
                    "*" => !segment.is_empty(),
                    literals => literals.split('|').any(|l| l.eq_ignore_ascii_case(segment)),
                });
            matches.then_some(shape.len())
        })
    }

    /// The operation `action` (what follows the resource id) names, if this type serves it.
    pub(super) fn operation<'a>(&self, action: &'a str) -> Option<Operation<'a>> {
        if action.eq_ignore_ascii_case(self.list_action) {
            return Some(Operation::List);
        }
        match self.regenerate {
            Regenerate::Body { action: regenerate, .. } => {
                action.eq_ignore_ascii_case(regenerate).then_some(Operation::Regenerate(None))
            }
            Regenerate::Path { action: regenerate, .. } => {
                let (verb, key) = action.split_once('/')?;
                verb.eq_ignore_ascii_case(regenerate).then_some(Operation::Regenerate(Some(key)))
            }
        }
    }

    /// The index of the key named `key` (the emulator's name, any case).
    pub(super) fn index(&self, key: &str) -> Option<usize> {
        self.keys.iter().position(|k| k.eq_ignore_ascii_case(key))
    }

    /// The key a regenerate request names.
    fn target(&self, key_in_path: Option<&str>, body: &[u8]) -> Option<usize> {
        let (names, named) = match self.regenerate {
            Regenerate::Body { field, names, .. } => {
                let body: serde_json::Value = serde_json::from_slice(body).ok()?;
                (names, body.get(field)?.as_str()?.to_owned())
            }
            Regenerate::Path { names, .. } => (names, key_in_path?.to_owned()),
        };
        names.iter().position(|n| n.eq_ignore_ascii_case(&named))
    }
}

/// Every type the emulator serves.
pub(super) const SERVED: [&KeyType; 7] = {
    use super::{cognitive, cosmos, messaging, redis, search, storage};
    [
        &storage::STORAGE,
        &cosmos::COSMOS_DB,
        &redis::REDIS,
        &messaging::SERVICE_BUS,
        &messaging::EVENT_HUBS,
        &cognitive::COGNITIVE_SERVICES,
        &search::SEARCH,
    ]
};

/// Every type the emulator serves, for messages.
pub(super) fn served_types() -> String {
    SERVED.iter().map(|t| t.name).collect::<Vec<_>>().join(", ")
}

/// One key and when it was made.
#[derive(Debug, Clone)]
pub(super) struct Key {
    pub value: String,
    pub created: chrono::DateTime<chrono::Utc>,
}

/// One resource's keys and how often each was regenerated.
#[derive(Debug, Clone)]
pub(super) struct Resource {
    /// The resource id as registered (its spelling is what answers use).
    pub id: String,
    pub kind: &'static KeyType,
    pub keys: Vec<Key>,
    pub regenerations: Vec<u32>,
    /// How many list calls it answered.
    pub lists: u32,
}

impl Resource {
    pub(super) fn new(id: String, kind: &'static KeyType) -> Self {
        let keys = kind.keys.iter().map(|_| Key::new(kind)).collect();
        Self { id, kind, keys, regenerations: vec![0; kind.keys.len()], lists: 0 }
    }

    /// The id's segment after `collection` (a namespace or rule name), for answers that quote it.
    pub(super) fn name_after(&self, collection: &str) -> Option<&str> {
        let mut segments = self.id.split('/');
        segments.find(|s| s.eq_ignore_ascii_case(collection))?;
        segments.next()
    }
}

impl Key {
    fn new(kind: &KeyType) -> Self {
        Self { value: (kind.new_key)(), created: chrono::Utc::now() }
    }
}

/// `len` random bytes from the OS CSPRNG. It does not fail on supported platforms; zeroed bytes would still be a
/// valid (weak) key for an emulator, never a production secret.
fn random(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    bytes
}

/// A key of `len` random bytes, standard base64 (storage and Cosmos DB: 64; Redis, Service Bus, Event Hubs: 32).
pub(super) fn base64_key(len: usize) -> String {
    base64::engine::general_purpose::STANDARD.encode(random(len))
}

/// A key of 16 random bytes, 32 hex digits (Azure AI services, Azure AI Search).
pub(super) fn hex_key() -> String {
    random(16).iter().map(|b| format!("{b:02x}")).collect()
}

/// Carries out `operation` on the resource `id` (present in `resources`).
pub(super) fn apply(
    shared: &Resources,
    resources: &mut MutexGuard<'_, BTreeMap<String, Resource>>,
    id: &str,
    operation: Operation<'_>,
    body: &[u8],
) -> ServerResponse {
    let Some(resource) = resources.get_mut(id) else {
        return arm_error(StatusCode::NOT_FOUND, "ResourceNotFound", "The resource was not found.");
    };
    let kind = resource.kind;
    let key_in_path = match operation {
        Operation::List => {
            resource.lists += 1;
            return server::json_response(StatusCode::OK, &(kind.answer)(resource));
        }
        Operation::Regenerate(key_in_path) => key_in_path,
    };
    let Some(index) = kind.target(key_in_path, body) else {
        return arm_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContent",
            &format!("The request names no key of a {}.", kind.name),
        );
    };
    resource.regenerations[index] += 1;
    tracing::info!(resource = %resource.id, key = kind.keys[index], "key regeneration accepted");
    match kind.regenerated {
        Regenerated::Keys => {
            resource.keys[index] = Key::new(kind);
            server::json_response(StatusCode::OK, &(kind.answer)(resource))
        }
        Regenerated::Accepted => {
            let shared = shared.clone();
            let id = id.to_owned();
            tokio::spawn(async move {
                tokio::time::sleep(ACCEPTED_DELAY).await;
                if let Some(resource) = lock(&shared).get_mut(&id) {
                    resource.keys[index] = Key::new(kind);
                }
            });
            let mut response = server::empty(StatusCode::ACCEPTED);
            // Where Azure's client would poll; the emulator does not serve it (keyturn lists the keys instead).
            if let Ok(location) = http::HeaderValue::from_str(&format!("{}/operationResults/regenerate", resource.id)) {
                response.headers_mut().insert("azure-asyncoperation", location.clone());
                response.headers_mut().insert(http::header::LOCATION, location);
            }
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{cognitive, cosmos, messaging, redis, search, storage};
    use super::*;

    #[test]
    fn each_type_reads_its_services_regenerate_request() {
        for (kind, action, key_in_path, body, key) in [
            (&storage::STORAGE, "regenerateKey", None, r#"{"keyName":"KEY2"}"#, Some("key2")),
            (&storage::STORAGE, "regenerateKey", None, r#"{"keyName":"kerb1"}"#, None),
            (
                &cosmos::COSMOS_DB,
                "regenerateKey",
                None,
                r#"{"keyKind":"secondaryReadonly"}"#,
                Some("secondaryReadonly"),
            ),
            (&redis::REDIS, "regenerateKey", None, r#"{"keyType":"Primary"}"#, Some("primary")),
            (&messaging::SERVICE_BUS, "regenerateKeys", None, r#"{"keyType":"SecondaryKey"}"#, Some("secondary")),
            (&messaging::EVENT_HUBS, "regenerateKeys", None, r#"{"keyType":"primary"}"#, None),
            (&cognitive::COGNITIVE_SERVICES, "regenerateKey", None, r#"{"keyName":"Key2"}"#, Some("key2")),
            (&search::SEARCH, "regenerateAdminKey/primary", Some("primary"), "", Some("primary")),
            (&search::SEARCH, "regenerateAdminKey/tertiary", Some("tertiary"), "", None),
        ] {
            assert_eq!(kind.operation(action), Some(Operation::Regenerate(key_in_path)), "{}", kind.name);
            assert_eq!(
                kind.target(key_in_path, body.as_bytes()),
                key.and_then(|k| kind.index(k)),
                "{}: {body}",
                kind.name
            );
            assert_eq!(kind.operation(kind.list_action), Some(Operation::List));
            assert_eq!(kind.operation("delete"), None);
        }
    }

    #[test]
    fn answers_hold_the_keys_in_the_services_shapes() {
        let bus = Resource::new(
            "/subscriptions/s/resourceGroups/g/providers/Microsoft.ServiceBus/namespaces/shop/queues/orders/authorizationRules/send"
                .to_owned(),
            &messaging::SERVICE_BUS,
        );
        let answer = (bus.kind.answer)(&bus);
        assert_eq!(answer["primaryKey"], bus.keys[0].value.as_str());
        assert_eq!(answer["keyName"], "send");
        assert_eq!(
            answer["secondaryConnectionString"],
            format!(
                "Endpoint=sb://shop.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey={};EntityPath=orders",
                bus.keys[1].value
            )
        );
        let cosmos = Resource::new(
            "/subscriptions/s/resourceGroups/g/providers/Microsoft.DocumentDB/databaseAccounts/c".to_owned(),
            &cosmos::COSMOS_DB,
        );
        let answer = (cosmos.kind.answer)(&cosmos);
        assert_eq!(answer["secondaryReadonlyMasterKey"], cosmos.keys[3].value.as_str());
        assert_eq!(cosmos.keys[0].value.len(), 88);
        let storage = Resource::new(
            "/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/a".to_owned(),
            &storage::STORAGE,
        );
        let answer = (storage.kind.answer)(&storage);
        assert_eq!(answer["keys"][1]["keyName"], "key2");
        assert_eq!(answer["keys"][1]["permissions"], "FULL");
        assert_eq!(hex_key().len(), 32);
    }
}
