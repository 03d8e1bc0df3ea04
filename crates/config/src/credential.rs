//! Which Azure credential keyturn authenticates with. There is no fallback chain: the configured kind is the
//! only one tried, so a deployment never silently runs as an identity nobody chose.

use std::fmt;
use std::path::PathBuf;

use crate::{ConfigError, Env, SecretString};

pub const CREDENTIAL: &str = "KEYTURN_CREDENTIAL";
pub const CLIENT_ID: &str = "AZURE_CLIENT_ID";
pub const TENANT_ID: &str = "AZURE_TENANT_ID";
pub const CLIENT_SECRET: &str = "AZURE_CLIENT_SECRET";
pub const FEDERATED_TOKEN_FILE: &str = "AZURE_FEDERATED_TOKEN_FILE";

const KINDS: &str = "one of managed-identity, workload-identity, client-secret, developer-tools";

/// The credential, with what each kind needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSettings {
    /// The managed identity of the function app: system-assigned, or user-assigned when a client id is given.
    ManagedIdentity { client_id: Option<String> },
    /// A federated token file (Kubernetes workload identity).
    WorkloadIdentity { tenant_id: String, client_id: String, token_file: PathBuf },
    /// A service principal with a client secret.
    ClientSecret { tenant_id: String, client_id: String, secret: SecretString },
    /// The signed-in Azure CLI (`az login`): local use only.
    DeveloperTools,
}

impl CredentialSettings {
    /// The configuration value naming this kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::ManagedIdentity { .. } => "managed-identity",
            Self::WorkloadIdentity { .. } => "workload-identity",
            Self::ClientSecret { .. } => "client-secret",
            Self::DeveloperTools => "developer-tools",
        }
    }

    pub(crate) fn from_env(env: &Env<'_>) -> Result<Self, Vec<ConfigError>> {
        let Some(kind) = env.get(CREDENTIAL) else {
            return Err(vec![ConfigError::missing(CREDENTIAL, KINDS)]);
        };
        let mut errors = Vec::new();
        let mut required = |name: &'static str, what: &str| {
            let value = env.get(name);
            if value.is_none() {
                errors.push(ConfigError::missing(name, format!("{what} ({CREDENTIAL}={kind})")));
            }
            value.unwrap_or_default()
        };
        let settings = match kind.as_str() {
            "managed-identity" => Self::ManagedIdentity { client_id: env.get(CLIENT_ID) },
            "workload-identity" => Self::WorkloadIdentity {
                tenant_id: required(TENANT_ID, "the tenant id"),
                client_id: required(CLIENT_ID, "the client id of the federated identity"),
                token_file: PathBuf::from(required(FEDERATED_TOKEN_FILE, "the path of the federated token file")),
            },
            "client-secret" => Self::ClientSecret {
                tenant_id: required(TENANT_ID, "the tenant id"),
                client_id: required(CLIENT_ID, "the client id of the service principal"),
                secret: SecretString::new(required(CLIENT_SECRET, "the service principal's client secret")),
            },
            "developer-tools" => Self::DeveloperTools,
            _ => return Err(vec![ConfigError::invalid(CREDENTIAL, &kind, KINDS)]),
        };
        if errors.is_empty() { Ok(settings) } else { Err(errors) }
    }
}

/// A one-line description for the startup log: which identity, never a secret.
impl fmt::Display for CredentialSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ManagedIdentity { client_id: None } => f.write_str("managed-identity (system-assigned)"),
            Self::ManagedIdentity { client_id: Some(id) } => {
                write!(f, "managed-identity (user-assigned, client id {id})")
            }
            Self::WorkloadIdentity { tenant_id, client_id, token_file } => write!(
                f,
                "workload-identity (tenant {tenant_id}, client id {client_id}, token file {})",
                token_file.display()
            ),
            Self::ClientSecret { tenant_id, client_id, .. } => {
                write!(f, "client-secret (tenant {tenant_id}, client id {client_id})")
            }
            Self::DeveloperTools => f.write_str("developer-tools (Azure CLI)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::lookup;

    fn parse(pairs: &[(&str, &str)]) -> Result<CredentialSettings, Vec<ConfigError>> {
        let lookup = lookup(pairs);
        CredentialSettings::from_env(&Env::new(&lookup))
    }

    #[test]
    fn each_kind_takes_what_it_needs() {
        assert_eq!(
            parse(&[("KEYTURN_CREDENTIAL", "managed-identity")]).unwrap(),
            CredentialSettings::ManagedIdentity { client_id: None }
        );
        let user_assigned = parse(&[("KEYTURN_CREDENTIAL", "managed-identity"), ("AZURE_CLIENT_ID", "abc")]).unwrap();
        assert_eq!(user_assigned.to_string(), "managed-identity (user-assigned, client id abc)");
        let workload = parse(&[
            ("KEYTURN_CREDENTIAL", "workload-identity"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_FEDERATED_TOKEN_FILE", "/var/run/token"),
        ])
        .unwrap();
        assert_eq!(workload.kind(), "workload-identity");
        assert_eq!(parse(&[("KEYTURN_CREDENTIAL", "developer-tools")]).unwrap(), CredentialSettings::DeveloperTools);
    }

    #[test]
    fn a_client_secret_never_appears_in_the_description_or_debug_output() {
        let settings = parse(&[
            ("KEYTURN_CREDENTIAL", "client-secret"),
            ("AZURE_CLIENT_ID", "app"),
            ("AZURE_TENANT_ID", "tenant"),
            ("AZURE_CLIENT_SECRET", "s3cr3t-value"),
        ])
        .unwrap();
        assert_eq!(settings.to_string(), "client-secret (tenant tenant, client id app)");
        assert!(!format!("{settings:?}").contains("s3cr3t"));
        let CredentialSettings::ClientSecret { secret, .. } = settings else { panic!("wrong kind") };
        assert_eq!(secret.expose(), "s3cr3t-value");
    }

    #[test]
    fn missing_pieces_are_each_named() {
        let errors = parse(&[("KEYTURN_CREDENTIAL", "client-secret"), ("AZURE_CLIENT_ID", "app")]).unwrap_err();
        let variables: Vec<&str> = errors.iter().map(ConfigError::variable).collect();
        assert_eq!(variables, ["AZURE_TENANT_ID", "AZURE_CLIENT_SECRET"]);
        assert!(errors[1].to_string().contains("(KEYTURN_CREDENTIAL=client-secret)"));

        let errors = parse(&[]).unwrap_err();
        assert_eq!(errors[0].to_string(), format!("KEYTURN_CREDENTIAL: is not set; expected {KINDS}"));
        // No silent default and no guessing from other variables.
        let errors = parse(&[("KEYTURN_CREDENTIAL", "default"), ("AZURE_CLIENT_SECRET", "x")]).unwrap_err();
        assert_eq!(errors[0].variable(), "KEYTURN_CREDENTIAL");
    }
}
