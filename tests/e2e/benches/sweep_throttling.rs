//! A sweep over 10,000 objects in 10 vaults at Key Vault's real throttling limits (run with
//! `cargo bench -p keyturn-e2e --bench sweep_throttling`; it
//! builds `sweep` with the deployments' `dist` profile first).
//!
//! The vault emulator enforces Key Vault's per-vault limits (crates/local/src/keyvault/limits.rs: 4,000 "other"
//! secret operations per vault per 10 s, which lists and reads are). The 10,000 secrets are seeded through the
//! emulator's store directly (no HTTP: seeding is not what is measured), each 20 days from expiry, so every one
//! has a due threshold and costs the sweep a versions read after the listing. The real `sweep` binary runs
//! under the Functions host stand-in with its own identity, its retries off (`KEYTURN_RETRY_MAX=0`): a 429 from
//! the vault fails its read and the sweep's outcome says so, so none can hide in a retry. No channel is
//! configured and the state is in memory: the run measures the vault traffic, not notifications.
//!
//! Printed: objects, vaults, requests by class (what the sweep must send: list pages of 25, one versions read
//! per due object), the limit-bound minimum time (the larger of the per-vault bound and the per-subscription
//! bound, 5x a vault's, which the sweep's pacer honours even though the emulator does not enforce it), the
//! measured time, its share of the minimum, and the 429s. Target: no 429, within 10 % of the minimum.
//!
//! tests/sweep_throttling_bench.rs runs the same code on a few hundred objects against the debug binary, so it
//! stays working.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::time::{Duration, Instant};

use keyturn_local::functions_host::InvocationError;

const FUNCTION: &str = "sweep";
/// Key Vault's list page (`maxresults` default and maximum for the emulator, as for the service's SDKs).
const PAGE: usize = 25;
/// Per vault per 10 s, "all other" secret operations; per subscription five times that.
const PER_VAULT_PER_10S: f64 = 4000.0;
const PER_SUBSCRIPTION_PER_10S: f64 = 5.0 * PER_VAULT_PER_10S;

/// What one run found.
#[derive(Debug)]
pub(crate) struct Figures {
    pub(crate) vaults: usize,
    pub(crate) secrets_per_vault: usize,
    pub(crate) seeded: Duration,
    pub(crate) measured: Duration,
    /// The sweep's outcome line (or its failure).
    pub(crate) outcome: String,
    pub(crate) failed: bool,
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is understood.
    let binary = keyturn_e2e::bench::shipped_binary(FUNCTION);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let figures = runtime.block_on(run(&binary, 10, 1000));
    print(&figures);
}

/// Sweeps `vaults` vaults of `secrets_per_vault` due secrets each with `binary`.
pub(crate) async fn run(binary: &std::path::Path, vaults: usize, secrets_per_vault: usize) -> Figures {
    let names: Vec<String> = (0..vaults).map(|i| format!("kv-sweep-{i:02}")).collect();
    let builder = names.iter().fold(
        keyturn_local::keyvault::KeyVaultEmulator::builder()
            .throttling(keyturn_local::keyvault::Throttling::key_vault()),
        |builder, vault| builder.vault(vault.as_str()),
    );
    let grid = keyturn_local::eventgrid::EventGridOptions { time_scale: 0.001, ..Default::default() };
    let stack = keyturn_local::stack::LocalStack::start(builder, grid).await.unwrap();

    let seeding = Instant::now();
    let exp = stack.emulator().clock().now() + chrono::TimeDelta::days(20);
    for vault in &names {
        for i in 0..secrets_per_vault {
            let spec = keyturn_local::keyvault::SecretSpec {
                value: format!("value-{vault}-{i}"),
                content_type: None,
                attributes: keyturn_local::keyvault::store::AttributeInput {
                    exp: Some(exp.timestamp()),
                    ..Default::default()
                },
                tags: Default::default(),
            };
            keyturn_e2e::store_secret(&stack, vault, &format!("app-{i:04}"), spec);
        }
    }
    let seeded = seeding.elapsed();

    let mut settings = stack.handler_env();
    settings.push(("KEYTURN_RETRY_MAX".to_owned(), "0".to_owned()));
    settings.push(("KEYTURN_HTTP_TIMEOUT_SECS".to_owned(), "60".to_owned()));
    let chain = keyturn_e2e::Chain::start_timer(stack, FUNCTION, binary, settings).await;

    let started = Instant::now();
    let result = chain.host.invoke_timer(FUNCTION, false).await;
    let measured = started.elapsed();
    let (outcome, failed) = match result {
        Ok(response) => (response.logs.join("\n"), false),
        Err(InvocationError::Status { body, .. }) => (body, true),
        Err(error) => panic!("the sweep could not be invoked: {error}"),
    };
    chain.shutdown().await;
    Figures { vaults, secrets_per_vault, seeded, measured, outcome, failed }
}

impl Figures {
    /// The 429s the sweep reported.
    pub(crate) fn throttled(&self) -> usize {
        self.outcome.matches("429").count()
    }
}

/// Prints the figures and the limit-bound minimum they are compared with.
pub(crate) fn print(figures: &Figures) {
    let Figures { vaults, secrets_per_vault, seeded, measured, ref outcome, failed } = *figures;
    // What the sweep must send: per vault, the secret list's pages, one (empty) page each of keys and
    // certificates, and a versions read for each due secret.
    let list_pages = secrets_per_vault.div_ceil(PAGE) + 1;
    let key_lists = 1;
    let versions_reads = secrets_per_vault;
    let secret_other = (list_pages + versions_reads) as f64;
    let per_vault_bound = Duration::from_secs_f64(secret_other / PER_VAULT_PER_10S * 10.0);
    let total = (vaults * (list_pages + key_lists + versions_reads)) as f64;
    let subscription_bound = Duration::from_secs_f64(total / PER_SUBSCRIPTION_PER_10S * 10.0);
    let minimum = per_vault_bound.max(subscription_bound);
    let throttled = figures.throttled();

    println!("sweep at Key Vault's limits");
    println!("  objects               {}", vaults * secrets_per_vault);
    println!("  vaults                {vaults}");
    println!("  seeding (direct)      {:.2} s", seeded.as_secs_f64());
    println!(
        "  requests by class     secret/certificate other: {} per vault ({list_pages} list pages, {versions_reads} \
         versions reads); key other: {key_lists} per vault; {} in all",
        list_pages + versions_reads,
        total
    );
    println!(
        "  limit-bound minimum   {:.2} s (per vault {:.2} s, per subscription {:.2} s)",
        minimum.as_secs_f64(),
        per_vault_bound.as_secs_f64(),
        subscription_bound.as_secs_f64()
    );
    println!("  measured              {:.2} s", measured.as_secs_f64());
    println!(
        "  share of the minimum  {:.1} % (target <= 110 %)",
        100.0 * measured.as_secs_f64() / minimum.as_secs_f64()
    );
    println!("  429s                  {throttled} (failed run: {failed})");
    let first_line = outcome.lines().next().unwrap_or_default();
    println!("  outcome               {}", first_line.chars().take(400).collect::<String>());
}
