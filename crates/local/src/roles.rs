//! keyturn's role matrix, `infra/roles.json`: which roles each handler's identity holds, and at which scope
//! (built-in roles, and the custom roles the deployment creates, `customRoles`). The same file Bicep
//! (`loadJsonContent`) and Terraform (`jsondecode(file())`) read; the local stack resolves it for one deployment
//! (its monitored vaults, canary secret, mirror vaults, bound Azure key resources, flags) into role assignments
//! the Key Vault emulator and the ARM emulator enforce.
//!
//! ```no_run
//! # fn demo() -> Result<(), keyturn_local::roles::MatrixError> {
//! use keyturn_local::roles::{Deployment, RoleMatrix};
//! let matrix = RoleMatrix::embedded()?;
//! let deployment = Deployment { monitored_vaults: vec!["kv-demo".into()], ..Deployment::default() };
//! let grants = matrix.grants("test-event", &deployment)?;
//! # Ok(()) }
//! ```

use crate::keyvault::StoredKind;
use crate::rbac::{ArmAssignment, ArmRole, Scope};
use keyturn_vault::rbac::{BuiltInRole, role_by_name};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `infra/roles.json` as it was when this crate was built.
pub const EMBEDDED: &str = include_str!("../../../infra/roles.json");

/// The scope names the matrix may use (its `$comment` explains each).
pub const SCOPE_NAMES: &[&str] = &[
    "vault",
    "canarySecret",
    "mirrorVaults",
    "notificationSecret",
    "hostStorage",
    "lockContainer",
    "sweepStateContainer",
    "deadLetterContainer",
    "azureKeyResources",
    "consumerWebApps",
    "consumerContainerApps",
    "insights",
];

/// Why a matrix could not be read or resolved.
#[derive(Debug, thiserror::Error)]
pub enum MatrixError {
    #[error("reading the role matrix {path} failed: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the role matrix {source_name} is not valid: {error}")]
    Parse { source_name: String, error: String },
    #[error("the role matrix has no handler '{handler}' (it lists: {known})")]
    UnknownHandler { handler: String, known: String },
    #[error("the deployment names vault '{0}', which this local stack does not serve: add it to the stack's vaults")]
    UnservedVault(String),
    #[error("the role matrix has no custom role '{0}'")]
    UnknownCustomRole(String),
}

/// One grant as the matrix writes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    pub role: String,
    pub scope: String,
    /// The deployment flag that adds the grant (absent: always).
    #[serde(default)]
    pub when: Option<String>,
}

/// A role definition the deployment creates, as the matrix writes it (`customRoles`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomRole {
    pub description: String,
    /// Management actions, each `Microsoft.<Provider>/.../action`: no wildcard, no read, write or delete.
    pub actions: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct Raw {
    #[serde(rename = "roleDefinitions")]
    role_definitions: BTreeMap<String, String>,
    #[serde(rename = "customRoles", default)]
    custom_roles: BTreeMap<String, CustomRole>,
    handlers: BTreeMap<String, Vec<Grant>>,
    #[serde(rename = "everyHandler", default)]
    every_handler: Vec<Grant>,
}

/// What a deployment binds the matrix's scope names to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deployment {
    /// `vault`: every vault keyturn watches (KEYTURN_VAULTS).
    pub monitored_vaults: Vec<String>,
    /// `canarySecret`: the canary secret's name (KEYTURN_CANARY_SECRET), in each monitored vault.
    pub canary_secret: Option<String>,
    /// `mirrorVaults`: the vaults new versions are mirrored to.
    pub mirror_vaults: Vec<String>,
    /// `notificationSecret`: the secret holding the channel URLs, as (vault, name).
    pub notification_secret: Option<(String, String)>,
    /// `azureKeyResources`: the resource ids bound to the azure-key provider (KEYTURN_AZURE_KEY_RESOURCES,
    /// KEYTURN_STORAGE_ACCOUNTS).
    pub azure_key_resources: Vec<String>,
    /// `consumerWebApps`, `consumerContainerApps`: the apps new-version refreshes (KEYTURN_CONSUMERS), each granted
    /// its type's role.
    pub consumer_apps: Vec<String>,
    /// The `when` flags that are on, e.g. `expiredActionsEnabled`.
    pub flags: BTreeSet<String>,
}

