//! Where the per-object rotation lock lives.

use url::Url;

use crate::{ConfigError, Env};

pub const LOCK_ACCOUNT_URL: &str = "KEYTURN_LOCK_ACCOUNT_URL";
pub const LOCK_CONTAINER: &str = "KEYTURN_LOCK_CONTAINER";

/// The rotation lock's home.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockSettings {
    /// A lock inside this process: right for a single process (local runs), useless across instances.
    InProcess,
    /// A blob lease in a storage account every instance shares (Azure).
    BlobLease { account_url: Url, container: String },
}

impl LockSettings {
    pub(crate) fn from_env(env: &Env<'_>) -> Result<Self, Vec<ConfigError>> {
        let account = env.get(LOCK_ACCOUNT_URL);
        let container = env.get(LOCK_CONTAINER);
        match (account, container) {
            (None, None) => Ok(Self::InProcess),
            (Some(_), None) => Err(vec![ConfigError::missing(
                LOCK_CONTAINER,
                format!("the blob container for rotation locks (set with {LOCK_ACCOUNT_URL}), e.g. keyturn-locks"),
            )]),
            (None, Some(_)) => Err(vec![ConfigError::missing(
                LOCK_ACCOUNT_URL,
                format!(
                    "the blob endpoint of the storage account holding {LOCK_CONTAINER}, \
                     e.g. https://<account>.blob.core.windows.net/"
                ),
            )]),
            (Some(account), Some(container)) => {
                let mut errors = Vec::new();
                let url = match Url::parse(&account) {
                    Ok(url) if url.scheme() == "https" && url.host().is_some() => Some(url),
                    _ => {
                        errors.push(ConfigError::invalid(
                            LOCK_ACCOUNT_URL,
                            &account,
                            "an https URL of a blob endpoint, e.g. https://<account>.blob.core.windows.net/",
                        ));
                        None
                    }
                };
                let valid_container = (3..=63).contains(&container.len())
                    && container.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !container.starts_with('-')
                    && !container.ends_with('-')
                    && !container.contains("--");
                if !valid_container {
                    errors.push(ConfigError::invalid(
                        LOCK_CONTAINER,
                        &container,
                        "a blob container name: 3-63 lowercase letters, digits and single hyphens",
                    ));
                }
                match url {
                    Some(account_url) if errors.is_empty() => Ok(Self::BlobLease { account_url, container }),
                    _ => Err(errors),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::lookup;

    fn parse(pairs: &[(&str, &str)]) -> Result<LockSettings, Vec<ConfigError>> {
        let lookup = lookup(pairs);
        LockSettings::from_env(&Env::new(&lookup))
    }

    #[test]
    fn nothing_set_means_in_process_and_both_set_means_a_blob_lease() {
        assert_eq!(parse(&[]).unwrap(), LockSettings::InProcess);
        let LockSettings::BlobLease { account_url, container } = parse(&[
            ("KEYTURN_LOCK_ACCOUNT_URL", "https://locks.blob.core.windows.net/"),
            ("KEYTURN_LOCK_CONTAINER", "keyturn-locks"),
        ])
        .unwrap() else {
            panic!("expected a blob lease")
        };
        assert_eq!(account_url.host_str(), Some("locks.blob.core.windows.net"));
        assert_eq!(container, "keyturn-locks");
    }

    #[test]
    fn half_a_blob_configuration_is_an_error_not_a_silent_in_process_lock() {
        assert_eq!(
            parse(&[("KEYTURN_LOCK_CONTAINER", "locks")]).unwrap_err()[0].variable(),
            "KEYTURN_LOCK_ACCOUNT_URL"
        );
        assert_eq!(
            parse(&[("KEYTURN_LOCK_ACCOUNT_URL", "https://a/")]).unwrap_err()[0].variable(),
            "KEYTURN_LOCK_CONTAINER"
        );
        let errors =
            parse(&[("KEYTURN_LOCK_ACCOUNT_URL", "http://a/"), ("KEYTURN_LOCK_CONTAINER", "Bad--Name")]).unwrap_err();
        let variables: Vec<&str> = errors.iter().map(ConfigError::variable).collect();
        assert_eq!(variables, ["KEYTURN_LOCK_ACCOUNT_URL", "KEYTURN_LOCK_CONTAINER"]);
    }
}
