//! The function app on disk: `host.json` and one folder per function, read the way the Functions host reads them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Where the repository keeps its function folders; a deployed package has them at the app root instead.
pub const DEFINITIONS_DIR: &str = "function-definitions";

/// `functionTimeout` when host.json does not set one: the Consumption plan's default, the strictest of the plans,
/// so a handler that passes here passes everywhere.
pub const DEFAULT_FUNCTION_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// A function app as the Functions host sees it: `host.json` plus the function folders.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionApp {
    root: PathBuf,
    handler: CustomHandler,
    function_timeout: Option<Duration>,
    functions: BTreeMap<String, FunctionDefinition>,
}

/// `customHandler.description` of host.json.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomHandler {
    /// `defaultExecutablePath`, as written (relative to the app root unless absolute).
    pub executable: PathBuf,
    /// `workingDirectory`, as written; empty means the app root.
    pub working_directory: PathBuf,
    /// `arguments`, before `%APP_SETTING%` expansion.
    pub arguments: Vec<String>,
}

/// One function folder: its name (= folder name = route) and its trigger binding (Event Grid, or a timer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionDefinition {
    /// The folder name, which is also the route the handler serves (`POST /<name>`).
    pub name: String,
    /// The trigger binding's `name`: the key of the event inside the invocation's `Data`.
    pub binding: String,
    /// The trigger binding's `type` as written (`eventGridTrigger`, `timerTrigger`): Core Tools decides from it
    /// whether the app needs `AzureWebJobsStorage`.
    pub trigger: String,
    /// A timer trigger's `schedule` as written (an NCRONTAB expression or `%APP_SETTING%`); `None` for others.
    pub schedule: Option<String>,
    /// The function.json this was read from, for messages.
    pub path: PathBuf,
}

impl FunctionDefinition {
    /// A timer-triggered function (the sweep): the host invokes it on its schedule, not from Event Grid.
    pub fn is_timer(&self) -> bool {
        self.trigger.eq_ignore_ascii_case("timerTrigger")
    }
}

/// Why a function app could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("function {name:?} is defined twice: {first} and {second}")]
    Duplicate { name: String, first: PathBuf, second: PathBuf },
    #[error(
        "{root} holds no function folder (looked for <name>/function.json at the app root and under {DEFINITIONS_DIR}/)"
    )]
    NoFunctions { root: PathBuf },
}

#[derive(Deserialize)]
struct HostJson {
    #[serde(rename = "customHandler")]
    custom_handler: Option<CustomHandlerJson>,
    #[serde(rename = "functionTimeout")]
    function_timeout: Option<String>,
}

#[derive(Deserialize)]
struct CustomHandlerJson {
    description: DescriptionJson,
}

#[derive(Deserialize)]
struct DescriptionJson {
    #[serde(rename = "defaultExecutablePath")]
    default_executable_path: String,
    #[serde(rename = "workingDirectory", default)]
    working_directory: String,
    #[serde(default)]
    arguments: Vec<String>,
}

#[derive(Deserialize)]
struct FunctionJson {
    #[serde(default)]
    bindings: Vec<BindingJson>,
}

#[derive(Deserialize)]
struct BindingJson {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    direction: String,
    #[serde(default)]
    schedule: Option<String>,
}

impl FunctionApp {
    /// Reads `<app_root>/host.json` and every `<folder>/function.json`, both at the app root (a deployed
    /// package) and under `function-definitions/` (this repository).
    pub fn load(app_root: &Path) -> Result<FunctionApp, AppError> {
        let host_path = app_root.join("host.json");
        let host: HostJson = read_json(&host_path)?;
        let invalid = |message: String| AppError::Invalid { path: host_path.clone(), message };
        let description = host
            .custom_handler
            .ok_or_else(|| invalid("no customHandler section: this is not a custom handler app".into()))?
            .description;
        if description.default_executable_path.trim().is_empty() {
            return Err(invalid("customHandler.description.defaultExecutablePath is empty".into()));
        }
        let function_timeout = match host.function_timeout.as_deref() {
            None => Some(DEFAULT_FUNCTION_TIMEOUT),
            Some(text) => {
                parse_timeout(text).map_err(|message| invalid(format!("functionTimeout {text:?}: {message}")))?
            }
        };

        let mut functions = BTreeMap::new();
        for dir in [app_root.to_path_buf(), app_root.join(DEFINITIONS_DIR)] {
            for definition in read_function_folders(&dir)? {
                if let Some(first) = functions.get(&definition.name) {
                    let first: &FunctionDefinition = first;
                    return Err(AppError::Duplicate {
                        name: definition.name,
                        first: first.path.clone(),
                        second: definition.path,
                    });
                }
                functions.insert(definition.name.clone(), definition);
            }
        }
        if functions.is_empty() {
            return Err(AppError::NoFunctions { root: app_root.to_path_buf() });
        }

        Ok(FunctionApp {
            root: app_root.to_path_buf(),
            handler: CustomHandler {
                executable: PathBuf::from(description.default_executable_path),
                working_directory: PathBuf::from(description.working_directory),
                arguments: description.arguments,
            },
            function_timeout,
            functions,
        })
    }

