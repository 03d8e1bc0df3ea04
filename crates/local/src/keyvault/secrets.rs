//! Secrets: set, get, update, list, versions, soft delete, recover, purge; and their JSON.

use super::error::ServiceError;
use super::store::{
    AttributeInput, Deleted, MAX_SECRET_BYTES, SecretData, StoredKind, VaultStore, Version, apply_attributes,
    check_name, check_tags, new_version_id,
};
use super::wire::{AttributesIn, WireAttributes};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const KIND: StoredKind = StoredKind::Secret;

/// A new secret version, as a caller (HTTP or the management API) describes it. Debug hides the value.
#[derive(Clone, Default)]
pub struct SecretSpec {
    pub value: String,
    pub content_type: Option<String>,
    pub attributes: AttributeInput,
    pub tags: BTreeMap<String, String>,
}

impl std::fmt::Debug for SecretSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretSpec")
            .field("value", &"****")
            .field("content_type", &self.content_type)
            .field("attributes", &self.attributes)
            .field("tags", &self.tags)
            .finish()
    }
}

/// Changes to a secret version's properties (never its value).
#[derive(Debug, Clone, Default)]
pub struct SecretPatch {
    pub content_type: Option<String>,
    pub attributes: AttributeInput,
    pub tags: Option<BTreeMap<String, String>>,
}

/// A secret version with its object's display name.
#[derive(Debug, Clone)]
pub struct SecretView {
    pub name: String,
    pub version: Version<SecretData>,
}

impl VaultStore {
    /// Creates a new version of `name` (the object too, if new).
    pub fn set_secret(&self, vault: &str, name: &str, spec: SecretSpec) -> Result<SecretView, ServiceError> {
        check_name(name)?;
        check_tags(&spec.tags)?;
        if spec.value.len() > MAX_SECRET_BYTES {
            return Err(ServiceError::BadParameter(format!(
                "The secret value is {} bytes; the maximum is {MAX_SECRET_BYTES}.",
                spec.value.len()
            )));
        }
        let vault_ref = self.vault(vault)?;
        let now = self.now();
        let version = Version {
            version: new_version_id(),
            attributes: self.new_attributes(&spec.attributes),
            tags: spec.tags,
            data: SecretData { value: spec.value, content_type: spec.content_type, managed: false },
        };
        let view = {
            let mut state = vault_ref.write();
            state.secrets.purge_due(now);
            state.secrets.check_creatable(KIND, name)?;
            if state
                .secrets
                .live
                .get(&name.to_ascii_lowercase())
                .and_then(|o| o.latest())
                .is_some_and(|v| v.data.managed)
            {
                return Err(ServiceError::Forbidden(format!(
                    "Secret {name} backs a certificate; create a new certificate version instead."
                )));
            }
            let object = state.secrets.push(name, version.clone());
            SecretView { name: object.name.clone(), version }
        };
        self.published(vault_ref, KIND, &view.name, &view.version.version, &view.version.attributes, false);
        Ok(view)
    }

    /// Reads a version (the latest when `version` is `None`). Disabled versions are refused with 403
    /// `SecretDisabled`; `nbf` and `exp` are not enforced, as in the service.
    pub fn get_secret(&self, vault: &str, name: &str, version: Option<&str>) -> Result<SecretView, ServiceError> {
        let vault_ref = self.vault(vault)?;
        let state = vault_ref.read();
        let (object, found) = state.secrets.version(KIND, name, version)?;
        if !found.attributes.enabled {
            return Err(ServiceError::Disabled { kind: KIND, operation: "get" });
        }
        Ok(SecretView { name: object.name.clone(), version: found.clone() })
    }

    /// For a certificate-backed secret, the version created before `version` (the certificate's previous
    /// version); `None` for the first version and for ordinary secrets.
    pub fn previous_secret_version(&self, vault: &str, name: &str, version: &str) -> Option<String> {
        let vault_ref = self.vault(vault).ok()?;
        let state = vault_ref.read();
        let object = state.secrets.object(KIND, name).ok()?;
        let at = object.versions.iter().position(|v| v.version.eq_ignore_ascii_case(version))?;
        let previous = object.versions.get(at.checked_sub(1)?)?;
        previous.data.managed.then(|| previous.version.clone())
    }

