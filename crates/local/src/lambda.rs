//! A stand-in for AWS Lambda, the counterpart of [`crate::functions_host`]: one function's execution
//! environment on loopback, running the real handler executable as Lambda's OS-only runtime runs `bootstrap`,
//! with a function URL in front so Event Grid (or anything speaking HTTP) can reach it as a webhook.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use keyturn_local::lambda::LocalLambda;
//! let lambda = LocalLambda::builder("target/debug/near-expiry")
//!     .app_setting("KEYTURN_WEBHOOK_SECRET", "a-shared-secret-of-32-characters")
//!     .start()
//!     .await?;
//! // Subscribe lambda.url() in Event Grid as a WebHook; read lambda.runtime().invocations().
//! lambda.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! The process gets what Lambda gives a function and nothing of the caller's environment:
//! `AWS_LAMBDA_RUNTIME_API`, `AWS_LAMBDA_FUNCTION_NAME`, `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`,
//! `AWS_LAMBDA_FUNCTION_VERSION`, `AWS_LAMBDA_LOG_GROUP_NAME`, `AWS_LAMBDA_LOG_STREAM_NAME`,
//! `AWS_LAMBDA_INITIALIZATION_TYPE`, `AWS_REGION`, `AWS_DEFAULT_REGION`, `LAMBDA_TASK_ROOT` (the executable's
//! folder, also its working directory), `PATH`, `LANG`, `TZ`, plus the function's app settings (its
//! environment variables). As on Lambda, an app setting may not use a reserved name.
//!
//! # Where it differs from Lambda, and why
//! - One execution environment: concurrent requests wait for it in turn instead of starting more
//!   environments. A batch is one request either way.
//! - When the process exits, what it was running and what waits fail with `Runtime.ExitError`, and so does
//!   every later invocation until [`LocalLambda::redeploy`]; Lambda would start a new environment on the next
//!   invocation. A test wants to see the exit, not have it papered over.
//! - A timed-out invocation fails (`502` at the function URL) but the process is not reset.
//! - No extensions, no `SIGTERM` at shutdown unless [`LocalLambda::terminate`] or [`LocalLambda::shutdown`]
//!   asks for it, no IAM or SigV4 (the function URL's auth type is NONE).
//!
//! # Layout
//! - `runtime_api`: the Runtime API the process polls ([`RuntimeApi`], [`Invocation`], [`Completion`]).
//! - `function_url`: HTTP ⇄ payload-2.0 events in front of it.
//! - this file: the builder, the process (environment, output, exit) and [`LocalLambda`].

mod function_url;
mod runtime_api;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::functions_host::{HandlerOutput, Stream};

pub use function_url::PAYLOAD_LIMIT;
pub use runtime_api::{Completion, EXIT_ERROR, InitError, Invocation, InvokeError, RuntimeApi};

/// The region in the function's ARN and `AWS_REGION`.
pub const REGION: &str = "eu-west-1";
/// The account in the function's ARN.
pub const ACCOUNT: &str = "123456789012";
/// Lambda's default memory size, in MB.
pub const DEFAULT_MEMORY_SIZE: u32 = 128;
/// The timeout keyturn's deployment uses (docs/aws-lambda.md): what Event Grid waits for an answer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the process gets between SIGTERM and SIGKILL in [`LocalLambda::shutdown`].
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Environment variables Lambda sets itself and refuses as function configuration.
pub const RESERVED_VARIABLES: [&str; 18] = [
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
];

/// How long the output readers get to drain after the process exited.
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);

/// Why the local Lambda could not start or the process could not be (re)started.
#[derive(Debug, thiserror::Error)]
pub enum LambdaError {
    #[error("cannot listen on 127.0.0.1 for the local Lambda {what}: {source}")]
    Bind {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the app setting {0} is a reserved Lambda environment variable: Lambda sets it itself and refuses it as configuration"
    )]
    ReservedVariable(String),
    #[error("cannot start the function's executable {executable}: {source}")]
    Spawn {
        executable: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the function {function} exited ({status}) before polling the Runtime API{stderr}")]
    ExitedBeforePolling {
        function: String,
        status: String,
        /// The process's last stderr lines, prefixed with a newline, or empty.
        stderr: String,
    },
    #[error("the function {function} did not poll the Runtime API within {timeout:?}")]
    NotPolling { function: String, timeout: Duration },
}

/// What Lambda knows about the function: its name, size, version and timeout.
#[derive(Debug, Clone)]
pub(crate) struct FunctionConfig {
    pub(crate) name: String,
    pub(crate) memory_size: u32,
    pub(crate) version: String,
    pub(crate) timeout: Duration,
}

