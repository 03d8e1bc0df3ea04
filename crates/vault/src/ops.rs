//! [`KeyVault`]: the vault operations keyturn's engines use, as a trait object so that unit tests can hand
//! in an in-memory fake and the real implementation ([`crate::AzureKeyVault`]) is tested against the
//! local emulator.
//!
//! Every operation takes the vault's name as the event gives it. Implementations must refuse a vault
//! outside the allow-list before doing anything else; [`KeyVault::check_allowed`] lets a caller refuse
//! an event before any other work.

use std::fmt;

use futures::future::BoxFuture;

use crate::VaultError;
use crate::model::{
    CertificatePolicy, CertificateProperties, CertificateRenewal, KeyProperties, KeyRotationPolicy, NewSecretVersion,
    SecretProperties, SecretVersion,
};

/// The future every vault operation returns.
pub type VaultFuture<'a, T> = BoxFuture<'a, Result<T, VaultError>>;

/// Key Vault, as far as keyturn uses it.
pub trait KeyVault: Send + Sync + fmt::Debug {
    /// `Ok` when `vault` is allow-listed; [`VaultError::NotAllowed`] otherwise. Never touches the network.
    fn check_allowed(&self, vault: &str) -> Result<(), VaultError>;

    /// The latest version of a secret, with its value.
    fn latest_secret<'a>(&'a self, vault: &'a str, name: &'a str) -> VaultFuture<'a, SecretVersion>;

    /// Adds a version to a secret (which becomes the latest at once: Key Vault has no staging).
    fn set_secret<'a>(
        &'a self,
        vault: &'a str,
        name: &'a str,
        new: NewSecretVersion,
    ) -> VaultFuture<'a, SecretProperties>;

    /// The latest version of a key.
    fn latest_key<'a>(&'a self, vault: &'a str, name: &'a str) -> VaultFuture<'a, KeyProperties>;

    /// The key's own rotation policy.
    fn key_rotation_policy<'a>(&'a self, vault: &'a str, name: &'a str) -> VaultFuture<'a, KeyRotationPolicy>;

    /// Key Vault's rotate operation: a new key version per the key's policy.
    fn rotate_key<'a>(&'a self, vault: &'a str, name: &'a str) -> VaultFuture<'a, KeyProperties>;

    /// The latest version of a certificate.
    fn latest_certificate<'a>(&'a self, vault: &'a str, name: &'a str) -> VaultFuture<'a, CertificateProperties>;

    /// The certificate's policy (issuer, lifetime actions).
    fn certificate_policy<'a>(&'a self, vault: &'a str, name: &'a str) -> VaultFuture<'a, CertificatePolicy>;

    /// The provider behind an issuer configured in the vault (`DigiCert`, `GlobalSign`, ...).
    fn issuer_provider<'a>(&'a self, vault: &'a str, issuer: &'a str) -> VaultFuture<'a, Option<String>>;

    /// Starts a new certificate version through the certificate's existing policy.
    fn renew_certificate<'a>(&'a self, vault: &'a str, name: &'a str) -> VaultFuture<'a, CertificateRenewal>;
}
