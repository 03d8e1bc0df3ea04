//! `keyturn dev`: the local stack (Key Vault emulator, identity endpoint, Event Grid, management API) with
//! each built handler behind a Functions host stand-in and subscribed as its infra counterpart is, left
//! running until Ctrl-C or SIGTERM. It prints what a real `func start` or a handler needs to use it, and
//! writes a state file for `keyturn send --to dev`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use keyturn_app::FunctionApp;
use keyturn_local::eventgrid::EventGridOptions;
use keyturn_local::functions_host::{FunctionsHost, SubscribedHandler};
use keyturn_local::keyvault::KeyVaultEmulator;
use keyturn_local::roles::Deployment;
use keyturn_local::stack::LocalStack;
use serde_json::json;

use crate::dev_state::{self, DevState};
use crate::exit::{CommandFailure, ExitStatus};
use crate::handlers::{self, BinaryOverride, HANDLERS, Handler};
use crate::output::{Output, Tone};

const AFTER_HELP: &str = "\
Examples:
  keyturn dev                              # kv-one, every handler in target/debug
  keyturn dev --vault kv-one --vault kv-two --release
  keyturn dev --handler near-expiry        # only that handler
  keyturn dev --binary test-event=./probe  # another executable as a handler
  keyturn dev --sweep-schedule '*/30 * * * * *'  # the sweep every 30 s (NCRONTAB, seconds first)
Then, in another terminal:
  keyturn send near-expiry --vault kv-one --secret db-password --to dev
  curl -s <management URL>/clock/advance -d '{\"days\": 30}'";

#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// Vaults to serve (repeatable).
    #[arg(long = "vault", value_name = "NAME", default_value = "kv-one")]
    pub vaults: Vec<String>,

    /// Handlers to run [default: every one that is built].
    #[arg(long = "handler", value_name = "HANDLER", value_parser = handlers::parse_name)]
    pub handlers: Vec<&'static Handler>,

    /// Run this executable as that handler (repeatable).
    #[arg(long, value_name = "HANDLER=PATH")]
    pub binary: Vec<BinaryOverride>,

    /// Take the handlers from target/release instead of target/debug.
    #[arg(long)]
    pub release: bool,

    /// Cargo's target directory [default: $CARGO_TARGET_DIR, else <repo>/target].
    #[arg(long, value_name = "DIR")]
    pub target_dir: Option<PathBuf>,

    /// The repository (host.json, function-definitions/) [default: found from the working directory].
    #[arg(long, value_name = "DIR")]
    pub app_root: Option<PathBuf>,

    /// Where to write the state file `keyturn send --to dev` reads [default: <temp dir>/keyturn-dev.json].
    #[arg(long, value_name = "PATH")]
    pub state_file: Option<PathBuf>,

    /// The sweep's NCRONTAB schedule (six fields, seconds first, UTC), which the stand-in runs as the host would.
    #[arg(
        long,
        value_name = "NCRONTAB",
        default_value = keyturn_app::handlers::DEFAULT_SWEEP_SCHEDULE,
        value_parser = parse_schedule
    )]
    pub sweep_schedule: String,

    /// The name of the canary secret, whose new versions go to test-event only.
    #[arg(long, value_name = "NAME", default_value = handlers::DEFAULT_CANARY_SECRET)]
    pub canary_secret: String,
}

fn parse_schedule(value: &str) -> Result<String, String> {
    keyturn_app::ncrontab::Schedule::parse(value).map(|_| value.to_owned()).map_err(|error| error.to_string())
}

/// A handler running behind its stand-in (`keyturn demo` runs them the same way).
pub(crate) struct Running {
    pub(crate) handler: &'static Handler,
    pub(crate) host: FunctionsHost,
}

