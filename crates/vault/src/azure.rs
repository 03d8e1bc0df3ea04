//! [`AzureKeyVault`]: [`KeyVault`] over the official SDK clients, one set per allow-listed vault, built once.
//!
//! The allow-list is the map of clients itself: a vault outside it has no client, so there is nothing that
//! could send a request (or a token) to it.

use std::collections::HashMap;
use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use azure_core::http::{ClientOptions, RequestContent};
use azure_security_keyvault_certificates::models::{
    CertificatePolicyAction, CreateCertificateParameters as SdkCreateCertificate,
};
use azure_security_keyvault_certificates::{CertificateClient, CertificateClientOptions};
use azure_security_keyvault_keys::models::{Key as SdkKey, KeyRotationPolicyAction};
use azure_security_keyvault_keys::{KeyClient, KeyClientOptions};
use azure_security_keyvault_secrets::models::{
    Secret as SdkSecret, SecretAttributes as SdkSecretAttributes, SecretClientGetSecretOptions,
    SetSecretParameters as SdkSetSecret,
};
use azure_security_keyvault_secrets::{SecretClient, SecretClientOptions};
use futures::StreamExt;
use keyturn_config::{SecretString, Settings, VaultEntry, VaultList};

use crate::model::{
    CertificatePolicy, CertificateProperties, CertificateRenewal, KeyProperties, KeyRotationPolicy, NewSecretVersion,
    SecretProperties, SecretVersion, Tags,
};
use crate::ops::{KeyVault, VaultFuture};
use crate::pacer::{OperationClass, VaultPacing};
use crate::{VaultError, credential, http, time};

/// The SDK clients of one vault.
pub(crate) struct VaultClients {
    entry: VaultEntry,
    pub(crate) secrets: SecretClient,
    pub(crate) keys: KeyClient,
    pub(crate) certificates: CertificateClient,
}

/// Key Vault through the Azure SDK.
pub struct AzureKeyVault {
    vaults: HashMap<String, VaultClients>,
    /// The credential the clients were built with, for [`AzureKeyVault::warm_up`].
    credential: Arc<dyn TokenCredential>,
    /// Every request paced to the vault's published limit of its class (off: left to the service's 429s).
    pacing: VaultPacing,
}

impl std::fmt::Debug for AzureKeyVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.vaults.keys().collect();
        names.sort();
        f.debug_struct("AzureKeyVault").field("vaults", &names).field("pacing", &self.pacing).finish()
    }
}

impl AzureKeyVault {
    /// Builds the credential and the clients of every allow-listed vault from the settings.
    pub fn from_settings(settings: &Settings) -> Result<Self, VaultError> {
        let options = http::client_options(&settings.retry, settings.ca_file.as_deref())?;
        let credential = credential::build_credential(&settings.credential, options.clone())?;
        let pacing = VaultPacing::new(settings.retry.pacing_max_wait);
        Ok(Self::new(&settings.vaults, credential, options)?.with_pacing(pacing))
    }

    /// Paces this client's requests with `pacing` (shared with whoever else holds a clone of it).
    pub fn with_pacing(mut self, pacing: VaultPacing) -> Self {
        self.pacing = pacing;
        self
    }

    /// Waits for the turn of `operation` on `object` under its class's limit (see [`VaultPacing`]).
    pub(crate) async fn turn(
        &self,
        class: OperationClass,
        operation: &'static str,
        vault: &str,
        object: &str,
    ) -> Result<(), VaultError> {
        self.pacing.wait_for_turn(class, operation, vault, object).await
    }

    /// Builds the clients of every vault in `vaults`. Real vault hosts keep the SDK's challenge-resource
    /// check on; only loopback endpoints (explicitly configured) turn it off.
    pub fn new(
        vaults: &VaultList,
        credential: Arc<dyn TokenCredential>,
        options: ClientOptions,
    ) -> Result<Self, VaultError> {
        let mut built = HashMap::new();
        for entry in vaults.entries() {
            let url = entry.url().as_str();
            let verify = Some(entry.kind().verify_challenge_resource());
            let setup = |e: azure_core::Error| VaultError::Setup(format!("client for vault '{}': {e}", entry.name()));
            let secrets = SecretClient::new(
                url,
                credential.clone(),
                Some(SecretClientOptions {
                    client_options: options.clone(),
                    verify_challenge_resource: verify,
                    ..Default::default()
                }),
            )
            .map_err(setup)?;
            let keys = KeyClient::new(
                url,
                credential.clone(),
                Some(KeyClientOptions {
                    client_options: options.clone(),
                    verify_challenge_resource: verify,
                    ..Default::default()
                }),
            )
            .map_err(setup)?;
            let certificates = CertificateClient::new(
                url,
                credential.clone(),
                Some(CertificateClientOptions {
                    client_options: options.clone(),
                    verify_challenge_resource: verify,
                    ..Default::default()
                }),
            )
            .map_err(setup)?;
            tracing::info!(
                vault = entry.name(),
                url,
                verify_challenge_resource = entry.kind().verify_challenge_resource(),
                "vault allow-listed"
            );
            built.insert(entry.name().to_owned(), VaultClients { entry: entry.clone(), secrets, keys, certificates });
        }
        Ok(Self { vaults: built, credential, pacing: VaultPacing::default() })
    }

