//! The Key Vault emulator: several vaults over HTTPS, each on its own 127.0.0.1 listener (a bare-host URL, as
//! the official certificate client requires), authenticated with tokens from the local identity endpoint.
//!
//! Start one with [`KeyVaultEmulator::builder`]:
//! ```no_run
//! # async fn demo() -> Result<(), keyturn_local::keyvault::StartError> {
//! use keyturn_local::keyvault::KeyVaultEmulator;
//! let kv = KeyVaultEmulator::builder().vault("kv-one").vault("kv-two").start().await?;
//! let url = kv.vault_url("kv-one");            // https://127.0.0.1:<port>
//! let ca = kv.ca_pem_path();                   // trust this (SSL_CERT_FILE, connection_verify, ...)
//! let env = kv.identity_env();                 // IDENTITY_ENDPOINT / IDENTITY_HEADER
//! kv.shutdown().await;
//! # Ok(()) }
//! ```
//! The [`VaultStore`] behind it (`kv.store()`) is the management API (seed objects without HTTP), the change
//! feed of new versions, and the query of current versions that an Event Grid emulator needs.

pub mod backup;
pub mod certs;
pub mod crypto;
pub mod error;
pub mod http;
pub mod keys;
pub mod limits;
pub mod secrets;
pub mod server;
pub mod store;
pub mod wire;

pub use certs::CertificatePolicy;
pub use error::ServiceError;
pub use limits::{FaultRule, Faults, OperationKind, Throttling};
pub use secrets::SecretSpec;
pub use store::{CurrentObject, StoredKind, VaultChange, VaultStore};

