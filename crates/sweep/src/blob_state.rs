//! Threshold state in Azure Blob Storage: one empty blob per threshold of an object version,
//! `<container>/<vault>/<kind>/<name>/<version>/<threshold>d`, whose metadata says `claimed` or `fired`, when,
//! and by which sweep. Every write is conditional on the blob's ETag, so of two sweeps only one wins:
//! - claim: create with `If-None-Match: *` (the second creator gets 409 `BlobAlreadyExists`); taking over a
//!   stale claim rewrites it with `If-Match: <etag read>` (the second gets 412 `ConditionNotMet`);
//! - complete: rewrite with `If-Match: <the claim's etag>`;
//! - release: delete with `If-Match: <the claim's etag>`.
//!
//! Blobs per threshold rather than one per object version: two sweeps working on different thresholds of
//! the same object never contend. The container is created on first use if the deployment did not.

use std::collections::HashMap;
use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use azure_core::error::ErrorKind;
use azure_core::http::{ClientOptions, Etag, RequestContent, StatusCode, Url};
use azure_storage_blob::models::{
    BlobClientDeleteOptions, BlobClientGetPropertiesResultHeaders, BlockBlobClientUploadOptions, StorageErrorCode,
};
use azure_storage_blob::{BlobContainerClient, BlobContainerClientOptions};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use futures::future::BoxFuture;
use keyturn_rotation::blob_errors::{code, describe, status};

use crate::state::{Claim, ClaimToken, DEFAULT_CLAIM_LIFETIME, Phase, StateError, ThresholdKey, ThresholdStore, judge};

const META_PHASE: &str = "keyturn_state";
const META_AT: &str = "keyturn_at";
const META_SWEEP: &str = "keyturn_sweep";
/// Conflicting writers can make a claim retry (a release between our create and our read); a handful of
/// rounds is plenty, and a bound keeps a misbehaving store from looping a sweep forever.
const MAX_CLAIM_ROUNDS: usize = 5;

/// The store could not be built (at start).
#[derive(Debug, thiserror::Error)]
pub enum BlobStateSetupError {
    #[error("threshold state: the account URL '{url}' cannot hold a container path")]
    AccountUrl { url: String },
    #[error("threshold state: building the blob client for '{url}' failed: {message}")]
    Client { url: String, message: String },
}

/// Threshold state in one container of a storage account.
pub struct BlobThresholdStore {
    // Shared with the paged-version records, which live in the same container.
    container: Arc<BlobContainerClient>,
    lifetime: Duration,
}

impl std::fmt::Debug for BlobThresholdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobThresholdStore")
            .field("container", &self.container.url().as_str())
            .field("lifetime", &self.lifetime)
            .finish()
    }
}

impl BlobThresholdStore {
    /// State in `container` of the account whose blob endpoint is `account_url` (e.g.
    /// `https://<account>.blob.core.windows.net/`, or Azurite's `https://127.0.0.1:<port>/devstoreaccount1`),
    /// with the credential and transport the vault clients use.
    pub fn new(
        account_url: &Url,
        container: &str,
        credential: Arc<dyn TokenCredential>,
        options: ClientOptions,
    ) -> Result<Self, BlobStateSetupError> {
        let mut url = account_url.clone();
        url.path_segments_mut()
            .map_err(|()| BlobStateSetupError::AccountUrl { url: account_url.to_string() })?
            .pop_if_empty()
            .push(container);
        let client_options = BlobContainerClientOptions { client_options: options, ..Default::default() };
        let container = BlobContainerClient::new(url.clone(), Some(credential), Some(client_options))
            .map_err(|e| BlobStateSetupError::Client { url: url.to_string(), message: e.to_string() })?;
        Ok(Self { container: Arc::new(container), lifetime: DEFAULT_CLAIM_LIFETIME })
    }

    /// The container the records are in (the paged versions live there too).
    pub(crate) fn container(&self) -> &Arc<BlobContainerClient> {
        &self.container
    }

