//! Helpers the end-to-end tests share: where the repository, its fixtures and its built binaries are, and how to
//! start the Functions host stand-in on the repository's function app and post deliveries to it.
//!
//! These run inside tests only, so a missing prerequisite panics with what to do about it rather than returning
//! an error nobody handles: a test must fail loudly, never skip.
//!
//! # Layout
//! - `src/lib.rs`: these helpers.
//! - `src/receivers.rs`: real notification receivers (an HTTP sink and an SMTP server).
//! - `src/bench.rs`: what the benches share (building the release binary they measure).
//! - `src/database.rs`: the real database servers the provider and attack tests run against: where they listen,
//!   and what a test asks of one ([`database::TestServer`]).
//! - `src/postgres.rs`: the test PostgreSQL through `psql`; `src/mysql.rs`: the test MariaDB through `mariadb`.
//! - `src/bin/probe-handler.rs`: a test-only handler on `keyturn_host::run` whose behaviour the event subject steers.
//! - `tests/functions_host.rs`: every fixture and every failure path through the stand-in into a real process.

use std::path::{Path, PathBuf};
use std::time::Duration;

use keyturn_local::functions_host::{FunctionApp, FunctionsHost, FunctionsHostBuilder, SubscribedHandler};
use keyturn_local::roles::Deployment;
use serde_json::Value;

/// The repository root (the folder holding host.json and function-definitions/).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A binary of the workspace, as `cargo build --workspace` leaves it beside the running test executable
/// (`target/<profile>/deps/<test>` → `target/<profile>/<name>`).
///
/// # Panics
/// When the binary is not there: build the workspace first.
pub fn workspace_binary(name: &str) -> PathBuf {
    let test_executable =
        std::env::current_exe().unwrap_or_else(|error| panic!("cannot find the running test executable: {error}"));
    let profile_dir =
        test_executable.parent().filter(|dir| dir.ends_with("deps")).and_then(Path::parent).unwrap_or_else(|| {
            panic!("{} is not in target/<profile>/deps; cannot locate workspace binaries", test_executable.display())
        });
    let binary = profile_dir.join(name);
    assert!(binary.is_file(), "{} does not exist: run `cargo build --workspace` first", binary.display());
    binary
}

/// The Event Grid fixtures the events crate round-trips: `<repo>/crates/events/fixtures` (its `variants/`
/// subfolder is not read here), so a clone of the repository alone runs these tests.
///
/// # Panics
/// When the folder is missing.
pub fn fixtures_dir() -> PathBuf {
    let dir = repo_root().join("crates/events/fixtures");
    assert!(dir.is_dir(), "the Event Grid fixtures are missing at {}", dir.display());
    dir
}

/// One fixture file: its name and the events it holds (a file holds one event object or an array of them).
#[derive(Debug, Clone)]
pub struct Fixture {
    pub name: String,
    pub events: Vec<Value>,
}

impl Fixture {
    /// Whether it is in CloudEvents 1.0 schema (else Event Grid schema).
    pub fn is_cloud_events(&self) -> bool {
        self.events.iter().all(|event| event.get("specversion").is_some())
    }

    /// Whether it is the subscription validation event (answered by the host, never invoked).
    pub fn is_validation(&self) -> bool {
        self.events.iter().any(|event| {
            event.get("eventType").and_then(Value::as_str) == Some("Microsoft.EventGrid.SubscriptionValidationEvent")
        })
    }
}

/// Every `*.json` fixture, sorted by name.
///
/// # Panics
/// When the folder is missing, empty, or a file is not JSON.
pub fn fixtures() -> Vec<Fixture> {
    let dir = fixtures_dir();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("cannot list {}: {error}", dir.display()))
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no fixture in {}", dir.display());
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read(&path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
            let json: Value =
                serde_json::from_slice(&text).unwrap_or_else(|error| panic!("{} is not JSON: {error}", path.display()));
            let events = match json {
                Value::Array(events) => events,
                event => vec![event],
            };
            let name = path.file_stem().map(|stem| stem.to_string_lossy().into_owned()).unwrap_or_default();
            Fixture { name, events }
        })
        .collect()
}

