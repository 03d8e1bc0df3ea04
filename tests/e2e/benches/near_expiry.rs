//! How fast and how small the `near-expiry` handler is, measured on the real binary (run with
//! `cargo bench -p keyturn-e2e --bench near_expiry`; it
//! builds `near-expiry` with the deployments' `dist` profile first):
//!
//! - start to ready: process spawn to the first `200` on `GET /`, configured as `keyturn dev` configures it
//!   (vault, CA file, managed identity), unconfigured (no `KEYTURN_*`), and for a bare warp server
//!   (tests/e2e/bare-warp) in the same run; target: configured within 1.5x the bare server (the Functions host
//!   starts handlers cold and sends nothing until `GET /` answers);
//! - resident memory of an idle handler: VmRSS from /proc/<pid>/status after start, and again after the
//!   throughput runs (target at most 10 MB idle);
//! - rotations per second through the whole local stack with throttling (and keyturn's pacing) off: secrets
//!   reach exp − 30 days at once, Event Grid delivers to the Functions host stand-in, which invokes the handler,
//!   which rotates through the Azure SDK against the vault emulator over HTTPS (target at least 1,000/s on two
//!   cores);
//! - rotations per second driving the handler's route directly (`POST /near-expiry` with the custom-handler
//!   envelope, bypassing Event Grid and the stand-in), to show how much of the time the stand-ins take;
//! - for both runs, the CPU seconds the handler process and this process (vault emulator, Event Grid, stand-in)
//!   spent, to show where a bottleneck is;
//! - throttled: 1,000 secrets near expiry at once through the whole chain with the vault emulator at Key Vault's
//!   real limits (secret create: 300 per 10 s), as a share of the fastest the limit allows, with the handler's
//!   pacing at its defaults, twice: Event Grid's retry schedule at 1/500 of real time (as the e2e test), then at
//!   real time (what a deployment sees: an event whose turn lies too far ahead comes back 10 s, then 30 s later); with the handler's own retries off, every 429 the vault sends fails an invocation
//!   and is counted (target: at least 97 % of the limit, none lost, none rotated twice, none dead-lettered, no
//!   429);
//! - on the local Lambda stand-in, in the same run: init and cold start to the first rotation, and a warm
//!   delivery (benches/lambda_cold_start.rs, which also runs alone; target: cold start at most 15 ms).
//!
//! tests/near_expiry_bench.rs runs the same code for a few iterations on the debug binary, so it stays working.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use keyturn_e2e::{Chain, NEAR_EXPIRY_EVENT_TYPES};
use keyturn_host::Status;
use keyturn_host::azure_functions::wire::{InvocationRequest, InvocationResponse};
use keyturn_local::stack::LocalStack;

#[path = "lambda_cold_start.rs"]
mod lambda;

const FUNCTION: &str = "near-expiry";
const VAULT: &str = "kv-bench";

/// How much to measure.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Config {
    /// Cold starts measured.
    pub(crate) starts: usize,
    /// Secrets rotated through the whole chain.
    pub(crate) chain_secrets: usize,
    /// Secrets rotated by posting to the handler's route directly.
    pub(crate) direct_secrets: usize,
    /// Invocations in flight at once when posting directly.
    pub(crate) concurrency: usize,
    /// Secrets rotated through the whole chain at Key Vault's real limits.
    pub(crate) throttled_secrets: usize,
}

impl Config {
    pub(crate) fn full() -> Self {
        Config { starts: 30, chain_secrets: 2000, direct_secrets: 2000, concurrency: 64, throttled_secrets: 1000 }
    }

    /// A few iterations: proves the bench still works, measures nothing worth reporting.
    pub(crate) fn smoke() -> Self {
        Config { starts: 2, chain_secrets: 20, direct_secrets: 20, concurrency: 4, throttled_secrets: 20 }
    }
}

