//! The Key Vault emulator and identity endpoint over real sockets, with a plain reqwest client: exact wire
//! shapes (status codes, error bodies, headers) that the SDKs hide.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use keyturn_local::keyvault::{
    FaultRule, Faults, KeyVaultEmulator, OperationKind, RunningEmulator, SecretSpec, Throttling,
};
use serde_json::{Value, json};
use std::time::Duration;

const API: &str = "api-version=2025-07-01";

fn client(kv: &RunningEmulator) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(kv.ca_pem().as_bytes()).unwrap();
    reqwest::Client::builder().tls_certs_only([ca]).timeout(Duration::from_secs(20)).build().unwrap()
}

async fn token(kv: &RunningEmulator) -> String {
    let env = kv.identity_env();
    let body: Value = reqwest::Client::new()
        .get(format!("{}?api-version=2019-08-01&resource=https://vault.azure.net", env.endpoint))
        .header("x-identity-header", &env.header)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["access_token"].as_str().unwrap().to_string()
}

struct Vault {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Vault {
    async fn new(kv: &RunningEmulator, name: &str) -> Self {
        Self { http: client(kv), url: kv.vault_url(name).unwrap().to_string(), token: token(kv).await }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = if path.starts_with("https://") { path.to_string() } else { format!("{}{path}{sep}{API}", self.url) };
        let mut req = self.http.request(method, url).bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let rsp = tokio::time::timeout(Duration::from_secs(30), req.send()).await.unwrap().unwrap();
        let status = rsp.status().as_u16();
        let headers = rsp.headers().clone();
        let text = rsp.text().await.unwrap();
        let value = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() };
        (status, headers, value)
    }
}

async fn start() -> RunningEmulator {
    let kv = KeyVaultEmulator::builder().vault("kv-one").vault("kv-two").start().await.unwrap();
    // A broad client of the emulator's protocol, as the system-assigned identity: its role, visibly.
    kv.grant_system_identity("Key Vault Administrator").unwrap();
    kv
}

#[tokio::test]
async fn missing_token_gets_the_bearer_challenge() {
    let kv = start().await;
    let rsp = client(&kv).get(format!("{}/secrets/x?{API}", kv.vault_url("kv-one").unwrap())).send().await.unwrap();
    assert_eq!(rsp.status(), 401);
    assert_eq!(
        rsp.headers()["www-authenticate"],
        "Bearer authorization=\"https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47\", resource=\"https://vault.azure.net\""
    );
    let body: Value = rsp.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error": {"code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer or PoP token."}})
    );
    kv.shutdown().await;
}

#[tokio::test]
async fn unknown_token_is_refused() {
    let kv = start().await;
    let mut vault = Vault::new(&kv, "kv-one").await;
    vault.token = "not-a-token-we-issued".into();
    let (status, headers, body) = vault.call(reqwest::Method::GET, "/secrets/x", None).await;
    assert_eq!(status, 401);
    assert!(headers.contains_key("www-authenticate"));
    assert_eq!(body["error"]["code"], "Unauthorized");
    assert!(body["error"]["message"].as_str().unwrap().starts_with("AKV10032"));
    kv.shutdown().await;
}

#[tokio::test]
async fn identity_endpoint_checks_header_version_and_identity() {
    let kv = KeyVaultEmulator::builder()
        .vault("kv-one")
        .user_assigned_identity("11111111-2222-3333-4444-555555555555")
        .start()
        .await
        .unwrap();
    let env = kv.identity_env();
    let http = reqwest::Client::new();
    let get = |query: &str, header: Option<&str>| {
        let mut req = http.get(format!("{}?{query}", env.endpoint));
        if let Some(h) = header {
            req = req.header("x-identity-header", h);
        }
        req.send()
    };
    let q = "api-version=2019-08-01&resource=https://vault.azure.net";
    assert_eq!(get(q, None).await.unwrap().status(), 400);
    assert_eq!(get(q, Some("wrong")).await.unwrap().status(), 401);
    assert_eq!(get("api-version=2017-09-01&resource=r", Some(&env.header)).await.unwrap().status(), 400);
    assert_eq!(get("api-version=2019-08-01", Some(&env.header)).await.unwrap().status(), 400);
    let unknown = format!("{q}&client_id=99999999-0000-0000-0000-000000000000");
    assert_eq!(get(&unknown, Some(&env.header)).await.unwrap().status(), 400);

    let ok: Value = get(&format!("{q}&client_id=11111111-2222-3333-4444-555555555555"), Some(&env.header))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ok["token_type"], "Bearer");
    assert_eq!(ok["resource"], "https://vault.azure.net");
    assert_eq!(ok["client_id"], "11111111-2222-3333-4444-555555555555");
    let expires: i64 = ok["expires_on"].as_str().expect("expires_on is a string").parse().unwrap();
    let now = chrono::Utc::now().timestamp();
    assert!((now + 86_000..=now + 86_401).contains(&expires), "{expires}");

    // A token for another resource is not a Key Vault token.
    let storage: Value = get("api-version=2019-08-01&resource=https://storage.azure.com", Some(&env.header))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut vault = Vault::new(&kv, "kv-one").await;
    vault.token = storage["access_token"].as_str().unwrap().into();
    let (status, _, body) = vault.call(reqwest::Method::GET, "/secrets", None).await;
    assert_eq!(status, 401);
    assert!(body["error"]["message"].as_str().unwrap().starts_with("AKV10022"), "{body}");
    kv.shutdown().await;
}

