//! A stand-in for the Azure Functions host (`func start`), for where the real one cannot run: it reads
//! `host.json` and the function folders, starts the custom handler executable as the host does, and serves the
//! Event Grid extension's webhook with the real semantics (reference/functions-custom-handler.md).
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use keyturn_local::functions_host::{FunctionApp, FunctionsHost};
//! let app = FunctionApp::load(std::path::Path::new("."))?;
//! let host = FunctionsHost::builder(app)
//!     .executable("target/debug/near-expiry")
//!     .only(["near-expiry"])
//!     .start()
//!     .await?;
//! // POST events to host.webhook_url("near-expiry") with `aeg-event-type: Notification`.
//! host.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Where it differs from the real host, and why
//! - `functionTimeout` fails the invocation; the real host also recycles itself. A test wants the next delivery
//!   to go to the same handler.
//! - A delivery arriving while the handler restarts waits for it (up to the init timeout) instead of failing.
//! - A Notification body that is not JSON is answered 400 (the real extension throws, which makes a 500).
//! - `aeg-event-type: SubscriptionDeletion` (Event Grid's documented name) is answered 202 like `Unsubscribe`
//!   (the name the extension checks).
//! - No `code` query parameter is required: everything listens on loopback only.
//! - Its app settings are the environment Core Tools would see: they win over local.settings.json `Values`,
//!   and nothing of the stand-in's own environment is added. `AzureWebJobsStorage` must be set as Core Tools
//!   requires, but nothing connects to it: the stand-in keeps no state in storage.
//!
//! # Layout
//! - [`keyturn_app`] (re-exported here): host.json and function.json, read and validated ([`FunctionApp`]),
//!   and local.settings.json with the checks Core Tools makes before starting (the product's own layout).
//! - `worker`: the handler process: environment, readiness poll, crash/restart rules ([`WorkerStatus`]).
//! - `invoke`: one invocation: the custom-handler envelope, functionTimeout, failure classes ([`InvocationRecord`]).
//! - `webhook`: `/runtime/webhooks/eventgrid`, the Event Grid extension's endpoint.
//! - `output`: the handler's stdout/stderr and response `Logs`, to tracing and to a buffer tests scan.
//! - `subscribed`: a handler behind the stand-in, subscribed to the local stack's Event Grid as deployed
//!   ([`SubscribedHandler`]; `keyturn dev`, `keyturn demo` and the end-to-end tests).

mod invoke;
mod output;
mod subscribed;
mod webhook;
mod worker;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use warp::Filter;

pub use invoke::{HOST_VERSION, InvocationError, InvocationRecord};
pub use keyturn_app::{
    AppError, CustomHandler, DEFAULT_FUNCTION_TIMEOUT, DEFINITIONS_DIR, FunctionApp, FunctionDefinition, find_app_root,
};
pub use output::{HandlerOutput, OutputLine, Stream};
pub use subscribed::{SubscribedError, SubscribedHandler};
pub use webhook::WEBHOOK_PATH;
pub use worker::WorkerStatus;

use invoke::{InvocationLog, Invoker};
use worker::{Worker, WorkerConfig};

/// How long the real host waits for a new handler to answer `GET /` (its documented default).
pub const DEFAULT_INIT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a handler gets to exit after SIGTERM before it is killed.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long [`FunctionsHost::shutdown`] lets running deliveries finish before closing the webhook anyway.
const WEBHOOK_DRAIN: Duration = Duration::from_secs(5);

