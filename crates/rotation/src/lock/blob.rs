//! The rotation lock in Azure: a lease on one blob per object, in a container of the function app's storage
//! account, taken with the handler's own identity (a token for `https://storage.azure.com`).
//!
//! Why a blob lease: every instance of every handler sees the same storage account, a lease is exclusive
//! (Azure answers 409 `LeaseAlreadyPresent` to a second taker) and it always ends: a lease of 15-60 s that
//! its holder stops renewing expires by itself, so a crashed or frozen instance blocks the object's
//! rotation for one lease at most. A live holder renews it for as long as the rotation runs.
//!
//! The lock blob (`<container>/<vault>/<kind>/<name>`, empty) is created on first use; two instances
//! creating it at once is harmless (`If-None-Match: *`, the loser's 409 is ignored). The container is
//! created too if missing, though the deployment normally creates it.

use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use azure_core::error::ErrorKind;
use azure_core::http::{ClientOptions, RequestContent, StatusCode, Url};
use azure_storage_blob::models::{BlobClientAcquireLeaseOptions, BlockBlobClientUploadOptions, StorageErrorCode};
use azure_storage_blob::{BlobClient, BlobContainerClient, BlobContainerClientOptions};
use futures::future::BoxFuture;

use super::{InProcessLock, LockError, LockGuard, RotationLock};

/// How long a blob lease lasts: Azure accepts 15 to 60 seconds (or infinite, which a lock must never be).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseDuration(u8);

impl LeaseDuration {
    pub const MIN: Self = Self(15);
    pub const MAX: Self = Self(60);
    /// Short enough that a crashed holder delays a redelivery little (Event Grid's first retries come after
    /// 10 s and 30 s), long enough that one missed renewal is not fatal.
    pub const DEFAULT: Self = Self(30);

    /// A lease of `seconds`, if Azure accepts it.
    pub fn from_secs(seconds: u64) -> Result<Self, LockSetupError> {
        match u8::try_from(seconds) {
            Ok(s) if (Self::MIN.0..=Self::MAX.0).contains(&s) => Ok(Self(s)),
            _ => Err(LockSetupError::LeaseOutOfRange { seconds }),
        }
    }

    pub fn as_duration(self) -> Duration {
        Duration::from_secs(u64::from(self.0))
    }

    /// How often a holder renews: three times a lease, so one failed renewal still leaves another try
    /// before the lease runs out.
    fn renew_every(self) -> Duration {
        self.as_duration() / 3
    }
}

/// Why the lock could not be built (at start, not per event).
#[derive(Debug, thiserror::Error)]
pub enum LockSetupError {
    #[error("rotation lock lease of {seconds} s: a blob lease lasts 15 to 60 seconds")]
    LeaseOutOfRange { seconds: u64 },
    #[error("rotation lock: the account URL '{url}' cannot hold a container path")]
    AccountUrl { url: String },
    #[error("rotation lock: building the blob client for '{url}' failed: {message}")]
    Client { url: String, message: String },
}

/// Builds the rotation lock the settings name: a blob lease (`KEYTURN_LOCK_ACCOUNT_URL` +
/// `KEYTURN_LOCK_CONTAINER`) with the default lease, or a lock inside this process.
///
/// `credential` and `options` are the ones the vault clients use, so one identity and one bounded-retry
/// transport serve every call to Azure:
/// ```ignore
/// let options = keyturn_vault::http::client_options(&settings.retry, settings.ca_file.as_deref())?;
/// let credential = keyturn_vault::credential::build_credential(&settings.credential, options.clone())?;
/// let vault = keyturn_vault::AzureKeyVault::new(&settings.vaults, credential.clone(), options.clone())?;
/// let lock = keyturn_rotation::lock_from_settings(&settings.lock, credential, options)?;
/// ```
pub fn lock_from_settings(
    settings: &keyturn_config::LockSettings,
    credential: Arc<dyn TokenCredential>,
    options: ClientOptions,
) -> Result<Arc<dyn RotationLock>, LockSetupError> {
    match settings {
        keyturn_config::LockSettings::InProcess => {
            tracing::info!("rotation lock: in-process (single-process runs only)");
            Ok(Arc::new(InProcessLock::new(LeaseDuration::DEFAULT.as_duration())))
        }
        keyturn_config::LockSettings::BlobLease { account_url, container } => {
            let lock = BlobLeaseLock::new(account_url, container, credential, options, LeaseDuration::DEFAULT)?;
            tracing::info!(
                container = %lock.container.url(),
                lease_secs = LeaseDuration::DEFAULT.0,
                "rotation lock: blob leases"
            );
            Ok(Arc::new(lock))
        }
    }
}

