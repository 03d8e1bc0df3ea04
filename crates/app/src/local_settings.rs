//! `local.settings.json`: the app settings `func start` reads (Core Tools), and the checks Core Tools makes
//! on them before it starts anything, with its own messages, so that what `func start` would refuse fails
//! in the stand-in too (../shared/reference/azure-rbac-identity-and-tools.md, section 5).
//!
//! A package carries this file beside it, never inside the zip deployed to Azure: in Azure the same values
//! are the function app's application settings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::FunctionApp;

/// The file's name, at the app root.
pub const LOCAL_SETTINGS: &str = "local.settings.json";
/// The app setting that names the language worker; a custom handler app's is `custom`.
pub const WORKER_RUNTIME: &str = "FUNCTIONS_WORKER_RUNTIME";
/// The host's storage connection: required for every trigger but the few in [`TRIGGERS_WITHOUT_STORAGE`].
pub const STORAGE: &str = "AzureWebJobsStorage";
/// Azurite, the storage emulator `func start` users run: what a package's local settings point the host at.
pub const DEVELOPMENT_STORAGE: &str = "UseDevelopmentStorage=true";
/// The triggers Core Tools starts without `AzureWebJobsStorage` (compared case-insensitively). Event Grid
/// and timer triggers are not among them.
pub const TRIGGERS_WITHOUT_STORAGE: [&str; 6] =
    ["httptrigger", "kafkatrigger", "rabbitmqtrigger", "orchestrationTrigger", "activityTrigger", "entityTrigger"];

/// The settings a custom-handler app needs under `func start` whatever it runs: the worker runtime, the
/// host's storage (Azurite), and each timer handler's schedule at its default.
pub fn func_start_defaults() -> BTreeMap<String, String> {
    let mut defaults = BTreeMap::from([
        (WORKER_RUNTIME.to_owned(), "custom".to_owned()),
        (STORAGE.to_owned(), DEVELOPMENT_STORAGE.to_owned()),
    ]);
    for handler in &crate::HANDLERS {
        if let crate::Trigger::Timer { schedule_setting, default_schedule } = handler.trigger {
            defaults.insert(schedule_setting.to_owned(), default_schedule.to_owned());
        }
    }
    defaults
}

/// The contents of `local.settings.json` (`IsEncrypted` is always false here: keyturn never writes
/// encrypted settings, and cannot read them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalSettings {
    #[serde(rename = "IsEncrypted", default)]
    pub is_encrypted: bool,
    #[serde(rename = "Values", default)]
    pub values: BTreeMap<String, String>,
}

/// Why the settings cannot start the app, in Core Tools' words where Core Tools refuses the same thing.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("Failed to decrypt settings. Encrypted settings only be edited through 'func settings add'. ({path})")]
    Encrypted { path: PathBuf },
    /// Core Tools, with no worker runtime in the environment or `Values`, asks for one; without an answer it
    /// stops with this.
    #[error(
        "Can't determine project language from files. Please use one of [--dotnet-isolated, --dotnet, --javascript, \
         --typescript, --java, --python, --powershell, --custom]. Worker runtime cannot be 'None'. Please set a valid \
         runtime. (set {WORKER_RUNTIME}=custom in {LOCAL_SETTINGS} or the environment)"
    )]
    NoWorkerRuntime,
    /// A custom handler app under another language worker would not start the handler at all.
    #[error("{WORKER_RUNTIME} is {0:?}: a custom handler app runs with {WORKER_RUNTIME}=custom")]
    NotCustom(String),
    #[error(
        "Missing value for AzureWebJobsStorage in {LOCAL_SETTINGS}. This is required for all triggers other than \
         {triggers}. You can run 'func azure functionapp fetch-app-settings <functionAppName>', specify a connection \
         string in {LOCAL_SETTINGS}, or use managed identity to authenticate.",
        triggers = TRIGGERS_WITHOUT_STORAGE.join(", ")
    )]
    NoStorage,
    /// A timer's `schedule` names an app setting that has no value: the host cannot index the function
    /// (Core Tools reports it in these words and the function never runs; the stand-in refuses to start).
    #[error(
        "The '{function}' function is in error: Error indexing method 'Functions.{function}'. '%{setting}%' does not resolve to a value. (set {setting} to an NCRONTAB schedule, e.g. \"0 0 * * * *\")"
    )]
    UnresolvedSchedule { function: String, setting: String },
    /// A timer's schedule (as written, or its app setting's value) is not one the host reads: the function is
    /// not indexed, in these words, and never runs.
    #[error(
        "The '{function}' function is in error: Error indexing method 'Functions.{function}'. The schedule expression '{expression}' was not recognized as a valid cron expression or timespan string. ({reason})"
    )]
    InvalidSchedule { function: String, expression: String, reason: String },
}

