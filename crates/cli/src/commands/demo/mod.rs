//! `keyturn demo`: keyturn's main job, start to finish, on the embedded local stack, in one command.
//!
//! 1. **The handlers**: the four Event Grid handlers' binaries (the timer-triggered sweep is not part of the
//!    demo) beside keyturn's own executable (`target/<profile>/`). When some are missing and keyturn runs from
//!    the repository's target directory, cargo builds them in the same profile (its progress shows); anywhere
//!    else the error names the command that builds them.
//! 2. **The vault as it stood before keyturn was deployed**: seeded into a state file first, so seeding
//!    raises no events. Then the local stack over that state, a signed-webhook receiver standing in for
//!    the notification channel, and each handler behind a Functions host stand-in, subscribed as in Azure.
//! 3. **The clock moves 40 days**: Event Grid sends NearExpiry and Expired events; the handlers rotate,
//!    notify and mirror, and each new version raises its own event. The demo waits until what should
//!    happen has happened and nothing is in flight.
//! 4. **The canary**: a new version of the canary secret, and test-event's verdict recorded on it.
//! 5. Everything stops. One table says what was rotated, mirrored, notified (and where) and skipped (and
//!    why), and the canary's verdict. The exit code is 0 only when every expected step happened, so the
//!    demo doubles as a smoke test of the whole path.

//! # Layout
//! - `build`: the handler binaries beside keyturn, built in the same cargo invocation as keyturn if missing.
//! - `vault`: what the demo seeds and expects, and reading versions back.
//! - `stage`: moving the clock, writing the canary, waiting until things settle; what is missing.
//! - `answers`: the handlers' answers, read from their `Logs` line (the one place that parses handler text).
//! - `report`: the table and the summary.
//!
//! The notification receiver is the local stack's ([`keyturn_local::receivers`]).

mod answers;
mod build;
mod report;
mod stage;
mod vault;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use keyturn_app::FunctionApp;
use keyturn_local::eventgrid::EventGridOptions;
use keyturn_local::keyvault::KeyVaultEmulator;
use keyturn_local::receivers::HttpSink;
use keyturn_local::roles::Deployment;
use keyturn_local::stack::LocalStack;

use crate::commands::dev::{self, Running};
use crate::exit::{CommandFailure, ExitStatus};
use crate::handlers;
use crate::output::Output;
use report::Report;
use stage::Stage;

const AFTER_HELP: &str = "\
Examples:
  cargo run --release -p keyturn-cli -- demo   # from a fresh clone: builds the handlers once, then runs
  keyturn demo                          # the handlers beside keyturn (target/<profile>/)
  keyturn demo --no-build || echo FAIL  # a smoke test: exit 0 only if every step happened

Everything listens on ephemeral loopback ports (a demo can run beside `keyturn dev` or another
demo) and everything is stopped before keyturn exits.";

#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// The repository (host.json, function-definitions/) [default: found from the working directory].
    #[arg(long, value_name = "DIR")]
    pub app_root: Option<PathBuf>,

    /// Exit 4 instead of building handler binaries that are missing beside keyturn.
    #[arg(long)]
    pub no_build: bool,

    /// How long each stage may take before the demo reports what did not happen.
    #[arg(long, value_name = "SECS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub timeout: u64,
}

/// The watched vault and the mirror the new-version handler copies into.
const VAULT: &str = "kv-demo";
const MIRROR: &str = "kv-mirror";
const CANARY: &str = handlers::DEFAULT_CANARY_SECRET;
/// How far the clock moves. Everything seeded "near expiry" is 10-25 days from expiry afterwards.
const JUMP_DAYS: u32 = 40;
/// The validity of rotated secrets and keys: longer than the jump plus Key Vault's 30-day warning, so a new
/// version is not itself near expiry once the clock has moved.
const VALIDITY_DAYS: u32 = 90;
/// Event Grid at 1/1000 of real time: its 10 s first retry takes 10 ms.
const GRID_TIME_SCALE: f64 = 0.001;
/// How long nothing must happen before the demo calls a stage finished: longer than the stack's 1 s
/// resynchronisation, which is when a renewed certificate's new version appears.
const QUIET: Duration = Duration::from_millis(1_200);

pub async fn run(args: Args, output: &Output) -> Result<ExitStatus, CommandFailure> {
    tokio::select! {
        result = demo(args, output) => result,
        // Dropping the demo's future stops what it started: the handlers (killed by their stand-ins), the
        // stack, a cargo build, the scratch folder.
        signal = dev::wait_for_stop() => {
            Err(CommandFailure::failed(format!("{signal}: the demo stopped before the end; nothing it started is left running")))
        }
    }
}

