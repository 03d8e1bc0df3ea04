//! Runs a keyturn handler on a serverless platform: as an Azure Functions custom handler (an HTTP server over
//! warp) or as an AWS Lambda function that Event Grid reaches through a function URL (a webhook). The same
//! binary does both; the environment says which (see [`Adapter::from_env`]).
//!
//! A handler is a plain `async fn(keyturn_events::Event, Arc<Deps>) -> Result<Outcome, HandlerError>`; its binary's
//! `main` loads configuration, builds clients once, and calls [`run`]:
//!
//! ```no_run
//! use std::sync::Arc;
//! use keyturn_host::{HandlerError, Outcome};
//!
//! struct Deps;
//!
//! async fn near_expiry(event: keyturn_events::Event, _deps: Arc<Deps>) -> Result<Outcome, HandlerError> {
//!     Ok(Outcome::skipped(format!("{} is not handled yet", event.event_type())))
//! }
//!
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     keyturn_host::init_logging();
//!     let deps: Result<Deps, std::io::Error> = Ok(Deps);
//!     keyturn_host::run("near-expiry", deps, near_expiry).await
//! }
//! ```
//!
//! # Layout
//! - [`outcome`]: what a handler returns: [`Outcome`] (a [`Status`]: done / skipped / rejected; the object, the
//!   action, the versions, the message, the channels notified) and [`HandlerError`]
//!   (retryable or permanent).
//! - [`invoke`]: runs one raw event through a handler, adapter-independent: decoding, the "not configured"
//!   short-circuit, panic isolation, tracing span, one log line per decision, in-flight count for draining.
//! - [`adapter`]: which adapter runs, from the environment: the one place `host` reads its variables.
//! - [`azure_functions`]: the Azure Functions custom-handler adapter: warp routes, serving, graceful stop;
//!   [`azure_functions::wire`] holds the envelope types shared with the local Functions host stand-in.
//! - [`aws_lambda`]: the AWS Lambda adapter: the Runtime API loop (`lambda_runtime`), the function URL
//!   payload, the Event Grid webhook protocol and its shared-secret check.
//! - [`timer`]: [`timer::Tick`], what a scheduled function (the `sweep`) is invoked with: an Azure
//!   `timerTrigger` or an EventBridge schedule; [`run_timer`] runs such a function.
//! - [`shutdown`]: stop signals and exit codes.
//! - [`logging`]: the JSON log subscriber.
//! - `src/bin/host-echo.rs`: the smallest handler binary, wiring only; the process tests and the startup bench
//!   run it on both adapters (it can also fail, reject or panic on demand, by event subject).
//!
//! # Adding an adapter
//! An adapter turns its platform's requests into raw event JSON, hands each to [`Invoker::invoke`], and maps
//! the [`Verdict`] back: acknowledge or fail. Everything else (decoding, panics, the not-configured state,
//! logs, draining through [`Invoker::idle`], [`shutdown::signal`] and exit codes) is shared. A platform that
//! reaches keyturn as a plain Event Grid webhook reuses [`aws_lambda::webhook`], which only needs an HTTP
//! request.
//!
//! # Environment
//! Read before any configuration loads, so `host` reads these itself (in [`adapter`] and [`logging`]);
//! everything else keyturn reads is in `crates/config`.
//! - `KEYTURN_ADAPTER`: `azure-functions` or `aws-lambda`, to choose explicitly. Unset: Lambda when
//!   `AWS_LAMBDA_RUNTIME_API` is set, Azure Functions when `FUNCTIONS_CUSTOMHANDLER_PORT` is, an error
//!   when both or neither are.
//! - `FUNCTIONS_CUSTOMHANDLER_PORT`: set by the Functions host; the port the Azure adapter listens on at
//!   127.0.0.1.
//! - `AWS_LAMBDA_RUNTIME_API`, `AWS_LAMBDA_FUNCTION_NAME`, `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`,
//!   `AWS_LAMBDA_FUNCTION_VERSION`: set by Lambda; required by the Lambda adapter.
//! - `KEYTURN_WEBHOOK_SECRET`: Lambda only: the shared secret (16+ characters) every webhook request must
//!   carry in the `x-keyturn-webhook-secret` header or the `secret` query parameter. Unset or too short:
//!   the process starts and refuses every request with `500` (Event Grid keeps the events).
//! - `KEYTURN_LOG`: log filter in `RUST_LOG` syntax, default `info` (see [`logging`]).
//!
//! # Exit codes
//! keyturn handlers never exit 0: the Functions host does not restart a handler that does.
//! - 143 after SIGTERM, 130 after SIGINT, once running invocations have drained (or the drain timed out);
//! - 78 when no adapter can be chosen from the environment (on Lambda, also reported to the Runtime API as an
//!   init error);
//! - 1 when the port cannot be bound, the server stopped unasked, or the Lambda Runtime API failed.

