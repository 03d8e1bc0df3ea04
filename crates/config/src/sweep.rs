//! The scheduled sweep's settings. The threshold list and the routing table are read here, once, and parsed
//! by the crates that own their grammar (`keyturn-sweep` for thresholds, the `sweep` handler for routes, which
//! knows the channel kinds and severities), as the channel list is by `keyturn-notify`.
//!
//! The schedule itself (`KEYTURN_SWEEP_SCHEDULE`, an NCRONTAB expression; `keyturn_app::handlers` names it
//! and its default) is not read by keyturn: the Functions host expands it in
//! `function-definitions/sweep/function.json` (`%KEYTURN_SWEEP_SCHEDULE%`). On AWS Lambda the EventBridge rule
//! holds the schedule.

use url::Url;

use crate::storage::blob_container;
use crate::{ConfigError, Env};

/// Days before expiry at which the sweep notifies, e.g. `60,30,14,7,3,1,0` (the default).
pub const SWEEP_THRESHOLDS: &str = "KEYTURN_SWEEP_THRESHOLDS";
/// A threshold at or below this many days is a warning (default 30: Key Vault's own near-expiry point).
pub const SWEEP_WARNING_DAYS: &str = "KEYTURN_SWEEP_WARNING_DAYS";
/// A threshold at or below this many days is critical: a page (default 7).
pub const SWEEP_CRITICAL_DAYS: &str = "KEYTURN_SWEEP_CRITICAL_DAYS";
/// Which channels each severity goes to, e.g. `info=email;warning=slack,teams;critical=pagerduty,slack`.
pub const SWEEP_ROUTES: &str = "KEYTURN_SWEEP_ROUTES";
/// The storage account and container of the sweep's durable state (which thresholds fired, which versions
/// were paged).
pub const SWEEP_STATE_ACCOUNT_URL: &str = "KEYTURN_SWEEP_STATE_ACCOUNT_URL";
pub const SWEEP_STATE_CONTAINER: &str = "KEYTURN_SWEEP_STATE_CONTAINER";
/// `on`: the sweep rotates an opted-in object whose near-expiry rotation did not happen (a lost event).
pub const SWEEP_REPAIR: &str = "KEYTURN_SWEEP_REPAIR";
/// The storage account and container Event Grid dead-letters keyturn's events into: the sweep reports each
/// dead letter once and re-drives those whose object still needs it.
pub const SWEEP_DEAD_LETTER_ACCOUNT_URL: &str = "KEYTURN_SWEEP_DEAD_LETTER_ACCOUNT_URL";
pub const SWEEP_DEAD_LETTER_CONTAINER: &str = "KEYTURN_SWEEP_DEAD_LETTER_CONTAINER";

/// Where the sweep keeps its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SweepState {
    /// In this process's memory: forgotten on restart, so a threshold may fire again. Right for a local run,
    /// never for a deployment (each instance would notify on its own).
    InMemory,
    /// Blobs in a container every sweep instance shares (Azure; Azurite in tests).
    Blob { account_url: Url, container: String },
}

/// The container Event Grid dead-letters into (the subscriptions' `deadLetterDestination`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterSource {
    pub account_url: Url,
    pub container: String,
}

/// The sweep's settings, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepSettings {
    /// The deployment's threshold list, unparsed; `None`: keyturn-sweep's default.
    pub thresholds: Option<String>,
    pub warning_within_days: u32,
    pub critical_within_days: u32,
    /// The routing table, unparsed; `None`: every severity to every channel.
    pub routes: Option<String>,
    pub state: SweepState,
    /// Missed-event repair is on (its identity then holds near-expiry's write roles).
    pub repair: bool,
    /// Where to find dead-lettered events; `None`: the sweep does not look for them.
    pub dead_letters: Option<DeadLetterSource>,
}

