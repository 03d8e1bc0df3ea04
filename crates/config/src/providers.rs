//! Settings of the rotation providers that talk to something other than Key Vault: the Azure Resource
//! Manager endpoint (storage account keys) and the user's own webhook rotators.

use url::Url;

use crate::{ConfigError, Env, SecretString};

pub const ARM_ENDPOINT: &str = "KEYTURN_ARM_ENDPOINT";
pub const WEBHOOK_ROTATORS: &str = "KEYTURN_WEBHOOK_ROTATORS";
/// Azure Resource Manager in the public cloud.
pub const DEFAULT_ARM_ENDPOINT: &str = "https://management.azure.com";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderSettings {
    /// Where Azure Resource Manager calls go (a sovereign cloud's, or the local stack's emulator).
    pub arm_endpoint: Url,
    /// The webhook rotators, unparsed (the rotation crate owns the grammar); held as a secret because each
    /// entry carries its signing secret. `None`: no rotator is configured.
    pub webhook_rotators: Option<SecretString>,
}

impl ProviderSettings {
    pub(crate) fn from_env(env: &Env<'_>) -> Result<Self, Vec<ConfigError>> {
        let raw = env.get(ARM_ENDPOINT).unwrap_or_else(|| DEFAULT_ARM_ENDPOINT.to_owned());
        let arm_endpoint = match Url::parse(&raw) {
            Ok(url)
                if url.scheme() == "https"
                    && url.host().is_some()
                    && url.path().trim_matches('/').is_empty()
                    && url.query().is_none()
                    && url.username().is_empty() =>
            {
                url
            }
            _ => {
                return Err(vec![ConfigError::invalid(
                    ARM_ENDPOINT,
                    &raw,
                    format!("an https URL of a Resource Manager endpoint without a path, e.g. {DEFAULT_ARM_ENDPOINT}"),
                )]);
            }
        };
        Ok(Self { arm_endpoint, webhook_rotators: env.get(WEBHOOK_ROTATORS).map(SecretString::new) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::lookup;

    #[test]
    fn the_arm_endpoint_defaults_to_the_public_cloud_and_must_be_https() {
        let settings = ProviderSettings::from_env(&Env::new(&lookup(&[]))).unwrap();
        assert_eq!(settings.arm_endpoint.as_str(), "https://management.azure.com/");
        assert!(settings.webhook_rotators.is_none());

        let local = lookup(&[("KEYTURN_ARM_ENDPOINT", "https://127.0.0.1:8444")]);
        let settings = ProviderSettings::from_env(&Env::new(&local)).unwrap();
        assert_eq!(settings.arm_endpoint.as_str(), "https://127.0.0.1:8444/");

        for bad in ["http://management.azure.com", "https://management.azure.com/subscriptions", "not a url"] {
            let errors = ProviderSettings::from_env(&Env::new(&lookup(&[("KEYTURN_ARM_ENDPOINT", bad)]))).unwrap_err();
            assert_eq!(errors[0].variable(), "KEYTURN_ARM_ENDPOINT", "{bad}");
        }
    }

    #[test]
    fn webhook_rotators_are_held_as_a_secret() {
        let env =
            lookup(&[("KEYTURN_WEBHOOK_ROTATORS", "billing=https://r.example/rotate?secret=s3cr3t-s3cr3t-s3cr3t")]);
        let settings = ProviderSettings::from_env(&Env::new(&env)).unwrap();
        assert!(!format!("{settings:?}").contains("s3cr3t"));
        assert!(settings.webhook_rotators.unwrap().expose().starts_with("billing="));
    }
}