/// One grant resolved for a deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolvedGrant {
    /// A Key Vault role at a vault or object scope: the emulator enforces it.
    KeyVault { role: &'static BuiltInRole, scope: Scope },
    /// A custom role at an ARM resource (the Azure key family's resources), or a built-in ARM role at a consumer app:
    /// the ARM emulator enforces it.
    Arm { role: Arc<ArmRole>, scope: Scope },
    /// A grant outside Key Vault and the ARM emulator (storage, Application Insights): Azure needs it, the local
    /// stack has nothing that checks it.
    NotEmulated { role: String, scope: String },
}

/// A parsed, checked role matrix.
#[derive(Debug, Clone)]
pub struct RoleMatrix {
    raw: Raw,
}

impl RoleMatrix {
    /// The matrix embedded from `infra/roles.json`.
    pub fn embedded() -> Result<Self, MatrixError> {
        Self::parse(EMBEDDED, "infra/roles.json (embedded)")
    }

    /// Reads another matrix file (same format).
    pub fn load(path: &Path) -> Result<Self, MatrixError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| MatrixError::Read { path: path.to_path_buf(), source })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and checks a matrix: every role it grants is defined in `roleDefinitions`, every Key Vault role
    /// there carries the id Azure publishes (so a typo cannot grant the wrong role in Azure while the local
    /// stack enforces the right one), and every scope name is known.
    pub fn parse(text: &str, source_name: &str) -> Result<Self, MatrixError> {
        let invalid = |error: String| MatrixError::Parse { source_name: source_name.to_owned(), error };
        let raw: Raw = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        for (name, id) in &raw.role_definitions {
            if let Some(role) = role_by_name(name)
                && !role.id.eq_ignore_ascii_case(id)
            {
                return Err(invalid(format!("role '{name}' has id {id}; Azure's built-in role has id {}", role.id)));
            }
            if name.starts_with("Key Vault") && role_by_name(name).is_none() {
                return Err(invalid(format!("'{name}' is not a Key Vault built-in role with data actions")));
            }
        }
        for (name, role) in &raw.custom_roles {
            if raw.role_definitions.contains_key(name) {
                return Err(invalid(format!("'{name}' is both a built-in role and a custom role")));
            }
            if let Some(bad) =
                role.actions.iter().find(|a| !is_key_action(a)).or(role.actions.is_empty().then_some(name))
            {
                return Err(invalid(format!(
                    "custom role '{name}': '{bad}' is not a management action Microsoft.<Provider>/<type>/<operation>/action \
                     without wildcards (and the role needs at least one)"
                )));
            }
        }
        let all = raw.handlers.iter().flat_map(|(h, grants)| grants.iter().map(move |g| (h.as_str(), g)));
        for (handler, grant) in all.chain(raw.every_handler.iter().map(|g| ("everyHandler", g))) {
            if !raw.role_definitions.contains_key(&grant.role) && !raw.custom_roles.contains_key(&grant.role) {
                return Err(invalid(format!(
                    "{handler}: role '{}' is neither in roleDefinitions nor in customRoles",
                    grant.role
                )));
            }
            if !SCOPE_NAMES.contains(&grant.scope.as_str()) {
                return Err(invalid(format!(
                    "{handler}: scope '{}' is not one of {}",
                    grant.scope,
                    SCOPE_NAMES.join(", ")
                )));
            }
        }
        Ok(Self { raw })
    }

    /// The custom role `name` as the ARM emulator enforces it.
    pub fn custom_role(&self, name: &str) -> Result<Arc<ArmRole>, MatrixError> {
        let role = self.raw.custom_roles.get(name).ok_or_else(|| MatrixError::UnknownCustomRole(name.to_owned()))?;
        Ok(Arc::new(ArmRole { name: name.to_owned(), actions: role.actions.clone() }))
    }

    /// The handlers the matrix lists.
    pub fn handlers(&self) -> impl Iterator<Item = &str> {
        self.raw.handlers.keys().map(String::as_str)
    }

    /// The grants `handler` holds as written (its own, then every handler's).
    pub fn written(&self, handler: &str) -> Result<Vec<Grant>, MatrixError> {
        let own = self.raw.handlers.get(handler).ok_or_else(|| MatrixError::UnknownHandler {
            handler: handler.to_owned(),
            known: self.handlers().collect::<Vec<_>>().join(", "),
        })?;
        Ok(own.iter().chain(&self.raw.every_handler).cloned().collect())
    }

    /// `handler`'s grants resolved for `deployment`: grants whose `when` flag is off are left out, and a
    /// scope the deployment does not bind (no canary secret, no mirror vault) grants nothing.
    pub fn grants(&self, handler: &str, deployment: &Deployment) -> Result<Vec<ResolvedGrant>, MatrixError> {
        let mut out = Vec::new();
        for grant in self.written(handler)? {
            if grant.when.as_ref().is_some_and(|flag| !deployment.flags.contains(flag)) {
                continue;
            }
            if self.raw.custom_roles.contains_key(&grant.role) && grant.scope == "azureKeyResources" {
                let role = self.custom_role(&grant.role)?;
                out.extend(deployment.azure_key_resources.iter().map(|id| ResolvedGrant::Arm {
                    role: Arc::clone(&role),
                    scope: Scope::arm(id.trim_end_matches('/')),
                }));
                continue;
            }
            if let Some((role, app_type)) = consumer_role(&grant.role, &grant.scope) {
                let apps = deployment.consumer_apps.iter().filter(|id| id.to_ascii_lowercase().contains(app_type));
                out.extend(apps.map(|id| ResolvedGrant::Arm {
                    role: Arc::new(role.clone()),
                    scope: Scope::arm(id.trim_end_matches('/')),
                }));
                continue;
            }
            let Some(role) = role_by_name(&grant.role) else {
                out.push(ResolvedGrant::NotEmulated { role: grant.role, scope: grant.scope });
                continue;
            };
            let scopes: Vec<Scope> = match grant.scope.as_str() {
                "vault" => deployment.monitored_vaults.iter().map(|v| Scope::vault(v)).collect(),
                "mirrorVaults" => deployment.mirror_vaults.iter().map(|v| Scope::vault(v)).collect(),
                "canarySecret" => match &deployment.canary_secret {
                    Some(name) => {
                        deployment.monitored_vaults.iter().map(|v| Scope::object(v, StoredKind::Secret, name)).collect()
                    }
                    None => Vec::new(),
                },
                "notificationSecret" => match &deployment.notification_secret {
                    Some((vault, name)) => vec![Scope::object(vault, StoredKind::Secret, name)],
                    None => Vec::new(),
                },
                // A Key Vault role at a non-vault scope would be a matrix error Azure itself would accept
                // (roles can be assigned anywhere); the local stack has no such resource to check it on.
                _ => {
                    out.push(ResolvedGrant::NotEmulated { role: grant.role, scope: grant.scope });
                    continue;
                }
            };
            out.extend(scopes.into_iter().map(|scope| ResolvedGrant::KeyVault { role, scope }));
        }
        Ok(out)
    }
}