impl SweepSettings {
    pub(crate) fn from_env(env: &Env<'_>) -> Result<Self, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let days = |name, default| env.number(name, default, 0, 3650).map(|n| u32::try_from(n).unwrap_or(u32::MAX));
        let warning = days(SWEEP_WARNING_DAYS, 30).map_err(|e| errors.push(e)).ok();
        let critical = days(SWEEP_CRITICAL_DAYS, 7).map_err(|e| errors.push(e)).ok();
        if let (Some(warning), Some(critical)) = (warning, critical)
            && critical > warning
        {
            errors.push(ConfigError::other(
                SWEEP_CRITICAL_DAYS,
                format!(
                    "{critical} days is more than {SWEEP_WARNING_DAYS} ({warning}): critical must be the nearer to \
                     expiry"
                ),
            ));
        }
        let state = blob_container(env, SWEEP_STATE_ACCOUNT_URL, SWEEP_STATE_CONTAINER, "sweep state", "keyturn-sweep")
            .map_err(|mut found| errors.append(&mut found))
            .ok();
        let repair = match env.get(SWEEP_REPAIR).map(|v| v.to_ascii_lowercase()).as_deref() {
            None | Some("off" | "false") => Some(false),
            Some("on" | "true") => Some(true),
            Some(_) => {
                let raw = env.get(SWEEP_REPAIR).unwrap_or_default();
                errors.push(ConfigError::invalid(SWEEP_REPAIR, &raw, "on or off"));
                None
            }
        };
        let dead_letters = blob_container(
            env,
            SWEEP_DEAD_LETTER_ACCOUNT_URL,
            SWEEP_DEAD_LETTER_CONTAINER,
            "dead-lettered events",
            "keyturn-deadletter",
        )
        .map_err(|mut found| errors.append(&mut found))
        .ok();
        // Each dead letter is reported and re-driven once: that needs the claims to outlive the process.
        if let (Some(Some(_)), Some(None)) = (&dead_letters, &state) {
            errors.push(ConfigError::missing(
                SWEEP_STATE_ACCOUNT_URL,
                format!(
                    "{SWEEP_DEAD_LETTER_ACCOUNT_URL} is set: the sweep records which dead letters it handled in its \
                     state container, so that each is reported and re-driven once (set {SWEEP_STATE_ACCOUNT_URL} \
                     and {SWEEP_STATE_CONTAINER})"
                ),
            ));
        }
        match (warning, critical, state, repair, dead_letters) {
            (Some(warning_within_days), Some(critical_within_days), Some(state), Some(repair), Some(dead_letters))
                if errors.is_empty() =>
            {
                Ok(Self {
                    thresholds: env.get(SWEEP_THRESHOLDS),
                    warning_within_days,
                    critical_within_days,
                    routes: env.get(SWEEP_ROUTES),
                    state: match state {
                        None => SweepState::InMemory,
                        Some((account_url, container)) => SweepState::Blob { account_url, container },
                    },
                    repair,
                    dead_letters: dead_letters
                        .map(|(account_url, container)| DeadLetterSource { account_url, container }),
                })
            }
            _ => Err(errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::lookup;

    fn parse(pairs: &[(&str, &str)]) -> Result<SweepSettings, Vec<ConfigError>> {
        let lookup = lookup(pairs);
        SweepSettings::from_env(&Env::new(&lookup))
    }

    #[test]
    fn nothing_set_is_the_defaults_in_memory() {
        let settings = parse(&[]).unwrap();
        assert_eq!(
            settings,
            SweepSettings {
                thresholds: None,
                warning_within_days: 30,
                critical_within_days: 7,
                routes: None,
                state: SweepState::InMemory,
                repair: false,
                dead_letters: None,
            }
        );
    }

    #[test]
    fn every_setting_is_read_and_the_state_container_is_checked_like_the_locks() {
        let settings = parse(&[
            ("KEYTURN_SWEEP_THRESHOLDS", "30,7,0"),
            ("KEYTURN_SWEEP_WARNING_DAYS", "14"),
            ("KEYTURN_SWEEP_CRITICAL_DAYS", "3"),
            ("KEYTURN_SWEEP_ROUTES", "critical=pagerduty"),
            ("KEYTURN_SWEEP_STATE_ACCOUNT_URL", "https://state.blob.core.windows.net/"),
            ("KEYTURN_SWEEP_STATE_CONTAINER", "keyturn-sweep"),
            ("KEYTURN_SWEEP_REPAIR", "On"),
            ("KEYTURN_SWEEP_DEAD_LETTER_ACCOUNT_URL", "https://state.blob.core.windows.net/"),
            ("KEYTURN_SWEEP_DEAD_LETTER_CONTAINER", "keyturn-deadletter"),
        ])
        .unwrap();
        assert_eq!(settings.dead_letters.as_ref().map(|d| d.container.as_str()), Some("keyturn-deadletter"));
        assert!(settings.repair);
        assert_eq!(settings.thresholds.as_deref(), Some("30,7,0"));
        assert_eq!((settings.warning_within_days, settings.critical_within_days), (14, 3));
        assert_eq!(settings.routes.as_deref(), Some("critical=pagerduty"));
        assert!(matches!(settings.state, SweepState::Blob { ref container, .. } if container == "keyturn-sweep"));

        let errors = parse(&[
            ("KEYTURN_SWEEP_WARNING_DAYS", "5"),
            ("KEYTURN_SWEEP_CRITICAL_DAYS", "9"),
            ("KEYTURN_SWEEP_STATE_CONTAINER", "x"),
            ("KEYTURN_SWEEP_REPAIR", "sometimes"),
        ])
        .unwrap_err();
        let variables: Vec<&str> = errors.iter().map(ConfigError::variable).collect();
        assert_eq!(
            variables,
            ["KEYTURN_SWEEP_CRITICAL_DAYS", "KEYTURN_SWEEP_STATE_ACCOUNT_URL", "KEYTURN_SWEEP_REPAIR"]
        );
        assert!(errors[0].to_string().contains("critical must be the nearer to expiry"), "{}", errors[0]);
    }

    #[test]
    fn dead_letters_are_read_only_with_durable_state_and_both_settings() {
        let errors = parse(&[("KEYTURN_SWEEP_DEAD_LETTER_CONTAINER", "keyturn-deadletter")]).unwrap_err();
        assert_eq!(errors[0].variable(), "KEYTURN_SWEEP_DEAD_LETTER_ACCOUNT_URL");
        let errors = parse(&[
            ("KEYTURN_SWEEP_DEAD_LETTER_ACCOUNT_URL", "https://dl.blob.core.windows.net/"),
            ("KEYTURN_SWEEP_DEAD_LETTER_CONTAINER", "keyturn-deadletter"),
        ])
        .unwrap_err();
        assert_eq!(errors[0].variable(), "KEYTURN_SWEEP_STATE_ACCOUNT_URL");
        assert!(errors[0].to_string().contains("reported and re-driven once"), "{}", errors[0]);
        let errors = parse(&[
            ("KEYTURN_SWEEP_DEAD_LETTER_ACCOUNT_URL", "http://dl.blob.core.windows.net/"),
            ("KEYTURN_SWEEP_DEAD_LETTER_CONTAINER", "Dead_Letters"),
        ])
        .unwrap_err();
        let variables: Vec<&str> = errors.iter().map(ConfigError::variable).collect();
        assert_eq!(variables, ["KEYTURN_SWEEP_DEAD_LETTER_ACCOUNT_URL", "KEYTURN_SWEEP_DEAD_LETTER_CONTAINER"]);
    }
}
