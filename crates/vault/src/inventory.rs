//! [`Inventory`]: read-only listing of what a vault holds, for tools that survey a vault (`keyturn check`)
//! rather than act on one object.
//!
//! A separate trait from [`crate::KeyVault`] so that the handlers' engines, and the in-memory fakes their
//! tests use, are not asked for operations they never need. Listing needs only the `list` permission (Key
//! Vault Reader): no secret value is ever requested, and every page of Key Vault's `nextLink` paging is
//! followed.

use futures::{Stream, StreamExt};

use crate::azure::AzureKeyVault;
use crate::model::Tags;
use crate::ops::VaultFuture;
use crate::pacer::OperationClass;
use crate::{VaultError, time};

/// The three collections of a vault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Collection {
    Secrets,
    Keys,
    Certificates,
}

impl Collection {
    pub const ALL: [Self; 3] = [Self::Secrets, Self::Keys, Self::Certificates];

    /// As the URL path spells it (`/secrets`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Secrets => "secrets",
            Self::Keys => "keys",
            Self::Certificates => "certificates",
        }
    }
}

/// One item of a listing: an object (from a collection listing: no version) or one version of it (from a
/// versions listing). Attributes are those of the object's current version, or of that version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    /// The version segment of the item's id, when the id has one (versions listings).
    pub version: Option<String>,
    pub enabled: bool,
    pub created: Option<chrono::DateTime<chrono::Utc>>,
    pub not_before: Option<chrono::DateTime<chrono::Utc>>,
    pub expires: Option<chrono::DateTime<chrono::Utc>>,
    pub tags: Tags,
    /// A key or secret backing a certificate (Key Vault manages its lifetime; it raises no events of its own).
    pub managed: bool,
}

/// Listing a vault. Implementations follow every `nextLink` and refuse a vault outside the allow-list
/// before sending anything.
pub trait Inventory: Send + Sync + std::fmt::Debug {
    /// Every object of one collection (deleted objects excluded), with its current version's attributes.
    fn list<'a>(&'a self, vault: &'a str, collection: Collection) -> VaultFuture<'a, Vec<Listed>>;

    /// Every version of one object, oldest first by creation time.
    fn versions<'a>(&'a self, vault: &'a str, collection: Collection, name: &'a str) -> VaultFuture<'a, Vec<Listed>>;
}

/// The current version among `versions`: Key Vault's "latest" is the one created last.
pub fn current(versions: &[Listed]) -> Option<&Listed> {
    versions.iter().max_by_key(|v| v.created)
}

/// Splits an item id `https://<vault>/<collection>/<name>[/<version>]` into name and version.
fn name_and_version(id: &str, collection: Collection) -> Option<(String, Option<String>)> {
    let url = url::Url::parse(id).ok()?;
    let segments: Vec<&str> = url.path_segments()?.filter(|s| !s.is_empty()).collect();
    match segments[..] {
        [c, name] if c == collection.as_str() => Some((name.to_owned(), None)),
        [c, name, version] if c == collection.as_str() => Some((name.to_owned(), Some(version.to_owned()))),
        _ => None,
    }
}

/// The attributes the three SDK models share, gathered so one function builds every [`Listed`].
struct Raw {
    id: Option<String>,
    enabled: Option<bool>,
    created: Option<::time::OffsetDateTime>,
    not_before: Option<::time::OffsetDateTime>,
    expires: Option<::time::OffsetDateTime>,
    tags: Option<std::collections::HashMap<String, String>>,
    managed: Option<bool>,
}

// The SDK's three property models carry the same attributes under different types (and a key's id is
// `kid`); each is unpacked here, once, so that everything after works on [`Raw`] alone.
impl From<azure_security_keyvault_secrets::models::SecretProperties> for Raw {
    fn from(s: azure_security_keyvault_secrets::models::SecretProperties) -> Self {
        let a = s.attributes.unwrap_or_default();
        Raw {
            id: s.id,
            enabled: a.enabled,
            created: a.created,
            not_before: a.not_before,
            expires: a.expires,
            tags: s.tags,
            managed: s.managed,
        }
    }
}

impl From<azure_security_keyvault_keys::models::KeyProperties> for Raw {
    fn from(k: azure_security_keyvault_keys::models::KeyProperties) -> Self {
        let a = k.attributes.unwrap_or_default();
        Raw {
            id: k.kid,
            enabled: a.enabled,
            created: a.created,
            not_before: a.not_before,
            expires: a.expires,
            tags: k.tags,
            managed: k.managed,
        }
    }
}

impl From<azure_security_keyvault_certificates::models::CertificateProperties> for Raw {
    fn from(c: azure_security_keyvault_certificates::models::CertificateProperties) -> Self {
        let a = c.attributes.unwrap_or_default();
        Raw {
            id: c.id,
            enabled: a.enabled,
            created: a.created,
            not_before: a.not_before,
            expires: a.expires,
            tags: c.tags,
            // A certificate is never the backing object of another.
            managed: None,
        }
    }
}

