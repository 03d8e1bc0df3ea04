//! Settings of the Azure key family provider (`azure-key`, and its older name `storage-account-key`): which
//! Azure resources with two regenerable keys the secrets of which vault (and names) may rotate.
//!
//! Two settings feed one binding list, both in the grammar of every binding ([`crate::bindings`]):
//! - `KEYTURN_AZURE_KEY_RESOURCES`: `<vault>[/<name>|<prefix>*]=<resource id>[,<id>...]`, any resource of a
//!   type in [`AzureKeyType`];
//! - `KEYTURN_STORAGE_ACCOUNTS`: the same grammar, storage accounts only (the setting the `storage-account-key`
//!   provider has always read; kept as it was).
//!
//! A resource id of a type keyturn cannot rotate is a configuration error at start naming it, not a rotation
//! that fails later. Unset both: the provider is not registered at all.

use crate::bindings::{Binding, TargetKind};
use crate::{ConfigError, Env};

pub const AZURE_KEY_RESOURCES: &str = "KEYTURN_AZURE_KEY_RESOURCES";
pub const STORAGE_ACCOUNTS: &str = "KEYTURN_STORAGE_ACCOUNTS";

/// The resource types of the family: each has two keys, one of which can be regenerated while the other stays
/// valid. The rotation crate holds each type's wire calls (`provider/azure_keys/table.rs`); this enum is what a
/// deployment may bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AzureKeyType {
    /// `Microsoft.Storage/storageAccounts`: `key1`/`key2`.
    StorageAccount,
    /// `Microsoft.DocumentDB/databaseAccounts`: the read-write and the read-only key pairs.
    CosmosDbAccount,
    /// `Microsoft.Cache/redis`: Azure Cache for Redis access keys.
    RedisCache,
    /// `Microsoft.ServiceBus/namespaces/authorizationRules` (and a queue's or topic's rules).
    ServiceBusRule,
    /// `Microsoft.EventHub/namespaces/authorizationRules` (and an event hub's rules).
    EventHubsRule,
    /// `Microsoft.CognitiveServices/accounts`: Azure AI services and Azure OpenAI `Key1`/`Key2`.
    CognitiveServicesAccount,
    /// `Microsoft.Search/searchServices`: Azure AI Search admin keys.
    SearchService,
}

/// `*` is one resource name; `a|b` one of the literal segments (case-insensitive, as ARM compares them).
type Shape = &'static [&'static str];

impl AzureKeyType {
    pub const ALL: [Self; 7] = [
        Self::StorageAccount,
        Self::CosmosDbAccount,
        Self::RedisCache,
        Self::ServiceBusRule,
        Self::EventHubsRule,
        Self::CognitiveServicesAccount,
        Self::SearchService,
    ];

    /// The resource type as ARM spells it (for messages and docs).
    pub fn arm_type(self) -> &'static str {
        match self {
            Self::StorageAccount => "Microsoft.Storage/storageAccounts",
            Self::CosmosDbAccount => "Microsoft.DocumentDB/databaseAccounts",
            Self::RedisCache => "Microsoft.Cache/redis",
            Self::ServiceBusRule => "Microsoft.ServiceBus/namespaces[/queues|topics]/authorizationRules",
            Self::EventHubsRule => "Microsoft.EventHub/namespaces[/eventhubs]/authorizationRules",
            Self::CognitiveServicesAccount => "Microsoft.CognitiveServices/accounts",
            Self::SearchService => "Microsoft.Search/searchServices",
        }
    }

    /// The segments after `/providers/` a resource id of this type has.
    fn shapes(self) -> &'static [Shape] {
        match self {
            Self::StorageAccount => &[&["Microsoft.Storage", "storageAccounts", "*"]],
            Self::CosmosDbAccount => &[&["Microsoft.DocumentDB", "databaseAccounts", "*"]],
            Self::RedisCache => &[&["Microsoft.Cache", "redis", "*"]],
            Self::ServiceBusRule => &[
                &["Microsoft.ServiceBus", "namespaces", "*", "authorizationRules", "*"],
                &["Microsoft.ServiceBus", "namespaces", "*", "queues|topics", "*", "authorizationRules", "*"],
            ],
            Self::EventHubsRule => &[
                &["Microsoft.EventHub", "namespaces", "*", "authorizationRules", "*"],
                &["Microsoft.EventHub", "namespaces", "*", "eventhubs", "*", "authorizationRules", "*"],
            ],
            Self::CognitiveServicesAccount => &[&["Microsoft.CognitiveServices", "accounts", "*"]],
            Self::SearchService => &[&["Microsoft.Search", "searchServices", "*"]],
        }
    }

    /// The type of the resource id `id` (`/subscriptions/<s>/resourceGroups/<g>/providers/<type>/<name>...`,
    /// case-insensitive, a trailing slash allowed). `None`: not a well-formed resource id of a type in the family
    /// (a name with characters ARM names never have, such as `?`, `#` or `..`, is not well formed: the id becomes
    /// a request path).
    pub fn of(id: &str) -> Option<Self> {
        let segments: Vec<&str> = id.trim_end_matches('/').split('/').collect();
        let ["", subscriptions, subscription, groups, group, providers, rest @ ..] = segments.as_slice() else {
            return None;
        };
        let prefix_ok = subscriptions.eq_ignore_ascii_case("subscriptions")
            && groups.eq_ignore_ascii_case("resourceGroups")
            && providers.eq_ignore_ascii_case("providers")
            && is_name(subscription)
            && is_name(group);
        if !prefix_ok {
            return None;
        }
        Self::ALL.into_iter().find(|kind| kind.shapes().iter().any(|shape| matches_shape(shape, rest)))
    }

    /// Every type, as ARM spells it, for error messages.
    pub fn all_arm_types() -> String {
        Self::ALL.iter().map(|t| t.arm_type()).collect::<Vec<_>>().join(", ")
    }
}

