//! [`Versions`]: operations on one named version of an object, rather than on the latest.
//!
//! The handlers that react to an event about a version (`expired`, `new-version`, `test-event`) must read
//! and change THAT version: the expired one may no longer be the latest, and disabling the latest instead
//! would take a healthy credential away. A separate trait from [`crate::KeyVault`] so that the rotation
//! engine's fakes are not asked for operations it never uses. Like every vault operation, each one refuses a
//! vault outside the allow-list before anything is sent.

use azure_core::http::RequestContent;
use azure_security_keyvault_certificates::models::{
    CertificateAttributes as SdkCertificateAttributes, CertificateClientGetCertificateOptions,
    CertificateClientUpdateCertificatePropertiesOptions, UpdateCertificatePropertiesParameters,
};
use azure_security_keyvault_keys::models::{
    KeyAttributes as SdkKeyAttributes, KeyClientGetKeyOptions, KeyClientUpdateKeyPropertiesOptions,
    UpdateKeyPropertiesParameters,
};
use azure_security_keyvault_secrets::models::{
    SecretAttributes as SdkSecretAttributes, SecretClientGetSecretOptions, SecretClientUpdateSecretPropertiesOptions,
    UpdateSecretPropertiesParameters,
};
use chrono::{DateTime, Utc};
use config::SecretString;

use crate::azure::AzureKeyVault;
use crate::inventory::{Collection, Inventory};
use crate::model::{SecretProperties, SecretVersion, Tags};
use crate::ops::VaultFuture;
use crate::{VaultError, time};

/// A version's attributes, whatever its kind (no value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionProperties {
    pub version: String,
    pub enabled: bool,
    pub tags: Tags,
    pub not_before: Option<DateTime<Utc>>,
    pub expires: Option<DateTime<Utc>>,
}

/// What to change on a version; `None` leaves it as it is. Tags are replaced as a whole (Key Vault's PATCH
/// semantics), so a caller adding one tag passes the version's tags with it added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionUpdate {
    pub enabled: Option<bool>,
    pub tags: Option<Tags>,
}

/// Operations on one named version.
pub trait Versions: Send + Sync + std::fmt::Debug {
    /// One version of a secret, with its value.
    fn secret_version<'a>(&'a self, vault: &'a str, name: &'a str, version: &'a str) -> VaultFuture<'a, SecretVersion>;

    /// One version's attributes, of a secret, key or certificate. A secret's value is not kept.
    fn version_properties<'a>(
        &'a self,
        vault: &'a str,
        collection: Collection,
        name: &'a str,
        version: &'a str,
    ) -> VaultFuture<'a, VersionProperties>;

    /// Changes one version's enabled flag and/or tags; returns its attributes afterwards.
    fn update_version<'a>(
        &'a self,
        vault: &'a str,
        collection: Collection,
        name: &'a str,
        version: &'a str,
        update: VersionUpdate,
    ) -> VaultFuture<'a, VersionProperties>;
}

fn owned(version: &str) -> Option<String> {
    Some(version.to_owned())
}

fn tags_of(tags: Option<std::collections::HashMap<String, String>>) -> Tags {
    tags.unwrap_or_default().into_iter().collect()
}

/// The version segment of a versioned id; the caller's version when the answer has none.
fn version_in(id: Option<&str>, asked: &str) -> String {
    id.and_then(|id| id.trim_end_matches('/').rsplit('/').next()).unwrap_or(asked).to_owned()
}

impl Versions for AzureKeyVault {
    fn secret_version<'a>(&'a self, vault: &'a str, name: &'a str, version: &'a str) -> VaultFuture<'a, SecretVersion> {
        Box::pin(async move {
            const OP: &str = "get secret version";
            let (clients, object) = self.clients(vault, name)?;
            let object = format!("{object}/{version}");
            let sdk = |e| VaultError::from_sdk(OP, &object, e);
            let options = SecretClientGetSecretOptions { secret_version: owned(version), ..Default::default() };
            let mut secret =
                clients.secrets.get_secret(name, Some(options)).await.map_err(sdk)?.into_model().map_err(sdk)?;
            // Only the wiping wrapper holds the value from here on.
            let value = SecretString::new(secret.value.take().unwrap_or_default());
            let attributes = secret.attributes.unwrap_or_default();
            let properties = SecretProperties {
                version: version_in(secret.id.as_deref(), version),
                content_type: secret.content_type,
                tags: tags_of(secret.tags),
                enabled: attributes.enabled.unwrap_or(true),
                not_before: attributes.not_before.and_then(time::from_sdk),
                expires: attributes.expires.and_then(time::from_sdk),
            };
            Ok(SecretVersion { properties, value })
        })
    }

