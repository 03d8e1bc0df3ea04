//! `keyturn demo`: keyturn's main job, start to finish, on the embedded local stack, in one command.
//!
//! 1. **The handlers**: the four binaries beside keyturn's own executable (`target/<profile>/`). When some
//!    are missing and keyturn runs from the repository's target directory, cargo builds them in the same
//!    profile (its progress shows); anywhere else the error names the command that builds them.
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

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use keyturn_local::eventgrid::EventGridOptions;
use keyturn_local::functions_host::FunctionApp;
use keyturn_local::keyvault::certs::{CertificatePolicy, IssuerParams, X509Props};
use keyturn_local::keyvault::crypto::KeySpec;
use keyturn_local::keyvault::keys::{Action, KeySpecInput, LifetimeAction, Trigger};
use keyturn_local::keyvault::store::AttributeInput;
use keyturn_local::keyvault::{KeyVaultEmulator, ObjectKind, SecretSpec, VaultError, VaultStore};
use keyturn_local::stack::LocalStack;
use keyturn_rotation::policy::{self, CANARY_RESULT, REPLICA_OF, ROTATED_FROM};
use serde_json::Value;

use crate::commands::dev::{self, Running};
use crate::exit::{Failure, Status};
use crate::handlers::{self, HANDLERS, Handler};
use crate::output::{self, Output, Tone};

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
/// The receiver's path; the signing secret travels in the channel URL's `secret` parameter.
const SINK_PATH: &str = "keyturn";

pub async fn run(args: Args, output: &Output) -> Result<Status, Failure> {
    tokio::select! {
        result = demo(args, output) => result,
        // Dropping the demo's future stops what it started: the handlers (killed by their stand-ins), the
        // stack, a cargo build, the scratch folder.
        signal = dev::wait_for_stop() => {
            Err(Failure::failed(format!("{signal}: the demo stopped before the end; nothing it started is left running")))
        }
    }
}

