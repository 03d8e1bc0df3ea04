//! The ARM emulator's authorization over real sockets: each handler identity holds what infra/roles.json grants it
//! for a deployment (`keyturn key operator` at each bound resource for near-expiry, and for the sweep only with
//! `sweepRepairEnabled`), and anything else is ARM's 403 `AuthorizationFailed`, before the resource is looked up.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use keyturn_local::arm::{ArmEmulator, RESOURCE, RunningArm};
use keyturn_local::identity::ManagedIdentity;
use keyturn_local::keyvault::{KeyVaultEmulator, RunningEmulator};
use keyturn_local::roles::{Deployment, RoleMatrix};
use serde_json::Value;

const VAULT: &str = "kv-arm";
const RG: &str = "/subscriptions/0000/resourceGroups/rg-arm/providers";

fn cache() -> String {
    format!("{RG}/Microsoft.Cache/redis/bound")
}

fn queue_rule() -> String {
    format!("{RG}/Microsoft.ServiceBus/namespaces/shop/queues/orders/authorizationRules/send")
}

fn unbound() -> String {
    format!("{RG}/Microsoft.Cache/redis/unbound")
}

async fn stack() -> (RunningEmulator, RunningArm) {
    let kv = KeyVaultEmulator::builder().vault(VAULT).start().await.unwrap();
    let arm = ArmEmulator::builder()
        .resource(cache())
        .resource(queue_rule())
        .resource(unbound())
        .assignments(kv.arm_assignments().clone())
        .start(kv.token_registry().unwrap())
        .await
        .unwrap();
    (kv, arm)
}

/// `POST {resource}/{operation}` as `identity`: the status, the error code (if any) and the body.
async fn call(kv: &RunningEmulator, arm: &RunningArm, identity: &ManagedIdentity, path: &str) -> (u16, Value) {
    let (token, _) = kv.token_registry().unwrap().issue_for(RESOURCE, identity);
    let ca = reqwest::Certificate::from_pem(arm.ca_pem().as_bytes()).unwrap();
    let http = reqwest::Client::builder().tls_certs_only([ca]).timeout(Duration::from_secs(20)).build().unwrap();
    let response = http
        .post(format!("{}{path}?api-version={}", arm.url(), api_version(path)))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(r#"{"keyType":"Secondary"}"#)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let failure_cause = response.headers().get("x-ms-failure-cause").map(|v| v.to_str().unwrap().to_owned());
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status == 403 {
        assert_eq!(failure_cause.as_deref(), Some("gateway"), "ARM's gateway refuses, not the resource provider");
    }
    (status, body)
}

fn api_version(path: &str) -> &'static str {
    if path.contains("Microsoft.ServiceBus") { "2024-01-01" } else { "2024-11-01" }
}

fn deployment(flags: &[&str]) -> Deployment {
    Deployment {
        monitored_vaults: vec![VAULT.into()],
        azure_key_resources: vec![cache(), queue_rule()],
        flags: flags.iter().map(|f| (*f).to_owned()).collect(),
        ..Deployment::default()
    }
}

#[tokio::test]
async fn near_expiry_and_the_repairing_sweep_hold_the_key_operator_on_the_bound_resources_only() {
    let (kv, arm) = stack().await;
    let matrix = RoleMatrix::embedded().unwrap();
    let near_expiry = kv.handler_identity(&matrix, "near-expiry", &deployment(&[])).unwrap();
    let repairing = kv.handler_identity(&matrix, "sweep", &deployment(&["sweepRepairEnabled"])).unwrap();
    assert_eq!(near_expiry.arm_assignments.len(), 2, "{:?}", near_expiry.arm_assignments);
    for identity in [&near_expiry.identity, &repairing.identity] {
        for (path, field) in [
            (format!("{}/listKeys", cache()), "primaryKey"),
            (format!("{}/regenerateKey", cache()), "secondaryKey"),
            (format!("{}/listKeys", queue_rule()), "primaryConnectionString"),
        ] {
            let (status, body) = call(&kv, &arm, identity, &path).await;
            assert_eq!(status, 200, "{path}: {body}");
            assert!(body[field].is_string(), "{path}: {body}");
        }
    }
    assert_eq!(arm.regenerations(&cache(), "secondary"), Some(2));

    // A resource the deployment does not bind: no role there, so no key.
    let (status, body) = call(&kv, &arm, &near_expiry.identity, &format!("{}/listKeys", unbound())).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("AuthorizationFailed")), "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    for says in [
        format!("The client '{0}' with object id '{0}'", near_expiry.identity.object_id),
        "does not have authorization to perform action 'Microsoft.Cache/redis/listKeys/action'".to_owned(),
        format!("over scope '{}'", unbound()),
    ] {
        assert!(message.contains(&says), "{says}: {message}");
    }
    // A resource that does not exist, where the identity holds nothing: 403 too (ARM authorizes first).
    let missing = format!("{RG}/Microsoft.Cache/redis/nosuch/listKeys");
    assert_eq!(call(&kv, &arm, &near_expiry.identity, &missing).await.0, 403);
    kv.shutdown().await;
}