impl Deployment {
    /// Every vault the deployment names.
    pub fn vaults(&self) -> impl Iterator<Item = &str> {
        self.monitored_vaults
            .iter()
            .chain(&self.mirror_vaults)
            .map(String::as_str)
            .chain(self.notification_secret.iter().map(|(vault, _)| vault.as_str()))
    }
}

/// The built-in Resource Manager role of a consumer scope, as the ARM emulator checks it, and the resource type (as
/// it appears, lower-cased, in an id) of the apps that scope holds. Only the actions the consumer refresh needs are
/// modelled: Website Contributor's `Microsoft.Web/sites/*` and Container Apps Contributor's
/// `Microsoft.App/containerApps/*` (each published definition holds more, none of which the emulator serves).
fn consumer_role(role: &str, scope: &str) -> Option<(ArmRole, &'static str)> {
    let (actions, app_type) = match (role, scope) {
        ("Website Contributor", "consumerWebApps") => ("Microsoft.Web/sites/*", "/providers/microsoft.web/sites/"),
        ("Container Apps Contributor", "consumerContainerApps") => {
            ("Microsoft.App/containerApps/*", "/providers/microsoft.app/containerapps/")
        }
        _ => return None,
    };
    Some((ArmRole { name: role.to_owned(), actions: vec![actions.to_owned()] }, app_type))
}

