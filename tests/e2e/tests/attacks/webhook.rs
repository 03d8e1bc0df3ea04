//! The webhook-rotator attack through the real `near-expiry` binary: a secret's writer tags their secret with
//! a rotator the deployment configured for other secrets (`KeyturnWebhook=<name>`), hoping it acts with their
//! `CredentialId`/`ProviderAddress`. Refused before any request: the rotator receives nothing (not even a
//! connection). Beside it, the secret the rotator is bound to rotates through it; and a rotator that cannot be
//! reached fails (retryably) without its URL's access token (`code=`) in any answer, log or record.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::BodyExt;
use keyturn_e2e::receivers::http_sink;
use keyturn_e2e::{
    Chain, NEAR_EXPIRY_EVENT_TYPES, bounded, counting_relay, fast_retries, fast_stack, workspace_binary,
};
use keyturn_local::keyvault::server::{self, ServerHandle};
use keyturn_local::tls::LocalCa;

use crate::{assert_refused, near_expiry, seed_for_a_year};

const VAULT: &str = "kv-atk";
const SIGNING_SECRET: &str = "rotator-signing-secret-0123456789";
/// The access token in the rotators' URLs (as an Azure Function's `code=`): it must never be shown.
const ACCESS_CODE: &str = "fn-access-code-SHOULD-NEVER-SHOW";

/// The user's rotator over HTTPS: checks keyturn's signature, issues a credential on `create`, confirms on
/// `test` that it issued the value. Records (kind, secret) of each request.
struct Rotator {
    calls: Arc<Mutex<Vec<(String, String)>>>,
    _server: ServerHandle,
    port: u16,
}

impl Rotator {
    async fn start(ca: &LocalCa) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let calls: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let issued: Arc<Mutex<Vec<String>>> = Arc::default();
        let recorded = calls.clone();
        let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config());
        let server = server::spawn(listener, Some(acceptor), move |request: http::Request<hyper::body::Incoming>| {
            let (calls, issued) = (recorded.clone(), issued.clone());
            async move {
                let signature = request
                    .headers()
                    .get(keyturn_notify::SIGNATURE_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
                    .unwrap_or_default();
                let body = request.into_body().collect().await.unwrap().to_bytes();
                if keyturn_notify::verify_signature(SIGNING_SECRET.as_bytes(), &signature, &body, chrono::Utc::now())
                    .is_err()
                {
                    return server::empty(http::StatusCode::UNAUTHORIZED);
                }
                let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let kind = json["type"].as_str().unwrap_or_default().to_owned();
                calls.lock().unwrap().push((kind.clone(), json["secret"].as_str().unwrap_or_default().to_owned()));
                match kind.as_str() {
                    "keyturn.rotation.create" => {
                        let value = format!("issued-token-{:04}", issued.lock().unwrap().len() + 1);
                        issued.lock().unwrap().push(value.clone());
                        server::json_response(http::StatusCode::OK, &serde_json::json!({ "value": value }))
                    }
                    "keyturn.rotation.test"
                        if json["value"].as_str().is_some_and(|v| issued.lock().unwrap().iter().any(|i| i == v)) =>
                    {
                        server::empty(http::StatusCode::NO_CONTENT)
                    }
                    _ => server::empty(http::StatusCode::UNPROCESSABLE_ENTITY),
                }
            }
        });
        Self { calls, _server: server, port }
    }

    fn calls(&self) -> Vec<(String, String)> {
        self.calls.lock().unwrap().clone()
    }
}

/// A `KEYTURN_WEBHOOK_ROTATORS` entry for `name` at `port`, bound to `vaults` (and `names`).
fn entry(name: &str, port: u16, vaults: &str, names: Option<&str>) -> String {
    let names = names.map(|n| format!("&names={n}")).unwrap_or_default();
    format!(
        "{name}=https://127.0.0.1:{port}/api/rotate?code={ACCESS_CODE}&secret={SIGNING_SECRET}&vaults={vaults}{names}"
    )
}