/// Locks as leases on blobs in one container.
pub struct BlobLeaseLock {
    container: BlobContainerClient,
    lease: LeaseDuration,
}

impl std::fmt::Debug for BlobLeaseLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobLeaseLock")
            .field("container", &self.container.url().as_str())
            .field("lease", &self.lease)
            .finish()
    }
}

/// The client of the lock container `container` of the storage account whose blob endpoint is `account_url`: the
/// locks live there, and so do other records that must be shared by every instance of a handler (the
/// `new-version` handler's refreshed consumers).
pub fn lock_container(
    account_url: &Url,
    container: &str,
    credential: Arc<dyn TokenCredential>,
    options: ClientOptions,
) -> Result<BlobContainerClient, LockSetupError> {
    let mut url = account_url.clone();
    url.path_segments_mut()
        .map_err(|()| LockSetupError::AccountUrl { url: account_url.to_string() })?
        .pop_if_empty()
        .push(container);
    let client_options = BlobContainerClientOptions { client_options: options, ..Default::default() };
    BlobContainerClient::new(url.clone(), Some(credential), Some(client_options))
        .map_err(|e| LockSetupError::Client { url: url.to_string(), message: e.to_string() })
}

impl BlobLeaseLock {
    /// Locks in `container` of the storage account whose blob endpoint is `account_url` (for example
    /// `https://<account>.blob.core.windows.net/`, or Azurite's `https://127.0.0.1:<port>/devstoreaccount1`).
    pub fn new(
        account_url: &Url,
        container: &str,
        credential: Arc<dyn TokenCredential>,
        options: ClientOptions,
        lease: LeaseDuration,
    ) -> Result<Self, LockSetupError> {
        Ok(Self { container: lock_container(account_url, container, credential, options)?, lease })
    }

    /// The lease each lock is taken with.
    pub fn lease(&self) -> LeaseDuration {
        self.lease
    }

    async fn try_acquire(&self, blob: &BlobClient, key: &str) -> Result<Option<String>, LockError> {
        let lease_id = azure_core::Uuid::new_v4().to_string();
        let options = BlobClientAcquireLeaseOptions { proposed_lease_id: Some(lease_id.clone()), ..Default::default() };
        match blob.acquire_lease(i32::from(self.lease.0), Some(options)).await {
            Ok(_) => Ok(Some(lease_id)),
            Err(e) => match storage_code(&e) {
                Some((_, StorageErrorCode::LeaseAlreadyPresent)) => Err(LockError::Held { key: key.to_owned() }),
                Some((_, StorageErrorCode::BlobNotFound | StorageErrorCode::ContainerNotFound)) => Ok(None),
                _ => Err(backend(key, "taking the lease", &e)),
            },
        }
    }

    /// Creates the (empty) lock blob, and its container if that is missing. Someone else creating either
    /// first is success: all that matters is that the blob exists.
    async fn create_blob(&self, blob: &BlobClient, key: &str) -> Result<(), LockError> {
        let create = || async {
            let options = BlockBlobClientUploadOptions { if_none_match: Some("*".into()), ..Default::default() };
            blob.block_blob_client().upload(RequestContent::from(Vec::<u8>::new()), Some(options)).await
        };
        let Err(e) = create().await else { return Ok(()) };
        match storage_code(&e) {
            Some((_, StorageErrorCode::ContainerNotFound)) => {
                if let Err(e) = self.container.create(None).await
                    && !matches!(storage_code(&e), Some((_, StorageErrorCode::ContainerAlreadyExists)))
                {
                    return Err(backend(key, "creating the lock container", &e));
                }
                tracing::info!(container = %self.container.url(), "rotation lock container created");
                match create().await {
                    Ok(_) => Ok(()),
                    Err(e) if blob_exists(&e) => Ok(()),
                    Err(e) => Err(backend(key, "creating the lock blob", &e)),
                }
            }
            _ if blob_exists(&e) => Ok(()),
            _ => Err(backend(key, "creating the lock blob", &e)),
        }
    }
}

/// The status and storage error code of a service answer, if the error is one.
fn storage_code(error: &azure_core::Error) -> Option<(StatusCode, StorageErrorCode)> {
    match error.kind() {
        ErrorKind::HttpResponse { status, error_code: Some(code), .. } => {
            // Parsing an error code cannot fail: unknown codes become `UnknownValue`.
            code.parse().ok().map(|code| (*status, code))
        }
        _ => None,
    }
}

