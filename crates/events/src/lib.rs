//! Azure Key Vault events as Event Grid delivers them, in both Event Grid and CloudEvents 1.0 schema.
//!
//! This crate does no I/O. It turns JSON into typed events (tolerant exactly where real payloads vary, strict
//! where a mistake would make keyturn act on the wrong object) and back, and it knows Event Grid's webhook
//! delivery protocol as pure functions.
//!
//! # Layout
//! - [`event`]: [`Event`], one delivered event of either schema, and its decoding and encoding.
//! - [`key_vault`]: the Key Vault payload: event types, object kinds, the object an event names.
//! - [`object_ref`]: [`ObjectRef`], the typed reference (vault, kind, name, version) every step after parsing takes.
//! - [`delivery`]: Event Grid's webhook protocol (`aeg-event-type`, batches, validation handshakes).
//! - [`error`]: [`DecodeError`], which names the JSON path that failed.
//! - `tolerant` (private): the lenient field decoders (key casing, stray whitespace, epoch numbers or strings).
//!
//! Real payloads live beside the types in `fixtures/` and every one is round-tripped by the tests.

pub mod delivery;
pub mod error;
pub mod event;
pub mod key_vault;
pub mod object_ref;
mod tolerant;

pub use error::DecodeError;
pub use event::{Event, Payload, Schema, SubscriptionValidation, TEST_EVENT_TYPE, UnknownEvent};
pub use key_vault::{KeyVaultEvent, KeyVaultEventType, Lifecycle, ObjectKind, VaultObject};
pub use object_ref::{NotAnObject, ObjectRef};
pub use tolerant::kind_of as json_kind;