/// What was measured.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    /// Configured as `keyturn dev` configures a handler.
    pub(crate) start_to_ready: Vec<Duration>,
    /// No `KEYTURN_*` setting at all.
    pub(crate) unconfigured_start_to_ready: Vec<Duration>,
    /// The bare warp server.
    pub(crate) bare_start_to_ready: Vec<Duration>,
    /// Event Grid's retries at 1/500 of real time, as the e2e test runs them.
    pub(crate) throttled: Throttled,
    /// Event Grid's retries at real time (10 s, 30 s, 1 min, ...): what a deployment would see.
    pub(crate) throttled_real_retries: Throttled,
    pub(crate) idle_rss_kb: u64,
    pub(crate) chain: Throughput,
    pub(crate) direct: Throughput,
    pub(crate) rss_after_kb: u64,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Throughput {
    pub(crate) rotations: usize,
    pub(crate) elapsed: Duration,
    /// CPU time of the handler process during the run.
    pub(crate) handler_cpu: Duration,
    /// CPU time of this process (vault emulator, Event Grid, stand-in, client) during the run.
    pub(crate) stack_cpu: Duration,
}

/// The throttled run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Throttled {
    pub(crate) secrets: usize,
    pub(crate) elapsed: Duration,
    /// Event Grid deliveries after the first of an event (a declined pacing slot, a 429, a timeout).
    pub(crate) redeliveries: usize,
    /// Requests the vault refused with 429 (the emulator counts them).
    pub(crate) vault_429s: usize,
    /// Secrets without exactly one new version.
    pub(crate) not_once: usize,
    pub(crate) dead_lettered: usize,
}

impl Throttled {
    /// Key Vault's secret-create limit, per vault.
    const CREATES_PER_10_S: f64 = 300.0;

    /// The fastest the limit allows over the time taken: 1.0 is every window full.
    pub(crate) fn share_of_limit(&self) -> f64 {
        let fastest = self.secrets as f64 / Self::CREATES_PER_10_S * 10.0;
        fastest / self.elapsed.as_secs_f64()
    }
}

impl Throughput {
    pub(crate) fn per_second(&self) -> f64 {
        self.rotations as f64 / self.elapsed.as_secs_f64()
    }
}

/// Kills the handler even if the bench panics.
struct Handler(Child);