/// Why the host could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    UnknownFunction(String),
    /// What Core Tools refuses before starting anything: no worker runtime, no storage for an Event Grid
    /// trigger, unreadable local.settings.json (in Core Tools' words).
    #[error(transparent)]
    Settings(#[from] keyturn_app::SettingsError),
    /// The executable exists without the executable bit: the host's process start fails as .NET's does.
    #[error(
        "An error occurred trying to start process '{executable}' with working directory '{working_directory}'. \
         Permission denied (the executable bit is not set: `chmod +x` it, and zip it with its unix permissions)"
    )]
    NotExecutable { executable: PathBuf, working_directory: PathBuf },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build the HTTP client for the handler: {0}")]
    Client(String),
    #[error("the handler {executable} did not start: {reason}{stderr}")]
    Handler {
        executable: PathBuf,
        reason: String,
        /// The handler's last stderr lines, prefixed with a newline, or empty.
        stderr: String,
    },
}

/// Options for starting a [`FunctionsHost`]; every one has the real host's default.
#[derive(Debug, Clone)]
pub struct FunctionsHostBuilder {
    app: FunctionApp,
    executable: Option<PathBuf>,
    settings: BTreeMap<String, String>,
    only: Option<Vec<String>>,
    function_timeout: Option<Option<Duration>>,
    init_timeout: Duration,
    shutdown_grace: Duration,
    port: u16,
    read_local_settings: bool,
    run_schedules: bool,
}

impl FunctionsHostBuilder {
    /// Runs this executable instead of host.json's `defaultExecutablePath` (e.g. `target/debug/near-expiry`).
    pub fn executable(mut self, path: impl Into<PathBuf>) -> Self {
        self.executable = Some(path.into());
        self
    }