use crate::clock::Clock;
use crate::identity::{Identities, IdentityEndpoint, IdentityEnv, IdentityError, ManagedIdentity, TokenRegistry};
use crate::rbac::{ArmAssignments, Assignments, Scope};
use crate::tls::{LocalCa, LocalCaError};
use limits::{FaultInjector, Throttler};
use server::ServerHandle;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The tenant the 401 challenge names unless configured otherwise (any GUID would do; this one is fixed so
/// logs and recordings are stable).
pub const DEFAULT_TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
/// The region vaults report in RBAC denials (`Vault: <name>;location=<region>`).
pub const DEFAULT_LOCATION: &str = "local";

/// Why the emulator did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("no vault configured: add at least one with .vault(\"name\")")]
    NoVaults,
    #[error("vault name '{0}' is not valid: use 3-24 characters of a-z, 0-9 and -, starting with a letter")]
    BadVaultName(String),
    #[error("vault '{0}' is configured twice")]
    DuplicateVault(String),
    #[error(transparent)]
    Tls(#[from] LocalCaError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("binding a listener for vault '{vault}' on 127.0.0.1 failed: {source}")]
    Bind { vault: String, source: std::io::Error },
    #[error("creating the directory {path} for the CA certificate failed: {source}")]
    CaDir { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Persist(#[from] store::PersistError),
}

/// A role name that is not one of Key Vault's data-plane built-in roles.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a Key Vault built-in role with data actions (known: {known})", known = keyturn_vault::rbac::ROLES.iter().map(|r| r.name).collect::<Vec<_>>().join(", "))]
pub struct UnknownRole(pub String);

/// Entry point: `KeyVaultEmulator::builder()`.
#[derive(Debug)]
pub struct KeyVaultEmulator;

impl KeyVaultEmulator {
    pub fn builder() -> Builder {
        Builder::default()
    }
}

/// Configures an emulator. Defaults: throttling at Key Vault's limits, no faults, no persistence, a clock at
/// real time, the CA in a fresh temporary directory, certificates issued on the first poll.
///
/// RBAC is always enforced and strict, as in Azure: every operation needs a role assignment granting its data
/// action, and no identity holds anything it was not assigned, the system-assigned one included (the local
/// stack is never kinder than Azure). Handlers run under their own identities with their infra/roles.json
/// grants ([`RunningEmulator::handler_identity`]); a test that needs broad access seeds through
/// [`RunningEmulator::store`] or assigns a role explicitly ([`RunningEmulator::assign_role`],
/// [`RunningEmulator::grant_system_identity`]).
#[derive(Debug)]
pub struct Builder {
    vaults: Vec<String>,
    throttling: Option<Throttling>,
    faults: Faults,
    persist_to: Option<PathBuf>,
    clock: Option<Clock>,
    ca_dir: Option<PathBuf>,
    tenant: String,
    user_assigned: Vec<String>,
    certificate_delay: Duration,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            vaults: Vec::new(),
            throttling: Some(Throttling::key_vault()),
            faults: Faults::none(),
            persist_to: None,
            clock: None,
            ca_dir: None,
            tenant: DEFAULT_TENANT.to_string(),
            user_assigned: Vec::new(),
            certificate_delay: Duration::ZERO,
        }
    }
}

impl Builder {
    /// Adds a vault (3-24 characters: a-z, 0-9, -).
    pub fn vault(mut self, name: impl Into<String>) -> Self {
        self.vaults.push(name.into());
        self
    }

    /// Sets the throttling limits (the default is Key Vault's published limits).
    pub fn throttling(mut self, limits: Throttling) -> Self {
        self.throttling = Some(limits);
        self
    }

    /// Turns throttling off (benchmarks, bulk seeding).
    pub fn no_throttling(mut self) -> Self {
        self.throttling = None;
        self
    }

    /// Injects faults (changeable later with [`RunningEmulator::set_faults`]).
    pub fn faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }

    /// Loads state from `path` at start (if it exists) and saves every change to it.
    pub fn persist_to(mut self, path: impl Into<PathBuf>) -> Self {
        self.persist_to = Some(path.into());
        self
    }

    /// Shares a clock (the Event Grid emulator's, or a test's).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Writes the CA certificate into `dir` (created if missing) instead of a temporary directory.
    pub fn ca_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.ca_dir = Some(dir.into());
        self
    }

    /// The tenant named in the 401 challenge.
    pub fn tenant_id(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = tenant.into();
        self
    }

    /// Lets the identity endpoint issue tokens for a user-assigned identity with this client id.
    pub fn user_assigned_identity(mut self, client_id: impl Into<String>) -> Self {
        self.user_assigned.push(client_id.into());
        self
    }

    /// How long (on the emulator's clock) certificate issuance stays in progress.
    pub fn certificate_issuance_delay(mut self, delay: Duration) -> Self {
        self.certificate_delay = delay;
        self
    }

    /// Starts the identity endpoint and one HTTPS listener per vault (persisted vaults included).
    pub async fn start(self) -> Result<RunningEmulator, StartError> {
        let mut loaded = match &self.persist_to {
            Some(path) => store::load_snapshot(path)?,
            None => BTreeMap::new(),
        };
        let mut names = Vec::new();
        for name in self.vaults.iter().chain(loaded.keys()) {
            check_vault_name(name)?;
            if !names.contains(name) {
                names.push(name.clone());
            } else if self.vaults.iter().filter(|v| *v == name).count() > 1 {
                return Err(StartError::DuplicateVault(name.clone()));
            }
        }
        if names.is_empty() {
            return Err(StartError::NoVaults);
        }

        let (ca_dir, owns_ca_dir) = match &self.ca_dir {
            Some(dir) => (dir.clone(), false),
            None => (std::env::temp_dir().join(format!("keyturn-local-{}", crate::identity::random_hex(8))), true),
        };
        std::fs::create_dir_all(&ca_dir).map_err(|source| StartError::CaDir { path: ca_dir.clone(), source })?;
        let ca = LocalCa::generate(&ca_dir, &names)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config());

        let tokens = TokenRegistry::default();
        let identity = IdentityEndpoint::start(tokens.clone(), self.user_assigned.clone()).await?;
        // Nobody holds anything implicitly: as in Azure, creating a vault under RBAC grants no data access.
        let assignments = Assignments::default();

        let mut listeners = Vec::new();
        let mut initial = Vec::new();
        for name in &names {
            let listener = TcpListener::bind(("127.0.0.1", 0))
                .await
                .map_err(|source| StartError::Bind { vault: name.clone(), source })?;
            let addr = listener.local_addr().map_err(|source| StartError::Bind { vault: name.clone(), source })?;
            let url = format!("https://127.0.0.1:{}", addr.port());
            initial.push((name.clone(), url.clone(), loaded.remove(name).unwrap_or_default()));
            listeners.push((name.clone(), listener, addr, url));
        }
        let clock = self.clock.unwrap_or_default();
        let store = VaultStore::new(initial, clock, self.persist_to.clone(), self.certificate_delay);
        let faults = Arc::new(FaultInjector::new(self.faults));
        let throttled = Arc::new(std::sync::atomic::AtomicUsize::new(0));

        let mut vaults = BTreeMap::new();
        for (name, listener, addr, url) in listeners {
            let service = Arc::new(http::VaultService {
                store: store.clone(),
                vault: name.clone(),
                tokens: tokens.clone(),
                tenant: self.tenant.clone(),
                throttler: self.throttling.map(Throttler::new),
                throttled: Arc::clone(&throttled),
                faults: Arc::clone(&faults),
                assignments: assignments.clone(),
                location: DEFAULT_LOCATION.to_owned(),
            });
            let server = server::spawn(listener, Some(acceptor.clone()), move |req| Arc::clone(&service).handle(req));
            tracing::info!(vault = %name, %url, "vault listening");
            vaults.insert(name, VaultListener { addr, url, server });
        }

        let persister = self.persist_to.as_ref().map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                loop {
                    store.dirtied().await;
                    // Coalesce bursts of writes into one save.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let store = store.clone();
                    match tokio::task::spawn_blocking(move || store.save()).await {
                        Ok(Ok(())) => {}
                        Ok(Err(error)) => tracing::error!(%error, "saving vault state failed"),
                        Err(error) => tracing::error!(%error, "saving vault state panicked"),
                    }
                }
            })
        });

        Ok(RunningEmulator {
            assignments,
            arm_assignments: ArmAssignments::default(),
            tokens,
            store,
            ca,
            ca_dir: owns_ca_dir.then_some(ca_dir),
            identity: Some(identity),
            vaults,
            faults,
            throttled,
            persister,
            stopped: false,
        })
    }
}

