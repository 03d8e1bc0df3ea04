//! The handler process: started with the Functions host's environment, polled until ready, and restarted after
//! a crash by the host's rules (reference/functions-custom-handler.md, "Timeouts and crashes"):
//! exit 0 is not restarted, exit 200 is an intentional restart that does not count, anything else is a crash,
//! and the third crash inside 30 minutes stops the host.

use std::collections::{BTreeMap, VecDeque};
use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use keyturn_host::azure_functions::wire::PORT_VARIABLE;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::output::HandlerOutput;

/// The readiness poll interval the real host uses.
const READINESS_INTERVAL: Duration = Duration::from_millis(25);
/// The exit code by which a worker asks to be restarted without it counting as a crash.
const INTENTIONAL_RESTART_EXIT_CODE: i32 = 200;
/// The real host stops after this many crashes inside [`CRASH_WINDOW`].
const CRASH_LIMIT: usize = 3;
const CRASH_WINDOW: Duration = Duration::from_secs(30 * 60);

/// Where the handler process is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerStatus {
    /// Started (or restarted) and not yet answering `GET /`.
    Starting,
    /// Answering on `127.0.0.1:<port>`. `generation` counts starts: 1 for the first, +1 per restart.
    Running { pid: u32, port: u16, generation: u64 },
    /// The handler exited with code 0. The real host does not restart it, so every invocation fails from now on.
    Exited,
    /// The host stopped: the handler crashed too often or could not be started. The text says why.
    Failed(String),
    /// [`super::FunctionsHost::shutdown`] stopped the handler.
    ShutDown,
}

impl WorkerStatus {
    /// Whether nothing will change this status any more.
    pub fn is_final(&self) -> bool {
        matches!(self, WorkerStatus::Exited | WorkerStatus::Failed(_) | WorkerStatus::ShutDown)
    }
}

/// Everything needed to start the handler process, resolved from host.json and the caller's options.
#[derive(Debug, Clone)]
pub(crate) struct WorkerConfig {
    pub(crate) executable: PathBuf,
    pub(crate) arguments: Vec<String>,
    pub(crate) working_directory: PathBuf,
    /// App settings plus the host's own variables except the per-start port and worker id.
    pub(crate) env: BTreeMap<String, String>,
    pub(crate) init_timeout: Duration,
    pub(crate) shutdown_grace: Duration,
}

/// The running supervisor of the handler process.
#[derive(Debug)]
pub(crate) struct Worker {
    status: watch::Receiver<WorkerStatus>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Worker {
    /// Starts the supervisor, which starts the handler process at once.
    pub(crate) fn spawn(config: WorkerConfig, output: HandlerOutput) -> Worker {
        let (status_sender, status) = watch::channel(WorkerStatus::Starting);
        let (stop, stop_receiver) = watch::channel(false);
        let task = tokio::spawn(supervise(config, output, status_sender, stop_receiver));
        Worker { status, stop, task }
    }

    pub(crate) fn status(&self) -> watch::Receiver<WorkerStatus> {
        self.status.clone()
    }

    /// Stops the handler (SIGTERM, then SIGKILL after the grace period) and waits until it is gone.
    pub(crate) async fn shutdown(&mut self) {
        // Sending fails only when the supervisor already returned (a final status): nothing to stop then.
        let _ = self.stop.send(true);
        if let Err(error) = (&mut self.task).await
            && error.is_panic()
        {
            tracing::error!(%error, "the handler supervisor panicked");
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Dropping the supervisor drops the `Child`, whose `kill_on_drop` sends SIGKILL: no process outlives us.
        self.task.abort();
    }
}

/// How one handler process ended, as the host classifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ending {
    /// Exit code 0: not restarted.
    Clean,
    /// Exit code 200: restarted, not counted.
    IntentionalRestart,
    /// Anything else; the text describes it for the log.
    Crash(String),
}

fn classify(status: ExitStatus) -> Ending {
    match status.code() {
        Some(0) => Ending::Clean,
        Some(INTENTIONAL_RESTART_EXIT_CODE) => Ending::IntentionalRestart,
        Some(code) => Ending::Crash(format!("exit code {code}")),
        None => Ending::Crash(describe_signal(status)),
    }
}

fn describe_signal(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status.signal() {
        Some(signal) => format!("killed by signal {signal}"),
        None => status.to_string(),
    }
}

/// The host's crash counter: crashes older than the window are forgotten.
#[derive(Debug)]
struct CrashCounter {
    crashes: VecDeque<Instant>,
}

impl CrashCounter {
    fn new() -> Self {
        CrashCounter { crashes: VecDeque::new() }
    }