#[tokio::test]
async fn a_secret_writer_cannot_make_a_rotator_act_for_a_secret_it_is_not_bound_to() {
    bounded(Duration::from_secs(120), async {
        let sink = http_sink().await;
        let dir = tempfile::tempdir().unwrap();
        let ca = LocalCa::generate(dir.path(), &[]).unwrap();
        let billing = Rotator::start(&ca).await;
        let crm = Rotator::start(&ca).await;
        // Counting relays in front of each rotator: "received nothing" means not even a connection.
        let (billing_at, billing_connections) =
            counting_relay(format!("127.0.0.1:{}", billing.port).parse().unwrap()).await;
        let (crm_at, crm_connections) = counting_relay(format!("127.0.0.1:{}", crm.port).parse().unwrap()).await;
        // A port nothing listens on: the rotator that cannot be reached.
        let down = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();

        let stack = fast_stack(&[VAULT]).await;
        let bundle = dir.path().join("ca-bundle.pem");
        std::fs::write(&bundle, format!("{}\n{}", stack.emulator().ca_pem(), ca.ca_pem())).unwrap();
        let mut settings: Vec<(String, String)> =
            stack.handler_env().into_iter().filter(|(name, _)| name != "KEYTURN_CA_FILE").collect();
        settings.push(("KEYTURN_CA_FILE".to_owned(), bundle.display().to_string()));
        let rotators = [
            entry("billing", billing_at.port(), VAULT, Some("app-*")),
            entry("crm", crm_at.port(), "kv-crm", None),
            entry("down", down, VAULT, Some("app-down")),
        ];
        settings.push(("KEYTURN_WEBHOOK_ROTATORS".to_owned(), rotators.join(";")));
        settings.push(("KEYTURN_NOTIFY".to_owned(), sink.channels()));
        settings.extend(fast_retries());
        let chain =
            Chain::start(stack, "near-expiry", &workspace_binary("near-expiry"), &NEAR_EXPIRY_EVENT_TYPES, settings)
                .await;

        let policy = |rotator: &'static str| {
            vec![
                ("KeyturnRotation", "webhook"),
                ("ValidityPeriodDays", "60"),
                ("KeyturnWebhook", rotator),
                ("CredentialId", "their-victim-account"),
            ]
        };
        let secrets = [
            // A name billing's entry does not serve, in the vault it does.
            ("atk-token", "writer-value-0001", policy("billing")),
            // A rotator bound to another vault only.
            ("atk-crm", "writer-value-0002", policy("crm")),
            ("app-token", "own-value-0003", policy("billing")),
        ];
        for (name, value, pairs) in &secrets {
            let version = seed_for_a_year(&chain.stack, VAULT, name, value, pairs);
            near_expiry(&chain, VAULT, name, &version);
        }
        chain.settle(3, Duration::from_secs(60)).await;

        assert_refused(&chain, &sink, VAULT, "atk-token", &["rotator 'billing' is not bound to secret 'atk-token'"]);
        assert_refused(&chain, &sink, VAULT, "atk-crm", &["rotator 'crm' is not bound", "nothing was sent to it"]);
        // Nothing outside the attacker's secrets changed, and the rotators received nothing for them.
        assert_eq!(crm_connections.load(Ordering::SeqCst), 0, "crm was contacted");
        assert!(crm.calls().is_empty());
        let billing_calls = billing.calls();
        assert!(billing_calls.iter().all(|(_, secret)| secret == "app-token"), "{billing_calls:?}");
        let store = chain.stack.emulator().store();
        for name in ["atk-token", "atk-crm"] {
            assert_eq!(store.list_secret_versions(VAULT, name).unwrap().len(), 1, "{name} got a new version");
        }

        // The legitimate path beside it: app-token rotated through billing (create, then test).
        let kinds: Vec<&str> = billing_calls.iter().map(|(kind, _)| kind.as_str()).collect();
        assert_eq!(kinds, ["keyturn.rotation.create", "keyturn.rotation.test"]);
        assert!(billing_connections.load(Ordering::SeqCst) >= 1);
        assert_eq!(store.get_secret(VAULT, "app-token", None).unwrap().version.data.value, "issued-token-0001");

        // The unreachable rotator: retried (a network failure may pass), its URL's access code in nothing the
        // chain recorded. Two attempts are enough to have an error text to read.
        let version = seed_for_a_year(&chain.stack, VAULT, "app-down", "own-value-0004", &policy("down"));
        near_expiry(&chain, VAULT, "app-down", &version);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while chain.host.invocations().iter().filter(|r| r.subject.as_deref() == Some("app-down")).count() < 2 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "app-down was not retried: {:#?}",
                chain.host.invocations()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let failed = chain.host.invocations().into_iter().find(|r| r.subject.as_deref() == Some("app-down")).unwrap();
        let failure = format!("{:?}", failed.result);
        assert!(failure.contains("rotator 'down'") && failure.contains("unreachable"), "{failure}");
        let mut recorded = chain.everything_recorded();
        recorded.extend(sink.bodies());
        for secret in [ACCESS_CODE, SIGNING_SECRET] {
            assert!(!recorded.iter().any(|text| text.contains(secret)), "the rotator URL's query was shown");
        }

        chain.assert_no_secret_leaked(&[VAULT], sink.bodies());
        chain.shutdown().await;
    })
    .await;
}
