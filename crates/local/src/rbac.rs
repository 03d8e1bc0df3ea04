//! Role assignments for the Key Vault emulator and the ARM emulator, and the check every operation passes through.
//!
//! An assignment is (principal object id, built-in role, scope). Scopes are ARM resource ids, lower-cased for
//! comparison as ARM compares them; an assignment applies to its scope and everything below it, so a grant on
//! the vault covers every object, and a grant on `…/vaults/<v>/secrets/<name>` covers that secret only. The
//! grant is the union of every assignment that applies, as in Azure. The roles and their data actions come
//! from [`keyturn_vault::rbac`], the same table the handlers use to name a missing role.
//!
//! Resource Manager's side ([`ArmAssignments`]) holds the deployment's custom roles ([`ArmRole`], read from
//! infra/roles.json's `customRoles`): management `actions`, matched case-insensitively as ARM matches them.

use crate::identity::{RESOURCE_GROUP, SUBSCRIPTION_ID};
use crate::keyvault::StoredKind;
use keyturn_vault::rbac::BuiltInRole;
use std::sync::{Arc, PoisonError, RwLock};

/// An ARM resource id a role is assigned at (or an operation is checked against).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope(String);

impl Scope {
    /// The local subscription.
    pub fn subscription() -> Self {
        Self(format!("/subscriptions/{SUBSCRIPTION_ID}"))
    }

    /// The local resource group every vault lives in.
    pub fn resource_group() -> Self {
        Self(format!("/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{RESOURCE_GROUP}"))
    }

    /// The vault `vault`.
    pub fn vault(vault: &str) -> Self {
        Self(format!("{}/providers/Microsoft.KeyVault/vaults/{vault}", Self::resource_group().0))
    }

    /// One object of `vault`: `…/vaults/<vault>/secrets/<name>` (or `/keys/`, `/certificates/`).
    pub fn object(vault: &str, kind: StoredKind, name: &str) -> Self {
        Self(format!("{}/{}/{name}", Self::vault(vault).0, kind.collection()))
    }

    /// Any ARM resource id, as given.
    pub fn arm(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether an assignment at `self` applies to `resource` (the same resource, or one below it).
    pub fn covers(&self, resource: &Scope) -> bool {
        let scope = self.0.trim_end_matches('/').to_ascii_lowercase();
        let resource = resource.0.to_ascii_lowercase();
        resource == scope || resource.strip_prefix(&scope).is_some_and(|rest| rest.starts_with('/'))
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a role assignment can assign: a role that grants actions (Key Vault's built-in roles, the deployment's
/// custom ARM roles).
pub trait Role: std::fmt::Debug + Clone + PartialEq {
    /// Whether the role grants `action` (a full action, e.g. `Microsoft.KeyVault/vaults/secrets/getSecret/action`).
    fn grants(&self, action: &str) -> bool;
}

impl Role for &'static BuiltInRole {
    fn grants(&self, action: &str) -> bool {
        BuiltInRole::grants(self, action)
    }
}

/// One role assignment of a role `R`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment<R> {
    /// The principal's object id (a managed identity's `oid`).
    pub principal_id: String,
    pub role: R,
    pub scope: Scope,
}

/// A Key Vault role assignment.
pub type RoleAssignment = Assignment<&'static BuiltInRole>;

/// Every role assignment an emulator enforces. Cheap to clone (shared); changes apply to the next request (no
/// propagation delay, unlike Azure's minutes).
#[derive(Debug, Clone)]
pub struct RoleStore<R> {
    // std RwLock: every request reads, writes are rare, nothing is held across an await.
    all: Arc<RwLock<Vec<Assignment<R>>>>,
}

/// The Key Vault emulator's assignments.
pub type Assignments = RoleStore<&'static BuiltInRole>;

impl<R> Default for RoleStore<R> {
    fn default() -> Self {
        Self { all: Arc::default() }
    }
}

impl<R: Role> RoleStore<R> {
    /// Adds an assignment (an identical one is not added twice).
    pub fn assign(&self, principal_id: &str, role: R, scope: Scope) {
        let assignment = Assignment { principal_id: principal_id.to_owned(), role, scope };
        let mut all = self.all.write().unwrap_or_else(PoisonError::into_inner);
        if !all.contains(&assignment) {
            all.push(assignment);
        }
    }

    /// Removes one assignment; whether it existed.
    pub fn unassign(&self, principal_id: &str, role: R, scope: &Scope) -> bool {
        let mut all = self.all.write().unwrap_or_else(PoisonError::into_inner);
        let before = all.len();
        all.retain(|a| !(a.principal_id.eq_ignore_ascii_case(principal_id) && a.role == role && &a.scope == scope));
        all.len() != before
    }

    /// Every assignment of `principal_id`.
    pub fn of(&self, principal_id: &str) -> Vec<Assignment<R>> {
        let all = self.all.read().unwrap_or_else(PoisonError::into_inner);
        all.iter().filter(|a| a.principal_id.eq_ignore_ascii_case(principal_id)).cloned().collect()
    }

    /// Whether `principal_id` may perform `action` on `resource`: an assignment at the resource or above grants it.
    pub fn allows(&self, principal_id: &str, action: &str, resource: &Scope) -> bool {
        let all = self.all.read().unwrap_or_else(PoisonError::into_inner);
        all.iter().any(|a| {
            a.principal_id.eq_ignore_ascii_case(principal_id) && a.scope.covers(resource) && a.role.grants(action)
        })
    }
}

/// A Resource Manager role as it checks it: its name and its management `actions`. The deployment's custom roles
/// (infra/roles.json `customRoles`) hold exact actions (the matrix refuses wildcards, least privilege); a built-in
/// role's published actions may end in `/*` (every operation below that prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArmRole {
    pub name: String,
    pub actions: Vec<String>,
}

impl Role for Arc<ArmRole> {
    /// Whether the role's actions include `action` (e.g. `Microsoft.Cache/redis/listKeys/action`), compared
    /// case-insensitively as ARM compares operation names.
    fn grants(&self, action: &str) -> bool {
        let action = action.to_ascii_lowercase();
        self.actions.iter().map(|a| a.to_ascii_lowercase()).any(|granted| match granted.strip_suffix("/*") {
            Some(prefix) => action.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/')),
            None => granted == action,
        })
    }
}

/// A Resource Manager role assignment (a custom role at an ARM scope: a resource, its resource group, ...).
pub type ArmAssignment = Assignment<Arc<ArmRole>>;

/// Every role assignment the ARM emulator enforces, shared between the Key Vault emulator (whose
/// `handler_identity` makes a handler's assignments) and the ARM emulator (which checks them).
pub type ArmAssignments = RoleStore<Arc<ArmRole>>;

#[cfg(test)]
mod tests {
    use super::*;
    use keyturn_vault::rbac::role_by_name;

