//! keyturn's settings, read from the environment in this one place (docs/configuration.md is the reference).
//!
//! [`Settings::from_env`] reads the process environment; [`Settings::from_lookup`] takes any lookup function,
//! so tests never touch the process environment. Parsing never panics: every problem becomes a
//! [`ConfigError`] naming the variable and saying what a valid value looks like, and all problems are
//! reported at once so a misconfigured deployment is fixed in one round.
//!
//! # Layout
//! - [`vaults`]: the vault allow-list (`KEYTURN_VAULTS`, `KEYTURN_MIRROR_VAULTS`) and the host rules for vault URLs.
//! - [`mirror_routes`]: which destinations each source vault (and name) may be mirrored to (`KEYTURN_MIRROR_ROUTES`).
//! - [`credential`]: which Azure credential keyturn uses (`KEYTURN_CREDENTIAL` and the SDK's `AZURE_*` names).
//! - [`retry`]: bounded retries for calls to Azure (`KEYTURN_RETRY_*`, `KEYTURN_HTTP_TIMEOUT_SECS`).
//! - [`lock`]: where the per-object rotation lock lives (`KEYTURN_LOCK_*`).
//! - [`notify`]: notification and canary settings (`KEYTURN_NOTIFY`, `KEYTURN_CANARY_SECRET`,
//!   `KEYTURN_NOTIFY_NEW_VERSION_NAMES`).
//! - [`providers`]: rotation providers' endpoints (`KEYTURN_ARM_ENDPOINT`, `KEYTURN_WEBHOOK_ROTATORS`).
//! - [`sweep`]: the scheduled sweep's thresholds, escalation, routing and state (`KEYTURN_SWEEP_*`).
//! - `storage` (private): a blob container named by an account URL and a container setting (locks, sweep state).
//! - [`azure_keys`]: the Azure key family's bindings (`KEYTURN_AZURE_KEY_RESOURCES`, `KEYTURN_STORAGE_ACCOUNTS`) and
//!   the resource types it can rotate.
//! - [`bindings`]: the `<vault>[/<names>]=<target>` grammar every provider binding shares.
//! - [`health`]: the post-rotation health probes (`KEYTURN_HEALTH_PROBES`, `KEYTURN_HEALTH_PROBE_SECRET`).
//! - [`consumers`]: the apps the `new-version` handler refreshes when a secret they read changes (`KEYTURN_CONSUMERS`).
//! - [`entra`]: the Entra ID application secrets provider (`KEYTURN_ENTRA_APPLICATIONS`, `KEYTURN_GRAPH_ENDPOINT`).
//! - [`secret`]: [`SecretString`], the wrapper for every secret value keyturn holds.
//! - [`error`]: [`ConfigError`] and [`ConfigErrors`].

pub mod azure_keys;
pub mod bindings;
pub mod consumers;
pub mod credential;
pub mod entra;
pub mod error;
pub mod health;
pub mod lock;
pub mod mirror_routes;
pub mod notify;
pub mod providers;
pub mod retry;
pub mod secret;
mod storage;
pub mod sweep;
pub mod vaults;

use std::path::PathBuf;

pub use consumers::{Consumer, Consumers};
pub use credential::CredentialSettings;
pub use error::{ConfigError, ConfigErrors};
pub use lock::LockSettings;
pub use mirror_routes::{MirrorRoute, MirrorRoutes};
pub use notify::NotifySettings;
pub use providers::ProviderSettings;
pub use retry::RetrySettings;
pub use secret::SecretString;
pub use sweep::{DeadLetterSource, SweepSettings, SweepState};
pub use vaults::{EndpointKind, VaultEntry, VaultList};

/// The PEM bundle of extra CA certificates trusted for calls to Azure endpoints (local emulators only).
pub const CA_FILE: &str = "KEYTURN_CA_FILE";

/// Everything keyturn's libraries need from the environment, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub vaults: VaultList,
    pub mirror_vaults: VaultList,
    pub mirror_routes: MirrorRoutes,
    pub credential: CredentialSettings,
    pub retry: RetrySettings,
    pub lock: LockSettings,
    pub notify: NotifySettings,
    pub providers: ProviderSettings,
    pub sweep: SweepSettings,
    /// `KEYTURN_CONSUMERS`: the apps refreshed when a secret they read gets a new version.
    pub consumers: Consumers,
    /// `KEYTURN_HEALTH_PROBES`: the endpoints asked, after a rotation, whether the consumers still work.
    pub health_probes: health::HealthProbes,
    /// Extra trust roots (PEM) for the HTTP client the Azure SDK uses; `None` in Azure.
    pub ca_file: Option<PathBuf>,
}

