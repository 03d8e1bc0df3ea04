//! Keys: create (RSA, EC), get, update, list, versions, rotate, rotation policy, soft delete; and their JSON.

use super::crypto::{self, Curve, KeyMaterial, KeySpec, PublicJwk};
use super::error::ServiceError;
use super::store::{
    AttributeInput, Attributes, Deleted, KeyData, KeyExtra, StoredKind, VaultStore, Version, apply_attributes,
    check_name, check_tags, new_version_id,
};
use super::wire::{AttributesIn, WireAttributes};
use chrono::{DateTime, Days, Months, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const KIND: StoredKind = StoredKind::Key;

/// A new key, as a caller describes it.
#[derive(Debug, Clone)]
pub struct KeySpecInput {
    /// `RSA`, `RSA-HSM`, `EC` or `EC-HSM`.
    pub kty: String,
    pub spec: KeySpec,
    pub key_ops: Option<Vec<String>>,
    pub attributes: AttributeInput,
    pub tags: BTreeMap<String, String>,
}

/// A key version with its object's display name.
#[derive(Debug, Clone)]
pub struct KeyView {
    pub name: String,
    pub version: Version<KeyData>,
}

/// A key's rotation policy as stored.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RotationPolicy {
    pub lifetime_actions: Vec<LifetimeAction>,
    pub expiry_time: Option<String>,
    pub created: i64,
    pub updated: i64,
}

/// One lifetime action: when (`trigger`) to do what (`action.type`: `Rotate` or `Notify`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LifetimeAction {
    pub trigger: LifetimeTrigger,
    pub action: LifetimeActionType,
}

/// When a lifetime action fires (Key Vault's `LifetimeActionsTrigger`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LifetimeTrigger {
    #[serde(rename = "timeAfterCreate", skip_serializing_if = "Option::is_none")]
    pub time_after_create: Option<String>,
    #[serde(rename = "timeBeforeExpiry", skip_serializing_if = "Option::is_none")]
    pub time_before_expiry: Option<String>,
}

/// What a lifetime action does (Key Vault's `LifetimeActionsType`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LifetimeActionType {
    #[serde(rename = "type")]
    pub kind: String,
}

fn default_key_ops(spec: KeySpec) -> Vec<String> {
    let ops: &[&str] = match spec {
        KeySpec::Rsa(_) => &["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"],
        KeySpec::Ec(_) => &["sign", "verify"],
    };
    ops.iter().map(|s| s.to_string()).collect()
}

/// Adds an ISO 8601 duration of years, months, weeks and days (`P90D`, `P1Y6M`, `P2W`), as rotation
/// policies use them, to `from`.
pub fn add_iso_duration(from: DateTime<Utc>, duration: &str) -> Option<DateTime<Utc>> {
    let rest = duration.strip_prefix('P').or_else(|| duration.strip_prefix('p'))?;
    if rest.is_empty() {
        return None;
    }
    let (mut months, mut days, mut number) = (0u32, 0u64, String::new());
    for c in rest.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: u32 = number.parse().ok()?;
        number.clear();
        match c.to_ascii_uppercase() {
            'Y' => months = months.checked_add(n.checked_mul(12)?)?,
            'M' => months = months.checked_add(n)?,
            'W' => days += u64::from(n) * 7,
            'D' => days += u64::from(n),
            _ => return None,
        }
    }
    if !number.is_empty() {
        return None;
    }
    from.checked_add_months(Months::new(months))?.checked_add_days(Days::new(days))
}

impl VaultStore {
    /// Creates a new key version (the object too, if new).
    pub fn create_key(&self, vault: &str, name: &str, input: KeySpecInput) -> Result<KeyView, ServiceError> {
        check_name(name)?;
        check_tags(&input.tags)?;
        let vault_ref = self.vault(vault)?;
        {
            let state = vault_ref.read();
            state.keys.check_creatable(KIND, name)?;
        }
        // Generated outside the lock: RSA generation takes tens of milliseconds.
        let material = KeyMaterial::generate(input.spec)?;
        let key_ops = input.key_ops.unwrap_or_else(|| default_key_ops(input.spec));
        let version = Version {
            version: new_version_id(),
            attributes: self.new_attributes(&input.attributes),
            tags: input.tags,
            data: KeyData { kty: input.kty, key_ops, material, managed: false },
        };
        self.commit_key(vault, name, version)
    }

