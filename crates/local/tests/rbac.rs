//! RBAC in the Key Vault emulator, the identity endpoint's selection of identities, API versions, and backup
//! and restore, over real sockets with a plain HTTP client (the wire shapes the SDKs hide).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use keyturn_local::identity::ManagedIdentity;
use keyturn_local::keyvault::{KeyVaultEmulator, RunningEmulator, StoredKind};
use keyturn_local::rbac::Scope;
use keyturn_local::roles::{Deployment, RoleMatrix};
use keyturn_vault::rbac::{PREFIX, ROLES, explain_forbidden, role_by_name};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

const VAULT: &str = "kv-rbac";
const OTHER: &str = "kv-other";

async fn strict() -> RunningEmulator {
    KeyVaultEmulator::builder().vault(VAULT).vault(OTHER).no_throttling().start().await.unwrap()
}

/// The identity endpoint's raw answer for `selector` (e.g. `client_id=...`).
async fn identity_call(kv: &RunningEmulator, selector: &str) -> (u16, Value) {
    let env = kv.identity_env();
    let sep = if selector.is_empty() { "" } else { "&" };
    let rsp = reqwest::Client::new()
        .get(format!("{}?api-version=2019-08-01&resource=https://vault.azure.net{sep}{selector}", env.endpoint))
        .header("x-identity-header", &env.header)
        .send()
        .await
        .unwrap();
    (rsp.status().as_u16(), rsp.json().await.unwrap())
}

/// A vault client acting as one identity.
struct Caller {
    http: reqwest::Client,
    kv_url: String,
    other_url: String,
    token: String,
}

impl Caller {
    async fn new(kv: &RunningEmulator, identity: Option<&ManagedIdentity>) -> Self {
        let selector = identity.map(|i| format!("client_id={}", i.client_id)).unwrap_or_default();
        let (status, body) = identity_call(kv, &selector).await;
        assert_eq!(status, 200, "{body}");
        let ca = reqwest::Certificate::from_pem(kv.ca_pem().as_bytes()).unwrap();
        Self {
            http: reqwest::Client::builder().tls_certs_only([ca]).timeout(Duration::from_secs(30)).build().unwrap(),
            kv_url: kv.vault_url(VAULT).unwrap().to_owned(),
            other_url: kv.vault_url(OTHER).unwrap_or_default().to_owned(),
            token: body["access_token"].as_str().unwrap().to_owned(),
        }
    }

    async fn raw(&self, vault: &str, method: Method, path: &str, api: &str, body: Option<&Value>) -> (u16, String) {
        let base = if vault == VAULT { &self.kv_url } else { &self.other_url };
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut req = self.http.request(method, format!("{base}{path}{sep}api-version={api}")).bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(body);
        }
        let rsp = req.send().await.unwrap();
        (rsp.status().as_u16(), rsp.text().await.unwrap())
    }

    async fn call_in(&self, vault: &str, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let (status, text) = self.raw(vault, method, path, "2026-04-01", body.as_ref()).await;
        (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() })
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_in(VAULT, method, path, body).await
    }
}

/// A self-signed EC certificate's policy.
fn cert_policy(subject: &str) -> Value {
    json!({"policy": {
        "key_props": {"kty": "EC", "crv": "P-256"},
        "x509_props": {"subject": format!("CN={subject}"), "validity_months": 12},
        "issuer": {"name": "Self"}
    }})
}

/// A user-assigned identity holding `role` at `scope`.
fn holder(kv: &RunningEmulator, name: &str, role: &str, scope: Scope) -> ManagedIdentity {
    let identity = kv.add_user_assigned_identity(name);
    kv.assign_role(&identity.object_id, role, scope).unwrap();
    identity
}

/// Seeds secret s1 and s2, EC key k1, certificate c1 as an administrator.
async fn seed(kv: &RunningEmulator) -> Caller {
    let admin = holder(kv, "admin", "Key Vault Administrator", Scope::resource_group());
    let admin = Caller::new(kv, Some(&admin)).await;
    for name in ["s1", "s2"] {
        assert_eq!(admin.call(Method::PUT, &format!("/secrets/{name}"), Some(json!({"value": "v"}))).await.0, 200);
    }
    let (status, body) = admin.call(Method::POST, "/keys/k1/create", Some(json!({"kty": "EC", "crv": "P-256"}))).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = admin.call(Method::POST, "/certificates/c1/create", Some(cert_policy("c1"))).await;
    assert_eq!(status, 202, "{body}");
    let (status, body) = admin.call(Method::GET, "/certificates/c1/pending", None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("completed")), "{body}");
    admin
}