async fn demo(args: Args, output: &Output) -> Result<ExitStatus, CommandFailure> {
    let root = app_root(args.app_root.as_deref())?;
    let app = FunctionApp::load(&root).map_err(|error| CommandFailure::setup(format!("the function app: {error}")))?;
    let binaries = build::handler_binaries(output, args.no_build).await?;
    // The demo's own time, without a first build of the handlers.
    let started = Instant::now();
    let timeout = Duration::from_secs(args.timeout);

    let scratch = Scratch::create()?;
    output.status(&format!(
        "seeding {VAULT} as it stood before keyturn: 4 secrets, a key, a certificate, the canary; {MIRROR} empty"
    ));
    let seeded = vault::seed_state(&scratch).await?;
    // The channel's signing secret: the demo's own, random per run.
    let sink = HttpSink::start(uuid::Uuid::new_v4().simple().to_string())
        .await
        .map_err(|error| CommandFailure::failed(format!("the webhook receiver cannot listen on 127.0.0.1: {error}")))?;
    output.status("starting the local stack (Key Vault, identity, Event Grid) and a webhook receiver");
    let vaults =
        KeyVaultEmulator::builder().vault(VAULT).vault(MIRROR).persist_to(scratch.state()).ca_dir(scratch.ca());
    let grid = EventGridOptions { time_scale: GRID_TIME_SCALE, ..EventGridOptions::default() };
    let stack = LocalStack::start(vaults, grid)
        .await
        .map_err(|error| CommandFailure::failed(format!("the local stack did not start: {error}")))?;

    let settings = handler_settings(&sink);
    // Each handler under its own identity with its infra/roles.json grants, as deployed: both vaults are in
    // KEYTURN_VAULTS (watched), kv-mirror is also where new-version copies to; expired only raises alarms
    // (expiredActionsEnabled off, as infra defaults).
    let deployment = Deployment {
        monitored_vaults: vec![VAULT.to_owned(), MIRROR.to_owned()],
        canary_secret: Some(CANARY.to_owned()),
        mirror_vaults: vec![MIRROR.to_owned()],
        ..Deployment::default()
    };
    let mut running = Vec::new();
    for (handler, binary) in binaries {
        match dev::start_handler(&stack, &app, handler, &binary, &deployment, &settings, false).await {
            Ok(host) => {
                let pid = host.worker_pid().map(|pid| format!(" (pid {pid})")).unwrap_or_default();
                output.status(&format!("{} is running{pid}", handler.name));
                running.push(Running { handler, host });
            }
            Err(failure) => {
                dev::stop(running, stack).await;
                return Err(failure);
            }
        }
    }

    let (timeline, report) = {
        let stage = Stage { stack: &stack, running: &running, sink: &sink, seeded: &seeded, output, timeout };
        let timeline = stage.play().await;
        let report = Report::new(&stage.observe(timeline.canary_version.as_deref()), &sink, &timeline);
        (timeline, report)
    };
    let pids: Vec<(&str, u32)> =
        running.iter().filter_map(|r| r.host.worker_pid().map(|pid| (r.handler.name, pid))).collect();

    output.status("stopping the handlers and the stack");
    dev::stop(running, stack).await;
    drop(sink);
    drop(scratch);
    let survivors: Vec<String> =
        pids.iter().filter(|(_, pid)| still_running(*pid)).map(|(name, pid)| format!("{name} (pid {pid})")).collect();

    report.print(output, &timeline, &pids, &survivors, started.elapsed());
    let mut missing = report.missing;
    if !survivors.is_empty() {
        missing.push(format!("still running after the stop: {}", survivors.join(", ")));
    }
    if missing.is_empty() {
        return Ok(ExitStatus::Ok);
    }
    Err(CommandFailure::failed(format!(
        "the demo did not go as expected ({} step(s)):\n  - {}",
        missing.len(),
        missing.join("\n  - ")
    ))
    .hint("run `keyturn -v demo` to see what each handler logged"))
}

/// The repository: `--app-root`, else found from the working directory, else the one keyturn was built in.
fn app_root(explicit: Option<&Path>) -> Result<PathBuf, CommandFailure> {
    match handlers::app_root(explicit) {
        Ok(root) => Ok(root),
        Err(failure) if explicit.is_none() => {
            build::workspace_root().filter(|root| root.join("host.json").is_file()).ok_or(failure)
        }
        Err(failure) => Err(failure),
    }
}

/// The handlers' app settings beyond the stack's: the notification channel, and short retries so that a
/// failing call goes back to Event Grid (which retries at 1/1000 speed) within a second.
fn handler_settings(sink: &HttpSink) -> Vec<(String, String)> {
    [
        ("KEYTURN_NOTIFY", sink.webhook_channel()),
        ("KEYTURN_RETRY_MAX", "2".to_owned()),
        ("KEYTURN_RETRY_DELAY_MS", "50".to_owned()),
        ("KEYTURN_RETRY_MAX_DELAY_MS", "400".to_owned()),
        ("KEYTURN_HTTP_TIMEOUT_SECS", "10".to_owned()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect()
}

// Leaving nothing behind

/// A folder for the demo's vault state and CA, removed when the demo ends.
#[derive(Debug)]
pub(super) struct Scratch(PathBuf);

impl Scratch {
    fn create() -> Result<Self, CommandFailure> {
        let dir =
            std::env::temp_dir().join(format!("keyturn-demo-{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)
            .map_err(|error| CommandFailure::failed(format!("cannot create {}: {error}", dir.display())))?;
        Ok(Self(dir))
    }

    pub(super) fn state(&self) -> PathBuf {
        self.0.join("vaults.json")
    }

    pub(super) fn ca(&self) -> PathBuf {
        self.0.join("ca")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Best effort: a leftover folder in the temp dir holds only throwaway demo values.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether a process is still alive (Linux: its /proc entry exists; the stand-in reaps its handler, so a
/// stopped one leaves no zombie behind). Elsewhere the stand-in's own wait is the only evidence.
fn still_running(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}