    fn commit_key(&self, vault: &str, name: &str, version: Version<KeyData>) -> Result<KeyView, ServiceError> {
        let vault_ref = self.vault(vault)?;
        let view = {
            let mut state = vault_ref.write();
            state.keys.check_creatable(KIND, name)?;
            let object = state.keys.push(name, version.clone());
            KeyView { name: object.name.clone(), version }
        };
        self.published(vault_ref, KIND, &view.name, &view.version.version, &view.version.attributes, false);
        Ok(view)
    }

    /// Reads a key version (latest when `version` is `None`).
    pub fn get_key(&self, vault: &str, name: &str, version: Option<&str>) -> Result<KeyView, ServiceError> {
        let vault_ref = self.vault(vault)?;
        let state = vault_ref.read();
        let (object, found) = state.keys.version(KIND, name, version)?;
        Ok(KeyView { name: object.name.clone(), version: found.clone() })
    }

    /// Updates a key version's attributes, tags and key_ops.
    pub fn update_key(
        &self,
        vault: &str,
        name: &str,
        version: Option<&str>,
        attributes: AttributeInput,
        tags: Option<BTreeMap<String, String>>,
        key_ops: Option<Vec<String>>,
    ) -> Result<KeyView, ServiceError> {
        if let Some(tags) = &tags {
            check_tags(tags)?;
        }
        let vault_ref = self.vault(vault)?;
        let now = self.now();
        let view = {
            let mut state = vault_ref.write();
            let display = state.keys.object(KIND, name)?.name.clone();
            let found = state.keys.version_mut(KIND, name, version)?;
            apply_attributes(&mut found.attributes, &attributes, now);
            if let Some(tags) = tags {
                found.tags = tags;
            }
            if let Some(ops) = key_ops {
                found.data.key_ops = ops;
            }
            KeyView { name: display, version: found.clone() }
        };
        self.mark_dirty();
        Ok(view)
    }

    pub fn list_keys(&self, vault: &str) -> Result<Vec<KeyView>, ServiceError> {
        let vault_ref = self.vault(vault)?;
        let state = vault_ref.read();
        Ok(state
            .keys
            .live
            .values()
            .filter_map(|o| o.latest().map(|v| KeyView { name: o.name.clone(), version: v.clone() }))
            .collect())
    }

    pub fn list_key_versions(&self, vault: &str, name: &str) -> Result<Vec<KeyView>, ServiceError> {
        let vault_ref = self.vault(vault)?;
        let state = vault_ref.read();
        let object = state.keys.object(KIND, name)?;
        Ok(object.versions.iter().map(|v| KeyView { name: object.name.clone(), version: v.clone() }).collect())
    }

    /// Rotates a key: a new version of the same type, size and operations, with fresh material, the current
    /// tags, and an expiry from the rotation policy's `expiryTime` if one is set.
    pub fn rotate_key(&self, vault: &str, name: &str) -> Result<KeyView, ServiceError> {
        let (current, policy) = {
            let vault_ref = self.vault(vault)?;
            let state = vault_ref.read();
            let object = state.keys.object(KIND, name)?;
            let latest = object.latest().cloned().ok_or_else(|| ServiceError::NotFound {
                kind: KIND,
                name: name.to_string(),
                version: None,
            })?;
            if latest.data.managed {
                return Err(ServiceError::Forbidden(format!(
                    "Key {name} backs a certificate; create a new certificate version instead."
                )));
            }
            (latest, object.extra.rotation_policy.clone())
        };
        let material = KeyMaterial::generate(current.data.material.spec)?;
        let now = self.clock().now();
        let exp = policy.and_then(|p| p.expiry_time).and_then(|d| add_iso_duration(now, &d)).map(|t| t.timestamp());
        let version = Version {
            version: new_version_id(),
            attributes: Attributes {
                enabled: true,
                nbf: None,
                exp,
                created: now.timestamp(),
                updated: now.timestamp(),
            },
            tags: current.tags,
            data: KeyData { kty: current.data.kty, key_ops: current.data.key_ops, material, managed: false },
        };
        let view = self.commit_key(vault, name, version)?;
        tracing::info!(vault, name = %view.name, version = %view.version.version, "key rotated");
        Ok(view)
    }

