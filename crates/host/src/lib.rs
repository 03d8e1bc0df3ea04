//! Runs a keyturn handler on a serverless platform: today as an Azure Functions custom handler (an HTTP server
//! over warp), and shaped so that an AWS Lambda adapter can sit beside it.
//!
//! A handler is a plain `async fn(events::Event, Arc<Deps>) -> Result<Outcome, HandlerError>`; its binary's
//! `main` loads configuration, builds clients once, and calls [`run`]:
//!
//! ```no_run
//! use std::sync::Arc;
//! use host::{HandlerError, Outcome};
//!
//! struct Deps;
//!
//! async fn near_expiry(event: events::Event, _deps: Arc<Deps>) -> Result<Outcome, HandlerError> {
//!     Ok(Outcome::Skipped(format!("{} is not handled yet", event.event_type())))
//! }
//!
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     host::init_logging();
//!     let deps: Result<Deps, std::io::Error> = Ok(Deps);
//!     host::run("near-expiry", deps, near_expiry).await
//! }
//! ```
//!
//! # Layout
//! - [`outcome`]: what a handler returns: [`Outcome`] (done / skipped / rejected) and [`HandlerError`]
//!   (retryable or permanent).
//! - [`invoke`]: runs one raw event through a handler, adapter-independent: decoding, the "not configured"
//!   short-circuit, panic isolation, tracing span, one log line per decision, in-flight count for draining.
//! - [`azure_functions`]: the Azure Functions custom-handler adapter: warp routes, serving, graceful stop;
//!   [`azure_functions::wire`] holds the envelope types shared with the local Functions host stand-in.
//! - [`shutdown`]: stop signals and exit codes.
//! - [`logging`]: the JSON log subscriber.
//! - `src/bin/host-echo.rs`: the smallest handler binary, wiring only; the process tests and the startup bench
//!   run it.
//!
//! # Adding an adapter
//! An adapter turns its platform's requests into raw event JSON, hands each to [`Invoker::invoke`], and maps
//! the [`Verdict`] back: acknowledge or fail. Everything else (decoding, panics, the not-configured state,
//! logs, draining through [`Invoker::idle`], [`shutdown::signal`] and exit codes) is shared. An AWS Lambda
//! adapter fed by Event Grid webhooks would be a module beside [`azure_functions`] that also answers the
//! webhook handshake with `events::delivery`, plus a variant of [`Adapter`] chosen from Lambda's own
//! environment (`AWS_LAMBDA_RUNTIME_API`).
//!
//! # Environment
//! - `FUNCTIONS_CUSTOMHANDLER_PORT`: set by the Functions host; selects the Azure Functions adapter and the
//!   port it listens on at 127.0.0.1. Without it, [`run`] exits with [`shutdown::EXIT_NO_ADAPTER`].
//! - `KEYTURN_LOG`: log filter in `RUST_LOG` syntax, default `info` (see [`logging`]).
//!
//! # Exit codes
//! keyturn handlers never exit 0: the Functions host does not restart a handler that does.
//! - 143 after SIGTERM, 130 after SIGINT, once running invocations have drained (or the drain timed out);
//! - 78 when no adapter can be chosen from the environment;
//! - 1 when the port cannot be bound or the server stopped unasked.

pub mod azure_functions;
pub mod invoke;
pub mod logging;
pub mod outcome;
pub mod shutdown;

use std::ffi::OsString;
use std::future::Future;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

pub use invoke::{Failure, Invoker, Verdict};
pub use logging::init_logging;
pub use outcome::{HandlerError, Outcome};

