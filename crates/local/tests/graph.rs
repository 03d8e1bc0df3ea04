//! The Microsoft Graph emulator over real sockets with a plain HTTP client: the application password operations,
//! Graph's token audience, permissions and error shapes, throttling, and the client-credentials sign-in that
//! tells which secrets work.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use keyturn_local::graph::{AppIds, GraphEmulator, Permission, RESOURCE, RunningGraph};
use keyturn_local::identity::{TENANT_ID, TokenRegistry};
use reqwest::Method;
use serde_json::{Value, json};

/// An emulator with one application, and a client trusting its CA.
async fn start(tokens: &TokenRegistry) -> (RunningGraph, AppIds, reqwest::Client) {
    let graph = GraphEmulator::builder().application("billing-api").start(tokens.clone()).await.unwrap();
    let app = graph.application("billing-api").unwrap();
    let ca = reqwest::Certificate::from_pem(graph.ca_pem().as_bytes()).unwrap();
    let http = reqwest::Client::builder().tls_certs_only([ca]).timeout(Duration::from_secs(30)).build().unwrap();
    (graph, app, http)
}

/// A Graph token for the service principal `principal` (its object id).
fn graph_token(tokens: &TokenRegistry, principal: &str) -> String {
    tokens.issue(RESOURCE, principal).0
}

async fn call(
    http: &reqwest::Client,
    graph: &RunningGraph,
    token: Option<&str>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = http.request(method, format!("{}{path}", graph.url()));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    let text = response.text().await.unwrap();
    (status, headers, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() })
}

/// The sign-in form of the client credentials grant.
fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

async fn post_form(http: &reqwest::Client, url: String, pairs: &[(&str, &str)]) -> (u16, Value) {
    let response = http
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(pairs))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// Signs in as the application with `secret` (client credentials, Graph's scope): the status and the answer.
async fn sign_in(http: &reqwest::Client, graph: &RunningGraph, app_id: &str, secret: &str) -> (u16, Value) {
    let pairs = [
        ("grant_type", "client_credentials"),
        ("client_id", app_id),
        ("client_secret", secret),
        ("scope", "https://graph.microsoft.com/.default"),
    ];
    post_form(http, graph.token_url(), &pairs).await
}

fn assert_graph_error(body: &Value, code: &str) {
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert!(body["error"]["innerError"]["request-id"].as_str().is_some(), "{body}");
    assert!(body["error"]["innerError"]["date"].as_str().is_some(), "{body}");
}