impl Drop for Handler {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn spawn(binary: &Path, port: u16, env: &[(String, String)]) -> Handler {
    let child = Command::new(binary)
        .env_clear()
        .envs(env.iter().map(|(name, value)| (name.as_str(), value.as_str())))
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("KEYTURN_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Handler(child)
}

/// Polls `GET /` until the handler answers 200; returns when it did.
fn wait_ready(port: u16, limit: Duration) -> Instant {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = stream.set_nodelay(true);
            let head = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
            let mut answer = [0u8; 12];
            if stream.write_all(head.as_bytes()).is_ok()
                && stream.read_exact(&mut answer).is_ok()
                && answer.starts_with(b"HTTP/1.1 200")
            {
                return Instant::now();
            }
        }
        assert!(Instant::now() < deadline, "the handler was not ready within {limit:?}");
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn vm_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// User + system CPU time of a process, from /proc/<pid>/stat (clock ticks of 1/100 s, Linux's USER_HZ).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name may hold spaces; the fields after its closing parenthesis are fixed.
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// Seeds `count` opted-in secrets expiring in 31 days; returns (name, version, exp) of each.
fn seed(stack: &LocalStack, prefix: &str, count: usize) -> Vec<(String, String, chrono::DateTime<chrono::Utc>)> {
    let exp = stack.emulator().clock().now() + TimeDelta::days(31);
    (0..count)
        .map(|i| {
            let name = format!("{prefix}-{i:05}");
            let version = keyturn_e2e::bench::seed_opted_in(stack, VAULT, &name, format!("seeded-{name}"), exp);
            (name, version, exp)
        })
        .collect()
}

fn handler_settings(stack: &LocalStack) -> Vec<(String, String)> {
    let mut settings = keyturn_e2e::bench::handler_env_as(stack, "near-expiry");
    settings.push(("KEYTURN_LOG".to_owned(), "warn".to_owned()));
    settings
}

/// [`handler_settings`] without keyturn's own pacing of secret creates (300 per vault per 10 s), for the runs
/// against an unthrottled vault: they measure keyturn's own cost per rotation, which the pacing would hide.
fn unpaced_handler_settings(stack: &LocalStack) -> Vec<(String, String)> {
    let mut settings = handler_settings(stack);
    settings.push(("KEYTURN_PACING_MAX_WAIT_SECS".to_owned(), "0".to_owned()));
    settings
}

fn rotated_all(stack: &LocalStack, secrets: &[(String, String, chrono::DateTime<chrono::Utc>)]) {
    for (name, _, _) in secrets {
        let versions = stack.emulator().store().list_secret_versions(VAULT, name).unwrap().len();
        assert_eq!(versions, 2, "{name} has {versions} versions");
    }
}

/// Cold starts: spawn to first readiness answer, then the idle process's VmRSS.
fn measure_starts(binary: &Path, env: &[(String, String)], starts: usize) -> (Vec<Duration>, u64) {
    let mut times = Vec::with_capacity(starts);
    let mut rss = 0;
    for _ in 0..starts {
        let port = free_port();
        let spawned = Instant::now();
        let handler = spawn(binary, port, env);
        let ready = wait_ready(port, Duration::from_secs(10));
        times.push(ready - spawned);
        std::thread::sleep(Duration::from_millis(200));
        rss = rss.max(vm_rss_kb(handler.0.id()));
    }
    times.sort();
    (times, rss)
}

/// Every secret near expiry at once, through Event Grid and the stand-in.
async fn measure_chain(binary: &Path, count: usize) -> Throughput {
    let stack = keyturn_e2e::bench::unthrottled_stack(VAULT).await;
    let secrets = seed(&stack, "chain", count);
    let settings = unpaced_handler_settings(&stack);
    let chain = Chain::start(stack, FUNCTION, binary, &NEAR_EXPIRY_EVENT_TYPES, settings).await;
    let pid = chain.host.worker_pid().unwrap();
    let (handler_before, own_before) = (cpu_time(pid), cpu_time(std::process::id()));
    let started = Instant::now();
    chain.stack.emulator().clock().advance(Duration::from_secs(24 * 3600));
    chain.settle(count, Duration::from_secs(300)).await;
    let elapsed = started.elapsed();
    let throughput = Throughput {
        rotations: count,
        elapsed,
        handler_cpu: cpu_time(pid) - handler_before,
        stack_cpu: cpu_time(std::process::id()) - own_before,
    };
    rotated_all(&chain.stack, &secrets);
    assert!(chain.stack.grid().dead_letters().is_empty());
    chain.shutdown().await;
    throughput
}

/// The handler's route posted to directly, `concurrency` invocations in flight; returns the throughput and the
/// handler's VmRSS afterwards.
async fn measure_direct(binary: &Path, count: usize, concurrency: usize) -> (Throughput, u64) {
    let stack = keyturn_e2e::bench::unthrottled_stack(VAULT).await;
    let secrets = seed(&stack, "direct", count);
    let port = free_port();
    let handler = spawn(binary, port, &unpaced_handler_settings(&stack));
    wait_ready(port, Duration::from_secs(10));
    let pid = handler.0.id();
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        secrets
            .iter()
            .enumerate()
            .map(|(i, (name, version, exp))| {
                let event = keyturn_e2e::secret_near_expiry(&format!("bench-{i}"), VAULT, name, version, *exp);
                serde_json::to_vec(&InvocationRequest::for_event(event.to_value())).unwrap()
            })
            .collect(),
    );
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("http://127.0.0.1:{port}/{FUNCTION}");
    let next = Arc::new(AtomicUsize::new(0));
    let (handler_before, own_before) = (cpu_time(pid), cpu_time(std::process::id()));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, bodies, next) = (client.clone(), url.clone(), bodies.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else { return };
                    let response = client
                        .post(&url)
                        .header("Content-Type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap_or_default());
                    let text = response.text().await.unwrap();
                    let outcome = serde_json::from_str::<InvocationResponse>(&text).ok().and_then(|a| a.outcome());
                    assert!(
                        outcome.is_some_and(|o| (o.status, o.action.as_deref()) == (Status::Done, Some("rotated"))),
                        "{text}"
                    );
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    let elapsed = started.elapsed();
    let throughput = Throughput {
        rotations: count,
        elapsed,
        handler_cpu: cpu_time(pid) - handler_before,
        stack_cpu: cpu_time(std::process::id()) - own_before,
    };
    rotated_all(&stack, &secrets);
    let rss = vm_rss_kb(pid);
    drop(handler);
    stack.shutdown().await;
    (throughput, rss)
}

/// Every secret near expiry at once through the whole chain, the vault at Key Vault's real limits.
/// `event_grid_time_scale`: 1.0 runs Event Grid's retry schedule at real time (10 s, 30 s, 1 min, ...); 0.002 at
/// 1/500 of it (retries after 20 ms, 60 ms, ...), as tests/near_expiry_throttling.rs runs it.
async fn measure_throttled(binary: &Path, count: usize, event_grid_time_scale: f64) -> Throttled {
    let options =
        keyturn_local::eventgrid::EventGridOptions { time_scale: event_grid_time_scale, ..Default::default() };
    let builder = keyturn_local::keyvault::KeyVaultEmulator::builder()
        .vault(VAULT)
        .throttling(keyturn_local::keyvault::Throttling::key_vault());
    let stack = LocalStack::start(builder, options).await.unwrap();
    let secrets = seed(&stack, "throttled", count);
    let mut settings = handler_settings(&stack);
    // No retry inside the handler: a 429 from the vault fails its invocation (Event Grid redelivers it).
    settings.push(("KEYTURN_RETRY_MAX".to_owned(), "0".to_owned()));
    let chain = Chain::start(stack, FUNCTION, binary, &NEAR_EXPIRY_EVENT_TYPES, settings).await;
    let started = Instant::now();
    chain.stack.emulator().clock().advance(Duration::from_secs(24 * 3600));
    chain.settle(count, Duration::from_secs(300)).await;
    let elapsed = started.elapsed();
    let store = chain.stack.emulator().store();
    let not_once = secrets
        .iter()
        .filter(|(name, _, _)| store.list_secret_versions(VAULT, name).map_or(0, |v| v.len()) != 2)
        .count();
    let redeliveries = chain.attempts().iter().filter(|attempt| attempt.attempt > 1).count();
    // Every request the vault refused, as the emulator counted them.
    let vault_429s = chain.stack.emulator().throttled();
    let dead_lettered = chain.stack.grid().dead_letters().len();
    chain.shutdown().await;
    Throttled { secrets: count, elapsed, redeliveries, vault_429s, not_once, dead_lettered }
}

/// Runs every measurement with `binary` (a `near-expiry` executable) and `bare` (the bare warp server).
pub(crate) async fn run(config: Config, binary: &Path, bare: &Path) -> Report {
    let env_stack = keyturn_e2e::bench::unthrottled_stack(VAULT).await;
    let env = handler_settings(&env_stack);
    // Interleaved, so that the machine's load falls on all three alike.
    let (mut start_to_ready, mut unconfigured, mut bare_starts, mut idle_rss_kb) = (vec![], vec![], vec![], 0);
    tokio::task::block_in_place(|| {
        for _ in 0..config.starts {
            let (times, rss) = measure_starts(binary, &env, 1);
            start_to_ready.extend(times);
            idle_rss_kb = idle_rss_kb.max(rss);
            unconfigured.extend(measure_starts(binary, &[], 1).0);
            bare_starts.extend(measure_starts(bare, &[], 1).0);
        }
    });
    for times in [&mut start_to_ready, &mut unconfigured, &mut bare_starts] {
        times.sort();
    }
    env_stack.shutdown().await;
    let chain = measure_chain(binary, config.chain_secrets).await;
    let (direct, rss_after_kb) = measure_direct(binary, config.direct_secrets, config.concurrency).await;
    let throttled = measure_throttled(binary, config.throttled_secrets, 0.002).await;
    let throttled_real_retries = measure_throttled(binary, config.throttled_secrets, 1.0).await;
    Report {
        start_to_ready,
        unconfigured_start_to_ready: unconfigured,
        bare_start_to_ready: bare_starts,
        throttled,
        throttled_real_retries,
        idle_rss_kb,
        chain,
        direct,
        rss_after_kb,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn print(report: &Report, config: &Config) {
    let starts = &report.start_to_ready;
    println!(
        "near-expiry ({} cold starts of each, {} + {} rotations, {} throttled)",
        starts.len(),
        config.chain_secrets,
        config.direct_secrets,
        config.throttled_secrets
    );
    for (label, times) in [
        ("configured (as keyturn dev)", starts),
        ("unconfigured (no KEYTURN_*)", &report.unconfigured_start_to_ready),
        ("bare warp server", &report.bare_start_to_ready),
    ] {
        println!(
            "  start to ready, {label}: median {:.2} ms, p90 {:.2} ms, min {:.2} ms, max {:.2} ms",
            ms(percentile(times, 0.5)),
            ms(percentile(times, 0.9)),
            ms(times[0]),
            ms(times[times.len() - 1])
        );
    }
    let bare = ms(percentile(&report.bare_start_to_ready, 0.5));
    println!(
        "  ratio to the bare server (medians): configured {:.2}x, unconfigured {:.2}x (target: configured <= 1.5x)",
        ms(percentile(starts, 0.5)) / bare,
        ms(percentile(&report.unconfigured_start_to_ready, 0.5)) / bare
    );
    for (retries, t) in [
        ("Event Grid's retries at 1/500 of real time", &report.throttled),
        ("Event Grid's retries at real time", &report.throttled_real_retries),
    ] {
        println!(
            "  throttled ({} secrets at 300 creates per 10 s; {retries}): {:.2} s, {:.1} % of the limit (target >= \
             97 %); {} not rotated exactly once, {} dead-lettered, {} vault 429s, {} redeliveries",
            t.secrets,
            t.elapsed.as_secs_f64(),
            t.share_of_limit() * 100.0,
            t.not_once,
            t.dead_lettered,
            t.vault_429s,
            t.redeliveries
        );
    }
    println!(
        "  idle VmRSS (configured): {:.1} MB (target <= 10 MB); after {} direct rotations: {:.1} MB",
        report.idle_rss_kb as f64 / 1024.0,
        config.direct_secrets,
        report.rss_after_kb as f64 / 1024.0
    );
    for (label, t) in [
        ("whole chain (vault emulator → Event Grid → stand-in → handler)", &report.chain),
        (&*format!("handler route directly ({} in flight)", config.concurrency), &report.direct),
    ] {
        println!(
            "  {label}: {:.0} rotations/s ({} in {:.2} s); CPU: handler {:.2} s, stack process {:.2} s",
            t.per_second(),
            t.rotations,
            t.elapsed.as_secs_f64(),
            t.handler_cpu.as_secs_f64(),
            t.stack_cpu.as_secs_f64()
        );
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is understood.
    let binary = keyturn_e2e::bench::shipped_binary(FUNCTION);
    let bare = keyturn_e2e::bench::shipped_binary("bare-warp");
    let config = Config::full();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let report = runtime.block_on(run(config, &binary, &bare));
    print(&report, &config);
    // Lambda in the same run (benches/lambda_cold_start.rs alone prints the same lines).
    let lambda = runtime.block_on(lambda::run(lambda::Config::full(), &binary));
    println!("  on the local Lambda (target: cold start to first rotation <= 15 ms, median):");
    lambda::summary("    cold start: spawn to first event processed (a secret rotated)", &lambda.cold);
    lambda::summary("      of which init: spawn to first Runtime API poll", &lambda.init);
    lambda::summary("    warm: one delivery on a warm process (pacing off)", &lambda.warm);
}