#[tokio::test]
async fn secret_wire_shapes_disabled_soft_delete_and_errors() {
    use reqwest::Method;
    let kv = start().await;
    let v = Vault::new(&kv, "kv-one").await;

    let (status, _, set) = v
        .call(
            Method::PUT,
            "/secrets/db-pass",
            Some(json!({"value": "s3cret", "contentType": "text/plain", "tags": {"a": "1"}, "attributes": {"exp": 2_000_000_000}})),
        )
        .await;
    assert_eq!(status, 200);
    let id = set["id"].as_str().unwrap();
    let version = id.rsplit('/').next().unwrap();
    assert_eq!(id, format!("{}/secrets/db-pass/{version}", v.url));
    assert_eq!(version.len(), 32);
    assert!(version.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert_eq!(set["value"], "s3cret");
    assert_eq!(set["contentType"], "text/plain");
    assert_eq!(set["tags"], json!({"a": "1"}));
    let attrs = &set["attributes"];
    assert_eq!(attrs["enabled"], true);
    assert_eq!(attrs["exp"], 2_000_000_000);
    assert!(attrs["created"].is_i64() && attrs["updated"].is_i64());
    assert_eq!(attrs["recoveryLevel"], "Recoverable+Purgeable");
    assert_eq!(attrs["recoverableDays"], 90);

    // Latest with and without the trailing slash, and by version.
    for path in ["/secrets/db-pass", "/secrets/db-pass/", &format!("/secrets/DB-PASS/{version}")] {
        let (status, _, got) = v.call(Method::GET, path, None).await;
        assert_eq!((status, got["id"].as_str()), (200, Some(id)), "{path}");
    }

    // nbf in the future is not enforced on reads.
    let future = chrono::Utc::now().timestamp() + 86_400;
    let (status, _, _) =
        v.call(Method::PUT, "/secrets/later", Some(json!({"value": "x", "attributes": {"nbf": future}}))).await;
    assert_eq!(status, 200);
    assert_eq!(v.call(Method::GET, "/secrets/later", None).await.0, 200);

    // A disabled latest version → 403 SecretDisabled.
    let (status, _, updated) =
        v.call(Method::PATCH, "/secrets/db-pass/", Some(json!({"attributes": {"enabled": false}}))).await;
    assert_eq!(status, 200);
    assert!(updated.get("value").is_none(), "update answers without the value");
    let (status, _, body) = v.call(Method::GET, "/secrets/db-pass/", None).await;
    assert_eq!(status, 403);
    assert_eq!(
        body,
        json!({"error": {"code": "Forbidden", "message": "Operation get is not allowed on a disabled secret.", "innererror": {"code": "SecretDisabled"}}})
    );

    // 15 tags at most.
    let tags: serde_json::Map<String, Value> = (0..16).map(|i| (format!("t{i}"), json!("v"))).collect();
    let (status, _, body) = v.call(Method::PUT, "/secrets/many-tags", Some(json!({"value": "x", "tags": tags}))).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "BadParameter");
    let fifteen: serde_json::Map<String, Value> = (0..15).map(|i| (format!("t{i}"), json!("v"))).collect();
    assert_eq!(v.call(Method::PUT, "/secrets/many-tags", Some(json!({"value": "x", "tags": fifteen}))).await.0, 200);

    // Not found.
    let (status, _, body) = v.call(Method::GET, "/secrets/nope", None).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "SecretNotFound");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("A secret with (name/id) nope was not found in this key vault.")
    );

    // Soft delete: the name stays taken until purge; recover brings every version back.
    let (status, _, deleted) = v.call(Method::DELETE, "/secrets/db-pass", None).await;
    assert_eq!(status, 200);
    assert_eq!(deleted["recoveryId"], format!("{}/deletedsecrets/db-pass", v.url));
    assert!(deleted["scheduledPurgeDate"].as_i64().unwrap() - deleted["deletedDate"].as_i64().unwrap() == 90 * 86_400);
    assert!(deleted.get("value").is_none());
    assert_eq!(v.call(Method::GET, "/secrets/db-pass", None).await.0, 404);
    let (status, _, body) = v.call(Method::PUT, "/secrets/db-pass", Some(json!({"value": "again"}))).await;
    assert_eq!(status, 409);
    assert_eq!(body["error"]["code"], "Conflict");
    assert_eq!(v.call(Method::GET, "/deletedsecrets/db-pass", None).await.0, 200);
    let (status, _, recovered) = v.call(Method::POST, "/deletedsecrets/db-pass/recover", None).await;
    assert_eq!((status, recovered["id"].as_str()), (200, Some(id)));
    assert_eq!(v.call(Method::DELETE, "/secrets/db-pass", None).await.0, 200);
    assert_eq!(v.call(Method::DELETE, "/deletedsecrets/db-pass", None).await.0, 204);
    let (status, _, body) = v.call(Method::GET, "/deletedsecrets/db-pass", None).await;
    assert_eq!((status, &body["error"]["code"]), (404, &json!("SecretNotFound")));
    assert_eq!(v.call(Method::PUT, "/secrets/db-pass", Some(json!({"value": "again"}))).await.0, 200);

    // Vaults are separate.
    let other = Vault::new(&kv, "kv-two").await;
    assert_eq!(other.call(Method::GET, "/secrets/db-pass", None).await.0, 404);

    // Unknown api-version.
    let (status, _, body) = v.call(Method::GET, &format!("{}/secrets?api-version=1999-01-01", v.url), None).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "BadParameter");
    kv.shutdown().await;
}