    /// Records a crash at `now`; returns how many crashes the window now holds.
    fn record(&mut self, now: Instant) -> usize {
        while self.crashes.front().is_some_and(|&crash| now.duration_since(crash) >= CRASH_WINDOW) {
            self.crashes.pop_front();
        }
        self.crashes.push_back(now);
        self.crashes.len()
    }
}

/// What ended one run of the handler process.
enum RunEnd {
    Exited(ExitStatus),
    /// The process was given up on (not ready in time); the text says why.
    GaveUp(String),
    Stopped,
}

async fn supervise(
    config: WorkerConfig,
    output: HandlerOutput,
    status: watch::Sender<WorkerStatus>,
    mut stop: watch::Receiver<bool>,
) {
    let client = match reqwest::Client::builder().no_proxy().build() {
        Ok(client) => client,
        Err(error) => {
            status.send_replace(WorkerStatus::Failed(format!("cannot build an HTTP client: {error}")));
            return;
        }
    };
    let mut crashes = CrashCounter::new();
    let mut generation = 0;
    loop {
        generation += 1;
        status.send_replace(WorkerStatus::Starting);
        let (mut child, pid, port) = match start(&config, &output) {
            Ok(started) => started,
            Err(message) => {
                tracing::error!(%message, "cannot start the handler; the host stops");
                status.send_replace(WorkerStatus::Failed(message));
                return;
            }
        };
        tracing::info!(pid, port, generation, executable = %config.executable.display(), "handler started");

        // `None`: the handler is ready. Two selects, because both need `child` and `stop`.
        let early_end = tokio::select! {
            ended = child.wait() => Some(exited(ended)),
            ready = wait_ready(&client, port, config.init_timeout) => ready.err().map(RunEnd::GaveUp),
            _ = stop.wait_for(|stop| *stop) => Some(RunEnd::Stopped),
        };
        let end = match early_end {
            Some(end) => end,
            None => {
                tracing::info!(pid, port, generation, "handler ready");
                status.send_replace(WorkerStatus::Running { pid, port, generation });
                tokio::select! {
                    ended = child.wait() => exited(ended),
                    _ = stop.wait_for(|stop| *stop) => RunEnd::Stopped,
                }
            }
        };

        let ending = match end {
            RunEnd::Stopped => {
                terminate(&mut child, pid, config.shutdown_grace).await;
                status.send_replace(WorkerStatus::ShutDown);
                return;
            }
            RunEnd::GaveUp(message) => {
                // The real host gives up on this process and counts it like a crash.
                let _ = child.kill().await;
                Ending::Crash(message)
            }
            RunEnd::Exited(exit) => classify(exit),
        };
        match ending {
            Ending::Clean => {
                tracing::warn!(pid, "handler exited with code 0; like the real host, it is not restarted");
                status.send_replace(WorkerStatus::Exited);
                return;
            }
            Ending::IntentionalRestart => {
                tracing::info!(pid, "handler exited with code 200: restarting it (not counted as a crash)");
            }
            Ending::Crash(how) => {
                let count = crashes.record(Instant::now());
                if count >= CRASH_LIMIT {
                    let message = format!(
                        "the handler crashed {count} times within {} minutes (last: {how}); the host stopped",
                        CRASH_WINDOW.as_secs() / 60
                    );
                    tracing::error!(pid, %message);
                    status.send_replace(WorkerStatus::Failed(message));
                    return;
                }
                tracing::warn!(pid, crash = count, %how, "handler crashed; restarting it");
            }
        }
    }
}

fn exited(ended: std::io::Result<ExitStatus>) -> RunEnd {
    match ended {
        Ok(status) => RunEnd::Exited(status),
        // Waiting on our own child fails only if the OS lost it: treat it like a crash we cannot describe.
        Err(error) => RunEnd::GaveUp(format!("cannot wait for the handler process: {error}")),
    }
}

/// Starts one handler process on a fresh port and wires its output into `output`.
fn start(config: &WorkerConfig, output: &HandlerOutput) -> Result<(Child, u32, u16), String> {
    let port = free_port().map_err(|error| format!("cannot find a free port for the handler: {error}"))?;
    let mut child = Command::new(&config.executable)
        .args(&config.arguments)
        .current_dir(&config.working_directory)
        .envs(&config.env)
        .env(PORT_VARIABLE, port.to_string())
        .env("FUNCTIONS_CUSTOMHANDLER_WORKER_ID", uuid::Uuid::new_v4().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| {
            format!(
                "cannot start the handler {} (in {}): {error}",
                config.executable.display(),
                config.working_directory.display()
            )
        })?;
    // A spawned child has a pid until it is waited for, which has not happened yet.
    let pid = child.id().unwrap_or_default();
    if let Some(stdout) = child.stdout.take() {
        tokio::spawn(output.clone().capture(stdout, super::output::Stream::Stdout, pid));
    }
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(output.clone().capture(stderr, super::output::Stream::Stderr, pid));
    }
    Ok((child, pid, port))
}