/// Every operation the table checks, with the data action Azure documents for it (written here, not taken
/// from the emulator, so a wrong mapping in the emulator fails the test).
fn operations() -> Vec<(Method, &'static str, Option<Value>, &'static str)> {
    let tags = || Some(json!({"tags": {"t": "1"}}));
    vec![
        (Method::GET, "/secrets", None, "secrets/readMetadata/action"),
        (Method::GET, "/secrets/s1", None, "secrets/getSecret/action"),
        (Method::PUT, "/secrets/s1", Some(json!({"value": "w"})), "secrets/setSecret/action"),
        (Method::PATCH, "/secrets/s1", tags(), "secrets/update/action"),
        (Method::GET, "/secrets/s1/versions", None, "secrets/readMetadata/action"),
        (Method::POST, "/secrets/s1/backup", None, "secrets/backup/action"),
        (Method::GET, "/deletedsecrets", None, "secrets/readMetadata/action"),
        (Method::GET, "/keys", None, "keys/read"),
        (Method::GET, "/keys/k1", None, "keys/read"),
        (Method::GET, "/keys/k1/versions", None, "keys/read"),
        (Method::PATCH, "/keys/k1", tags(), "keys/update/action"),
        (Method::POST, "/keys/k2/create", Some(json!({"kty": "EC", "crv": "P-256"})), "keys/create/action"),
        (Method::POST, "/keys/k1/rotate", None, "keys/rotate/action"),
        (Method::GET, "/keys/k1/rotationpolicy", None, "keyrotationpolicies/read"),
        (Method::POST, "/keys/k1/backup", None, "keys/backup/action"),
        (Method::GET, "/deletedkeys", None, "keys/read"),
        (Method::GET, "/certificates", None, "certificates/read"),
        (Method::GET, "/certificates/c1", None, "certificates/read"),
        (Method::GET, "/certificates/c1/policy", None, "certificates/read"),
        (Method::PATCH, "/certificates/c1", tags(), "certificates/update/action"),
        (Method::POST, "/certificates/c1/backup", None, "certificates/backup/action"),
        (Method::GET, "/deletedcertificates", None, "certificates/read"),
    ]
}

#[tokio::test]
async fn each_role_grants_exactly_its_data_actions() {
    let kv = strict().await;
    seed(&kv).await;
    let mut checked = 0;
    for role in ROLES {
        let identity = holder(&kv, &role.name.replace(' ', "-").to_lowercase(), role.name, Scope::vault(VAULT));
        let caller = Caller::new(&kv, Some(&identity)).await;
        for (method, path, body, action) in operations() {
            let full = format!("{PREFIX}{action}");
            let (status, answer) = caller.call(method.clone(), path, body).await;
            if role.grants(&full) {
                assert!((200..300).contains(&status), "{}: {method} {path} ({action}) → {status} {answer}", role.name);
            } else {
                assert_eq!(status, 403, "{}: {method} {path} ({action}) must be denied: {answer}", role.name);
                assert_eq!(answer["error"]["innererror"]["code"], "ForbiddenByRbac");
                assert!(answer["error"]["message"].as_str().unwrap().contains(&format!("Action: '{full}'")));
            }
            checked += 1;
        }
    }
    assert_eq!(checked, ROLES.len() * operations().len());

    // Spot checks written out, independent of the role table: Reader reads metadata, never a value.
    let reader = holder(&kv, "reader-2", "Key Vault Reader", Scope::vault(VAULT));
    let reader = Caller::new(&kv, Some(&reader)).await;
    assert_eq!(reader.call(Method::GET, "/secrets", None).await.0, 200);
    assert_eq!(reader.call(Method::GET, "/keys/k1", None).await.0, 200);
    assert_eq!(reader.call(Method::GET, "/secrets/s1", None).await.0, 403);
    assert_eq!(reader.call(Method::PATCH, "/secrets/s1", Some(json!({"tags": {}}))).await.0, 403);
    kv.shutdown().await;
}

