//! The Key Vault payload of an event: which lifecycle moment, and which object in which vault.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use url::Url;

use crate::{DecodeError, tolerant};

/// Prefix shared by every Key Vault event type.
const PREFIX: &str = "Microsoft.KeyVault.";

/// The kind of Key Vault object an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    Secret,
    Key,
    Certificate,
    /// The vault itself (only `VaultAccessPolicyChanged`).
    Vault,
}

impl ObjectKind {
    /// As `data.ObjectType` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Secret => "Secret",
            Self::Key => "Key",
            Self::Certificate => "Certificate",
            Self::Vault => "Vault",
        }
    }

    /// The collection segment of the object's URL (`/secrets/<name>/<version>`); none for the vault.
    pub fn collection(self) -> Option<&'static str> {
        match self {
            Self::Secret => Some("secrets"),
            Self::Key => Some("keys"),
            Self::Certificate => Some("certificates"),
            Self::Vault => None,
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Self::Secret, Self::Key, Self::Certificate, Self::Vault]
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The moment in an object's life an event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lifecycle {
    NewVersionCreated,
    /// The current version expires in 30 days (secrets, certificates) or per the key's rotation policy.
    NearExpiry,
    Expired,
    AccessPolicyChanged,
}

/// The ten Key Vault event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyVaultEventType {
    SecretNewVersionCreated,
    SecretNearExpiry,
    SecretExpired,
    KeyNewVersionCreated,
    KeyNearExpiry,
    KeyExpired,
    CertificateNewVersionCreated,
    CertificateNearExpiry,
    CertificateExpired,
    VaultAccessPolicyChanged,
}

impl KeyVaultEventType {
    pub const ALL: [Self; 10] = [
        Self::SecretNewVersionCreated,
        Self::SecretNearExpiry,
        Self::SecretExpired,
        Self::KeyNewVersionCreated,
        Self::KeyNearExpiry,
        Self::KeyExpired,
        Self::CertificateNewVersionCreated,
        Self::CertificateNearExpiry,
        Self::CertificateExpired,
        Self::VaultAccessPolicyChanged,
    ];

    /// The full event type, e.g. `Microsoft.KeyVault.SecretNearExpiry`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SecretNewVersionCreated => "Microsoft.KeyVault.SecretNewVersionCreated",
            Self::SecretNearExpiry => "Microsoft.KeyVault.SecretNearExpiry",
            Self::SecretExpired => "Microsoft.KeyVault.SecretExpired",
            Self::KeyNewVersionCreated => "Microsoft.KeyVault.KeyNewVersionCreated",
            Self::KeyNearExpiry => "Microsoft.KeyVault.KeyNearExpiry",
            Self::KeyExpired => "Microsoft.KeyVault.KeyExpired",
            Self::CertificateNewVersionCreated => "Microsoft.KeyVault.CertificateNewVersionCreated",
            Self::CertificateNearExpiry => "Microsoft.KeyVault.CertificateNearExpiry",
            Self::CertificateExpired => "Microsoft.KeyVault.CertificateExpired",
            Self::VaultAccessPolicyChanged => "Microsoft.KeyVault.VaultAccessPolicyChanged",
        }
    }

    /// The event type for an object kind and a lifecycle moment, where Key Vault has one.
    pub fn for_object(kind: ObjectKind, lifecycle: Lifecycle) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.object_kind() == kind && t.lifecycle() == lifecycle)
    }

    /// Parses a Key Vault event type, ignoring case and surrounding whitespace; `None` for any other type.
    pub fn parse(event_type: &str) -> Option<Self> {
        let event_type = event_type.trim();
        Self::ALL.into_iter().find(|t| t.as_str().eq_ignore_ascii_case(event_type))
    }

    pub fn object_kind(self) -> ObjectKind {
        match self {
            Self::SecretNewVersionCreated | Self::SecretNearExpiry | Self::SecretExpired => ObjectKind::Secret,
            Self::KeyNewVersionCreated | Self::KeyNearExpiry | Self::KeyExpired => ObjectKind::Key,
            Self::CertificateNewVersionCreated | Self::CertificateNearExpiry | Self::CertificateExpired => {
                ObjectKind::Certificate
            }
            Self::VaultAccessPolicyChanged => ObjectKind::Vault,
        }
    }

    pub fn lifecycle(self) -> Lifecycle {
        match self {
            Self::SecretNewVersionCreated | Self::KeyNewVersionCreated | Self::CertificateNewVersionCreated => {
                Lifecycle::NewVersionCreated
            }
            Self::SecretNearExpiry | Self::KeyNearExpiry | Self::CertificateNearExpiry => Lifecycle::NearExpiry,
            Self::SecretExpired | Self::KeyExpired | Self::CertificateExpired => Lifecycle::Expired,
            Self::VaultAccessPolicyChanged => Lifecycle::AccessPolicyChanged,
        }
    }

    /// The short name without the `Microsoft.KeyVault.` prefix, for logs and messages.
    pub fn short_name(self) -> &'static str {
        &self.as_str()[PREFIX.len()..]
    }
}