    /// The allow-listed vaults.
    pub(crate) fn entries(&self) -> impl Iterator<Item = &VaultEntry> {
        self.vaults.values().map(|clients| &clients.entry)
    }

    pub(crate) fn credential(&self) -> &dyn TokenCredential {
        self.credential.as_ref()
    }

    /// The clients of an allow-listed vault.
    pub(crate) fn vault_clients(&self, vault: &str) -> Result<&VaultClients, VaultError> {
        self.vaults.get(&vault.to_ascii_lowercase()).ok_or_else(|| VaultError::NotAllowed { vault: vault.to_owned() })
    }

    /// The clients of an allow-listed vault and the object's display name, after checking the object name.
    pub(crate) fn clients(&self, vault: &str, name: &str) -> Result<(&VaultClients, String), VaultError> {
        let clients = self.vault_clients(vault)?;
        // The SDK pastes names into the request path unescaped; a name Key Vault could not have produced
        // (`../`, `?`, `/`) is refused rather than sent.
        if !keyturn_config::vaults::is_object_name(name) {
            return Err(VaultError::InvalidName { name: name.to_owned() });
        }
        Ok((clients, format!("{}/{name}", clients.entry.name())))
    }

    /// [`AzureKeyVault::clients`] for one version of the object: the version is checked too, for the same
    /// reason (an event's `data.Version` goes into the request path), and the display name includes it.
    pub(crate) fn version_clients(
        &self,
        vault: &str,
        name: &str,
        version: &str,
    ) -> Result<(&VaultClients, String), VaultError> {
        let (clients, object) = self.clients(vault, name)?;
        if !keyturn_config::vaults::is_object_version(version) {
            return Err(VaultError::InvalidVersion { version: version.to_owned() });
        }
        Ok((clients, format!("{object}/{version}")))
    }
}

/// The version segment of an object id (`https://<vault>/<collection>/<name>/<version>`).
fn version_of(id: Option<&str>, operation: &'static str, object: &str) -> Result<String, VaultError> {
    id.and_then(|id| id.trim_end_matches('/').rsplit('/').next().map(str::to_owned))
        .filter(|v| !v.is_empty() && id.is_some_and(|id| id.trim_end_matches('/').matches('/').count() >= 5))
        .ok_or_else(|| VaultError::Unexpected {
            operation,
            object: object.to_owned(),
            message: format!("no versioned id in the response (id: {id:?})"),
        })
}

fn tags_of(tags: Option<HashMap<String, String>>) -> Tags {
    tags.unwrap_or_default().into_iter().collect()
}

fn secret_properties(
    secret: &SdkSecret,
    operation: &'static str,
    object: &str,
) -> Result<SecretProperties, VaultError> {
    let attributes = secret.attributes.clone().unwrap_or_default();
    Ok(SecretProperties {
        version: version_of(secret.id.as_deref(), operation, object)?,
        content_type: secret.content_type.clone(),
        tags: tags_of(secret.tags.clone()),
        enabled: attributes.enabled.unwrap_or(true),
        not_before: attributes.not_before.and_then(time::from_sdk),
        expires: attributes.expires.and_then(time::from_sdk),
    })
}

fn key_properties(key: SdkKey, operation: &'static str, object: &str) -> Result<KeyProperties, VaultError> {
    let attributes = key.attributes.unwrap_or_default();
    Ok(KeyProperties {
        version: version_of(key.key.as_ref().and_then(|k| k.kid.as_deref()), operation, object)?,
        tags: tags_of(key.tags),
        enabled: attributes.enabled.unwrap_or(true),
        expires: attributes.expires.and_then(time::from_sdk),
    })
}

