//! [`Deps`]: everything a handler builds once per process and shares with every invocation.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::{Mutex, PoisonError};

use azure_core::credentials::TokenCredential;
use keyturn_config::{ConfigError, ConfigErrors, Settings, VaultList};
use keyturn_events::{Event, KeyVaultEventType, Lifecycle, ObjectKind, ObjectRef, VaultObject};
use keyturn_host::Outcome;
use keyturn_host::adapter::Adapter;
use keyturn_notify::{BuildError, Notifier, NotifierOptions, Notify};
use keyturn_rotation::provider::ProviderError;
use keyturn_rotation::{Engine, LockSetupError, Providers, RotationLock};
use keyturn_vault::{AzureKeyVault, Inventory, KeyVault, OperationClass, VaultError, VaultPacing, Versions};

use crate::accept::{self, Accepted};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use keyturn_config::notify::NameFilter;

/// How many invocations do vault work at once in one process; further ones wait their turn.
///
/// Event Grid delivers a burst (every secret created together expires together) all at once, and each
/// concurrent vault call opens its own HTTPS connection; a few dozen in flight keep connections reused and
/// still exceed what one vault accepts, while waiting costs milliseconds against Event Grid's 30-second
/// delivery timeout. Measured with the near-expiry bench (tests/e2e/benches/near_expiry.rs): bounding a burst
/// to 64 rotations at once took the chain from 933 to 2,799 rotations/s and halved CPU per rotation.
pub const MAX_CONCURRENT_INVOCATIONS: usize = 64;

/// Starts, on the current runtime (if any), what a first event will need and can be had before it asks, all at
/// once: the vault token ([`AzureKeyVault::warm_up`]) and, on blocking threads, the two one-time costs of the
/// first TLS handshake: the crypto provider's random generator seeded (AWS-LC's CPU-jitter entropy, 30-45 ms of
/// CPU measured) and the trust roots read and parsed. Nothing is sent to a vault.
fn warm_up_in_background(vaults: Arc<AzureKeyVault>, roots: keyturn_tls::TrustRoots) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    let random = roots.clone();
    runtime.spawn_blocking(move || random.seed_random());
    runtime.spawn_blocking(move || roots.preload());
    runtime.spawn(async move { vaults.warm_up().await });
}

type WaitingCounts = Mutex<HashMap<(String, OperationClass), usize>>;

/// One invocation's place among those waiting for a permit to create in one vault, left when dropped.
struct Waiting<'a> {
    counts: &'a WaitingCounts,
    key: (String, OperationClass),
    /// How many were already waiting when it joined.
    ahead: usize,
}

impl<'a> Waiting<'a> {
    fn join(counts: &'a WaitingCounts, key: (String, OperationClass)) -> Self {
        let mut map = counts.lock().unwrap_or_else(PoisonError::into_inner);
        let count = map.entry(key.clone()).or_default();
        let ahead = *count;
        *count += 1;
        Self { counts, key, ahead }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut map = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = map.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                map.remove(&self.key);
            }
        }
    }
}