/// Whether `action` is a management action a custom role of the matrix may hold: `Microsoft.<Provider>/<type>/.../
/// <operation>/action`, no wildcard (least privilege: a `*` would grant operations added later).
fn is_key_action(action: &str) -> bool {
    let segments: Vec<&str> = action.split('/').collect();
    segments.len() >= 4
        && segments[0].starts_with("Microsoft.")
        && segments.last() == Some(&"action")
        && segments.iter().all(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '.'))
}

/// A handler's own identity, holding exactly its matrix grants for one deployment.
#[derive(Debug, Clone)]
pub struct HandlerIdentity {
    pub handler: String,
    pub identity: crate::identity::ManagedIdentity,
    /// The Key Vault role assignments made for it.
    pub assignments: Vec<crate::rbac::RoleAssignment>,
    /// The Resource Manager role assignments made for it (the ARM emulator enforces them).
    pub arm_assignments: Vec<ArmAssignment>,
    /// Grants Azure would make that nothing local checks (storage, Application Insights), as (role, scope).
    pub not_emulated: Vec<(String, String)>,
}

impl HandlerIdentity {
    /// The app settings that make the handler use this identity, on top of the stack's `handler_env()`:
    /// `AZURE_CLIENT_ID`, which keyturn's `KEYTURN_CREDENTIAL=managed-identity` passes to the identity
    /// endpoint as `client_id` (as a user-assigned identity is selected on App Service).
    pub fn app_settings(&self) -> Vec<(String, String)> {
        vec![("AZURE_CLIENT_ID".to_owned(), self.identity.client_id.clone())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_vault_grants(grants: &[ResolvedGrant]) -> Vec<(String, String)> {
        grants
            .iter()
            .filter_map(|g| match g {
                ResolvedGrant::KeyVault { role, scope } => Some((role.name.to_owned(), scope.to_string())),
                ResolvedGrant::Arm { .. } | ResolvedGrant::NotEmulated { .. } => None,
            })
            .collect()
    }

    #[test]
    fn the_embedded_matrix_parses_and_resolves_test_event_exactly() {
        let matrix = RoleMatrix::embedded().unwrap();
        assert!(matrix.handlers().any(|h| h == "test-event"));
        let deployment = Deployment {
            monitored_vaults: vec!["kv-a".into()],
            canary_secret: Some("keyturn-canary".into()),
            notification_secret: Some(("kv-a".into(), "channels".into())),
            ..Deployment::default()
        };
        let grants = matrix.grants("test-event", &deployment).unwrap();
        assert_eq!(
            key_vault_grants(&grants),
            vec![
                ("Key Vault Reader".to_owned(), Scope::vault("kv-a").to_string()),
                (
                    "Key Vault Secrets Officer".to_owned(),
                    Scope::object("kv-a", StoredKind::Secret, "keyturn-canary").to_string()
                ),
                (
                    "Key Vault Secrets User".to_owned(),
                    Scope::object("kv-a", StoredKind::Secret, "channels").to_string()
                ),
            ]
        );
        assert!(
            grants
                .iter()
                .any(|g| matches!(g, ResolvedGrant::NotEmulated { role, .. } if role == "Storage Blob Data Owner"))
        );
    }

    #[test]
    fn the_key_operator_is_granted_at_each_bound_resource_to_near_expiry_and_the_repairing_sweep_only() {
        let matrix = RoleMatrix::embedded().unwrap();
        let cache = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Cache/redis/c1";
        let rule = "/subscriptions/s/resourceGroups/g/providers/Microsoft.EventHub/namespaces/n/authorizationRules/r";
        let mut deployment = Deployment {
            monitored_vaults: vec!["kv".into()],
            azure_key_resources: vec![cache.into(), format!("{rule}/")],
            ..Deployment::default()
        };
        let arm = |handler: &str, deployment: &Deployment| -> Vec<(String, String)> {
            matrix
                .grants(handler, deployment)
                .unwrap()
                .into_iter()
                .filter_map(|g| match g {
                    ResolvedGrant::Arm { role, scope } => Some((role.name.clone(), scope.to_string())),
                    _ => None,
                })
                .collect()
        };
        let operator = |id: &str| ("keyturn key operator".to_owned(), id.to_owned());
        assert_eq!(arm("near-expiry", &deployment), vec![operator(cache), operator(rule)]);
        for handler in ["expired", "new-version", "test-event", "sweep"] {
            assert!(arm(handler, &deployment).is_empty(), "{handler}");
        }
        deployment.flags.insert("sweepRepairEnabled".into());
        assert_eq!(arm("sweep", &deployment).len(), 2);
    }

    #[test]
    fn when_flags_add_grants_only_when_on() {
        let matrix = RoleMatrix::embedded().unwrap();
        let mut deployment = Deployment { monitored_vaults: vec!["kv".into()], ..Deployment::default() };
        let off = key_vault_grants(&matrix.grants("expired", &deployment).unwrap());
        assert_eq!(off, vec![("Key Vault Reader".to_owned(), Scope::vault("kv").to_string())]);
        deployment.flags.insert("expiredActionsEnabled".into());
        assert_eq!(key_vault_grants(&matrix.grants("expired", &deployment).unwrap()).len(), 4);
    }

    #[test]
    fn a_matrix_with_a_wrong_role_id_unknown_scope_or_handler_is_refused() {
        let wrong_id = EMBEDDED.replace("b86a8fe4-44ce-4948-aee5-eccb2c155cd7", "b86a8fe4-44ce-4948-aee5-000000000000");
        let error = RoleMatrix::parse(&wrong_id, "x").unwrap_err().to_string();
        assert!(
            error.contains("Key Vault Secrets Officer") && error.contains("b86a8fe4-44ce-4948-aee5-eccb2c155cd7"),
            "{error}"
        );
        let wildcard = EMBEDDED.replace("Microsoft.Cache/redis/listKeys/action", "Microsoft.Cache/redis/*");
        let error = RoleMatrix::parse(&wildcard, "x").unwrap_err().to_string();
        assert!(error.contains("keyturn key operator") && error.contains("Microsoft.Cache/redis/*"), "{error}");
        let bad_scope = EMBEDDED.replace("\"scope\": \"mirrorVaults\"", "\"scope\": \"mirrors\"");
        let error = RoleMatrix::parse(&bad_scope, "x").unwrap_err().to_string();
        assert!(error.contains("scope 'mirrors'"), "{error}");
        let error = RoleMatrix::embedded().unwrap().grants("nope", &Deployment::default()).unwrap_err().to_string();
        assert!(error.contains("no handler 'nope'") && error.contains("near-expiry"), "{error}");
    }
}