impl LocalSettings {
    /// Settings with these values.
    pub fn new(values: BTreeMap<String, String>) -> Self {
        Self { is_encrypted: false, values }
    }

    /// Reads `<app_root>/local.settings.json`; `None` when there is none.
    pub fn read(app_root: &Path) -> Result<Option<Self>, SettingsError> {
        let path = app_root.join(LOCAL_SETTINGS);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(SettingsError::Read { path, source }),
        };
        let settings: Self = serde_json::from_slice(&bytes)
            .map_err(|error| SettingsError::Invalid { path: path.clone(), message: error.to_string() })?;
        if settings.is_encrypted {
            return Err(SettingsError::Encrypted { path });
        }
        Ok(Some(settings))
    }

    /// Writes `<app_root>/local.settings.json`, readable by its owner only: its values may include channel
    /// URLs with tokens.
    pub fn write(&self, app_root: &Path) -> Result<PathBuf, SettingsError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = app_root.join(LOCAL_SETTINGS);
        let write = |path: &Path| -> std::io::Result<()> {
            // Replaced, not rewritten in place: a file left with wider permissions must not keep them.
            let _ = std::fs::remove_file(path);
            let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
            let mut text = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
            text.push(b'\n');
            file.write_all(&text)
        };
        write(&path).map_err(|source| SettingsError::Write { path: path.clone(), source })?;
        Ok(path)
    }
}