#[tokio::test]
async fn an_owner_adds_reads_and_removes_passwords_and_each_secret_signs_in_until_removed() {
    let tokens = TokenRegistry::default();
    let (graph, app, http) = start(&tokens).await;
    graph.grant("sp-keyturn", Permission::ApplicationReadWriteOwnedBy);
    assert!(graph.add_owner(&app.object_id, "sp-keyturn"));
    let token = graph_token(&tokens, "sp-keyturn");

    let end = (chrono::Utc::now() + chrono::Duration::days(30)).format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let body = json!({"passwordCredential": {"displayName": "rotated by keyturn", "endDateTime": end}});
    let path = format!("/v1.0/applications/{}/addPassword", app.object_id);
    let (status, _, added) = call(&http, &graph, Some(&token), Method::POST, &path, Some(body)).await;
    assert_eq!(status, 200, "{added}");
    let secret = added["secretText"].as_str().unwrap().to_owned();
    let key_id = added["keyId"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 40);
    assert!(uuid::Uuid::parse_str(&key_id).is_ok(), "{key_id}");
    assert_eq!(added["hint"].as_str(), Some(&secret[..3]));
    assert_eq!(
        (added["displayName"].as_str(), added["endDateTime"].as_str()),
        (Some("rotated by keyturn"), Some(end.as_str()))
    );

    // Reading shows the password without its secret; only the selected property; by object id or by appId.
    let (status, _, read) = call(
        &http,
        &graph,
        Some(&token),
        Method::GET,
        &format!("/v1.0/applications/{}?$select=passwordCredentials", app.object_id),
        None,
    )
    .await;
    assert_eq!(status, 200, "{read}");
    assert!(read.get("appId").is_none() && read.get("displayName").is_none(), "{read}");
    let listed = read["passwordCredentials"].as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0]["keyId"].as_str(), &listed[0]["secretText"]), (Some(key_id.as_str()), &Value::Null));
    let by_app_id = format!("/v1.0/applications(appId='{}')", app.app_id);
    let (status, _, whole) = call(&http, &graph, Some(&token), Method::GET, &by_app_id, None).await;
    assert_eq!((status, whole["id"].as_str()), (200, Some(app.object_id.as_str())), "{whole}");

    // The secret signs in (a Graph token for the application); another does not.
    let (status, signed_in) = sign_in(&http, &graph, &app.app_id, &secret).await;
    assert_eq!(status, 200, "{signed_in}");
    let info = tokens.validate(signed_in["access_token"].as_str().unwrap(), RESOURCE).unwrap();
    assert_eq!(info.client_id, app.app_id);
    assert_eq!(info.object_id, app.service_principal_id);
    let (status, refused) = sign_in(&http, &graph, &app.app_id, "not-the-secret-at-all").await;
    assert_eq!((status, refused["error"].as_str()), (401, Some("invalid_client")), "{refused}");
    assert_eq!(refused["error_codes"], json!([7000215]));

    // Removed: 204, it no longer signs in, and removing it again is a bad request.
    let remove = format!("/v1.0/applications/{}/removePassword", app.object_id);
    let (status, _, _) = call(&http, &graph, Some(&token), Method::POST, &remove, Some(json!({"keyId": key_id}))).await;
    assert_eq!(status, 204);
    assert_eq!(sign_in(&http, &graph, &app.app_id, &secret).await.0, 401);
    let (status, _, again) =
        call(&http, &graph, Some(&token), Method::POST, &remove, Some(json!({"keyId": key_id}))).await;
    assert_eq!(status, 400);
    assert_graph_error(&again, "Request_BadRequest");
    assert!(graph.passwords(&app.object_id).is_empty());
    assert_eq!(graph.calls(), (1, 1));
    graph.shutdown().await;
}