/// Whether a conditional create failed because the blob is already there. A blob another holder has
/// leased may be refused for the missing lease id before the condition is even looked at.
fn blob_exists(error: &azure_core::Error) -> bool {
    matches!(
        storage_code(error),
        Some((
            _,
            StorageErrorCode::BlobAlreadyExists | StorageErrorCode::ConditionNotMet | StorageErrorCode::LeaseIdMissing
        ))
    )
}

fn backend(key: &str, operation: &str, error: &azure_core::Error) -> LockError {
    LockError::Backend { key: key.to_owned(), message: crate::blob_errors::describe(operation, error) }
}

impl RotationLock for BlobLeaseLock {
    fn acquire<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Box<dyn LockGuard>, LockError>> {
        Box::pin(async move {
            // Shared with the renewal task (the SDK's clients are not Clone).
            let blob = Arc::new(self.container.blob_client(key));
            let lease_id = match self.try_acquire(&blob, key).await? {
                Some(id) => id,
                None => {
                    self.create_blob(&blob, key).await?;
                    self.try_acquire(&blob, key).await?.ok_or_else(|| LockError::Backend {
                        key: key.to_owned(),
                        message: "the lock blob disappeared right after it was created".into(),
                    })?
                }
            };
            tracing::debug!(key, lease_secs = self.lease.0, "rotation lock taken");
            let renewal = tokio::spawn(renew(blob.clone(), lease_id.clone(), key.to_owned(), self.lease));
            let guard: Box<dyn LockGuard> =
                Box::new(BlobLeaseGuard { held: Some(Held { blob, lease_id, key: key.to_owned(), renewal }) });
            Ok(guard)
        })
    }
}

/// Keeps the lease alive while the guard lives: a rotation may outlast one lease (a slow provider).
async fn renew(blob: Arc<BlobClient>, lease_id: String, key: String, lease: LeaseDuration) {
    loop {
        tokio::time::sleep(lease.renew_every()).await;
        match blob.renew_lease(lease_id.clone(), None).await {
            Ok(_) => tracing::debug!(%key, "rotation lock renewed"),
            Err(e) => match storage_code(&e) {
                // The lease expired and someone else took it, or it was broken: nothing left to renew.
                Some((StatusCode::Conflict, code)) => {
                    tracing::error!(
                        %key, code = code.as_ref(),
                        "rotation lock lost while rotating: another delivery may rotate this object concurrently"
                    );
                    return;
                }
                // Transient (after the transport's own retries): the next tick tries again within the lease.
                _ => tracing::warn!(%key, error = %e, "renewing the rotation lock failed; retrying"),
            },
        }
    }
}

/// A lease held, until released or dropped.
struct BlobLeaseGuard {
    held: Option<Held>,
}

struct Held {
    blob: Arc<BlobClient>,
    lease_id: String,
    key: String,
    renewal: tokio::task::JoinHandle<()>,
}

impl Held {
    async fn release(self) -> Result<(), LockError> {
        self.renewal.abort();
        match self.blob.release_lease(self.lease_id, None).await {
            Ok(_) => {
                tracing::debug!(key = %self.key, "rotation lock released");
                Ok(())
            }
            Err(e) => Err(backend(&self.key, "releasing the lease", &e)),
        }
    }
}

impl std::fmt::Debug for BlobLeaseGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The lease id is a bearer secret of sorts (it lets its holder release the lock): never printed.
        f.debug_struct("BlobLeaseGuard").field("key", &self.held.as_ref().map(|h| h.key.as_str())).finish()
    }
}

impl LockGuard for BlobLeaseGuard {
    fn confirm(&self) -> BoxFuture<'_, Result<(), LockError>> {
        Box::pin(async move {
            let Some(held) = &self.held else {
                return Err(LockError::Lost { key: "(released)".into() });
            };
            match held.blob.renew_lease(held.lease_id.clone(), None).await {
                Ok(_) => Ok(()),
                // Broken, or expired and taken by another holder (409 LeaseIsBrokenAndCannotBeRenewed,
                // LeaseIdMismatchWithLeaseOperation; 412 LeaseLost).
                Err(e)
                    if matches!(storage_code(&e), Some((StatusCode::Conflict | StatusCode::PreconditionFailed, _))) =>
                {
                    tracing::error!(key = %held.key, "rotation lock lost before the promotion; promoting nothing");
                    Err(LockError::Lost { key: held.key.clone() })
                }
                // Not proved held is not held: promote nothing, let the redelivery try again.
                Err(e) => Err(backend(&held.key, "confirming the lease before the promotion", &e)),
            }
        })
    }

    fn release(mut self: Box<Self>) -> BoxFuture<'static, Result<(), LockError>> {
        let held = self.held.take();
        Box::pin(async move {
            match held {
                Some(held) => held.release().await,
                None => Ok(()),
            }
        })
    }
}