    /// An app setting: an environment variable of the handler, usable as `%NAME%` in host.json `arguments`.
    pub fn app_setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.insert(name.into(), value.into());
        self
    }

    /// Several app settings at once.
    pub fn app_settings<K: Into<String>, V: Into<String>>(
        mut self,
        settings: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.settings.extend(settings.into_iter().map(|(name, value)| (name.into(), value.into())));
        self
    }

    /// Serves only these functions (a function app deployed with a subset of the handlers).
    pub fn only<S: Into<String>>(mut self, functions: impl IntoIterator<Item = S>) -> Self {
        self.only = Some(functions.into_iter().map(Into::into).collect());
        self
    }

    /// Overrides host.json's `functionTimeout`; `None` means unbounded. An invocation still running at this
    /// limit fails (on the real host the function fails at `functionTimeout` too).
    pub fn function_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.function_timeout = Some(timeout);
        self
    }

    /// How long a (re)started handler has to answer `GET /` (default 30 s).
    pub fn init_timeout(mut self, timeout: Duration) -> Self {
        self.init_timeout = timeout;
        self
    }

    /// How long the handler gets between SIGTERM and SIGKILL on shutdown (default 5 s).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Ignores `local.settings.json` at the app root: every setting comes from [`Self::app_settings`]. For the
    /// local stack's own runs (dev, demo, tests), whose settings must not pick up a developer's file kept for
    /// `func start` against Azure (with real notification channels in it).
    pub fn without_local_settings(mut self) -> Self {
        self.read_local_settings = false;
        self
    }

    /// Fires each timer function on its schedule (NCRONTAB, in UTC), one run at a time, as the host does. Off by
    /// default: tests fire timers themselves ([`FunctionsHost::invoke_timer`]), so that an hourly schedule cannot
    /// add a run in the middle of a test; `keyturn dev` turns it on. Either way the schedule is checked at start.
    pub fn run_schedules(mut self) -> Self {
        self.run_schedules = true;
        self
    }

    /// Serves the webhook on this port of 127.0.0.1 (default 0: any free port; `func start` uses 7071).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Binds the webhook, starts the handler, and returns once the handler answers `GET /`.
    pub async fn start(self) -> Result<FunctionsHost, StartError> {
        let mut app = self.app;
        if let Some(only) = &self.only {
            app.retain(only).map_err(StartError::UnknownFunction)?;
        }
        let executable = match self.executable {
            Some(path) => path,
            None => app.executable_path(),
        };
        // What `func start` checks before it starts anything: local.settings.json under the environment (here
        // the app settings given), a worker runtime, storage for the Event Grid trigger.
        let local = if self.read_local_settings { keyturn_app::LocalSettings::read(app.root())? } else { None };
        let settings = keyturn_app::local_settings::func_start_settings(&app, local.as_ref(), &self.settings)?;
        let mut schedules = Vec::new();
        for function in app.functions() {
            // App setting names are case-insensitive, as `func_start_settings` reads them.
            let lookup =
                |name: &str| settings.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
            if let Some(schedule) = keyturn_app::local_settings::schedule_of(function, lookup)? {
                schedules.push((function.clone(), schedule));
            }
        }
        if std::fs::metadata(&executable).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 == 0) {
            return Err(StartError::NotExecutable { executable, working_directory: app.working_directory() });
        }
        let mut env = settings.clone();
        env.insert("FUNCTIONS_APP_ROOT_PATH".into(), app.root().display().to_string());
        let config = WorkerConfig {
            executable: executable.clone(),
            arguments: app
                .handler()
                .arguments
                .iter()
                .map(|argument| keyturn_app::function_app::expand_arguments(argument, &settings))
                .collect(),
            working_directory: app.working_directory(),
            env,
            init_timeout: self.init_timeout,
            shutdown_grace: self.shutdown_grace,
        };

        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let listener = TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind { addr, source })?;

        let output = HandlerOutput::default();
        let log = InvocationLog::default();
        let mut worker = Worker::spawn(config, output.clone());
        let client =
            reqwest::Client::builder().no_proxy().build().map_err(|error| StartError::Client(error.to_string()))?;
        let invoker = Invoker {
            client,
            status: worker.status(),
            output: output.clone(),
            function_timeout: self.function_timeout.unwrap_or(app.function_timeout()),
            // A delivery arriving while the handler restarts waits for it, as the real host queues it.
            ready_wait: self.init_timeout,
            log: log.clone(),
        };

        // Wait for the first start before accepting deliveries: `start` returning means ready.
        let mut status = worker.status();
        let first = status.wait_for(|status| *status != WorkerStatus::Starting).await.map(|status| status.clone());
        let reason = match first {
            Ok(WorkerStatus::Running { .. }) => None,
            Ok(WorkerStatus::Exited) => Some("it exited with code 0 while starting".to_owned()),
            Ok(WorkerStatus::Failed(reason)) => Some(reason),
            Ok(other) => Some(format!("it ended up {other:?}")),
            Err(_) => Some("its supervisor stopped".to_owned()),
        };
        if let Some(reason) = reason {
            worker.shutdown().await;
            return Err(StartError::Handler { executable, reason, stderr: stderr_tail(&output) });
        }

        let functions: BTreeMap<String, FunctionDefinition> =
            app.functions().map(|function| (function.name.clone(), function.clone())).collect();
        let invoker = Arc::new(invoker);
        let routes = webhook::routes(Arc::new(functions), invoker.clone()).recover(webhook::recover).unify();
        let (stop_webhook, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(
            warp::serve(routes)
                .incoming(listener)
                .graceful(async {
                    // A dropped sender (the host dropped) stops the server too.
                    let _ = stopped.await;
                })
                .run(),
        );
        tracing::info!(%addr, functions = ?app.functions().map(|f| &f.name).collect::<Vec<_>>(), "Functions host stand-in ready");
        let timers = if self.run_schedules {
            schedules
                .into_iter()
                .map(|(function, schedule)| tokio::spawn(run_schedule(invoker.clone(), function, schedule)))
                .collect()
        } else {
            Vec::new()
        };

        Ok(FunctionsHost {
            addr,
            app,
            invoker,
            status,
            worker,
            server: Some(server),
            stop_webhook: Some(stop_webhook),
            output,
            log,
            timers,
        })
    }
}