/// Why the handler cannot work. Every invocation fails with this message (retryably: the events wait in
/// Event Grid until the setting is fixed and the process restarted).
#[derive(Debug, thiserror::Error)]
pub enum DepsError {
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    #[error("{0}")]
    Vault(#[from] VaultError),
    #[error("KEYTURN_NOTIFY: {0}")]
    Notify(#[from] BuildError),
    #[error("{0}")]
    Lock(#[from] LockSetupError),
    #[error("rotation providers: {0}")]
    Providers(#[from] ProviderError),
    #[error("KEYTURN_CA_FILE '{path}' cannot be read: {message}")]
    CaFile { path: String, message: String },
    #[error("{0}")]
    Tls(#[from] keyturn_tls::TlsError),
}

/// Vault clients, credential, notifier, lock and engine, built once.
///
/// Two vault client sets share one credential: `vaults` holds the allow-listed vaults whose events keyturn
/// acts on (`KEYTURN_VAULTS`); `mirrors` holds those plus the mirror-only vaults (`KEYTURN_MIRROR_VAULTS`),
/// the only vaults a replica may be written to. A mirror-only vault's own events are thus refused.
///
/// Every dependency is a trait object (axum's dependency-injection shape): [`Deps::from_settings`] builds the
/// real ones, [`Deps::from_parts`] takes any (the in-memory fakes of the `testing` feature in unit tests).
#[derive(Clone)]
pub struct Deps {
    settings: Settings,
    vaults: Arc<dyn KeyVault>,
    versions: Arc<dyn Versions>,
    inventory: Arc<dyn Inventory>,
    mirrors: Arc<dyn KeyVault>,
    credential: Arc<dyn TokenCredential>,
    notifier: Arc<dyn Notify>,
    lock: Arc<dyn RotationLock>,
    engine: Engine,
    permits: Arc<Semaphore>,
    /// Invocations waiting for a permit to create a version, per vault and class of create: what is ahead of
    /// the next one ([`Deps::turn_to_create`]).
    waiting: Arc<Mutex<HashMap<(String, OperationClass), usize>>>,
    /// The process's Key Vault schedules (the vault clients take their turns from it); off in [`Deps::from_parts`].
    pacing: VaultPacing,
}

/// Everything [`Deps`] holds, to build one from any implementations.
pub struct Parts {
    /// The settings; `settings.vaults` is the allow-list [`Deps::accept`] decides with.
    pub settings: Settings,
    /// The allow-listed vaults, for the engine's operations.
    pub vaults: Arc<dyn KeyVault>,
    /// The allow-listed vaults, for operations on one named version.
    pub versions: Arc<dyn Versions>,
    /// The allow-listed vaults, for listing.
    pub inventory: Arc<dyn Inventory>,
    /// The vaults a replica may be written to.
    pub mirrors: Arc<dyn KeyVault>,
    pub credential: Arc<dyn TokenCredential>,
    pub notifier: Arc<dyn Notify>,
    pub lock: Arc<dyn RotationLock>,
    pub engine: Engine,
}

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parts").field("vaults", &self.vaults).field("engine", &self.engine).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Deps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deps")
            .field("vaults", &self.vaults)
            .field("mirrors", &self.mirrors)
            .field("notifier", &self.notifier)
            .field("lock", &self.lock)
            .field("new_version_names", &self.settings.notify.new_version_names)
            .finish_non_exhaustive()
    }
}

impl Deps {
    /// Reads the settings from the process environment (docs/configuration.md, docs/handlers.md) and
    /// builds everything.
    pub fn from_env() -> Result<Self, DepsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`Deps::from_env`] through any lookup (tests never touch the process environment).
    ///
    /// On AWS Lambda (the adapter the same environment selects), where instances run side by side, a
    /// deployment with a provider beyond `generated` and no cross-instance lock is a configuration error
    /// ([`Settings::require_cross_instance_lock`]): like every configuration error, every invocation then
    /// fails with it, and nothing is rotated, until it is fixed.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, DepsError> {
        let settings = Settings::from_lookup(&lookup)?;
        let platform = Adapter::from_env(|name| lookup(name).map(std::ffi::OsString::from));
        if let Ok(Adapter::AwsLambda { .. }) = platform {
            settings.require_cross_instance_lock("AWS Lambda")?;
        }
        let warm_up = matches!(platform, Ok(Adapter::AwsLambda { .. }));
        Self::build(settings, warm_up)
    }

    /// Builds the clients, notifier, lock and engine for `settings`.
    pub fn from_settings(settings: Settings) -> Result<Self, DepsError> {
        Self::build(settings, false)
    }

