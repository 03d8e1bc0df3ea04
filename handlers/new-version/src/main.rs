//! The `new-version` function: wiring only. Everything is built once, before the first event; a configuration
//! problem does not stop the process (see `keyturn_host::run`).

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    keyturn_host::init_logging();
    keyturn_host::run(new_version::FUNCTION, new_version::NewVersion::from_env(), new_version::handle).await
}
