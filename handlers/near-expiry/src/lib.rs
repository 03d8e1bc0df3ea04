//! The `near-expiry` handler: Key Vault says a secret, key or certificate expires in 30 days; keyturn
//! rotates it per the object's policy tags, or says that a person must (ARCHITECTURE.md, "Rotation
//! contract"; the tags are in docs/policy-tags.md), and tells the notification channels either way.
//!
//! The work is the rotation engine's (`crates/rotation`): allow-list first, idempotency on the event's
//! version, the per-object lock, the providers. Everything is built once per process by `crates/deps`, as
//! for every handler (every provider registered, at most 64 invocations at once). This crate decides which
//! events are its own, turns what the engine decided into one line a person can act on, and into a
//! notification:
//!
//! | outcome | notification |
//! |---|---|
//! | rotated (secret, key) | info, `rotated` with the new version |
//! | certificate renewal started | info, says the renewal is under way (its new version raises its own event) |
//! | not opted in, manual renewal due | warning, `not_rotated` with what a person must do |
//! | deferred: its `KeyturnRotationWindow` is closed and opens again before the expiry | warning, `not_rotated` saying until when (the scheduled sweep rotates it in the window) |
//! | left to Key Vault's own policy | warning (below) |
//! | a permanent failure (a wrong policy tag, a provider's refusal) | warning, `not_rotated` with the error |
//! | already rotated | a secret whose latest version carries this event's id (`KeyturnEventId`): info, `rotated`, again; else none |
//! | a retryable failure, a vault outside the allow-list, another event type | none |
//!
//! **Native rotation is a warning**: when Key Vault's own policy rotates or renews the object, the near-expiry
//! event arrives while the event's version is still the latest, so Key Vault has not acted yet. Nothing is
//! due from a person if it does, but an AutoRenew that fails (a CA refusing, a policy edited) is noticed only
//! at expiry; the warning says to check that Key Vault renews it. It is Key Vault's own "notify before
//! expiry" in a channel people read, and it matches `keyturn_notify::Severity::classify` and docs/notifications.md.
//!
//! **A notification that fails is retried**: the invocation fails (500), Event Grid redelivers, and the
//! notifier sends only to the channels that have not accepted the event yet (within this process). The
//! rotation itself is idempotent, so the redelivery finds the object "already rotated". For a secret, the
//! new version's `KeyturnEventId` tag says whether keyturn made it for this very event: then the info
//! message goes out again (to the channels that missed it; in another process or after a restart, to all of
//! them: receivers deduplicate on the event id). Keys and certificates carry no such provenance (Key Vault's
//! rotate and renew operations write the version, keyturn adds no tag), so a redelivery cannot tell keyturn's
//! rotation from one made by hand or by Key Vault's policy, and sends nothing; the new version's own
//! `*NewVersionCreated` event is what the `new-version` handler tells the channels about.
//!
//! No channel configured: no notification and the same outcome lines; with channels, a line ends
//! `; notified 3 channels`.
//!
//! # Layout
//! - [`handler`]: [`handle`], one event in, one [`keyturn_host::Outcome`] or [`keyturn_host::HandlerError`] out:
//!   the event parsed once (`Deps::accept`), then [`decide`] on the typed object.
//! - [`report`]: the engine's outcome as the handler's typed outcome (action `rotated`, `renewal-started`,
//!   `already-rotated`, `not-opted-in`, `native-rotation`, `manual-action-due`, `deferred`: the engine's labels).
//! - `tests.rs`: every row of the table above, against the in-memory fakes (`keyturn_deps::testing`).
//! - [`notice`]: the engine's outcome (or failure) as the notification the channels get.
//! - `src/main.rs`: the binary, wiring only.

pub mod handler;
pub mod notice;
pub mod report;

pub use handler::{decide, handle};

#[cfg(test)]
mod tests;

/// The function's name: its folder under function-definitions/, its route, its binary.
pub const FUNCTION: &str = "near-expiry";