    /// [`Deps::from_settings`]; with `warm_up`, the vault token and the trust roots are had in the background
    /// ([`warm_up_in_background`]), for a first event that is already waiting: on AWS Lambda, where the event is
    /// sent as soon as init ends. Not on Azure Functions, whose host sends nothing before the handler answers
    /// readiness and which may keep an idle handler for long: there it would only add to the start and to the
    /// idle memory (the parsed trust roots).
    fn build(settings: Settings, warm_up: bool) -> Result<Self, DepsError> {
        let options = keyturn_vault::http::client_options(&settings.retry, settings.ca_file.as_deref())?;
        let credential = keyturn_vault::credential::build_credential(&settings.credential, options.clone())?;
        // One schedule per vault and class of request (secret creates, key creates, other requests) for the
        // whole process, mirrors included; an invocation's wait for its turn counts from its event's arrival.
        let pacing = VaultPacing::counted_from(settings.retry.pacing_max_wait, keyturn_host::event_arrived);
        let vaults = Arc::new(
            AzureKeyVault::new(&settings.vaults, credential.clone(), options.clone())?.with_pacing(pacing.clone()),
        );
        let mirrors = Arc::new(
            AzureKeyVault::new(&mirror_list(&settings)?, credential.clone(), options.clone())?
                .with_pacing(pacing.clone()),
        );
        let lock = keyturn_rotation::lock_from_settings(&settings.lock, credential.clone(), options.clone())?;
        let notifier = Arc::new(notifier(&settings)?);
        // Every provider keyturn ships: an emergency rotation (expired) rotates what near-expiry would.
        let providers = Providers::from_settings(&settings, vaults.clone(), credential.clone(), options)?;
        let prober = keyturn_rotation::HealthProber::new(&settings.health_probes, settings.ca_file.as_deref())?;
        let engine = Engine::new(vaults.clone(), lock.clone(), providers).with_health_prober(prober);
        if warm_up {
            warm_up_in_background(vaults.clone(), keyturn_tls::TrustRoots::for_ca_file(settings.ca_file.as_deref())?);
        }
        let deps = Self::from_parts(Parts {
            settings,
            vaults: vaults.clone(),
            versions: vaults.clone(),
            inventory: vaults,
            mirrors,
            credential,
            notifier,
            lock,
            engine,
        });
        Ok(Self { pacing, ..deps })
    }

    /// Deps over any implementations (the real ones come from [`Deps::from_settings`]).
    pub fn from_parts(parts: Parts) -> Self {
        let Parts { settings, vaults, versions, inventory, mirrors, credential, notifier, lock, engine } = parts;
        let permits = Arc::new(Semaphore::new(MAX_CONCURRENT_INVOCATIONS));
        Self {
            settings,
            vaults,
            versions,
            inventory,
            mirrors,
            credential,
            notifier,
            lock,
            engine,
            permits,
            waiting: Arc::default(),
            pacing: VaultPacing::default(),
        }
    }

    /// The one parse of a delivered event: the typed, allow-listed object of an event of `lifecycle`, or
    /// the outcome (boxed: it is the rare path) that says why `function` does not act on it (another event type: skipped; a vault outside
    /// `KEYTURN_VAULTS` or no object version: rejected). Touches no network.
    pub fn accept(&self, event: &Event, lifecycle: Lifecycle, function: &str) -> Result<Accepted, Box<Outcome>> {
        let (event_type, object) = accept::served(event, lifecycle, function)?;
        accept::admit(&self.settings.vaults, event, object, event_type)
    }

    /// [`Deps::accept`] for an object a handler found in the event itself (a keyturn test event's `data`),
    /// reported as `event_type`.
    pub fn admit(
        &self,
        event: &Event,
        object: &VaultObject,
        event_type: KeyVaultEventType,
    ) -> Result<Accepted, Box<Outcome>> {
        accept::admit(&self.settings.vaults, event, object, event_type)
    }