pub mod adapter;
pub mod aws_lambda;
pub mod azure_functions;
pub mod invoke;
pub mod logging;
pub mod outcome;
pub mod shutdown;
pub mod timer;

use std::future::Future;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

pub use adapter::{Adapter, AdapterError};
pub use invoke::{Failure, Invoker, Trigger, Verdict, event_arrived};
pub use logging::init_logging;
pub use outcome::{HandlerError, Outcome, Status, TargetOutcome};

/// Runs `handler` for `function` (e.g. `"near-expiry"`) until SIGTERM/SIGINT and returns the exit code.
///
/// `deps` is the result of loading configuration and building shared clients once. An `Err` is not fatal: the
/// process still starts (answers readiness on Azure, polls for invocations on Lambda) and fails every
/// invocation with `500` and that error's message, so events wait in Event Grid's retries until the setting
/// is fixed.
///
/// The adapter is picked from the environment (see [`Adapter::from_env`]); if none fits, the reason goes to
/// stderr and the exit code is non-zero. Nothing slow happens before the adapter serves.
pub async fn run<D, E, F, Fut>(function: &'static str, deps: Result<D, E>, handler: F) -> ExitCode
where
    D: Send + Sync + 'static,
    E: std::fmt::Display,
    F: Fn(keyturn_events::Event, Arc<D>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Outcome, HandlerError>> + Send + 'static,
{
    serve(Invoker::new(function, deps, handler)).await
}

/// [`run`] for a scheduled function (the `sweep`): `handler` takes a [`timer::Tick`] from a `timerTrigger`
/// (Azure Functions) or an EventBridge schedule rule (AWS Lambda).
pub async fn run_timer<D, E, F, Fut>(function: &'static str, deps: Result<D, E>, handler: F) -> ExitCode
where
    D: Send + Sync + 'static,
    E: std::fmt::Display,
    F: Fn(timer::Tick, Arc<D>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Outcome, HandlerError>> + Send + 'static,
{
    serve(Invoker::timer(function, deps, handler)).await
}

/// Serves `invoker` on the adapter the environment names, until SIGTERM/SIGINT.
async fn serve(invoker: Invoker) -> ExitCode {
    init_logging();
    let function = invoker.function();
    if let Some(error) = invoker.not_configured() {
        tracing::error!(
            function,
            %error,
            "not configured: every invocation will fail until this is fixed"
        );
    }
    match Adapter::from_env(|name| std::env::var_os(name)) {
        Ok(Adapter::AzureFunctions { port }) => azure_functions::run(port, invoker).await,
        Ok(Adapter::AwsLambda { secret }) => aws_lambda::run(secret, invoker).await,
        Err(error) => {
            tracing::error!(function, %error, "cannot start");
            // The reason must reach whoever started the process even if it reads no logs.
            let _ = writeln!(std::io::stderr().lock(), "{function}: cannot start: {error}");
            // On Lambda, the invocation waiting for this environment shows the reason too.
            if let Some(api) = Adapter::lambda_runtime_api(|name| std::env::var_os(name))
                && let Err(report) = aws_lambda::init_error::report(&api, &format!("{function}: {error}")).await
            {
                tracing::error!(function, error = %report, "could not report the init error to the Lambda Runtime API");
            }
            ExitCode::from(shutdown::EXIT_NO_ADAPTER)
        }
    }
}
