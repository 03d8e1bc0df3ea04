//! The `test-event` handler through the real chain: a new version of the canary secret in the Key Vault
//! emulator (or a keyturn test event published to the Event Grid emulator, in either schema) reaches the real
//! `test-event` binary through the Functions host stand-in; it checks the identity, the vault, the lock and every
//! channel (an HTTP sink checking signatures and Slack/Teams shapes, and aiosmtpd), and records the canary's
//! result on the canary version.

// Helpers outside #[test] functions unwrap too: a panic there is a failed test with a line number.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use keyturn_e2e::receivers::{Received, SmtpSink, http_sink};
use keyturn_e2e::{Chain, bounded, fast_stack, secret_event, workspace_binary};
use keyturn_events::event::TEST_EVENT_TYPE;
use keyturn_events::{Event, KeyVaultEventType, ObjectKind, Schema, VaultObject};
use keyturn_host::{Outcome, Status};
use keyturn_local::eventgrid::{EndpointType, Subscription};
use keyturn_local::keyvault::SecretSpec;
use keyturn_local::keyvault::store::AttributeInput;

const FUNCTION: &str = "test-event";
const VAULT: &str = "kv-one";
const CANARY: &str = "keyturn-canary";
const EVENT_TYPES: [&str; 2] = ["Microsoft.KeyVault.SecretNewVersionCreated", TEST_EVENT_TYPE];
const CHECKS: [&str; 5] = ["identity ok", "vault-list ok", "vault-read ok", "lock ok", "channels ok"];

async fn chain(channels: &str) -> Chain {
    let stack = fast_stack(&[VAULT]).await;
    let mut settings = stack.handler_env();
    for (name, value) in [
        ("KEYTURN_CANARY_SECRET", CANARY),
        ("KEYTURN_NOTIFY", channels),
        ("KEYTURN_RETRY_MAX", "2"),
        ("KEYTURN_RETRY_DELAY_MS", "50"),
    ] {
        settings.push((name.to_owned(), value.to_owned()));
    }
    Chain::start(stack, FUNCTION, &workspace_binary(FUNCTION), &EVENT_TYPES, settings).await
}

fn seed(chain: &Chain, name: &str, value: &str) -> String {
    let spec = SecretSpec {
        value: value.to_owned(),
        content_type: None,
        attributes: AttributeInput::default(),
        tags: BTreeMap::from([("owner".to_owned(), "platform".to_owned())]),
    };
    chain.stack.emulator().store().set_secret(VAULT, name, spec).unwrap().version.version
}

/// The canary version's result tag, once it has one.
fn result_of(chain: &Chain, version: &str) -> Option<String> {
    let versions = chain.stack.emulator().store().list_secret_versions(VAULT, CANARY).unwrap();
    versions.into_iter().find(|v| v.version.version == version)?.version.tags.get("KeyturnCanaryResult").cloned()
}

