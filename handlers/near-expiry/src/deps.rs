//! [`Deps`]: what the handler builds once per process and shares with every invocation.
//!
//! Building touches no network: the vault clients are made for the allow-listed vaults only, the
//! credential fetches its first token on the first request. So a handler is ready as soon as the host
//! adapter listens, and a configuration error costs nothing but a clear message on every invocation.

use std::sync::Arc;

use config::{ConfigErrors, Settings};
use rotation::{Engine, LockSetupError, Providers};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use vault::{AzureKeyVault, VaultError};

/// Why the handler cannot work. Every invocation fails with this message (retryably: the events wait in
/// Event Grid until the setting is fixed).
#[derive(Debug, thiserror::Error)]
pub enum DepsError {
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    #[error("{0}")]
    Vault(#[from] VaultError),
    #[error("{0}")]
    Lock(#[from] LockSetupError),
}

/// How many rotations run at once in one process; further invocations wait their turn.
///
/// Event Grid delivers a burst (every secret of a vault created together nears expiry together) all at once,
/// and each concurrent vault call opens its own HTTPS connection: a thousand invocations meant a thousand TLS
/// handshakes and more CPU per rotation than the rotation itself. A few dozen calls in flight keep the
/// connections reused and still exceed what one vault accepts (4,000 operations per 10 s); waiting here
/// costs milliseconds against Event Grid's 30-second delivery timeout.
pub const MAX_CONCURRENT_ROTATIONS: usize = 64;

/// The rotation engine with its vault clients, lock and providers.
#[derive(Debug, Clone)]
pub struct Deps {
    engine: Engine,
    permits: Arc<Semaphore>,
}

impl Deps {
    /// Reads the settings from the process environment (docs/configuration.md) and builds everything.
    pub fn from_env() -> Result<Self, DepsError> {
        Self::from_settings(&Settings::from_env()?)
    }

    /// Builds the credential and the bounded-retry transport once, and with them the vault clients of the
    /// allow-listed vaults and the rotation lock `settings.lock` names (a blob lease in Azure, in-process when
    /// no lock account is configured); then the engine with the standard providers.
    pub fn from_settings(settings: &Settings) -> Result<Self, DepsError> {
        let options = vault::http::client_options(&settings.retry, settings.ca_file.as_deref())?;
        let credential = vault::credential::build_credential(&settings.credential, options.clone())?;
        let vault = Arc::new(AzureKeyVault::new(&settings.vaults, credential.clone(), options.clone())?);
        let lock = rotation::lock_from_settings(&settings.lock, credential, options)?;
        Ok(Self::new(Engine::new(vault, lock, Providers::standard())))
    }

    /// Wraps an engine built elsewhere (tests, an embedding binary).
    pub fn new(engine: Engine) -> Self {
        Self { engine, permits: Arc::new(Semaphore::new(MAX_CONCURRENT_ROTATIONS)) }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Waits for a turn to rotate (see [`MAX_CONCURRENT_ROTATIONS`]); the turn ends when the permit drops.
    pub async fn turn(&self) -> Option<OwnedSemaphorePermit> {
        // The semaphore is never closed, so acquiring fails only in theory; then the rotation runs unbounded.
        self.permits.clone().acquire_owned().await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigErrors> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::from_lookup(move |name| map.get(name).cloned())
    }

    const MINIMAL: [(&str, &str); 3] = [
        ("KEYTURN_VAULTS", "kv-one=https://127.0.0.1:8443"),
        ("KEYTURN_CREDENTIAL", "managed-identity"),
        ("IDENTITY_ENDPOINT", "http://127.0.0.1:9/msi/token"),
    ];

    #[test]
    fn a_minimal_local_configuration_builds_with_the_in_process_lock() {
        let deps = Deps::from_settings(&settings(&MINIMAL).unwrap()).unwrap();
        let debug = format!("{:?}", deps.engine());
        assert!(debug.contains("InProcessLock"), "{debug}");
        assert!(debug.contains("kv-one"), "{debug}");
    }

    #[tokio::test]
    async fn rotations_beyond_the_limit_wait_for_a_turn() {
        let deps = Deps::from_settings(&settings(&MINIMAL).unwrap()).unwrap();
        let mut turns = Vec::new();
        for _ in 0..MAX_CONCURRENT_ROTATIONS {
            turns.push(deps.turn().await.unwrap());
        }
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), deps.turn()).await;
        assert!(waiting.is_err(), "a turn beyond the limit was granted at once");
        turns.pop();
        assert!(tokio::time::timeout(std::time::Duration::from_secs(1), deps.turn()).await.unwrap().is_some());
    }

    #[test]
    fn a_configured_lock_account_means_blob_leases() {
        let mut pairs = MINIMAL.to_vec();
        pairs.push(("KEYTURN_LOCK_ACCOUNT_URL", "https://locks.blob.core.windows.net/"));
        pairs.push(("KEYTURN_LOCK_CONTAINER", "keyturn-locks"));
        let deps = Deps::from_settings(&settings(&pairs).unwrap()).unwrap();
        let debug = format!("{:?}", deps.engine());
        assert!(debug.contains("BlobLeaseLock"), "{debug}");
        assert!(debug.contains("keyturn-locks"), "{debug}");
    }

    #[test]
    fn a_missing_setting_is_reported_by_name() {
        let error = settings(&[("KEYTURN_CREDENTIAL", "managed-identity")]).map(|_| ()).unwrap_err();
        let error = DepsError::from(error);
        assert!(error.to_string().contains("KEYTURN_VAULTS"), "{error}");
    }
}