async fn demo(args: Args, output: &Output) -> Result<Status, Failure> {
    let root = app_root(args.app_root.as_deref())?;
    let app = FunctionApp::load(&root).map_err(|error| Failure::setup(format!("the function app: {error}")))?;
    let binaries = handler_binaries(output, args.no_build).await?;
    // The demo's own time, without a first build of the handlers.
    let started = Instant::now();
    let timeout = Duration::from_secs(args.timeout);

    let scratch = Scratch::create()?;
    output.status(&format!(
        "seeding {VAULT} as it stood before keyturn: 4 secrets, a key, a certificate, the canary; {MIRROR} empty"
    ));
    let seeded = seed_state(&scratch).await?;
    let sink = Sink::start().await?;
    output.status("starting the local stack (Key Vault, identity, Event Grid) and a webhook receiver");
    let vaults =
        KeyVaultEmulator::builder().vault(VAULT).vault(MIRROR).persist_to(scratch.state()).ca_dir(scratch.ca());
    let grid = EventGridOptions { time_scale: GRID_TIME_SCALE, ..EventGridOptions::default() };
    let stack = LocalStack::start(vaults, grid)
        .await
        .map_err(|error| Failure::failed(format!("the local stack did not start: {error}")))?;

    let settings = handler_settings(&sink);
    let mut running = Vec::new();
    for (handler, binary) in binaries {
        match dev::start_handler(&stack, &app, handler, &binary, CANARY, &settings).await {
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
        return Ok(Status::Ok);
    }
    Err(Failure::failed(format!(
        "the demo did not go as expected ({} step(s)):\n  - {}",
        missing.len(),
        missing.join("\n  - ")
    ))
    .hint("run `keyturn -v demo` to see what each handler logged"))
}

/// The repository: `--app-root`, else found from the working directory, else the one keyturn was built in.
fn app_root(explicit: Option<&Path>) -> Result<PathBuf, Failure> {
    match handlers::app_root(explicit) {
        Ok(root) => Ok(root),
        Err(failure) if explicit.is_none() => {
            workspace_root().filter(|root| root.join("host.json").is_file()).ok_or(failure)
        }
        Err(failure) => Err(failure),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The handler binaries

/// The four handlers' executables beside keyturn's own, built first when some are missing and keyturn can.
async fn handler_binaries(output: &Output, no_build: bool) -> Result<Vec<(&'static Handler, PathBuf)>, Failure> {
    let exe = std::env::current_exe()
        .map_err(|error| Failure::setup(format!("cannot find keyturn's own executable: {error}")))?;
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let binaries: Vec<(&'static Handler, PathBuf)> = HANDLERS.iter().map(|h| (h, dir.join(h.name))).collect();
    let missing: Vec<&'static Handler> =
        binaries.iter().filter(|(_, path)| !path.is_file()).map(|(handler, _)| *handler).collect();
    if missing.is_empty() {
        return Ok(binaries);
    }
    let names = missing.iter().map(|h| h.name).collect::<Vec<_>>().join(", ");
    let build = CargoBuild::beside(&dir, &missing);
    let workspace = workspace_root();
    let (Some(build), Some(workspace), false) = (&build, &workspace, no_build) else {
        let command = build.as_ref().map_or_else(
            || handlers::build_command(&missing, "release", None),
            |build| build.command_line(workspace.as_deref()),
        );
        return Err(Failure::setup(format!("handler binaries missing beside keyturn in {}: {names}", dir.display()))
            .hint(format!("build them in the keyturn repository with `{command}`, then run that build's keyturn")));
    };

    let command = build.command_line(Some(workspace));
    output.status(&format!(
        "{names} not built yet: building with `{command}` (once; a first build takes several minutes)"
    ));
    let building = Instant::now();
    let cargo = std::env::var_os("CARGO").filter(|v| !v.is_empty()).unwrap_or_else(|| "cargo".into());
    let status = tokio::process::Command::new(&cargo)
        .args(build.args())
        .arg("--target-dir")
        .arg(&build.target_dir)
        .current_dir(workspace)
        // cargo's progress goes to stderr like ours; stdout stays for the results.
        .stdout(Stdio::from(std::io::stderr()))
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .status()
        .await
        .map_err(|error| {
            Failure::setup(format!("cannot run {}: {error}", Path::new(&cargo).display()))
                .hint(format!("install Rust (rustup.rs), or build the handlers yourself: `{command}`"))
        })?;
    if !status.success() {
        return Err(Failure::setup(format!("building the handlers failed ({status})"))
            .hint(format!("run `{command}` in {} and fix what it reports", workspace.display())));
    }
    output.status(&format!("built {names} in {:.0} s", building.elapsed().as_secs_f64()));
    if let Some((_, path)) = binaries.iter().find(|(_, path)| !path.is_file()) {
        return Err(Failure::setup(format!("cargo finished but {} is not there", path.display()))
            .hint(format!("run `{command}` in {} and check where it puts the binaries", workspace.display())));
    }
    Ok(binaries)
}

/// The cargo workspace keyturn was built from, when it is still there: found from the build's manifest
/// directory, else from the folders above the executable.
fn workspace_root() -> Option<PathBuf> {
    let is_workspace = |dir: &Path| {
        std::fs::read_to_string(dir.join("Cargo.toml")).is_ok_and(|manifest| manifest.contains("[workspace]"))
    };
    let built_in = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    if is_workspace(&built_in) {
        return Some(built_in);
    }
    let exe = std::env::current_exe().ok()?;
    exe.ancestors().find(|dir| is_workspace(dir)).map(Path::to_path_buf)
}

/// The `cargo build` that puts handler binaries where keyturn's executable is: the same target directory,
/// target triple and profile.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CargoBuild {
    /// The profile's folder name: `debug` (the dev profile), `release`, or a custom profile's name.
    profile: String,
    target_dir: PathBuf,
    triple: Option<String>,
    packages: Vec<&'static str>,
}

impl CargoBuild {
    /// For binaries that belong in `bin_dir` (`<target dir>/[<triple>/]<profile>`); `None` when `bin_dir` is
    /// not in a cargo target directory (which cargo marks with CACHEDIR.TAG).
    fn beside(bin_dir: &Path, handlers: &[&'static Handler]) -> Option<Self> {
        let is_target_dir = |dir: &Path| dir.join("CACHEDIR.TAG").is_file();
        let profile = bin_dir.file_name()?.to_str()?.to_owned();
        let parent = bin_dir.parent()?;
        let (target_dir, triple) = if is_target_dir(parent) {
            (parent.to_path_buf(), None)
        } else {
            let grandparent = parent.parent().filter(|dir| is_target_dir(dir))?;
            (grandparent.to_path_buf(), Some(parent.file_name()?.to_str()?.to_owned()))
        };
        Some(Self { profile, target_dir, triple, packages: handlers.iter().map(|h| h.name).collect() })
    }

    /// cargo's arguments, without `--target-dir` (always passed when building, shown only when unusual).
    fn args(&self) -> Vec<String> {
        let mut args = vec!["build".to_owned()];
        match self.profile.as_str() {
            "debug" => {}
            "release" => args.push("--release".to_owned()),
            custom => args.extend(["--profile".to_owned(), custom.to_owned()]),
        }
        if let Some(triple) = &self.triple {
            args.extend(["--target".to_owned(), triple.clone()]);
        }
        for package in &self.packages {
            args.extend(["-p".to_owned(), (*package).to_owned()]);
        }
        args
    }

    /// The command as a person would type it in `workspace`.
    fn command_line(&self, workspace: Option<&Path>) -> String {
        let mut line = format!("cargo {}", self.args().join(" "));
        let default_target = workspace.map(|root| root.join("target"));
        let same = |a: &Path, b: &Path| a.canonicalize().ok().zip(b.canonicalize().ok()).is_some_and(|(a, b)| a == b);
        if default_target.is_none_or(|default| !same(&default, &self.target_dir)) {
            line.push_str(&format!(" --target-dir {}", self.target_dir.display()));
        }
        line
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The vault

/// What the demo expects keyturn to make of a seeded object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// near-expiry makes a new version: a secret from its policy, a key rotated, a certificate renewed; then
    /// new-version tells consumers about it.
    Rotated,
    /// near-expiry leaves it to a person: it has no rotation policy.
    Manual,
    /// expired raises the alarm at critical severity.
    Alarm,
    /// test-event records its verdict on the canary's new version.
    Canary,
}

/// One object the demo put in the vault.
#[derive(Debug, Clone)]
struct Seeded {
    kind: ObjectKind,
    name: &'static str,
    version: String,
    expect: Expect,
    /// Tagged `KeyturnMirror`: its new versions are copied into the mirror vault.
    mirrored: bool,
}

impl Seeded {
    fn label(&self) -> String {
        object_label(self.kind, VAULT, self.name)
    }
}

fn object_label(kind: ObjectKind, vault: &str, name: &str) -> String {
    format!("{} {vault}/{name}", kind.lower())
}

/// Seeds the vaults into the scratch state file with an emulator of their own, so that none of it raises
/// an event once the demo's stack starts over the file.
async fn seed_state(scratch: &Scratch) -> Result<Vec<Seeded>, Failure> {
    let emulator = KeyVaultEmulator::builder()
        .vault(VAULT)
        .vault(MIRROR)
        .persist_to(scratch.state())
        .ca_dir(scratch.ca())
        .start()
        .await
        .map_err(|error| Failure::failed(format!("the Key Vault emulator did not start: {error}")))?;
    let seeded = seed(emulator.store(), emulator.clock().now())
        .map_err(|error| Failure::failed(format!("seeding {VAULT}: {error}")));
    // Saves the state file.
    emulator.shutdown().await;
    seeded
}

/// A realistic vault on `today`: expiry dates fall where they will be after the clock moves.
fn seed(store: &VaultStore, today: DateTime<Utc>) -> Result<Vec<Seeded>, VaultError> {
    let after_jump = today + TimeDelta::days(JUMP_DAYS.into());
    let exp = |days: i64| Some((after_jump + TimeDelta::days(days)).timestamp());
    let validity = VALIDITY_DAYS.to_string();
    let generated = |format: &str, length: &str, owner: &str| {
        tags(&[
            (policy::ROTATION, "generated"),
            (policy::VALIDITY_PERIOD_DAYS, &validity),
            (policy::FORMAT, format),
            (policy::LENGTH, length),
            ("owner", owner),
        ])
    };
    let mut seeded = Vec::new();
    let mut secret = |name: &'static str, exp: Option<i64>, tags: BTreeMap<String, String>, expect: Expect| {
        let mirrored = tags.contains_key(policy::MIRROR);
        let spec = SecretSpec {
            // A throwaway value: demo secrets protect nothing, and no value is ever printed.
            value: uuid::Uuid::new_v4().simple().to_string(),
            content_type: Some("text/plain".to_owned()),
            attributes: AttributeInput { exp, ..AttributeInput::default() },
            tags,
        };
        let version = store.set_secret(VAULT, name, spec)?.version.version;
        seeded.push(Seeded { kind: ObjectKind::Secret, name, version, expect, mirrored });
        Ok::<(), VaultError>(())
    };

    let mut db = generated("password", "24", "payments");
    db.insert(policy::MIRROR.to_owned(), MIRROR.to_owned());
    secret("db-password", exp(20), db, Expect::Rotated)?;
    secret("webhook-signing-key", exp(25), generated("hex", "32", "integrations"), Expect::Rotated)?;
    secret("partner-sftp-password", exp(10), tags(&[("owner", "partners")]), Expect::Manual)?;
    secret("legacy-api-key", exp(-3), tags(&[("owner", "billing")]), Expect::Alarm)?;
    secret(CANARY, None, tags(&[("owner", "platform")]), Expect::Canary)?;

    let key = store.create_key(
        VAULT,
        "signing-key",
        KeySpecInput {
            kty: "RSA".to_owned(),
            spec: KeySpec::Rsa(2048),
            key_ops: None,
            attributes: AttributeInput { exp: exp(15), ..AttributeInput::default() },
            tags: tags(&[(policy::ROTATION, "enabled"), ("owner", "identity")]),
        },
    )?;
    // Notify-only, as Key Vault's default policy is (a Rotate action would leave the key to Key Vault), with
    // the expiry the rotated version gets.
    store.set_rotation_policy(
        VAULT,
        "signing-key",
        vec![LifetimeAction {
            trigger: Trigger { time_after_create: None, time_before_expiry: Some("P30D".to_owned()) },
            action: Action { kind: "Notify".to_owned() },
        }],
        Some(format!("P{VALIDITY_DAYS}D")),
    )?;
    seeded.push(Seeded {
        kind: ObjectKind::Key,
        name: "signing-key",
        version: key.version.version,
        expect: Expect::Rotated,
        mirrored: false,
    });

    // Two months of validity: 59-62 days from today, so 19-22 days left after the jump, and its renewal
    // (two months from the moved clock) is not near expiry itself.
    let policy = CertificatePolicy {
        issuer: Some(IssuerParams { name: Some("Self".to_owned()), ..IssuerParams::default() }),
        x509_props: Some(X509Props {
            subject: Some("CN=demo.keyturn.test".to_owned()),
            validity_months: Some(2),
            ..X509Props::default()
        }),
        lifetime_actions: Some(Vec::new()),
        ..CertificatePolicy::default()
    };
    store.create_certificate(
        VAULT,
        "web-tls",
        Some(policy),
        AttributeInput::default(),
        tags(&[(policy::ROTATION, "enabled"), ("owner", "web")]),
    )?;
    // Reading it completes the self-signed issuance.
    let cert = store.get_certificate(VAULT, "web-tls", None)?;
    seeded.push(Seeded {
        kind: ObjectKind::Certificate,
        name: "web-tls",
        version: cert.version.version,
        expect: Expect::Rotated,
        mirrored: false,
    });
    Ok(seeded)
}

fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect()
}

/// One version of an object, whatever its kind.
#[derive(Debug, Clone)]
struct VersionInfo {
    id: String,
    exp: Option<i64>,
    tags: BTreeMap<String, String>,
}

/// Every version of an object, oldest first; none when it does not exist.
fn versions(store: &VaultStore, kind: ObjectKind, vault: &str, name: &str) -> Vec<VersionInfo> {
    fn info<D>(version: &keyturn_local::keyvault::store::Version<D>) -> VersionInfo {
        VersionInfo { id: version.version.clone(), exp: version.attributes.exp, tags: version.tags.clone() }
    }
    let listed = match kind {
        ObjectKind::Secret => {
            store.list_secret_versions(vault, name).map(|v| v.iter().map(|v| info(&v.version)).collect())
        }
        ObjectKind::Key => store.list_key_versions(vault, name).map(|v| v.iter().map(|v| info(&v.version)).collect()),
        ObjectKind::Certificate => {
            store.list_certificate_versions(vault, name).map(|v| v.iter().map(|v| info(&v.version)).collect())
        }
    };
    listed.unwrap_or_default()
}

fn latest(store: &VaultStore, kind: ObjectKind, vault: &str, name: &str) -> Option<VersionInfo> {
    versions(store, kind, vault, name).pop()
}

// ---------------------------------------------------------------------------------------------------------------
// The notification sink

/// A webhook receiver on 127.0.0.1 that checks every request's signature as docs/notifications.md tells
/// receivers to, and keeps what arrived.
#[derive(Debug)]
struct Sink {
    addr: SocketAddr,
    /// The channel's signing secret: the demo's own, random per run.
    secret: String,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

/// One request the sink received.
#[derive(Debug, Clone)]
struct Received {
    /// Whether the signature checked out, or why not.
    verified: Result<(), String>,
    /// The notification, when the body is JSON.
    body: Option<Value>,
}

impl Received {
    /// Checks `body` against its `X-Keyturn-Signature` header with `secret`, as of `now`.
    fn check(secret: &[u8], signature: Option<&str>, body: &[u8], now: DateTime<Utc>) -> Self {
        let verified = match signature {
            None => Err(format!("no {} header", keyturn_notify::SIGNATURE_HEADER)),
            Some(header) => {
                keyturn_notify::verify_signature(secret, header, body, now).map_err(|error| error.to_string())
            }
        };
        Self { verified, body: serde_json::from_slice(body).ok() }
    }

    fn field(&self, pointer: &str) -> &str {
        self.body.as_ref().and_then(|body| body.pointer(pointer)).and_then(Value::as_str).unwrap_or_default()
    }
}

impl Sink {
    async fn start() -> Result<Self, Failure> {
        use warp::Filter;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|error| Failure::failed(format!("the webhook receiver cannot listen on 127.0.0.1: {error}")))?;
        let addr = listener
            .local_addr()
            .map_err(|error| Failure::failed(format!("the webhook receiver's address: {error}")))?;
        let secret = uuid::Uuid::new_v4().simple().to_string();
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let route = {
            let (secret, received) = (secret.clone(), received.clone());
            warp::post()
                .and(warp::path(SINK_PATH))
                .and(warp::path::end())
                .and(warp::header::optional::<String>(keyturn_notify::SIGNATURE_HEADER))
                .and(warp::body::bytes())
                .map(move |signature: Option<String>, body: warp::hyper::body::Bytes| {
                    let request = Received::check(secret.as_bytes(), signature.as_deref(), &body, Utc::now());
                    let status = match request.verified {
                        Ok(()) => warp::http::StatusCode::OK,
                        Err(_) => warp::http::StatusCode::UNAUTHORIZED,
                    };
                    received.lock().unwrap_or_else(PoisonError::into_inner).push(request);
                    status
                })
        };
        let task = tokio::spawn(warp::serve(route).incoming(listener).run());
        Ok(Self { addr, secret, received, task })
    }

    /// The `KEYTURN_NOTIFY` channel (plain http is accepted for loopback receivers only).
    fn channel_url(&self) -> String {
        format!("webhook+http://{}/{SINK_PATH}?secret={}", self.addr, self.secret)
    }

    /// Where notifications went: the channel as the summary names it.
    fn name(&self) -> String {
        format!("webhook {}", self.addr)
    }

    /// The channel as each row names it (the port is in the summary).
    fn host(&self) -> String {
        format!("webhook {}", self.addr.ip())
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The handlers' app settings beyond the stack's: the notification channel, and short retries so that a
/// failing call goes back to Event Grid (which retries at 1/1000 speed) within a second.
fn handler_settings(sink: &Sink) -> Vec<(String, String)> {
    [
        ("KEYTURN_NOTIFY", sink.channel_url()),
        ("KEYTURN_RETRY_MAX", "2".to_owned()),
        ("KEYTURN_RETRY_DELAY_MS", "50".to_owned()),
        ("KEYTURN_RETRY_MAX_DELAY_MS", "400".to_owned()),
        ("KEYTURN_HTTP_TIMEOUT_SECS", "10".to_owned()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect()
}

// ---------------------------------------------------------------------------------------------------------------
// The story

/// The clock's dates and the canary version the demo wrote.
#[derive(Debug, Clone)]
struct Timeline {
    today: DateTime<Utc>,
    moved_to: DateTime<Utc>,
    canary_version: Option<String>,
    /// Stages that ran out of time (what is missing is then in the report).
    timed_out: Vec<&'static str>,
}

/// What the demo looks at while it runs.
struct Stage<'a> {
    stack: &'a LocalStack,
    running: &'a [Running],
    sink: &'a Sink,
    seeded: &'a [Seeded],
    output: &'a Output,
    timeout: Duration,
}

/// One handler's answer to one invocation.
#[derive(Debug, Clone)]
struct Answer {
    function: String,
    subject: Option<String>,
    /// The handler's one-line decision (`done: ...`, `skipped: ...`, `rejected: ...`), or why the invocation
    /// failed (`failed: ...`; Event Grid retries those).
    text: String,
}

/// Everything observable at one moment.
struct Observed<'a> {
    store: &'a VaultStore,
    seeded: &'a [Seeded],
    answers: Vec<Answer>,
    received: Vec<Received>,
    attempts: Vec<keyturn_local::eventgrid::Attempt>,
    dead_letters: Vec<keyturn_local::eventgrid::DeadLetter>,
    canary_version: Option<&'a str>,
}

impl Stage<'_> {
    async fn play(&self) -> Timeline {
        let clock = self.stack.emulator().clock();
        let today = clock.now();
        let mut timed_out = Vec::new();
        clock.advance(Duration::from_secs(u64::from(JUMP_DAYS) * 86_400));
        let moved_to = clock.now();
        self.output.status(&format!(
            "moved the clock {JUMP_DAYS} days ({} → {}): Event Grid sends NearExpiry and Expired events",
            today.format("%Y-%m-%d"),
            moved_to.format("%Y-%m-%d")
        ));
        if !self.wait("rotations and notifications", |observed| observed.expiry_missing().is_empty()).await {
            timed_out.push("rotations and notifications");
        }

        let spec = SecretSpec {
            value: uuid::Uuid::new_v4().simple().to_string(),
            content_type: Some("text/plain".to_owned()),
            attributes: AttributeInput::default(),
            tags: tags(&[("owner", "platform")]),
        };
        let canary_version = match self.stack.emulator().store().set_secret(VAULT, CANARY, spec) {
            Ok(view) => Some(view.version.version),
            Err(error) => {
                self.output.warn(&format!("writing a new version of the canary {VAULT}/{CANARY}: {error}"));
                None
            }
        };
        if let Some(version) = &canary_version {
            self.output.status(&format!(
                "wrote version {} of the canary {VAULT}/{CANARY}: test-event checks the whole path",
                short(version)
            ));
            let version = version.clone();
            let verdict = move |observed: &Observed<'_>| canary_verdict(observed.store, &version).is_some();
            if !self.wait("the canary check", verdict).await {
                timed_out.push("the canary check");
            }
        }
        Timeline { today, moved_to, canary_version, timed_out }
    }

    /// Waits until `done` holds, Event Grid has nothing in flight and nothing has happened for [`QUIET`];
    /// false when the stage's time runs out first. Progress goes to stderr as it changes.
    async fn wait(&self, what: &str, done: impl Fn(&Observed<'_>) -> bool) -> bool {
        let started = Instant::now();
        let mut last_activity = (0, 0, 0);
        let mut last_change = Instant::now();
        let mut last_report = Instant::now();
        loop {
            let observed = self.observe(None);
            let activity = (observed.attempts.len(), observed.answers.len(), observed.received.len());
            if activity != last_activity {
                last_activity = activity;
                last_change = Instant::now();
            }
            if done(&observed) && last_change.elapsed() >= QUIET && self.stack.grid().settled(Duration::ZERO).await {
                return true;
            }
            if started.elapsed() >= self.timeout {
                self.output.warn(&format!("{what}: still incomplete after {} s", self.timeout.as_secs()));
                return false;
            }
            if last_report.elapsed() >= Duration::from_secs(1) {
                last_report = Instant::now();
                self.output.status(&format!(
                    "{what}: {} deliveries, {} handler answers, {} notifications so far",
                    activity.0, activity.1, activity.2
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn observe<'s>(&'s self, canary_version: Option<&'s str>) -> Observed<'s> {
        let answers = self
            .running
            .iter()
            .flat_map(|r| r.host.invocations())
            .flat_map(|record| {
                let texts = match &record.result {
                    Ok(response) => response.logs.clone(),
                    Err(error) => vec![format!("failed: {error}")],
                };
                texts.into_iter().map(move |text| Answer {
                    function: record.function.clone(),
                    subject: record.subject.clone(),
                    text,
                })
            })
            .collect();
        Observed {
            store: self.stack.emulator().store(),
            seeded: self.seeded,
            answers,
            received: self.sink.received(),
            attempts: self.stack.grid().attempts(),
            dead_letters: self.stack.grid().dead_letters(),
            canary_version,
        }
    }
}

/// The verdict test-event recorded on a canary version, if any yet.
fn canary_verdict(store: &VaultStore, version: &str) -> Option<String> {
    let versions = versions(store, ObjectKind::Secret, VAULT, CANARY);
    let found = versions.into_iter().find(|v| v.id == version)?;
    policy::tag(&found.tags, CANARY_RESULT).map(str::to_owned)
}

impl Observed<'_> {
    /// The notifications that arrived with a valid signature.
    fn notifications(&self) -> impl Iterator<Item = &Received> {
        self.received.iter().filter(|r| r.verified.is_ok())
    }

    fn notified(&self, vault: &str, name: &str, matches: impl Fn(&Received) -> bool) -> bool {
        self.notifications().any(|n| {
            n.field("/object/vault") == vault && n.field("/object/name").eq_ignore_ascii_case(name) && matches(n)
        })
    }

    /// What the clock's move should have caused and has not (yet).
    fn expiry_missing(&self) -> Vec<String> {
        let mut missing = Vec::new();
        for seeded in self.seeded {
            let label = seeded.label();
            match seeded.expect {
                Expect::Rotated => {
                    let Some(now) = latest(self.store, seeded.kind, VAULT, seeded.name) else {
                        missing.push(format!("{label} is gone"));
                        continue;
                    };
                    if now.id == seeded.version {
                        missing.push(format!("{label} was not rotated (near-expiry)"));
                        continue;
                    }
                    // keyturn's provenance on a secret it rotated (keys and certificates get theirs from Key Vault).
                    let from = policy::tag(&now.tags, ROTATED_FROM);
                    if seeded.kind == ObjectKind::Secret && from != Some(seeded.version.as_str()) {
                        missing.push(format!("{label}'s new version has {ROTATED_FROM}={}", from.unwrap_or("(none)")));
                    }
                    if !self.notified(VAULT, seeded.name, |n| is_near_expiry(n) && n.field("/severity") == "info") {
                        missing.push(format!("no notification that {label} was rotated (near-expiry)"));
                    }
                    if !self.notified(VAULT, seeded.name, |n| is_new_version(n, &now.id)) {
                        missing.push(format!("no notification of {label}'s new version (new-version)"));
                    }
                    if seeded.mirrored {
                        missing.extend(self.mirror_missing(seeded, &now.id));
                    }
                }
                Expect::Manual => {
                    let target = format!("{VAULT}/{}", seeded.name);
                    if !self.answers.iter().any(|a| a.function == "near-expiry" && a.text.contains(&target)) {
                        missing.push(format!("near-expiry did not answer about {label}"));
                    }
                    if !self.notified(VAULT, seeded.name, |n| is_near_expiry(n) && n.field("/severity") == "warning") {
                        missing.push(format!("no warning that {label} needs a manual rotation (near-expiry)"));
                    }
                }
                Expect::Alarm => {
                    if !self.notified(VAULT, seeded.name, |n| n.field("/severity") == "critical") {
                        missing.push(format!("no critical notification about the expired {label} (expired)"));
                    }
                }
                Expect::Canary => {}
            }
        }
        missing
    }

    /// The mirror's copy of `source_version`, and its own notification.
    fn mirror_missing(&self, seeded: &Seeded, source_version: &str) -> Vec<String> {
        let replica_of = format!("{VAULT}/{}/{source_version}", seeded.name);
        let copy = latest(self.store, seeded.kind, MIRROR, seeded.name)
            .filter(|copy| policy::tag(&copy.tags, REPLICA_OF) == Some(replica_of.as_str()));
        match copy {
            None => vec![format!("{} was not copied to {MIRROR} (new-version)", seeded.label())],
            Some(copy) if !self.notified(MIRROR, seeded.name, |n| is_new_version(n, &copy.id)) => {
                vec![format!("no notification of the copy in {MIRROR}/{} (new-version)", seeded.name)]
            }
            Some(_) => Vec::new(),
        }
    }

    /// What the canary stage should have caused and has not.
    fn canary_missing(&self) -> Vec<String> {
        let Some(version) = self.canary_version else {
            return vec![format!("no new version of the canary {VAULT}/{CANARY} was written")];
        };
        match canary_verdict(self.store, version) {
            Some(verdict) if verdict.starts_with("pass") => Vec::new(),
            Some(verdict) => vec![format!("the canary check failed: {CANARY_RESULT}={verdict}")],
            None => vec![format!("test-event recorded no verdict on the canary version {}", short(version))],
        }
    }

    /// Everything that did not go as it should: the expected effects, plus no dead letter, no rejected
    /// event and no badly signed notification.
    fn missing(&self) -> Vec<String> {
        let mut missing = self.expiry_missing();
        missing.extend(self.canary_missing());
        for letter in &self.dead_letters {
            missing.push(format!(
                "an event for {} was dead-lettered: {} after {} attempt(s) ({})",
                letter.subscription, letter.dead_letter_reason, letter.delivery_attempts, letter.last_delivery_outcome
            ));
        }
        for answer in self.answers.iter().filter(|a| a.text.starts_with("rejected:")) {
            missing.push(format!("{} {}", answer.function, answer.text));
        }
        for request in &self.received {
            if let Err(reason) = &request.verified {
                missing.push(format!("a notification was refused by the receiver: {reason}"));
            }
        }
        missing
    }
}

fn is_near_expiry(notification: &Received) -> bool {
    notification.field("/event_type").ends_with("NearExpiry")
}

fn is_new_version(notification: &Received, version: &str) -> bool {
    notification.field("/event_type").ends_with("NewVersionCreated") && notification.field("/object/version") == version
}

// ---------------------------------------------------------------------------------------------------------------
// The report

/// The final table's rows and what did not happen.
#[derive(Debug)]
struct Report {
    rows: Vec<Vec<(String, Option<Tone>)>>,
    missing: Vec<String>,
    /// Distinct events delivered, and how many of them needed more than one attempt.
    events: usize,
    retried: usize,
    dead_lettered: usize,
    notifications: usize,
    channel: String,
}

impl Report {
    fn new(observed: &Observed<'_>, sink: &Sink, timeline: &Timeline) -> Self {
        let mut rows = Vec::new();
        let row = |result: &str, tone: Tone, object: String, detail: String| {
            vec![(result.to_owned(), Some(tone)), (object, None), (detail, None)]
        };

        for seeded in observed.seeded.iter().filter(|s| s.expect == Expect::Rotated) {
            let Some(now) = latest(observed.store, seeded.kind, VAULT, seeded.name) else { continue };
            if now.id == seeded.version {
                continue;
            }
            let result = if seeded.kind == ObjectKind::Certificate { "renewed" } else { "rotated" };
            rows.push(row(
                result,
                Tone::Good,
                seeded.label(),
                format!("{} → {}, {}", short(&seeded.version), short(&now.id), expiry(now.exp)),
            ));
        }
        for seeded in observed.seeded.iter().filter(|s| s.mirrored) {
            let Some(copy) = latest(observed.store, seeded.kind, MIRROR, seeded.name) else { continue };
            let Some(source) = policy::tag(&copy.tags, REPLICA_OF) else { continue };
            let source_version = source.rsplit('/').next().unwrap_or_default();
            rows.push(row(
                "mirrored",
                Tone::Good,
                object_label(seeded.kind, MIRROR, seeded.name),
                format!("copy of {VAULT}/{} {} ({REPLICA_OF})", seeded.name, short(source_version)),
            ));
        }

        let mut seen = BTreeSet::new();
        let mut notified: Vec<&Received> = observed
            .notifications()
            // A redelivered event may notify twice; receivers deduplicate on the event id, so does the table.
            .filter(|n| seen.insert((n.field("/event_id").to_owned(), n.field("/event_type").to_owned())))
            .collect();
        // Most severe first; an object's notifications together, in the order they arrived.
        notified
            .sort_by_key(|n| (severity_rank(n.field("/severity")), n.field("/object/vault"), n.field("/object/name")));
        for notification in notified {
            let severity = notification.field("/severity");
            let tone = match severity {
                "critical" => Tone::Bad,
                "warning" => Tone::Warn,
                _ => Tone::Dim,
            };
            let kind = notification.field("/object/kind").to_ascii_lowercase();
            let object =
                format!("{kind} {}/{}", notification.field("/object/vault"), notification.field("/object/name"));
            let mut detail = format!("{severity} → {}: {}", sink.host(), notification.field("/headline"));
            if notification.field("/action/type") == "rotated" {
                detail.push_str(&format!(", rotated to {}", short(notification.field("/action/new_version"))));
            }
            rows.push(row("notified", tone, object, detail));
        }

        let mut said = BTreeSet::new();
        for answer in &observed.answers {
            let (result, tone, rest) = if let Some(rest) = answer.text.strip_prefix("skipped: ") {
                ("skipped", Tone::Warn, rest)
            } else if let Some(rest) = answer.text.strip_prefix("rejected: ") {
                ("rejected", Tone::Bad, rest)
            } else {
                continue;
            };
            // A duplicate delivery gets the same answer twice.
            if !said.insert((answer.function.as_str(), answer.text.as_str())) {
                continue;
            }
            let (object, why) = answer_object(observed.seeded, rest)
                .unwrap_or_else(|| (answer.subject.clone().unwrap_or_default(), rest.to_owned()));
            rows.push(row(result, tone, object, format!("{}: {why}", answer.function)));
        }

        let canary = object_label(ObjectKind::Secret, VAULT, CANARY);
        match timeline.canary_version.as_deref().map(|v| (v, canary_verdict(observed.store, v))) {
            Some((version, Some(verdict))) => rows.push(row(
                "canary",
                if verdict.starts_with("pass") { Tone::Good } else { Tone::Bad },
                canary,
                format!("{verdict} (test-event, recorded on version {})", short(version)),
            )),
            Some((version, None)) => {
                rows.push(row("canary", Tone::Bad, canary, format!("no verdict on version {}", short(version))));
            }
            None => rows.push(row("canary", Tone::Bad, canary, "no new version written".to_owned())),
        }

        let mut events: BTreeMap<&str, u32> = BTreeMap::new();
        for attempt in &observed.attempts {
            for id in &attempt.event_ids {
                let most = events.entry(id.as_str()).or_default();
                *most = (*most).max(attempt.attempt);
            }
        }
        Self {
            rows,
            missing: observed.missing(),
            events: events.len(),
            retried: events.values().filter(|attempts| **attempts > 1).count(),
            dead_lettered: observed.dead_letters.len(),
            notifications: observed.notifications().count(),
            channel: sink.name(),
        }
    }

    fn print(
        &self,
        output: &Output,
        timeline: &Timeline,
        pids: &[(&str, u32)],
        survivors: &[String],
        elapsed: Duration,
    ) {
        let mut lines = vec![
            output.paint(Tone::Strong, "keyturn demo: what happened"),
            String::new(),
            output::table(output, &["RESULT", "OBJECT", "DETAIL"], &self.rows),
            String::new(),
            format!(
                "clock moved {JUMP_DAYS} days, {} → {} (rotated secrets' expiries count from real time, the \
                 handlers' clock; keys' and certificates' from the vault's)",
                timeline.today.format("%Y-%m-%d"),
                timeline.moved_to.format("%Y-%m-%d")
            ),
            format!(
                "{} events delivered to {} handlers ({} retried), {} dead-lettered; {} notifications to {}, signatures valid",
                self.events,
                pids.len(),
                self.retried,
                self.dead_lettered,
                self.notifications,
                self.channel
            ),
        ];
        let stopped = pids.iter().map(|(name, pid)| format!("{name} (pid {pid})")).collect::<Vec<_>>().join(", ");
        if survivors.is_empty() {
            lines.push(format!("nothing left running: stopped {stopped}; the stack is down"));
        } else {
            lines.push(output.paint(Tone::Bad, &format!("STILL RUNNING: {}", survivors.join(", "))));
        }
        for stage in &timeline.timed_out {
            lines.push(output.paint(Tone::Warn, &format!("{stage}: did not finish in time")));
        }
        let verdict = if self.missing.is_empty() && survivors.is_empty() {
            output.paint(Tone::Good, "every expected step happened")
        } else {
            output.paint(Tone::Bad, "some expected steps did not happen (see below)")
        };
        lines.push(format!("{verdict}; finished in {:.1} s", elapsed.as_secs_f64()));
        output.line(&lines.join("\n"));
    }
}

/// The seeded object a handler's answer names (`secret kv-demo/name`), and the answer without the name when
/// it leads (`kv-demo/name not opted in ...` → `not opted in ...`).
fn answer_object(seeded: &[Seeded], answer: &str) -> Option<(String, String)> {
    for object in seeded {
        for vault in [VAULT, MIRROR] {
            let target = format!("{vault}/{}", object.name);
            let Some(at) = answer.find(&target) else { continue };
            let after = &answer[at + target.len()..];
            // `kv-demo/db-password` must not match `kv-demo/db-password-old`.
            if after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-') {
                continue;
            }
            // Leading: at the start, or after the kind (`secret kv-demo/name: ...`).
            let leads = at == 0 || answer[..at].trim_end().eq_ignore_ascii_case(object.kind.lower());
            let why = if leads { after.trim_start_matches(':').trim_start() } else { answer };
            return Some((object_label(object.kind, vault, object.name), why.to_owned()));
        }
    }
    None
}

fn severity_rank(severity: &str) -> u8 {
    match severity {
        "critical" => 0,
        "warning" => 1,
        _ => 2,
    }
}

/// A version id as people quote it: the first 8 characters.
fn short(version: &str) -> &str {
    version.get(..8).unwrap_or(version)
}

fn expiry(exp: Option<i64>) -> String {
    match exp.and_then(|exp| DateTime::from_timestamp(exp, 0)) {
        Some(exp) => format!("expires {}", exp.format("%Y-%m-%d %H:%M UTC")),
        None => "no expiry".to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Leaving nothing behind

/// A folder for the demo's vault state and CA, removed when the demo ends.
#[derive(Debug)]
struct Scratch(PathBuf);

impl Scratch {
    fn create() -> Result<Self, Failure> {
        let dir =
            std::env::temp_dir().join(format!("keyturn-demo-{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)
            .map_err(|error| Failure::failed(format!("cannot create {}: {error}", dir.display())))?;
        Ok(Self(dir))
    }

    fn state(&self) -> PathBuf {
        self.0.join("vaults.json")
    }

    fn ca(&self) -> PathBuf {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sink_accepts_only_what_the_channel_secret_signed_recently() {
        let body = br#"{"severity":"critical","object":{"vault":"kv-demo","name":"x"}}"#;
        let now = Utc::now();
        let header = keyturn_notify::sign(b"0123456789abcdef0123", now.timestamp(), body);
        let good = Received::check(b"0123456789abcdef0123", Some(&header), body, now);
        assert_eq!(good.verified, Ok(()));
        assert_eq!(good.field("/object/vault"), "kv-demo");
        assert_eq!(good.field("/severity"), "critical");

        let wrong_secret = Received::check(b"another-secret-of-20", Some(&header), body, now);
        assert!(wrong_secret.verified.is_err());
        let unsigned = Received::check(b"0123456789abcdef0123", None, body, now);
        assert!(unsigned.verified.unwrap_err().contains("X-Keyturn-Signature"));
        let replayed = Received::check(b"0123456789abcdef0123", Some(&header), body, now + TimeDelta::minutes(10));
        assert!(replayed.verified.is_err());
    }

    #[test]
    fn handlers_are_built_where_keyturn_is_with_its_profile_and_target() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::create_dir_all(target.join("x86_64-unknown-linux-musl/release")).unwrap();
        std::fs::create_dir_all(target.join("debug")).unwrap();
        std::fs::write(target.join("CACHEDIR.TAG"), "Signature: 8a477f597d28d172789f06886806bc55").unwrap();
        let two = [handlers::find("near-expiry").unwrap(), handlers::find("expired").unwrap()];

        let release = CargoBuild::beside(&target.join("x86_64-unknown-linux-musl/release"), &two).unwrap();
        assert_eq!(release.target_dir, target);
        assert_eq!(
            release.command_line(Some(dir.path())),
            "cargo build --release --target x86_64-unknown-linux-musl -p near-expiry -p expired"
        );
        let debug = CargoBuild::beside(&target.join("debug"), &two[..1]).unwrap();
        assert_eq!(debug.args(), ["build", "-p", "near-expiry"]);
        // Built into a target directory elsewhere: the command says where.
        assert_eq!(
            debug.command_line(Some(Path::new("/elsewhere"))),
            format!("cargo build -p near-expiry --target-dir {}", target.display())
        );
        let custom = CargoBuild { profile: "profiling".into(), ..debug };
        assert_eq!(custom.args(), ["build", "--profile", "profiling", "-p", "near-expiry"]);

        // Not a cargo target directory (e.g. ~/.cargo/bin): nothing to build beside.
        std::fs::create_dir_all(dir.path().join("bin")).unwrap();
        assert_eq!(CargoBuild::beside(&dir.path().join("bin"), &two), None);
    }

    #[tokio::test]
    async fn the_seeded_vault_is_due_only_after_the_clock_moves() {
        let kv = KeyVaultEmulator::builder().vault(VAULT).vault(MIRROR).start().await.unwrap();
        let today = kv.clock().now();
        let seeded = seed(kv.store(), today).unwrap();
        let after_jump = today + TimeDelta::days(JUMP_DAYS.into());
        let lead = TimeDelta::days(30);
        for object in &seeded {
            let exp = latest(kv.store(), object.kind, VAULT, object.name).unwrap().exp;
            let label = object.label();
            match object.expect {
                Expect::Canary => assert_eq!(exp, None, "{label}"),
                _ => {
                    let exp = DateTime::from_timestamp(exp.unwrap(), 0).unwrap();
                    assert!(exp - lead > today, "{label} is already near expiry before the jump");
                    assert!(exp - lead <= after_jump, "{label} is not near expiry after the jump");
                    assert_eq!(exp <= after_jump, object.expect == Expect::Alarm, "{label}");
                }
            }
        }
        let expects: Vec<Expect> = seeded.iter().map(|s| s.expect).collect();
        assert_eq!(expects.iter().filter(|e| **e == Expect::Rotated).count(), 4);
        assert!(seeded.iter().any(|s| s.mirrored));
        // A rotated version (valid VALIDITY_DAYS from the real clock) is not near expiry after the jump.
        assert!(today + TimeDelta::days(VALIDITY_DAYS.into()) - lead > after_jump);
        kv.shutdown().await;
    }

    #[test]
    fn answers_name_their_object_once() {
        let seeded = [Seeded {
            kind: ObjectKind::Secret,
            name: "partner-sftp-password",
            version: "v1".into(),
            expect: Expect::Manual,
            mirrored: false,
        }];
        let (object, why) = answer_object(
            &seeded,
            "kv-demo/partner-sftp-password not opted in (tag KeyturnRotation absent or off): manual rotation due",
        )
        .unwrap();
        assert_eq!(object, "secret kv-demo/partner-sftp-password");
        assert_eq!(why, "not opted in (tag KeyturnRotation absent or off): manual rotation due");
        let (_, why) = answer_object(&seeded, "secret kv-mirror/partner-sftp-password: refused").unwrap();
        assert_eq!(why, "refused");
        let inside = "the event is about kv-demo/partner-sftp-password, not ours";
        assert_eq!(answer_object(&seeded, inside).unwrap().1, inside);
        assert_eq!(answer_object(&seeded, "kv-demo/partner-sftp-password-old is not seeded"), None);
        assert_eq!(answer_object(&seeded, "something else entirely"), None);
    }
}