    /// The same store with another claim lifetime (tests use a short one).
    pub fn with_claim_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// Writes the record: created only if absent (`if_match: None`), or replaced only if unchanged.
    async fn write(
        &self,
        key: &ThresholdKey,
        phase: Phase,
        at: DateTime<Utc>,
        sweep: &str,
        if_match: Option<&str>,
    ) -> azure_core::Result<String> {
        let metadata = HashMap::from([
            (META_PHASE.to_owned(), phase.as_str().to_owned()),
            (META_AT.to_owned(), at.to_rfc3339_opts(SecondsFormat::Millis, true)),
            (META_SWEEP.to_owned(), metadata_safe(sweep)),
        ]);
        let mut options = BlockBlobClientUploadOptions { metadata: Some(metadata), ..Default::default() };
        match if_match {
            Some(etag) => options.if_match = Some(Etag::from(etag)),
            None => options.if_none_match = Some(Etag::from("*")),
        }
        let blob = self.container.blob_client(&key.path());
        let result = blob.block_blob_client().upload(RequestContent::from(Vec::<u8>::new()), Some(options)).await?;
        result.etag.map(|e| e.to_string()).ok_or_else(|| {
            azure_core::Error::with_message(ErrorKind::DataConversion, "the storage account answered without an ETag")
        })
    }

    /// The record as stored, with its ETag; `None` if there is none.
    async fn read(&self, key: &ThresholdKey) -> Result<Option<(Phase, DateTime<Utc>, String, String)>, StateError> {
        let blob = self.container.blob_client(&key.path());
        let response = match blob.get_properties(None).await {
            Ok(response) => response,
            Err(e) if not_found(&e) => return Ok(None),
            Err(e) => return Err(backend(key, "reading the record", &e)),
        };
        let bad = |what: &str| StateError::Backend {
            key: key.path(),
            message: format!("the record's {what} is missing or unreadable (written by something else?)"),
        };
        let etag = response.etag().ok().flatten().ok_or_else(|| bad("ETag"))?.to_string();
        let metadata = response.metadata().map_err(|_| bad("metadata"))?;
        let phase = metadata.get(META_PHASE).and_then(|p| Phase::parse(p)).ok_or_else(|| bad(META_PHASE))?;
        let at = metadata
            .get(META_AT)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .ok_or_else(|| bad(META_AT))?
            .with_timezone(&Utc);
        let sweep = metadata.get(META_SWEEP).cloned().unwrap_or_default();
        Ok(Some((phase, at, sweep, etag)))
    }

    async fn create_container(&self, key: &ThresholdKey) -> Result<(), StateError> {
        match self.container.create(None).await {
            Ok(_) => {
                tracing::info!(container = %self.container.url(), "threshold state container created");
                Ok(())
            }
            Err(e) if code(&e) == Some(StorageErrorCode::ContainerAlreadyExists) => Ok(()),
            Err(e) => Err(backend(key, "creating the container", &e)),
        }
    }

    async fn try_claim(&self, key: &ThresholdKey, sweep_id: &str, now: DateTime<Utc>) -> Result<Claim, StateError> {
        for _ in 0..MAX_CLAIM_ROUNDS {
            match self.write(key, Phase::Claimed, now, sweep_id, None).await {
                Ok(etag) => return Ok(Claim::Claimed(ClaimToken { key: key.clone(), taken_over: false, etag })),
                Err(e) if code(&e) == Some(StorageErrorCode::ContainerNotFound) => {
                    self.create_container(key).await?;
                    continue;
                }
                Err(e) if exists(&e) => {}
                Err(e) => return Err(backend(key, "creating the claim", &e)),
            }
            // Someone holds or held it: read what they wrote.
            let Some((phase, at, sweep, etag)) = self.read(key).await? else { continue };
            if let Some(answer) = judge(phase, at, sweep, now, self.lifetime) {
                return Ok(answer);
            }
            match self.write(key, Phase::Claimed, now, sweep_id, Some(&etag)).await {
                Ok(etag) => {
                    tracing::warn!(key = %key.path(), "threshold claim taken over from a sweep that did not finish");
                    return Ok(Claim::Claimed(ClaimToken { key: key.clone(), taken_over: true, etag }));
                }
                // Another sweep took it over (412) or released it (404) first: look again.
                Err(e) if changed(&e) => continue,
                Err(e) => return Err(backend(key, "taking over a stale claim", &e)),
            }
        }
        Err(StateError::Backend {
            key: key.path(),
            message: format!("the record kept changing under {MAX_CLAIM_ROUNDS} claim attempts"),
        })
    }
}