fn check_vault_name(name: &str) -> Result<(), StartError> {
    let ok = (3..=24).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok { Ok(()) } else { Err(StartError::BadVaultName(name.to_string())) }
}

#[derive(Debug)]
struct VaultListener {
    addr: SocketAddr,
    url: String,
    server: ServerHandle,
}

/// A running emulator. Dropping it stops every listener (and saves state when persisting); prefer
/// [`RunningEmulator::shutdown`], which also lets in-flight requests finish.
#[derive(Debug)]
pub struct RunningEmulator {
    assignments: Assignments,
    /// The Resource Manager role assignments of the same identities (handler identities' `customRoles` grants),
    /// which an ARM emulator started with [`crate::arm::Builder::assignments`] enforces.
    arm_assignments: ArmAssignments,
    tokens: TokenRegistry,
    store: VaultStore,
    ca: LocalCa,
    ca_dir: Option<PathBuf>,
    identity: Option<IdentityEndpoint>,
    vaults: BTreeMap<String, VaultListener>,
    faults: Arc<FaultInjector>,
    /// Requests answered 429 by throttling, every vault together.
    throttled: Arc<std::sync::atomic::AtomicUsize>,
    persister: Option<JoinHandle<()>>,
    stopped: bool,
}

impl RunningEmulator {
    /// `https://127.0.0.1:<port>` for `vault` (a bare host, no trailing slash), or `None` for an unknown vault.
    pub fn vault_url(&self, vault: &str) -> Option<&str> {
        self.vaults.get(vault).map(|v| v.url.as_str())
    }

    /// The listening address of `vault` (to resolve `<vault>.vault.azure.net` to it in a custom transport).
    pub fn vault_addr(&self, vault: &str) -> Option<SocketAddr> {
        self.vaults.get(vault).map(|v| v.addr)
    }

    /// Names of every served vault.
    pub fn vault_names(&self) -> impl Iterator<Item = &str> {
        self.vaults.keys().map(String::as_str)
    }

    /// Where the CA certificate (PEM) was written.
    pub fn ca_pem_path(&self) -> &Path {
        self.ca.ca_pem_path()
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        self.ca.ca_pem()
    }

    /// IDENTITY_ENDPOINT and IDENTITY_HEADER for a process that should authenticate here.
    pub fn identity_env(&self) -> IdentityEnv {
        self.identity
            .as_ref()
            .map(|i| i.env().clone())
            .unwrap_or_else(|| IdentityEnv { endpoint: String::new(), header: String::new() })
    }

    /// The registry of the tokens the identity endpoint issued, for another local service (the ARM emulator)
    /// that must accept the same tokens.
    pub fn token_registry(&self) -> Option<TokenRegistry> {
        self.identity.as_ref().map(|i| i.registry().clone())
    }

    /// The client id of the system-assigned identity.
    pub fn system_client_id(&self) -> &str {
        self.identity.as_ref().map_or("", |i| i.system_client_id())
    }

    /// The identities the identity endpoint serves (add user-assigned ones while running).
    pub fn identities(&self) -> &Identities {
        self.tokens.identities()
    }

    /// Creates a user-assigned identity named `name` (fresh client and object ids) that the identity
    /// endpoint serves from now on. It holds no role until one is assigned.
    pub fn add_user_assigned_identity(&self, name: &str) -> ManagedIdentity {
        self.tokens.identities().add_user_assigned(name)
    }

    /// The role assignments every vault request is checked against.
    pub fn assignments(&self) -> &Assignments {
        &self.assignments
    }