impl FunctionConfig {
    pub(crate) fn arn(&self) -> String {
        format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{}", self.name)
    }
}

/// Options for starting a [`LocalLambda`]; each has Lambda's default but the timeout (keyturn's 30 s).
#[derive(Debug, Clone)]
pub struct LambdaBuilder {
    executable: PathBuf,
    function: FunctionConfig,
    settings: BTreeMap<String, String>,
}

impl LambdaBuilder {
    /// The function's name (default: the executable's file name).
    pub fn function_name(mut self, name: impl Into<String>) -> Self {
        self.function.name = name.into();
        self
    }

    /// `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`, in MB (default 128). Informational: nothing limits the process.
    pub fn memory_size(mut self, megabytes: u32) -> Self {
        self.function.memory_size = megabytes;
        self
    }

    /// `AWS_LAMBDA_FUNCTION_VERSION` (default `$LATEST`).
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.function.version = version.into();
        self
    }

    /// How long an invocation may run (default 30 s): its deadline, and how long the function URL waits.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.function.timeout = timeout;
        self
    }

    /// An app setting: an environment variable of the function.
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

    /// Binds the Runtime API and the function URL and starts the process. It returns once the process is
    /// started, not once it polls: as on Lambda, a request arriving during init waits for it (the cold start
    /// is in that request's path). [`LocalLambda::wait_until_polling`] waits for the init to end.
    pub async fn start(self) -> Result<LocalLambda, LambdaError> {
        check_settings(&self.settings)?;
        let function = Arc::new(self.function);
        let (runtime, runtime_task) = RuntimeApi::start(Arc::clone(&function)).await?;
        let (url_addr, url_task) = match function_url::start(runtime.clone()).await {
            Ok(started) => started,
            Err(error) => {
                runtime_task.abort();
                return Err(error);
            }
        };
        let mut lambda = LocalLambda {
            executable: self.executable,
            function,
            settings: self.settings,
            runtime,
            url_addr,
            servers: vec![runtime_task, url_task],
            output: HandlerOutput::default(),
            process: None,
        };
        lambda.spawn()?;
        tracing::info!(function = %lambda.function.name, url = %lambda.url(), runtime_api = %lambda.runtime.address(), "local Lambda started");
        Ok(lambda)
    }
}

fn check_settings(settings: &BTreeMap<String, String>) -> Result<(), LambdaError> {
    match settings.keys().find(|name| RESERVED_VARIABLES.contains(&name.as_str())) {
        Some(name) => Err(LambdaError::ReservedVariable(name.clone())),
        None => Ok(()),
    }
}

/// The running process: its pid, when it started, and its exit once it happened.
#[derive(Debug)]
struct Process {
    pid: u32,
    started_at: Instant,
    /// Polls the Runtime API had seen when this process started.
    polls_before: usize,
    exit: watch::Receiver<Option<ExitStatus>>,
    kill: Option<oneshot::Sender<()>>,
    supervisor: JoinHandle<()>,
}

/// One local Lambda function: its Runtime API, its function URL and the process polling it.
///
/// Dropping it kills the process (SIGKILL) and stops both servers; [`LocalLambda::shutdown`] stops the process
/// with SIGTERM first.
#[derive(Debug)]
pub struct LocalLambda {
    executable: PathBuf,
    function: Arc<FunctionConfig>,
    settings: BTreeMap<String, String>,
    runtime: RuntimeApi,
    url_addr: SocketAddr,
    servers: Vec<JoinHandle<()>>,
    output: HandlerOutput,
    process: Option<Process>,
}

impl LocalLambda {
    /// Options for running `executable` as a Lambda function.
    pub fn builder(executable: impl Into<PathBuf>) -> LambdaBuilder {
        let executable = executable.into();
        let name = executable.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
        LambdaBuilder {
            executable,
            function: FunctionConfig {
                name,
                memory_size: DEFAULT_MEMORY_SIZE,
                version: "$LATEST".to_owned(),
                timeout: DEFAULT_TIMEOUT,
            },
            settings: BTreeMap::new(),
        }
    }

    /// The function URL: `http://127.0.0.1:<port>/`, to subscribe in Event Grid as a WebHook.
    pub fn url(&self) -> url::Url {
        url::Url::parse(&format!("http://{}/", self.url_addr))
            .unwrap_or_else(|error| unreachable!("http://<a socket address>/ is always a URL: {error}"))
    }

    /// The function's Runtime API: invoke it directly, read the invocations and init errors.
    pub fn runtime(&self) -> &RuntimeApi {
        &self.runtime
    }