#[tokio::test]
async fn versions_page_with_maxresults_and_next_link() {
    let kv = start().await;
    for i in 0..7 {
        kv.store()
            .set_secret("kv-one", "paged", SecretSpec { value: format!("v{i}"), ..SecretSpec::default() })
            .unwrap();
    }
    let v = Vault::new(&kv, "kv-one").await;
    let mut link = format!("{}/secrets/paged/versions?{API}&maxresults=3", v.url);
    let mut pages = Vec::new();
    loop {
        let (status, _, page) = v.call(reqwest::Method::GET, &link, None).await;
        assert_eq!(status, 200, "{page}");
        let items = page["value"].as_array().unwrap();
        assert!(
            items.iter().all(|i| i.get("value").is_none() && i["id"].as_str().unwrap().contains("/secrets/paged/"))
        );
        pages.push(items.len());
        match page["nextLink"].as_str() {
            Some(next) => link = next.to_string(),
            None => break,
        }
    }
    assert_eq!(pages, vec![3, 3, 1]);
    kv.shutdown().await;
}

#[tokio::test]
async fn throttling_answers_429_with_the_service_body_and_no_retry_after() {
    let kv = KeyVaultEmulator::builder()
        .vault("kv-one")
        .throttling(Throttling { secret_create: 3, secret_other: 5, ..Throttling::key_vault() })
        .start()
        .await
        .unwrap();
    // A broad client of the emulator's protocol, as the system-assigned identity: its role, visibly.
    kv.grant_system_identity("Key Vault Administrator").unwrap();
    let v = Vault::new(&kv, "kv-one").await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(v.call(reqwest::Method::PUT, "/secrets/t", Some(json!({"value": "x"}))).await.0);
    }
    assert_eq!(statuses, vec![200, 200, 200, 429]);
    for _ in 0..5 {
        assert_eq!(v.call(reqwest::Method::GET, "/secrets/t", None).await.0, 200);
    }
    let (status, headers, body) = v.call(reqwest::Method::GET, "/secrets/t", None).await;
    assert_eq!(status, 429);
    assert!(!headers.contains_key("retry-after"));
    assert_eq!(
        serde_json::to_string(&body).unwrap(),
        r#"{"error":{"code":"Throttled","message":"Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached"}}"#
    );
    kv.shutdown().await;
}

