//! The stack as one piece: a secret set in the vault emulator becomes Event Grid events at the right clock
//! times, delivered to a real HTTP endpoint, with the clock driven through the management API.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::TimeDelta;
use keyturn_events::{Event, KeyVaultEventType};
use keyturn_local::eventgrid::EventGridOptions;
use keyturn_local::keyvault::secrets::SecretPatch;
use keyturn_local::keyvault::store::AttributeInput;
use keyturn_local::keyvault::{KeyVaultEmulator, SecretSpec};
use keyturn_local::stack::LocalStack;
use serde_json::{Value, json};
use warp::Filter;

/// An endpoint that accepts every delivery and keeps the events.
async fn sink() -> (url::Url, Arc<Mutex<Vec<Event>>>) {
    let got: Arc<Mutex<Vec<Event>>> = Arc::default();
    let recorder = got.clone();
    let route = warp::post().and(warp::body::json()).map(move |batch: Vec<Value>| {
        recorder.lock().unwrap().extend(batch.into_iter().map(|v| Event::from_value(v).unwrap()));
        warp::reply::json(&json!({}))
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = url::Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    tokio::spawn(warp::serve(route).incoming(listener).run());
    (url, got)
}

/// One vault, throttling off, Event Grid retries at 1/1000 of real time. Keep the directory alive as long as
/// the stack: it holds the CA file.
async fn start_stack() -> (LocalStack, tempfile::TempDir) {
    let ca_dir = tempfile::tempdir().unwrap();
    let stack = LocalStack::start(
        KeyVaultEmulator::builder().vault("kv-one").no_throttling().ca_dir(ca_dir.path()),
        EventGridOptions { time_scale: 0.001, ..EventGridOptions::default() },
    )
    .await
    .unwrap();
    (stack, ca_dir)
}

async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn vault_changes_and_the_clock_become_delivered_events() {
    let (stack, _ca_dir) = start_stack().await;
    let (endpoint, got) = sink().await;
    let http = reqwest::Client::new();
    let management = stack.management_url();
    let created = http
        .post(format!("{management}/subscriptions"))
        .json(&json!({"name": "all", "endpointUrl": endpoint, "endpointType": "AzureFunction"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());

    let now = stack.emulator().clock().now();
    let exp = now + TimeDelta::days(31);
    let spec = SecretSpec {
        value: "s3cr3t-value".into(),
        content_type: None,
        attributes: AttributeInput { exp: Some(exp.timestamp()), ..AttributeInput::default() },
        tags: Default::default(),
    };
    let view = stack.emulator().store().set_secret("kv-one", "db-password", spec).unwrap();
    wait_for("NewVersionCreated", || got.lock().unwrap().len() == 1).await;

    let advanced = http.post(format!("{management}/clock/advance")).json(&json!({"days": 1})).send().await.unwrap();
    assert_eq!(advanced.status(), 200);
    wait_for("NearExpiry", || got.lock().unwrap().len() == 2).await;

    let events = got.lock().unwrap().clone();
    let types: Vec<&str> = events.iter().map(Event::event_type).collect();
    assert_eq!(
        types,
        [KeyVaultEventType::SecretNewVersionCreated.as_str(), KeyVaultEventType::SecretNearExpiry.as_str()]
    );
    let object = &events[1].key_vault().unwrap().object;
    assert_eq!(object.version(), Some(view.version.version.as_str()));
    assert_eq!(object.expires().map(|t| t.timestamp()), Some(exp.timestamp()));
    assert_eq!(object.id().host_str(), Some("kv-one.vault.azure.net"), "events name the vault as Key Vault does");
    for event in &events {
        assert!(!event.to_value().to_string().contains("s3cr3t-value"), "an event never carries a value");
    }

    let env: std::collections::HashMap<String, String> = stack.handler_env().into_iter().collect();
    assert_eq!(env["KEYTURN_VAULTS"], format!("kv-one={}", stack.emulator().vault_url("kv-one").unwrap()));
    assert!(std::path::Path::new(&env["KEYTURN_CA_FILE"]).exists());
    assert!(env["IDENTITY_ENDPOINT"].starts_with("http://127.0.0.1:"));
    let about: Value = http.get(&management).send().await.unwrap().json().await.unwrap();
    assert_eq!(about["vaults"]["kv-one"], stack.emulator().vault_url("kv-one").unwrap());
    stack.shutdown().await;
}

#[tokio::test]
async fn extending_exp_rearms_the_expiry_events() {
    let (stack, _ca_dir) = start_stack().await;
    let (endpoint, got) = sink().await;
    stack
        .grid()
        .subscribe(
            keyturn_local::eventgrid::Subscription::new(
                "near",
                endpoint,
                keyturn_local::eventgrid::EndpointType::AzureFunction,
            )
            .event_types([KeyVaultEventType::SecretNearExpiry.as_str()]),
        )
        .await
        .unwrap();
    let clock = stack.emulator().clock().clone();
    let store = stack.emulator().store();
    let exp = clock.now() + TimeDelta::days(31);
    let spec = SecretSpec {
        value: "v".into(),
        content_type: None,
        attributes: AttributeInput { exp: Some(exp.timestamp()), ..AttributeInput::default() },
        tags: Default::default(),
    };
    let view = store.set_secret("kv-one", "api-key", spec).unwrap();
    // Moved out by 60 days before the warning is due: the old deadline must not fire.
    let later = AttributeInput { exp: Some((exp + TimeDelta::days(60)).timestamp()), ..AttributeInput::default() };
    let patch = SecretPatch { attributes: later, ..SecretPatch::default() };
    store.update_secret("kv-one", "api-key", Some(&view.version.version), patch).unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await; // one resync period
    clock.advance(Duration::from_secs(2 * 86_400));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(got.lock().unwrap().is_empty(), "the old exp fired: {:?}", got.lock().unwrap());
    clock.advance(Duration::from_secs(60 * 86_400));
    wait_for("NearExpiry at the new exp - 30 days", || got.lock().unwrap().len() == 1).await;
    stack.shutdown().await;
}

/// `stack.handler_identity`: a handler's own identity with exactly its `infra/roles.json` grants, selected by
/// the `AZURE_CLIENT_ID` it returns; `handler_identity_from` reads another matrix file.
#[tokio::test]
async fn handler_identities_follow_the_role_matrix_embedded_or_loaded() {
    use keyturn_local::rbac::Scope;
    use keyturn_local::roles::{Deployment, EMBEDDED, RoleMatrix};
    let ca_dir = tempfile::tempdir().unwrap();
    let stack = LocalStack::start(
        KeyVaultEmulator::builder().vault("kv-one").no_throttling().ca_dir(ca_dir.path()),
        EventGridOptions::default(),
    )
    .await
    .unwrap();
    for name in ["keyturn-canary", "db-password"] {
        stack
            .emulator()
            .store()
            .set_secret("kv-one", name, SecretSpec { value: "v".into(), ..SecretSpec::default() })
            .unwrap();
    }
    let deployment = Deployment {
        monitored_vaults: vec!["kv-one".into()],
        canary_secret: Some("keyturn-canary".into()),
        ..Deployment::default()
    };
    let ca = reqwest::Certificate::from_pem(stack.emulator().ca_pem().as_bytes()).unwrap();
    let http = reqwest::Client::builder().tls_certs_only([ca]).build().unwrap();
    let env: std::collections::HashMap<String, String> = stack.handler_env().into_iter().collect();
    // What a handler does with its settings: ask the endpoint for AZURE_CLIENT_ID's token, then tag a secret.
    let tag = |settings: Vec<(String, String)>, secret: &'static str| {
        let http = http.clone();
        let env = env.clone();
        let vault = stack.emulator().vault_url("kv-one").unwrap().to_owned();
        async move {
            let settings: std::collections::HashMap<String, String> = settings.into_iter().collect();
            let token: Value = http
                .get(format!(
                    "{}?api-version=2019-08-01&resource=https://vault.azure.net&client_id={}",
                    env["IDENTITY_ENDPOINT"], settings["AZURE_CLIENT_ID"]
                ))
                .header("x-identity-header", &env["IDENTITY_HEADER"])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            http.patch(format!("{vault}/secrets/{secret}?api-version=2025-07-01"))
                .bearer_auth(token["access_token"].as_str().unwrap())
                .json(&json!({"tags": {"KeyturnCanaryResult": "pass"}}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };

    let test_event = stack.handler_identity("test-event", &deployment).unwrap();
    assert_eq!(tag(test_event.app_settings(), "keyturn-canary").await, 200);
    assert_eq!(tag(test_event.app_settings(), "db-password").await, 403);
    assert!(
        test_event.not_emulated.iter().any(|(role, scope)| role == "Storage Blob Data Owner" && scope == "hostStorage")
    );

    // An edited copy of the matrix (Secrets Officer on the whole vault) grants what it says.
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), EMBEDDED.replace("\"scope\": \"canarySecret\"", "\"scope\": \"vault\"")).unwrap();
    let matrix = RoleMatrix::load(file.path()).unwrap();
    let wider = stack.handler_identity_from(&matrix, "test-event", &deployment).unwrap();
    assert!(
        wider
            .assignments
            .iter()
            .any(|a| a.scope == Scope::vault("kv-one") && a.role.name == "Key Vault Secrets Officer")
    );
    assert_eq!(tag(wider.app_settings(), "db-password").await, 200);
    let error = RoleMatrix::load(&ca_dir.path().join("missing.json")).unwrap_err().to_string();
    assert!(error.contains("missing.json"), "{error}");
    stack.shutdown().await;
}