impl fmt::Display for KeyVaultEventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Key Vault event: what happened, to which object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyVaultEvent {
    pub event_type: KeyVaultEventType,
    pub object: VaultObject,
}

/// The object an event names. Its parts always agree with its versioned URL: decoding rejects an event
/// whose `data.Id` says otherwise, and [`VaultObject::new`] derives the URL from the parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultObject {
    id: Url,
    vault_name: String,
    kind: ObjectKind,
    name: String,
    version: Option<String>,
    not_before: Option<DateTime<Utc>>,
    expires: Option<DateTime<Utc>>,
}

impl VaultObject {
    /// An object in a vault of the public cloud (`https://<vault>.vault.azure.net/<collection>/<name>/<version>`),
    /// as Key Vault itself would name it in an event.
    pub fn new(
        vault_name: &str,
        kind: ObjectKind,
        name: &str,
        version: Option<&str>,
        not_before: Option<DateTime<Utc>>,
        expires: Option<DateTime<Utc>>,
    ) -> Result<Self, DecodeError> {
        let mut id = format!("https://{vault_name}.vault.azure.net");
        if let Some(collection) = kind.collection() {
            id.push_str(&format!("/{collection}/{name}"));
            if let Some(version) = version {
                id.push_str(&format!("/{version}"));
            }
        }
        let id = Url::parse(&id).map_err(|e| DecodeError::new("data.Id", format!("'{id}' is not a URL: {e}")))?;
        let object = Self {
            id,
            vault_name: vault_name.to_owned(),
            kind,
            name: name.to_owned(),
            version: version.map(str::to_owned),
            not_before,
            expires,
        };
        object.check_id_agrees()?;
        Ok(object)
    }

    /// The versioned URL of the object (`data.Id`).
    pub fn id(&self) -> &Url {
        &self.id
    }
    pub fn vault_name(&self) -> &str {
        &self.vault_name
    }
    pub fn kind(&self) -> ObjectKind {
        self.kind
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The version the event is about; `None` only for vault-level events.
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }
    pub fn not_before(&self) -> Option<DateTime<Utc>> {
        self.not_before
    }
    pub fn expires(&self) -> Option<DateTime<Utc>> {
        self.expires
    }