impl ThresholdStore for BlobThresholdStore {
    fn claim<'a>(
        &'a self,
        key: &'a ThresholdKey,
        sweep_id: &'a str,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Claim, StateError>> {
        Box::pin(self.try_claim(key, sweep_id, now))
    }

    fn complete<'a>(&'a self, token: &'a ClaimToken, now: DateTime<Utc>) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(async move {
            let sweep = match self.read(&token.key).await? {
                Some((_, _, sweep, etag)) if etag == token.etag => sweep,
                _ => return Err(StateError::ClaimLost { key: token.key.path() }),
            };
            match self.write(&token.key, Phase::Fired, now, &sweep, Some(&token.etag)).await {
                Ok(_) => Ok(()),
                Err(e) if changed(&e) => Err(StateError::ClaimLost { key: token.key.path() }),
                Err(e) => Err(backend(&token.key, "marking it fired", &e)),
            }
        })
    }

    fn release<'a>(&'a self, token: &'a ClaimToken) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(async move {
            let blob = self.container.blob_client(&token.key.path());
            let options =
                BlobClientDeleteOptions { if_match: Some(Etag::from(token.etag.as_str())), ..Default::default() };
            match blob.delete(Some(options)).await {
                Ok(_) => Ok(()),
                // Taken over or already gone: not ours to remove.
                Err(e) if changed(&e) => Ok(()),
                Err(e) => Err(backend(&token.key, "releasing the claim", &e)),
            }
        })
    }
}

/// Metadata values are HTTP header values: printable ASCII only.
fn metadata_safe(text: &str) -> String {
    text.chars().filter(|c| c.is_ascii_graphic()).take(200).collect()
}

/// A create-if-absent that found the blob there.
fn exists(error: &azure_core::Error) -> bool {
    matches!(code(error), Some(StorageErrorCode::BlobAlreadyExists | StorageErrorCode::ConditionNotMet))
}

/// A conditional write or delete that found the record changed or gone.
fn changed(error: &azure_core::Error) -> bool {
    matches!(status(error), Some(StatusCode::PreconditionFailed | StatusCode::NotFound))
        || matches!(code(error), Some(StorageErrorCode::ConditionNotMet | StorageErrorCode::BlobNotFound))
}

/// A HEAD has no body, so a missing blob comes back as a bare 404 without an error code.
fn not_found(error: &azure_core::Error) -> bool {
    status(error) == Some(StatusCode::NotFound)
}

fn backend(key: &ThresholdKey, operation: &str, error: &azure_core::Error) -> StateError {
    StateError::Backend { key: key.path(), message: describe(operation, error) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http_error(status: StatusCode, code: Option<&str>) -> azure_core::Error {
        azure_core::Error::with_message(
            ErrorKind::HttpResponse { status, error_code: code.map(Into::into), raw_response: None },
            "test",
        )
    }

    #[test]
    fn service_answers_are_told_apart_by_status_and_code() {
        assert!(exists(&http_error(StatusCode::Conflict, Some("BlobAlreadyExists"))));
        assert!(!exists(&http_error(StatusCode::Forbidden, Some("AuthorizationFailure"))));
        assert!(changed(&http_error(StatusCode::PreconditionFailed, Some("ConditionNotMet"))));
        assert!(changed(&http_error(StatusCode::NotFound, None)));
        assert!(not_found(&http_error(StatusCode::NotFound, None)));
        assert!(!changed(&http_error(StatusCode::InternalServerError, None)));
    }

    #[test]
    fn errors_name_the_record_and_the_storage_answer() {
        use crate::object::ObjectVersion;
        use keyturn_events::ObjectKind;
        let key = ThresholdKey::new(ObjectVersion::new("kv1", ObjectKind::Key, "k", "v1"), 7);
        let error =
            backend(&key, "creating the claim", &http_error(StatusCode::Forbidden, Some("AuthenticationFailed")));
        assert_eq!(
            error.to_string(),
            "threshold state for kv1/key/k/v1/7d: creating the claim: the storage account answered 403 AuthenticationFailed"
        );
        assert_eq!(metadata_safe("sweep 1\r\nx"), "sweep1x");
    }
}