#[tokio::test]
async fn the_other_handlers_and_the_sweep_without_repair_get_authorization_failed() {
    let (kv, arm) = stack().await;
    let matrix = RoleMatrix::embedded().unwrap();
    for (handler, flags) in [
        ("new-version", &[][..]),
        ("expired", &["expiredActionsEnabled"][..]),
        ("test-event", &[][..]),
        ("sweep", &[][..]),
    ] {
        let identity = kv.handler_identity(&matrix, handler, &deployment(flags)).unwrap();
        assert!(identity.arm_assignments.is_empty(), "{handler}");
        let regenerate = format!("{}/regenerateKey", cache());
        let (status, body) = call(&kv, &arm, &identity.identity, &regenerate).await;
        assert_eq!((status, body["error"]["code"].as_str()), (403, Some("AuthorizationFailed")), "{handler}: {body}");
        let (status, _) = call(&kv, &arm, &identity.identity, &format!("{}/regenerateKeys", queue_rule())).await;
        assert_eq!(status, 403, "{handler}");
    }
    assert_eq!(arm.regenerations(&cache(), "secondary"), Some(0), "no regeneration went through");
    assert_eq!(arm.lists(&cache()), Some(0), "nor any list");
    kv.shutdown().await;
}

#[tokio::test]
async fn new_version_holds_its_consumer_roles_on_the_bound_apps_only() {
    let web = format!("{RG}/Microsoft.Web/sites/shop-web");
    let other_web = format!("{RG}/Microsoft.Web/sites/unbound-web");
    let app = format!("{RG}/Microsoft.App/containerApps/orders");
    let kv = KeyVaultEmulator::builder().vault(VAULT).start().await.unwrap();
    let apps = keyturn_local::arm::consumers::ConsumerApps::new()
        .web_app(&web)
        .web_app(&other_web)
        .container_app(&app, &[("orders--r1", true)]);
    let arm = ArmEmulator::builder()
        .consumers(apps.clone())
        .assignments(kv.arm_assignments().clone())
        .start(kv.token_registry().unwrap())
        .await
        .unwrap();
    let matrix = RoleMatrix::embedded().unwrap();
    let bound = Deployment {
        monitored_vaults: vec![VAULT.into()],
        consumer_apps: vec![web.clone(), app.clone()],
        ..Deployment::default()
    };
    let new_version = kv.handler_identity(&matrix, "new-version", &bound).unwrap();
    let near_expiry = kv.handler_identity(&matrix, "near-expiry", &bound).unwrap();
    let refresh = |id: &str| format!("{id}/config/configreferences/appsettings/refresh?api-version=2022-03-01");
    let restart = format!("{app}/revisions/orders--r1/restart?api-version=2025-07-01");
    let post = |identity: &ManagedIdentity, path: String| {
        let (token, _) = kv.token_registry().unwrap().issue_for(RESOURCE, identity);
        let ca = reqwest::Certificate::from_pem(arm.ca_pem().as_bytes()).unwrap();
        let http = reqwest::Client::builder().tls_certs_only([ca]).timeout(Duration::from_secs(20)).build().unwrap();
        let url = format!("{}{path}", arm.url());
        async move {
            let response = http.post(url).bearer_auth(token).header("content-length", "0").send().await.unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            (status, body["error"]["code"].as_str().map(str::to_owned))
        }
    };
    assert_eq!(post(&new_version.identity, refresh(&web)).await, (200, None));
    assert_eq!(post(&new_version.identity, restart.clone()).await, (200, None));
    let refused = (403, Some("AuthorizationFailed".to_owned()));
    assert_eq!(post(&new_version.identity, refresh(&other_web)).await, refused, "an app the deployment does not bind");
    assert_eq!(post(&near_expiry.identity, refresh(&web)).await, refused, "another handler's identity");
    assert_eq!(post(&near_expiry.identity, restart).await, refused);
    assert_eq!(
        (apps.calls(&web), apps.calls(&other_web), apps.calls(&app)),
        (Some((1, 1)), Some((0, 0)), Some((1, 1)))
    );
}