/// Waits for the canary version's result tag to start with `prefix` (as `keyturn` would wait for it).
async fn wait_for_result(chain: &Chain, version: &str, prefix: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(result) = result_of(chain, version).filter(|r| r.starts_with(prefix)) {
            return result;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the canary version {version} has no result '{prefix}...' (has {:?}); answers: {:#?}",
            result_of(chain, version),
            chain.answers()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The typed outcome of every invocation the handler answered (each 200's `ReturnValue`), oldest first.
fn outcomes(chain: &Chain) -> Vec<Outcome> {
    chain.host.invocations().into_iter().filter_map(|record| record.result.ok()?.outcome()).collect()
}

/// The outcomes about the object named `name`.
fn outcomes_about(chain: &Chain, name: &str) -> Vec<Outcome> {
    outcomes(chain).into_iter().filter(|o| o.object.as_ref().is_some_and(|object| object.name() == name)).collect()
}

#[tokio::test]
async fn a_new_canary_version_runs_every_check_and_carries_the_result() {
    bounded(Duration::from_secs(120), async {
        let sink = http_sink().await;
        let smtp = SmtpSink::start().await;
        let chain = chain(&format!("{} {}", sink.channels(), smtp.channel())).await;

        let version = seed(&chain, CANARY, "value-canary-0000001");
        let result = wait_for_result(&chain, &version, "pass ").await;
        let at = chrono::DateTime::parse_from_rfc3339(result.trim_start_matches("pass ")).unwrap();
        assert!((Utc::now() - at.with_timezone(&Utc)).num_seconds().abs() < 60, "{result}");
        // The canary keeps its own tags; writing the result made no version.
        let versions = chain.stack.emulator().store().list_secret_versions(VAULT, CANARY).unwrap();
        assert_eq!(versions.len(), 1);
        assert_eq!(versions[0].version.tags.get("owner").map(String::as_str), Some("platform"));

        // Each check's result is in the answer (the Functions host's Logs) and is a log line of its own.
        let answer = chain.wait_for_answer("test of secret kv-one/keyturn-canary: pass", Duration::from_secs(5)).await;
        for check in CHECKS {
            assert!(answer.contains(check), "{check} missing from {answer}");
        }
        assert!(answer.contains(&format!("recorded on version {version} as KeyturnCanaryResult=pass")), "{answer}");
        let [tested] = &outcomes_about(&chain, CANARY)[..] else { panic!("{:#?}", outcomes(&chain)) };
        assert_eq!((tested.status, tested.action.as_deref()), (Status::Done, Some("pass")));
        assert_eq!(tested.object.as_ref().map(|o| o.version()), Some(version.as_str()));
        let output: Vec<String> = chain.host.output().lines().into_iter().map(|l| l.text).collect();
        for check in ["identity", "vault-list", "vault-read", "lock", "channels"] {
            let needle = format!("\"check\":\"{check}\"");
            assert!(output.iter().any(|line| line.contains(&needle)), "no log line for {check}: {output:#?}");
        }

        // Every channel got the test message and accepted it as its real receiver would.
        for route in ["/webhook", "/services/", "/teams/"] {
            assert_eq!(sink.accepted_on(route).len(), 1, "{route}: {:#?}", sink.received());
        }
        let json = sink.accepted_on("/webhook")[0].json();
        assert!(json["summary"].as_str().unwrap().contains("This is a keyturn test message"), "{json}");
        smtp.wait_for(1, "keyturn test message", Duration::from_secs(10)).await;

        // A duplicate delivery of a version that passed is not tested again; another secret is not a canary.
        chain.stack.grid().publish(canary_event("duplicate-1", &version));
        let duplicate = chain.wait_for_answer("already tested", Duration::from_secs(30)).await;
        assert!(duplicate.contains("pass "), "{duplicate}");
        let last = outcomes_about(&chain, CANARY).pop().unwrap();
        assert_eq!((last.status, last.action.as_deref()), (Status::Skipped, Some("already-tested")));
        seed(&chain, "db-password", "value-db-password-0002");
        chain.wait_for_answer("'db-password' is not the canary", Duration::from_secs(30)).await;
        let other = outcomes(&chain).pop().unwrap();
        assert_eq!((other.status, other.action.as_deref()), (Status::Skipped, Some("not-served")));
        assert_eq!(sink.accepted_on("/webhook").len(), 1);

        let mut received = sink.bodies();
        received.extend(smtp.messages().iter().map(|m| m["data"].as_str().unwrap().to_owned()));
        chain.assert_no_secret_leaked(&[VAULT], received);
        chain.shutdown().await;
    })
    .await;
}

fn canary_event(id: &str, version: &str) -> Event {
    secret_event(KeyVaultEventType::SecretNewVersionCreated, id, VAULT, CANARY, version, None)
}

#[tokio::test]
async fn a_keyturn_test_event_runs_every_check_in_both_schemas() {
    bounded(Duration::from_secs(120), async {
        let sink = http_sink().await;
        let chain = chain(&sink.channels()).await;
        // A second subscription to the same function in CloudEvents schema: Event Grid delivers each event in
        // each subscription's own schema.
        let endpoint = url::Url::parse(&chain.host.webhook_url(FUNCTION)).unwrap();
        let cloud_events = Subscription::new("test-event-cloudevents", endpoint, EndpointType::AzureFunction)
            .event_types([TEST_EVENT_TYPE])
            .schema(Schema::CloudEvents);
        chain.stack.grid().subscribe(cloud_events).await.unwrap();
        let version = seed(&chain, "app-config", "value-app-config-00001");

        let object = VaultObject::new(VAULT, ObjectKind::Secret, "app-config", Some(&version), None, None).unwrap();
        let source =
            format!("/subscriptions/0/resourceGroups/keyturn-local/providers/Microsoft.KeyVault/vaults/{VAULT}");
        chain.stack.grid().publish(Event::test_event("test-1", &source, object, Some(Utc::now()), Schema::EventGrid));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let passed = |chain: &Chain| {
            outcomes_about(chain, "app-config").iter().filter(|o| o.action.as_deref() == Some("pass")).count()
        };
        while passed(&chain) < 2 {
            assert!(tokio::time::Instant::now() < deadline, "answers: {:#?}", chain.answers());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(chain.stack.grid().settled(Duration::from_secs(30)).await);
        let delivered: Vec<String> = chain
            .stack
            .grid()
            .attempts()
            .into_iter()
            .filter(|a| a.event_ids == ["test-1"] && a.outcome == "Delivered")
            .map(|a| a.subscription)
            .collect();
        assert_eq!(delivered.len(), 2, "{delivered:?}");
        for answer in chain.answers().iter().filter(|a| a.contains("app-config: pass")) {
            for check in CHECKS {
                assert!(answer.contains(check), "{check} missing from {answer}");
            }
            assert!(!answer.contains("recorded on"), "a test event records nothing: {answer}");
        }
        // Two deliveries of one event, one per subscription, may run at the same moment: each channel got the
        // message once or twice (receivers deduplicate on the event id, docs/notifications.md), never more.
        for route in ["/webhook", "/services/", "/teams/"] {
            let got = sink.accepted_on(route).len();
            assert!((1..=2).contains(&got), "{route}: {got}: {:#?}", sink.received());
        }
        assert!(sink.accepted_on("/webhook").iter().all(|r| r.json()["event_id"] == "test-1"));
        assert!(sink.received().iter().all(Received::accepted));
        let tags = chain.stack.emulator().store().get_secret(VAULT, "app-config", None).unwrap().version.tags;
        assert!(!tags.contains_key("KeyturnCanaryResult"));

        chain.assert_no_secret_leaked(&[VAULT], sink.bodies());
        chain.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_channel_down_fails_the_canary_then_event_grid_retries_until_it_passes() {
    bounded(Duration::from_secs(120), async {
        let sink = http_sink().await;
        sink.set_down(true);
        let chain = chain(&sink.channels()).await;

        let version = seed(&chain, CANARY, "value-canary-0000002");
        let failed = wait_for_result(&chain, &version, "fail:channels ").await;
        assert!(failed.starts_with("fail:channels "), "{failed}");
        assert!(sink.accepted_on("/").is_empty());

        sink.set_down(false);
        wait_for_result(&chain, &version, "pass ").await;
        for route in ["/webhook", "/services/", "/teams/"] {
            assert_eq!(sink.accepted_on(route).len(), 1, "{route}: {:#?}", sink.received());
        }
        assert!(chain.stack.grid().settled(Duration::from_secs(30)).await);
        let retried = chain.attempts().into_iter().filter(|a| a.status == Some(500)).count();
        assert!(retried >= 1, "{:#?}", chain.attempts());
        assert!(chain.stack.grid().dead_letters().is_empty());

        chain.assert_no_secret_leaked(&[VAULT], sink.bodies());
        chain.shutdown().await;
    })
    .await;
}

/// A test event about `name` in `VAULT`, published to the Event Grid emulator.
fn publish_test_event(chain: &Chain, id: &str, name: &str, version: &str) {
    let object = VaultObject::new(VAULT, ObjectKind::Secret, name, Some(version), None, None).unwrap();
    let source = format!("/subscriptions/0/resourceGroups/keyturn-local/providers/Microsoft.KeyVault/vaults/{VAULT}");
    chain.stack.grid().publish(Event::test_event(id, &source, object, Some(Utc::now()), Schema::CloudEvents));
}

/// A chain whose rotation lock is a blob lease at `account_url`, trusting `extra_ca` beside the vault's CA.
async fn chain_with_blob_lock(account_url: &str, extra_ca: Option<&std::path::Path>, dir: &std::path::Path) -> Chain {
    let stack = fast_stack(&[VAULT]).await;
    let mut bundle = std::fs::read(stack.emulator().ca_pem_path()).unwrap();
    if let Some(extra) = extra_ca {
        bundle.extend(std::fs::read(extra).unwrap());
    }
    let ca_file = dir.join("ca-bundle.pem");
    std::fs::write(&ca_file, bundle).unwrap();
    let container = format!("keyturn-test-{}", Utc::now().timestamp_micros());
    let mut settings: Vec<(String, String)> =
        stack.handler_env().into_iter().filter(|(name, _)| name != "KEYTURN_CA_FILE").collect();
    for (name, value) in [
        ("KEYTURN_CA_FILE", ca_file.display().to_string()),
        ("KEYTURN_LOCK_ACCOUNT_URL", account_url.to_owned()),
        ("KEYTURN_LOCK_CONTAINER", container),
        ("KEYTURN_RETRY_MAX", "1".to_owned()),
        ("KEYTURN_RETRY_DELAY_MS", "50".to_owned()),
        ("KEYTURN_HTTP_TIMEOUT_SECS", "5".to_owned()),
    ] {
        settings.push((name.to_owned(), value));
    }
    Chain::start(stack, FUNCTION, &workspace_binary(FUNCTION), &EVENT_TYPES, settings).await
}

#[tokio::test]
async fn the_lock_check_takes_and_releases_a_blob_lease_in_the_configured_storage() {
    bounded(Duration::from_secs(120), async {
        // Azurite, started by ./scripts/test (scripts/lib/azurite.sh), HTTPS with its own CA and --oauth basic.
        let missing =
            "run ./scripts/test, which starts Azurite (or: scripts/lib/azurite.sh cargo nextest run -p keyturn-e2e)";
        let url = std::env::var("KEYTURN_TEST_AZURITE_BLOB_URL")
            .unwrap_or_else(|_| panic!("KEYTURN_TEST_AZURITE_BLOB_URL is not set: {missing}"));
        let ca = std::env::var("KEYTURN_TEST_AZURITE_CA_FILE")
            .unwrap_or_else(|_| panic!("KEYTURN_TEST_AZURITE_CA_FILE is not set: {missing}"));
        let dir = tempfile::tempdir().unwrap();
        let chain = chain_with_blob_lock(&url, Some(std::path::Path::new(&ca)), dir.path()).await;
        let version = seed(&chain, "app-config", "value-app-config-00002");

        publish_test_event(&chain, "test-lock-1", "app-config", &version);
        let answer = chain.wait_for_answer("test of secret kv-one/app-config", Duration::from_secs(60)).await;
        let [tested] = &outcomes_about(&chain, "app-config")[..] else { panic!("{:#?}", outcomes(&chain)) };
        assert_eq!((tested.status, tested.action.as_deref()), (Status::Done, Some("pass")));
        assert!(answer.contains("lock ok: took and released 'keyturn-test-event/kv-one/app-config'"), "{answer}");
        chain.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_lock_storage_that_cannot_be_reached_is_reported_as_fail_lock_not_retried() {
    bounded(Duration::from_secs(120), async {
        // A loopback port nothing listens on: the blob service is unreachable.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let chain =
            chain_with_blob_lock(&format!("https://127.0.0.1:{closed}/devstoreaccount1"), None, dir.path()).await;
        let version = seed(&chain, "app-config", "value-app-config-00003");

        publish_test_event(&chain, "test-lock-2", "app-config", &version);
        let answer = chain.wait_for_answer("test of secret kv-one/app-config", Duration::from_secs(60)).await;
        let [tested] = &outcomes_about(&chain, "app-config")[..] else { panic!("{:#?}", outcomes(&chain)) };
        assert_eq!((tested.status, tested.action.as_deref()), (Status::Done, Some("fail:lock")));
        for check in ["identity ok", "vault-list ok", "vault-read ok", "lock FAILED", "channels ok"] {
            assert!(answer.contains(check), "{check} missing from {answer}");
        }
        // Reported, not retried: one delivery, acknowledged.
        assert!(chain.stack.grid().settled(Duration::from_secs(30)).await);
        let attempts: Vec<_> = chain.attempts().into_iter().filter(|a| a.event_ids == ["test-lock-2"]).collect();
        assert_eq!(attempts.len(), 1, "{attempts:#?}");
        assert_eq!(attempts[0].outcome, "Delivered");
        chain.shutdown().await;
    })
    .await;
}