/// Fires `function` at each time `schedule` names, one run at a time: a time that passes while a run is still
/// going is skipped, as the host's singleton timer skips it.
async fn run_schedule(invoker: Arc<Invoker>, function: FunctionDefinition, schedule: keyturn_app::ncrontab::Schedule) {
    tracing::info!(function = %function.name, schedule = %schedule, "timer scheduled");
    // What the host reports as the last run before the first: nothing yet (.NET's default date).
    let mut last = "0001-01-01T00:00:00Z".to_owned();
    loop {
        let now = chrono::Utc::now();
        let Some(due) = schedule.next_after(now) else {
            tracing::warn!(function = %function.name, schedule = %schedule, "the schedule never fires again");
            return;
        };
        tokio::time::sleep((due - now).to_std().unwrap_or_default()).await;
        let due_text = due.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let tick = keyturn_host::timer::Tick::azure_binding_value(false, &last, &due_text);
        if let Err(error) = invoker.invoke(&function, tick).await {
            tracing::warn!(function = %function.name, %error, "the scheduled run failed");
        }
        last = due_text;
    }
}

/// The last stderr lines of the handler, for a start error.
fn stderr_tail(output: &HandlerOutput) -> String {
    let lines: Vec<String> =
        output.lines().into_iter().filter(|line| line.stream == Stream::Stderr).map(|line| line.text).collect();
    let tail = &lines[lines.len().saturating_sub(20)..];
    if tail.is_empty() { String::new() } else { format!("\nits last stderr lines:\n{}", tail.join("\n")) }
}

/// A running Functions host stand-in: the webhook and the handler process it supervises.
///
/// Dropping it kills the handler (SIGKILL); [`FunctionsHost::shutdown`] stops it gracefully.
#[derive(Debug)]
pub struct FunctionsHost {
    addr: SocketAddr,
    app: FunctionApp,
    invoker: Arc<Invoker>,
    status: watch::Receiver<WorkerStatus>,
    worker: Worker,
    server: Option<JoinHandle<()>>,
    stop_webhook: Option<oneshot::Sender<()>>,
    output: HandlerOutput,
    log: InvocationLog,
    /// The timers' schedules, when they run ([`FunctionsHostBuilder::run_schedules`]).
    timers: Vec<JoinHandle<()>>,
}

impl FunctionsHost {
    /// Options for starting `app`.
    pub fn builder(app: FunctionApp) -> FunctionsHostBuilder {
        FunctionsHostBuilder {
            app,
            executable: None,
            settings: BTreeMap::new(),
            only: None,
            function_timeout: None,
            init_timeout: DEFAULT_INIT_TIMEOUT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            port: 0,
            read_local_settings: true,
            run_schedules: false,
        }
    }

    /// The app this host serves (restricted to [`FunctionsHostBuilder::only`] if given).
    pub fn app(&self) -> &FunctionApp {
        &self.app
    }

    /// Where the webhook listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The Event Grid webhook of one function, as Event Grid is given it (no `code` needed locally).
    pub fn webhook_url(&self, function: &str) -> String {
        let query: String =
            url::form_urlencoded::Serializer::new(String::new()).append_pair("functionName", function).finish();
        format!("{}{WEBHOOK_PATH}?{query}", self.url())
    }

    /// Where the handler process is in its life now.
    pub fn status(&self) -> WorkerStatus {
        self.status.borrow().clone()
    }

    /// Waits until the handler's status satisfies `predicate` and returns that status. Bound it with a timeout.
    pub async fn wait_for_status(&self, predicate: impl FnMut(&WorkerStatus) -> bool) -> WorkerStatus {
        let mut status = self.status.clone();
        match status.wait_for(predicate).await {
            Ok(status) => status.clone(),
            // The supervisor is gone: the last status is final.
            Err(_) => self.status(),
        }
    }

    /// The pid of the running handler process, if one is running.
    pub fn worker_pid(&self) -> Option<u32> {
        match self.status() {
            WorkerStatus::Running { pid, .. } => Some(pid),
            _ => None,
        }
    }

    /// Everything the handler wrote (stdout, stderr) and logged (invocation `Logs`).
    pub fn output(&self) -> &HandlerOutput {
        &self.output
    }

