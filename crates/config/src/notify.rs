//! Notification and canary settings. The channel list's format belongs to the notification crate; here it
//! is read once and held as a secret, because channel URLs carry tokens (webhook keys, SAS signatures).

use crate::vaults::is_object_name;
use crate::{ConfigError, Env, SecretString};

pub const NOTIFY: &str = "KEYTURN_NOTIFY";
pub const CANARY_SECRET: &str = "KEYTURN_CANARY_SECRET";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotifySettings {
    /// The notification channels, unparsed; `None`: no channel is configured.
    pub channels: Option<SecretString>,
    /// The name of the canary secret whose new versions prove the whole path works.
    pub canary_secret: Option<String>,
}

impl NotifySettings {
    pub(crate) fn from_env(env: &Env<'_>) -> Result<Self, Vec<ConfigError>> {
        let canary_secret = env.get(CANARY_SECRET);
        if let Some(name) = &canary_secret
            && !is_object_name(name)
        {
            return Err(vec![ConfigError::invalid(
                CANARY_SECRET,
                name,
                "a Key Vault secret name: 1-127 letters, digits and hyphens",
            )]);
        }
        Ok(Self { channels: env.get(NOTIFY).map(SecretString::new), canary_secret })
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

        let lookup = crate::tests::lookup(&[("KEYTURN_CANARY_SECRET", "no/slashes")]);
        let errors = NotifySettings::from_env(&Env::new(&lookup)).unwrap_err();
        assert_eq!(errors[0].variable(), "KEYTURN_CANARY_SECRET");
    }
}
