//! The `webhook` provider end to end: the engine in a handler-like child process against the Key Vault
//! emulator and a rotator written here (HTTPS on loopback with its own CA) that checks keyturn's signature
//! the way docs/providers.md tells receivers to, and can be down (not listening, or answering 503).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::BodyExt;
use keyturn_local::keyvault::server::{self, ServerHandle};
use keyturn_local::tls::LocalCa;
use keyturn_rotation::provider::{Provider, pending};
use keyturn_rotation::{Engine, InProcessLock, RotationOutcome};
use keyturn_vault::KeyVault;
use support::{Parent, SCENARIO, Step, VAULT, event, new_secret, rotate_until_crash, tags};

const TEST: &str = "webhook_rotator";
const BOUND: Duration = Duration::from_secs(60);
const SIGNING_SECRET: &str = "rotator-signing-secret-0123456789";

/// What the rotator saw: one entry per request, in order.
#[derive(Debug, Clone)]
struct Call {
    kind: String,
    secret: String,
    idempotency_key: String,
    value: Option<String>,
}

#[derive(Default)]
struct RotatorState {
    unavailable: AtomicBool,
    calls: Mutex<Vec<Call>>,
    issued: Mutex<Vec<String>>,
}

/// The user's rotator: verifies the signature, issues a new credential on `create`, confirms on `test`
/// that the value is one it issued.
struct Rotator {
    state: Arc<RotatorState>,
    ca: LocalCa,
    addr: SocketAddr,
    server: Option<ServerHandle>,
    _dir: tempfile::TempDir,
}

impl Rotator {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = LocalCa::generate(dir.path(), &[]).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut rotator = Self { state: Arc::default(), ca, addr, server: None, _dir: dir };
        rotator.serve(listener);
        rotator
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let state = self.state.clone();
        let acceptor = tokio_rustls::TlsAcceptor::from(self.ca.server_config());
        self.server =
            Some(server::spawn(listener, Some(acceptor), move |req: http::Request<hyper::body::Incoming>| {
                let state = state.clone();
                async move {
                    let signature =
                        req.headers().get(keyturn_notify::SIGNATURE_HEADER).map(|v| v.to_str().unwrap().to_owned());
                    let idempotency_key = req
                        .headers()
                        .get("idempotency-key")
                        .map(|v| v.to_str().unwrap().to_owned())
                        .unwrap_or_default();
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    let Some(signature) = signature else { return server::empty(http::StatusCode::UNAUTHORIZED) };
                    if keyturn_notify::verify_signature(
                        SIGNING_SECRET.as_bytes(),
                        &signature,
                        &body,
                        chrono::Utc::now(),
                    )
                    .is_err()
                    {
                        return server::empty(http::StatusCode::UNAUTHORIZED);
                    }
                    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    let kind = json["type"].as_str().unwrap().to_owned();
                    let value = json["value"].as_str().map(str::to_owned);
                    state.calls.lock().unwrap().push(Call {
                        kind: kind.clone(),
                        secret: json["secret"].as_str().unwrap().to_owned(),
                        idempotency_key,
                        value: value.clone(),
                    });
                    if state.unavailable.load(Ordering::SeqCst) {
                        return server::empty(http::StatusCode::SERVICE_UNAVAILABLE);
                    }
                    match kind.as_str() {
                        "keyturn.rotation.create" => {
                            let issued = format!("tok-{}", uuid_like());
                            state.issued.lock().unwrap().push(issued.clone());
                            let next = if json["credential_id"] == "primary" { "secondary" } else { "primary" };
                            server::json_response(
                                http::StatusCode::OK,
                                &serde_json::json!({ "value": issued, "credential_id": next }),
                            )
                        }
                        "keyturn.rotation.test"
                            if state.issued.lock().unwrap().contains(&value.unwrap_or_default()) =>
                        {
                            server::empty(http::StatusCode::NO_CONTENT)
                        }
                        _ => server::empty(http::StatusCode::UNPROCESSABLE_ENTITY),
                    }
                }
            }));
    }

    /// Down: the port stops listening.
    async fn stop_listening(&mut self) {
        self.server.take().unwrap().shutdown().await;
    }

    /// Back up on the same port.
    async fn listen_again(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    fn calls(&self, kind: &str, secret: &str) -> Vec<Call> {
        self.state
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.kind.ends_with(kind) && c.secret == secret)
            .cloned()
            .collect()
    }
}