    /// The app root (the folder holding host.json).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// host.json's custom handler description.
    pub fn handler(&self) -> &CustomHandler {
        &self.handler
    }

    /// host.json's `functionTimeout`; `None` means unbounded (`-1`).
    pub fn function_timeout(&self) -> Option<Duration> {
        self.function_timeout
    }

    /// The functions, by name.
    pub fn functions(&self) -> impl Iterator<Item = &FunctionDefinition> {
        self.functions.values()
    }

    /// One function by name.
    pub fn function(&self, name: &str) -> Option<&FunctionDefinition> {
        self.functions.get(name)
    }

    /// The executable to start, resolved against the app root as the host does.
    pub fn executable_path(&self) -> PathBuf {
        self.root.join(&self.handler.executable)
    }

    /// The handler's working directory: `workingDirectory` relative to the app root, else the app root.
    pub fn working_directory(&self) -> PathBuf {
        self.root.join(&self.handler.working_directory)
    }

    /// Keeps only the named functions (a function app deployed with a subset of the handlers).
    pub fn retain(&mut self, names: &[String]) -> Result<(), String> {
        if let Some(unknown) = names.iter().find(|name| !self.functions.contains_key(*name)) {
            return Err(format!(
                "function {unknown:?} is not defined in {} (known: {})",
                self.root.display(),
                self.functions.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        self.functions.retain(|name, _| names.contains(name));
        Ok(())
    }
}

/// The app root for tools run from inside a repository or package: the nearest ancestor of `start` holding
/// `host.json` (as `func start` finds its project root).
pub fn find_app_root(start: &Path) -> Option<PathBuf> {
    start.ancestors().find(|dir| dir.join("host.json").is_file()).map(Path::to_path_buf)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, AppError> {
    let bytes = std::fs::read(path).map_err(|source| AppError::Read { path: path.to_path_buf(), source })?;
    serde_json::from_slice(&bytes)
        .map_err(|error| AppError::Invalid { path: path.to_path_buf(), message: error.to_string() })
}

/// Every `<dir>/<folder>/function.json`; a folder without one is not a function (the repo root holds
/// `crates/`, `target/`, ...), and a missing `dir` holds none.
fn read_function_folders(dir: &Path) -> Result<Vec<FunctionDefinition>, AppError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(AppError::Read { path: dir.to_path_buf(), source });
        }
    };
    let mut definitions = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| AppError::Read { path: dir.to_path_buf(), source })?;
        let path = entry.path().join("function.json");
        if !path.is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let function: FunctionJson = read_json(&path)?;
        let (binding, trigger, schedule) =
            trigger_binding(&function).map_err(|message| AppError::Invalid { path: path.clone(), message })?;
        definitions.push(FunctionDefinition { name, binding, trigger, schedule, path });
    }
    Ok(definitions)
}

/// The stand-in runs Event Grid and timer triggered functions: exactly one `in` binding of type
/// eventGridTrigger or timerTrigger (a timer with its `schedule`), with a name (types are matched
/// case-insensitively, as the host does). Returns the binding's name, type and schedule.
fn trigger_binding(function: &FunctionJson) -> Result<(String, String, Option<String>), String> {
    let triggers: Vec<&BindingJson> =
        function.bindings.iter().filter(|binding| binding.kind.to_ascii_lowercase().ends_with("trigger")).collect();
    let [binding] = triggers.as_slice() else {
        return match triggers.len() {
            0 => Err("no trigger binding (expected one of type eventGridTrigger or timerTrigger)".into()),
            n => Err(format!("{n} trigger bindings (a function has exactly one)")),
        };
    };
    let kind = &binding.kind;
    let timer = kind.eq_ignore_ascii_case("timerTrigger");
    if !timer && !kind.eq_ignore_ascii_case("eventGridTrigger") {
        return Err(format!(
            "trigger type {kind:?} is not supported by the stand-in (expected eventGridTrigger or timerTrigger)"
        ));
    }
    if binding.name.trim().is_empty() {
        return Err(format!("the {kind} binding has no name"));
    }
    if !binding.direction.eq_ignore_ascii_case("in") {
        return Err(format!("the {kind} binding has direction {:?} (expected \"in\")", binding.direction));
    }
    let schedule = binding.schedule.clone().filter(|s| !s.trim().is_empty());
    if timer && schedule.is_none() {
        return Err(format!("the {kind} binding has no schedule (an NCRONTAB expression or %APP_SETTING%)"));
    }
    Ok((binding.name.clone(), kind.clone(), if timer { schedule } else { None }))
}