pub async fn run(args: Args, output: &Output) -> Result<ExitStatus, CommandFailure> {
    let root = handlers::app_root(args.app_root.as_deref())?;
    let target_dir = handlers::target_dir(args.target_dir.as_deref(), &root);
    let profile = if args.release { "release" } else { "debug" };
    let app = FunctionApp::load(&root).map_err(|error| CommandFailure::setup(format!("the function app: {error}")))?;

    // Decide the handlers before starting anything, so a wrong --handler costs nothing.
    let wanted: Vec<&'static Handler> =
        if args.handlers.is_empty() { HANDLERS.iter().collect() } else { args.handlers.clone() };
    let mut plan = Vec::new();
    for handler in wanted {
        let overridden = args.binary.iter().rev().find(|o| o.handler.name == handler.name).map(|o| o.path.clone());
        let binary = overridden.clone().unwrap_or_else(|| handlers::built_binary(&target_dir, None, profile, handler));
        if binary.is_file() {
            plan.push((handler, binary));
        } else if overridden.is_some() || !args.handlers.is_empty() {
            // Asked for by name: its absence is an error, not a skip.
            return Err(CommandFailure::setup(format!("{} is not there", binary.display()))
                .hint(format!("run `{}`", handlers::build_command(&[handler], profile, None))));
        } else {
            output.warn(&format!(
                "{} not built ({}): skipped; `{}` adds it",
                handler.name,
                binary.display(),
                handlers::build_command(&[handler], profile, None)
            ));
        }
    }

    output.status("starting the local stack (Key Vault, identity, Event Grid)");
    let mut vaults = KeyVaultEmulator::builder();
    for vault in &args.vaults {
        vaults = vaults.vault(vault.clone());
    }
    let stack = LocalStack::start(vaults, EventGridOptions::default())
        .await
        .map_err(|error| CommandFailure::setup(format!("the local stack did not start: {error}")))?;

    // What infra would grant for a deployment watching these vaults: each handler its own identity with its
    // infra/roles.json roles, nothing more.
    let deployment = Deployment {
        monitored_vaults: args.vaults.clone(),
        canary_secret: Some(args.canary_secret.clone()),
        ..Deployment::default()
    };
    let schedule = [(keyturn_app::handlers::SWEEP_SCHEDULE_SETTING.to_owned(), args.sweep_schedule.clone())];
    let mut running = Vec::new();
    for (handler, binary) in plan {
        output.status(&format!("starting {} ({})", handler.name, binary.display()));
        match start_handler(&stack, &app, handler, &binary, &deployment, &schedule, true).await {
            Ok(host) => running.push(Running { handler, host }),
            Err(failure) => {
                stop(running, stack).await;
                return Err(failure);
            }
        }
    }

    let state = DevState {
        pid: std::process::id(),
        management_url: stack.management_url(),
        vaults: stack
            .emulator()
            .vault_names()
            .filter_map(|name| stack.emulator().vault_url(name).map(|url| (name.to_owned(), url.to_owned())))
            .collect(),
        ca_file: stack.emulator().ca_pem_path().display().to_string(),
        identity_endpoint: stack.emulator().identity_env().endpoint,
        functions: running.iter().map(|r| (r.handler.name.to_owned(), r.host.url())).collect(),
        client_ids: running
            .iter()
            .filter_map(|r| client_id_of(&stack, r.handler.name).map(|id| (r.handler.name.to_owned(), id)))
            .collect(),
    };
    let state_path = args.state_file.clone().unwrap_or_else(dev_state::default_path);
    if let Err(failure) = state.write(&state_path) {
        stop(running, stack).await;
        return Err(failure);
    }
    print_banner(output, &stack, &running, &state, &state_path, &args.sweep_schedule);

    let stopped_by = wait_for_stop().await;
    output.status(&format!("{stopped_by}: stopping"));
    DevState::remove_if_ours(&state_path, state.pid);
    stop(running, stack).await;
    output.status("stopped");
    Ok(ExitStatus::Ok)
}

/// Starts `handler` from `binary` behind a Functions host stand-in with the stack's settings, the canary's
/// name and `extra` app settings (this handler's own), under an identity of its own holding exactly its
/// infra/roles.json grants for `deployment`, and subscribes it in Event Grid as its deployment is subscribed.
/// With `schedules`, a timer handler (the sweep) also runs on its schedule, as the real host runs it.
pub(crate) async fn start_handler(
    stack: &LocalStack,
    app: &FunctionApp,
    handler: &'static Handler,
    binary: &std::path::Path,
    deployment: &Deployment,
    extra: &[(String, String)],
    schedules: bool,
) -> Result<FunctionsHost, CommandFailure> {
    let canary = deployment.canary_secret.as_deref().unwrap_or(handlers::DEFAULT_CANARY_SECRET);
    let started = SubscribedHandler::deployed(handler, binary, canary)
        .identity(deployment.clone())
        .app_settings(extra.iter().cloned());
    let started = if schedules { started.host(|host| host.run_schedules()) } else { started };
    started.start(stack, app).await.map_err(|error| CommandFailure::failed(error.to_string()))
}