fn matches_shape(shape: Shape, segments: &[&str]) -> bool {
    shape.len() == segments.len()
        && shape.iter().zip(segments).all(|(pattern, segment)| match *pattern {
            "*" => is_name(segment),
            literals => literals.split('|').any(|l| l.eq_ignore_ascii_case(segment)),
        })
}

/// A resource name as ARM allows it in these types (letters, digits, `-_.()`), never only dots.
fn is_name(segment: &str) -> bool {
    !segment.is_empty()
        && !segment.chars().all(|c| c == '.')
        && segment.chars().all(|c| c.is_ascii_alphanumeric() || "-_.()".contains(c))
}

/// The family's bindings: which resources the secrets of which vault (and names) may rotate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AzureKeyBindings {
    /// Both settings' entries; targets are lowercase resource ids of a type in [`AzureKeyType`].
    pub bindings: Vec<Binding>,
}

impl AzureKeyBindings {
    pub fn is_empty(&self) -> bool {
        self.bindings.is_empty()
    }

    /// Whether the secret `vault/name` may rotate the keys of the resource `id` (case-insensitive).
    pub fn allows(&self, vault: &str, name: &str, id: &str) -> bool {
        Binding::allows(&self.bindings, vault, name, id)
    }

    /// Every bound resource id (lowercase), once each: what the deployment's role assignments must cover.
    pub fn resources(&self) -> Vec<&str> {
        let mut all: Vec<&str> = self.bindings.iter().flat_map(|b| b.targets.iter().map(String::as_str)).collect();
        all.sort_unstable();
        all.dedup();
        all
    }

    pub(crate) fn from_env(env: &Env<'_>) -> Result<Self, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut bindings = Vec::new();
        for (variable, accepts) in
            [(AZURE_KEY_RESOURCES, &AzureKeyType::ALL[..]), (STORAGE_ACCOUNTS, &[AzureKeyType::StorageAccount][..])]
        {
            let Some(raw) = env.get(variable) else { continue };
            match parse(&raw, accepts) {
                Ok(parsed) => bindings.extend(parsed),
                Err(problem) => errors.push(ConfigError::invalid(
                    variable,
                    &raw,
                    format!("';'-separated <vault>[/<name or prefix*>]=<resource id>[,<id>] entries: {problem}"),
                )),
            }
        }
        if errors.is_empty() { Ok(Self { bindings }) } else { Err(errors) }
    }
}