    /// Every invocation so far, oldest first.
    pub fn invocations(&self) -> Vec<InvocationRecord> {
        self.log.records()
    }

    /// Fires a timer-triggered function (the sweep) once, as the host does when its schedule comes due (or
    /// `POST /admin/functions/<name>` does by hand): the tick under the function's binding, as the .NET host
    /// serialises it. Unless [`FunctionsHostBuilder::run_schedules`] is on, the stand-in fires no timer by itself;
    /// callers fire when they choose, so a test's "hourly" sweeps take milliseconds.
    pub async fn invoke_timer(
        &self,
        function: &str,
        past_due: bool,
    ) -> Result<keyturn_host::azure_functions::wire::InvocationResponse, InvocationError> {
        let definition = self
            .app
            .functions()
            .find(|f| f.name.eq_ignore_ascii_case(function) && f.is_timer())
            .ok_or_else(|| InvocationError::NoSuchTimer(function.to_owned()))?;
        let now = chrono::Utc::now();
        let stamp = |at: chrono::DateTime<chrono::Utc>| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let tick = keyturn_host::timer::Tick::azure_binding_value(
            past_due,
            &stamp(now - chrono::TimeDelta::hours(1)),
            &stamp(now + chrono::TimeDelta::hours(1)),
        );
        self.invoker.invoke(definition, tick).await
    }

    /// Stops the handler (SIGTERM, then SIGKILL after the grace period) and the webhook.
    pub async fn shutdown(mut self) {
        for timer in &self.timers {
            timer.abort();
        }
        self.worker.shutdown().await;
        if let Some(stop) = self.stop_webhook.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let abort = server.abort_handle();
            // A client holding a request open must not hold the shutdown: cut it off after a while.
            if tokio::time::timeout(WEBHOOK_DRAIN, server).await.is_err() {
                abort.abort();
            }
        }
        tracing::info!(addr = %self.addr, "Functions host stand-in stopped");
    }
}

impl Drop for FunctionsHost {
    fn drop(&mut self) {
        // The worker's own Drop kills the handler; the webhook and the timers must not outlive the host either.
        if let Some(server) = &self.server {
            server.abort();
        }
        for timer in &self.timers {
            timer.abort();
        }
    }
}