#[tokio::test]
async fn deletes_recovers_and_purges_need_their_own_actions() {
    let kv = strict().await;
    let admin = seed(&kv).await;
    let user = Caller::new(&kv, Some(&holder(&kv, "user", "Key Vault Secrets User", Scope::vault(VAULT)))).await;
    let officer =
        Caller::new(&kv, Some(&holder(&kv, "officer", "Key Vault Secrets Officer", Scope::vault(VAULT)))).await;
    assert_eq!(user.call(Method::DELETE, "/secrets/s2", None).await.0, 403);
    assert_eq!(officer.call(Method::DELETE, "/secrets/s2", None).await.0, 200);
    assert_eq!(user.call(Method::POST, "/deletedsecrets/s2/recover", None).await.0, 403);
    assert_eq!(officer.call(Method::POST, "/deletedsecrets/s2/recover", None).await.0, 200);
    assert_eq!(officer.call(Method::DELETE, "/secrets/s2", None).await.0, 200);
    assert_eq!(user.call(Method::DELETE, "/deletedsecrets/s2", None).await.0, 403);
    assert_eq!(officer.call(Method::DELETE, "/deletedsecrets/s2", None).await.0, 204);
    // A Crypto Officer holds nothing on secrets or certificates.
    let crypto = Caller::new(&kv, Some(&holder(&kv, "crypto", "Key Vault Crypto Officer", Scope::vault(VAULT)))).await;
    assert_eq!(crypto.call(Method::DELETE, "/certificates/c1", None).await.0, 403);
    assert_eq!(admin.call(Method::DELETE, "/certificates/c1", None).await.0, 200);
    kv.shutdown().await;
}

#[tokio::test]
async fn object_scope_grants_that_object_only_and_lists_need_the_vault() {
    let kv = strict().await;
    seed(&kv).await;
    let scoped = holder(&kv, "scoped", "Key Vault Secrets Officer", Scope::object(VAULT, StoredKind::Secret, "s1"));
    let caller = Caller::new(&kv, Some(&scoped)).await;
    assert_eq!(caller.call(Method::GET, "/secrets/s1", None).await.0, 200);
    assert_eq!(caller.call(Method::GET, "/secrets/S1", None).await.0, 200, "names are case-insensitive");
    assert_eq!(caller.call(Method::PATCH, "/secrets/s1", Some(json!({"tags": {"a": "b"}}))).await.0, 200);
    assert_eq!(caller.call(Method::GET, "/secrets/s1/versions", None).await.0, 200);
    assert_eq!(caller.call(Method::GET, "/secrets/s2", None).await.0, 403);
    assert_eq!(caller.call(Method::GET, "/secrets", None).await.0, 403, "a list is checked on the vault");
    // The same vault name in another vault is another resource.
    assert_eq!(caller.call_in(OTHER, Method::PUT, "/secrets/s1", Some(json!({"value": "x"}))).await.0, 403);
    // A grant on the resource group reaches every vault in it.
    let wide = holder(&kv, "wide", "Key Vault Secrets User", Scope::resource_group());
    let wide = Caller::new(&kv, Some(&wide)).await;
    assert_eq!(wide.call(Method::GET, "/secrets/s2", None).await.0, 200);
    kv.shutdown().await;
}

#[tokio::test]
async fn a_denial_is_byte_for_byte_the_service_s_and_names_the_role_to_grant() {
    let kv = strict().await;
    seed(&kv).await;
    let identity = holder(&kv, "reader", "Key Vault Reader", Scope::vault(VAULT));
    let caller = Caller::new(&kv, Some(&identity)).await;
    let (status, body) =
        caller.raw(VAULT, Method::PATCH, "/secrets/s1", "2025-07-01", Some(&json!({"tags": {}}))).await;
    assert_eq!(status, 403);
    let expected = format!(
        concat!(
            r#"{{"error":{{"code":"Forbidden","message":"Caller is not authorized to perform action on resource.\r\n"#,
            r#"If role assignments, deny assignments or role definitions were changed recently, please observe propagation time.\r\n"#,
            r#"Caller: appid={appid};oid={oid};iss=https://sts.windows.net/{tid}/\r\n"#,
            r#"Action: 'Microsoft.KeyVault/vaults/secrets/update/action'\r\n"#,
            r#"Resource: '/subscriptions/{sub}/resourcegroups/keyturn-local/providers/microsoft.keyvault/vaults/kv-rbac/secrets/s1'\r\n"#,
            r#"Assignment: (not found)\r\nDenyAssignmentId: null\r\nDecisionReason: 'DeniedWithNoValidRBAC' \r\n"#,
            r#"Vault: kv-rbac;location=local\r\n","innererror":{{"code":"ForbiddenByRbac"}}}}}}"#
        ),
        appid = identity.client_id,
        oid = identity.object_id,
        tid = keyturn_local::identity::TENANT_ID,
        sub = keyturn_local::identity::SUBSCRIPTION_ID,
    );
    assert_eq!(body, expected);
    // What a handler makes of it: the missing role, by name.
    let message: Value = serde_json::from_str(&body).unwrap();
    let explained = explain_forbidden(message["error"]["message"].as_str().unwrap()).unwrap();
    assert!(explained.contains("missing role: Key Vault Secrets Officer"), "{explained}");
    kv.shutdown().await;
}