/// The client id of the identity [`start_handler`] made for `handler` (the stack names it `keyturn-<handler>`).
fn client_id_of(stack: &LocalStack, handler: &str) -> Option<String> {
    let name = format!("keyturn-{handler}");
    stack.emulator().identities().list().into_iter().find(|identity| identity.name == name).map(|i| i.client_id)
}

/// Stops each handler (SIGTERM, then SIGKILL after the grace period; the stand-in reaps it), then the stack.
pub(crate) async fn stop(running: Vec<Running>, stack: LocalStack) {
    for r in running {
        r.host.shutdown().await;
    }
    stack.shutdown().await;
}

/// Waits for Ctrl-C (SIGINT) or SIGTERM and says which.
pub(crate) async fn wait_for_stop() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => tokio::select! {
            _ = tokio::signal::ctrl_c() => "interrupted",
            _ = terminate.recv() => "terminated",
        },
        // Without a SIGTERM handler, Ctrl-C still works.
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            "interrupted"
        }
    }
}

fn print_banner(
    output: &Output,
    stack: &LocalStack,
    running: &[Running],
    state: &DevState,
    state_path: &std::path::Path,
    sweep_schedule: &str,
) {
    let heading = |text: &str| output.paint(Tone::Strong, text);
    let mut lines = vec![heading("keyturn dev: the local stack is running"), String::new()];
    for (name, url) in &state.vaults {
        lines.push(format!("  vault {name:<12} {url}"));
    }
    lines.push(format!("  CA certificate     {}", state.ca_file));
    lines.push(format!("  identity endpoint  {}", state.identity_endpoint));
    lines.push(format!("  management API     {}", state.management_url));
    lines.push(format!("  state file         {}", state_path.display()));
    lines.push(String::new());
    if running.is_empty() {
        lines.push("  no handler running (none built): build them with `cargo build --workspace`".to_owned());
    }
    for r in running {
        let pid = r.host.worker_pid().map(|pid| format!("pid {pid}")).unwrap_or_else(|| "not running".to_owned());
        let reached_at = match r.handler.trigger {
            keyturn_app::handlers::Trigger::EventGrid { .. } => r.host.webhook_url(r.handler.name),
            // The stand-in runs the schedule as the host does (NCRONTAB, UTC).
            keyturn_app::handlers::Trigger::Timer { .. } => {
                format!("timer, on its schedule \"{sweep_schedule}\" (--sweep-schedule, UTC)")
            }
        };
        lines.push(format!("  handler {:<12} {reached_at}  ({pid})", r.handler.name));
    }

    let mut values: BTreeMap<String, String> = keyturn_app::local_settings::func_start_defaults();
    values.extend(stack.handler_env());
    let settings = json!({ "IsEncrypted": false, "Values": values });
    lines.push(String::new());
    lines.push(heading("local.settings.json for `func start` (or a handler run by hand):"));
    lines.push(serde_json::to_string_pretty(&settings).unwrap_or_default());
    lines.push(String::new());
    lines.push(heading("or in a shell:"));
    for (name, value) in stack.handler_env() {
        lines.push(format!("export {name}='{}'", value.replace('\'', r"'\''")));
    }
    // The stack enforces each handler's infra/roles.json grants: the identity endpoint's default (system)
    // identity holds none, so a handler run by hand must select its own.
    lines.push(String::new());
    lines.push(heading("plus the AZURE_CLIENT_ID of the handler you run (its own identity, holding its roles):"));
    for (name, client_id) in &state.client_ids {
        lines.push(format!("  {name:<12} AZURE_CLIENT_ID={client_id}"));
    }
    lines.push(String::new());
    lines.push(output.paint(Tone::Dim, "Ctrl-C stops the stack."));
    output.line(&lines.join("\n"));
}