impl Drop for BlobLeaseGuard {
    fn drop(&mut self) {
        let Some(held) = self.held.take() else { return };
        // Dropped without release (an early return, a panic): stop renewing at once, so the lease ends within
        // one lease at worst, and release it now if a runtime is there to send the request.
        held.renewal.abort();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = held.release().await {
                    tracing::warn!(%error, "releasing a dropped rotation lock failed; it will expire");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http_error(status: StatusCode, code: &str) -> azure_core::Error {
        azure_core::Error::with_message(
            ErrorKind::HttpResponse { status, error_code: Some(code.into()), raw_response: None },
            "test",
        )
    }

    #[test]
    fn a_lease_lasts_15_to_60_seconds_and_renews_three_times_per_lease() {
        assert!(LeaseDuration::from_secs(14).is_err());
        assert!(LeaseDuration::from_secs(61).is_err());
        assert!(LeaseDuration::from_secs(u64::MAX).is_err());
        assert_eq!(LeaseDuration::from_secs(15).unwrap(), LeaseDuration::MIN);
        assert_eq!(LeaseDuration::from_secs(60).unwrap().renew_every(), Duration::from_secs(20));
        let error = LeaseDuration::from_secs(0).unwrap_err();
        assert_eq!(error.to_string(), "rotation lock lease of 0 s: a blob lease lasts 15 to 60 seconds");
    }

    #[test]
    fn the_container_sits_under_the_account_path_with_or_without_a_trailing_slash() {
        let credential: Arc<dyn TokenCredential> = Arc::new(NoToken);
        for account in ["https://acct.blob.core.windows.net/", "https://acct.blob.core.windows.net"] {
            let url = Url::parse(account).unwrap();
            let lock =
                BlobLeaseLock::new(&url, "locks", credential.clone(), ClientOptions::default(), LeaseDuration::DEFAULT)
                    .unwrap();
            assert_eq!(lock.container.url().as_str(), "https://acct.blob.core.windows.net/locks");
        }
        let azurite = Url::parse("https://127.0.0.1:10000/devstoreaccount1").unwrap();
        let lock =
            BlobLeaseLock::new(&azurite, "locks", credential.clone(), ClientOptions::default(), LeaseDuration::MIN)
                .unwrap();
        assert_eq!(lock.container.url().as_str(), "https://127.0.0.1:10000/devstoreaccount1/locks");
        // A bearer token never goes over plain http: the SDK refuses to build the client.
        let plain = Url::parse("http://127.0.0.1:10000/devstoreaccount1").unwrap();
        let error =
            BlobLeaseLock::new(&plain, "locks", credential, ClientOptions::default(), LeaseDuration::MIN).unwrap_err();
        assert!(error.to_string().contains("must use https"), "{error}");
    }

    #[test]
    fn service_answers_are_classified_by_their_storage_error_code() {
        let held = http_error(StatusCode::Conflict, "LeaseAlreadyPresent");
        assert_eq!(storage_code(&held), Some((StatusCode::Conflict, StorageErrorCode::LeaseAlreadyPresent)));
        assert!(blob_exists(&http_error(StatusCode::Conflict, "BlobAlreadyExists")));
        assert!(blob_exists(&http_error(StatusCode::PreconditionFailed, "LeaseIdMissing")));
        assert!(!blob_exists(&http_error(StatusCode::Forbidden, "AuthorizationFailure")));
        let error =
            backend("kv/secret/a", "taking the lease", &http_error(StatusCode::Forbidden, "AuthenticationFailed"));
        assert_eq!(
            error.to_string(),
            "rotation lock for 'kv/secret/a': taking the lease: the storage account answered 403 AuthenticationFailed"
        );
        assert!(error.is_retryable());
    }

    /// A credential for building clients in tests that never send a request.
    #[derive(Debug)]
    struct NoToken;

    impl TokenCredential for NoToken {
        fn get_token<'a, 'b, 'c, 'd, 'async_trait>(
            &'a self,
            _scopes: &'b [&'c str],
            _options: Option<azure_core::credentials::TokenRequestOptions<'d>>,
        ) -> std::pin::Pin<
            Box<dyn Future<Output = azure_core::Result<azure_core::credentials::AccessToken>> + Send + 'async_trait>,
        >
        where
            'a: 'async_trait,
            'b: 'async_trait,
            'c: 'async_trait,
            'd: 'async_trait,
            Self: 'async_trait,
        {
            Box::pin(async { Err(azure_core::Error::with_message(ErrorKind::Credential, "no token in unit tests")) })
        }
    }
}
