//! Which object versions a pager was paged about and not yet resolved, durably: when a later sweep finds the
//! object on a newer version (rotated, renewed), it resolves that page (PagerDuty `resolve`, Opsgenie close by
//! alias) and forgets the record. A version is recorded only after its page was accepted, and forgotten only
//! after the resolve was accepted, so a pager that is down when the rotation is seen gets the resolve on a
//! later sweep.
//!
//! In blobs: one empty blob per paged version and channel, `_paged/<channel>/<vault>/<kind>/<name>/<version>`,
//! beside the threshold records (vault names cannot start with `_`, so the two never meet). Listing the
//! `_paged/` prefix once per sweep costs one call per 5,000 records; only critical thresholds page, so there
//! are few.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use azure_core::http::RequestContent;
use azure_storage_blob::BlobContainerClient;
use azure_storage_blob::models::{BlobContainerClientListBlobsOptions, StorageErrorCode};
use futures::StreamExt as _;
use futures::future::BoxFuture;
use keyturn_events::ObjectKind;

use keyturn_rotation::blob_errors::{code, status};

use crate::blob_state::BlobThresholdStore;
use crate::object::ObjectVersion;
use crate::state::StateError;

/// The prefix of every paged record.
const PREFIX: &str = "_paged/";

/// One paged, unresolved object version on one pager channel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Paged {
    /// The channel's stable name in the state (e.g. `c3-pagerduty`: its position and kind).
    pub channel: String,
    pub object: ObjectVersion,
}

impl Paged {
    fn path(&self) -> String {
        format!("{PREFIX}{}/{}", self.channel, self.object.path())
    }

    /// The record a blob name holds, if it is one.
    fn from_path(path: &str) -> Option<Self> {
        let rest = path.strip_prefix(PREFIX)?;
        let [channel, vault, kind, name, version] = rest.split('/').collect::<Vec<_>>()[..] else { return None };
        let kind = match kind {
            "secret" => ObjectKind::Secret,
            "key" => ObjectKind::Key,
            "certificate" => ObjectKind::Certificate,
            _ => return None,
        };
        Some(Self { channel: channel.to_owned(), object: ObjectVersion::new(vault, kind, name, version) })
    }
}

/// Durable, shared record of paged versions.
pub trait PagedVersions: Send + Sync + fmt::Debug {
    /// Every record, read once per sweep.
    fn list(&self) -> BoxFuture<'_, Result<Vec<Paged>, StateError>>;
    /// Records a page that its pager accepted.
    fn record<'a>(&'a self, paged: &'a Paged) -> BoxFuture<'a, Result<(), StateError>>;
    /// Forgets a page whose resolve its pager accepted (absent already: fine).
    fn forget<'a>(&'a self, paged: &'a Paged) -> BoxFuture<'a, Result<(), StateError>>;
}

/// Paged versions in memory, for unit tests and local runs: forgotten on restart.
#[derive(Debug, Default)]
pub struct MemoryPagedVersions {
    // A std Mutex: held for one set operation, never across an await.
    records: Mutex<HashSet<Paged>>,
}

impl MemoryPagedVersions {
    fn with<T>(&self, f: impl FnOnce(&mut HashSet<Paged>) -> T) -> T {
        f(&mut self.records.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl PagedVersions for MemoryPagedVersions {
    fn list(&self) -> BoxFuture<'_, Result<Vec<Paged>, StateError>> {
        let mut records: Vec<Paged> = self.with(|r| r.iter().cloned().collect());
        records.sort_by_key(Paged::path);
        Box::pin(async move { Ok(records) })
    }
    fn record<'a>(&'a self, paged: &'a Paged) -> BoxFuture<'a, Result<(), StateError>> {
        self.with(|r| r.insert(paged.clone()));
        Box::pin(async { Ok(()) })
    }
    fn forget<'a>(&'a self, paged: &'a Paged) -> BoxFuture<'a, Result<(), StateError>> {
        self.with(|r| r.remove(paged));
        Box::pin(async { Ok(()) })
    }
}

/// Paged versions in the threshold store's container.
pub struct BlobPagedVersions {
    container: Arc<BlobContainerClient>,
}

impl fmt::Debug for BlobPagedVersions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobPagedVersions").field("container", &self.container.url().as_str()).finish()
    }
}