    /// Updates a version's properties (the latest when `version` is `None`).
    pub fn update_secret(
        &self,
        vault: &str,
        name: &str,
        version: Option<&str>,
        patch: SecretPatch,
    ) -> Result<SecretView, ServiceError> {
        if let Some(tags) = &patch.tags {
            check_tags(tags)?;
        }
        let vault_ref = self.vault(vault)?;
        let now = self.now();
        let view = {
            let mut state = vault_ref.write();
            let display = state.secrets.object(KIND, name)?.name.clone();
            let found = state.secrets.version_mut(KIND, name, version)?;
            apply_attributes(&mut found.attributes, &patch.attributes, now);
            if let Some(tags) = patch.tags {
                found.tags = tags;
            }
            if patch.content_type.is_some() {
                found.data.content_type = patch.content_type;
            }
            SecretView { name: display, version: found.clone() }
        };
        self.mark_dirty();
        Ok(view)
    }

    /// The latest version of every live secret.
    pub fn list_secrets(&self, vault: &str) -> Result<Vec<SecretView>, ServiceError> {
        let vault_ref = self.vault(vault)?;
        let state = vault_ref.read();
        Ok(state
            .secrets
            .live
            .values()
            .filter_map(|o| o.latest().map(|v| SecretView { name: o.name.clone(), version: v.clone() }))
            .collect())
    }

    /// Every version of one secret, oldest first.
    pub fn list_secret_versions(&self, vault: &str, name: &str) -> Result<Vec<SecretView>, ServiceError> {
        let vault_ref = self.vault(vault)?;
        let state = vault_ref.read();
        let object = state.secrets.object(KIND, name)?;
        Ok(object.versions.iter().map(|v| SecretView { name: object.name.clone(), version: v.clone() }).collect())
    }

    /// Soft-deletes a secret: it stays recoverable, and its name taken, until purged.
    pub fn delete_secret(&self, vault: &str, name: &str) -> Result<Deleted<SecretData, ()>, ServiceError> {
        let vault_ref = self.vault(vault)?;
        let now = self.now();
        let deleted = {
            let mut state = vault_ref.write();
            let managed = state.secrets.object(KIND, name)?.latest().is_some_and(|v| v.data.managed);
            if managed {
                return Err(ServiceError::Forbidden(format!(
                    "Secret {name} backs a certificate; delete the certificate instead."
                )));
            }
            state.secrets.delete(KIND, name, now)?
        };
        tracing::info!(vault, name = %deleted.object.name, "secret deleted");
        self.mark_dirty();
        Ok(deleted)
    }

    pub fn get_deleted_secret(&self, vault: &str, name: &str) -> Result<Deleted<SecretData, ()>, ServiceError> {
        let vault_ref = self.vault(vault)?;
        let now = self.now();
        let mut state = vault_ref.write();
        state.secrets.purge_due(now);
        Ok(state.secrets.deleted(KIND, name)?.clone())
    }

    pub fn list_deleted_secrets(&self, vault: &str) -> Result<Vec<Deleted<SecretData, ()>>, ServiceError> {
        let vault_ref = self.vault(vault)?;
        let now = self.now();
        let mut state = vault_ref.write();
        state.secrets.purge_due(now);
        Ok(state.secrets.deleted.values().cloned().collect())
    }

    /// Recovers a deleted secret with all its versions; answers with its latest version.
    pub fn recover_secret(&self, vault: &str, name: &str) -> Result<SecretView, ServiceError> {
        let vault_ref = self.vault(vault)?;
        let now = self.now();
        let view = {
            let mut state = vault_ref.write();
            state.secrets.purge_due(now);
            let object = state.secrets.recover(KIND, name)?;
            let latest = object.latest().cloned().ok_or_else(|| ServiceError::NotFound {
                kind: KIND,
                name: name.to_string(),
                version: None,
            })?;
            SecretView { name: object.name.clone(), version: latest }
        };
        self.mark_dirty();
        Ok(view)
    }

    pub fn purge_secret(&self, vault: &str, name: &str) -> Result<(), ServiceError> {
        let vault_ref = self.vault(vault)?;
        vault_ref.write().secrets.purge(KIND, name)?;
        tracing::info!(vault, name, "secret purged");
        self.mark_dirty();
        Ok(())
    }
}