/// A port nobody listens on right now. The handler binds it a moment later; should another process take it in
/// between, the handler fails to listen, exits, and is restarted on another port.
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}

/// Polls `GET /` every 25 ms until any HTTP answer arrives, as the real host does.
async fn wait_ready(client: &reqwest::Client, port: u16, init_timeout: Duration) -> Result<(), String> {
    let url = format!("http://127.0.0.1:{port}/");
    let poll = async {
        loop {
            // Any status counts, even 404: the host only needs to know the handler listens.
            if client.get(&url).timeout(Duration::from_secs(1)).send().await.is_ok() {
                return;
            }
            tokio::time::sleep(READINESS_INTERVAL).await;
        }
    };
    tokio::time::timeout(init_timeout, poll)
        .await
        .map_err(|_| format!("the handler did not answer GET {url} within {init_timeout:?}"))
}

/// SIGTERM, then SIGKILL once `grace` has passed.
async fn terminate(child: &mut Child, pid: u32, grace: Duration) {
    let signalled = i32::try_from(pid)
        .ok()
        .map(|pid| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM));
    if matches!(signalled, Some(Ok(()))) {
        match tokio::time::timeout(grace, child.wait()).await {
            Ok(Ok(status)) => {
                tracing::info!(pid, %status, "handler stopped");
                return;
            }
            Ok(Err(error)) => tracing::warn!(pid, %error, "cannot wait for the handler to stop; killing it"),
            Err(_) => tracing::warn!(pid, ?grace, "handler ignored SIGTERM; killing it"),
        }
    }
    if let Err(error) = child.kill().await {
        tracing::error!(pid, %error, "cannot kill the handler");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn exit_codes_are_classified_as_the_host_does() {
        assert_eq!(classify(ExitStatus::from_raw(0)), Ending::Clean);
        // Raw wait statuses: the exit code sits in the second byte.
        assert_eq!(classify(ExitStatus::from_raw(200 << 8)), Ending::IntentionalRestart);
        assert_eq!(classify(ExitStatus::from_raw(1 << 8)), Ending::Crash("exit code 1".into()));
        assert_eq!(classify(ExitStatus::from_raw(101 << 8)), Ending::Crash("exit code 101".into()));
        assert_eq!(classify(ExitStatus::from_raw(9)), Ending::Crash("killed by signal 9".into()));
    }

    #[test]
    fn crashes_count_within_thirty_minutes_only() {
        let start = Instant::now();
        let mut crashes = CrashCounter::new();
        assert_eq!(crashes.record(start), 1);
        assert_eq!(crashes.record(start + Duration::from_secs(60)), 2);
        // The first crash has left the window by now.
        assert_eq!(crashes.record(start + CRASH_WINDOW + Duration::from_secs(1)), 2);
        assert_eq!(crashes.record(start + CRASH_WINDOW + Duration::from_secs(2)), 3);
    }

    #[test]
    fn only_exited_failed_and_shut_down_are_final() {
        assert!(!WorkerStatus::Starting.is_final());
        assert!(!WorkerStatus::Running { pid: 1, port: 2, generation: 1 }.is_final());
        assert!(WorkerStatus::Exited.is_final());
        assert!(WorkerStatus::Failed("x".into()).is_final());
        assert!(WorkerStatus::ShutDown.is_final());
    }
}