    /// A key's rotation policy; a key without one reports the service's default (notify 30 days before expiry).
    pub fn get_rotation_policy(&self, vault: &str, name: &str) -> Result<RotationPolicy, ServiceError> {
        let vault_ref = self.vault(vault)?;
        let state = vault_ref.read();
        let object = state.keys.object(KIND, name)?;
        Ok(object.extra.rotation_policy.clone().unwrap_or_else(default_rotation_policy))
    }

    /// Replaces a key's rotation policy.
    pub fn set_rotation_policy(
        &self,
        vault: &str,
        name: &str,
        lifetime_actions: Vec<LifetimeAction>,
        expiry_time: Option<String>,
    ) -> Result<RotationPolicy, ServiceError> {
        let now = self.clock().now();
        if let Some(expiry) = &expiry_time {
            add_iso_duration(now, expiry).ok_or_else(|| {
                ServiceError::BadParameter(format!("expiryTime '{expiry}' is not an ISO 8601 duration such as P90D."))
            })?;
        }
        let mut actions = Vec::with_capacity(lifetime_actions.len());
        for mut action in lifetime_actions {
            action.action.kind = match action.action.kind.to_ascii_lowercase().as_str() {
                "rotate" => "Rotate".into(),
                "notify" => "Notify".into(),
                other => {
                    return Err(ServiceError::BadParameter(format!(
                        "Lifetime action type '{other}' is not valid; use Rotate or Notify."
                    )));
                }
            };
            for duration in
                [&action.trigger.time_after_create, &action.trigger.time_before_expiry].into_iter().flatten()
            {
                add_iso_duration(now, duration).ok_or_else(|| {
                    ServiceError::BadParameter(format!(
                        "Trigger '{duration}' is not an ISO 8601 duration such as P30D."
                    ))
                })?;
            }
            if action.trigger.time_after_create.is_some() == action.trigger.time_before_expiry.is_some() {
                return Err(ServiceError::BadParameter(
                    "Each lifetime action trigger needs exactly one of timeAfterCreate or timeBeforeExpiry.".into(),
                ));
            }
            actions.push(action);
        }
        let vault_ref = self.vault(vault)?;
        let policy = {
            let mut state = vault_ref.write();
            let object = state.keys.object_mut(KIND, name)?;
            let created = object.extra.rotation_policy.as_ref().map_or(now.timestamp(), |p| p.created);
            let policy = RotationPolicy { lifetime_actions: actions, expiry_time, created, updated: now.timestamp() };
            object.extra = KeyExtra { rotation_policy: Some(policy.clone()) };
            policy
        };
        self.mark_dirty();
        Ok(policy)
    }

    pub fn delete_key(&self, vault: &str, name: &str) -> Result<Deleted<KeyData, KeyExtra>, ServiceError> {
        let vault_ref = self.vault(vault)?;
        let now = self.now();
        let deleted = {
            let mut state = vault_ref.write();
            if state.keys.object(KIND, name)?.latest().is_some_and(|v| v.data.managed) {
                return Err(ServiceError::Forbidden(format!(
                    "Key {name} backs a certificate; delete the certificate instead."
                )));
            }
            state.keys.delete(KIND, name, now)?
        };
        self.mark_dirty();
        Ok(deleted)
    }

    pub fn get_deleted_key(&self, vault: &str, name: &str) -> Result<Deleted<KeyData, KeyExtra>, ServiceError> {
        let vault_ref = self.vault(vault)?;
        let now = self.now();
        let mut state = vault_ref.write();
        state.keys.purge_due(now);
        Ok(state.keys.deleted(KIND, name)?.clone())
    }

    pub fn list_deleted_keys(&self, vault: &str) -> Result<Vec<Deleted<KeyData, KeyExtra>>, ServiceError> {
        let vault_ref = self.vault(vault)?;
        let now = self.now();
        let mut state = vault_ref.write();
        state.keys.purge_due(now);
        Ok(state.keys.deleted.values().cloned().collect())
    }

    pub fn recover_key(&self, vault: &str, name: &str) -> Result<KeyView, ServiceError> {
        let vault_ref = self.vault(vault)?;
        let view = {
            let mut state = vault_ref.write();
            let object = state.keys.recover(KIND, name)?;
            let latest = object.latest().cloned().ok_or_else(|| ServiceError::NotFound {
                kind: KIND,
                name: name.to_string(),
                version: None,
            })?;
            KeyView { name: object.name.clone(), version: latest }
        };
        self.mark_dirty();
        Ok(view)
    }

