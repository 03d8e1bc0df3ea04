//! The post-promotion health probe: the engine rotates a secret, then asks the probe the deployment binds to it
//! (a real HTTPS server on loopback with its own CA, checking keyturn's signature as docs/notifications.md tells
//! webhook receivers to). A failing probe is in the outcome with what `keyturn rollback` can do; a passing one
//! says so; a secret no probe covers is not probed; the probe never receives the value.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use http_body_util::BodyExt;
use keyturn_config::health::{HEALTH_PROBE_SECRET, HEALTH_PROBES};
use keyturn_events::{ObjectKind, ObjectRef};
use keyturn_local::keyvault::server::{self, ServerHandle};
use keyturn_local::tls::LocalCa;
use keyturn_rotation::{Engine, HealthProber, InProcessLock, Providers, Request, RotationOutcome};
use keyturn_vault::testing::FakeVault;
use keyturn_vault::{Collection, KeyVault};

const SIGNING_SECRET: &str = "probe-signing-secret-0123456789";

/// The probe: answers `status` to a correctly signed request, 401 otherwise; keeps every body it accepted.
struct Probe {
    status: Arc<AtomicU16>,
    bodies: Arc<Mutex<Vec<serde_json::Value>>>,
    url: String,
    ca: LocalCa,
    _server: ServerHandle,
    _dir: tempfile::TempDir,
}

impl Probe {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = LocalCa::generate(dir.path(), &[]).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://127.0.0.1:{}/healthz/secrets", listener.local_addr().unwrap().port());
        let (status, bodies) = (Arc::new(AtomicU16::new(200)), Arc::new(Mutex::new(Vec::new())));
        let (answer, kept) = (status.clone(), bodies.clone());
        let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config());
        let server = server::spawn(listener, Some(acceptor), move |req: http::Request<hyper::body::Incoming>| {
            let (answer, kept) = (answer.clone(), kept.clone());
            async move {
                let signature =
                    req.headers().get(keyturn_notify::SIGNATURE_HEADER).map(|v| v.to_str().unwrap().to_owned());
                let body = req.into_body().collect().await.unwrap().to_bytes();
                let signed = signature.is_some_and(|signature| {
                    keyturn_notify::verify_signature(SIGNING_SECRET.as_bytes(), &signature, &body, chrono::Utc::now())
                        .is_ok()
                });
                if !signed {
                    return server::empty(http::StatusCode::UNAUTHORIZED);
                }
                kept.lock().unwrap().push(serde_json::from_slice(&body).unwrap());
                server::empty(http::StatusCode::from_u16(answer.load(Ordering::SeqCst)).unwrap())
            }
        });
        Self { status, bodies, url, ca, _server: server, _dir: dir }
    }
}

fn engine(vault: Arc<FakeVault>, probe: &Probe) -> Engine {
    let settings = keyturn_config::Settings::from_lookup(|name| match name {
        "KEYTURN_VAULTS" => Some("kv-app=https://127.0.0.1:9".to_owned()),
        "KEYTURN_CREDENTIAL" => Some("developer-tools".to_owned()),
        HEALTH_PROBES => Some(format!("kv-app/app-*={}", probe.url)),
        HEALTH_PROBE_SECRET => Some(SIGNING_SECRET.to_owned()),
        _ => None,
    })
    .unwrap();
    let prober = HealthProber::new(&settings.health_probes, Some(probe.ca.ca_pem_path())).unwrap();
    Engine::new(vault, Arc::new(InProcessLock::default()), Providers::standard()).with_health_prober(prober)
}

const POLICY: &[(&str, &str)] = &[("KeyturnRotation", "generated"), ("ValidityPeriodDays", "60")];

async fn rotate(engine: &Engine, vault: &FakeVault, name: &str) -> RotationOutcome {
    let version = vault.latest_secret("kv-app", name).await.unwrap().properties.version;
    let object = ObjectRef::new("kv-app", ObjectKind::Secret, name, &version).unwrap();
    engine.rotate(&Request { object, event_id: format!("evt-{name}-{version}") }).await.unwrap()
}

#[tokio::test]
async fn a_failing_probe_is_reported_with_the_way_back_and_a_passing_one_says_so() {
    let probe = Probe::start().await;
    let vault = Arc::new(FakeVault::new(&["kv-app"]));
    vault.add("kv-app", Collection::Secrets, "app-token", "v1", POLICY);
    vault.add("kv-app", Collection::Secrets, "other", "o1", POLICY);
    let engine = engine(vault.clone(), &probe);

    probe.status.store(503, Ordering::SeqCst);
    let failed = rotate(&engine, &vault, "app-token").await;
    let RotationOutcome::Rotated { to, health: Some(check), .. } = &failed else { panic!("{failed}") };
    assert!(!check.passed && check.detail == "HTTP 503", "{check:?}");
    assert_eq!(check.rollback, "`keyturn rollback kv-app/app-token` restores the previous credential (v1)");
    assert!(failed.to_string().contains("health probe FAILED (HTTP 503)"), "{failed}");
    let body = probe.bodies.lock().unwrap()[0].clone();
    assert_eq!(
        body,
        serde_json::json!({
            "vault": "kv-app", "name": "app-token", "version": to, "previousVersion": "v1", "eventId": "evt-app-token-v1"
        })
    );
    let value = vault.latest_secret("kv-app", "app-token").await.unwrap().value;
    assert!(!body.to_string().contains(value.expose()), "the probe never receives the value");

    probe.status.store(204, Ordering::SeqCst);
    let passed = rotate(&engine, &vault, "app-token").await;
    let RotationOutcome::Rotated { health: Some(check), .. } = &passed else { panic!("{passed}") };
    assert!(check.passed && check.detail == "HTTP 204", "{check:?}");

    // A secret no probe covers is not probed.
    let unprobed = rotate(&engine, &vault, "other").await;
    assert!(matches!(unprobed, RotationOutcome::Rotated { health: None, .. }), "{unprobed}");
    assert_eq!(probe.bodies.lock().unwrap().len(), 2);
}
