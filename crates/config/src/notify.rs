//! Notification and canary settings. The channel list's format belongs to the notification crate; here it
//! is read once and held as a secret, because channel URLs carry tokens (webhook keys, SAS signatures).
//! The `new-version` handler's name filter ([`NameFilter`]) is read here too, so that every setting has one
//! reader.

use crate::vaults::is_object_name;
use crate::{ConfigError, Env, SecretString};

pub const NOTIFY: &str = "KEYTURN_NOTIFY";
pub const CANARY_SECRET: &str = "KEYTURN_CANARY_SECRET";
/// Which object names the `new-version` handler notifies about (see [`NameFilter`]); unset: every name.
pub const NEW_VERSION_NAMES: &str = "KEYTURN_NOTIFY_NEW_VERSION_NAMES";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotifySettings {
    /// The notification channels, unparsed; `None`: no channel is configured.
    pub channels: Option<SecretString>,
    /// The name of the canary secret whose new versions prove the whole path works.
    pub canary_secret: Option<String>,
    /// The names whose new versions the `new-version` handler notifies about.
    pub new_version_names: NameFilter,
}

impl NotifySettings {
    pub(crate) fn from_env(env: &Env<'_>) -> Result<Self, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let canary_secret = env.get(CANARY_SECRET);
        if let Some(name) = &canary_secret
            && !is_object_name(name)
        {
            errors.push(ConfigError::invalid(
                CANARY_SECRET,
                name,
                "a Key Vault secret name: 1-127 letters, digits and hyphens",
            ));
        }
        let new_version_names = NameFilter::parse(&env.get(NEW_VERSION_NAMES).unwrap_or_default())
            .map_err(|entry| {
                errors.push(ConfigError::invalid(
                    NEW_VERSION_NAMES,
                    &entry,
                    "comma-separated object names or name prefixes followed by '*' (letters, digits and hyphens), \
                     e.g. app-*,db-password",
                ))
            })
            .unwrap_or_default();
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self { channels: env.get(NOTIFY).map(SecretString::new), canary_secret, new_version_names })
    }
}

/// A set of exact names and prefixes; empty means every name.
///
/// Grammar (`KEYTURN_NOTIFY_NEW_VERSION_NAMES`): comma-separated entries; `prefix*` matches every name
/// starting with `prefix`, anything else matches that exact name; case-insensitive, like Key Vault names.
/// Unset or empty: every name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameFilter {
    exact: Vec<String>,
    prefixes: Vec<String>,
}

impl NameFilter {
    /// Parses the grammar above; the error is the first entry that is not a name or a name prefix.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut filter = Self::default();
        for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (name, prefix) = match entry.strip_suffix('*') {
                Some(prefix) => (prefix, true),
                None => (entry, false),
            };
            if !is_object_name(name) {
                return Err(entry.to_owned());
            }
            let name = name.to_ascii_lowercase();
            if prefix { filter.prefixes.push(name) } else { filter.exact.push(name) }
        }
        Ok(filter)
    }

    /// Whether notifications about `name` go out.
    pub fn matches(&self, name: &str) -> bool {
        if self.exact.is_empty() && self.prefixes.is_empty() {
            return true;
        }
        let name = name.to_ascii_lowercase();
        self.exact.contains(&name) || self.prefixes.iter().any(|p| name.starts_with(p.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::lookup;

    #[test]
    fn channels_are_held_as_a_secret_and_the_canary_name_is_checked() {
        let lookup =
            lookup(&[("KEYTURN_NOTIFY", "https://hooks.example/t0ken"), ("KEYTURN_CANARY_SECRET", "keyturn-canary")]);
        let settings = NotifySettings::from_env(&Env::new(&lookup)).unwrap();
        assert_eq!(settings.canary_secret.as_deref(), Some("keyturn-canary"));
        assert!(!format!("{settings:?}").contains("t0ken"));
        assert!(settings.new_version_names.matches("anything"), "unset: every name");

        let lookup = crate::tests::lookup(&[("KEYTURN_CANARY_SECRET", "no/slashes")]);
        let errors = NotifySettings::from_env(&Env::new(&lookup)).unwrap_err();
        assert_eq!(errors[0].variable(), "KEYTURN_CANARY_SECRET");
    }

    #[test]
    fn the_new_version_name_filter_is_read_and_a_bad_entry_named() {
        let lookup = crate::tests::lookup(&[("KEYTURN_NOTIFY_NEW_VERSION_NAMES", " app-* , DB-password")]);
        let settings = NotifySettings::from_env(&Env::new(&lookup)).unwrap();
        assert!(settings.new_version_names.matches("app-token"));
        assert!(settings.new_version_names.matches("db-PASSWORD"));
        assert!(!settings.new_version_names.matches("other"));

        let lookup = crate::tests::lookup(&[
            ("KEYTURN_NOTIFY_NEW_VERSION_NAMES", "ok,a/b"),
            ("KEYTURN_CANARY_SECRET", "no/slashes"),
        ]);
        let errors = NotifySettings::from_env(&Env::new(&lookup)).unwrap_err();
        assert_eq!(errors.len(), 2, "every bad setting at once: {errors:?}");
        assert_eq!(errors[1].variable(), "KEYTURN_NOTIFY_NEW_VERSION_NAMES");
        assert!(
            errors[1].to_string().starts_with("KEYTURN_NOTIFY_NEW_VERSION_NAMES: 'a/b' is not valid"),
            "{}",
            errors[1]
        );
    }

    #[test]
    fn no_entries_match_every_name() {
        assert!(NameFilter::parse("").unwrap().matches("anything"));
        assert!(NameFilter::default().matches("db-password"));
    }

    #[test]
    fn prefixes_and_exact_names_match_case_insensitively() {
        let filter = NameFilter::parse(" app-* , DB-password").unwrap();
        assert!(filter.matches("app-token"));
        assert!(filter.matches("APP-"));
        assert!(filter.matches("db-PASSWORD"));
        assert!(!filter.matches("db-password-old"));
        assert!(!filter.matches("other"));
    }

    #[test]
    fn entries_that_are_not_names_are_refused() {
        for bad in ["a/b", "*", "pre*fix", "x y"] {
            assert_eq!(NameFilter::parse(bad).unwrap_err(), bad.trim(), "{bad}");
        }
    }
}
