//! The whole local stack in one call: the Key Vault emulator (with its identity endpoint), the Event Grid
//! emulator fed by the vault's changes and the shared clock, and the management API.
//!
//! ```no_run
//! # async fn demo() -> Result<(), keyturn_local::stack::StackError> {
//! use keyturn_local::keyvault::KeyVaultEmulator;
//! use keyturn_local::eventgrid::EventGridOptions;
//! let stack = keyturn_local::stack::LocalStack::start(KeyVaultEmulator::builder().vault("kv-one"), EventGridOptions::default()).await?;
//! let env = stack.handler_env(); // what a handler process needs to reach the vaults
//! stack.shutdown().await;
//! # Ok(()) }
//! ```

use std::time::Duration;

use keyturn_events::ObjectKind;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;
use tracing::warn;

use crate::eventgrid::{EventGrid, EventGridOptions, ObjectChange};
use crate::keyvault::{self, CurrentObject, RunningEmulator, VaultChange, VaultStore};
use crate::management::{Management, ManagementServer};
use crate::roles::{Deployment, HandlerIdentity, MatrixError, RoleMatrix};

/// How often the Event Grid emulator re-reads the vaults' current versions, to pick up attribute changes
/// (the change feed carries new versions only). A clock jump re-reads at once as well.
const RESYNC_EVERY: Duration = Duration::from_secs(1);

/// Why the stack did not start.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("the Key Vault emulator did not start: {0}")]
    KeyVault(#[from] keyvault::StartError),
    #[error("the management API could not listen on 127.0.0.1: {0}")]
    Management(std::io::Error),
}

/// A running local stack. Dropping it stops everything; [`LocalStack::shutdown`] also lets in-flight vault
/// requests finish and saves persisted state.
#[derive(Debug)]
pub struct LocalStack {
    emulator: RunningEmulator,
    grid: EventGrid,
    management: ManagementServer,
    feed: Feed,
}

/// The task forwarding vault changes to Event Grid. It holds clones of both, so it is stopped explicitly,
/// together with Event Grid's retries, when the stack goes away.
#[derive(Debug)]
struct Feed {
    grid: EventGrid,
    task: JoinHandle<()>,
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.grid.shutdown();
        self.task.abort();
    }
}

impl LocalStack {
    /// Starts the vaults `vaults` describes (their clock is the stack's clock), Event Grid with `grid`, and
    /// the management API on an ephemeral loopback port.
    pub async fn start(vaults: keyvault::Builder, grid: EventGridOptions) -> Result<Self, StackError> {
        let emulator = vaults.start().await?;
        let clock = emulator.clock().clone();
        let grid = EventGrid::start(clock.clone(), grid);
        // Subscribe before reading the current state, so no version falls between the two.
        let changes = emulator.store().subscribe();
        grid.sync(current_objects(emulator.store()));
        let feed =
            Feed { grid: grid.clone(), task: tokio::spawn(feed(emulator.store().clone(), grid.clone(), changes)) };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(StackError::Management)?;
        let about = about(&emulator, listener.local_addr().map_err(StackError::Management)?);
        let management = ManagementServer::serve(listener, Management { clock, grid: grid.clone(), about })
            .map_err(StackError::Management)?;
        Ok(Self { emulator, grid, management, feed })
    }

    pub fn emulator(&self) -> &RunningEmulator {
        &self.emulator
    }

    pub fn grid(&self) -> &EventGrid {
        &self.grid
    }

    pub fn management_url(&self) -> String {
        self.management.url()
    }

    /// The environment a handler process needs to reach these vaults as it would reach Azure: the
    /// App Service identity endpoint, the allow-list with each vault's local URL, and the CA to trust.
    pub fn handler_env(&self) -> Vec<(String, String)> {
        let identity = self.emulator.identity_env();
        let vaults: Vec<String> = self
            .emulator
            .vault_names()
            .filter_map(|name| self.emulator.vault_url(name).map(|url| format!("{name}={url}")))
            .collect();
        vec![
            ("KEYTURN_CREDENTIAL".to_owned(), "managed-identity".to_owned()),
            ("IDENTITY_ENDPOINT".to_owned(), identity.endpoint),
            ("IDENTITY_HEADER".to_owned(), identity.header),
            ("KEYTURN_VAULTS".to_owned(), vaults.join(",")),
            ("KEYTURN_CA_FILE".to_owned(), self.emulator.ca_pem_path().display().to_string()),
        ]
    }