    /// The strict half of decoding: `data.Id` must name the same vault, kind, object and version as the other
    /// fields. keyturn acts on objects by name; an event that disagrees with itself could make it act on the
    /// wrong one, so it is rejected with the first disagreement named.
    fn check_id_agrees(&self) -> Result<(), DecodeError> {
        let id = &self.id;
        if id.scheme() != "https" {
            return Err(DecodeError::new("data.Id", format!("'{id}' is not an https URL")));
        }
        let host = id.host_str().unwrap_or_default();
        let host_vault = host.split('.').next().unwrap_or_default();
        if !host_vault.eq_ignore_ascii_case(&self.vault_name) {
            return Err(DecodeError::new(
                "data.VaultName",
                format!("'{}' does not match the vault '{host_vault}' in data.Id '{id}'", self.vault_name),
            ));
        }
        let segments: Vec<&str> = id.path_segments().map(|s| s.filter(|p| !p.is_empty()).collect()).unwrap_or_default();
        match self.kind.collection() {
            None => {
                if !segments.is_empty() {
                    return Err(DecodeError::new(
                        "data.Id",
                        format!("'{id}' names an object, but ObjectType is Vault"),
                    ));
                }
                if !self.name.eq_ignore_ascii_case(&self.vault_name) {
                    return Err(DecodeError::new(
                        "data.ObjectName",
                        format!(
                            "'{}' should be the vault's own name '{}' for a vault event",
                            self.name, self.vault_name
                        ),
                    ));
                }
            }
            Some(collection) => {
                let [id_collection, id_name, id_version] = segments[..] else {
                    return Err(DecodeError::new(
                        "data.Id",
                        format!("'{id}' is not a versioned object URL (/{collection}/<name>/<version>)"),
                    ));
                };
                if id_collection != collection {
                    return Err(DecodeError::new(
                        "data.ObjectType",
                        format!("'{}' does not match '/{id_collection}/' in data.Id '{id}'", self.kind),
                    ));
                }
                // Object names are case-insensitive in Key Vault; versions are opaque, compared exactly.
                if !id_name.eq_ignore_ascii_case(&self.name) {
                    return Err(DecodeError::new(
                        "data.ObjectName",
                        format!("'{}' does not match the name '{id_name}' in data.Id '{id}'", self.name),
                    ));
                }
                match self.version.as_deref() {
                    Some(version) if version == id_version => {}
                    Some(version) => {
                        return Err(DecodeError::new(
                            "data.Version",
                            format!("'{version}' does not match the version '{id_version}' in data.Id '{id}'"),
                        ));
                    }
                    None => {
                        return Err(DecodeError::new(
                            "data.Version",
                            format!("missing; data.Id '{id}' names version '{id_version}'"),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// The `data` object as Key Vault sends it (PascalCase keys, NBF/EXP as epoch numbers or null).
    pub(crate) fn to_data(&self) -> Value {
        json!({
            "Id": self.id.as_str(),
            "VaultName": self.vault_name,
            "ObjectType": self.kind.as_str(),
            "ObjectName": self.name,
            "Version": self.version,
            "NBF": tolerant::epoch_value(self.not_before),
            "EXP": tolerant::epoch_value(self.expires),
        })
    }
}

const DATA_KEYS: [&str; 7] = ["Id", "VaultName", "ObjectType", "ObjectName", "Version", "NBF", "EXP"];

/// `data` as it arrives, once its keys are canonical; unknown keys are ignored.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawData {
    #[serde(deserialize_with = "tolerant::trimmed")]
    id: String,
    #[serde(deserialize_with = "tolerant::trimmed")]
    vault_name: String,
    #[serde(deserialize_with = "tolerant::trimmed")]
    object_type: String,
    #[serde(deserialize_with = "tolerant::trimmed")]
    object_name: String,
    #[serde(default, deserialize_with = "tolerant::trimmed_opt")]
    version: Option<String>,
    #[serde(rename = "NBF", default, deserialize_with = "tolerant::epoch_opt")]
    nbf: Option<DateTime<Utc>>,
    #[serde(rename = "EXP", default, deserialize_with = "tolerant::epoch_opt")]
    exp: Option<DateTime<Utc>>,
}

impl KeyVaultEvent {
    /// Decodes the `data` of an event whose type is already known to be `event_type`.
    pub(crate) fn decode(event_type: KeyVaultEventType, data: Value) -> Result<Self, DecodeError> {
        let object = VaultObject::parse_data(data)?;
        // The event type is the stronger claim, so its disagreement is reported before the Id's.
        if object.kind != event_type.object_kind() {
            return Err(DecodeError::new(
                "data.ObjectType",
                format!("'{}' does not match event type {}", object.kind, event_type),
            ));
        }
        object.check_id_agrees()?;
        Ok(Self { event_type, object })
    }
}

impl VaultObject {
    /// Decodes a `data` object of Key Vault's shape (tolerantly, and checked against its own `Id`).
    pub(crate) fn from_data(data: Value) -> Result<Self, DecodeError> {
        let object = Self::parse_data(data)?;
        object.check_id_agrees()?;
        Ok(object)
    }

    /// Decodes a `data` object of Key Vault's shape, before the check against its own `Id`.
    fn parse_data(data: Value) -> Result<Self, DecodeError> {
        let Value::Object(data) = data else {
            return Err(DecodeError::new("data", format!("expected an object, found {}", tolerant::kind_of(&data))));
        };
        let data: Map<String, Value> = tolerant::canonical_keys(data, &DATA_KEYS, "data")?;
        let raw: RawData =
            serde_path_to_error::deserialize(Value::Object(data)).map_err(|e| DecodeError::from_serde("data", e))?;

        let kind = ObjectKind::parse(&raw.object_type)
            .ok_or_else(|| DecodeError::new("data.ObjectType", format!("unknown object type '{}'", raw.object_type)))?;
        let id =
            Url::parse(&raw.id).map_err(|e| DecodeError::new("data.Id", format!("'{}' is not a URL: {e}", raw.id)))?;
        let object = VaultObject {
            id,
            vault_name: raw.vault_name,
            kind,
            name: raw.object_name,
            version: raw.version,
            not_before: raw.nbf,
            expires: raw.exp,
        };
        Ok(object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_names_its_kind_and_lifecycle_once() {
        for t in KeyVaultEventType::ALL {
            assert_eq!(KeyVaultEventType::parse(t.as_str()), Some(t));
            assert_eq!(KeyVaultEventType::for_object(t.object_kind(), t.lifecycle()), Some(t));
            assert!(t.as_str().ends_with(t.short_name()));
        }
        assert_eq!(
            KeyVaultEventType::parse(" microsoft.keyvault.secretnearexpiry "),
            Some(KeyVaultEventType::SecretNearExpiry)
        );
        assert_eq!(KeyVaultEventType::parse("Microsoft.Storage.BlobCreated"), None);
    }

    #[test]
    fn new_builds_the_url_key_vault_would_send() {
        let o = VaultObject::new("kv", ObjectKind::Secret, "db", Some("abc"), None, None).unwrap();
        assert_eq!(o.id().as_str(), "https://kv.vault.azure.net/secrets/db/abc");
        let v = VaultObject::new("kv", ObjectKind::Vault, "kv", None, None, None).unwrap();
        assert_eq!(v.id().as_str(), "https://kv.vault.azure.net/");
        assert!(VaultObject::new("kv", ObjectKind::Key, "k", None, None, None).is_err());
    }
}
