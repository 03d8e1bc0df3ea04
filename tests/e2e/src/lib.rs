//! Helpers the end-to-end tests share: where the repository, its fixtures and its built binaries are, and how to
//! start the Functions host stand-in on the repository's function app and post deliveries to it.
//!
//! These run inside tests only, so a missing prerequisite panics with what to do about it rather than returning
//! an error nobody handles: a test must fail loudly, never skip.
//!
//! # Layout
//! - `src/lib.rs`: these helpers.
//! - `src/bin/probe-handler.rs`: a test-only handler on `host::run` whose behaviour the event subject steers.
//! - `tests/functions_host.rs`: every fixture and every failure path through the stand-in into a real process.

use std::path::{Path, PathBuf};
use std::time::Duration;

use local::functions_host::{FunctionApp, FunctionsHost, FunctionsHostBuilder};
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

/// The shared Event Grid fixtures: `<repo>/../shared/fixtures/eventgrid`.
///
/// # Panics
/// When the folder is missing: the tests need it beside the repository.
pub fn fixtures_dir() -> PathBuf {
    let dir = repo_root().join("../shared/fixtures/eventgrid");
    assert!(
        dir.is_dir(),
        "the Event Grid fixtures are missing at {}: the shared/ folder must sit beside the repository",
        dir.display()
    );
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
/// tests: a short init timeout and shutdown grace. Adjust it further before `start()`.
///
/// # Panics
/// When the repository's host.json or function folders cannot be read.
pub fn host_for(function: &str, executable: &Path) -> FunctionsHostBuilder {
    let app = FunctionApp::load(&repo_root()).unwrap_or_else(|error| panic!("the repository's function app: {error}"));
    FunctionsHost::builder(app)
        .executable(executable)
        .only([function])
        .init_timeout(Duration::from_secs(20))
        .shutdown_grace(Duration::from_secs(2))
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
