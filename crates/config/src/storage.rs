//! A blob container in a storage account, named by two settings (an account URL and a container): the
//! rotation lock's home and the sweep's state share this reading.

use url::Url;

use crate::{ConfigError, Env};

/// Reads `<account_var>` and `<container_var>`: `Ok(None)` when both are unset, the checked pair when both are
/// set, and an error naming the missing or invalid one otherwise (half a configuration is never a silent
/// fallback). `what` says what the container holds, for the messages (e.g. `rotation locks`), and
/// `container_example` a name to suggest.
pub(crate) fn blob_container(
    env: &Env<'_>,
    account_var: &'static str,
    container_var: &'static str,
    what: &str,
    container_example: &str,
) -> Result<Option<(Url, String)>, Vec<ConfigError>> {
    match (env.get(account_var), env.get(container_var)) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(vec![ConfigError::missing(
            container_var,
            format!("the blob container for {what} (set with {account_var}), e.g. {container_example}"),
        )]),
        (None, Some(_)) => Err(vec![ConfigError::missing(
            account_var,
            format!(
                "the blob endpoint of the storage account holding {container_var}, \
                 e.g. https://<account>.blob.core.windows.net/"
            ),
        )]),
        (Some(account), Some(container)) => {
            let mut errors = Vec::new();
            let url = match Url::parse(&account) {
                Ok(url) if url.scheme() == "https" && url.host().is_some() => Some(url),
                _ => {
                    errors.push(ConfigError::invalid(
                        account_var,
                        &account,
                        "an https URL of a blob endpoint, e.g. https://<account>.blob.core.windows.net/",
                    ));
                    None
                }
            };
            if !is_container_name(&container) {
                errors.push(ConfigError::invalid(
                    container_var,
                    &container,
                    "a blob container name: 3-63 lowercase letters, digits and single hyphens",
                ));
            }
            match url {
                Some(url) if errors.is_empty() => Ok(Some((url, container))),
                _ => Err(errors),
            }
        }
    }
}

/// Azure's container naming rule.
fn is_container_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}
