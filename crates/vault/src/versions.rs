//! [`Versions`]: operations on one named version of an object, rather than on the latest.
//!
//! The handlers that react to an event about a version (`expired`, `new-version`, `test-event`) must read
//! and change THAT version: the expired one may no longer be the latest, and disabling the latest instead
//! would take a healthy credential away. A separate trait from [`crate::KeyVault`] so that the rotation
//! engine's fakes are not asked for operations it never uses. Like every vault operation, each one refuses a
//! vault outside the allow-list before anything is sent.

use std::collections::HashMap;

use azure_core::http::{DeserializeWith, JsonFormat, RequestContent, Response};
use azure_security_keyvault_certificates::models::{
    Certificate as SdkCertificate, CertificateAttributes as SdkCertificateAttributes,
    CertificateClientGetCertificateOptions, CertificateClientUpdateCertificatePropertiesOptions,
    UpdateCertificatePropertiesParameters,
};
use azure_security_keyvault_keys::models::{
    Key as SdkKey, KeyAttributes as SdkKeyAttributes, KeyClientGetKeyOptions, KeyClientUpdateKeyPropertiesOptions,
    UpdateKeyPropertiesParameters,
};
use azure_security_keyvault_secrets::models::{
    Secret as SdkSecret, SecretAttributes as SdkSecretAttributes, SecretClientGetSecretOptions,
    SecretClientUpdateSecretPropertiesOptions, UpdateSecretPropertiesParameters,
};
use chrono::{DateTime, Utc};
use keyturn_config::SecretString;

use crate::azure::AzureKeyVault;
use crate::inventory::{Collection, Inventory};
use crate::model::{SecretProperties, SecretVersion, Tags};
use crate::ops::VaultFuture;
use crate::pacer::OperationClass;
use crate::{VaultError, time};

/// A version's attributes, whatever its kind (no value), and the vault's clock when it told them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionProperties {
    pub version: String,
    pub enabled: bool,
    pub tags: Tags,
    pub not_before: Option<DateTime<Utc>>,
    pub expires: Option<DateTime<Utc>>,
    /// The vault's own time when it answered (the response's HTTP `Date`): what `expires` is judged against
    /// where only the vault's word counts (an `*Expired` event anyone who reaches the endpoint could forge).
    /// `None` when the answer carried no `Date`.
    pub vault_time: Option<DateTime<Utc>>,
}