fn listed(raw: Raw, collection: Collection, operation: &'static str, vault: &str) -> Result<Listed, VaultError> {
    let id = raw.id.unwrap_or_default();
    let (name, version) = name_and_version(&id, collection).ok_or_else(|| VaultError::Unexpected {
        operation,
        object: vault.to_owned(),
        message: format!("a listed item has no usable id ({id:?})"),
    })?;
    Ok(Listed {
        name,
        version,
        enabled: raw.enabled.unwrap_or(true),
        created: raw.created.and_then(time::from_sdk),
        not_before: raw.not_before.and_then(time::from_sdk),
        expires: raw.expires.and_then(time::from_sdk),
        tags: raw.tags.unwrap_or_default().into_iter().collect(),
        managed: raw.managed.unwrap_or(false),
    })
}

/// One listing call: what its errors name, and which collection its items' ids must be in.
struct Listing<'a> {
    collection: Collection,
    operation: &'static str,
    vault: &'a str,
    /// The listed collection or object, as errors name it (`<vault>/secrets`, `<vault>/<name>`).
    object: &'a str,
}

impl Listing<'_> {
    /// Drains the pager an SDK list call returned (every page), converting each item. A pager that could
    /// not be built and a page that failed are both reported as this listing's failure.
    async fn drain<T: Into<Raw>>(
        &self,
        pager: azure_core::Result<impl Stream<Item = azure_core::Result<T>>>,
    ) -> Result<Vec<Listed>, VaultError> {
        let sdk = |e| VaultError::from_sdk(self.operation, self.object, e);
        let mut items = Vec::new();
        let mut pager = std::pin::pin!(pager.map_err(sdk)?);
        while let Some(item) = pager.next().await {
            items.push(listed(item.map_err(sdk)?.into(), self.collection, self.operation, self.vault)?);
        }
        Ok(items)
    }
}

impl Inventory for AzureKeyVault {
    fn list<'a>(&'a self, vault: &'a str, collection: Collection) -> VaultFuture<'a, Vec<Listed>> {
        Box::pin(async move {
            let clients = self.vault_clients(vault)?;
            let object = format!("{vault}/{}", collection.as_str());
            let listing = |operation| Listing { collection, operation, vault, object: &object };
            // One turn per listing, not per page: a page holds up to 25 items, so the pages after the first of a
            // large vault run ahead of the schedule by a few percent of the "other" limit's 4,000 per 10 s.
            self.turn(OperationClass::other(collection), "list", vault, &object).await?;
            // One arm per SDK client: each pages a different model type, so the arms cannot merge further.
            match collection {
                Collection::Secrets => {
                    let pager = clients.secrets.list_secret_properties(None);
                    listing("list secrets").drain(pager).await
                }
                Collection::Keys => {
                    let pager = clients.keys.list_key_properties(None);
                    listing("list keys").drain(pager).await
                }
                Collection::Certificates => {
                    let pager = clients.certificates.list_certificate_properties(None);
                    listing("list certificates").drain(pager).await
                }
            }
        })
    }

    fn versions<'a>(&'a self, vault: &'a str, collection: Collection, name: &'a str) -> VaultFuture<'a, Vec<Listed>> {
        Box::pin(async move {
            let (clients, object) = self.clients(vault, name)?;
            let listing = |operation| Listing { collection, operation, vault, object: &object };
            self.turn(OperationClass::other(collection), "list versions", vault, &object).await?;
            let mut versions = match collection {
                Collection::Secrets => {
                    let pager = clients.secrets.list_secret_properties_versions(name, None);
                    listing("list secret versions").drain(pager).await?
                }
                Collection::Keys => {
                    let pager = clients.keys.list_key_properties_versions(name, None);
                    listing("list key versions").drain(pager).await?
                }
                Collection::Certificates => {
                    let pager = clients.certificates.list_certificate_properties_versions(name, None);
                    listing("list certificate versions").drain(pager).await?
                }
            };
            versions.sort_by_key(|v| v.created);
            Ok(versions)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_split_into_name_and_version_for_their_own_collection_only() {
        let s = Collection::Secrets;
        assert_eq!(name_and_version("https://kv.vault.azure.net/secrets/db", s), Some(("db".into(), None)));
        assert_eq!(
            name_and_version("https://127.0.0.1:8443/secrets/db/abc", s),
            Some(("db".into(), Some("abc".into())))
        );
        assert_eq!(name_and_version("https://kv.vault.azure.net/keys/db", s), None);
        assert_eq!(name_and_version("https://kv.vault.azure.net/secrets", s), None);
        assert_eq!(name_and_version("not a url", s), None);
    }

    #[test]
    fn the_current_version_is_the_one_created_last() {
        let at = |secs| chrono::DateTime::from_timestamp(secs, 0);
        let version = |v: &str, created| Listed {
            name: "db".into(),
            version: Some(v.into()),
            enabled: true,
            created: at(created),
            not_before: None,
            expires: None,
            tags: Tags::new(),
            managed: false,
        };
        let versions = [version("a", 100), version("c", 300), version("b", 200)];
        assert_eq!(current(&versions).and_then(|v| v.version.as_deref()), Some("c"));
        assert_eq!(current(&[]), None);
    }
}