#[tokio::test]
async fn nothing_is_granted_implicitly_and_a_broad_grant_is_an_ordinary_visible_assignment() {
    let kv = strict().await;
    let system = Caller::new(&kv, None).await;
    assert_eq!(system.call(Method::GET, "/secrets", None).await.0, 403);
    assert!(kv.assignments().of(&kv.identities().system().object_id).is_empty());
    let nobody = kv.add_user_assigned_identity("nobody");
    assert!(kv.assignments().of(&nobody.object_id).is_empty());
    let nobody = Caller::new(&kv, Some(&nobody)).await;
    assert_eq!(nobody.call(Method::GET, "/secrets", None).await.0, 403);
    kv.shutdown().await;

    let kv = KeyVaultEmulator::builder().vault(VAULT).vault(OTHER).start().await.unwrap();
    kv.grant_system_identity("Key Vault Administrator").unwrap();
    assert!(kv.grant_system_identity("Key Vault Janitor").is_err());
    let system = kv.identities().system();
    let held = kv.assignments().of(&system.object_id);
    assert_eq!(held.len(), 2, "{held:?}");
    assert!(held.iter().all(|a| a.role.name == "Key Vault Administrator"));
    assert_eq!(Caller::new(&kv, None).await.call(Method::PUT, "/secrets/a", Some(json!({"value": "v"}))).await.0, 200);
    let other = Caller::new(&kv, Some(&kv.add_user_assigned_identity("other"))).await;
    assert_eq!(other.call(Method::GET, "/secrets/a", None).await.0, 403);
    kv.shutdown().await;
}

fn claims(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn the_identity_endpoint_selects_by_client_id_object_id_or_resource_id() {
    let kv = strict().await;
    let uami = kv.add_user_assigned_identity("handler-one");
    for selector in [
        format!("client_id={}", uami.client_id),
        format!("principal_id={}", uami.object_id),
        format!("object_id={}", uami.object_id.to_uppercase()),
        format!("mi_res_id={}", uami.resource_id),
    ] {
        let (status, body) = identity_call(&kv, &selector).await;
        assert_eq!(status, 200, "{selector}: {body}");
        assert_eq!(body["client_id"], uami.client_id.as_str(), "{selector}");
        let claims = claims(body["access_token"].as_str().unwrap());
        assert_eq!(claims["appid"], uami.client_id.as_str());
        assert_eq!(claims["oid"], uami.object_id.as_str());
        assert_eq!(claims["sub"], uami.object_id.as_str());
        assert_eq!(claims["xms_mirid"], uami.resource_id.as_str());
        assert!(uami.resource_id.contains("/providers/Microsoft.ManagedIdentity/userAssignedIdentities/handler-one"));
    }
    let (status, body) = identity_call(&kv, "").await;
    assert_eq!(status, 200);
    let system = kv.identities().system();
    assert_eq!(body["client_id"], system.client_id.as_str());
    let claims = claims(body["access_token"].as_str().unwrap());
    assert_eq!(claims["oid"], system.object_id.as_str());
    assert!(claims["xms_mirid"].as_str().unwrap().ends_with("/providers/Microsoft.Web/sites/keyturn-local"));
    assert_ne!(system.client_id, system.object_id);

    for unassigned in [
        "client_id=99999999-0000-0000-0000-000000000000".to_owned(),
        format!("client_id={}", system.client_id),
        format!("principal_id={}", uami.client_id),
        "mi_res_id=/subscriptions/x/resourcegroups/y/providers/Microsoft.ManagedIdentity/userAssignedIdentities/z"
            .to_owned(),
    ] {
        let (status, body) = identity_call(&kv, &unassigned).await;
        assert_eq!(status, 400, "{unassigned}");
        let fields: Vec<&String> = body.as_object().unwrap().keys().collect();
        assert_eq!(fields, ["correlationId", "message", "statusCode"], "{body}");
        assert_eq!(body["statusCode"], 400);
        assert_eq!(body["message"], "Unable to load the proper Managed Identity.");
        assert!(uuid::Uuid::parse_str(body["correlationId"].as_str().unwrap()).is_ok());
    }
    let (status, body) =
        identity_call(&kv, &format!("client_id={}&object_id={}", uami.client_id, uami.object_id)).await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("client_id and object_id"), "{body}");
    kv.shutdown().await;
}

