//! The `sweep` function: wiring only. Everything is built once, before the first tick; a configuration
//! problem does not stop the process (see `keyturn_host::run_timer`).

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    keyturn_host::init_logging();
    keyturn_host::run_timer(sweep::FUNCTION, sweep::SweepDeps::from_env(), sweep::handle).await
}
