//! Where the per-object rotation lock lives.

use url::Url;

use crate::storage::blob_container;
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
        let location = blob_container(env, LOCK_ACCOUNT_URL, LOCK_CONTAINER, "rotation locks", "keyturn-locks")?;
        Ok(match location {
            None => Self::InProcess,
            Some((account_url, container)) => Self::BlobLease { account_url, container },
        })
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