#[tokio::test]
async fn every_api_version_current_sdks_send_is_accepted_and_others_get_the_service_s_error() {
    let kv = KeyVaultEmulator::builder().vault(VAULT).vault(OTHER).no_throttling().start().await.unwrap();
    // A broad client of the emulator's protocol, as the system-assigned identity: its role, visibly.
    kv.grant_system_identity("Key Vault Administrator").unwrap();
    let caller = Caller::new(&kv, None).await;
    for version in [
        "2026-04-01",
        "2026-01-01-preview",
        "2025-07-01",
        "7.6",
        "7.5",
        "7.4",
        "7.3",
        "7.2",
        "7.1",
        "7.0",
        "2016-10-01",
    ] {
        let (status, body) = caller.raw(VAULT, Method::GET, "/secrets", version, None).await;
        assert_eq!(status, 200, "{version}: {body}");
    }
    let (status, body) = caller.raw(VAULT, Method::GET, "/secrets", "2026-05-01", None).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        r#"{"error":{"code":"BadParameter","message":"The specified version (2026-05-01) is not recognized. Consider using the latest supported version (2026-04-01)."}}"#
    );
    let (status, _) = caller.raw(VAULT, Method::GET, "/secrets", "7.7", None).await;
    assert_eq!(status, 400);

    // Shapes per version: from 2025-07-01 a certificate-backed secret names the certificate's previous version.
    assert_eq!(caller.call(Method::POST, "/certificates/tls/create", Some(cert_policy("tls"))).await.0, 202);
    let first = caller.call(Method::GET, "/certificates/tls/pending", None).await.1;
    assert_eq!(first["status"], "completed", "{first}");
    let (_, first) = caller.call(Method::GET, "/secrets/tls", None).await;
    assert!(first.get("previousVersion").is_none(), "the first version has none: {first}");
    let first_version = first["id"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
    assert_eq!(caller.call(Method::POST, "/certificates/tls/create", Some(cert_policy("tls"))).await.0, 202);
    caller.call(Method::GET, "/certificates/tls/pending", None).await;
    for (version, expected) in [
        ("2026-04-01", Some(first_version.as_str())),
        ("2025-07-01", Some(first_version.as_str())),
        ("7.6", None),
        ("7.0", None),
    ] {
        let (status, body) = caller.raw(VAULT, Method::GET, "/secrets/tls", version, None).await;
        assert_eq!(status, 200, "{body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body.get("previousVersion").and_then(Value::as_str), expected, "{version}: {body}");
    }
    // An ordinary secret never has one.
    caller.call(Method::PUT, "/secrets/plain", Some(json!({"value": "1"}))).await;
    let (_, plain) = caller.call(Method::PUT, "/secrets/plain", Some(json!({"value": "2"}))).await;
    assert!(plain.get("previousVersion").is_none());
    assert!(caller.call(Method::GET, "/secrets/plain", None).await.1.get("previousVersion").is_none());
    kv.shutdown().await;
}

#[tokio::test]
async fn backups_restore_into_any_vault_of_the_stack_with_the_service_s_name_rules() {
    let kv = KeyVaultEmulator::builder().vault(VAULT).vault(OTHER).no_throttling().start().await.unwrap();
    // A broad client of the emulator's protocol, as the system-assigned identity: its role, visibly.
    kv.grant_system_identity("Key Vault Administrator").unwrap();
    let admin = Caller::new(&kv, None).await;
    admin.call(Method::PUT, "/secrets/db", Some(json!({"value": "one"}))).await;
    let (_, second) = admin.call(Method::PUT, "/secrets/db", Some(json!({"value": "two"}))).await;
    let (status, backup) = admin.call(Method::POST, "/secrets/db/backup", None).await;
    assert_eq!(status, 200);
    let blob = backup["value"].as_str().unwrap().to_owned();
    assert!(!blob.contains("two") && blob.len() > 40, "opaque: {blob}");
    let restore = || Some(json!({"value": blob}));

    // The live secret is in the way; then the soft-deleted one; after a purge the name is free.
    let (status, body) = admin.call(Method::POST, "/secrets/restore", restore()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("Conflict")), "{body}");
    assert_eq!(admin.call(Method::DELETE, "/secrets/db", None).await.0, 200);
    let (status, body) = admin.call(Method::POST, "/secrets/restore", restore()).await;
    assert_eq!(status, 409);
    assert!(body["error"]["message"].as_str().unwrap().contains("deleted but recoverable"), "{body}");
    assert_eq!(admin.call(Method::DELETE, "/deletedsecrets/db", None).await.0, 204);
    let (status, restored) = admin.call(Method::POST, "/secrets/restore", restore()).await;
    assert_eq!(status, 200, "{restored}");
    assert_eq!(restored["id"], second["id"], "the latest version keeps its id");
    assert!(restored.get("value").is_none());
    let (_, versions) = admin.call(Method::GET, "/secrets/db/versions", None).await;
    assert_eq!(versions["value"].as_array().unwrap().len(), 2);
    assert_eq!(admin.call(Method::GET, "/secrets/db", None).await.1["value"], "two");

    // Into another vault of the same stack.
    let (status, other) = admin.call_in(OTHER, Method::POST, "/secrets/restore", restore()).await;
    assert_eq!(status, 200, "{other}");
    assert_eq!(admin.call_in(OTHER, Method::GET, "/secrets/db", None).await.1["value"], "two");

    // Keys and certificates (with the key and secret behind it) round-trip too.
    admin.call(Method::POST, "/keys/sign/create", Some(json!({"kty": "EC", "crv": "P-256"}))).await;
    let key_blob = admin.call(Method::POST, "/keys/sign/backup", None).await.1["value"].clone();
    let (status, key) = admin.call_in(OTHER, Method::POST, "/keys/restore", Some(json!({"value": key_blob}))).await;
    assert_eq!((status, key["key"]["kty"].as_str()), (200, Some("EC")), "{key}");
    assert_eq!(admin.call_in(OTHER, Method::POST, "/keys/restore", Some(json!({"value": key_blob}))).await.0, 409);
    assert_eq!(admin.call(Method::POST, "/certificates/tls/create", Some(cert_policy("tls"))).await.0, 202);
    admin.call(Method::GET, "/certificates/tls/pending", None).await;
    let cert_blob = admin.call(Method::POST, "/certificates/tls/backup", None).await.1["value"].clone();
    let (status, cert) =
        admin.call_in(OTHER, Method::POST, "/certificates/restore", Some(json!({"value": cert_blob}))).await;
    assert_eq!(status, 200, "{cert}");
    let (status, secret) = admin.call_in(OTHER, Method::GET, "/secrets/tls", None).await;
    assert_eq!((status, secret["kid"].is_string()), (200, true), "{secret}");

    // Wrong kind, garbage, and a blob from another stack are malformed.
    let (status, body) = admin.call(Method::POST, "/keys/restore", restore()).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(admin.call(Method::POST, "/secrets/restore", Some(json!({"value": "AAAA"}))).await.0, 400);
    let elsewhere = KeyVaultEmulator::builder().vault(VAULT).start().await.unwrap();
    // A broad client of the emulator's protocol, as the system-assigned identity: its role, visibly.
    elsewhere.grant_system_identity("Key Vault Administrator").unwrap();
    let stranger = Caller::new(&elsewhere, None).await;
    stranger.call(Method::DELETE, "/secrets/db", None).await;
    let (status, body) = stranger.call(Method::POST, "/secrets/restore", restore()).await;
    assert_eq!(status, 400, "{body}");
    elsewhere.shutdown().await;

    // Backup and restore are their own actions: Secrets User may do neither.
    let user = holder(&kv, "user", "Key Vault Secrets User", Scope::vault(VAULT));
    let user = Caller::new(&kv, Some(&user)).await;
    assert_eq!(user.call(Method::POST, "/secrets/db/backup", None).await.0, 403);
    let (status, body) = user.call(Method::POST, "/secrets/restore", restore()).await;
    assert_eq!(status, 403);
    assert!(body["error"]["message"].as_str().unwrap().contains("secrets/restore/action"));
    assert!(body["error"]["message"].as_str().unwrap().contains("Resource: '/subscriptions/"));
    kv.shutdown().await;
}