/// The stand-in on the repository's function app, serving `function` with `executable`, with settings for
/// tests: what Core Tools requires (`FUNCTIONS_WORKER_RUNTIME`, `AzureWebJobsStorage`), a short init timeout
/// and shutdown grace. Adjust it further before `start()`.
///
/// # Panics
/// When the repository's host.json or function folders cannot be read.
pub fn host_for(function: &str, executable: &Path) -> FunctionsHostBuilder {
    let app = FunctionApp::load(&repo_root()).unwrap_or_else(|error| panic!("the repository's function app: {error}"));
    test_timeouts(
        FunctionsHost::builder(app)
            .executable(executable)
            .only([function])
            .app_settings(keyturn_app::local_settings::func_start_defaults())
            .without_local_settings(),
    )
}

/// The tests' timeouts: a handler that is not ready in 20 s has failed, and 2 s is grace enough to stop.
fn test_timeouts(builder: FunctionsHostBuilder) -> FunctionsHostBuilder {
    builder.init_timeout(Duration::from_secs(20)).shutdown_grace(Duration::from_secs(2))
}

/// What the webhook answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// Posts one delivery to `url` the way Event Grid does: `aeg-event-type` (when given) and a JSON body.
///
/// # Panics
/// When the HTTP exchange itself fails (the stand-in is not listening).
pub async fn deliver(client: &reqwest::Client, url: &str, event_type: Option<&str>, body: &str) -> Answer {
    let mut request = client.post(url).header("Content-Type", "application/json").body(body.to_owned());
    if let Some(event_type) = event_type {
        request = request.header("aeg-event-type", event_type);
    }
    let response = request.send().await.unwrap_or_else(|error| panic!("POST {url}: {error}"));
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_else(|error| panic!("reading the answer of POST {url}: {error}"));
    Answer { status, body }
}

/// A client for loopback calls (never through a proxy).
///
/// # Panics
/// When the TLS backend cannot initialise.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap_or_else(|error| panic!("cannot build an HTTP client: {error}"))
}

// ---------------------------------------------------------------------------------------------------------------
// The whole chain for a handler: Key Vault emulator → Event Grid emulator → Functions host stand-in → the real
// handler binary (tests/near_expiry.rs and benches/near_expiry.rs).

/// The Key Vault event types the `near-expiry` subscription carries, as the deployment filters them.
pub const NEAR_EXPIRY_EVENT_TYPES: [&str; 3] = [
    "Microsoft.KeyVault.SecretNearExpiry",
    "Microsoft.KeyVault.KeyNearExpiry",
    "Microsoft.KeyVault.CertificateNearExpiry",
];

/// A local stack whose Event Grid delivers to a handler process through the Functions host stand-in.
///
/// Dropping it kills the handler and stops the stack (a failing test leaves nothing running);
/// [`Chain::shutdown`] stops both gracefully.
#[derive(Debug)]
pub struct Chain {
    pub stack: keyturn_local::stack::LocalStack,
    pub host: FunctionsHost,
    pub function: String,
}

impl Chain {
    /// Starts `binary` as `function` behind the stand-in with `settings` as its app settings, under an
    /// identity of its own holding exactly `function`'s infra/roles.json grants for the deployment these
    /// settings describe ([`deployment_of`]), and subscribes it to `event_types` in the stack's Event Grid (an
    /// Azure Function endpoint: no handshake, as in Azure).
    ///
    /// # Panics
    /// When the handler does not become ready or the subscription is refused.
    pub async fn start(
        stack: keyturn_local::stack::LocalStack,
        function: &str,
        binary: &Path,
        event_types: &[&str],
        settings: Vec<(String, String)>,
    ) -> Chain {
        let deployment = deployment_of(&stack, &settings);
        Self::start_as(stack, function, binary, event_types, settings, deployment).await
    }

