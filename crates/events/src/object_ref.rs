//! [`ObjectRef`]: the vault object keyturn acts on, as the handlers, the engine and the typed outcome name it.
//!
//! An event is parsed once (`keyturn_deps::Deps::accept`) into an [`ObjectRef`]: every later step takes this
//! typed reference, never the event again. It names a secret, key or certificate (never the vault itself)
//! and the one version the event is about.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{ObjectKind, VaultObject};

/// A version of a secret, key or certificate in a named vault. Serialised (in a handler's typed outcome) as
/// `{"vault":"kv-one","kind":"secret","name":"db-password","version":"0f26..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ObjectRef {
    vault: String,
    #[serde(with = "kind_serde")]
    kind: ObjectKind,
    name: String,
    version: String,
}

/// Why a [`VaultObject`] cannot be an [`ObjectRef`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotAnObject {
    #[error("the event is about the vault '{vault}' itself, not an object in it")]
    Vault { vault: String },
    #[error("{kind} {vault}/{name}: the event names no version of the object")]
    NoVersion { vault: String, kind: String, name: String },
}

impl ObjectRef {
    /// A reference to `vault/name` of `kind`, version `version`; `None` for [`ObjectKind::Vault`].
    pub fn new(vault: &str, kind: ObjectKind, name: &str, version: &str) -> Option<Self> {
        (kind != ObjectKind::Vault).then(|| Self {
            vault: vault.to_owned(),
            kind,
            name: name.to_owned(),
            version: version.to_owned(),
        })
    }

    /// The object and version an event names.
    pub fn from_object(object: &VaultObject) -> Result<Self, NotAnObject> {
        if object.kind() == ObjectKind::Vault {
            return Err(NotAnObject::Vault { vault: object.vault_name().to_owned() });
        }
        let Some(version) = object.version() else {
            return Err(NotAnObject::NoVersion {
                vault: object.vault_name().to_owned(),
                kind: object.kind().as_str().to_ascii_lowercase(),
                name: object.name().to_owned(),
            });
        };
        Ok(Self {
            vault: object.vault_name().to_owned(),
            kind: object.kind(),
            name: object.name().to_owned(),
            version: version.to_owned(),
        })
    }

    /// The vault's name, as the event gives it.
    pub fn vault(&self) -> &str {
        &self.vault
    }
    /// Secret, key or certificate (never [`ObjectKind::Vault`]).
    pub fn kind(&self) -> ObjectKind {
        self.kind
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The version the event is about.
    pub fn version(&self) -> &str {
        &self.version
    }
    /// The collection segment of the object's URL: `secrets`, `keys` or `certificates`.
    pub fn collection(&self) -> &'static str {
        // `new` and `from_object` refuse the vault kind, the only one without a collection.
        self.kind.collection().unwrap_or("secrets")
    }

    /// The object with its kind, as messages name it: `secret kv-one/db-password`.
    pub fn described(&self) -> String {
        format!("{} {self}", self.kind.as_str().to_ascii_lowercase())
    }
}

/// `vault/name`, as the one-line outcomes name an object.
impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.vault, self.name)
    }
}

/// The kind in lowercase (`secret`, `key`, `certificate`), read case-insensitively.
mod kind_serde {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::ObjectKind;

    pub(super) fn serialize<S: Serializer>(kind: &ObjectKind, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&kind.as_str().to_ascii_lowercase())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ObjectKind, D::Error> {
        let text = String::deserialize(deserializer)?;
        [ObjectKind::Secret, ObjectKind::Key, ObjectKind::Certificate]
            .into_iter()
            .find(|kind| kind.as_str().eq_ignore_ascii_case(&text))
            .ok_or_else(|| serde::de::Error::custom(format!("'{text}' is not secret, key or certificate")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_round_trips_as_json_with_a_lowercase_kind() {
        let object = ObjectRef::new("kv-one", ObjectKind::Certificate, "web-tls", "abc").unwrap();
        let json = serde_json::to_value(&object).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"vault": "kv-one", "kind": "certificate", "name": "web-tls", "version": "abc"})
        );
        assert_eq!(serde_json::from_value::<ObjectRef>(json).unwrap(), object);
        assert_eq!(object.to_string(), "kv-one/web-tls");
        assert_eq!(object.described(), "certificate kv-one/web-tls");
        assert_eq!(object.collection(), "certificates");
        assert!(
            serde_json::from_value::<ObjectRef>(
                serde_json::json!({"vault":"v","kind":"vault","name":"v","version":"1"})
            )
            .is_err()
        );
    }

    #[test]
    fn only_a_version_of_an_object_is_a_reference() {
        assert!(ObjectRef::new("kv-one", ObjectKind::Vault, "kv-one", "1").is_none());
        let vault = VaultObject::new("kv-one", ObjectKind::Vault, "kv-one", None, None, None).unwrap();
        assert!(matches!(ObjectRef::from_object(&vault), Err(NotAnObject::Vault { .. })));
        let secret = VaultObject::new("kv-one", ObjectKind::Secret, "db", Some("v1"), None, None).unwrap();
        let object = ObjectRef::from_object(&secret).unwrap();
        assert_eq!(
            (object.vault(), object.kind(), object.name(), object.version()),
            ("kv-one", ObjectKind::Secret, "db", "v1")
        );
    }
}