/// Parses a .NET TimeSpan as host.json writes it: `[d.]hh:mm:ss[.fraction]`, or `-1` for unbounded.
fn parse_timeout(text: &str) -> Result<Option<Duration>, String> {
    let text = text.trim();
    if text == "-1" {
        return Ok(None);
    }
    let (days, clock) = match text.split_once('.') {
        // A dot before the first colon separates days; after it, a fraction of a second.
        Some((days, rest)) if !days.contains(':') => (parse_number(days, "days")?, rest),
        _ => (0, text),
    };
    let parts: Vec<&str> = clock.split(':').collect();
    let [hours, minutes, seconds] = parts.as_slice() else {
        return Err("expected hh:mm:ss".into());
    };
    let hours = parse_number(hours, "hours")?;
    let minutes = parse_number(minutes, "minutes")?;
    let (seconds, fraction) = seconds.split_once('.').unwrap_or((seconds, ""));
    let seconds = parse_number(seconds, "seconds")?;
    if hours > 23 || minutes > 59 || seconds > 59 {
        return Err("hours must be below 24, minutes and seconds below 60".into());
    }
    let nanos = if fraction.is_empty() {
        0
    } else {
        let digits: String = fraction.chars().chain(std::iter::repeat('0')).take(9).collect();
        u32::try_from(parse_number(&digits, "fraction")?).map_err(|_| "fraction too long".to_string())?
    };
    let total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds;
    let timeout = Duration::new(total, nanos);
    if timeout.is_zero() {
        return Err("must be positive (or -1 for unbounded)".into());
    }
    Ok(Some(timeout))
}

fn parse_number(text: &str, what: &str) -> Result<u64, String> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(format!("{what} {text:?} is not a number"));
    }
    text.parse().map_err(|_| format!("{what} {text:?} is too large"))
}