/// `PUT /secrets/{name}` body.
#[derive(Debug, Deserialize)]
pub struct SetSecretBody {
    pub value: Option<String>,
    #[serde(rename = "contentType")]
    pub content_type: Option<String>,
    pub attributes: Option<AttributesIn>,
    pub tags: Option<BTreeMap<String, String>>,
}

impl SetSecretBody {
    pub fn into_spec(self) -> Result<SecretSpec, ServiceError> {
        let value = self.value.ok_or_else(|| ServiceError::BadParameter("The property 'value' is required.".into()))?;
        Ok(SecretSpec {
            value,
            content_type: self.content_type,
            attributes: self.attributes.into(),
            tags: self.tags.unwrap_or_default(),
        })
    }
}

/// `PATCH /secrets/{name}/{version}` body.
#[derive(Debug, Deserialize)]
pub struct UpdateSecretBody {
    #[serde(rename = "contentType")]
    pub content_type: Option<String>,
    pub attributes: Option<AttributesIn>,
    pub tags: Option<BTreeMap<String, String>>,
}

impl From<UpdateSecretBody> for SecretPatch {
    fn from(b: UpdateSecretBody) -> Self {
        Self { content_type: b.content_type, attributes: b.attributes.into(), tags: b.tags }
    }
}

/// A secret bundle (`get`, `set`, `update`, `recover`), a list item, or a deleted bundle.
#[derive(Serialize)]
pub struct SecretBundle<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<&'a str>,
    #[serde(rename = "contentType", skip_serializing_if = "Option::is_none")]
    pub content_type: Option<&'a str>,
    pub id: String,
    pub attributes: WireAttributes,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<&'a BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub managed: bool,
    /// From API version 2025-07-01, on a certificate-backed secret: the certificate's previous version.
    #[serde(rename = "previousVersion", skip_serializing_if = "Option::is_none")]
    pub previous_version: Option<String>,
    #[serde(rename = "recoveryId", skip_serializing_if = "Option::is_none")]
    pub recovery_id: Option<String>,
    #[serde(rename = "deletedDate", skip_serializing_if = "Option::is_none")]
    pub deleted_date: Option<i64>,
    #[serde(rename = "scheduledPurgeDate", skip_serializing_if = "Option::is_none")]
    pub scheduled_purge_date: Option<i64>,
}

impl std::fmt::Debug for SecretBundle<'_> {
    // Never print a secret value.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretBundle")
            .field("id", &self.id)
            .field("value", &self.value.map(|_| "****"))
            .finish_non_exhaustive()
    }
}

/// How much of a secret to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// With its value and versioned id (get, set, update, recover).
    Full,
    /// Without its value, versioned id (list versions).
    VersionItem,
    /// Without its value, id without version (list).
    ListItem,
}

impl<'a> SecretBundle<'a> {
    pub fn new(base: &str, name: &str, v: &'a Version<SecretData>, shape: Shape) -> Self {
        let id = match shape {
            Shape::ListItem => format!("{base}/secrets/{name}"),
            _ => format!("{base}/secrets/{name}/{}", v.version),
        };
        Self {
            value: (shape == Shape::Full).then_some(v.data.value.as_str()),
            content_type: v.data.content_type.as_deref(),
            id,
            attributes: WireAttributes::from(&v.attributes),
            tags: (!v.tags.is_empty()).then_some(&v.tags),
            kid: (v.data.managed && shape == Shape::Full).then(|| format!("{base}/keys/{name}/{}", v.version)),
            managed: v.data.managed,
            previous_version: None,
            recovery_id: None,
            deleted_date: None,
            scheduled_purge_date: None,
        }
    }

    /// A deleted secret: its latest version without the value, plus the recovery fields.
    pub fn deleted(base: &str, d: &'a Deleted<SecretData, ()>, list_item: bool) -> Option<Self> {
        let name = &d.object.name;
        let latest = d.object.latest()?;
        let shape = if list_item { Shape::ListItem } else { Shape::VersionItem };
        let mut bundle = Self::new(base, name, latest, shape);
        bundle.recovery_id = Some(format!("{base}/deletedsecrets/{name}"));
        bundle.deleted_date = Some(d.deleted_date);
        bundle.scheduled_purge_date = Some(d.scheduled_purge_date);
        Some(bundle)
    }
}
