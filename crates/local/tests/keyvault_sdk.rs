//! The official Azure SDK for Rust (secrets, keys, certificates, ManagedIdentityCredential) against the
//! emulator, unmodified but for the endpoint, the CA and challenge-resource verification.
//!
//! ManagedIdentityCredential reads IDENTITY_ENDPOINT/IDENTITY_HEADER from the real process environment, and
//! this workspace forbids the `unsafe` that `std::env::set_var` needs. So each test plays two roles: run
//! normally, it starts the emulator and re-runs itself (this test binary, this one test) as a child process
//! with the identity environment set; in the child (marked by KEYTURN_SDK_CHILD) it runs the SDK scenario.
//! The parent fails unless the child passes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use azure_core::http::{ClientOptions, RequestContent, RetryOptions, Transport};
use azure_identity::{ManagedIdentityCredential, ManagedIdentityCredentialOptions};
use futures::TryStreamExt;
use keyturn_local::keyvault::KeyVaultEmulator;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

const CHILD: &str = "KEYTURN_SDK_CHILD";

struct Ctx {
    vault_url: String,
    credential: Arc<ManagedIdentityCredential>,
    client_options: ClientOptions,
}

impl Ctx {
    fn from_env() -> Self {
        let vault_url = std::env::var("KEYTURN_VAULT_URL").unwrap();
        let pem = std::fs::read(std::env::var("KEYTURN_CA").unwrap()).unwrap();
        let http = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let client_options = ClientOptions {
            transport: Some(Transport::new(Arc::new(http))),
            retry: RetryOptions::none(),
            ..Default::default()
        };
        let credential = ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
            client_options: client_options.clone(),
            ..Default::default()
        }))
        .unwrap();
        Self { vault_url, credential, client_options }
    }
}

/// Runs `scenario` in a child process of this test binary with the emulator's identity environment.
async fn in_child<F, Fut>(test: &str, scenario: F)
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = ()>,
{
    if std::env::var(CHILD).as_deref() == Ok(test) {
        scenario(Ctx::from_env()).await;
        return;
    }
    let kv = KeyVaultEmulator::builder().vault("kv-sdk").start().await.unwrap();
    // A broad client of the emulator's protocol, as the system-assigned identity: its role, visibly.
    kv.grant_system_identity("Key Vault Administrator").unwrap();
    let child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, test)
        .envs(kv.identity_env().vars())
        .env("KEYTURN_VAULT_URL", kv.vault_url("kv-sdk").unwrap())
        .env("KEYTURN_CA", kv.ca_pem_path())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(180), child)
        .await
        .expect("the SDK scenario finished within 180 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "SDK scenario failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    kv.shutdown().await;
}

fn status_of(error: &azure_core::Error) -> Option<u16> {
    match error.kind() {
        azure_core::error::ErrorKind::HttpResponse { status, .. } => Some(u16::from(*status)),
        _ => None,
    }
}