    /// [`Chain::start`] with the deployment given (a `when` flag on, another canary, ...).
    ///
    /// # Panics
    /// When the handler does not become ready or the subscription is refused.
    pub async fn start_as(
        stack: keyturn_local::stack::LocalStack,
        function: &str,
        binary: &Path,
        event_types: &[&str],
        settings: Vec<(String, String)>,
        deployment: Deployment,
    ) -> Chain {
        let app =
            FunctionApp::load(&repo_root()).unwrap_or_else(|error| panic!("the repository's function app: {error}"));
        let host = SubscribedHandler::new(function, binary)
            .event_types(event_types.iter().copied())
            .identity(deployment)
            .app_settings(settings)
            .host(test_timeouts)
            .start(&stack, &app)
            .await
            .unwrap_or_else(|error| panic!("{} behind the stand-in: {error}", binary.display()));
        Chain { stack, host, function: function.to_owned() }
    }

    /// Starts a timer-triggered handler (the sweep) behind the stand-in, under an identity of its own holding
    /// exactly its infra/roles.json grants (as [`Chain::start`]), without any Event Grid subscription: fire it
    /// with [`FunctionsHost::invoke_timer`] on `chain.host`.
    ///
    /// # Panics
    /// When the handler does not become ready.
    pub async fn start_timer(
        stack: keyturn_local::stack::LocalStack,
        function: &str,
        binary: &Path,
        settings: Vec<(String, String)>,
    ) -> Chain {
        let deployment = deployment_of(&stack, &settings);
        Self::start_timer_as(stack, function, binary, settings, deployment).await
    }

    /// [`Chain::start_timer`] with the deployment given (a `when` flag on).
    ///
    /// # Panics
    /// When the handler does not become ready.
    pub async fn start_timer_as(
        stack: keyturn_local::stack::LocalStack,
        function: &str,
        binary: &Path,
        settings: Vec<(String, String)>,
        deployment: Deployment,
    ) -> Chain {
        let host = start_timer_host_as(&stack, function, binary, settings, deployment).await;
        Chain { stack, host, function: function.to_owned() }
    }

    /// Delivery attempts to this chain's subscription so far.
    pub fn attempts(&self) -> Vec<keyturn_local::eventgrid::Attempt> {
        self.stack.grid().attempts().into_iter().filter(|attempt| attempt.subscription == self.function).collect()
    }

    /// Waits until attempts for at least `events` distinct events were made and Event Grid has nothing in flight.
    ///
    /// # Panics
    /// When that does not happen within `timeout`.
    pub async fn settle(&self, events: usize, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let seen: std::collections::HashSet<String> =
                self.attempts().into_iter().flat_map(|attempt| attempt.event_ids).collect();
            if seen.len() >= events {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {} of {events} events were delivered within {timeout:?}",
                seen.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(self.stack.grid().settled(left).await, "Event Grid still had deliveries in flight after {timeout:?}");
    }

    /// Stops the handler, the stand-in and the stack.
    pub async fn shutdown(self) {
        self.host.shutdown().await;
        self.stack.shutdown().await;
    }
}

/// Another stand-in running the timer-triggered `function` on `stack` (a restarted or a second instance of
/// the function app), as [`Chain::start_timer`] starts the first.
///
/// # Panics
/// When the handler does not become ready.
pub async fn start_timer_host(
    stack: &keyturn_local::stack::LocalStack,
    function: &str,
    binary: &Path,
    settings: Vec<(String, String)>,
) -> FunctionsHost {
    let deployment = deployment_of(stack, &settings);
    start_timer_host_as(stack, function, binary, settings, deployment).await
}

/// [`start_timer_host`] with the stand-in firing the function on its own schedule (`KEYTURN_SWEEP_SCHEDULE` in
/// `settings`), as the real host does, rather than only when a test fires it.
///
/// # Panics
/// When the handler does not become ready.
pub async fn start_scheduled_timer_host(
    stack: &keyturn_local::stack::LocalStack,
    function: &str,
    binary: &Path,
    settings: Vec<(String, String)>,
) -> FunctionsHost {
    let deployment = deployment_of(stack, &settings);
    timer_host(stack, function, binary, settings, deployment, Schedule::Run).await
}

async fn start_timer_host_as(
    stack: &keyturn_local::stack::LocalStack,
    function: &str,
    binary: &Path,
    settings: Vec<(String, String)>,
    deployment: Deployment,
) -> FunctionsHost {
    timer_host(stack, function, binary, settings, deployment, Schedule::FiredByTheTest).await
}

/// Who fires a timer function behind the stand-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Schedule {
    /// The test, with [`FunctionsHost::invoke_timer`].
    FiredByTheTest,
    /// The stand-in, on the function's schedule (as well as the test, if it fires too).
    Run,
}

