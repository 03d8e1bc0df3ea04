//! How fast and how small the `near-expiry` handler is, measured on the real binary (run with
//! `cargo bench -p keyturn-e2e --bench near_expiry`; it builds `near-expiry` in release first):
//!
//! - start to ready: process spawn to the first `200` on `GET /` (target under 10 ms: the Functions host starts
//!   handlers cold);
//! - resident memory of an idle handler: VmRSS from /proc/<pid>/status after start, and again after the
//!   throughput runs (target under 15 MB idle);
//! - rotations per second through the whole local stack with throttling off: secrets reach exp − 30 days at
//!   once, Event Grid delivers to the Functions host stand-in, which invokes the handler, which rotates through
//!   the Azure SDK against the vault emulator over HTTPS (target at least 1,000/s on two cores);
//! - rotations per second driving the handler's route directly (`POST /near-expiry` with the custom-handler
//!   envelope, bypassing Event Grid and the stand-in), to show how much of the time the stand-ins take;
//! - for both runs, the CPU seconds the handler process and this process (vault emulator, Event Grid, stand-in)
//!   spent, to show where a bottleneck is.
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
use keyturn_host::azure_functions::wire::InvocationRequest;
use keyturn_local::stack::LocalStack;

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
}

impl Config {
    pub(crate) fn full() -> Self {
        Config { starts: 30, chain_secrets: 2000, direct_secrets: 2000, concurrency: 64 }
    }

    /// A few iterations: proves the bench still works, measures nothing worth reporting.
    pub(crate) fn smoke() -> Self {
        Config { starts: 2, chain_secrets: 20, direct_secrets: 20, concurrency: 4 }
    }
}

/// What was measured.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    pub(crate) start_to_ready: Vec<Duration>,
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
    let mut settings = stack.handler_env();
    settings.push(("KEYTURN_LOG".to_owned(), "warn".to_owned()));
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
    let settings = handler_settings(&stack);
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
    let handler = spawn(binary, port, &handler_settings(&stack));
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
                    assert!(text.contains("done: rotated"), "{text}");
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

/// Runs every measurement with `binary` (a `near-expiry` executable).
pub(crate) async fn run(config: Config, binary: &Path) -> Report {
    let env_stack = keyturn_e2e::bench::unthrottled_stack(VAULT).await;
    let env = handler_settings(&env_stack);
    let (start_to_ready, idle_rss_kb) = tokio::task::block_in_place(|| measure_starts(binary, &env, config.starts));
    env_stack.shutdown().await;
    let chain = measure_chain(binary, config.chain_secrets).await;
    let (direct, rss_after_kb) = measure_direct(binary, config.direct_secrets, config.concurrency).await;
    Report { start_to_ready, idle_rss_kb, chain, direct, rss_after_kb }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn print(report: &Report, config: &Config) {
    let starts = &report.start_to_ready;
    println!(
        "near-expiry ({} cold starts, {} + {} rotations)",
        starts.len(),
        config.chain_secrets,
        config.direct_secrets
    );
    println!(
        "  start to ready: median {:.2} ms, p90 {:.2} ms, min {:.2} ms, max {:.2} ms (target < 10 ms)",
        percentile(starts, 0.5).as_secs_f64() * 1e3,
        percentile(starts, 0.9).as_secs_f64() * 1e3,
        starts[0].as_secs_f64() * 1e3,
        starts[starts.len() - 1].as_secs_f64() * 1e3
    );
    println!(
        "  idle VmRSS: {:.1} MB (target < 15 MB); after {} direct rotations: {:.1} MB",
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
    let binary = keyturn_e2e::bench::release_binary(FUNCTION);
    let config = Config::full();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let report = runtime.block_on(run(config, &binary));
    print(&report, &config);
}