/// Runs `handler` for `function` (e.g. `"near-expiry"`) until SIGTERM/SIGINT and returns the exit code.
///
/// `deps` is the result of loading configuration and building shared clients once. An `Err` is not fatal: the
/// process still answers readiness and fails every invocation with `500` and that error's message (written to
/// stderr once per invocation), so events wait in Event Grid's retries until the setting is fixed.
///
/// The adapter is picked from the environment (see [`Adapter::from_env`]); if none fits, the reason goes to
/// stderr and the exit code is non-zero. Nothing slow happens before the port is bound.
pub async fn run<D, E, F, Fut>(function: &'static str, deps: Result<D, E>, handler: F) -> ExitCode
where
    D: Send + Sync + 'static,
    E: std::fmt::Display,
    F: Fn(events::Event, Arc<D>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Outcome, HandlerError>> + Send + 'static,
{
    init_logging();
    let invoker = Invoker::new(function, deps, handler);
    if let Some(error) = invoker.not_configured() {
        tracing::error!(
            function,
            %error,
            "not configured: every invocation will fail until this is fixed"
        );
    }
    match Adapter::from_env(|name| std::env::var_os(name)) {
        Ok(Adapter::AzureFunctions { port }) => azure_functions::run(port, invoker).await,
        Err(error) => {
            tracing::error!(function, %error, "cannot start");
            // The reason must reach whoever started the process even if it reads no logs.
            let _ = writeln!(std::io::stderr().lock(), "{function}: cannot start: {error}");
            ExitCode::from(shutdown::EXIT_NO_ADAPTER)
        }
    }
}

/// The platform a handler process serves, as its environment says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adapter {
    /// An Azure Functions custom handler: listen on `127.0.0.1:port` for the Functions host.
    AzureFunctions {
        /// From `FUNCTIONS_CUSTOMHANDLER_PORT`.
        port: u16,
    },
}

/// Why no [`Adapter`] fits the environment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdapterError {
    /// No platform's variable is set.
    #[error(
        "{} is not set; keyturn handlers run as Azure Functions custom handlers, started by the Functions host (func start, or keyturn dev locally), which sets it",
        azure_functions::wire::PORT_VARIABLE
    )]
    NoPlatform,
    /// `FUNCTIONS_CUSTOMHANDLER_PORT` is set but is not a port.
    #[error("{}={value:?} is not a port number (1-65535)", azure_functions::wire::PORT_VARIABLE)]
    InvalidPort {
        /// The value found, lossily decoded.
        value: String,
    },
}

impl Adapter {
    /// Picks the adapter from environment variables, read through `var` (`std::env::var_os` in production).
    pub fn from_env(var: impl Fn(&str) -> Option<OsString>) -> Result<Adapter, AdapterError> {
        let Some(raw) = var(azure_functions::wire::PORT_VARIABLE) else {
            return Err(AdapterError::NoPlatform);
        };
        let value = raw.to_string_lossy();
        match value.trim().parse::<u16>() {
            // Port 0 would bind a random port the Functions host cannot know.
            Ok(port) if port != 0 => Ok(Adapter::AzureFunctions { port }),
            _ => Err(AdapterError::InvalidPort { value: value.into_owned() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let pairs: Vec<(String, String)> =
            pairs.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect();
        move |name| pairs.iter().find(|(candidate, _)| candidate == name).map(|(_, value)| OsString::from(value))
    }

    #[test]
    fn port_variable_selects_azure_functions() {
        let adapter = Adapter::from_env(env(&[("FUNCTIONS_CUSTOMHANDLER_PORT", "7071")]));
        assert_eq!(adapter, Ok(Adapter::AzureFunctions { port: 7071 }));
    }

    #[test]
    fn missing_port_names_the_variable() {
        let error = Adapter::from_env(env(&[])).unwrap_err();
        assert_eq!(error, AdapterError::NoPlatform);
        assert!(error.to_string().starts_with("FUNCTIONS_CUSTOMHANDLER_PORT is not set"));
    }

    #[test]
    fn invalid_ports_are_refused_with_the_value() {
        for value in ["abc", "0", "70000", ""] {
            let error = Adapter::from_env(env(&[("FUNCTIONS_CUSTOMHANDLER_PORT", value)])).unwrap_err();
            assert_eq!(
                error.to_string(),
                format!("FUNCTIONS_CUSTOMHANDLER_PORT={value:?} is not a port number (1-65535)")
            );
        }
    }
}