    fn version_properties<'a>(
        &'a self,
        vault: &'a str,
        collection: Collection,
        name: &'a str,
        version: &'a str,
    ) -> VaultFuture<'a, VersionProperties> {
        Box::pin(async move {
            match self.get_version_properties(vault, collection, name, version).await {
                // Key Vault refuses to GET a disabled version (403, `SecretDisabled` for secrets), but lists
                // it with its attributes and tags: the expired version may well be disabled already.
                Err(error) if error.status() == Some(403) => {
                    let versions = self.versions(vault, collection, name).await?;
                    let listed = versions
                        .into_iter()
                        .find(|v| v.version.as_deref().is_some_and(|v| v.eq_ignore_ascii_case(version)))
                        .ok_or(error)?;
                    Ok(VersionProperties {
                        version: version.to_owned(),
                        enabled: listed.enabled,
                        tags: listed.tags,
                        not_before: listed.not_before,
                        expires: listed.expires,
                    })
                }
                other => other,
            }
        })
    }

    fn update_version<'a>(
        &'a self,
        vault: &'a str,
        collection: Collection,
        name: &'a str,
        version: &'a str,
        update: VersionUpdate,
    ) -> VaultFuture<'a, VersionProperties> {
        Box::pin(async move {
            let (clients, object) = self.clients(vault, name)?;
            let object = format!("{object}/{version}");
            let tags = update.tags.map(|tags| tags.into_iter().collect());
            match collection {
                Collection::Secrets => {
                    const OP: &str = "update secret version";
                    let sdk = |e| VaultError::from_sdk(OP, &object, e);
                    let parameters = UpdateSecretPropertiesParameters {
                        secret_attributes: update
                            .enabled
                            .map(|enabled| SdkSecretAttributes { enabled: Some(enabled), ..Default::default() }),
                        tags,
                        ..Default::default()
                    };
                    let body: RequestContent<UpdateSecretPropertiesParameters> = parameters.try_into().map_err(sdk)?;
                    let options = SecretClientUpdateSecretPropertiesOptions {
                        secret_version: owned(version),
                        ..Default::default()
                    };
                    let mut secret = clients
                        .secrets
                        .update_secret_properties(name, body, Some(options))
                        .await
                        .map_err(sdk)?
                        .into_model()
                        .map_err(sdk)?;
                    drop(secret.value.take().map(SecretString::new));
                    let attributes = secret.attributes.unwrap_or_default();
                    Ok(VersionProperties {
                        version: version_in(secret.id.as_deref(), version),
                        enabled: attributes.enabled.unwrap_or(true),
                        tags: tags_of(secret.tags),
                        not_before: attributes.not_before.and_then(time::from_sdk),
                        expires: attributes.expires.and_then(time::from_sdk),
                    })
                }
                Collection::Keys => {
                    const OP: &str = "update key version";
                    let sdk = |e| VaultError::from_sdk(OP, &object, e);
                    let parameters = UpdateKeyPropertiesParameters {
                        key_attributes: update
                            .enabled
                            .map(|enabled| SdkKeyAttributes { enabled: Some(enabled), ..Default::default() }),
                        tags,
                        ..Default::default()
                    };
                    let body: RequestContent<UpdateKeyPropertiesParameters> = parameters.try_into().map_err(sdk)?;
                    let options =
                        KeyClientUpdateKeyPropertiesOptions { key_version: owned(version), ..Default::default() };
                    let key = clients
                        .keys
                        .update_key_properties(name, body, Some(options))
                        .await
                        .map_err(sdk)?
                        .into_model()
                        .map_err(sdk)?;
                    let attributes = key.attributes.unwrap_or_default();
                    Ok(VersionProperties {
                        version: version_in(key.key.as_ref().and_then(|k| k.kid.as_deref()), version),
                        enabled: attributes.enabled.unwrap_or(true),
                        tags: tags_of(key.tags),
                        not_before: attributes.not_before.and_then(time::from_sdk),
                        expires: attributes.expires.and_then(time::from_sdk),
                    })
                }
                Collection::Certificates => {
                    const OP: &str = "update certificate version";
                    let sdk = |e| VaultError::from_sdk(OP, &object, e);
                    let parameters = UpdateCertificatePropertiesParameters {
                        certificate_attributes: update
                            .enabled
                            .map(|enabled| SdkCertificateAttributes { enabled: Some(enabled), ..Default::default() }),
                        tags,
                        ..Default::default()
                    };
                    let body: RequestContent<UpdateCertificatePropertiesParameters> =
                        parameters.try_into().map_err(sdk)?;
                    let options = CertificateClientUpdateCertificatePropertiesOptions {
                        certificate_version: owned(version),
                        ..Default::default()
                    };
                    let certificate = clients
                        .certificates
                        .update_certificate_properties(name, body, Some(options))
                        .await
                        .map_err(sdk)?
                        .into_model()
                        .map_err(sdk)?;
                    let attributes = certificate.attributes.unwrap_or_default();
                    Ok(VersionProperties {
                        version: version_in(certificate.id.as_deref(), version),
                        enabled: attributes.enabled.unwrap_or(true),
                        tags: tags_of(certificate.tags),
                        not_before: attributes.not_before.and_then(time::from_sdk),
                        expires: attributes.expires.and_then(time::from_sdk),
                    })
                }
            }
        })
    }
}

