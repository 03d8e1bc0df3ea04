//! The cold start of the real `near-expiry` handler on the local Lambda stand-in (run with
//! `cargo bench -p keyturn-e2e --bench lambda_cold_start`; it
//! builds `near-expiry` with the deployments' `dist` profile first).
//!
//! Each run starts a fresh function (a new process, as a new Lambda execution environment) and at once sends
//! one Event Grid delivery to its function URL: a `SecretNearExpiry` batch of one event with the webhook secret.
//! The request waits in the Runtime API while the process initialises, as on Lambda. Measured:
//!
//! - cold start: process spawn → the first event processed (a secret rotated in the Key Vault emulator through
//!   the Azure SDK over HTTPS with a managed identity token, and the function URL's answer back);
//! - of which init: spawn → the first `GET .../invocation/next` (configuration read, clients built);
//! - warm: the same delivery for another secret on a process that has already served one, with keyturn's pacing
//!   off (back to back, every delivery would otherwise wait its turn under the secret-create limit, one per 34 ms:
//!   the figure is keyturn's own cost, not the schedule's).
//!
//! The stack (vault, identity, Event Grid) runs in this process and is started once, outside the measurement.
//! tests/lambda_cold_start_bench.rs runs the same code for a few iterations on the debug binary.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use keyturn_host::{Outcome, Status};
use keyturn_local::lambda::LocalLambda;
use keyturn_local::stack::LocalStack;
use serde_json::Value;

const FUNCTION: &str = "near-expiry";
const VAULT: &str = "kv-bench";
const SECRET: &str = "bench-lambda-webhook-secret-0123456789";

/// How much to measure.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Config {
    /// Fresh processes, each measured from spawn to its first event processed.
    pub(crate) starts: usize,
    /// Events sent one after another to a warm process.
    pub(crate) warm: usize,
}

impl Config {
    pub(crate) fn full() -> Self {
        Config { starts: 30, warm: 100 }
    }

    /// A few iterations: proves the bench still works, measures nothing worth reporting.
    pub(crate) fn smoke() -> Self {
        Config { starts: 2, warm: 2 }
    }
}

/// What was measured, one sample per run.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    pub(crate) cold: Vec<Duration>,
    pub(crate) init: Vec<Duration>,
    pub(crate) warm: Vec<Duration>,
}

/// Seeds an opted-in secret expiring in 31 days; returns its version.
fn seed(stack: &LocalStack, name: &str) -> String {
    let exp = stack.emulator().clock().now() + TimeDelta::days(31);
    keyturn_e2e::bench::seed_opted_in(stack, VAULT, name, format!("seeded-{name}-value"), exp)
}

/// The Event Grid delivery body for `name`'s near-expiry: a batch of one event.
fn delivery(stack: &LocalStack, name: &str, version: &str) -> String {
    let exp = stack.emulator().clock().now() + TimeDelta::days(30);
    let event = keyturn_e2e::secret_near_expiry(&format!("bench-{name}"), VAULT, name, version, exp);
    Value::Array(vec![event.to_value()]).to_string()
}

/// Posts `body` to the function URL as Event Grid does; asserts the secret was rotated.
async fn deliver(client: &reqwest::Client, lambda: &LocalLambda, name: &str, body: String) {
    let response = client
        .post(lambda.url())
        .header("content-type", "application/json")
        .header("aeg-event-type", "Notification")
        .header("x-keyturn-webhook-secret", SECRET)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "{name}: {answer}");
    let outcome = Outcome::from_return_value(&answer["outcomes"][0]);
    let rotated = outcome.is_some_and(|o| {
        (o.status, o.action.as_deref()) == (Status::Done, Some("rotated"))
            && o.object.as_ref().is_some_and(|object| (object.vault(), object.name()) == (VAULT, name))
    });
    assert!(rotated, "{name}: {answer}");
}

async fn function(binary: &Path, settings: &[(String, String)]) -> LocalLambda {
    LocalLambda::builder(binary)
        .function_name(format!("keyturn-{FUNCTION}"))
        .app_settings(settings.iter().cloned())
        .start()
        .await
        .unwrap()
}

pub(crate) async fn run(config: Config, binary: &Path) -> Report {
    let stack = keyturn_e2e::bench::unthrottled_stack(VAULT).await;
    let mut settings = keyturn_e2e::bench::handler_env_as(&stack, FUNCTION);
    settings.push(("KEYTURN_WEBHOOK_SECRET".to_owned(), SECRET.to_owned()));
    // As the Functions host bench runs it: decision lines only at warn, so the figures are not about logging.
    settings.push(("KEYTURN_LOG".to_owned(), "warn".to_owned()));
    let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().unwrap();

    let mut report = Report { cold: Vec::new(), init: Vec::new(), warm: Vec::new() };
    for run in 0..config.starts {
        let name = format!("cold-{run:03}");
        let body = delivery(&stack, &name, &seed(&stack, &name));
        let lambda = function(binary, &settings).await;
        deliver(&client, &lambda, &name, body).await;
        let started = lambda.started_at().unwrap();
        report.cold.push(started.elapsed());
        report.init.push(lambda.runtime().first_poll().unwrap().duration_since(started));
        lambda.shutdown().await;
    }

    let mut unpaced = settings.clone();
    unpaced.push(("KEYTURN_PACING_MAX_WAIT_SECS".to_owned(), "0".to_owned()));
    let lambda = function(binary, &unpaced).await;
    let first = "warm-up".to_owned();
    deliver(&client, &lambda, &first, delivery(&stack, &first, &seed(&stack, &first))).await;
    for run in 0..config.warm {
        let name = format!("warm-{run:03}");
        let body = delivery(&stack, &name, &seed(&stack, &name));
        let begin = Instant::now();
        deliver(&client, &lambda, &name, body).await;
        report.warm.push(begin.elapsed());
    }
    lambda.shutdown().await;

    // Each delivered secret was rotated exactly once.
    for secret in stack.emulator().store().list_secrets(VAULT).unwrap() {
        let versions = stack.emulator().store().list_secret_versions(VAULT, &secret.name).unwrap().len();
        assert_eq!(versions, 2, "{} has {versions} versions", secret.name);
    }
    stack.shutdown().await;
    report
}

pub(crate) fn summary(name: &str, samples: &[Duration]) {
    let mut samples = samples.to_vec();
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    println!(
        "{name}: n={} min={:.1?} median={:.1?} p95={:.1?} max={:.1?}",
        samples.len(),
        at(0.0),
        at(0.5),
        at(0.95),
        at(1.0)
    );
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is understood.
    let binary = keyturn_e2e::bench::shipped_binary(FUNCTION);
    let config = Config::full();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let report = runtime.block_on(run(config, &binary));
    println!("near-expiry on the local Lambda ({}):", binary.display());
    summary("cold start: spawn to first event processed", &report.cold);
    summary("  of which init: spawn to first Runtime API poll", &report.init);
    summary("warm: one delivery on a warm process (pacing off)", &report.warm);
}