impl VersionProperties {
    /// These attributes without the time they were read at: what two reads of an unchanged version share.
    pub fn timeless(self) -> Self {
        Self { vault_time: None, ..self }
    }
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

/// The version segment of a versioned id; the caller's version when the answer has none.
fn version_in(id: Option<&str>, asked: &str) -> String {
    id.and_then(|id| id.trim_end_matches('/').rsplit('/').next()).unwrap_or(asked).to_owned()
}

/// Awaits an SDK call and reads its answer's body; either failure is reported as `operation` on `object`.
async fn model<T: DeserializeWith<JsonFormat>>(
    call: impl Future<Output = azure_core::Result<Response<T>>>,
    operation: &'static str,
    object: &str,
) -> Result<T, VaultError> {
    Ok(dated_model(call, operation, object).await?.0)
}

/// A failed vault call, with the vault's time when it refused (its `Date`), if it answered at all.
struct Refused {
    error: VaultError,
    vault_time: Option<DateTime<Utc>>,
}

impl From<VaultError> for Refused {
    fn from(error: VaultError) -> Self {
        Refused { error, vault_time: None }
    }
}

impl From<Refused> for VaultError {
    fn from(refused: Refused) -> Self {
        refused.error
    }
}

/// [`dated_model`] for a secret, key or certificate answer, unpacked as an [`Answer`].
async fn dated_answer<T: DeserializeWith<JsonFormat> + Into<Answer>>(
    call: impl Future<Output = azure_core::Result<Response<T>>>,
    operation: &'static str,
    object: &str,
) -> Result<(Answer, Option<DateTime<Utc>>), Refused> {
    let (model, vault_time) = dated_model(call, operation, object).await?;
    Ok((model.into(), vault_time))
}

/// [`model`] with the vault's time when it answered, read from the answer's headers before its body; a refusal
/// keeps the time of the refusing answer too.
async fn dated_model<T: DeserializeWith<JsonFormat>>(
    call: impl Future<Output = azure_core::Result<Response<T>>>,
    operation: &'static str,
    object: &str,
) -> Result<(T, Option<DateTime<Utc>>), Refused> {
    let refused = |error: azure_core::Error| {
        let vault_time = match error.kind() {
            azure_core::error::ErrorKind::HttpResponse { raw_response: Some(raw), .. } => {
                time::vault_time(raw.headers())
            }
            _ => None,
        };
        Refused { error: VaultError::from_sdk(operation, object, error), vault_time }
    };
    let response = call.await.map_err(refused)?;
    let vault_time = time::vault_time(response.headers());
    Ok((response.into_model().map_err(refused)?, vault_time))
}

/// Serialises an SDK request model; a failure is reported as `operation` on `object`.
fn body<T>(parameters: T, operation: &'static str, object: &str) -> Result<RequestContent<T>, VaultError>
where
    T: TryInto<RequestContent<T>, Error = azure_core::Error>,
{
    parameters.try_into().map_err(|e| VaultError::from_sdk(operation, object, e))
}

/// The parts of a secret, key or certificate answer that [`VersionProperties`] is made of. The SDK's three
/// models hold them under different types (and a key's id inside its JWK); each is unpacked once, here, so
/// that one function builds [`VersionProperties`] for all three.
struct Answer {
    id: Option<String>,
    enabled: Option<bool>,
    not_before: Option<::time::OffsetDateTime>,
    expires: Option<::time::OffsetDateTime>,
    tags: Option<HashMap<String, String>>,
}

impl Answer {
    fn into_properties(self, asked: &str, vault_time: Option<DateTime<Utc>>) -> VersionProperties {
        VersionProperties {
            version: version_in(self.id.as_deref(), asked),
            enabled: self.enabled.unwrap_or(true),
            tags: self.tags.unwrap_or_default().into_iter().collect(),
            not_before: self.not_before.and_then(time::from_sdk),
            expires: self.expires.and_then(time::from_sdk),
            vault_time,
        }
    }
}

impl From<SdkSecret> for Answer {
    fn from(mut secret: SdkSecret) -> Self {
        // A caller that wants the value takes it first; any value still here is not wanted: wipe it at once.
        drop(secret.value.take().map(SecretString::new));
        let attributes = secret.attributes.unwrap_or_default();
        Answer {
            id: secret.id,
            enabled: attributes.enabled,
            not_before: attributes.not_before,
            expires: attributes.expires,
            tags: secret.tags,
        }
    }
}

impl From<SdkKey> for Answer {
    fn from(key: SdkKey) -> Self {
        let attributes = key.attributes.unwrap_or_default();
        Answer {
            id: key.key.and_then(|k| k.kid),
            enabled: attributes.enabled,
            not_before: attributes.not_before,
            expires: attributes.expires,
            tags: key.tags,
        }
    }
}

impl From<SdkCertificate> for Answer {
    fn from(certificate: SdkCertificate) -> Self {
        let attributes = certificate.attributes.unwrap_or_default();
        Answer {
            id: certificate.id,
            enabled: attributes.enabled,
            not_before: attributes.not_before,
            expires: attributes.expires,
            tags: certificate.tags,
        }
    }
}

impl Versions for AzureKeyVault {
    fn secret_version<'a>(&'a self, vault: &'a str, name: &'a str, version: &'a str) -> VaultFuture<'a, SecretVersion> {
        Box::pin(async move {
            const OP: &str = "get secret version";
            let (clients, object) = self.version_clients(vault, name, version)?;
            let options = SecretClientGetSecretOptions { secret_version: owned(version), ..Default::default() };
            self.turn(OperationClass::SecretOther, OP, vault, &object).await?;
            let mut secret = model(clients.secrets.get_secret(name, Some(options)), OP, &object).await?;
            // Only the wiping wrapper holds the value from here on.
            let value = SecretString::new(secret.value.take().unwrap_or_default());
            let content_type = secret.content_type.take();
            let VersionProperties { version, enabled, tags, not_before, expires, .. } =
                Answer::from(secret).into_properties(version, None);
            let properties = SecretProperties { version, content_type, tags, enabled, not_before, expires };
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
                Ok(properties) => Ok(properties),
                // Key Vault refuses to GET a disabled version (403, `SecretDisabled` for secrets), but lists
                // it with its attributes and tags: the expired version may well be disabled already. The vault's
                // time is the refusal's, a moment before the listing.
                Err(Refused { error, vault_time }) if error.status() == Some(403) => {
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
                        vault_time,
                    })
                }
                Err(Refused { error, .. }) => Err(error),
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
            let (clients, object) = self.version_clients(vault, name, version)?;
            let tags = update.tags.map(|tags| tags.into_iter().collect());
            self.turn(OperationClass::other(collection), "update version", vault, &object).await?;
            // One arm per SDK client: the request, its options and its answer are different types for each.
            let (answer, vault_time) = match collection {
                Collection::Secrets => {
                    const OP: &str = "update secret version";
                    let parameters = UpdateSecretPropertiesParameters {
                        secret_attributes: update
                            .enabled
                            .map(|enabled| SdkSecretAttributes { enabled: Some(enabled), ..Default::default() }),
                        tags,
                        ..Default::default()
                    };
                    let options = SecretClientUpdateSecretPropertiesOptions {
                        secret_version: owned(version),
                        ..Default::default()
                    };
                    let call =
                        clients.secrets.update_secret_properties(name, body(parameters, OP, &object)?, Some(options));
                    dated_answer(call, OP, &object).await?
                }
                Collection::Keys => {
                    const OP: &str = "update key version";
                    let parameters = UpdateKeyPropertiesParameters {
                        key_attributes: update
                            .enabled
                            .map(|enabled| SdkKeyAttributes { enabled: Some(enabled), ..Default::default() }),
                        tags,
                        ..Default::default()
                    };
                    let options =
                        KeyClientUpdateKeyPropertiesOptions { key_version: owned(version), ..Default::default() };
                    let call = clients.keys.update_key_properties(name, body(parameters, OP, &object)?, Some(options));
                    dated_answer(call, OP, &object).await?
                }
                Collection::Certificates => {
                    const OP: &str = "update certificate version";
                    let parameters = UpdateCertificatePropertiesParameters {
                        certificate_attributes: update
                            .enabled
                            .map(|enabled| SdkCertificateAttributes { enabled: Some(enabled), ..Default::default() }),
                        tags,
                        ..Default::default()
                    };
                    let options = CertificateClientUpdateCertificatePropertiesOptions {
                        certificate_version: owned(version),
                        ..Default::default()
                    };
                    let call = clients.certificates.update_certificate_properties(
                        name,
                        body(parameters, OP, &object)?,
                        Some(options),
                    );
                    dated_answer(call, OP, &object).await?
                }
            };
            Ok(answer.into_properties(version, vault_time))
        })
    }
}

