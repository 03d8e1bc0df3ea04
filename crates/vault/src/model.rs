//! Key Vault objects as keyturn sees them: chrono times, tags as a sorted map, secret values wrapped.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use keyturn_config::SecretString;

/// Tags of a vault object (Key Vault allows at most [`MAX_TAGS`]).
pub type Tags = BTreeMap<String, String>;

/// Key Vault's limit on tags per object.
pub const MAX_TAGS: usize = 15;

/// A secret version's properties (everything but the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretProperties {
    pub version: String,
    pub content_type: Option<String>,
    pub tags: Tags,
    pub enabled: bool,
    pub not_before: Option<DateTime<Utc>>,
    pub expires: Option<DateTime<Utc>>,
}

/// A secret version with its value.
#[derive(Debug, Clone)]
pub struct SecretVersion {
    pub properties: SecretProperties,
    pub value: SecretString,
}

/// What a new secret version is made of.
#[derive(Debug, Clone)]
pub struct NewSecretVersion {
    pub value: SecretString,
    pub content_type: Option<String>,
    pub tags: Tags,
    pub not_before: Option<DateTime<Utc>>,
    pub expires: Option<DateTime<Utc>>,
}

/// A key version's properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyProperties {
    pub version: String,
    pub tags: Tags,
    pub enabled: bool,
    pub expires: Option<DateTime<Utc>>,
}

/// What a key's own rotation policy does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRotationPolicy {
    /// The policy has a `Rotate` lifetime action: Key Vault rotates the key itself.
    pub rotates: bool,
    /// The policy's trigger for that action, as Key Vault states it (e.g. `timeBeforeExpiry P30D`).
    pub trigger: Option<String>,
}

/// A certificate version's properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateProperties {
    pub version: String,
    pub tags: Tags,
    pub enabled: bool,
    pub expires: Option<DateTime<Utc>>,
}

/// The parts of a certificate's policy that decide whether keyturn can renew it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificatePolicy {
    /// The issuer's name: `Self`, `Unknown` (a CA outside Key Vault), or an issuer configured in the vault.
    pub issuer: Option<String>,
    /// The policy has an `AutoRenew` lifetime action: Key Vault renews the certificate itself.
    pub auto_renew: bool,
}

/// A certificate renewal Key Vault accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRenewal {
    /// The operation's status as Key Vault reported it (`inProgress`, `completed`).
    pub status: String,
}