    /// The function's ARN, as the Runtime API gives it to the process.
    pub fn arn(&self) -> String {
        self.function.arn()
    }

    /// Everything the process wrote on stdout and stderr (Lambda sends both to CloudWatch).
    pub fn output(&self) -> &HandlerOutput {
        &self.output
    }

    /// The current process's pid.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(|process| process.pid)
    }

    /// When the current process was started (just before the spawn): the start of its cold start.
    pub fn started_at(&self) -> Option<Instant> {
        self.process.as_ref().map(|process| process.started_at)
    }

    /// The environment Lambda gives the process, app settings included.
    pub fn environment(&self) -> BTreeMap<String, String> {
        let function = &self.function;
        let task_root = self.executable.parent().unwrap_or(Path::new(".")).display().to_string();
        let stream = format!(
            "{}/[{}]{}",
            chrono::Utc::now().format("%Y/%m/%d"),
            function.version,
            uuid::Uuid::new_v4().simple()
        );
        let mut env: BTreeMap<String, String> = [
            ("PATH", "/usr/local/bin:/usr/bin/:/bin:/opt/bin".to_owned()),
            ("LANG", "en_US.UTF-8".to_owned()),
            ("TZ", ":UTC".to_owned()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
        env.extend(self.settings.clone());
        env.extend(
            [
                ("AWS_LAMBDA_RUNTIME_API", self.runtime.address().to_string()),
                ("AWS_LAMBDA_FUNCTION_NAME", function.name.clone()),
                ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", function.memory_size.to_string()),
                ("AWS_LAMBDA_FUNCTION_VERSION", function.version.clone()),
                ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{}", function.name)),
                ("AWS_LAMBDA_LOG_STREAM_NAME", stream),
                ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_owned()),
                ("AWS_REGION", REGION.to_owned()),
                ("AWS_DEFAULT_REGION", REGION.to_owned()),
                ("LAMBDA_TASK_ROOT", task_root),
            ]
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value)),
        );
        env
    }

    /// Waits until the current process polls the Runtime API for the first time: its init phase is over.
    pub async fn wait_until_polling(&mut self, timeout: Duration) -> Result<(), LambdaError> {
        let function = self.function.name.clone();
        let Some(process) = &self.process else {
            return Err(LambdaError::ExitedBeforePolling {
                function,
                status: "not started".to_owned(),
                stderr: String::new(),
            });
        };
        let mut exit = process.exit.clone();
        let outcome = tokio::time::timeout(timeout, async {
            tokio::select! {
                () = self.runtime.polled_after(process.polls_before) => Ok(()),
                exited = exit.wait_for(Option::is_some) => Err(exited.ok().and_then(|status| *status)),
            }
        })
        .await;
        match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(status)) => Err(LambdaError::ExitedBeforePolling {
                function,
                status: status.map_or_else(|| "its supervisor stopped".to_owned(), |status| status.to_string()),
                stderr: self.stderr_tail(),
            }),
            Err(_) => Err(LambdaError::NotPolling { function, timeout }),
        }
    }

    /// Replaces the process with a new one running with `settings` as its app settings (a new deployment of
    /// the same function: same Runtime API, same URL). The old process is killed first.
    pub async fn redeploy<K: Into<String>, V: Into<String>>(
        &mut self,
        settings: impl IntoIterator<Item = (K, V)>,
    ) -> Result<(), LambdaError> {
        let settings: BTreeMap<String, String> =
            settings.into_iter().map(|(name, value)| (name.into(), value.into())).collect();
        check_settings(&settings)?;
        self.kill().await;
        self.settings = settings;
        self.spawn()
    }

    /// Waits for the process to exit on its own, for at most `timeout`; `None` if it did not.
    pub async fn wait_for_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let process = self.process.as_ref()?;
        let mut exit = process.exit.clone();
        *tokio::time::timeout(timeout, exit.wait_for(Option::is_some)).await.ok()?.ok()?
    }

    /// SIGTERM, then SIGKILL once `grace` has passed; returns how the process ended.
    pub async fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        let process = self.process.as_ref()?;
        let pid = process.pid;
        // An exited (and reaped) process must not be signalled: its pid may belong to another one by now.
        if let Some(status) = *process.exit.borrow() {
            return Some(status);
        }
        let signalled = i32::try_from(pid)
            .ok()
            .map(|pid| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM));
        if matches!(signalled, Some(Ok(())))
            && let Some(status) = self.wait_for_exit(grace).await
        {
            return Some(status);
        }
        tracing::warn!(pid, ?grace, "the function did not stop on SIGTERM; killing it");
        self.kill().await
    }

    /// Stops the process (SIGTERM, then SIGKILL after [`DEFAULT_SHUTDOWN_GRACE`]) and both servers.
    pub async fn shutdown(mut self) {
        self.terminate(DEFAULT_SHUTDOWN_GRACE).await;
        tracing::info!(function = %self.function.name, "local Lambda stopped");
        // Drop aborts the servers.
    }

    /// Kills the process (if running) and waits until it is gone and its output is read.
    async fn kill(&mut self) -> Option<ExitStatus> {
        let mut process = self.process.take()?;
        if let Some(kill) = process.kill.take() {
            // A closed channel means the supervisor already saw the exit.
            let _ = kill.send(());
        }
        let status = process.exit.wait_for(Option::is_some).await.ok().and_then(|status| *status);
        if let Err(error) = process.supervisor.await
            && error.is_panic()
        {
            tracing::error!(%error, "the local Lambda's process supervisor panicked");
        }
        status
    }

    fn spawn(&mut self) -> Result<(), LambdaError> {
        let polls_before = self.runtime.polls();
        let working_directory = self.executable.parent().filter(|dir| !dir.as_os_str().is_empty());
        let mut command = Command::new(&self.executable);
        command
            .env_clear()
            .envs(self.environment())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(dir) = working_directory {
            command.current_dir(dir);
        }
        self.runtime.serving();
        let started_at = Instant::now();
        let mut child =
            command.spawn().map_err(|source| LambdaError::Spawn { executable: self.executable.clone(), source })?;
        // A spawned child has a pid until it is waited for, which has not happened yet.
        let pid = child.id().unwrap_or_default();
        let mut readers = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            readers.push(tokio::spawn(self.output.clone().capture(stdout, Stream::Stdout, pid)));
        }
        if let Some(stderr) = child.stderr.take() {
            readers.push(tokio::spawn(self.output.clone().capture(stderr, Stream::Stderr, pid)));
        }
        let (exit_sender, exit) = watch::channel(None);
        let (kill, killed) = oneshot::channel();
        let supervisor = tokio::spawn(supervise(
            child,
            pid,
            readers,
            killed,
            self.runtime.clone(),
            exit_sender,
            self.function.name.clone(),
        ));
        tracing::info!(function = %self.function.name, pid, executable = %self.executable.display(), "function process started");
        self.process = Some(Process { pid, started_at, polls_before, exit, kill: Some(kill), supervisor });
        Ok(())
    }

    /// The process's last stderr lines, for an error.
    fn stderr_tail(&self) -> String {
        let lines: Vec<String> = self
            .output
            .lines()
            .into_iter()
            .filter(|line| line.stream == Stream::Stderr)
            .map(|line| line.text)
            .collect();
        let tail = &lines[lines.len().saturating_sub(20)..];
        if tail.is_empty() { String::new() } else { format!("\nits last stderr lines:\n{}", tail.join("\n")) }
    }
}