impl KeyVault for AzureKeyVault {
    fn check_allowed(&self, vault: &str) -> Result<(), VaultError> {
        if self.vaults.contains_key(&vault.to_ascii_lowercase()) {
            Ok(())
        } else {
            Err(VaultError::NotAllowed { vault: vault.to_owned() })
        }
    }

    fn latest_secret<'a>(&'a self, vault: &'a str, name: &'a str) -> VaultFuture<'a, SecretVersion> {
        Box::pin(async move {
            const OP: &str = "get secret";
            let (clients, object) = self.clients(vault, name)?;
            let sdk = |e| VaultError::from_sdk(OP, &object, e);
            let options = SecretClientGetSecretOptions::default();
            self.turn(OperationClass::SecretOther, OP, vault, &object).await?;
            let mut secret =
                clients.secrets.get_secret(name, Some(options)).await.map_err(sdk)?.into_model().map_err(sdk)?;
            // Take the value out of the SDK model at once so that only the wiping wrapper holds it.
            let value = SecretString::new(secret.value.take().unwrap_or_default());
            Ok(SecretVersion { properties: secret_properties(&secret, OP, &object)?, value })
        })
    }

    fn set_secret<'a>(
        &'a self,
        vault: &'a str,
        name: &'a str,
        new: NewSecretVersion,
    ) -> VaultFuture<'a, SecretProperties> {
        Box::pin(async move {
            const OP: &str = "set secret";
            let (clients, object) = self.clients(vault, name)?;
            let sdk = |e| VaultError::from_sdk(OP, &object, e);
            let parameters = SdkSetSecret {
                // The SDK's model holds a plain String; it lives only until the request body is serialised.
                value: Some(new.value.expose().to_owned()),
                content_type: new.content_type,
                tags: Some(new.tags.into_iter().collect()),
                secret_attributes: Some(SdkSecretAttributes {
                    enabled: Some(true),
                    not_before: new.not_before.and_then(time::to_sdk),
                    expires: new.expires.and_then(time::to_sdk),
                    ..Default::default()
                }),
            };
            let body: RequestContent<SdkSetSecret> = parameters.try_into().map_err(sdk)?;
            self.turn(OperationClass::SecretCreate, OP, vault, &object).await?;
            let mut secret =
                clients.secrets.set_secret(name, body, None).await.map_err(sdk)?.into_model().map_err(sdk)?;
            // The response echoes the value; drop it into the wiping wrapper rather than keep it around.
            drop(secret.value.take().map(SecretString::new));
            secret_properties(&secret, OP, &object)
        })
    }

    fn latest_key<'a>(&'a self, vault: &'a str, name: &'a str) -> VaultFuture<'a, KeyProperties> {
        Box::pin(async move {
            const OP: &str = "get key";
            let (clients, object) = self.clients(vault, name)?;
            let sdk = |e| VaultError::from_sdk(OP, &object, e);
            self.turn(OperationClass::KeyOther, OP, vault, &object).await?;
            let key = clients.keys.get_key(name, None).await.map_err(sdk)?.into_model().map_err(sdk)?;
            key_properties(key, OP, &object)
        })
    }

    fn key_rotation_policy<'a>(&'a self, vault: &'a str, name: &'a str) -> VaultFuture<'a, KeyRotationPolicy> {
        Box::pin(async move {
            const OP: &str = "get key rotation policy";
            let (clients, object) = self.clients(vault, name)?;
            let sdk = |e| VaultError::from_sdk(OP, &object, e);
            self.turn(OperationClass::KeyOther, OP, vault, &object).await?;
            let policy =
                clients.keys.get_key_rotation_policy(name, None).await.map_err(sdk)?.into_model().map_err(sdk)?;
            let rotate = policy.lifetime_actions.unwrap_or_default().into_iter().find(|action| {
                action.action.as_ref().and_then(|a| a.type_prop) == Some(KeyRotationPolicyAction::Rotate)
            });
            let trigger = rotate.as_ref().and_then(|a| a.trigger.as_ref()).and_then(|t| {
                match (&t.time_after_create, &t.time_before_expiry) {
                    (Some(after), _) => Some(format!("timeAfterCreate {after}")),
                    (None, Some(before)) => Some(format!("timeBeforeExpiry {before}")),
                    (None, None) => None,
                }
            });
            Ok(KeyRotationPolicy { rotates: rotate.is_some(), trigger })
        })
    }

    fn rotate_key<'a>(&'a self, vault: &'a str, name: &'a str) -> VaultFuture<'a, KeyProperties> {
        Box::pin(async move {
            const OP: &str = "rotate key";
            let (clients, object) = self.clients(vault, name)?;
            let sdk = |e| VaultError::from_sdk(OP, &object, e);
            self.turn(OperationClass::KeyCreate, OP, vault, &object).await?;
            let key = clients.keys.rotate_key(name, None).await.map_err(sdk)?.into_model().map_err(sdk)?;
            key_properties(key, OP, &object)
        })
    }

    fn latest_certificate<'a>(&'a self, vault: &'a str, name: &'a str) -> VaultFuture<'a, CertificateProperties> {
        Box::pin(async move {
            const OP: &str = "get certificate";
            let (clients, object) = self.clients(vault, name)?;
            let sdk = |e| VaultError::from_sdk(OP, &object, e);
            self.turn(OperationClass::SecretOther, OP, vault, &object).await?;
            let certificate =
                clients.certificates.get_certificate(name, None).await.map_err(sdk)?.into_model().map_err(sdk)?;
            let attributes = certificate.attributes.unwrap_or_default();
            Ok(CertificateProperties {
                version: version_of(certificate.id.as_deref(), OP, &object)?,
                tags: tags_of(certificate.tags),
                enabled: attributes.enabled.unwrap_or(true),
                expires: attributes.expires.and_then(time::from_sdk),
            })
        })
    }

    fn certificate_policy<'a>(&'a self, vault: &'a str, name: &'a str) -> VaultFuture<'a, CertificatePolicy> {
        Box::pin(async move {
            const OP: &str = "get certificate policy";
            let (clients, object) = self.clients(vault, name)?;
            let sdk = |e| VaultError::from_sdk(OP, &object, e);
            self.turn(OperationClass::SecretOther, OP, vault, &object).await?;
            let policy = clients
                .certificates
                .get_certificate_policy(name, None)
                .await
                .map_err(sdk)?
                .into_model()
                .map_err(sdk)?;
            let auto_renew = policy.lifetime_actions.unwrap_or_default().iter().any(|action| {
                action.action.as_ref().and_then(|a| a.action_type) == Some(CertificatePolicyAction::AutoRenew)
            });
            Ok(CertificatePolicy { issuer: policy.issuer_parameters.and_then(|i| i.name), auto_renew })
        })
    }

    fn issuer_provider<'a>(&'a self, vault: &'a str, issuer: &'a str) -> VaultFuture<'a, Option<String>> {
        Box::pin(async move {
            const OP: &str = "get certificate issuer";
            let (clients, object) = self.clients(vault, issuer)?;
            let sdk = |e| VaultError::from_sdk(OP, &object, e);
            self.turn(OperationClass::SecretOther, OP, vault, &object).await?;
            let issuer = clients.certificates.get_issuer(issuer, None).await.map_err(sdk)?.into_model().map_err(sdk)?;
            Ok(issuer.provider)
        })
    }

    fn renew_certificate<'a>(&'a self, vault: &'a str, name: &'a str) -> VaultFuture<'a, CertificateRenewal> {
        Box::pin(async move {
            const OP: &str = "create certificate";
            let (clients, object) = self.clients(vault, name)?;
            let sdk = |e| VaultError::from_sdk(OP, &object, e);
            // Empty parameters: a new version under the certificate's existing policy.
            let body: RequestContent<SdkCreateCertificate> = SdkCreateCertificate::default().try_into().map_err(sdk)?;
            // Issuing a certificate creates its key: it counts against the vault's key-create limit.
            self.turn(OperationClass::KeyCreate, OP, vault, &object).await?;
            let mut poller = clients.certificates.begin_create_certificate(name, body, None).map_err(sdk)?;
            // Only the first answer is awaited: Key Vault has accepted the operation then, and issuance by a
            // CA can take far longer than an invocation may. The new version raises its own event.
            let first = poller.next().await.ok_or_else(|| VaultError::Unexpected {
                operation: OP,
                object: object.clone(),
                message: "no response to the create request".to_owned(),
            })?;
            let operation = first.map_err(sdk)?.into_model().map_err(sdk)?;
            if let Some(error) = operation.error {
                return Err(VaultError::Unexpected {
                    operation: OP,
                    object: object.clone(),
                    message: format!(
                        "the operation failed: {} {}",
                        error.code.unwrap_or_default(),
                        error.message.unwrap_or_default()
                    ),
                });
            }
            Ok(CertificateRenewal { status: operation.status.unwrap_or_else(|| "unknown".to_owned()) })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_come_from_versioned_ids_only() {
        assert_eq!(version_of(Some("https://kv.vault.azure.net/secrets/db/abc123"), "op", "kv/db").unwrap(), "abc123");
        assert_eq!(version_of(Some("https://127.0.0.1:8443/keys/k/v1/"), "op", "kv/k").unwrap(), "v1");
        for id in [None, Some("https://kv.vault.azure.net/secrets/db"), Some("")] {
            let error = version_of(id, "op", "kv/db").unwrap_err();
            assert!(error.to_string().contains("no versioned id"), "{error}");
        }
    }
}

#[cfg(test)]
mod allow_list_tests {
    use super::*;
    use azure_core::http::{AsyncRawResponse, HttpClient, Request, Transport};
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A transport that counts what reaches it and fails every request.
    #[derive(Debug, Default)]
    struct CountingTransport(AtomicUsize);

    impl HttpClient for CountingTransport {
        // The `#[async_trait]` expansion of the trait's one method, written out.
        fn execute_request<'life0, 'life1, 'async_trait>(
            &'life0 self,
            _request: &'life1 Request,
        ) -> Pin<Box<dyn Future<Output = azure_core::Result<AsyncRawResponse>> + Send + 'async_trait>>
        where
            'life0: 'async_trait,
            'life1: 'async_trait,
            Self: 'async_trait,
        {
            self.0.fetch_add(1, Ordering::SeqCst);
            Box::pin(async {
                Err(azure_core::Error::with_message(azure_core::error::ErrorKind::Connection, "counted"))
            })
        }
    }

    fn vault_with_counter() -> (AzureKeyVault, Arc<CountingTransport>) {
        let transport = Arc::new(CountingTransport::default());
        let options = ClientOptions {
            transport: Some(Transport::new(transport.clone())),
            retry: azure_core::http::RetryOptions::none(),
            ..ClientOptions::default()
        };
        let vaults = VaultList::parse("KEYTURN_VAULTS", "contoso,local=https://127.0.0.1:9").unwrap();
        let credential = azure_identity::AzureCliCredential::new(None).unwrap();
        (AzureKeyVault::new(&vaults, credential, options).unwrap(), transport)
    }

    #[tokio::test]
    async fn a_vault_outside_the_list_is_refused_before_anything_is_sent() {
        let (vault, transport) = vault_with_counter();
        assert!(vault.check_allowed("CONTOSO").is_ok());
        assert!(matches!(vault.check_allowed("fabrikam"), Err(VaultError::NotAllowed { .. })));
        let error = vault.latest_secret("fabrikam", "db-password").await.unwrap_err();
        assert!(matches!(&error, VaultError::NotAllowed { vault } if vault == "fabrikam"), "{error}");
        assert!(!error.is_retryable());
        let error = vault.rotate_key("contoso.evil.com", "k").await.unwrap_err();
        assert!(matches!(error, VaultError::NotAllowed { .. }));
        let error = vault.latest_certificate("contoso", "../keys/k").await.unwrap_err();
        assert!(matches!(error, VaultError::InvalidName { .. }), "{error}");
        assert_eq!(transport.0.load(Ordering::SeqCst), 0, "a refused call reached the transport");
    }

    #[tokio::test]
    async fn a_version_key_vault_could_not_have_issued_is_refused_before_anything_is_sent() {
        use crate::{Collection, VersionUpdate, Versions};
        let (vault, transport) = vault_with_counter();
        for forged in [
            "v1",
            "../../keys/signing-key",
            "0123456789ABCDEF0123456789ABCDEF",
            "0123456789abcdef0123456789abcdef?api-version=1",
        ] {
            let error = vault.version_properties("contoso", Collection::Secrets, "db", forged).await.unwrap_err();
            assert!(matches!(&error, VaultError::InvalidVersion { .. }), "{forged}: {error}");
            assert!(!error.is_retryable());
            let update = VersionUpdate { enabled: Some(false), tags: None };
            let error = vault.update_version("contoso", Collection::Keys, "k", forged, update).await.unwrap_err();
            assert!(matches!(&error, VaultError::InvalidVersion { .. }), "{forged}: {error}");
            assert!(vault.secret_version("contoso", "db", forged).await.is_err());
        }
        let long = "f".repeat(500);
        let error = vault.secret_version("contoso", "db", &long).await.unwrap_err();
        assert!(error.to_string().len() < 200, "an event's text is shown cut short: {error}");
        assert_eq!(transport.0.load(Ordering::SeqCst), 0, "a refused call reached the transport");
        // A version of Key Vault's form goes through.
        let error = vault.secret_version("contoso", "db", "0123456789abcdef0123456789abcdef").await.unwrap_err();
        assert!(matches!(error, VaultError::Transport { .. }), "{error}");
    }

    #[tokio::test]
    async fn an_allowed_vault_does_reach_the_transport() {
        // The other half of the test above: the counter does count, so its zero means something.
        let (vault, transport) = vault_with_counter();
        let error = vault.latest_secret("contoso", "db-password").await.unwrap_err();
        assert!(matches!(error, VaultError::Transport { .. }), "{error}");
        assert!(error.is_retryable());
        assert_eq!(transport.0.load(Ordering::SeqCst), 1);
    }

    fn new_version() -> NewSecretVersion {
        NewSecretVersion {
            value: SecretString::new("not-a-real-value".to_owned()),
            content_type: None,
            tags: Tags::new(),
            not_before: None,
            expires: None,
        }
    }

    /// 40 rotations of one vault at once, each willing to wait 1 s for its turn under the 300-per-10-s create
    /// limit: the ones whose turn falls within the second are sent, paced; the rest are refused at once as
    /// retryable `paced` errors that never reach the vault. Another vault has its own schedule.
    #[tokio::test(start_paused = true)]
    async fn secret_creates_are_paced_per_vault_and_a_turn_too_far_away_is_left_for_a_later_delivery() {
        let (vault, transport) = vault_with_counter();
        let vault = vault.with_pacing(VaultPacing::new(std::time::Duration::from_secs(1)));
        let started = tokio::time::Instant::now();
        let results = futures::future::join_all((0..40).map(|i| {
            let vault = &vault;
            async move { vault.set_secret("contoso", &format!("s{i}"), new_version()).await }
        }))
        .await;
        let paced: Vec<&VaultError> =
            results.iter().filter_map(|r| r.as_ref().err()).filter(|e| matches!(e, VaultError::Paced { .. })).collect();
        let sent = transport.0.load(Ordering::SeqCst);
        assert_eq!(sent + paced.len(), 40, "every create was either sent or paced");
        // 294 per 10 s is one every 34 ms, after a burst of 2: about 31 turns fall within the second.
        assert!((29..=32).contains(&sent), "{sent} creates sent within the 1 s wait");
        assert!(paced.iter().all(|e| e.is_retryable()));
        let message = paced[0].to_string();
        assert!(message.contains("contoso/s") && message.contains("paced, nothing sent"), "{message}");
        assert!(started.elapsed() <= std::time::Duration::from_secs(1), "no one waited past the limit");

        let other = vault.set_secret("local", "s0", new_version()).await.unwrap_err();
        assert!(matches!(other, VaultError::Transport { .. }), "another vault is not held back: {other}");
    }

    /// Counted from the event's arrival, the time already spent is no longer there to wait: an invocation
    /// that arrived 0.5 s ago may wait 0.5 s of its 1 s, so only about half as many turns are taken.
    #[tokio::test(start_paused = true)]
    async fn the_wait_counts_from_the_start_the_caller_names() {
        fn half_a_second_ago() -> Option<tokio::time::Instant> {
            Some(tokio::time::Instant::now() - std::time::Duration::from_millis(500))
        }
        let (vault, transport) = vault_with_counter();
        let pacing = VaultPacing::counted_from(std::time::Duration::from_secs(1), half_a_second_ago);
        let vault = vault.with_pacing(pacing);
        let results = futures::future::join_all((0..40).map(|i| {
            let vault = &vault;
            async move { vault.set_secret("contoso", &format!("s{i}"), new_version()).await }
        }))
        .await;
        let paced = results.iter().filter(|r| matches!(r, Err(VaultError::Paced { .. }))).count();
        let sent = transport.0.load(Ordering::SeqCst);
        assert_eq!(sent + paced, 40);
        assert!((14..=17).contains(&sent), "{sent} creates sent within the 0.5 s left");
    }

    #[tokio::test]
    async fn pacing_off_sends_every_create_at_once() {
        let (vault, transport) = vault_with_counter();
        let vault = vault.with_pacing(VaultPacing::new(std::time::Duration::ZERO));
        let results = futures::future::join_all((0..40).map(|i| {
            let vault = &vault;
            async move { vault.set_secret("contoso", &format!("s{i}"), new_version()).await }
        }))
        .await;
        assert!(results.iter().all(|r| matches!(r, Err(VaultError::Transport { .. }))));
        assert_eq!(transport.0.load(Ordering::SeqCst), 40);
    }
}