async fn timer_host(
    stack: &keyturn_local::stack::LocalStack,
    function: &str,
    binary: &Path,
    settings: Vec<(String, String)>,
    deployment: Deployment,
    schedule: Schedule,
) -> FunctionsHost {
    let app = FunctionApp::load(&repo_root()).unwrap_or_else(|error| panic!("the repository's function app: {error}"));
    SubscribedHandler::new(function, binary)
        .unsubscribed()
        .identity(deployment)
        .app_settings(settings)
        .host(move |builder| {
            let builder = test_timeouts(builder);
            if schedule == Schedule::Run { builder.run_schedules() } else { builder }
        })
        .start(stack, &app)
        .await
        .unwrap_or_else(|error| panic!("{} behind the stand-in ({schedule:?}): {error}", binary.display()))
}

/// The deployment a handler with `settings` (over the stack's) would be granted for, as infra reads it: the
/// watched vaults are `KEYTURN_VAULTS` (the settings', else the stack's), the mirrors
/// `KEYTURN_MIRROR_VAULTS`, the canary `KEYTURN_CANARY_SECRET`, the Azure key family's resources every resource
/// `KEYTURN_AZURE_KEY_RESOURCES` and `KEYTURN_STORAGE_ACCOUNTS` bind (infra grants the key operator role on each);
/// no `when` flag is on (infra's defaults).
pub fn deployment_of(stack: &keyturn_local::stack::LocalStack, settings: &[(String, String)]) -> Deployment {
    let env = stack.handler_env();
    let setting = |name: &str| {
        settings
            .iter()
            .chain(env.iter().filter(|(key, _)| key == "KEYTURN_VAULTS"))
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    // `name=url,name=url` (or bare names): the names.
    let names = |list: Option<String>| -> Vec<String> {
        list.unwrap_or_default()
            .split(',')
            .filter_map(|entry| entry.split('=').next())
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty())
            .collect()
    };
    Deployment {
        monitored_vaults: names(setting("KEYTURN_VAULTS")),
        canary_secret: setting("KEYTURN_CANARY_SECRET"),
        mirror_vaults: names(setting("KEYTURN_MIRROR_VAULTS")),
        azure_key_resources: ["KEYTURN_AZURE_KEY_RESOURCES", "KEYTURN_STORAGE_ACCOUNTS"]
            .into_iter()
            .filter_map(setting)
            .flat_map(|bindings| bound_targets(&bindings))
            .collect(),
        consumer_apps: setting("KEYTURN_CONSUMERS").map(|bindings| bound_targets(&bindings)).unwrap_or_default(),
        ..Deployment::default()
    }
}

/// The targets of a binding setting (`<vault>[/<names>]=<target>[,<target>];...`), in order.
fn bound_targets(bindings: &str) -> Vec<String> {
    bindings
        .split(';')
        .filter_map(|entry| entry.split_once('=').map(|(_, targets)| targets))
        .flat_map(|targets| targets.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned))
        .collect()
}

/// Relays TCP connections from a loopback port to `target`, counting them: put it in front of an endpoint to
/// prove that nothing (or something) reached it.
///
/// # Panics
/// When no loopback port can be bound.
pub async fn counting_relay(
    target: std::net::SocketAddr,
) -> (std::net::SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|error| panic!("binding a relay on 127.0.0.1: {error}"));
    let addr = listener.local_addr().unwrap_or_else(|error| panic!("the relay's address: {error}"));
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (addr, count)
}

// ---------------------------------------------------------------------------------------------------------------
// The expired, new-version and test-event handlers (tests/expired.rs, tests/new_version.rs, tests/test_event.rs).

/// Real notification receivers: an HTTP sink (signed webhook, Slack, Teams) and an SMTP server.
pub mod receivers;