    pub fn purge_key(&self, vault: &str, name: &str) -> Result<(), ServiceError> {
        self.vault(vault)?.write().keys.purge(KIND, name)?;
        self.mark_dirty();
        Ok(())
    }
}

fn default_rotation_policy() -> RotationPolicy {
    RotationPolicy {
        lifetime_actions: vec![LifetimeAction {
            trigger: LifetimeTrigger { time_after_create: None, time_before_expiry: Some("P30D".into()) },
            action: LifetimeActionType { kind: "Notify".into() },
        }],
        expiry_time: None,
        created: 0,
        updated: 0,
    }
}

/// `POST /keys/{name}/create` body.
#[derive(Debug, Deserialize)]
pub struct CreateKeyBody {
    pub kty: Option<String>,
    pub key_size: Option<u32>,
    pub public_exponent: Option<u32>,
    pub crv: Option<String>,
    pub key_ops: Option<Vec<String>>,
    pub attributes: Option<AttributesIn>,
    pub tags: Option<BTreeMap<String, String>>,
}

impl CreateKeyBody {
    pub fn into_input(self) -> Result<KeySpecInput, ServiceError> {
        let kty = self.kty.ok_or_else(|| ServiceError::BadParameter("The property 'kty' is required.".into()))?;
        let spec = match kty.as_str() {
            "RSA" | "RSA-HSM" => {
                if self.public_exponent.is_some_and(|e| e != 65537) {
                    return Err(ServiceError::BadParameter("Only the public exponent 65537 is supported.".into()));
                }
                let size = self.key_size.unwrap_or(2048);
                if ![2048, 3072, 4096].contains(&size) {
                    return Err(ServiceError::BadParameter(format!(
                        "RSA key size {size} is not supported; use 2048, 3072 or 4096."
                    )));
                }
                KeySpec::Rsa(size)
            }
            "EC" | "EC-HSM" => {
                let name = self.crv.as_deref().unwrap_or("P-256");
                KeySpec::Ec(Curve::parse(name).ok_or_else(|| {
                    ServiceError::BadParameter(format!(
                        "Curve '{name}' is not supported; use P-256, P-256K, P-384 or P-521."
                    ))
                })?)
            }
            "oct" | "oct-HSM" => {
                return Err(ServiceError::BadParameter(
                    "Symmetric (oct) keys are only available in Managed HSM.".into(),
                ));
            }
            other => return Err(ServiceError::BadParameter(format!("Key type '{other}' is not valid."))),
        };
        Ok(KeySpecInput {
            kty,
            spec,
            key_ops: self.key_ops,
            attributes: self.attributes.into(),
            tags: self.tags.unwrap_or_default(),
        })
    }
}

/// `PATCH /keys/{name}/{version}` body.
#[derive(Debug, Deserialize)]
pub struct UpdateKeyBody {
    pub key_ops: Option<Vec<String>>,
    pub attributes: Option<AttributesIn>,
    pub tags: Option<BTreeMap<String, String>>,
}

/// `PUT /keys/{name}/rotationpolicy` body.
#[derive(Debug, Deserialize)]
pub struct RotationPolicyBody {
    #[serde(rename = "lifetimeActions", default)]
    pub lifetime_actions: Vec<LifetimeAction>,
    pub attributes: Option<RotationPolicyAttributesIn>,
}

#[derive(Debug, Deserialize)]
pub struct RotationPolicyAttributesIn {
    #[serde(rename = "expiryTime")]
    pub expiry_time: Option<String>,
}

#[derive(Serialize)]
struct WireRotationPolicy<'a> {
    id: String,
    #[serde(rename = "lifetimeActions")]
    lifetime_actions: &'a [LifetimeAction],
    attributes: WireRotationAttributes<'a>,
}

#[derive(Serialize)]
struct WireRotationAttributes<'a> {
    #[serde(rename = "expiryTime", skip_serializing_if = "Option::is_none")]
    expiry_time: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    updated: Option<i64>,
}