impl AzureKeyVault {
    /// One version's attributes by GET (which Key Vault refuses for a disabled version).
    async fn get_version_properties(
        &self,
        vault: &str,
        collection: Collection,
        name: &str,
        version: &str,
    ) -> Result<VersionProperties, Refused> {
        let (clients, object) = self.version_clients(vault, name, version)?;
        self.turn(OperationClass::other(collection), "get version", vault, &object).await?;
        // One arm per SDK client: the options and the answer are different types for each.
        let (answer, vault_time) = match collection {
            Collection::Secrets => {
                let options = SecretClientGetSecretOptions { secret_version: owned(version), ..Default::default() };
                let call = clients.secrets.get_secret(name, Some(options));
                dated_answer(call, "get secret version", &object).await?
            }
            Collection::Keys => {
                let options = KeyClientGetKeyOptions { key_version: owned(version), ..Default::default() };
                let call = clients.keys.get_key(name, Some(options));
                dated_answer(call, "get key version", &object).await?
            }
            Collection::Certificates => {
                let options = CertificateClientGetCertificateOptions {
                    certificate_version: owned(version),
                    ..Default::default()
                };
                let call = clients.certificates.get_certificate(name, Some(options));
                dated_answer(call, "get certificate version", &object).await?
            }
        };
        Ok(answer.into_properties(version, vault_time))
    }
}
