//! The `near-expiry` function: wiring only. Everything is built once, before the first event; a configuration
//! problem does not stop the process (see `host::run`).

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    host::init_logging();
    host::run(near_expiry::FUNCTION, deps::Deps::from_env(), near_expiry::handle).await
}