impl AzureKeyVault {
    /// One version's attributes by GET (which Key Vault refuses for a disabled version).
    fn get_version_properties<'a>(
        &'a self,
        vault: &'a str,
        collection: Collection,
        name: &'a str,
        version: &'a str,
    ) -> VaultFuture<'a, VersionProperties> {
        Box::pin(async move {
            let (clients, object) = self.clients(vault, name)?;
            let object = format!("{object}/{version}");
            match collection {
                Collection::Secrets => {
                    const OP: &str = "get secret version";
                    let sdk = |e| VaultError::from_sdk(OP, &object, e);
                    let options = SecretClientGetSecretOptions { secret_version: owned(version), ..Default::default() };
                    let mut secret = clients
                        .secrets
                        .get_secret(name, Some(options))
                        .await
                        .map_err(sdk)?
                        .into_model()
                        .map_err(sdk)?;
                    // The value is not wanted: wipe it at once.
                    drop(secret.value.take().map(SecretString::new));
                    let attributes = secret.attributes.unwrap_or_default();
                    Ok(VersionProperties {
                        version: version_in(secret.id.as_deref(), version),
                        enabled: attributes.enabled.unwrap_or(true),
                        tags: tags_of(secret.tags),
                        not_before: attributes.not_before.and_then(time::from_sdk),
                        expires: attributes.expires.and_then(time::from_sdk),
                    })
                }
                Collection::Keys => {
                    const OP: &str = "get key version";
                    let sdk = |e| VaultError::from_sdk(OP, &object, e);
                    let options = KeyClientGetKeyOptions { key_version: owned(version), ..Default::default() };
                    let key =
                        clients.keys.get_key(name, Some(options)).await.map_err(sdk)?.into_model().map_err(sdk)?;
                    let attributes = key.attributes.unwrap_or_default();
                    Ok(VersionProperties {
                        version: version_in(key.key.as_ref().and_then(|k| k.kid.as_deref()), version),
                        enabled: attributes.enabled.unwrap_or(true),
                        tags: tags_of(key.tags),
                        not_before: attributes.not_before.and_then(time::from_sdk),
                        expires: attributes.expires.and_then(time::from_sdk),
                    })
                }
                Collection::Certificates => {
                    const OP: &str = "get certificate version";
                    let sdk = |e| VaultError::from_sdk(OP, &object, e);
                    let options = CertificateClientGetCertificateOptions {
                        certificate_version: owned(version),
                        ..Default::default()
                    };
                    let certificate = clients
                        .certificates
                        .get_certificate(name, Some(options))
                        .await
                        .map_err(sdk)?
                        .into_model()
                        .map_err(sdk)?;
                    let attributes = certificate.attributes.unwrap_or_default();
                    Ok(VersionProperties {
                        version: version_in(certificate.id.as_deref(), version),
                        enabled: attributes.enabled.unwrap_or(true),
                        tags: tags_of(certificate.tags),
                        not_before: attributes.not_before.and_then(time::from_sdk),
                        expires: attributes.expires.and_then(time::from_sdk),
                    })
                }
            }
        })
    }
}