/// What the benches (benches/*.rs) share.
pub mod bench;

/// The real database servers of the provider and attack tests.
pub mod database;

/// The test PostgreSQL.
pub mod postgres;

/// The test MariaDB.
pub mod mysql;

/// The Key Vault event types the `expired` subscription carries.
pub const EXPIRED_EVENT_TYPES: [&str; 3] =
    ["Microsoft.KeyVault.SecretExpired", "Microsoft.KeyVault.KeyExpired", "Microsoft.KeyVault.CertificateExpired"];

/// The Key Vault event types the `new-version` subscription carries.
pub const NEW_VERSION_EVENT_TYPES: [&str; 3] = [
    "Microsoft.KeyVault.SecretNewVersionCreated",
    "Microsoft.KeyVault.KeyNewVersionCreated",
    "Microsoft.KeyVault.CertificateNewVersionCreated",
];

/// Runs `test` within `limit`: a hung handler must fail the test, not the run.
///
/// # Panics
/// When the limit passes.
pub async fn bounded<T>(limit: Duration, test: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(limit, test).await.unwrap_or_else(|_| panic!("the test did not finish within {limit:?}"))
}

impl Chain {
    /// What the handler answered each invocation (`done: ...`, `skipped: ...`, `rejected: ...`).
    pub fn answers(&self) -> Vec<String> {
        self.host
            .output()
            .lines()
            .into_iter()
            .filter(|line| line.stream == keyturn_local::functions_host::Stream::InvocationLog)
            .map(|line| line.text)
            .collect()
    }

    /// The typed outcome of every invocation the handler acknowledged (each answer's `ReturnValue`), oldest
    /// first; an invocation failed for a retry has none.
    pub fn outcomes(&self) -> Vec<keyturn_host::Outcome> {
        self.host.invocations().into_iter().filter_map(|record| record.result.ok()?.outcome()).collect()
    }

    /// The outcomes about the object named `name` (their `object`).
    pub fn outcomes_about(&self, name: &str) -> Vec<keyturn_host::Outcome> {
        let about = |outcome: &keyturn_host::Outcome| outcome.object.as_ref().is_some_and(|o| o.name() == name);
        self.outcomes().into_iter().filter(about).collect()
    }

    /// The outcomes of the invocations whose event's subject is `subject`: unlike [`Chain::outcomes_about`],
    /// also those rejected before the handler named an object (a permanent error carries only its message).
    pub fn outcomes_for_subject(&self, subject: &str) -> Vec<keyturn_host::Outcome> {
        self.host
            .invocations()
            .into_iter()
            .filter(|record| record.subject.as_deref() == Some(subject))
            .filter_map(|record| record.result.ok()?.outcome())
            .collect()
    }

    /// Everything the handler and the chain recorded: the handler's stdout, stderr and invocation logs,
    /// every invocation record, Event Grid's attempts and dead letters.
    pub fn everything_recorded(&self) -> Vec<String> {
        let mut texts: Vec<String> = self.host.output().lines().into_iter().map(|line| line.text).collect();
        texts.extend(self.host.invocations().iter().map(|record| format!("{record:?}")));
        texts.extend(self.stack.grid().attempts().iter().map(|attempt| format!("{attempt:?}")));
        texts.extend(self.stack.grid().dead_letters().iter().map(|letter| format!("{letter:?}")));
        texts
    }

    /// Waits until `sink`'s `/webhook` accepted `messages` messages, then asserts that no secret value of `vaults`
    /// appears in anything the chain recorded or the sink received.
    ///
    /// # Panics
    /// When the messages do not arrive within 30 s, or a value appears.
    pub async fn assert_notified_without_values(&self, sink: &receivers::HttpSink, messages: usize, vaults: &[&str]) {
        receivers::wait_until(sink, Duration::from_secs(30), &format!("{messages} webhook message(s)"), |received| {
            received.iter().filter(|r| r.path().starts_with("/webhook") && r.accepted()).count() >= messages
        })
        .await;
        let mut texts = self.everything_recorded();
        texts.extend(sink.received().iter().map(receivers::Received::text));
        assert_no_value_in(&texts, &all_secret_values(&self.stack, vaults));
    }