impl Drop for LocalLambda {
    fn drop(&mut self) {
        if let Some(process) = &self.process {
            // Aborting the supervisor drops the `Child`, whose `kill_on_drop` sends SIGKILL.
            process.supervisor.abort();
        }
        for server in &self.servers {
            server.abort();
        }
    }
}

/// Owns the child: waits for it to exit (or kills it when asked), lets its output drain, then tells the
/// Runtime API (which fails what the process left behind) and whoever waits for the exit.
async fn supervise(
    mut child: Child,
    pid: u32,
    readers: Vec<JoinHandle<()>>,
    killed: oneshot::Receiver<()>,
    runtime: RuntimeApi,
    exit: watch::Sender<Option<ExitStatus>>,
    function: String,
) {
    let waited = tokio::select! {
        waited = child.wait() => waited,
        _ = killed => {
            if let Err(error) = child.start_kill() {
                tracing::warn!(pid, %error, "cannot kill the function process");
            }
            child.wait().await
        }
    };
    let _ = tokio::time::timeout(OUTPUT_DRAIN, futures::future::join_all(readers)).await;
    match waited {
        Ok(status) => {
            tracing::info!(%function, pid, %status, "function process exited");
            runtime.process_exited(&status.to_string());
            exit.send_replace(Some(status));
        }
        Err(error) => {
            // Waiting on our own child fails only if the OS lost it; nothing runs the function either way.
            tracing::error!(%function, pid, %error, "cannot wait for the function process");
            runtime.process_exited(&format!("cannot wait for the process: {error}"));
        }
    }
}
