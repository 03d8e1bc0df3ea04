//! The object version everything in a sweep is about.

use std::fmt;

use keyturn_events::ObjectKind;

/// One version of one vault object. Key Vault names are case-insensitive (`DB-Password` and `db-password`
/// are the same secret), so the vault and object names compare and key in lower case; versions are
/// lower-case hex already and are lower-cased too, for the same reason.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectVersion {
    vault: String,
    kind: ObjectKind,
    name: String,
    version: String,
}

impl ObjectVersion {
    pub fn new(vault: &str, kind: ObjectKind, name: &str, version: &str) -> Self {
        Self {
            vault: vault.to_ascii_lowercase(),
            kind,
            name: name.to_ascii_lowercase(),
            version: version.to_ascii_lowercase(),
        }
    }

    pub fn vault(&self) -> &str {
        &self.vault
    }
    pub fn kind(&self) -> ObjectKind {
        self.kind
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn version(&self) -> &str {
        &self.version
    }

    /// `<vault>/<kind>/<name>/<version>`, e.g. `kv1/secret/db-password/0f26...`: a path, a dedup key, a log field.
    pub fn path(&self) -> String {
        format!("{}/{}/{}/{}", self.vault, self.kind.as_str().to_ascii_lowercase(), self.name, self.version)
    }
}

impl fmt::Display for ObjectVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{} version {}", self.kind, self.vault, self.name, self.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_case_insensitive_as_in_key_vault() {
        let a = ObjectVersion::new("KV1", ObjectKind::Secret, "DB-Password", "ABC123");
        let b = ObjectVersion::new("kv1", ObjectKind::Secret, "db-password", "abc123");
        assert_eq!(a, b);
        assert_eq!(a.path(), "kv1/secret/db-password/abc123");
        assert_eq!(a.to_string(), "Secret kv1/db-password version abc123");
    }
}
