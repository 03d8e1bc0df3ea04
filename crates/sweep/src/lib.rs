//! The scheduled sweep's own logic, apart from any I/O but its state: which expiry thresholds are due for an
//! object version and how urgent each is, the durable record that each threshold fires once per version, the
//! rotation-window tag, and the grouping of notices into digests. The `sweep` handler (a timer-triggered
//! function) wires these to the typed core's plan, the vault and the notifier.
//!
//! # Layout
//! - [`object`]: [`ObjectVersion`], the one object version a threshold, a notice or a page is about.
//! - [`thresholds`]: the `KeyturnThresholds` tag and the deployment default, [`Thresholds::due`], and
//!   [`Escalation`]: info → warning → critical as expiry nears.
//! - [`state`]: [`ThresholdStore`], claiming a threshold once per object version across sweeps, restarts and
//!   concurrent sweeps; [`MemoryThresholdStore`] for unit tests.
//! - [`blob_state`]: [`BlobThresholdStore`], the same over blobs with conditional writes (ETags), in the
//!   function app's storage account.
//! - [`window`]: the `KeyturnRotationWindow` tag's grammar, [`RotationWindows::is_open`],
//!   [`RotationWindows::next_open`], and [`WindowDecision`]: rotate, defer, or rotate anyway (expired, or
//!   the next window opens too late). Re-exported from `keyturn_rotation::window`: the rotation engine
//!   applies it to every near-expiry rotation, the sweep's included.
//! - [`dead_letters`]: the dead-letter container read back: each dead-lettered Key Vault event with Event
//!   Grid's account of the failure, and what could not be used, named; [`DeadLetters`], the container
//!   ([`DeadLetterReader`]) or blobs in memory for unit tests ([`MemoryDeadLetters`]). Which blobs a sweep
//!   handled is a claim in the [`ThresholdStore`] ([`ThresholdKey::dead_letter`]).
//! - [`pacer`]: [`Pacer`], the sweep's Key Vault requests paced under the service's per-vault and
//!   per-subscription throttling limits (keyturn-vault's, which also paces every handler's writes).
//! - [`paged`]: [`PagedVersions`], the object versions a pager was paged about and not yet resolved, so a
//!   later sweep that sees the object rotated resolves the page; memory and blob implementations.
//! - digests (notices grouped by vault, kind and threshold, at most 100 objects per message) are
//!   `keyturn_notify::digest`, re-exported here: the notification crate owns what a message holds.

pub mod blob_state;
pub mod dead_letters;
pub mod object;
pub mod paged;
pub use keyturn_vault::pacer;
pub mod state;
pub mod thresholds;
pub use keyturn_rotation::window;

pub use blob_state::{BlobStateSetupError, BlobThresholdStore};
pub use dead_letters::{
    DeadLetter, DeadLetterBlob, DeadLetterError, DeadLetterReader, DeadLetterReport, DeadLetters, MemoryDeadLetters,
    Unusable,
};
pub use keyturn_notify::digest::{Digest, DigestGroup, MAX_OBJECTS_PER_MESSAGE, Notice, Section, digest};
pub use object::ObjectVersion;
pub use pacer::{Pacer, PacerLimits, RateLimit};
pub use paged::{BlobPagedVersions, MemoryPagedVersions, PagedVersions};
pub use state::{Claim, ClaimToken, MemoryThresholdStore, StateError, ThresholdKey, ThresholdStore, claim_due};
pub use thresholds::{DEFAULT_THRESHOLDS, Due, Escalation, THRESHOLDS_TAG, ThresholdError, Thresholds};
pub use window::{Override, ROTATION_WINDOW_TAG, RotationWindows, WindowDecision, WindowError};