    /// The Resource Manager role assignments of this stack's identities: give them to the ARM emulator
    /// ([`crate::arm::Builder::assignments`]) so that it enforces what [`RunningEmulator::handler_identity`] grants.
    pub fn arm_assignments(&self) -> &ArmAssignments {
        &self.arm_assignments
    }

    /// Assigns the built-in role `role` (e.g. "Key Vault Secrets User") to `principal_id` (an identity's
    /// object id) at `scope`.
    pub fn assign_role(&self, principal_id: &str, role: &str, scope: Scope) -> Result<(), UnknownRole> {
        let role = keyturn_vault::rbac::role_by_name(role).ok_or_else(|| UnknownRole(role.to_owned()))?;
        self.assignments.assign(principal_id, role, scope);
        Ok(())
    }

    /// Assigns the system-assigned identity `role` on every vault: for a test or tool that acts as a broad
    /// client of the emulator, visibly (the assignment is listed like any other).
    pub fn grant_system_identity(&self, role: &str) -> Result<(), UnknownRole> {
        let role = keyturn_vault::rbac::role_by_name(role).ok_or_else(|| UnknownRole(role.to_owned()))?;
        let system = self.tokens.identities().system();
        for name in self.vaults.keys() {
            self.assignments.assign(&system.object_id, role, Scope::vault(name));
        }
        Ok(())
    }

    /// Creates a user-assigned identity `keyturn-<handler>` holding exactly `handler`'s grants in `matrix`
    /// for `deployment` (every vault the deployment names must be served here). Each call creates a new
    /// identity.
    pub fn handler_identity(
        &self,
        matrix: &crate::roles::RoleMatrix,
        handler: &str,
        deployment: &crate::roles::Deployment,
    ) -> Result<crate::roles::HandlerIdentity, crate::roles::MatrixError> {
        use crate::roles::{MatrixError, ResolvedGrant};
        if let Some(vault) = deployment.vaults().find(|v| !self.vaults.contains_key(*v)) {
            return Err(MatrixError::UnservedVault(vault.to_owned()));
        }
        let grants = matrix.grants(handler, deployment)?;
        let identity = self.add_user_assigned_identity(&format!("keyturn-{handler}"));
        let mut not_emulated = Vec::new();
        for grant in grants {
            match grant {
                ResolvedGrant::KeyVault { role, scope } => self.assignments.assign(&identity.object_id, role, scope),
                ResolvedGrant::Arm { role, scope } => self.arm_assignments.assign(&identity.object_id, role, scope),
                ResolvedGrant::NotEmulated { role, scope } => not_emulated.push((role, scope)),
            }
        }
        tracing::info!(%handler, client_id = %identity.client_id, object_id = %identity.object_id, "handler identity created with its role matrix grants");
        Ok(crate::roles::HandlerIdentity {
            handler: handler.to_owned(),
            assignments: self.assignments.of(&identity.object_id),
            arm_assignments: self.arm_assignments.of(&identity.object_id),
            identity,
            not_emulated,
        })
    }

    /// The store: management API, change feed, current objects.
    pub fn store(&self) -> &VaultStore {
        &self.store
    }

    /// The shared clock.
    pub fn clock(&self) -> &Clock {
        self.store.clock()
    }

    /// How many requests the vaults have refused with 429 (throttling) so far.
    pub fn throttled(&self) -> usize {
        self.throttled.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Replaces the fault injection rules.
    pub fn set_faults(&self, faults: Faults) {
        self.faults.set(faults);
    }

    /// Stops every listener (letting in-flight requests finish) and saves state when persisting.
    pub async fn shutdown(mut self) {
        self.stopped = true;
        for (_, vault) in std::mem::take(&mut self.vaults) {
            vault.server.shutdown().await;
        }
        if let Some(identity) = self.identity.take() {
            identity.shutdown().await;
        }
        if let Some(persister) = self.persister.take() {
            persister.abort();
        }
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.save()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%error, "saving vault state at shutdown failed"),
            Err(error) => tracing::error!(%error, "saving vault state at shutdown panicked"),
        }
        self.remove_ca_dir();
    }

    fn remove_ca_dir(&mut self) {
        if let Some(dir) = self.ca_dir.take() {
            // Best effort: a leftover temp directory holds only a public CA certificate.
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Drop for RunningEmulator {
    fn drop(&mut self) {
        if let Some(persister) = self.persister.take() {
            persister.abort();
        }
        if !self.stopped
            && let Err(error) = self.store.save()
        {
            tracing::error!(%error, "saving vault state on drop failed");
        }
        self.remove_ca_dir();
        // Listeners and the identity endpoint stop as their handles drop.
    }
}