    /// Waits for a turn to do vault work (see [`MAX_CONCURRENT_INVOCATIONS`]); it ends when the permit drops.
    pub async fn turn(&self) -> Option<OwnedSemaphorePermit> {
        // The semaphore is never closed, so acquiring fails only in theory; then the work runs unbounded.
        self.permits.clone().acquire_owned().await.ok()
    }

    /// [`Deps::turn`] for an event that will create a new version of `object` (a rotation), or the retryable
    /// refusal (nothing sent) when the vault's create schedule lies further ahead than the longest wait
    /// (`KEYTURN_PACING_MAX_WAIT_SECS`, from the event's arrival) once the invocations already waiting for a
    /// permit to create in the same vault have booked theirs. Refused on arrival, the event comes back from Event
    /// Grid 10 s later, while the schedule still has work; refused only after waiting for a permit (up to that
    /// longest wait), it would come back after the schedule had run dry.
    pub async fn turn_to_create(&self, object: &ObjectRef) -> Result<Option<OwnedSemaphorePermit>, VaultError> {
        let class = match object.kind() {
            ObjectKind::Secret => OperationClass::SecretCreate,
            // A certificate's new version creates its key.
            ObjectKind::Key | ObjectKind::Certificate => OperationClass::KeyCreate,
            ObjectKind::Vault => return Ok(self.turn().await),
        };
        let waiting = Waiting::join(&self.waiting, (object.vault().to_ascii_lowercase(), class));
        self.pacing.admit(class, "rotate", object.vault(), &object.described(), waiting.ahead)?;
        Ok(self.turn().await)
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The allow-listed vaults (`KEYTURN_VAULTS`), for the engine's operations.
    pub fn vault(&self) -> &dyn KeyVault {
        self.vaults.as_ref()
    }

    /// The allow-listed vaults, for operations on one named version.
    pub fn versions(&self) -> &dyn Versions {
        self.versions.as_ref()
    }

    /// The allow-listed vaults, for listing.
    pub fn inventory(&self) -> &dyn Inventory {
        self.inventory.as_ref()
    }

    /// The vaults a replica may be written to: `KEYTURN_VAULTS` and `KEYTURN_MIRROR_VAULTS`.
    pub fn mirror_vault(&self) -> &dyn KeyVault {
        self.mirrors.as_ref()
    }

    /// The configured credential (the `test-event` handler asks it for a token).
    pub fn credential(&self) -> &Arc<dyn TokenCredential> {
        &self.credential
    }

    pub fn notifier(&self) -> &dyn Notify {
        self.notifier.as_ref()
    }

    pub fn lock(&self) -> &dyn RotationLock {
        self.lock.as_ref()
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Which names the `new-version` handler notifies about.
    pub fn new_version_names(&self) -> &NameFilter {
        &self.settings.notify.new_version_names
    }

    /// The canary secret's name (`KEYTURN_CANARY_SECRET`), if one is configured.
    pub fn canary(&self) -> Option<&str> {
        self.settings.notify.canary_secret.as_deref()
    }
}

/// `KEYTURN_VAULTS` followed by the `KEYTURN_MIRROR_VAULTS` not already in it.
fn mirror_list(settings: &Settings) -> Result<VaultList, DepsError> {
    let entries: Vec<String> = settings
        .vaults
        .entries()
        .iter()
        .chain(settings.mirror_vaults.entries().iter().filter(|e| settings.vaults.get(e.name()).is_none()))
        .map(ToString::to_string)
        .collect();
    Ok(VaultList::parse(keyturn_config::vaults::MIRROR_VAULTS, &entries.join(","))?)
}

/// The notifier for `KEYTURN_NOTIFY` (none configured: a notifier with no channel, whose sends succeed),
/// trusting `KEYTURN_CA_FILE`'s certificates too so that local receivers can use the local CA.
fn notifier(settings: &Settings) -> Result<Notifier, DepsError> {
    let extra_roots_pem = match &settings.ca_file {
        Some(path) => Some(
            std::fs::read(path)
                .map_err(|e| DepsError::CaFile { path: path.display().to_string(), message: e.to_string() })?,
        ),
        None => None,
    };
    // The same roots (one verifier, one read of the system store) as the vault clients'.
    let trust_roots = keyturn_tls::TrustRoots::for_ca_file(settings.ca_file.as_deref())?;
    let list = settings.notify.channels.as_ref().map(|c| c.expose()).unwrap_or_default();
    Ok(Notifier::new(
        list,
        NotifierOptions { extra_roots_pem, trust_roots: Some(trust_roots), ..NotifierOptions::default() },
    )?)
}

impl From<Vec<ConfigError>> for DepsError {
    fn from(errors: Vec<ConfigError>) -> Self {
        Self::Config(ConfigErrors(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| map.get(name).cloned()
    }

    const MINIMAL: [(&str, &str); 3] = [
        ("KEYTURN_VAULTS", "kv-one=https://127.0.0.1:8443"),
        ("KEYTURN_CREDENTIAL", "managed-identity"),
        ("IDENTITY_ENDPOINT", "http://127.0.0.1:9/msi/token"),
    ];

    #[test]
    fn a_minimal_configuration_builds_with_no_channel_and_every_name() {
        let deps = Deps::from_lookup(lookup(&MINIMAL)).unwrap();
        assert!(deps.notifier().is_empty());
        assert!(deps.new_version_names().matches("anything"));
        assert!(deps.vault().check_allowed("kv-one").is_ok());
        assert!(deps.canary().is_none());
        assert!(format!("{deps:?}").contains("InProcessLock"), "{deps:?}");
    }

    /// An event whose create would wait past the longest wait, behind the invocations already waiting to create
    /// in the same vault, is refused on arrival (retryably) without waiting for a permit; another vault's is not.
    #[tokio::test]
    async fn a_create_too_far_behind_the_invocations_waiting_in_its_vault_is_refused_on_arrival() {
        let mut settings = MINIMAL.to_vec();
        settings.push(("KEYTURN_VAULTS", "kv-one=https://127.0.0.1:8443,kv-two=https://127.0.0.1:8444"));
        settings.push(("KEYTURN_PACING_MAX_WAIT_SECS", "1"));
        let deps = Arc::new(Deps::from_lookup(lookup(&settings)).unwrap());
        let version = "0123456789abcdef0123456789abcdef";
        let secret = ObjectRef::new("kv-one", ObjectKind::Secret, "db", version).unwrap();
        // Every permit taken: the invocations that follow wait for one.
        let mut held = Vec::new();
        for _ in 0..MAX_CONCURRENT_INVOCATIONS {
            held.push(deps.turn().await.unwrap());
        }
        // 297 secret creates per 10 s: with 29 waiting ahead this one's turn is at 0.98 s, with 30 at 1.01 s.
        let waiters: Vec<_> = (0..30)
            .map(|_| {
                let (deps, secret) = (deps.clone(), secret.clone());
                tokio::spawn(async move { deps.turn_to_create(&secret).await.map(|turn| turn.is_some()) })
            })
            .collect();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while deps.waiting.lock().unwrap().values().sum::<usize>() < 30 {
            assert!(tokio::time::Instant::now() < deadline, "the 30 invocations did not start waiting");
            tokio::task::yield_now().await;
        }
        let refused = deps.turn_to_create(&secret).await.unwrap_err();
        assert!(refused.is_retryable(), "{refused}");
        assert!(refused.to_string().contains("secret-create limit is booked more than 1 s ahead"), "{refused}");
        // Another vault's schedule and queue are its own.
        let other = ObjectRef::new("kv-two", ObjectKind::Secret, "db", version).unwrap();
        let other_turn = tokio::spawn({
            let deps = deps.clone();
            async move { deps.turn_to_create(&other).await.map(|turn| turn.is_some()) }
        });
        // Once permits free up, every waiter gets its turn.
        drop(held);
        for waiter in waiters {
            assert!(waiter.await.unwrap().unwrap(), "a waiter gets its turn");
        }
        assert!(other_turn.await.unwrap().unwrap(), "another vault's create is not refused");
        assert!(deps.waiting.lock().unwrap().is_empty(), "every waiter left the count");
    }

    #[tokio::test]
    async fn invocations_beyond_the_limit_wait_for_a_turn() {
        let deps = Deps::from_lookup(lookup(&MINIMAL)).unwrap();
        let mut turns = Vec::new();
        for _ in 0..MAX_CONCURRENT_INVOCATIONS {
            turns.push(deps.turn().await.unwrap());
        }
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), deps.turn()).await;
        assert!(waiting.is_err(), "a turn beyond the limit was granted at once");
        turns.pop();
        assert!(tokio::time::timeout(std::time::Duration::from_secs(1), deps.turn()).await.unwrap().is_some());
    }

    #[test]
    fn on_lambda_a_provider_beyond_generated_without_the_blob_lock_is_a_configuration_error() {
        let lambda = [
            ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"),
            ("AWS_LAMBDA_FUNCTION_NAME", "keyturn-near-expiry"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ];
        let mut pairs: Vec<(&str, &str)> = MINIMAL.iter().chain(&lambda).copied().collect();
        // The generated provider alone: the in-process lock is enough.
        Deps::from_lookup(lookup(&pairs)).unwrap();
        pairs.push(("KEYTURN_POSTGRES_SERVERS", "db.example.com"));
        let Err(DepsError::Config(errors)) = Deps::from_lookup(lookup(&pairs)) else {
            panic!("a Lambda deployment of postgres without the blob lock was accepted")
        };
        assert_eq!(errors.0[0].variable(), "KEYTURN_LOCK_ACCOUNT_URL");
        assert!(errors.to_string().contains("on AWS Lambda several instances run at once"), "{errors}");
        // The same deployment on Azure Functions, and on Lambda with the blob lock, builds.
        let azure: Vec<(&str, &str)> =
            pairs.iter().filter(|(name, _)| !name.starts_with("AWS_LAMBDA")).copied().collect();
        Deps::from_lookup(lookup(&azure)).unwrap();
        pairs.push(("KEYTURN_LOCK_ACCOUNT_URL", "https://locks.blob.core.windows.net/"));
        pairs.push(("KEYTURN_LOCK_CONTAINER", "keyturn-locks"));
        Deps::from_lookup(lookup(&pairs)).unwrap();
    }

    #[test]
    fn a_configured_lock_account_means_blob_leases_and_every_bound_provider_is_registered() {
        let mut pairs = MINIMAL.to_vec();
        pairs.push(("KEYTURN_LOCK_ACCOUNT_URL", "https://locks.blob.core.windows.net/"));
        pairs.push(("KEYTURN_LOCK_CONTAINER", "keyturn-locks"));
        // Without bindings only the generated provider exists (issue 13: no binding, no provider).
        let unbound = format!("{:?}", Deps::from_lookup(lookup(&pairs)).unwrap().engine());
        assert!(unbound.contains("\"generated\""), "{unbound}");
        for provider in ["postgres", "mysql", "azure-key", "storage-account-key", "entra-app-secret", "webhook"] {
            assert!(!unbound.contains(&format!("\"{provider}")), "{provider} registered without a binding: {unbound}");
        }
        pairs.push(("KEYTURN_POSTGRES_SERVERS", "db.example.com"));
        pairs.push(("KEYTURN_POSTGRES_ADMINS", "kv-one/pg-admin=app"));
        pairs.push(("KEYTURN_MYSQL_SERVERS", "shop.mysql.database.azure.com"));
        pairs.push(("KEYTURN_MYSQL_ADMINS", "kv-one/mysql-admin=app"));
        pairs.push((
            "KEYTURN_STORAGE_ACCOUNTS",
            "kv-one=/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/a",
        ));
        pairs.push(("KEYTURN_ENTRA_APPLICATIONS", "kv-one/app-secret=0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"));
        pairs.push(("KEYTURN_WEBHOOK_ROTATORS", "r=https://r.example/?secret=0123456789abcdef&vaults=kv-one"));
        let deps = Deps::from_lookup(lookup(&pairs)).unwrap();
        let debug = format!("{:?}", deps.engine());
        assert!(debug.contains("BlobLeaseLock"), "{debug}");
        assert!(debug.contains("keyturn-locks"), "{debug}");
        for provider in [
            "generated",
            "postgres",
            "postgres-alternating",
            "mysql",
            "mysql-alternating",
            "azure-key",
            "storage-account-key",
            "entra-app-secret",
            "webhook",
        ] {
            assert!(debug.contains(&format!("\"{provider}\"")), "{provider} missing: {debug}");
        }
    }

    #[test]
    fn the_mysql_providers_need_both_their_server_and_their_admin_bindings() {
        // Both strategies change passwords through an admin login: servers alone register neither.
        let mut pairs = MINIMAL.to_vec();
        pairs.push(("KEYTURN_MYSQL_SERVERS", "shop.mysql.database.azure.com"));
        let servers_only = format!("{:?}", Deps::from_lookup(lookup(&pairs)).unwrap().engine());
        assert!(!servers_only.contains("\"mysql"), "{servers_only}");
        pairs.push(("KEYTURN_MYSQL_ADMINS", "kv-one/mysql-admin=app"));
        let bound = format!("{:?}", Deps::from_lookup(lookup(&pairs)).unwrap().engine());
        assert!(bound.contains("\"mysql\"") && bound.contains("\"mysql-alternating\""), "{bound}");
    }

    #[test]
    fn mirror_only_vaults_accept_replicas_but_not_events() {
        let mut pairs = MINIMAL.to_vec();
        pairs.push(("KEYTURN_MIRROR_VAULTS", "kv-dr=https://127.0.0.1:9443,kv-one=https://127.0.0.1:8443"));
        let deps = Deps::from_lookup(lookup(&pairs)).unwrap();
        assert!(deps.mirror_vault().check_allowed("kv-dr").is_ok());
        assert!(deps.mirror_vault().check_allowed("kv-one").is_ok());
        assert!(matches!(deps.vault().check_allowed("kv-dr"), Err(VaultError::NotAllowed { .. })));
        assert!(matches!(deps.mirror_vault().check_allowed("kv-evil"), Err(VaultError::NotAllowed { .. })));
    }

    #[test]
    fn every_bad_setting_is_named() {
        let error = Deps::from_lookup(lookup(&[("KEYTURN_CREDENTIAL", "managed-identity")])).unwrap_err();
        assert!(error.to_string().contains("KEYTURN_VAULTS"), "{error}");
        let mut pairs = MINIMAL.to_vec();
        pairs.push(("KEYTURN_NOTIFY_NEW_VERSION_NAMES", "a/b"));
        let error = Deps::from_lookup(lookup(&pairs)).unwrap_err();
        assert!(error.to_string().contains("KEYTURN_NOTIFY_NEW_VERSION_NAMES: 'a/b' is not valid"), "{error}");
        let mut pairs = MINIMAL.to_vec();
        pairs.push(("KEYTURN_NOTIFY", "ftp://example.com/x"));
        let error = Deps::from_lookup(lookup(&pairs)).unwrap_err();
        assert!(error.to_string().starts_with("KEYTURN_NOTIFY: "), "{error}");
        let mut pairs = MINIMAL.to_vec();
        pairs.push(("KEYTURN_CA_FILE", "/nonexistent/ca.pem"));
        assert!(Deps::from_lookup(lookup(&pairs)).is_err());
    }
}
