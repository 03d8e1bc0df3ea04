//! The smallest keyturn handler, run as the function `echo`: it shows the wiring every handler's `main` does
//! (load configuration once, then [`keyturn_host::run`]), and the host's process tests run it to check what only a
//! real process shows: exit codes, signals, readiness, stdout/stderr.
//!
//! Configuration: `HOST_ECHO_GREETING` (required). A Key Vault event is answered `done: <greeting> <event id>`;
//! any other event is skipped. The event's subject drives what the tests need to see, on either adapter:
//! - `sleep-<ms>`: sleep that long first, to hold an invocation open across a stop signal;
//! - `fail-<n>`: a retryable error for the first `n` deliveries of this event id, then done;
//! - `panic-<n>`: a panic for the first `n` deliveries of this event id, then done;
//! - `reject`: a permanent error (acknowledged as rejected).

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use keyturn_events::{Event, Payload};
use keyturn_host::{HandlerError, Outcome};

struct Config {
    greeting: String,
    /// Deliveries seen per event id, for `fail-<n>` and `panic-<n>`. A std Mutex: held for one increment,
    /// never across an await.
    seen: Mutex<HashMap<String, u32>>,
}

impl Config {
    /// Counts this delivery of `event_id` and says whether it is among the first `n`.
    fn within_first(&self, event_id: &str, n: u32) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let count = seen.entry(event_id.to_owned()).or_default();
        *count += 1;
        *count <= n
    }
}

#[derive(Debug, thiserror::Error)]
enum ConfigError {
    #[error("HOST_ECHO_GREETING is not set")]
    MissingGreeting,
}

fn load_config() -> Result<Config, ConfigError> {
    let greeting = std::env::var("HOST_ECHO_GREETING").map_err(|_| ConfigError::MissingGreeting)?;
    Ok(Config { greeting, seen: Mutex::default() })
}

async fn echo(event: Event, config: Arc<Config>) -> Result<Outcome, HandlerError> {
    if let Some(millis) = event.subject.strip_prefix("sleep-").and_then(|ms| ms.parse().ok()) {
        tracing::info!(millis, "sleeping");
        tokio::time::sleep(Duration::from_millis(millis)).await;
    }
    if let Some(n) = event.subject.strip_prefix("fail-").and_then(|n| n.parse().ok())
        && config.within_first(&event.id, n)
    {
        return Err(HandlerError::retryable(format!("asked to fail {n} time(s)")));
    }
    if let Some(n) = event.subject.strip_prefix("panic-").and_then(|n| n.parse().ok())
        && config.within_first(&event.id, n)
    {
        panic!("asked to panic {n} time(s)");
    }
    if event.subject == "reject" {
        return Err(HandlerError::permanent("asked to reject"));
    }
    match event.payload {
        Payload::KeyVault(_) => Ok(Outcome::done(format!("{} {}", config.greeting, event.id))),
        _ => Ok(Outcome::skipped(format!("{} is not a Key Vault event", event.event_type()))),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    keyturn_host::init_logging();
    keyturn_host::run("echo", load_config(), echo).await
}
