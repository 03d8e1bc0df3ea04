//! keyturn's rotation engine: decide from the object's tags whether and how to rotate, make sure a
//! duplicate delivery cannot rotate twice, and produce the new version.
//!
//! # Layout
//! - [`plan`]: [`plan()`], the one decision table (pure): what keyturn does with an object, given its facts.
//! - [`engine`]: [`Engine`], the rotation contract for secrets, keys and certificates: carries a plan out.
//! - [`policy`]: the policy tags (docs/policy-tags.md is the reference) and their parsing.
//! - [`window`]: the `KeyturnRotationWindow` tag: when a near-expiry rotation may start ([`plan::window`]
//!   applies it; `keyturn_sweep` re-exports it).
//! - [`provider`]: the [`Provider`] steps (create pending, set, test, finish) and the registry;
//!   `provider/generated.rs` is the generated-value provider.
//! - [`generate`]: new values from the OS CSPRNG (password, alphanumeric, base64, base64url, hex).
//! - [`lock`]: the per-object lock as a trait ([`RotationLock`]) and the in-process lease lock;
//!   `lock/blob.rs` is the blob-lease lock for Azure and [`lock_from_settings`], which picks one.
//! - [`outcome`]: [`RotationOutcome`], what an attempt decided.
//! - [`arm`]: [`arm::ArmClient`], the one way keyturn calls Azure Resource Manager (providers, consumer refresh).
//! - [`blob_errors`]: reading the Blob storage SDK's errors (status, code, a description without a URL), for every
//!   keyturn caller of Blob storage.
//! - [`error`]: [`RotationError`], retryable or permanent.

pub mod arm;
pub mod blob_errors;
pub mod engine;
pub mod error;
pub mod generate;
pub mod lock;
pub mod outcome;
pub mod plan;
pub mod policy;
pub mod provider;
pub mod window;

pub use engine::health::{HealthCheck, HealthProber};
pub use engine::{Engine, NowFn, Request};
pub use error::RotationError;
pub use lock::blob::{BlobLeaseLock, LeaseDuration, LockSetupError, lock_from_settings};
pub use lock::{InProcessLock, LockError, LockGuard, RotationLock};
pub use outcome::RotationOutcome;
pub use plan::{ExpiryStage, Native, ObjectFacts, Plan, plan};
pub use policy::Policy;
pub use provider::{PreviousCredential, Provider, Providers};