#[tokio::test]
async fn graph_refuses_what_graph_refuses_with_its_codes() {
    let tokens = TokenRegistry::default();
    let (graph, app, http) = start(&tokens).await;
    let read = format!("/v1.0/applications/{}", app.object_id);
    let add = format!("{read}/addPassword");

    // No token, and a Key Vault token: 401 InvalidAuthenticationToken with a Bearer challenge.
    let (status, headers, body) = call(&http, &graph, None, Method::GET, &read, None).await;
    assert_eq!(status, 401);
    assert_graph_error(&body, "InvalidAuthenticationToken");
    assert!(headers.get("www-authenticate").is_some());
    let vault_token = tokens.issue("https://vault.azure.net", "sp-keyturn").0;
    let (status, _, body) = call(&http, &graph, Some(&vault_token), Method::GET, &read, None).await;
    assert_eq!(status, 401);
    assert_graph_error(&body, "InvalidAuthenticationToken");

    // No Application permission; OwnedBy without owning the app: 403. ReadWrite.All: allowed.
    let token = graph_token(&tokens, "sp-keyturn");
    let (status, _, body) = call(&http, &graph, Some(&token), Method::POST, &add, Some(json!({}))).await;
    assert_eq!(status, 403);
    assert_graph_error(&body, "Authorization_RequestDenied");
    graph.grant("sp-keyturn", Permission::ApplicationReadWriteOwnedBy);
    let (status, _, body) = call(&http, &graph, Some(&token), Method::GET, &read, None).await;
    assert_eq!(status, 403, "not an owner: {body}");
    let admin = graph_token(&tokens, "sp-admin");
    graph.grant("sp-admin", Permission::ApplicationReadWriteAll);
    let (status, _, body) = call(&http, &graph, Some(&admin), Method::POST, &add, None).await;
    assert_eq!(status, 200, "an empty body adds a password with Graph's defaults: {body}");
    let end = chrono::DateTime::parse_from_rfc3339(body["endDateTime"].as_str().unwrap()).unwrap();
    assert!(end > chrono::Utc::now() + chrono::Duration::days(700), "two years by default: {end}");

    // Unknown application 404; malformed body, an end before the start and an unknown property 400.
    let missing = "/v1.0/applications/00000000-0000-0000-0000-000000000000/addPassword";
    let (status, _, body) = call(&http, &graph, Some(&admin), Method::POST, missing, Some(json!({}))).await;
    assert_eq!(status, 404);
    assert_graph_error(&body, "Request_ResourceNotFound");
    for bad in [
        json!({"passwordCredential": "secret please"}),
        json!({"passwordCredential": {"startDateTime": "2030-01-02T00:00:00Z", "endDateTime": "2030-01-01T00:00:00Z"}}),
    ] {
        let (status, _, body) = call(&http, &graph, Some(&admin), Method::POST, &add, Some(bad)).await;
        assert_eq!(status, 400);
        assert_graph_error(&body, "Request_BadRequest");
    }
    let (status, _, body) =
        call(&http, &graph, Some(&admin), Method::GET, &format!("{read}?$select=secrets"), None).await;
    assert_eq!(status, 400);
    assert_graph_error(&body, "Request_BadRequest");
    let (status, _, body) =
        call(&http, &graph, Some(&admin), Method::POST, &format!("{read}/removePassword"), Some(json!({"keyId": "x"})))
            .await;
    assert_eq!(status, 400, "{body}");

    // Throttled: 429 TooManyRequests with Retry-After, then served again.
    graph.throttle_next(1);
    let (status, headers, body) = call(&http, &graph, Some(&admin), Method::GET, &read, None).await;
    assert_eq!(status, 429);
    assert_graph_error(&body, "TooManyRequests");
    assert_eq!(headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    assert_eq!(call(&http, &graph, Some(&admin), Method::GET, &read, None).await.0, 200);
    assert_eq!(graph.throttled_answers(), 1);
    assert_eq!(graph.calls(), (1, 0));
    graph.shutdown().await;
}

#[tokio::test]
async fn sign_in_refuses_expired_secrets_other_tenants_and_scopes_without_default() {
    let tokens = TokenRegistry::default();
    let (graph, app, http) = start(&tokens).await;
    let expired = graph.add_password(&app.object_id, "expired", chrono::Duration::seconds(-1)).unwrap();
    let (status, body) = sign_in(&http, &graph, &app.app_id, &expired.secret_text).await;
    assert_eq!((status, &body["error_codes"]), (401, &json!([7000222])), "{body}");
    assert!(body["error_description"].as_str().unwrap().starts_with("AADSTS7000222: "), "{body}");

    let valid = graph.add_password(&app.object_id, "valid", chrono::Duration::days(1)).unwrap();
    assert!(!format!("{valid:?}").contains(&valid.secret_text), "the secret is never in Debug output");
    let (status, body) = sign_in(&http, &graph, "11111111-2222-3333-4444-555555555555", &valid.secret_text).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("unauthorized_client")), "{body}");
    let other_tenant = graph.token_url().replace(TENANT_ID, "contoso.onmicrosoft.com");
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", app.app_id.as_str()),
        ("client_secret", valid.secret_text.as_str()),
        ("scope", "https://graph.microsoft.com/.default"),
    ];
    assert_eq!(post_form(&http, other_tenant, &form).await.0, 400);
    let mut no_default = form;
    no_default[3].1 = "https://graph.microsoft.com/Application.ReadWrite.All";
    let (status, body) = post_form(&http, graph.token_url(), &no_default).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_scope")), "{body}");
    assert_eq!(sign_in(&http, &graph, &app.app_id, &valid.secret_text).await.0, 200);
    // The emulator's own helper signs in the same way.
    assert!(graph.sign_in(&app.app_id, &valid.secret_text).await.is_ok());
    let refused = graph.sign_in(&app.app_id, &expired.secret_text).await.unwrap_err();
    assert!(refused.starts_with("AADSTS7000222: "), "{refused}");
    graph.shutdown().await;
}
