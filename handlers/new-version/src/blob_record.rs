//! [`BlobRecord`]: the refreshed consumers in the rotation lock's blob container, one empty blob per consumer and
//! object version (`consumers/<vault>/<kind>/<name>/<version>/subscriptions/.../<app>`), so every instance of
//! the handler, and every redelivery of the event, sees what was refreshed.

use azure_core::http::{RequestContent, StatusCode};
use azure_storage_blob::BlobContainerClient;
use azure_storage_blob::models::StorageErrorCode;
use futures::future::BoxFuture;
use keyturn_rotation::blob_errors::{code, describe, status};

use crate::consumers::RefreshRecord;

/// Records as blobs in one container (the lock container: `KEYTURN_LOCK_ACCOUNT_URL`, `KEYTURN_LOCK_CONTAINER`).
pub struct BlobRecord {
    container: BlobContainerClient,
}

impl std::fmt::Debug for BlobRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobRecord").field("container", &self.container.url().as_str()).finish()
    }
}

impl BlobRecord {
    pub fn new(container: BlobContainerClient) -> Self {
        Self { container }
    }

    async fn write(&self, key: &str) -> Result<(), azure_core::Error> {
        let blob = self.container.blob_client(key);
        blob.block_blob_client().upload(RequestContent::from(Vec::<u8>::new()), None).await.map(|_| ())
    }
}

impl RefreshRecord for BlobRecord {
    fn is_recorded<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(async move {
            match self.container.blob_client(key).get_properties(None).await {
                Ok(_) => Ok(true),
                // A HEAD has no body: a missing blob (or container) is a bare 404.
                Err(e) if status(&e) == Some(StatusCode::NotFound) => Ok(false),
                Err(e) => Err(describe("reading the refresh record", &e)),
            }
        })
    }

    fn record<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            match self.write(key).await {
                Ok(()) => Ok(()),
                Err(e) if code(&e) == Some(StorageErrorCode::ContainerNotFound) => {
                    match self.container.create(None).await {
                        Ok(_) => {}
                        Err(e) if code(&e) == Some(StorageErrorCode::ContainerAlreadyExists) => {}
                        Err(e) => return Err(describe("creating the record container", &e)),
                    }
                    self.write(key).await.map_err(|e| describe("writing the refresh record", &e))
                }
                Err(e) => Err(describe("writing the refresh record", &e)),
            }
        })
    }
}
