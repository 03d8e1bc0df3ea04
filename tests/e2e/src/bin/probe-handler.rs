//! probe-handler: a test-only keyturn handler, built on `keyturn_host::run` like the real ones, whose behaviour the
//! event's subject steers so tests can drive every path through the Functions host stand-in:
//!
//! | subject | behaviour |
//! |---|---|
//! | `panic` | panics (the adapter answers 500) |
//! | `retry` | a retryable error (500) |
//! | `permanent` | a permanent error (acknowledged, 200) |
//! | `skip` / `reject` | `Outcome::Skipped` / `Outcome::Rejected` |
//! | `sleep-<ms>` | sleeps, then done |
//! | `exit-<code>` | exits the process with that code at once (a crash, a clean exit, an intentional restart) |
//! | anything else | done, echoing what the event decoded to |
//!
//! The function it serves comes from `PROBE_FUNCTION` (an app setting), else the first argument, else
//! `test-event`, so the one binary stands in for any function folder.

use std::convert::Infallible;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use keyturn_host::{HandlerError, Outcome};

/// The app setting naming the function this process serves.
const FUNCTION_VARIABLE: &str = "PROBE_FUNCTION";

#[derive(Debug)]
struct Probe;

#[tokio::main]
async fn main() -> ExitCode {
    let function = std::env::var(FUNCTION_VARIABLE)
        .ok()
        .or_else(|| std::env::args().nth(1))
        .unwrap_or_else(|| "test-event".to_owned());
    // `keyturn_host::run` wants a `&'static str`; the name lives as long as the process anyway.
    let function: &'static str = function.leak();
    keyturn_host::run(function, Ok::<_, Infallible>(Probe), probe).await
}

async fn probe(event: keyturn_events::Event, _probe: Arc<Probe>) -> Result<Outcome, HandlerError> {
    let subject = event.subject.as_str();
    if let Some(millis) = subject.strip_prefix("sleep-").and_then(|ms| ms.parse().ok()) {
        tokio::time::sleep(Duration::from_millis(millis)).await;
        return Ok(Outcome::done(format!("slept {millis} ms; {}", echo(&event))));
    }
    if let Some(code) = subject.strip_prefix("exit-").and_then(|code| code.parse().ok()) {
        eprintln!("probe-handler: exiting with code {code} as event {} asks", event.id);
        std::process::exit(code);
    }
    match subject {
        "panic" => panic!("probe-handler: event {} asks for a panic", event.id),
        "retry" => Err(HandlerError::retryable(format!("event {} asks to be retried", event.id))),
        "permanent" => Err(HandlerError::permanent(format!("event {} asks to fail for good", event.id))),
        "skip" => Ok(Outcome::skipped(echo(&event))),
        "reject" => Ok(Outcome::rejected(echo(&event))),
        _ => Ok(Outcome::done(echo(&event))),
    }
}

/// What the event decoded to, in one line tests can check field by field.
fn echo(event: &keyturn_events::Event) -> String {
    let mut line =
        format!("type={} id={} subject={} schema={:?}", event.event_type(), event.id, event.subject, event.schema);
    if let Some(key_vault) = event.key_vault() {
        let object = &key_vault.object;
        let epoch = |time: Option<chrono::DateTime<chrono::Utc>>| {
            time.map_or("none".to_owned(), |time| time.timestamp().to_string())
        };
        line.push_str(&format!(
            " vault={} kind={:?} name={} version={} nbf={} exp={}",
            object.vault_name(),
            object.kind(),
            object.name(),
            object.version().unwrap_or("none"),
            epoch(object.not_before()),
            epoch(object.expires()),
        ));
    }
    line
}