    /// Waits until some answer contains `needle`.
    ///
    /// # Panics
    /// When none does within `timeout`.
    pub async fn wait_for_answer(&self, needle: &str, timeout: Duration) -> String {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(answer) = self.answers().into_iter().find(|answer| answer.contains(needle)) {
                return answer;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no answer mentioning '{needle}' within {timeout:?}; answers: {:#?}",
                self.answers()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Chain {
    /// Fails when any value a secret of `vaults` has ever held appears in what the chain recorded
    /// ([`Chain::everything_recorded`]) or in `received` (what the notification receivers got).
    ///
    /// # Panics
    /// When one does (see [`assert_no_value_in`]).
    pub fn assert_no_secret_leaked(&self, vaults: &[&str], received: impl IntoIterator<Item = String>) {
        let mut texts = self.everything_recorded();
        texts.extend(received);
        assert_no_value_in(&texts, &all_secret_values(&self.stack, vaults));
    }
}

/// Every value any secret of `vaults` has ever held, for the leak scans; for a JSON value (a database login's
/// connection details), its `password` member too, since a leak would carry the password rather than the whole
/// document (when it is long enough to scan for: a test's deliberately short placeholder is not a credential).
///
/// # Panics
/// When a vault cannot be listed.
pub fn all_secret_values(stack: &keyturn_local::stack::LocalStack, vaults: &[&str]) -> Vec<String> {
    let store = stack.emulator().store();
    vaults
        .iter()
        .flat_map(|vault| {
            store
                .list_secrets(vault)
                .unwrap_or_else(|error| panic!("listing {vault}: {error}"))
                .into_iter()
                .flat_map(|secret| {
                    store.list_secret_versions(vault, &secret.name).unwrap_or_else(|error| panic!("{error}"))
                })
                .flat_map(|view| {
                    let value = view.version.data.value;
                    let password = serde_json::from_str::<serde_json::Value>(&value)
                        .ok()
                        .and_then(|json| json.get("password").and_then(|p| p.as_str()).map(str::to_owned))
                        .filter(|password| password.len() >= 8);
                    std::iter::once(value).chain(password)
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Fails when any of `values` appears in any of `texts`.
///
/// # Panics
/// When one does, when there is nothing to scan, or a value is too short to scan for.
pub fn assert_no_value_in(texts: &[String], values: &[String]) {
    assert!(!texts.is_empty(), "nothing to scan: the scan would prove nothing");
    assert!(!values.is_empty(), "no values to scan for");
    for value in values {
        assert!(value.len() >= 8, "a value this short could match by chance: {} bytes", value.len());
        if let Some(text) = texts.iter().find(|text| text.contains(value.as_str())) {
            panic!("a secret value appeared in: {text}");
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Events published straight into the Event Grid emulator (tests/near_expiry*.rs, tests/providers_*.rs).

/// A secret event of `event_type` for `version` of `vault/name` (with `exp` as the object's expiry, when it has
/// one), as Event Grid would publish it.
///
/// # Panics
/// When the names are not valid Key Vault names.
pub fn secret_event(
    event_type: keyturn_events::KeyVaultEventType,
    id: &str,
    vault: &str,
    name: &str,
    version: &str,
    exp: Option<chrono::DateTime<chrono::Utc>>,
) -> keyturn_events::Event {
    vault_event(event_type, id, vault, name, version, exp)
}

/// An event of `event_type` about the secret, key or certificate that type names, for `version` of `vault/name`
/// (with `exp` as the object's expiry, when it has one), as Event Grid would publish it.
///
/// # Panics
/// When the names are not valid Key Vault names.
pub fn vault_event(
    event_type: keyturn_events::KeyVaultEventType,
    id: &str,
    vault: &str,
    name: &str,
    version: &str,
    exp: Option<chrono::DateTime<chrono::Utc>>,
) -> keyturn_events::Event {
    use keyturn_events::{Event, KeyVaultEvent, Payload, Schema, VaultObject};
    let object = VaultObject::new(vault, event_type.object_kind(), name, Some(version), None, exp)
        .unwrap_or_else(|error| panic!("{vault}/{name}/{version} is not a vault object: {error}"));
    Event {
        id: id.to_owned(),
        subject: name.to_owned(),
        source: format!("/subscriptions/0/resourceGroups/keyturn-local/providers/Microsoft.KeyVault/vaults/{vault}"),
        time: Some(chrono::Utc::now()),
        schema: Schema::EventGrid,
        payload: Payload::KeyVault(KeyVaultEvent { event_type, object }),
    }
}

/// A `SecretNearExpiry` event for `version` of `vault/name`, as Event Grid would publish it.
///
/// # Panics
/// When the names are not valid Key Vault names.
pub fn secret_near_expiry(
    id: &str,
    vault: &str,
    name: &str,
    version: &str,
    exp: chrono::DateTime<chrono::Utc>,
) -> keyturn_events::Event {
    secret_event(keyturn_events::KeyVaultEventType::SecretNearExpiry, id, vault, name, version, Some(exp))
}

// ---------------------------------------------------------------------------------------------------------------
// A stack for one handler under test, and what a test seeds in it (tests/near_expiry*.rs, tests/providers_*.rs).

/// A local stack with `vaults`, its Event Grid at 1/1000 of real time: the 10 s first retry takes 10 ms, a day of
/// retries 86 s.
///
/// # Panics
/// When the stack cannot start.
pub async fn fast_stack(vaults: &[&str]) -> keyturn_local::stack::LocalStack {
    let builder = vaults
        .iter()
        .fold(keyturn_local::keyvault::KeyVaultEmulator::builder(), |builder, vault| builder.vault(*vault));
    let grid = keyturn_local::eventgrid::EventGridOptions { time_scale: 0.001, ..Default::default() };
    keyturn_local::stack::LocalStack::start(builder, grid)
        .await
        .unwrap_or_else(|error| panic!("the local stack: {error}"))
}

/// Short retries for a handler's app settings, so a failing call comes back to Event Grid in well under a second.
pub fn fast_retries() -> Vec<(String, String)> {
    [
        ("KEYTURN_RETRY_MAX", "2"),
        ("KEYTURN_RETRY_DELAY_MS", "50"),
        ("KEYTURN_RETRY_MAX_DELAY_MS", "400"),
        ("KEYTURN_HTTP_TIMEOUT_SECS", "20"),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .collect()
}

/// Tags from pairs.
pub fn tags(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect()
}

/// Seeds a `text/plain` secret version expiring `days` from the vault's clock; returns its version.
///
/// # Panics
/// When the vault refuses it.
pub fn seed_secret(
    stack: &keyturn_local::stack::LocalStack,
    vault: &str,
    name: &str,
    value: &str,
    days: i64,
    tags: std::collections::BTreeMap<String, String>,
) -> String {
    let exp = stack.emulator().clock().now() + chrono::TimeDelta::days(days);
    let spec = keyturn_local::keyvault::SecretSpec {
        value: value.to_owned(),
        content_type: Some("text/plain".to_owned()),
        attributes: keyturn_local::keyvault::store::AttributeInput { exp: Some(exp.timestamp()), ..Default::default() },
        tags,
    };
    store_secret(stack, vault, name, spec)
}

/// Writes `spec` as a new version of `vault/name`; returns the version.
///
/// # Panics
/// When the vault refuses it.
pub fn store_secret(
    stack: &keyturn_local::stack::LocalStack,
    vault: &str,
    name: &str,
    spec: keyturn_local::keyvault::SecretSpec,
) -> String {
    stack
        .emulator()
        .store()
        .set_secret(vault, name, spec)
        .unwrap_or_else(|error| panic!("seeding {vault}/{name}: {error}"))
        .version
        .version
}

/// Seeds a 2048-bit RSA key expiring `days` from the vault's clock; returns its version.
///
/// # Panics
/// When the vault refuses it.
pub fn seed_rsa_key(
    stack: &keyturn_local::stack::LocalStack,
    vault: &str,
    name: &str,
    days: i64,
    tags: std::collections::BTreeMap<String, String>,
) -> String {
    let exp = stack.emulator().clock().now() + chrono::TimeDelta::days(days);
    let input = keyturn_local::keyvault::keys::KeySpecInput {
        kty: "RSA".into(),
        spec: keyturn_local::keyvault::crypto::KeySpec::Rsa(2048),
        key_ops: None,
        attributes: keyturn_local::keyvault::store::AttributeInput { exp: Some(exp.timestamp()), ..Default::default() },
        tags,
    };
    stack
        .emulator()
        .store()
        .create_key(vault, name, input)
        .unwrap_or_else(|error| panic!("seeding key {vault}/{name}: {error}"))
        .version
        .version
}

// ---------------------------------------------------------------------------------------------------------------
// What the provider tests that kill the handler share (tests/providers_postgres.rs, tests/providers_entra.rs).

/// Every version of the secret `vault/name`: (version, value, tags), oldest first; none when it does not exist.
pub fn secret_versions(
    stack: &keyturn_local::stack::LocalStack,
    vault: &str,
    name: &str,
) -> Vec<(String, String, std::collections::BTreeMap<String, String>)> {
    stack
        .emulator()
        .store()
        .list_secret_versions(vault, name)
        .unwrap_or_default()
        .into_iter()
        .map(|view| (view.version.version, view.version.data.value, view.version.tags))
        .collect()
}

/// Publishes the near-expiry event of `vault/name`'s `version` (expiring 30 days after the vault's clock).
pub fn publish_near_expiry(chain: &Chain, id: &str, vault: &str, name: &str, version: &str) {
    let exp = chain.stack.emulator().clock().now() + chrono::TimeDelta::days(30);
    chain.stack.grid().publish(secret_near_expiry(id, vault, name, version, exp));
}

/// SIGKILLs the handler process `pid`: what a crashed or recycled worker looks like to everything it talks to.
///
/// # Panics
/// When the signal cannot be sent.
pub fn sigkill(pid: u32) {
    let raw = i32::try_from(pid).unwrap_or_else(|_| panic!("process id {pid} does not fit an i32"));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), nix::sys::signal::Signal::SIGKILL)
        .unwrap_or_else(|error| panic!("killing the handler {pid}: {error}"));
}

/// Polls `done` every 5 ms until it holds.
///
/// # Panics
/// When it does not hold within `timeout`.
pub async fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "{what} did not happen within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// What one run of the `keyturn` binary left behind.
#[derive(Debug)]
pub struct KeyturnRun {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// `keyturn <args>` (the workspace's binary) in the repository, with a clean environment plus `env`, bounded to
/// 60 s.
///
/// # Panics
/// When it cannot start or does not finish in time.
pub async fn keyturn(args: &[&str], env: &[(String, String)]) -> KeyturnRun {
    let mut command = tokio::process::Command::new(workspace_binary("keyturn"));
    command
        .args(args)
        .current_dir(repo_root())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NO_COLOR", "1")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .unwrap_or_else(|_| panic!("keyturn {args:?} did not finish within 60 s"))
        .unwrap_or_else(|e| panic!("keyturn {args:?} did not start: {e}"));
    KeyturnRun {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The stack's handler settings with `KEYTURN_CA_FILE` a bundle (written in `dir`) trusting the emulator's CA and
/// `extra_ca` (another emulator's, a test server's).
///
/// # Panics
/// When the bundle cannot be written.
pub fn handler_env_trusting(
    stack: &keyturn_local::stack::LocalStack,
    dir: &Path,
    extra_ca: &str,
) -> Vec<(String, String)> {
    let bundle = dir.join("ca-bundle.pem");
    std::fs::write(&bundle, format!("{}\n{extra_ca}", stack.emulator().ca_pem()))
        .unwrap_or_else(|e| panic!("writing {}: {e}", bundle.display()));
    let mut settings: Vec<(String, String)> =
        stack.handler_env().into_iter().filter(|(name, _)| name != "KEYTURN_CA_FILE").collect();
    settings.push(("KEYTURN_CA_FILE".to_owned(), bundle.display().to_string()));
    settings
}
