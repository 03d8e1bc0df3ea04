//! The smallest keyturn handler, run as the function `echo`: it shows the wiring every handler's `main` does
//! (load configuration once, then [`host::run`]), and the host's process tests run it to check what only a
//! real process shows: exit codes, signals, readiness, stdout/stderr.
//!
//! Configuration: `HOST_ECHO_GREETING` (required). A Key Vault event is answered `done: <greeting> <event id>`;
//! any other event is skipped. An event whose subject is `sleep-<ms>` first sleeps that long, so that tests can
//! hold an invocation open across a stop signal.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use events::{Event, Payload};
use host::{HandlerError, Outcome};

struct Config {
    greeting: String,
}

#[derive(Debug, thiserror::Error)]
enum ConfigError {
    #[error("HOST_ECHO_GREETING is not set")]
    MissingGreeting,
}

fn load_config() -> Result<Config, ConfigError> {
    let greeting = std::env::var("HOST_ECHO_GREETING").map_err(|_| ConfigError::MissingGreeting)?;
    Ok(Config { greeting })
}

async fn echo(event: Event, config: Arc<Config>) -> Result<Outcome, HandlerError> {
    if let Some(millis) = event.subject.strip_prefix("sleep-").and_then(|ms| ms.parse().ok()) {
        tracing::info!(millis, "sleeping");
        tokio::time::sleep(Duration::from_millis(millis)).await;
    }
    match event.payload {
        Payload::KeyVault(_) => Ok(Outcome::Done(format!("{} {}", config.greeting, event.id))),
        _ => Ok(Outcome::Skipped(format!("{} is not a Key Vault event", event.event_type()))),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    host::init_logging();
    host::run("echo", load_config(), echo).await
}