#[tokio::test]
async fn faults_fail_the_configured_share_and_add_latency() {
    let kv = KeyVaultEmulator::builder()
        .vault("kv-one")
        .faults(Faults::none().with(
            OperationKind::SecretRead,
            FaultRule { internal_error_share: 0.0, unavailable_share: 0.5, latency: Duration::from_millis(100) },
        ))
        .start()
        .await
        .unwrap();
    // A broad client of the emulator's protocol, as the system-assigned identity: its role, visibly.
    kv.grant_system_identity("Key Vault Administrator").unwrap();
    let v = Vault::new(&kv, "kv-one").await;
    assert_eq!(v.call(reqwest::Method::PUT, "/secrets/f", Some(json!({"value": "x"}))).await.0, 200);
    let started = std::time::Instant::now();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(v.call(reqwest::Method::GET, "/secrets/f", None).await);
    }
    assert!(started.elapsed() >= Duration::from_millis(400));
    let codes: Vec<u16> = statuses.iter().map(|s| s.0).collect();
    assert_eq!(codes, vec![200, 503, 200, 503]);
    assert_eq!(statuses[1].2["error"]["code"], "ServiceUnavailable");
    kv.set_faults(Faults::none());
    assert_eq!(v.call(reqwest::Method::GET, "/secrets/f", None).await.0, 200);
    kv.shutdown().await;
}

#[tokio::test]
async fn state_survives_a_restart_when_persisted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vaults.json");
    let kv = KeyVaultEmulator::builder().vault("kv-one").persist_to(&path).start().await.unwrap();
    // A broad client of the emulator's protocol, as the system-assigned identity: its role, visibly.
    kv.grant_system_identity("Key Vault Administrator").unwrap();
    let first =
        kv.store().set_secret("kv-one", "kept", SecretSpec { value: "one".into(), ..Default::default() }).unwrap();
    kv.store().delete_secret("kv-one", "kept").ok();
    kv.store().recover_secret("kv-one", "kept").unwrap();
    kv.store().set_secret("kv-one", "gone", SecretSpec { value: "x".into(), ..Default::default() }).unwrap();
    kv.store().delete_secret("kv-one", "gone").unwrap();
    let v = Vault::new(&kv, "kv-one").await;
    let (status, _, key) =
        v.call(reqwest::Method::POST, "/keys/k1/create", Some(json!({"kty": "EC", "crv": "P-256"}))).await;
    assert_eq!(status, 200, "{key}");
    kv.shutdown().await;

    let kv = KeyVaultEmulator::builder().persist_to(&path).start().await.unwrap();
    // A broad client of the emulator's protocol, as the system-assigned identity: its role, visibly.
    kv.grant_system_identity("Key Vault Administrator").unwrap();
    let v = Vault::new(&kv, "kv-one").await;
    let (status, _, got) = v.call(reqwest::Method::GET, "/secrets/kept/", None).await;
    assert_eq!((status, got["value"].as_str()), (200, Some("one")));
    assert!(got["id"].as_str().unwrap().ends_with(&first.version.version));
    assert_eq!(v.call(reqwest::Method::GET, "/deletedsecrets/gone", None).await.0, 200);
    let (status, _, key_again) = v.call(reqwest::Method::GET, "/keys/k1", None).await;
    assert_eq!(status, 200);
    assert_eq!(key_again["key"]["x"], key["key"]["x"]);
    kv.shutdown().await;
}

#[tokio::test]
async fn change_feed_and_current_objects_report_new_versions() {
    let kv = start().await;
    let mut feed = kv.store().subscribe();
    let v = Vault::new(&kv, "kv-two").await;
    let (_, _, set) = v
        .call(
            reqwest::Method::PUT,
            "/secrets/watched",
            Some(json!({"value": "x", "attributes": {"exp": 1_900_000_000, "nbf": 1_800_000_000}})),
        )
        .await;
    let change = tokio::time::timeout(Duration::from_secs(5), feed.recv()).await.unwrap().unwrap();
    assert_eq!(change.vault, "kv-two");
    assert_eq!(change.kind, keyturn_local::keyvault::StoredKind::Secret);
    assert_eq!(change.name, "watched");
    assert_eq!(change.id, set["id"].as_str().unwrap());
    assert_eq!(change.expires.unwrap().timestamp(), 1_900_000_000);
    assert_eq!(change.not_before.unwrap().timestamp(), 1_800_000_000);
    let current = kv.store().current_objects();
    assert!(current.iter().any(|c| c.name == "watched" && c.version == change.version && c.expires == change.expires));
    kv.shutdown().await;
}