/// The app settings `func start` would run `app` with: `local` (`Values`) under `environment` (the process
/// environment wins over `Values`, as in Core Tools), checked as Core Tools checks them before starting.
pub fn func_start_settings(
    app: &FunctionApp,
    local: Option<&LocalSettings>,
    environment: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, SettingsError> {
    let mut settings = local.map(|local| local.values.clone()).unwrap_or_default();
    // Core Tools skips a `Values` entry that the environment already defines with a non-empty value.
    for (name, value) in environment {
        if !value.is_empty() || !settings.contains_key(name) {
            settings.insert(name.clone(), value.clone());
        }
    }
    let lookup = |wanted: &str| settings.iter().find(|(name, _)| name.eq_ignore_ascii_case(wanted)).map(|(_, v)| v);

    match lookup(WORKER_RUNTIME).map(|runtime| runtime.trim()) {
        None | Some("") => return Err(SettingsError::NoWorkerRuntime),
        Some(runtime) if !runtime.eq_ignore_ascii_case("custom") => {
            return Err(SettingsError::NotCustom(runtime.to_owned()));
        }
        Some(_) => {}
    }

    let needs_storage = app
        .functions()
        .any(|function| !TRIGGERS_WITHOUT_STORAGE.iter().any(|exempt| exempt.eq_ignore_ascii_case(&function.trigger)));
    // A connection string, or an identity-based connection (`AzureWebJobsStorage__accountName`, ...).
    let has_storage = lookup(STORAGE).is_some_and(|value| !value.trim().is_empty())
        || settings
            .keys()
            .any(|name| name.to_ascii_lowercase().starts_with(&format!("{}__", STORAGE.to_ascii_lowercase())));
    if needs_storage && !has_storage {
        return Err(SettingsError::NoStorage);
    }
    for function in app.functions() {
        schedule_of(function, |name| lookup(name).cloned())?;
    }
    Ok(settings)
}

/// A timer function's schedule: its `schedule` as written, or the app setting it names (`%NAME%`), parsed as the
/// host parses it; `None` for a function without one. `lookup` reads the app settings.
pub fn schedule_of(
    function: &crate::FunctionDefinition,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Option<crate::ncrontab::Schedule>, SettingsError> {
    let Some(written) = function.schedule.as_deref() else { return Ok(None) };
    let expression = match written.strip_prefix('%').and_then(|s| s.strip_suffix('%')) {
        Some(setting) => match lookup(setting).filter(|value| !value.trim().is_empty()) {
            Some(value) => value,
            None => {
                return Err(SettingsError::UnresolvedSchedule {
                    function: function.name.clone(),
                    setting: setting.to_owned(),
                });
            }
        },
        None => written.to_owned(),
    };
    crate::ncrontab::Schedule::parse(&expression).map(Some).map_err(|error| SettingsError::InvalidSchedule {
        function: function.name.clone(),
        expression,
        reason: error.reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repository_app() -> FunctionApp {
        FunctionApp::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))).unwrap()
    }

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect()
    }

    #[test]
    fn what_a_package_writes_is_what_func_start_accepts_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut written = func_start_defaults();
        written.insert("KEYTURN_VAULTS".into(), "kv-one".into());
        let path = LocalSettings::new(written.clone()).write(dir.path()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"IsEncrypted\": false") && text.contains("\"Values\""), "{text}");

        let read = LocalSettings::read(dir.path()).unwrap().unwrap();
        assert_eq!(read.values, written);
        let settings = func_start_settings(&repository_app(), Some(&read), &BTreeMap::new()).unwrap();
        assert_eq!(settings["KEYTURN_VAULTS"], "kv-one");
        assert_eq!(LocalSettings::read(&dir.path().join("elsewhere")).unwrap(), None);
    }

    #[test]
    fn core_tools_refuses_no_worker_runtime_another_runtime_and_no_storage_for_event_grid() {
        let app = repository_app();
        let none = func_start_settings(&app, None, &BTreeMap::new()).unwrap_err().to_string();
        assert!(none.contains("Worker runtime cannot be 'None'. Please set a valid runtime."), "{none}");
        let blank = LocalSettings::new(values(&[(WORKER_RUNTIME, " "), (STORAGE, DEVELOPMENT_STORAGE)]));
        assert!(matches!(
            func_start_settings(&app, Some(&blank), &BTreeMap::new()),
            Err(SettingsError::NoWorkerRuntime)
        ));
        let node = LocalSettings::new(values(&[(WORKER_RUNTIME, "node"), (STORAGE, DEVELOPMENT_STORAGE)]));
        assert!(matches!(func_start_settings(&app, Some(&node), &BTreeMap::new()), Err(SettingsError::NotCustom(_))));

        let no_storage = LocalSettings::new(values(&[("functions_worker_runtime", "Custom")]));
        let error = func_start_settings(&app, Some(&no_storage), &BTreeMap::new()).unwrap_err().to_string();
        assert!(error.starts_with("Missing value for AzureWebJobsStorage in local.settings.json."), "{error}");
        // An identity-based connection counts, and so does the environment.
        let schedule = "KEYTURN_SWEEP_SCHEDULE";
        let identity = values(&[
            (WORKER_RUNTIME, "custom"),
            ("AzureWebJobsStorage__accountName", "keyturnlocks"),
            (schedule, "0 */5 * * * *"),
        ]);
        assert!(func_start_settings(&app, None, &identity).is_ok());
        let env = values(&[(STORAGE, DEVELOPMENT_STORAGE), (schedule, "0 0 * * * *")]);
        assert!(func_start_settings(&app, Some(&no_storage), &env).is_ok());
        // The sweep's timer needs its schedule setting, as the host needs it to index the function.
        let no_schedule = values(&[(WORKER_RUNTIME, "custom"), (STORAGE, DEVELOPMENT_STORAGE)]);
        let error = func_start_settings(&app, None, &no_schedule).unwrap_err().to_string();
        assert!(error.contains("'%KEYTURN_SWEEP_SCHEDULE%' does not resolve to a value"), "{error}");
        // A value the host cannot read as a schedule (here Unix cron's five fields) keeps it from indexing too.
        let unix = values(&[(WORKER_RUNTIME, "custom"), (STORAGE, DEVELOPMENT_STORAGE), (schedule, "0 * * * *")]);
        let error = func_start_settings(&app, None, &unix).unwrap_err().to_string();
        assert!(
            error.starts_with(
                "The 'sweep' function is in error: Error indexing method 'Functions.sweep'. The schedule expression \
                 '0 * * * *' was not recognized as a valid cron expression or timespan string."
            ) && error.contains("it has 5 field(s)"),
            "{error}"
        );
    }

    #[test]
    fn the_environment_wins_over_values_unless_it_is_empty() {
        let local = LocalSettings::new(values(&[
            (WORKER_RUNTIME, "custom"),
            (STORAGE, "a"),
            ("KEYTURN_LOG", "debug"),
            ("KEYTURN_SWEEP_SCHEDULE", "0 0 * * * *"),
        ]));
        let env = values(&[(STORAGE, "b"), ("KEYTURN_LOG", "")]);
        let settings = func_start_settings(&repository_app(), Some(&local), &env).unwrap();
        assert_eq!(settings[STORAGE], "b");
        assert_eq!(settings["KEYTURN_LOG"], "debug");
    }

    #[test]
    fn encrypted_or_malformed_settings_are_refused_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LOCAL_SETTINGS), r#"{"IsEncrypted": true, "Values": {}}"#).unwrap();
        let error = LocalSettings::read(dir.path()).unwrap_err().to_string();
        assert!(error.starts_with("Failed to decrypt settings."), "{error}");
        std::fs::write(dir.path().join(LOCAL_SETTINGS), r#"{"Values": {"A": 1}}"#).unwrap();
        let error = LocalSettings::read(dir.path()).unwrap_err().to_string();
        assert!(error.contains("local.settings.json is not valid"), "{error}");
    }
}