#[tokio::test]
async fn handler_identities_hold_exactly_their_matrix_grants() {
    let kv = strict().await;
    let admin = seed(&kv).await;
    admin.call(Method::PUT, "/secrets/keyturn-canary", Some(json!({"value": "c"}))).await;
    let matrix = RoleMatrix::embedded().unwrap();
    let deployment = Deployment {
        monitored_vaults: vec![VAULT.into()],
        canary_secret: Some("keyturn-canary".into()),
        mirror_vaults: vec![OTHER.into()],
        ..Deployment::default()
    };

    // test-event: Reader on the vault, Secrets Officer on the canary only.
    let test_event = kv.handler_identity(&matrix, "test-event", &deployment).unwrap();
    assert_eq!(test_event.app_settings(), vec![("AZURE_CLIENT_ID".to_owned(), test_event.identity.client_id.clone())]);
    assert_eq!(test_event.assignments.len(), 2, "{:?}", test_event.assignments);
    let caller = Caller::new(&kv, Some(&test_event.identity)).await;
    let tag = || Some(json!({"tags": {"KeyturnCanaryResult": "pass"}}));
    assert_eq!(caller.call(Method::PATCH, "/secrets/keyturn-canary", tag()).await.0, 200);
    assert_eq!(caller.call(Method::GET, "/secrets/keyturn-canary", None).await.0, 200);
    assert_eq!(caller.call(Method::GET, "/secrets", None).await.0, 200);
    let (status, body) = caller.call(Method::PATCH, "/secrets/s1", tag()).await;
    assert_eq!(status, 403);
    let explained = explain_forbidden(body["error"]["message"].as_str().unwrap()).unwrap();
    assert!(explained.contains("'Microsoft.KeyVault/vaults/secrets/update/action'"), "{explained}");
    assert!(explained.contains("missing role: Key Vault Secrets Officer"), "{explained}");

    // One role fewer: without its canary grant, test-event cannot record the result.
    let canary_scope = Scope::object(VAULT, StoredKind::Secret, "keyturn-canary");
    let officer = role_by_name("Key Vault Secrets Officer").unwrap();
    assert!(kv.assignments().unassign(&test_event.identity.object_id, officer, &canary_scope));
    assert_eq!(caller.call(Method::PATCH, "/secrets/keyturn-canary", tag()).await.0, 403);

    // expired (no expiredActionsEnabled): lists and reads metadata, never a secret value.
    let expired = kv.handler_identity(&matrix, "expired", &deployment).unwrap();
    let caller = Caller::new(&kv, Some(&expired.identity)).await;
    assert_eq!(caller.call(Method::GET, "/secrets", None).await.0, 200);
    assert_eq!(caller.call(Method::GET, "/secrets/s1/versions", None).await.0, 200);
    assert_eq!(caller.call(Method::GET, "/secrets/s1", None).await.0, 403);

    // new-version: reads values in the monitored vault, writes only in the mirror.
    let new_version = kv.handler_identity(&matrix, "new-version", &deployment).unwrap();
    let caller = Caller::new(&kv, Some(&new_version.identity)).await;
    assert_eq!(caller.call(Method::GET, "/secrets/s1", None).await.0, 200);
    assert_eq!(caller.call(Method::PUT, "/secrets/s1", Some(json!({"value": "x"}))).await.0, 403);
    assert_eq!(caller.call_in(OTHER, Method::PUT, "/secrets/s1", Some(json!({"value": "x"}))).await.0, 200);

    // A deployment naming a vault the stack does not serve is a wiring mistake, said plainly.
    let wrong = Deployment { monitored_vaults: vec!["kv-nowhere".into()], ..Deployment::default() };
    let error = kv.handler_identity(&matrix, "expired", &wrong).unwrap_err().to_string();
    assert!(error.contains("kv-nowhere"), "{error}");
    kv.shutdown().await;
}