/// One setting's entries, every target a resource id of one of the `accepts` types; the error names the first
/// target that is not.
fn parse(raw: &str, accepts: &[AzureKeyType]) -> Result<Vec<Binding>, String> {
    let kind = TargetKind {
        placeholder: "<resource id>",
        description: "Azure resource ids (/subscriptions/<s>/resourceGroups/<g>/providers/<type>/<name>)",
        is_valid: |target| target.starts_with("/subscriptions/"),
    };
    let bindings = Binding::parse(raw, kind)?;
    for target in bindings.iter().flat_map(|b| &b.targets) {
        match AzureKeyType::of(target) {
            Some(kind) if accepts.contains(&kind) => {}
            Some(kind) => {
                return Err(format!(
                    "'{target}' is a {}, not a {} (bind it in {AZURE_KEY_RESOURCES})",
                    kind.arm_type(),
                    accepts.iter().map(|t| t.arm_type()).collect::<Vec<_>>().join(" or ")
                ));
            }
            None => {
                return Err(format!(
                    "'{target}' is not the resource id of a type keyturn can rotate the keys of ({})",
                    accepts.iter().map(|t| t.arm_type()).collect::<Vec<_>>().join(", ")
                ));
            }
        }
    }
    Ok(bindings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::lookup;

    const SUB: &str = "/subscriptions/0000/resourceGroups/rg-1/providers";

    #[test]
    fn every_type_of_the_family_is_recognised_from_its_resource_id() {
        for (id, kind) in [
            ("Microsoft.Storage/storageAccounts/acct1/", AzureKeyType::StorageAccount),
            ("microsoft.documentdb/DATABASEACCOUNTS/cosmos-1", AzureKeyType::CosmosDbAccount),
            ("Microsoft.Cache/redis/cache-1", AzureKeyType::RedisCache),
            ("Microsoft.ServiceBus/namespaces/sb-1/authorizationRules/send", AzureKeyType::ServiceBusRule),
            ("Microsoft.ServiceBus/namespaces/sb-1/queues/q1/authorizationRules/listen", AzureKeyType::ServiceBusRule),
            ("Microsoft.ServiceBus/namespaces/sb-1/topics/t1/authorizationRules/send", AzureKeyType::ServiceBusRule),
            (
                "Microsoft.EventHub/namespaces/eh-1/authorizationRules/RootManageSharedAccessKey",
                AzureKeyType::EventHubsRule,
            ),
            ("Microsoft.EventHub/namespaces/eh-1/eventhubs/hub/authorizationRules/send", AzureKeyType::EventHubsRule),
            ("Microsoft.CognitiveServices/accounts/openai-1", AzureKeyType::CognitiveServicesAccount),
            ("Microsoft.Search/searchServices/search-1", AzureKeyType::SearchService),
        ] {
            assert_eq!(AzureKeyType::of(&format!("{SUB}/{id}")), Some(kind), "{id}");
        }
        for bad in [
            format!("{SUB}/Microsoft.Sql/servers/db"),
            format!("{SUB}/Microsoft.Storage/storageAccounts"),
            format!("{SUB}/Microsoft.Storage/storageAccounts/a?x=1"),
            format!("{SUB}/Microsoft.ServiceBus/namespaces/sb-1"),
            format!("{SUB}/Microsoft.ServiceBus/namespaces/sb-1/eventhubs/h/authorizationRules/r"),
            format!("{SUB}/Microsoft.EventHub/namespaces/eh/queues/q/authorizationRules/r"),
            "/subscriptions/0000/resourceGroups/../providers/Microsoft.Storage/storageAccounts/a".to_owned(),
            format!("https://evil.example{SUB}/Microsoft.Storage/storageAccounts/a"),
        ] {
            assert_eq!(AzureKeyType::of(&bad), None, "{bad}");
        }
    }

    #[test]
    fn both_settings_feed_one_binding_list() {
        let storage = format!("{SUB}/Microsoft.Storage/storageAccounts/a");
        let cosmos = format!("{SUB}/Microsoft.DocumentDB/databaseAccounts/c");
        let rule = format!("{SUB}/Microsoft.ServiceBus/namespaces/n/authorizationRules/send");
        let env = lookup(&[
            ("KEYTURN_AZURE_KEY_RESOURCES", &format!("kv-one/app-*={cosmos},{rule}")),
            ("KEYTURN_STORAGE_ACCOUNTS", &format!("kv-two={storage}")),
        ]);
        let bound = AzureKeyBindings::from_env(&Env::new(&env)).unwrap();
        assert!(bound.allows("kv-one", "app-db", &cosmos.to_uppercase()) && bound.allows("kv-one", "app-bus", &rule));
        assert!(!bound.allows("kv-one", "other", &cosmos), "a name outside the entry's filter");
        assert!(bound.allows("kv-two", "anything", &storage) && !bound.allows("kv-one", "app-x", &storage));
        assert_eq!(bound.resources().len(), 3);
        assert!(AzureKeyBindings::from_env(&Env::new(&lookup(&[]))).unwrap().is_empty());
    }

    #[test]
    fn a_resource_keyturn_cannot_rotate_is_a_configuration_error_naming_it() {
        let sql = format!("{SUB}/Microsoft.Sql/servers/db");
        let cosmos = format!("{SUB}/Microsoft.DocumentDB/databaseAccounts/c");
        for (variable, raw, says) in [
            ("KEYTURN_AZURE_KEY_RESOURCES", format!("kv={sql}"), "microsoft.sql/servers/db' is not the resource id"),
            ("KEYTURN_STORAGE_ACCOUNTS", format!("kv={cosmos}"), "is a Microsoft.DocumentDB/databaseAccounts, not a"),
            ("KEYTURN_STORAGE_ACCOUNTS", "kv-one=/not/an/account".to_owned(), "the targets must be Azure resource ids"),
            ("KEYTURN_AZURE_KEY_RESOURCES", "kv-one".to_owned(), "entry 1 is not"),
        ] {
            let errors = AzureKeyBindings::from_env(&Env::new(&lookup(&[(variable, &raw)]))).unwrap_err();
            assert_eq!(errors[0].variable(), variable, "{raw}");
            assert!(errors[0].to_string().contains(says), "{raw}: {}", errors[0]);
        }
    }
}