impl BlobPagedVersions {
    /// In the same container as `store`'s threshold records.
    pub fn beside(store: &BlobThresholdStore) -> Self {
        Self { container: Arc::clone(store.container()) }
    }
}

fn backend(what: &str, operation: &str, error: &azure_core::Error) -> StateError {
    StateError::Backend { key: what.to_owned(), message: keyturn_rotation::blob_errors::describe(operation, error) }
}

impl PagedVersions for BlobPagedVersions {
    fn list(&self) -> BoxFuture<'_, Result<Vec<Paged>, StateError>> {
        Box::pin(async move {
            let options = BlobContainerClientListBlobsOptions { prefix: Some(PREFIX.to_owned()), ..Default::default() };
            let mut pages =
                self.container.list_blobs(Some(options)).map_err(|e| backend(PREFIX, "listing paged versions", &e))?;
            let mut records = Vec::new();
            while let Some(item) = pages.next().await {
                let item = match item {
                    Ok(item) => item,
                    // Nothing was ever written: nothing was paged.
                    Err(e) if code(&e) == Some(StorageErrorCode::ContainerNotFound) => return Ok(Vec::new()),
                    Err(e) => return Err(backend(PREFIX, "listing paged versions", &e)),
                };
                match item.name.as_deref().and_then(Paged::from_path) {
                    Some(paged) => records.push(paged),
                    None => {
                        tracing::warn!(blob = ?item.name, "a blob under {PREFIX} that is not a paged record; left alone")
                    }
                }
            }
            Ok(records)
        })
    }

    fn record<'a>(&'a self, paged: &'a Paged) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(async move {
            let blob = self.container.blob_client(&paged.path());
            // An overwrite is harmless (the same empty record); the threshold claim already made the page once.
            match blob.block_blob_client().upload(RequestContent::from(Vec::<u8>::new()), None).await {
                Ok(_) => Ok(()),
                Err(e) => Err(backend(&paged.path(), "recording the page", &e)),
            }
        })
    }

    fn forget<'a>(&'a self, paged: &'a Paged) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(async move {
            match self.container.blob_client(&paged.path()).delete(None).await {
                Ok(_) => Ok(()),
                Err(e) if status(&e) == Some(azure_core::http::StatusCode::NotFound) => Ok(()),
                Err(e) => Err(backend(&paged.path(), "forgetting the page", &e)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_through_its_blob_name_and_other_names_are_not_records() {
        let paged = Paged {
            channel: "c2-pagerduty".into(),
            object: ObjectVersion::new("kv1", ObjectKind::Certificate, "web-tls", "abc"),
        };
        assert_eq!(paged.path(), "_paged/c2-pagerduty/kv1/certificate/web-tls/abc");
        assert_eq!(Paged::from_path(&paged.path()), Some(paged));
        assert_eq!(Paged::from_path("kv1/secret/db/v1/7d"), None);
        assert_eq!(Paged::from_path("_paged/c1/kv1/vault/x/y"), None);
    }

    #[tokio::test]
    async fn the_memory_store_records_lists_and_forgets() {
        let store = MemoryPagedVersions::default();
        let paged =
            Paged { channel: "c1-opsgenie".into(), object: ObjectVersion::new("kv1", ObjectKind::Secret, "db", "v1") };
        store.record(&paged).await.unwrap();
        store.record(&paged).await.unwrap();
        assert_eq!(store.list().await.unwrap(), std::slice::from_ref(&paged));
        store.forget(&paged).await.unwrap();
        store.forget(&paged).await.unwrap();
        assert!(store.list().await.unwrap().is_empty());
    }
}
