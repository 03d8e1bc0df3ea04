//! Key Vault access for keyturn over the official Azure SDK for Rust.
//!
//! Clients are built once per process for the allow-listed vaults only ([`AzureKeyVault`]), with the one
//! credential `KEYTURN_CREDENTIAL` names, and with retries bounded so no call can outlast the function
//! timeout. Engines depend on the [`KeyVault`] trait, not on the SDK.
//!
//! # Layout
//! - [`ops`]: [`KeyVault`], the operations keyturn needs, as an object-safe trait.
//! - [`model`]: keyturn's view of vault objects (chrono times, tags, wrapped secret values).
//! - [`azure`]: [`AzureKeyVault`], the implementation over the SDK clients; the allow-list lives here.
//! - [`inventory`]: [`Inventory`], read-only listing of a vault's objects and versions (paged), for surveys.
//! - [`versions`]: [`Versions`], reading and changing one named version (not the latest) of any object.
//! - [`credential`]: the configured credential, built and logged once.
//! - [`http`]: the transport (extra CA roots, per-try timeout) and the bounded retry policy.
//! - [`warm`]: [`AzureKeyVault::warm_up`], the token fetched before a first event asks for it.
//! - [`time`]: chrono ⇄ `time::OffsetDateTime`, the one conversion point at the SDK edge.
//! - `testing` (feature `testing`): `FakeVault`, an in-memory vault set for unit tests.
//! - [`error`]: [`VaultError`] and its retryable/permanent classification.
//! - [`rbac`]: Key Vault's built-in roles and their data actions; a `ForbiddenByRbac` denial explained by the
//!   role that would grant it.

pub mod azure;
pub mod credential;
pub mod error;
pub mod http;
pub mod inventory;
pub mod model;
pub mod ops;
pub mod pacer;
pub mod rbac;
#[cfg(feature = "testing")]
pub mod testing;
pub mod time;
pub mod versions;
pub mod warm;

pub use azure::AzureKeyVault;
pub use error::VaultError;
pub use inventory::{Collection, Inventory, Listed};
pub use ops::{KeyVault, VaultFuture};
pub use pacer::{OperationClass, StartedAt, VaultPacing};
pub use versions::{VersionProperties, VersionUpdate, Versions};