/// Expands `%NAME%` in host.json `arguments` from the app settings, then from the stand-in's environment (the
/// real host's app settings are its environment). An unknown name stays as written, as .NET's
/// `Environment.ExpandEnvironmentVariables` leaves it.
pub fn expand_arguments(argument: &str, settings: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(argument.len());
    let mut rest = argument;
    while let Some(start) = rest.find('%') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(end) = after.find('%') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let name = &after[..end];
        let value = settings.get(name).cloned().or_else(|| std::env::var(name).ok());
        match value {
            Some(value) if !name.is_empty() => {
                out.push_str(&value);
                rest = &after[end + 1..];
            }
            _ => {
                // Keep the first `%` literal and rescan from the second: it may open a real reference.
                out.push('%');
                out.push_str(name);
                rest = &after[end..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, relative: &str, text: &str) {
        let path = root.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    const HOST: &str = r#"{"version":"2.0","customHandler":{"description":{"defaultExecutablePath":"handler","workingDirectory":"","arguments":["--vault","%VAULT%"]}},"functionTimeout":"00:05:00"}"#;
    const FUNCTION: &str = r#"{"bindings":[{"type":"eventGridTrigger","name":"eventGridEvent","direction":"in"}]}"#;

    #[test]
    fn the_app_root_is_the_nearest_folder_with_host_json() {
        let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = find_app_root(crate_dir).unwrap();
        assert!(root.join(DEFINITIONS_DIR).is_dir(), "{}", root.display());
        assert_eq!(find_app_root(&root.join("crates/app/src")), Some(root));
        assert_eq!(find_app_root(Path::new("/")), None);
    }

    #[test]
    fn loads_the_repository_layout() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let app = FunctionApp::load(&repo).unwrap();
        let names: Vec<&str> = app.functions().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["expired", "near-expiry", "new-version", "sweep", "test-event"]);
        let (timers, events): (Vec<_>, Vec<_>) = app.functions().partition(|f| f.name == "sweep");
        assert!(events.iter().all(|f| f.binding == "eventGridEvent" && f.trigger == "eventGridTrigger"));
        assert_eq!(
            (timers[0].binding.as_str(), timers[0].trigger.as_str(), timers[0].schedule.as_deref()),
            ("timer", "timerTrigger", Some("%KEYTURN_SWEEP_SCHEDULE%"))
        );
        assert_eq!(app.handler().executable, PathBuf::from("handler"));
        assert_eq!(app.function_timeout(), Some(Duration::from_secs(300)));
        assert_eq!(app.working_directory(), repo.join(""));
    }

    #[test]
    fn loads_a_deployed_package_layout_and_both_together() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "host.json", HOST);
        write(dir.path(), "near-expiry/function.json", FUNCTION);
        write(dir.path(), "function-definitions/expired/function.json", FUNCTION);
        write(dir.path(), "not-a-function/readme.txt", "x");
        let app = FunctionApp::load(dir.path()).unwrap();
        let names: Vec<&str> = app.functions().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["expired", "near-expiry"]);
        assert_eq!(app.handler().arguments, ["--vault", "%VAULT%"]);
    }

    #[test]
    fn rejects_what_the_host_would_not_run() {
        let cases = [
            (r#"{"bindings":[{"type":"httpTrigger","name":"req","direction":"in"}]}"#, "httpTrigger"),
            (r#"{"bindings":[{"type":"eventGridTrigger","direction":"in"}]}"#, "has no name"),
            (r#"{"bindings":[]}"#, "no trigger binding"),
            (r#"{"bindings":[{"type":"EventGridTrigger","name":"e","direction":"out"}]}"#, "direction"),
            (r#"{"bindings":[{"type":"timerTrigger","name":"timer","direction":"in"}]}"#, "has no schedule"),
            ("{", "function.json is not valid"),
        ];
        for (function, expected) in cases {
            let dir = tempfile::tempdir().unwrap();
            write(dir.path(), "host.json", HOST);
            write(dir.path(), "f/function.json", function);
            let error = FunctionApp::load(dir.path()).unwrap_err().to_string();
            assert!(error.contains(expected), "{function}: {error}");
        }

        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "host.json", HOST);
        write(dir.path(), "f/function.json", FUNCTION);
        write(dir.path(), "function-definitions/f/function.json", FUNCTION);
        assert!(matches!(FunctionApp::load(dir.path()), Err(AppError::Duplicate { .. })));

        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "host.json", HOST);
        assert!(matches!(FunctionApp::load(dir.path()), Err(AppError::NoFunctions { .. })));

        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "host.json", r#"{"version":"2.0"}"#);
        write(dir.path(), "f/function.json", FUNCTION);
        let error = FunctionApp::load(dir.path()).unwrap_err().to_string();
        assert!(error.contains("no customHandler"), "{error}");

        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(FunctionApp::load(dir.path()), Err(AppError::Read { .. })));
    }

    #[test]
    fn missing_timeout_is_the_consumption_default_and_bad_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "host.json", r#"{"customHandler":{"description":{"defaultExecutablePath":"h"}}}"#);
        write(dir.path(), "f/function.json", FUNCTION);
        let app = FunctionApp::load(dir.path()).unwrap();
        assert_eq!(app.function_timeout(), Some(DEFAULT_FUNCTION_TIMEOUT));
        assert!(app.handler().arguments.is_empty());

        write(
            dir.path(),
            "host.json",
            r#"{"customHandler":{"description":{"defaultExecutablePath":"h"}},"functionTimeout":"5 minutes"}"#,
        );
        let error = FunctionApp::load(dir.path()).unwrap_err().to_string();
        assert!(error.contains("functionTimeout \"5 minutes\""), "{error}");
    }

    #[test]
    fn parses_timespans() {
        assert_eq!(parse_timeout("00:05:00"), Ok(Some(Duration::from_secs(300))));
        assert_eq!(parse_timeout("01:00:01"), Ok(Some(Duration::from_secs(3601))));
        assert_eq!(parse_timeout("1.02:00:00"), Ok(Some(Duration::from_secs(26 * 3600))));
        assert_eq!(parse_timeout("00:00:00.25"), Ok(Some(Duration::from_millis(250))));
        assert_eq!(parse_timeout(" -1 "), Ok(None));
        for bad in ["", "5", "00:60:00", "00:00:00", "aa:00:00", "00:00", "-00:01:00"] {
            assert!(parse_timeout(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn expands_app_settings_in_arguments() {
        let settings = BTreeMap::from([("VAULT".to_string(), "kv-1".to_string())]);
        assert_eq!(expand_arguments("%VAULT%", &settings), "kv-1");
        assert_eq!(expand_arguments("--v=%VAULT%/x", &settings), "--v=kv-1/x");
        assert_eq!(expand_arguments("%NOT_SET_ANYWHERE_1234%", &settings), "%NOT_SET_ANYWHERE_1234%");
        assert_eq!(expand_arguments("100%", &settings), "100%");
        assert_eq!(expand_arguments("50% %VAULT%", &settings), "50% kv-1");
        assert_eq!(expand_arguments("%%", &settings), "%%");
    }
}
