//! A subscription's dead-letter destination as Event Grid has it: a blob container in a storage account
//! (`deadLetterDestination: {endpointType: StorageBlob, properties: {resourceId, blobContainerName}}`), written
//! with the topic's identity. Locally the account is Azurite (HTTPS, `--oauth basic`), so the sweep reads back
//! exactly what a deployment's sweep reads.
//!
//! One blob per dead-lettering, named as the service names it (see `dispatch::dead_letter_path`), holding the
//! JSON array of events with the dead-letter fields. Like the service, the emulator does not create the
//! container: a deployment creates it, and an event that cannot be written there is dropped (logged, and kept
//! in the emulator's in-memory list of dead letters).

use std::fmt;
use std::sync::Arc;

use url::Url;

/// The storage REST API version the emulator writes with: one every Azurite release since 2024 accepts.
const STORAGE_API_VERSION: &str = "2023-11-03";

/// A blob container Event Grid writes dead letters into.
#[derive(Clone)]
pub struct BlobDestination {
    container: Url,
    http: reqwest::Client,
    /// A bearer token for `https://storage.azure.com`, from the topic's identity.
    token: Arc<dyn Fn() -> String + Send + Sync>,
}

impl fmt::Debug for BlobDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobDestination").field("container", &self.container.as_str()).finish_non_exhaustive()
    }
}

impl BlobDestination {
    /// The container at `container` (e.g. `https://127.0.0.1:10000/devstoreaccount1/keyturn-deadletter`), reached
    /// with `http` (which trusts the account's certificate) and a bearer token from `token`.
    pub fn new(container: Url, http: reqwest::Client, token: impl Fn() -> String + Send + Sync + 'static) -> Self {
        Self { container, http, token: Arc::new(token) }
    }

    /// The container's URL.
    pub fn container(&self) -> &Url {
        &self.container
    }

    /// Writes `body` as the block blob `name` (a `/`-separated path inside the container).
    pub(crate) async fn write(&self, name: &str, body: Vec<u8>) -> Result<(), String> {
        let mut url = self.container.clone();
        url.path_segments_mut()
            .map_err(|()| format!("'{}' cannot hold a blob path", self.container))?
            .pop_if_empty()
            .extend(name.split('/'));
        let response = self
            .http
            .put(url)
            .header("x-ms-blob-type", "BlockBlob")
            .header("x-ms-version", STORAGE_API_VERSION)
            .header("content-type", "application/json")
            .bearer_auth((self.token)())
            .body(body)
            .send()
            .await
            .map_err(|e| format!("writing the dead-letter blob failed: {e}"))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let code = response
            .headers()
            .get("x-ms-error-code")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("(no error code)")
            .to_owned();
        Err(format!("the storage account answered {} {code}", status.as_u16()))
    }
}