    /// A new identity for `handler` holding exactly its grants in `infra/roles.json` (embedded at build time)
    /// for `deployment`. Run the handler with [`LocalStack::handler_env`] plus the returned
    /// [`HandlerIdentity::app_settings`] (`AZURE_CLIENT_ID`), and every vault call it makes is authorised as
    /// Azure would authorise it.
    ///
    /// ```no_run
    /// # fn demo(stack: &keyturn_local::stack::LocalStack) -> Result<(), keyturn_local::roles::MatrixError> {
    /// use keyturn_local::roles::Deployment;
    /// let deployment = Deployment {
    ///     monitored_vaults: vec!["kv-demo".into()],
    ///     canary_secret: Some("keyturn-canary".into()),
    ///     ..Deployment::default()
    /// };
    /// let identity = stack.handler_identity("test-event", &deployment)?;
    /// let mut settings = stack.handler_env();
    /// settings.extend(identity.app_settings());
    /// # Ok(()) }
    /// ```
    pub fn handler_identity(&self, handler: &str, deployment: &Deployment) -> Result<HandlerIdentity, MatrixError> {
        self.handler_identity_from(&RoleMatrix::embedded()?, handler, deployment)
    }

    /// [`LocalStack::handler_identity`] with another matrix (e.g. [`RoleMatrix::load`] of an edited copy).
    pub fn handler_identity_from(
        &self,
        matrix: &RoleMatrix,
        handler: &str,
        deployment: &Deployment,
    ) -> Result<HandlerIdentity, MatrixError> {
        self.emulator.handler_identity(matrix, handler, deployment)
    }

    /// Stops Event Grid, then the vaults (saving persisted state), then the management API.
    pub async fn shutdown(self) {
        drop(self.feed);
        self.emulator.shutdown().await;
        drop(self.management);
    }
}

/// What `GET /` of the management API says about the stack.
fn about(emulator: &RunningEmulator, management: std::net::SocketAddr) -> Value {
    let vaults: serde_json::Map<String, Value> = emulator
        .vault_names()
        .filter_map(|name| emulator.vault_url(name).map(|url| (name.to_owned(), Value::from(url))))
        .collect();
    json!({
        "vaults": vaults,
        "caFile": emulator.ca_pem_path().display().to_string(),
        "identityEndpoint": emulator.identity_env().endpoint,
        "management": format!("http://{management}"),
    })
}

/// Forwards the vault's new versions to Event Grid, and keeps Event Grid's view of current versions in
/// line with the vault when the clock moves, periodically, and after the feed overflowed.
async fn feed(store: VaultStore, grid: EventGrid, mut changes: tokio::sync::broadcast::Receiver<VaultChange>) {
    let mut clock_moves = store.clock().subscribe();
    let mut resync = tokio::time::interval(RESYNC_EVERY);
    loop {
        tokio::select! {
            change = changes.recv() => match change {
                // Certificates create a key and a secret behind themselves; Key Vault reports the certificate.
                Ok(change) if change.managed => {}
                Ok(change) => grid.observe(ObjectChange { new_version: true, ..object_change(&change.vault, change.kind, &change.name, &change.version, change.not_before, change.expires) }),
                Err(RecvError::Lagged(missed)) => {
                    warn!(missed, "Event Grid fell behind the vault's change feed: NewVersionCreated events were lost; expiry tracking resynchronised");
                    grid.sync(current_objects(&store));
                }
                Err(RecvError::Closed) => return,
            },
            moved = clock_moves.changed() => {
                if moved.is_err() { return }
                grid.sync(current_objects(&store));
            }
            _ = resync.tick() => grid.sync(current_objects(&store)),
        }
    }
}

fn current_objects(store: &VaultStore) -> Vec<ObjectChange> {
    store
        .current_objects()
        .into_iter()
        .filter(|o: &CurrentObject| !o.managed)
        .map(|o| object_change(&o.vault, o.kind, &o.name, &o.version, o.not_before, o.expires))
        .collect()
}

fn object_change(
    vault: &str,
    kind: keyvault::StoredKind,
    name: &str,
    version: &str,
    not_before: Option<chrono::DateTime<chrono::Utc>>,
    expires: Option<chrono::DateTime<chrono::Utc>>,
) -> ObjectChange {
    let kind = match kind {
        keyvault::StoredKind::Secret => ObjectKind::Secret,
        keyvault::StoredKind::Key => ObjectKind::Key,
        keyvault::StoredKind::Certificate => ObjectKind::Certificate,
    };
    ObjectChange {
        vault: vault.to_owned(),
        kind,
        name: name.to_owned(),
        version: version.to_owned(),
        not_before,
        expires,
        new_version: false,
    }
}
