//! `KEYTURN_HEALTH_PROBES` and `KEYTURN_HEALTH_PROBE_SECRET`: the HTTPS endpoints keyturn asks, right after a
//! rotation promoted a new version, whether the secret's consumers still work.
//!
//! Format: `;`-separated `<vault>[/<name or prefix*>[,...]]=<https URL>`, e.g.
//! `kv-prod/app-*=https://shop.example.com/healthz/secrets`. The first entry covering a secret is its probe. A URL
//! carries no query, fragment or credentials: the probe receives a signed POST naming the vault, secret and
//! versions (never a value), with `X-Keyturn-Signature` computed with `KEYTURN_HEALTH_PROBE_SECRET` (at least 16
//! characters) as the webhook channel signs (docs/notifications.md, "Verifying a webhook").
//!
//! Tags choose nothing here: only the deployment names probes. Unset: no probe.

use url::Url;

use crate::notify::NameFilter;
use crate::vaults::is_object_name;
use crate::{ConfigError, Env, SecretString};

pub const HEALTH_PROBES: &str = "KEYTURN_HEALTH_PROBES";
pub const HEALTH_PROBE_SECRET: &str = "KEYTURN_HEALTH_PROBE_SECRET";
/// The shortest signing secret accepted.
const MIN_SECRET_LEN: usize = 16;

/// One probe: the secrets of `vault` whose names `names` matches are checked at `url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthProbe {
    /// The vault's name, lowercase.
    pub vault: String,
    pub names: NameFilter,
    pub url: Url,
}

/// The deployment's probes and their signing secret.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthProbes {
    pub probes: Vec<HealthProbe>,
    /// Set whenever a probe is.
    pub secret: Option<SecretString>,
}

impl HealthProbes {
    /// The probe of the secret `vault/name`, if one covers it.
    pub fn for_secret(&self, vault: &str, name: &str) -> Option<&HealthProbe> {
        self.probes.iter().find(|p| p.vault.eq_ignore_ascii_case(vault) && p.names.matches(name))
    }

    pub(crate) fn from_env(env: &Env<'_>) -> Result<Self, Vec<ConfigError>> {
        let Some(raw) = env.get(HEALTH_PROBES) else { return Ok(Self::default()) };
        // The value is not quoted: a URL given by mistake with a query may carry a token.
        let invalid = |problem: String| {
            vec![ConfigError::other(
                HEALTH_PROBES,
                format!(
                    "is not valid; expected ';'-separated <vault>[/<name or prefix*>]=<https URL> entries: {problem}"
                ),
            )]
        };
        let mut probes = Vec::new();
        for (index, entry) in raw.split(';').map(str::trim).filter(|e| !e.is_empty()).enumerate() {
            let position = index + 1;
            let Some((scope, url)) = entry.split_once('=') else {
                return Err(invalid(format!("entry {position} has no '='")));
            };
            let (vault, names) = match scope.trim().split_once('/') {
                Some((vault, names)) => (vault.trim(), names.trim()),
                None => (scope.trim(), ""),
            };
            if !is_object_name(vault) {
                return Err(invalid(format!("entry {position}: '{vault}' is not a vault name")));
            }
            let names = NameFilter::parse(names)
                .map_err(|bad| invalid(format!("entry {position}: '{bad}' is not a secret name or name prefix*")))?;
            let url = match Url::parse(url.trim()) {
                Ok(url)
                    if url.scheme() == "https"
                        && url.host().is_some()
                        && url.query().is_none()
                        && url.fragment().is_none()
                        && url.username().is_empty()
                        && url.password().is_none() =>
                {
                    url
                }
                _ => {
                    return Err(invalid(format!(
                        "entry {position}: the probe must be an https URL without query, fragment or credentials"
                    )));
                }
            };
            probes.push(HealthProbe { vault: vault.to_ascii_lowercase(), names, url });
        }
        let secret = env.get(HEALTH_PROBE_SECRET);
        match &secret {
            Some(secret) if secret.len() >= MIN_SECRET_LEN => {}
            // Secret values are never quoted.
            Some(_) => {
                return Err(vec![ConfigError::other(
                    HEALTH_PROBE_SECRET,
                    format!("is too short: the probes' signing secret needs at least {MIN_SECRET_LEN} characters"),
                )]);
            }
            None => {
                return Err(vec![ConfigError::missing(
                    HEALTH_PROBE_SECRET,
                    format!(
                        "the signing secret (at least {MIN_SECRET_LEN} characters) of the {HEALTH_PROBES} requests"
                    ),
                )]);
            }
        }
        Ok(Self { probes, secret: secret.map(SecretString::new) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::lookup;

    fn parse(pairs: &[(&str, &str)]) -> Result<HealthProbes, Vec<ConfigError>> {
        let lookup = lookup(pairs);
        HealthProbes::from_env(&Env::new(&lookup))
    }

    #[test]
    fn probes_are_bound_per_vault_and_name_and_need_a_signing_secret() {
        assert_eq!(parse(&[]).unwrap(), HealthProbes::default());
        let probes = parse(&[
            (HEALTH_PROBES, "kv-prod/app-*=https://shop.example.com/healthz ; kv-prod=https://ops.example.com/Probe"),
            (HEALTH_PROBE_SECRET, "0123456789abcdef"),
        ])
        .unwrap();
        assert_eq!(probes.for_secret("KV-PROD", "app-web").unwrap().url.as_str(), "https://shop.example.com/healthz");
        assert_eq!(probes.for_secret("kv-prod", "db").unwrap().url.path(), "/Probe", "the path keeps its case");
        assert!(probes.for_secret("kv-dev", "app-web").is_none());

        let missing = parse(&[(HEALTH_PROBES, "kv=https://p.example")]).unwrap_err();
        assert_eq!(missing[0].variable(), HEALTH_PROBE_SECRET);
        let short =
            parse(&[(HEALTH_PROBES, "kv=https://p.example"), (HEALTH_PROBE_SECRET, "short-secret")]).unwrap_err();
        assert!(!short[0].to_string().contains("short-secret"), "the secret is never quoted: {}", short[0]);
        for bad in [
            "kv=http://p.example",
            "kv=https://p.example/?token=x",
            "kv=https://u:p@p.example",
            "kv one=https://p.example",
        ] {
            let errors = parse(&[(HEALTH_PROBES, bad), (HEALTH_PROBE_SECRET, "0123456789abcdef")]).unwrap_err();
            assert_eq!(errors[0].variable(), HEALTH_PROBES, "{bad}");
            assert!(!errors[0].to_string().contains("token=x"), "no query in an error: {}", errors[0]);
        }
    }
}