impl webhook::Dispatch for Invoker {
    fn invoke<'a>(&'a self, function: &'a FunctionDefinition, event: Value) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(
            async move { Invoker::invoke(self, function, event).await.map(|_| ()).map_err(|error| error.to_string()) },
        )
    }

    fn stopped(&self) -> Option<String> {
        match &*self.status.borrow() {
            WorkerStatus::Failed(reason) => Some(reason.clone()),
            WorkerStatus::ShutDown => Some("it is shutting down".to_owned()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A package folder as `keyturn package` lays it out, with a handler script that would serve forever.
    fn package(dir: &Path, mode: u32, local_settings: Option<&str>) -> FunctionApp {
        let write = |relative: &str, text: &str| {
            let path = dir.join(relative);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write("host.json", r#"{"version":"2.0","customHandler":{"description":{"defaultExecutablePath":"handler"}}}"#);
        write("f/function.json", r#"{"bindings":[{"type":"eventGridTrigger","name":"e","direction":"in"}]}"#);
        write("handler", "#!/bin/sh\nexec sleep 60\n");
        std::fs::set_permissions(dir.join("handler"), std::fs::Permissions::from_mode(mode)).unwrap();
        if let Some(text) = local_settings {
            write("local.settings.json", text);
        }
        FunctionApp::load(dir).unwrap()
    }

    const SETTINGS: &str = r#"{"IsEncrypted":false,"Values":{"FUNCTIONS_WORKER_RUNTIME":"custom","AzureWebJobsStorage":"UseDevelopmentStorage=true"}}"#;

    async fn start_error(app: FunctionApp) -> String {
        let result = FunctionsHost::builder(app).init_timeout(Duration::from_secs(5)).start().await;
        match result {
            Ok(host) => {
                host.shutdown().await;
                panic!("the stand-in started what func start refuses")
            }
            Err(error) => error.to_string(),
        }
    }

    #[tokio::test]
    async fn a_package_without_local_settings_fails_as_core_tools_does() {
        let dir = tempfile::tempdir().unwrap();
        let error = start_error(package(dir.path(), 0o755, None)).await;
        assert!(error.contains("Worker runtime cannot be 'None'. Please set a valid runtime."), "{error}");
    }

    #[tokio::test]
    async fn a_package_without_storage_for_its_event_grid_trigger_fails_as_core_tools_does() {
        let dir = tempfile::tempdir().unwrap();
        let settings = r#"{"IsEncrypted":false,"Values":{"FUNCTIONS_WORKER_RUNTIME":"custom"}}"#;
        let error = start_error(package(dir.path(), 0o755, Some(settings))).await;
        assert!(error.starts_with("Missing value for AzureWebJobsStorage in local.settings.json."), "{error}");
    }

    #[tokio::test]
    async fn a_handler_without_the_executable_bit_fails_as_the_host_does() {
        let dir = tempfile::tempdir().unwrap();
        let error = start_error(package(dir.path(), 0o644, Some(SETTINGS))).await;
        assert!(error.starts_with("An error occurred trying to start process"), "{error}");
        assert!(error.contains("Permission denied"), "{error}");
    }

    #[tokio::test]
    async fn app_settings_are_the_environment_and_win_over_local_settings() {
        let dir = tempfile::tempdir().unwrap();
        // No local.settings.json, but the environment has both: Core Tools accepts that.
        let app = package(dir.path(), 0o755, None);
        let builder = FunctionsHost::builder(app.clone())
            .app_settings(keyturn_app::local_settings::func_start_defaults())
            .without_local_settings()
            .init_timeout(Duration::from_millis(300));
        // The script never answers GET /: it starts, then fails readiness, which is past the checks.
        let error = builder.start().await.map(|_| ()).unwrap_err().to_string();
        assert!(error.contains("did not start"), "{error}");

        // A local.settings.json that names another worker runtime loses to the environment's `custom`.
        std::fs::write(dir.path().join("local.settings.json"), r#"{"Values":{"FUNCTIONS_WORKER_RUNTIME":"node"}}"#)
            .unwrap();
        let error = start_error(app.clone()).await;
        assert!(error.contains("FUNCTIONS_WORKER_RUNTIME is \"node\""), "{error}");
        let result = FunctionsHost::builder(app)
            .app_settings(keyturn_app::local_settings::func_start_defaults())
            .init_timeout(Duration::from_millis(300))
            .start()
            .await;
        let error = result.map(|_| ()).unwrap_err().to_string();
        assert!(error.contains("did not start"), "{error}");
    }

    #[tokio::test]
    async fn a_timer_whose_schedule_the_host_cannot_read_is_not_indexed_and_nothing_starts() {
        let dir = tempfile::tempdir().unwrap();
        let app = package(dir.path(), 0o755, Some(SETTINGS));
        let timer = dir.path().join("t/function.json");
        std::fs::create_dir_all(timer.parent().unwrap()).unwrap();
        // Unix cron's five fields: Functions timers take six (seconds first).
        std::fs::write(
            &timer,
            r#"{"bindings":[{"type":"timerTrigger","name":"timer","direction":"in","schedule":"*/5 * * * *"}]}"#,
        )
        .unwrap();
        let error = start_error(FunctionApp::load(dir.path()).unwrap()).await;
        assert!(
            error.contains(
                "The 't' function is in error: Error indexing method 'Functions.t'. The schedule expression \
                 '*/5 * * * *' was not recognized as a valid cron expression or timespan string."
            ),
            "{error}"
        );
        drop(app);
    }
}
