//! What every keyturn handler builds once per process, in one place: settings, the vault clients, the
//! notifier, the rotation lock and engine, the credential; and the one mapping of library errors (vault,
//! rotation, notification) to [`keyturn_host::HandlerError`] by their retryable class.
//!
//! A handler's `main.rs` is then wiring only:
//! `keyturn_host::run(FUNCTION, deps::Deps::from_env(), handle).await`. Building touches no network (clients fetch
//! their first token on first use), so a handler is ready as soon as its adapter listens, and a
//! configuration error costs nothing but the same clear message on every invocation.
//!
//! # Layout
//! - [`deps`]: [`Deps`] and [`DepsError`]: building everything from the environment or from settings.
//! - [`accept`]: [`Accepted`], the one parse of a delivered event ([`Deps::accept`]): a typed, allow-listed
//!   object reference or the outcome that says why the handler does not act (skipped, never retried).
//! - `testing` (feature `testing`): [`Deps`] over the in-memory fakes, for the handlers' unit tests.
//! - [`errors`]: [`ErrorClass`]: library errors to the handler's retryable or permanent error.

pub mod accept;
pub mod deps;
pub mod errors;
#[cfg(feature = "testing")]
pub mod testing;

pub use accept::Accepted;
pub use deps::{Deps, DepsError, MAX_CONCURRENT_INVOCATIONS, Parts};
pub use errors::ErrorClass;
pub use keyturn_config::notify::NameFilter;