impl Settings {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Self, ConfigErrors> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup` (a variable's value, or `None` when unset).
    ///
    /// An empty or all-whitespace value counts as unset: deployment templates commonly write empty strings
    /// for settings that do not apply.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigErrors> {
        let env = Env::new(&lookup);
        let mut errors = Vec::new();
        let vaults = collect(&mut errors, vaults::VaultList::from_env(&env, vaults::VAULTS, true));
        let mirror_vaults = collect(&mut errors, vaults::VaultList::from_env(&env, vaults::MIRROR_VAULTS, false));
        let mirror_routes = match (&vaults, &mirror_vaults) {
            (Some(vaults), Some(mirrors)) => {
                collect(&mut errors, mirror_routes::MirrorRoutes::from_env(&env, &[vaults, mirrors]))
            }
            // The routes are checked against the lists, which are reported already.
            _ => None,
        };
        let credential = collect(&mut errors, credential::CredentialSettings::from_env(&env));
        let retry = collect(&mut errors, retry::RetrySettings::from_env(&env));
        let lock = collect(&mut errors, lock::LockSettings::from_env(&env));
        let notify = collect(&mut errors, notify::NotifySettings::from_env(&env));
        let providers = collect(&mut errors, providers::ProviderSettings::from_env(&env));
        let sweep = collect(&mut errors, sweep::SweepSettings::from_env(&env));
        let consumers = collect(&mut errors, consumers::Consumers::from_env(&env));
        let health_probes = collect(&mut errors, health::HealthProbes::from_env(&env));
        let ca_file = env.get(CA_FILE).map(PathBuf::from);
        // Every part is read (and its errors kept) before any is given up on, so one run reports every bad setting.
        let settings = || {
            Some(Self {
                vaults: vaults?,
                mirror_vaults: mirror_vaults?,
                mirror_routes: mirror_routes?,
                credential: credential?,
                retry: retry?,
                lock: lock?,
                notify: notify?,
                providers: providers?,
                sweep: sweep?,
                consumers: consumers?,
                health_probes: health_probes?,
                ca_file,
            })
        };
        match settings() {
            Some(settings) if errors.is_empty() => Ok(settings),
            _ => Err(ConfigErrors(errors)),
        }
    }
}

impl Settings {
    /// For a platform that runs several instances of a handler at once (`platform`, e.g. "AWS Lambda"):
    /// a deployment with any provider beyond `generated` needs the cross-instance lock (the blob lease),
    /// since an in-process lock cannot stop two instances from rotating the same secret at once (for
    /// PostgreSQL, changing a password twice and promoting the loser's). The error names the settings to add.
    pub fn require_cross_instance_lock(&self, platform: &str) -> Result<(), ConfigErrors> {
        let configured = self.providers.configured_beyond_generated();
        if self.lock != LockSettings::InProcess || configured.is_empty() {
            return Ok(());
        }
        Err(ConfigErrors(vec![ConfigError::missing(
            lock::LOCK_ACCOUNT_URL,
            format!(
                "a storage account's blob endpoint (with {}) for the rotation lock: on {platform} several instances \
                 run at once and an in-process lock cannot keep them from rotating the same secret, which the \
                 configured provider(s) {} must never do",
                lock::LOCK_CONTAINER,
                configured.join(", ")
            ),
        )]))
    }
}

fn collect<T>(errors: &mut Vec<ConfigError>, result: Result<T, Vec<ConfigError>>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(mut found) => {
            errors.append(&mut found);
            None
        }
    }
}

/// The environment as the parsers see it: trimmed values, empty meaning unset.
pub(crate) struct Env<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> Env<'a> {
    pub(crate) fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Self { lookup }
    }

    pub(crate) fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    }

    /// A variable holding the https URL of a service endpoint (no path, query or credentials), or `default`
    /// when unset; `what` names the service in the error message.
    pub(crate) fn endpoint(&self, name: &'static str, default: &str, what: &str) -> Result<url::Url, ConfigError> {
        let raw = self.get(name).unwrap_or_else(|| default.to_owned());
        match url::Url::parse(&raw) {
            Ok(url)
                if url.scheme() == "https"
                    && url.host().is_some()
                    && url.path().trim_matches('/').is_empty()
                    && url.query().is_none()
                    && url.username().is_empty() =>
            {
                Ok(url)
            }
            _ => {
                Err(ConfigError::invalid(name, &raw, format!("an https URL of {what} without a path, e.g. {default}")))
            }
        }
    }

    /// A variable parsed as an integer within `min..=max`, or `default` when unset.
    pub(crate) fn number(&self, name: &'static str, default: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
        let Some(raw) = self.get(name) else { return Ok(default) };
        match raw.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(ConfigError::invalid(name, &raw, format!("a whole number from {min} to {max}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    pub(crate) fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn a_minimal_azure_configuration_parses() {
        let settings = Settings::from_lookup(lookup(&[
            ("KEYTURN_VAULTS", "contoso"),
            ("KEYTURN_CREDENTIAL", "managed-identity"),
            ("KEYTURN_LOCK_ACCOUNT_URL", "https://keyturnlocks.blob.core.windows.net/"),
            ("KEYTURN_LOCK_CONTAINER", "keyturn-locks"),
        ]))
        .unwrap();
        assert_eq!(settings.vaults.entries().len(), 1);
        assert!(matches!(settings.credential, CredentialSettings::ManagedIdentity { client_id: None }));
        assert!(matches!(settings.lock, LockSettings::BlobLease { .. }));
        assert!(settings.ca_file.is_none());
        assert!(settings.mirror_vaults.entries().is_empty());
    }

    #[test]
    fn every_problem_is_reported_at_once_and_each_names_its_variable() {
        let errors = Settings::from_lookup(lookup(&[
            ("KEYTURN_CREDENTIAL", "magic"),
            ("KEYTURN_RETRY_MAX", "lots"),
            ("KEYTURN_LOCK_CONTAINER", "locks"),
        ]))
        .unwrap_err();
        let variables: Vec<&str> = errors.0.iter().map(|e| e.variable()).collect();
        assert_eq!(
            variables,
            ["KEYTURN_VAULTS", "KEYTURN_CREDENTIAL", "KEYTURN_RETRY_MAX", "KEYTURN_LOCK_ACCOUNT_URL"]
        );
        let message = errors.to_string();
        assert!(
            message.contains("KEYTURN_CREDENTIAL: 'magic' is not valid; expected one of managed-identity"),
            "{message}"
        );
    }

    #[test]
    fn a_provider_beyond_generated_needs_the_cross_instance_lock_where_instances_run_side_by_side() {
        let base = [("KEYTURN_VAULTS", "contoso"), ("KEYTURN_CREDENTIAL", "managed-identity")];
        let with = |extra: &[(&'static str, &'static str)]| {
            let pairs: Vec<(&str, &str)> = base.iter().chain(extra).copied().collect();
            Settings::from_lookup(lookup(&pairs)).unwrap()
        };
        // The generated provider alone rotates within Key Vault: the in-process lock is enough.
        with(&[]).require_cross_instance_lock("AWS Lambda").unwrap();
        let postgres = with(&[("KEYTURN_POSTGRES_SERVERS", "db.example.com")]);
        let errors = postgres.require_cross_instance_lock("AWS Lambda").unwrap_err();
        assert_eq!(errors.0[0].variable(), "KEYTURN_LOCK_ACCOUNT_URL");
        let message = errors.to_string();
        assert!(message.contains("on AWS Lambda several instances run at once"), "{message}");
        assert!(message.contains("provider(s) postgres") && message.contains("KEYTURN_LOCK_CONTAINER"), "{message}");
        let webhook = with(&[("KEYTURN_WEBHOOK_ROTATORS", "r=https://r.example/?secret=0123456789abcdef&vaults=kv")]);
        assert!(webhook.require_cross_instance_lock("AWS Lambda").unwrap_err().to_string().contains("webhook"));
        // With the blob lease configured, the same deployment is fine.
        with(&[
            ("KEYTURN_POSTGRES_SERVERS", "db.example.com"),
            ("KEYTURN_LOCK_ACCOUNT_URL", "https://keyturnlocks.blob.core.windows.net/"),
            ("KEYTURN_LOCK_CONTAINER", "keyturn-locks"),
        ])
        .require_cross_instance_lock("AWS Lambda")
        .unwrap();
    }

    #[test]
    fn whitespace_only_values_count_as_unset() {
        let errors =
            Settings::from_lookup(lookup(&[("KEYTURN_VAULTS", "  "), ("KEYTURN_CREDENTIAL", "developer-tools")]))
                .unwrap_err();
        assert_eq!(errors.0.len(), 1);
        assert_eq!(errors.0[0].variable(), "KEYTURN_VAULTS");
        assert!(errors.to_string().contains("is not set"), "{errors}");
    }
}
