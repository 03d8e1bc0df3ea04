//! The `near-expiry` handler: Key Vault says a secret, key or certificate expires in 30 days; keyturn
//! rotates it per the object's policy tags, or says that a person must (ARCHITECTURE.md, "Rotation
//! contract"; the tags are in docs/policy-tags.md).
//!
//! The work is the rotation engine's (`crates/rotation`): allow-list first, idempotency on the event's
//! version, the per-object lock, the providers. This crate decides which events are its own, builds the
//! engine once per process, and turns what the engine decided into one line a person can act on.
//!
//! # Layout
//! - [`deps`]: [`Deps`], everything built once per process (settings, one credential and transport, vault
//!   clients, the rotation lock the settings name, engine) and the bound on concurrent rotations.
//! - [`handler`]: [`handle`], one event in, one [`host::Outcome`] or [`host::HandlerError`] out; which
//!   events are served.
//! - [`report`]: the engine's outcome and errors as the handler's one-line outcome, with the error class.
//! - `src/main.rs`: the binary, wiring only.

pub mod deps;
pub mod handler;
pub mod report;

pub use deps::{Deps, DepsError};
pub use handler::handle;

/// The function's name: its folder under function-definitions/, its route, its binary.
pub const FUNCTION: &str = "near-expiry";