    fn role(name: &str) -> &'static BuiltInRole {
        role_by_name(name).unwrap()
    }

    #[test]
    fn scopes_cover_themselves_and_what_is_below_them_only() {
        let vault = Scope::vault("kv-one");
        let secret = Scope::object("kv-one", StoredKind::Secret, "db");
        assert!(vault.covers(&secret) && vault.covers(&vault));
        assert!(!secret.covers(&vault));
        assert!(!Scope::vault("kv-on").covers(&secret), "a prefix of a name is not a parent");
        assert!(!Scope::object("kv-one", StoredKind::Secret, "d").covers(&secret));
        assert!(Scope::resource_group().covers(&secret) && Scope::subscription().covers(&vault));
        assert!(Scope::arm(vault.as_str().to_uppercase()).covers(&secret), "ARM ids compare case-insensitively");
    }

    #[test]
    fn a_grant_is_the_union_of_the_assignments_that_apply() {
        let a = Assignments::default();
        let get = "Microsoft.KeyVault/vaults/secrets/getSecret/action";
        let set = "Microsoft.KeyVault/vaults/secrets/setSecret/action";
        let db = Scope::object("kv", StoredKind::Secret, "db");
        let other = Scope::object("kv", StoredKind::Secret, "other");
        a.assign("p1", role("Key Vault Reader"), Scope::vault("kv"));
        a.assign("p1", role("Key Vault Secrets Officer"), db.clone());
        assert!(a.allows("p1", set, &db) && a.allows("p1", get, &db));
        assert!(!a.allows("p1", get, &other) && !a.allows("p1", set, &other));
        assert!(!a.allows("p2", get, &db), "another principal holds nothing");
        assert!(a.unassign("P1", role("Key Vault Secrets Officer"), &db));
        assert!(!a.allows("p1", set, &db));
        assert_eq!(a.of("p1").len(), 1);
    }

    #[test]
    fn a_built_in_role_wildcard_covers_the_operations_below_its_prefix_only() {
        let role =
            Arc::new(ArmRole { name: "Website Contributor".into(), actions: vec!["Microsoft.Web/sites/*".into()] });
        assert!(role.grants("microsoft.web/SITES/config/configreferences/appsettings/refresh/action"));
        assert!(!role.grants("Microsoft.Web/sitesX/config/action"), "a prefix of a type is not the type");
        assert!(!role.grants("Microsoft.App/containerApps/revisions/restart/action"));
    }

    #[test]
    fn an_arm_grant_covers_its_actions_on_its_scope_and_below_only() {
        let a = ArmAssignments::default();
        let role = Arc::new(ArmRole {
            name: "key operator".into(),
            actions: vec!["Microsoft.Cache/redis/listKeys/action".into()],
        });
        let cache = Scope::arm("/subscriptions/s/resourceGroups/g/providers/Microsoft.Cache/redis/c1");
        let other = Scope::arm("/subscriptions/s/resourceGroups/g/providers/Microsoft.Cache/redis/c2");
        a.assign("p1", role, cache.clone());
        assert!(a.allows("P1", "microsoft.cache/REDIS/listkeys/action", &cache), "ARM compares actions in any case");
        assert!(!a.allows("p1", "Microsoft.Cache/redis/regenerateKey/action", &cache), "an action the role lacks");
        assert!(!a.allows("p1", "Microsoft.Cache/redis/listKeys/action", &other), "another resource");
        assert!(!a.allows("p2", "Microsoft.Cache/redis/listKeys/action", &cache), "another principal");
        let role = a.of("p1")[0].role.clone();
        assert!(a.unassign("p1", role, &cache) && a.of("p1").is_empty());
    }
}
