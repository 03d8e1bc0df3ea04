//! The Azure credential, built from `KEYTURN_CREDENTIAL` and nothing else: exactly one kind, no fallback
//! chain, and the choice logged once at start.

use std::sync::Arc;

use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::ClientOptions;
use azure_identity::{
    AzureCliCredential, ClientAssertionCredentialOptions, ClientSecretCredential, ClientSecretCredentialOptions,
    ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId, WorkloadIdentityCredential,
    WorkloadIdentityCredentialOptions,
};
use keyturn_config::CredentialSettings;

use crate::VaultError;

/// Builds the configured credential; its own token requests use `client_options` (same transport, same
/// bounded retries as the vault calls).
///
/// `developer-tools` is the Azure CLI alone: the SDK's `DeveloperToolsCredential` would fall back to the
/// Azure Developer CLI, a chain this module exists to avoid.
pub fn build_credential(
    settings: &CredentialSettings,
    client_options: ClientOptions,
) -> Result<Arc<dyn TokenCredential>, VaultError> {
    let setup = |e: azure_core::Error| VaultError::Setup(format!("credential {}: {e}", settings.kind()));
    let credential: Arc<dyn TokenCredential> = match settings {
        CredentialSettings::ManagedIdentity { client_id } => {
            ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                user_assigned_id: client_id.clone().map(UserAssignedId::ClientId),
                client_options,
            }))
            .map_err(setup)?
        }
        CredentialSettings::WorkloadIdentity { tenant_id, client_id, token_file } => {
            WorkloadIdentityCredential::new(Some(WorkloadIdentityCredentialOptions {
                credential_options: ClientAssertionCredentialOptions { client_options },
                client_id: Some(client_id.clone()),
                tenant_id: Some(tenant_id.clone()),
                token_file_path: Some(token_file.clone()),
            }))
            .map_err(setup)?
        }
        CredentialSettings::ClientSecret { tenant_id, client_id, secret } => ClientSecretCredential::new(
            tenant_id,
            client_id.clone(),
            Secret::new(secret.expose().to_owned()),
            Some(ClientSecretCredentialOptions { client_options }),
        )
        .map_err(setup)?,
        CredentialSettings::DeveloperTools => AzureCliCredential::new(None).map_err(setup)?,
    };
    tracing::info!(credential = %settings, "azure credential chosen by KEYTURN_CREDENTIAL");
    Ok(credential)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::Mutex;

    /// Collects log output in memory.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn build_logged(settings: &CredentialSettings) -> (Result<Arc<dyn TokenCredential>, VaultError>, String) {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
        let result =
            tracing::subscriber::with_default(subscriber, || build_credential(settings, ClientOptions::default()));
        let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        (result, log)
    }

    #[test]
    fn the_chosen_credential_is_logged_once_without_its_secret() {
        let settings = CredentialSettings::ClientSecret {
            tenant_id: "72f988bf-86f1-41af-91ab-2d7cd011db47".into(),
            client_id: "app-id".into(),
            secret: keyturn_config::SecretString::new("very-secret-value".into()),
        };
        let (result, log) = build_logged(&settings);
        assert!(result.is_ok());
        let lines: Vec<&str> = log.lines().filter(|l| l.contains("KEYTURN_CREDENTIAL")).collect();
        assert_eq!(lines.len(), 1, "{log}");
        assert!(
            lines[0]
                .contains("credential=client-secret (tenant 72f988bf-86f1-41af-91ab-2d7cd011db47, client id app-id)"),
            "{log}"
        );
        assert!(!log.contains("very-secret-value"), "{log}");
    }

    #[test]
    fn developer_tools_means_the_azure_cli_alone() {
        let (result, log) = build_logged(&CredentialSettings::DeveloperTools);
        let credential = result.unwrap();
        assert!(format!("{credential:?}").contains("AzureCliCredential"), "{credential:?}");
        assert!(log.contains("credential=developer-tools (Azure CLI)"), "{log}");
    }

    #[test]
    fn a_credential_the_sdk_refuses_is_a_setup_error_naming_the_kind() {
        let settings = CredentialSettings::ClientSecret {
            tenant_id: "not a tenant!".into(),
            client_id: "app".into(),
            secret: keyturn_config::SecretString::new("s".into()),
        };
        let (result, log) = build_logged(&settings);
        let error = result.err().unwrap();
        assert!(matches!(error, VaultError::Setup(_)));
        assert!(error.to_string().starts_with("setting up vault access: credential client-secret:"), "{error}");
        assert!(!log.contains("KEYTURN_CREDENTIAL"), "a failed build must not log a choice: {log}");
    }
}