/// The rotation policy JSON.
pub fn rotation_policy_json(base: &str, name: &str, policy: &RotationPolicy) -> serde_json::Value {
    let wire = WireRotationPolicy {
        id: format!("{base}/keys/{name}/rotationpolicy"),
        lifetime_actions: &policy.lifetime_actions,
        attributes: WireRotationAttributes {
            expiry_time: policy.expiry_time.as_deref(),
            created: (policy.created != 0).then_some(policy.created),
            updated: (policy.updated != 0).then_some(policy.updated),
        },
    };
    serde_json::to_value(wire).unwrap_or_default()
}

#[derive(Debug, Serialize)]
struct WireJwk<'a> {
    kid: String,
    kty: &'a str,
    key_ops: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    n: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    e: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    crv: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    x: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    y: Option<String>,
}

/// A key bundle (`key` + attributes), a list item (`kid` + attributes), or a deleted one.
#[derive(Debug, Serialize)]
pub struct KeyBundle<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<WireJwk<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
    attributes: WireAttributes,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<&'a BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    managed: bool,
    #[serde(rename = "recoveryId", skip_serializing_if = "Option::is_none")]
    recovery_id: Option<String>,
    #[serde(rename = "deletedDate", skip_serializing_if = "Option::is_none")]
    deleted_date: Option<i64>,
    #[serde(rename = "scheduledPurgeDate", skip_serializing_if = "Option::is_none")]
    scheduled_purge_date: Option<i64>,
}

impl<'a> KeyBundle<'a> {
    /// The full bundle with the public JWK.
    pub fn full(base: &str, name: &str, v: &'a Version<KeyData>) -> Self {
        let kid = format!("{base}/keys/{name}/{}", v.version);
        let (n, e, crv, x, y) = match &v.data.material.public {
            PublicJwk::Rsa { n, e } => (Some(crypto::b64url(n)), Some(crypto::b64url(e)), None, None, None),
            PublicJwk::Ec { crv, x, y } => {
                (None, None, Some(crv.name()), Some(crypto::b64url(x)), Some(crypto::b64url(y)))
            }
        };
        let mut attributes = WireAttributes::from(&v.attributes);
        attributes.exportable = Some(false);
        Self {
            key: Some(WireJwk { kid, kty: &v.data.kty, key_ops: &v.data.key_ops, n, e, crv, x, y }),
            kid: None,
            attributes,
            tags: (!v.tags.is_empty()).then_some(&v.tags),
            managed: v.data.managed,
            recovery_id: None,
            deleted_date: None,
            scheduled_purge_date: None,
        }
    }

    /// A list item: `kid` (versioned or not) and attributes.
    pub fn item(base: &str, name: &str, v: &'a Version<KeyData>, versioned: bool) -> Self {
        let kid = if versioned { format!("{base}/keys/{name}/{}", v.version) } else { format!("{base}/keys/{name}") };
        Self {
            key: None,
            kid: Some(kid),
            attributes: WireAttributes::from(&v.attributes),
            tags: (!v.tags.is_empty()).then_some(&v.tags),
            managed: v.data.managed,
            recovery_id: None,
            deleted_date: None,
            scheduled_purge_date: None,
        }
    }

    /// A deleted key, full or as a list item.
    pub fn deleted(base: &str, d: &'a Deleted<KeyData, KeyExtra>, list_item: bool) -> Option<Self> {
        let name = &d.object.name;
        let latest = d.object.latest()?;
        let mut bundle = if list_item { Self::item(base, name, latest, false) } else { Self::full(base, name, latest) };
        bundle.recovery_id = Some(format!("{base}/deletedkeys/{name}"));
        bundle.deleted_date = Some(d.deleted_date);
        bundle.scheduled_purge_date = Some(d.scheduled_purge_date);
        Some(bundle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_durations_add_calendar_months_and_days() {
        let t = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        assert_eq!(add_iso_duration(t, "P90D").unwrap() - t, chrono::TimeDelta::days(90));
        assert_eq!(add_iso_duration(t, "P2W").unwrap() - t, chrono::TimeDelta::days(14));
        assert!(add_iso_duration(t, "P1Y").unwrap() - t >= chrono::TimeDelta::days(365));
        assert!(add_iso_duration(t, "90D").is_none());
        assert!(add_iso_duration(t, "P").is_none());
        assert!(add_iso_duration(t, "P3").is_none());
    }
}
