//! Settings of the `entra-app-secret` provider: where Microsoft Graph is, and which Entra ID applications the
//! secrets of which vault (and names) may rotate the client secrets of.
//!
//! `KEYTURN_ENTRA_APPLICATIONS` has the grammar of every binding ([`crate::bindings`]):
//! `<vault>[/<name>|<prefix>*]=<application object id>[,<id>...]`. A secret's `ProviderAddress` may only pick
//! among the applications bound to its vault and name; unset, the provider is not registered at all.

use url::Url;

use crate::bindings::{Binding, TargetKind};
use crate::{ConfigError, Env};

pub const ENTRA_APPLICATIONS: &str = "KEYTURN_ENTRA_APPLICATIONS";
pub const GRAPH_ENDPOINT: &str = "KEYTURN_GRAPH_ENDPOINT";
/// Microsoft Graph in the public cloud.
pub const DEFAULT_GRAPH_ENDPOINT: &str = "https://graph.microsoft.com";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntraSettings {
    /// Where Graph calls go (a national cloud's Graph, or the local stack's emulator).
    pub graph_endpoint: Url,
    /// Which applications (object ids, lowercase) the secrets of which vault and names may rotate. Empty: the
    /// `entra-app-secret` provider is not registered.
    pub applications: Vec<Binding>,
}

impl EntraSettings {
    /// Whether the secret `vault/name` may rotate the client secrets of the application `object_id`.
    pub fn allows(&self, vault: &str, name: &str, object_id: &str) -> bool {
        Binding::allows(&self.applications, vault, name, object_id)
    }

    pub(crate) fn from_env(env: &Env<'_>) -> Result<Self, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let graph_endpoint = env
            .endpoint(GRAPH_ENDPOINT, DEFAULT_GRAPH_ENDPOINT, "Microsoft Graph")
            .map_err(|error| errors.push(error))
            .ok();
        let kind = TargetKind {
            placeholder: "<application object id>",
            description: "application object ids (GUIDs such as 00000000-0000-0000-0000-000000000000; the \
                          app registration's Object ID, not its Application (client) ID)",
            is_valid: is_guid,
        };
        let applications = match env.get(ENTRA_APPLICATIONS).map(|raw| (Binding::parse(&raw, kind), raw)) {
            None => Vec::new(),
            Some((Ok(bindings), _)) => bindings,
            Some((Err(problem), raw)) => {
                errors.push(ConfigError::invalid(
                    ENTRA_APPLICATIONS,
                    &raw,
                    format!(
                        "';'-separated <vault>[/<name or prefix*>]=<application object id>[,<id>] entries: {problem}"
                    ),
                ));
                Vec::new()
            }
        };
        match graph_endpoint {
            Some(graph_endpoint) if errors.is_empty() => Ok(Self { graph_endpoint, applications }),
            _ => Err(errors),
        }
    }
}

/// Whether `value` is a GUID in its 8-4-4-4-12 hex form (how Graph spells object ids).
pub fn is_guid(value: &str) -> bool {
    let groups: Vec<&str> = value.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::lookup;

    const APP: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
    const OTHER: &str = "11111111-2222-3333-4444-555555555555";

    #[test]
    fn applications_are_bound_per_vault_and_name_and_graph_defaults_to_the_public_cloud() {
        let raw = format!("kv-one/app-secret={APP} ; kv-two/ci-*={}", OTHER.to_uppercase());
        let settings = EntraSettings::from_env(&Env::new(&lookup(&[("KEYTURN_ENTRA_APPLICATIONS", &raw)]))).unwrap();
        assert_eq!(settings.graph_endpoint.as_str(), "https://graph.microsoft.com/");
        assert!(settings.allows("KV-one", "app-secret", &APP.to_uppercase()));
        assert!(!settings.allows("kv-one", "other-secret", APP), "a name the entry does not bind");
        assert!(!settings.allows("kv-one", "app-secret", OTHER), "an application bound to another vault");
        assert!(settings.allows("kv-two", "ci-deploy", OTHER));
        assert!(EntraSettings::from_env(&Env::new(&lookup(&[]))).unwrap().applications.is_empty());

        let local = lookup(&[("KEYTURN_GRAPH_ENDPOINT", "https://127.0.0.1:8445")]);
        assert_eq!(
            EntraSettings::from_env(&Env::new(&local)).unwrap().graph_endpoint.as_str(),
            "https://127.0.0.1:8445/"
        );
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (variable, bad) in [
            ("KEYTURN_ENTRA_APPLICATIONS", "kv-one=my-app"),
            ("KEYTURN_ENTRA_APPLICATIONS", APP),
            ("KEYTURN_ENTRA_APPLICATIONS", "kv-one=0f1e2d3c4b5a69788796a5b4c3d2e1f0"),
            ("KEYTURN_GRAPH_ENDPOINT", "http://graph.microsoft.com"),
            ("KEYTURN_GRAPH_ENDPOINT", "https://graph.microsoft.com/v1.0"),
        ] {
            let errors = EntraSettings::from_env(&Env::new(&lookup(&[(variable, bad)]))).unwrap_err();
            assert_eq!(errors[0].variable(), variable, "{bad}");
        }
        let errors = EntraSettings::from_env(&Env::new(&lookup(&[("KEYTURN_ENTRA_APPLICATIONS", "kv-one=my-app")])))
            .unwrap_err();
        assert!(errors[0].to_string().contains("application object ids"), "{}", errors[0]);
    }
}