#[tokio::test]
async fn sdk_secrets_full_lifecycle() {
    in_child("sdk_secrets_full_lifecycle", |ctx| async move {
        use azure_security_keyvault_secrets::models::{
            SecretAttributes, SecretClientGetSecretOptions, SecretClientListSecretPropertiesVersionsOptions,
            SetSecretParameters, UpdateSecretPropertiesParameters,
        };
        use azure_security_keyvault_secrets::{ResourceExt, SecretClient, SecretClientOptions};
        let client = SecretClient::new(
            &ctx.vault_url,
            ctx.credential.clone(),
            Some(SecretClientOptions {
                client_options: ctx.client_options.clone(),
                verify_challenge_resource: Some(false),
                ..Default::default()
            }),
        )
        .unwrap();
        let set = |value: &str| SetSecretParameters {
            value: Some(value.into()),
            content_type: Some("text/plain".into()),
            tags: Some(HashMap::from([("owner".to_string(), "team-a".to_string())])),
            ..Default::default()
        };
        let mut versions = Vec::new();
        for i in 0..5 {
            let params: RequestContent<SetSecretParameters> = set(&format!("value-{i}")).try_into().unwrap();
            let secret = client.set_secret("db-password", params, None).await.unwrap().into_model().unwrap();
            versions.push(secret.resource_id().unwrap().version.unwrap());
        }
        let latest = client.get_secret("db-password", None).await.unwrap().into_model().unwrap();
        assert_eq!(latest.value.as_deref(), Some("value-4"));
        assert_eq!(latest.tags.unwrap()["owner"], "team-a");
        let first = client
            .get_secret(
                "db-password",
                Some(SecretClientGetSecretOptions { secret_version: Some(versions[0].clone()), ..Default::default() }),
            )
            .await
            .unwrap()
            .into_model()
            .unwrap();
        assert_eq!(first.value.as_deref(), Some("value-0"));

        let listed: Vec<_> = client
            .list_secret_properties_versions(
                "db-password",
                Some(SecretClientListSecretPropertiesVersionsOptions { maxresults: Some(2), ..Default::default() }),
            )
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(listed.len(), 5, "paging with nextLink returns every version");

        let all: Vec<_> = client.list_secret_properties(None).unwrap().try_collect().await.unwrap();
        assert_eq!(all.len(), 1);

        let exp = time::OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() + time::Duration::days(60);
        let update = UpdateSecretPropertiesParameters {
            content_type: Some("application/json".into()),
            secret_attributes: Some(SecretAttributes { expires: Some(exp), ..Default::default() }),
            tags: Some(HashMap::from([("rotated".to_string(), "yes".to_string())])),
        };
        let updated = client
            .update_secret_properties("db-password", update.try_into().unwrap(), None)
            .await
            .unwrap()
            .into_model()
            .unwrap();
        assert_eq!(updated.content_type.as_deref(), Some("application/json"));
        assert_eq!(updated.attributes.unwrap().expires, Some(exp));

        let disable = UpdateSecretPropertiesParameters {
            secret_attributes: Some(SecretAttributes { enabled: Some(false), ..Default::default() }),
            ..Default::default()
        };
        client.update_secret_properties("db-password", disable.try_into().unwrap(), None).await.unwrap();
        let error = client.get_secret("db-password", None).await.unwrap_err();
        assert_eq!(status_of(&error), Some(403), "{error}");

        let deleted = client.delete_secret("db-password", None).await.unwrap().into_model().unwrap();
        assert!(deleted.recovery_id.unwrap().ends_with("/deletedsecrets/db-password"));
        let blocked = client.set_secret("db-password", set("again").try_into().unwrap(), None).await.unwrap_err();
        assert_eq!(status_of(&blocked), Some(409), "{blocked}");
        client.get_deleted_secret("db-password", None).await.unwrap();
        client.recover_deleted_secret("db-password", None).await.unwrap();
        client.delete_secret("db-password", None).await.unwrap();
        client.purge_deleted_secret("db-password", None).await.unwrap();
        let missing = client.get_deleted_secret("db-password", None).await.unwrap_err();
        assert_eq!(status_of(&missing), Some(404));
        client.set_secret("db-password", set("fresh").try_into().unwrap(), None).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn sdk_keys_create_rotate_and_policy() {
    in_child("sdk_keys_create_rotate_and_policy", |ctx| async move {
        use azure_security_keyvault_keys::models::{
            CreateKeyParameters, CurveName, KeyRotationPolicy, KeyRotationPolicyAction, KeyRotationPolicyAttributes,
            KeyType, LifetimeAction, LifetimeActionTrigger, LifetimeActionType,
        };
        use azure_security_keyvault_keys::{KeyClient, KeyClientOptions};
        let client = KeyClient::new(
            &ctx.vault_url,
            ctx.credential.clone(),
            Some(KeyClientOptions {
                client_options: ctx.client_options.clone(),
                verify_challenge_resource: Some(false),
                ..Default::default()
            }),
        )
        .unwrap();
        let rsa = CreateKeyParameters { kty: Some(KeyType::Rsa), key_size: Some(2048), ..Default::default() };
        let key = client.create_key("signing", rsa.try_into().unwrap(), None).await.unwrap().into_model().unwrap();
        let jwk = key.key.unwrap();
        assert_eq!(jwk.kty, Some(KeyType::Rsa));
        assert_eq!(jwk.n.unwrap().len(), 256);
        let ec = CreateKeyParameters { kty: Some(KeyType::Ec), curve: Some(CurveName::P384), ..Default::default() };
        let ec_key = client.create_key("ec", ec.try_into().unwrap(), None).await.unwrap().into_model().unwrap();
        assert_eq!(ec_key.key.unwrap().x.unwrap().len(), 48);

        let policy = KeyRotationPolicy {
            lifetime_actions: Some(vec![LifetimeAction {
                action: Some(LifetimeActionType { type_prop: Some(KeyRotationPolicyAction::Rotate) }),
                trigger: Some(LifetimeActionTrigger { time_before_expiry: Some("P30D".into()), ..Default::default() }),
            }]),
            attributes: Some(KeyRotationPolicyAttributes { expiry_time: Some("P90D".into()), ..Default::default() }),
            ..Default::default()
        };
        client.update_key_rotation_policy("signing", policy.try_into().unwrap(), None).await.unwrap();
        let got = client.get_key_rotation_policy("signing", None).await.unwrap().into_model().unwrap();
        assert_eq!(got.attributes.unwrap().expiry_time.as_deref(), Some("P90D"));
        let actions = got.lifetime_actions.unwrap();
        assert_eq!(actions[0].action.as_ref().unwrap().type_prop, Some(KeyRotationPolicyAction::Rotate));

        let rotated = client.rotate_key("signing", None).await.unwrap().into_model().unwrap();
        let exp = rotated.attributes.unwrap().expires.unwrap();
        let days = (exp - time::OffsetDateTime::now_utc()).whole_days();
        assert!((89..=90).contains(&days), "expiry follows the policy: {days} days");
        let versions: Vec<_> =
            client.list_key_properties_versions("signing", None).unwrap().try_collect().await.unwrap();
        assert_eq!(versions.len(), 2);
        let latest = client.get_key("signing", None).await.unwrap().into_model().unwrap();
        assert_eq!(latest.key.unwrap().kid, rotated.key.unwrap().kid);
    })
    .await;
}

#[tokio::test]
async fn sdk_certificates_create_poll_and_renew() {
    in_child("sdk_certificates_create_poll_and_renew", |ctx| async move {
        use azure_security_keyvault_certificates::models::{
            CertificatePolicy, CreateCertificateParameters, IssuerParameters, SubjectAlternativeNames,
            X509CertificateProperties,
        };
        use azure_security_keyvault_certificates::{CertificateClient, CertificateClientOptions};
        let client = CertificateClient::new(
            &ctx.vault_url,
            ctx.credential.clone(),
            Some(CertificateClientOptions {
                client_options: ctx.client_options.clone(),
                verify_challenge_resource: Some(false),
                ..Default::default()
            }),
        )
        .unwrap();
        let params = CreateCertificateParameters {
            certificate_policy: Some(CertificatePolicy {
                issuer_parameters: Some(IssuerParameters { name: Some("Self".into()), ..Default::default() }),
                x509_certificate_properties: Some(X509CertificateProperties {
                    subject: Some("CN=api.example.test".into()),
                    subject_alternative_names: Some(SubjectAlternativeNames {
                        dns_names: Some(vec!["api.example.test".into()]),
                        ..Default::default()
                    }),
                    validity_in_months: Some(6),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let poller = client.begin_create_certificate("api-tls", params.try_into().unwrap(), None).unwrap();
        let created =
            tokio::time::timeout(Duration::from_secs(60), poller).await.unwrap().unwrap().into_model().unwrap();
        let cer = created.cer.unwrap();
        assert!(cer.len() > 300, "a DER certificate");
        assert_eq!(created.x509_thumbprint.unwrap().len(), 20);
        assert!(created.kid.unwrap().contains("/keys/api-tls/"));

        let got = client.get_certificate("api-tls", None).await.unwrap().into_model().unwrap();
        assert_eq!(got.cer.unwrap(), cer);
        let policy = client.get_certificate_policy("api-tls", None).await.unwrap().into_model().unwrap();
        assert_eq!(policy.x509_certificate_properties.unwrap().subject.as_deref(), Some("CN=api.example.test"));

        // `{}`: a new version with the existing policy.
        let renew = client
            .begin_create_certificate("api-tls", CreateCertificateParameters::default().try_into().unwrap(), None)
            .unwrap();
        let renewed =
            tokio::time::timeout(Duration::from_secs(60), renew).await.unwrap().unwrap().into_model().unwrap();
        assert_ne!(renewed.id, created.id);
        let versions: Vec<_> =
            client.list_certificate_properties_versions("api-tls", None).unwrap().try_collect().await.unwrap();
        assert_eq!(versions.len(), 2);
    })
    .await;
}

/// The path keyturn's handlers take (`KEYTURN_CREDENTIAL=managed-identity` with `AZURE_CLIENT_ID`): the SDK's
/// ManagedIdentityCredential asks the App Service endpoint for the user-assigned identity by `client_id`, and
/// the vault authorises that identity's roles, no more. A denial reaches the SDK as the service sends it.
#[tokio::test]
async fn sdk_user_assigned_identity_holds_only_its_roles() {
    const TEST: &str = "sdk_user_assigned_identity_holds_only_its_roles";
    if std::env::var(CHILD).as_deref() == Ok(TEST) {
        use azure_identity::UserAssignedId;
        use azure_security_keyvault_secrets::models::SetSecretParameters;
        use azure_security_keyvault_secrets::{SecretClient, SecretClientOptions};
        let ctx = Ctx::from_env();
        let credential = ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
            user_assigned_id: Some(UserAssignedId::ClientId(std::env::var("AZURE_CLIENT_ID").unwrap())),
            client_options: ctx.client_options.clone(),
        }))
        .unwrap();
        let client = SecretClient::new(
            &ctx.vault_url,
            credential,
            Some(SecretClientOptions {
                client_options: ctx.client_options.clone(),
                verify_challenge_resource: Some(false),
                ..Default::default()
            }),
        )
        .unwrap();
        let secret = client.get_secret("db-password", None).await.unwrap().into_model().unwrap();
        assert_eq!(secret.value.as_deref(), Some("v1"));
        let params: RequestContent<SetSecretParameters> =
            SetSecretParameters { value: Some("v2".into()), ..Default::default() }.try_into().unwrap();
        let error = client.set_secret("db-password", params, None).await.unwrap_err();
        assert_eq!(status_of(&error), Some(403), "{error}");
        let explained = keyturn_vault::rbac::explain_forbidden(&error.to_string()).unwrap();
        assert!(explained.contains("secrets/setSecret/action"), "{explained}");
        assert!(explained.contains("missing role: Key Vault Secrets Officer"), "{explained}");
        return;
    }
    let kv = KeyVaultEmulator::builder().vault("kv-sdk").start().await.unwrap();
    kv.store()
        .set_secret(
            "kv-sdk",
            "db-password",
            keyturn_local::keyvault::SecretSpec { value: "v1".into(), ..Default::default() },
        )
        .unwrap();
    let identity = kv.add_user_assigned_identity("reader-of-values");
    kv.assign_role(&identity.object_id, "Key Vault Secrets User", keyturn_local::rbac::Scope::vault("kv-sdk")).unwrap();
    let child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, TEST)
        .envs(kv.identity_env().vars())
        .env("AZURE_CLIENT_ID", &identity.client_id)
        .env("KEYTURN_VAULT_URL", kv.vault_url("kv-sdk").unwrap())
        .env("KEYTURN_CA", kv.ca_pem_path())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(180), child)
        .await
        .expect("the SDK scenario finished within 180 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "SDK scenario failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    kv.shutdown().await;
}