fn uuid_like() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).unwrap();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn scenario() {
    let mut rotator = Rotator::start().await;
    // The rotator's CA joins the bundle the parent wrote, as a deployment would add a private CA.
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("ca.pem");
    let parent_bundle = std::fs::read_to_string(std::env::var("KEYTURN_CA_FILE").unwrap()).unwrap();
    std::fs::write(&bundle, format!("{parent_bundle}\n{}", rotator.ca.ca_pem())).unwrap();
    let rotators =
        format!("billing=https://{}/rotate?secret={SIGNING_SECRET}&vaults={VAULT}&names=api-token*", rotator.addr);
    let settings = support::child_settings(&[
        ("KEYTURN_WEBHOOK_ROTATORS", rotators),
        ("KEYTURN_CA_FILE", bundle.to_string_lossy().into_owned()),
    ]);
    let (vault, providers) = support::vault_and_providers(&settings);
    let provider: Arc<dyn Provider> = providers.get("webhook").unwrap().clone();
    assert!(!format!("{provider:?}").contains(SIGNING_SECRET));
    let engine = Engine::new(vault.clone(), Arc::new(InProcessLock::default()), providers);
    let rotate = |name: &'static str, version: String| {
        let engine = engine.clone();
        async move { tokio::time::timeout(BOUND, engine.rotate(&event(name, &version))).await.unwrap() }
    };
    let policy = tags(&[
        ("KeyturnRotation", "webhook"),
        ("KeyturnWebhook", "billing"),
        ("ValidityPeriodDays", "30"),
        ("CredentialId", "primary"),
    ]);
    let v0 = vault.set_secret(VAULT, "api-token", new_secret("old-token", policy.clone())).await.unwrap().version;

    // Down (nothing listening): retryable, nothing promoted, nothing pending.
    rotator.stop_listening().await;
    let error = rotate("api-token", v0.clone()).await.unwrap_err();
    assert!(error.is_retryable(), "{error}");
    assert!(error.to_string().contains("unreachable"), "{error}");
    assert_eq!(vault.latest_secret(VAULT, "api-token").await.unwrap().properties.version, v0);
    let home = format!("api-token{}", pending::SUFFIX);
    assert_eq!(vault.latest_secret(VAULT, &home).await.unwrap_err().status(), Some(404));

    // Up but failing (503): retryable, nothing promoted.
    rotator.listen_again().await;
    rotator.state.unavailable.store(true, Ordering::SeqCst);
    let error = rotate("api-token", v0.clone()).await.unwrap_err();
    assert!(error.is_retryable() && error.to_string().contains("HTTP 503"), "{error}");
    assert_eq!(vault.latest_secret(VAULT, "api-token").await.unwrap().properties.version, v0);

    // Back up: the redelivery completes with the rotator's credential, tested by it, then promoted.
    rotator.state.unavailable.store(false, Ordering::SeqCst);
    let outcome = rotate("api-token", v0.clone()).await.unwrap();
    assert!(matches!(&outcome, RotationOutcome::Rotated { from, .. } if from == &v0), "{outcome}");
    let latest = vault.latest_secret(VAULT, "api-token").await.unwrap();
    let issued = rotator.state.issued.lock().unwrap().clone();
    assert_eq!(issued.len(), 1);
    assert_eq!(latest.value.expose(), issued[0]);
    assert_eq!(latest.properties.tags["CredentialId"], "secondary");
    let tests = rotator.calls(".test", "api-token");
    assert_eq!(tests.len(), 1);
    assert_eq!(tests[0].value.as_deref(), Some(issued[0].as_str()));
    let creates = rotator.calls(".create", "api-token");
    assert_eq!(creates.len(), 2, "one refused (503), one answered");
    let key = format!("{VAULT}/api-token/{v0}");
    assert!(rotator.calls("", "api-token").iter().all(|c| c.idempotency_key == key), "one rotation id throughout");

    // A duplicate delivery: no new call.
    assert!(matches!(rotate("api-token", v0.clone()).await.unwrap(), RotationOutcome::AlreadyRotated { .. }));
    assert_eq!(rotator.calls("", "api-token").len(), 3);

    // A crash after the rotator answered: the replay resumes from the pending home, no second credential.
    let w0 = vault.set_secret(VAULT, "api-token-2", new_secret("old-token", policy)).await.unwrap().version;
    tokio::time::timeout(BOUND, rotate_until_crash(vault.clone(), provider, Step::Create, &event("api-token-2", &w0)))
        .await
        .unwrap();
    assert!(matches!(rotate("api-token-2", w0).await.unwrap(), RotationOutcome::Rotated { .. }));
    assert_eq!(rotator.calls(".create", "api-token-2").len(), 1, "the replay did not ask for a second credential");
    let issued = rotator.state.issued.lock().unwrap().clone();
    assert_eq!(vault.latest_secret(VAULT, "api-token-2").await.unwrap().value.expose(), issued[1]);

    // A secret the rotator is not bound to (names=api-token*), naming it with the writer's own CredentialId:
    // refused permanently, naming the binding, and the rotator receives nothing.
    let calls_before = rotator.state.calls.lock().unwrap().len();
    let stolen = tags(&[
        ("KeyturnRotation", "webhook"),
        ("KeyturnWebhook", "billing"),
        ("ValidityPeriodDays", "30"),
        ("CredentialId", "someone-elses"),
    ]);
    let x0 = vault.set_secret(VAULT, "other-token", new_secret("mine", stolen)).await.unwrap().version;
    let error = rotate("other-token", x0.clone()).await.unwrap_err();
    assert!(!error.is_retryable(), "{error}");
    assert!(error.to_string().contains("rotator 'billing' is not bound to secret 'other-token'"), "{error}");
    assert_eq!(rotator.state.calls.lock().unwrap().len(), calls_before, "the rotator received nothing");
    assert_eq!(vault.latest_secret(VAULT, "other-token").await.unwrap().properties.version, x0);
}

#[tokio::test]
async fn webhook_rotator() {
    match std::env::var(SCENARIO).as_deref() {
        Ok("webhook") => return scenario().await,
        Ok(other) => panic!("unknown scenario {other}"),
        Err(_) => {}
    }
    let parent = Parent::start().await;
    parent.run_child(TEST, "webhook", &[], &[]).await;
    parent.stop().await;
}
