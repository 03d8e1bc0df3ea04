//! The `near-expiry` handler through the real chain: the Key Vault emulator's clock passes exp − 30 days, the
//! Event Grid emulator delivers `*NearExpiry` to the Functions host stand-in, which invokes the real
//! `near-expiry` binary (target/<profile>/near-expiry), which rotates through the Azure SDK against the
//! emulator over HTTPS with a managed identity token.
//!
//! Each test asserts what a user would check in the vault (how many versions, the new value's format, tags
//! and expiry), what the handler said, and that no secret value appeared in any log line or response.
//! The 1,000-secret throttling run is in near_expiry_throttling.rs.

// Helpers outside #[test] functions unwrap too: a panic there is a failed test with a line number.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use keyturn_e2e::{
    Chain, NEAR_EXPIRY_EVENT_TYPES, assert_no_value_in, bounded, counting_relay, fast_retries, fast_stack,
    secret_near_expiry, seed_rsa_key, seed_secret, tags, workspace_binary,
};
use keyturn_events::delivery;
use keyturn_host::{Outcome, Status};
use keyturn_local::eventgrid::EventGridOptions;
use keyturn_local::functions_host::InvocationError;
use keyturn_local::keyvault::certs::{CertificatePolicy, IssuerParams, X509Props};
use keyturn_local::keyvault::store::AttributeInput;
use keyturn_local::keyvault::{FaultRule, Faults, KeyVaultEmulator, OperationKind};
use keyturn_local::stack::LocalStack;
use serde_json::Value;

const FUNCTION: &str = "near-expiry";
const VAULT: &str = "kv-one";
const FOREIGN_VAULT: &str = "kv-two";

/// Event Grid at 1/1000 of real time: its 10 s first retry takes 10 ms, a day of retries 86 s.
fn grid_options() -> EventGridOptions {
    EventGridOptions { time_scale: 0.001, ..EventGridOptions::default() }
}

/// The handler's app settings: the stack's (identity endpoint, allow-list, CA) with short retries, so a failing
/// call comes back to Event Grid in well under a second.
fn settings(stack: &LocalStack) -> Vec<(String, String)> {
    let mut settings = stack.handler_env();
    settings.extend(fast_retries());
    settings
}

async fn chain(stack: LocalStack, settings: Vec<(String, String)>) -> Chain {
    Chain::start(stack, FUNCTION, &workspace_binary(FUNCTION), &NEAR_EXPIRY_EVENT_TYPES, settings).await
}

/// The policy every rotated secret here carries, plus a tag of the owner's that must be carried forward.
fn generated(format: &str, length: &str) -> BTreeMap<String, String> {
    tags(&[
        ("KeyturnRotation", "generated"),
        ("ValidityPeriodDays", "60"),
        ("KeyturnFormat", format),
        ("KeyturnLength", length),
        ("owner", "team-a"),
    ])
}

fn secret_versions(stack: &LocalStack, vault: &str, name: &str) -> usize {
    stack.emulator().store().list_secret_versions(vault, name).unwrap().len()
}

fn advance(stack: &LocalStack, by: TimeDelta) {
    stack.emulator().clock().advance(by.to_std().unwrap());
}

fn answers_about(chain: &Chain, needle: &str) -> Vec<String> {
    chain.answers().into_iter().filter(|answer| answer.contains(needle)).collect()
}

/// The typed outcome of every invocation the handler answered (each 200's `ReturnValue`), oldest first.
fn outcomes(chain: &Chain) -> Vec<Outcome> {
    chain.host.invocations().into_iter().filter_map(|record| record.result.ok()?.outcome()).collect()
}

/// The outcomes about the object named `name`.
fn outcomes_about(chain: &Chain, name: &str) -> Vec<Outcome> {
    outcomes(chain).into_iter().filter(|o| o.object.as_ref().is_some_and(|object| object.name() == name)).collect()
}

/// How many outcomes say `action`.
fn count_action(chain: &Chain, action: &str) -> usize {
    outcomes(chain).iter().filter(|o| o.action.as_deref() == Some(action)).count()
}

fn epoch(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(seconds, 0).single().unwrap()
}

/// Every value a secret of the vault has ever held (seeded and generated), for the leak scan.
fn all_secret_values(stack: &LocalStack, vault: &str) -> Vec<String> {
    keyturn_e2e::all_secret_values(stack, &[vault])
}

/// No secret value in anything the handler wrote (stdout, stderr, invocation logs), in any invocation the host
/// recorded (responses and errors), or in Event Grid's attempt and dead-letter records.
fn assert_no_value_leaked(chain: &Chain, values: &[String]) {
    assert!(!chain.host.output().lines().is_empty(), "the handler wrote nothing: the scan would prove nothing");
    assert_no_value_in(&chain.everything_recorded(), values);
}

#[tokio::test]
async fn a_secret_near_expiry_gets_exactly_one_new_version_with_its_policy() {
    bounded(Duration::from_secs(120), async {
        let stack = fast_stack(&[VAULT]).await;
        let db = seed_secret(&stack, VAULT, "db-password", "seeded-db-password-0001", 31, generated("password", "40"));
        let api = seed_secret(&stack, VAULT, "api-token", "seeded-api-token-0002", 31, generated("hex", "24"));
        seed_secret(&stack, VAULT, "manual-one", "seeded-manual-0003", 31, tags(&[("ValidityPeriodDays", "60")]));
        seed_secret(&stack, VAULT, "later-one", "seeded-later-0004", 90, generated("password", "32"));
        let settings = settings(&stack);
        let chain = chain(stack, settings).await;
        let stack = &chain.stack;

        let before = Utc::now();
        advance(stack, TimeDelta::days(1));
        chain.settle(3, Duration::from_secs(60)).await;
        let after = Utc::now();

        // Exactly one new version of each opted-in secret near expiry; nothing else touched.
        assert_eq!(secret_versions(stack, VAULT, "db-password"), 2);
        assert_eq!(secret_versions(stack, VAULT, "api-token"), 2);
        assert_eq!(secret_versions(stack, VAULT, "manual-one"), 1);
        assert_eq!(secret_versions(stack, VAULT, "later-one"), 1);
        assert!(chain.stack.grid().dead_letters().is_empty());

        let store = stack.emulator().store();
        let latest = store.get_secret(VAULT, "db-password", None).unwrap().version;
        let value = &latest.data.value;
        assert_eq!(value.chars().count(), 40, "KeyturnLength=40");
        assert!(value.chars().any(|c| c.is_ascii_lowercase()) && value.chars().any(|c| c.is_ascii_uppercase()));
        assert!(value.chars().any(|c| c.is_ascii_digit()));
        assert!(value.chars().any(|c| "!#$%&*+-.:?@^_~".contains(c)), "a password has a symbol");
        assert!(value.chars().all(|c| c.is_ascii_alphanumeric() || "!#$%&*+-.:?@^_~".contains(c)));
        assert_eq!(latest.data.content_type.as_deref(), Some("text/plain"));
        assert_eq!(latest.tags.get("KeyturnRotation").map(String::as_str), Some("generated"));
        assert_eq!(latest.tags.get("ValidityPeriodDays").map(String::as_str), Some("60"));
        assert_eq!(latest.tags.get("owner").map(String::as_str), Some("team-a"));
        assert_eq!(latest.tags.get("KeyturnRotatedFrom"), Some(&db));
        let event_id = latest.tags.get("KeyturnEventId").cloned().unwrap();
        assert!(chain.attempts().iter().any(|attempt| attempt.event_ids == [event_id.clone()]), "{event_id}");
        // exp = now + ValidityPeriodDays, as the handler saw now.
        let exp = epoch(latest.attributes.exp.unwrap());
        assert!(exp >= before + TimeDelta::days(60) - TimeDelta::seconds(1), "{exp}");
        assert!(exp <= after + TimeDelta::days(60), "{exp}");
        assert!(latest.attributes.nbf.is_some());
        assert!(latest.attributes.enabled);

        let api_latest = store.get_secret(VAULT, "api-token", None).unwrap().version;
        assert_eq!(api_latest.data.value.len(), 48, "24 random bytes as hex");
        assert!(api_latest.data.value.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
        assert_eq!(api_latest.tags.get("KeyturnRotatedFrom"), Some(&api));

        // What the handler answered, one typed outcome per event.
        let [rotated] = &outcomes_about(&chain, "db-password")[..] else { panic!("{:#?}", outcomes(&chain)) };
        assert_eq!((rotated.status, rotated.action.as_deref()), (Status::Done, Some("rotated")));
        assert_eq!(rotated.version_before.as_deref(), Some(db.as_str()));
        assert_eq!(rotated.version_after.as_deref(), Some(latest.version.as_str()));
        assert_eq!(rotated.object.as_ref().map(|o| (o.vault(), o.version())), Some((VAULT, db.as_str())));
        // And the one line people read, in the invocation's Logs.
        let expected = format!(
            "done: rotated {VAULT}/db-password from {db} to {}, expires {}",
            latest.version,
            exp.format("%Y-%m-%d")
        );
        assert_eq!(answers_about(&chain, "db-password"), [expected]);
        let [manual] = &outcomes_about(&chain, "manual-one")[..] else { panic!("{:#?}", outcomes(&chain)) };
        assert_eq!((manual.status, manual.action.as_deref()), (Status::Skipped, Some("not-opted-in")));
        assert!(manual.message.ends_with("manual rotation due"), "{}", manual.message);
        assert!(outcomes_about(&chain, "later-one").is_empty());

        assert_no_value_leaked(&chain, &all_secret_values(stack, VAULT));
        chain.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn the_same_event_ten_times_at_once_and_again_an_hour_later_rotates_once() {
    bounded(Duration::from_secs(120), async {
        let stack = fast_stack(&[VAULT]).await;
        let v1 = seed_secret(&stack, VAULT, "shared-key", "seeded-shared-key-0001", 31, generated("base64", "32"));
        let exp = stack.emulator().clock().now() + TimeDelta::days(31);
        let settings = settings(&stack);
        let chain = chain(stack, settings).await;
        let grid = chain.stack.grid();

        // Ten deliveries of one event (one id) at the same moment, as Event Grid's at-least-once delivery and
        // its 30-second timeout can produce: each is its own delivery, all run concurrently in the handler.
        let event = secret_near_expiry("duplicate-event-1", VAULT, "shared-key", &v1, exp);
        for _ in 0..10 {
            grid.publish(event.clone());
        }
        assert!(grid.settled(Duration::from_secs(60)).await, "the ten deliveries did not settle");
        assert_eq!(secret_versions(&chain.stack, VAULT, "shared-key"), 2);
        assert_eq!(count_action(&chain, "rotated"), 1, "{:#?}", outcomes(&chain));
        let attempts = chain.attempts();
        assert!(attempts.iter().filter(|attempt| attempt.attempt == 1).count() >= 10, "{attempts:#?}");
        // Every delivery ended acknowledged: the losers saw the lock held (500, redelivered) or the rotation done.
        assert_eq!(outcomes(&chain).len(), 10, "{:#?}", outcomes(&chain));
        assert!(grid.dead_letters().is_empty());

        // An hour later (vault time), the same event once more: a late duplicate is a no-op.
        advance(&chain.stack, TimeDelta::hours(1));
        grid.publish(event);
        assert!(grid.settled(Duration::from_secs(60)).await);
        assert_eq!(secret_versions(&chain.stack, VAULT, "shared-key"), 2);
        let latest = chain.stack.emulator().store().get_secret(VAULT, "shared-key", None).unwrap().version.version;
        let last = outcomes(&chain).pop().unwrap();
        assert_eq!((last.status, last.action.as_deref()), (Status::Skipped, Some("already-rotated")));
        assert_eq!(last.version_before.as_deref(), Some(latest.as_str()));
        assert_eq!(last.object.as_ref().map(|o| o.version()), Some(v1.as_str()));

        assert_no_value_leaked(&chain, &all_secret_values(&chain.stack, VAULT));
        chain.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn an_event_for_a_vault_outside_the_allow_list_is_rejected_without_any_request() {
    bounded(Duration::from_secs(120), async {
        let stack = fast_stack(&[VAULT, FOREIGN_VAULT]).await;
        // The handler reaches its one allow-listed vault and the identity endpoint only through counting relays:
        // whatever it sends anywhere goes through one of them.
        let (vault_relay, vault_connections) = counting_relay(stack.emulator().vault_addr(VAULT).unwrap()).await;
        let identity = url::Url::parse(&stack.emulator().identity_env().endpoint).unwrap();
        let identity_addr = identity.socket_addrs(|| None).unwrap()[0];
        let (identity_relay, identity_connections) = counting_relay(identity_addr).await;
        let mut relayed_identity = identity.clone();
        relayed_identity.set_port(Some(identity_relay.port())).unwrap();
        let mut settings: Vec<(String, String)> = stack
            .handler_env()
            .into_iter()
            .filter(|(name, _)| name != "KEYTURN_VAULTS" && name != "IDENTITY_ENDPOINT")
            .collect();
        settings.push(("KEYTURN_VAULTS".into(), format!("{VAULT}=https://{vault_relay}")));
        settings.push(("IDENTITY_ENDPOINT".into(), relayed_identity.to_string()));
        settings.extend(fast_retries());

        let foreign =
            seed_secret(&stack, FOREIGN_VAULT, "foreign-secret", "seeded-foreign-0001", 31, generated("hex", "16"));
        let chain = chain(stack, settings).await;
        advance(&chain.stack, TimeDelta::days(1));
        chain.settle(1, Duration::from_secs(60)).await;

        let answers = outcomes_about(&chain, "foreign-secret");
        assert_eq!(answers.len(), 1, "{answers:#?}");
        assert_eq!((answers[0].status, answers[0].action.as_deref()), (Status::Rejected, Some("not-allowed")));
        assert_eq!(answers[0].object.as_ref().map(|o| o.vault()), Some(FOREIGN_VAULT));
        assert!(
            answers[0].message.starts_with(&format!(
                "secret {FOREIGN_VAULT}/foreign-secret: vault '{FOREIGN_VAULT}' is not in the allow-list"
            )),
            "{}",
            answers[0].message
        );
        // Acknowledged at once: a refusal is final, Event Grid does not retry it.
        let attempts = chain.attempts();
        assert_eq!(attempts.len(), 1, "{attempts:#?}");
        assert!(attempts[0].status.is_some_and(delivery::is_success), "{attempts:#?}");
        // Nothing was sent anywhere: no connection to the vaults, none to the identity endpoint.
        assert_eq!(vault_connections.load(Ordering::SeqCst), 0);
        assert_eq!(identity_connections.load(Ordering::SeqCst), 0);
        assert_eq!(secret_versions(&chain.stack, FOREIGN_VAULT, "foreign-secret"), 1);
        assert_eq!(
            chain.stack.emulator().store().get_secret(FOREIGN_VAULT, "foreign-secret", None).unwrap().version.version,
            foreign
        );

        // The relays do count: a secret of the allow-listed vault goes through both.
        seed_secret(&chain.stack, VAULT, "own-secret", "seeded-own-0002", 31, generated("hex", "16"));
        advance(&chain.stack, TimeDelta::days(1));
        chain.settle(2, Duration::from_secs(60)).await;
        assert_eq!(secret_versions(&chain.stack, VAULT, "own-secret"), 2);
        assert!(vault_connections.load(Ordering::SeqCst) > 0);
        assert!(identity_connections.load(Ordering::SeqCst) > 0);

        let mut values = all_secret_values(&chain.stack, VAULT);
        values.extend(all_secret_values(&chain.stack, FOREIGN_VAULT));
        assert_no_value_leaked(&chain, &values);
        chain.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn injected_503s_are_redelivered_until_every_secret_is_rotated_once() {
    bounded(Duration::from_secs(120), async {
        let stack = fast_stack(&[VAULT]).await;
        let names: Vec<String> = (0..5).map(|i| format!("flaky-{i}")).collect();
        for (i, name) in names.iter().enumerate() {
            seed_secret(
                &stack,
                VAULT,
                name,
                &format!("seeded-flaky-value-{i:04}"),
                31,
                generated("alphanumeric", "32"),
            );
        }
        let settings = settings(&stack);
        let chain = chain(stack, settings).await;
        let emulator = chain.stack.emulator();

        // Phase 1: every secret create fails with 503; the handler's own retries run out and Event Grid redelivers.
        emulator.set_faults(
            Faults::none()
                .with(OperationKind::SecretCreate, FaultRule { unavailable_share: 1.0, ..FaultRule::default() }),
        );
        advance(&chain.stack, TimeDelta::days(1));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let failed: std::collections::HashSet<String> = chain
                .attempts()
                .into_iter()
                .filter(|attempt| attempt.status == Some(500))
                .flat_map(|attempt| attempt.event_ids)
                .collect();
            if failed.len() == names.len() {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "not every event failed yet: {failed:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for name in &names {
            assert_eq!(secret_versions(&chain.stack, VAULT, name), 1, "{name} rotated while every create failed");
        }

        // Phase 2: every other request to any secret operation fails with 503, reads included.
        emulator.set_faults(Faults::none().with_all(FaultRule { unavailable_share: 0.5, ..FaultRule::default() }));
        chain.settle(names.len(), Duration::from_secs(90)).await;
        for name in &names {
            assert_eq!(secret_versions(&chain.stack, VAULT, name), 2, "{name}");
        }
        assert!(chain.stack.grid().dead_letters().is_empty());
        assert_eq!(count_action(&chain, "rotated"), names.len(), "{:#?}", outcomes(&chain));

        assert_no_value_leaked(&chain, &all_secret_values(&chain.stack, VAULT));
        chain.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_handler_killed_mid_rotation_converges_on_redelivery_without_a_second_rotation() {
    bounded(Duration::from_secs(120), async {
        let stack = fast_stack(&[VAULT]).await;
        let v1 = seed_secret(&stack, VAULT, "crashy", "seeded-crashy-value-0001", 31, generated("password", "32"));
        let settings = settings(&stack);
        let chain = chain(stack, settings).await;
        let first_pid = chain.host.worker_pid().unwrap();

        // Every secret create waits 3 s in the vault before it is processed; the kill lands in that window.
        let slow_create = FaultRule { latency: Duration::from_secs(3), ..FaultRule::default() };
        chain.stack.emulator().set_faults(Faults::none().with(OperationKind::SecretCreate, slow_create));
        advance(&chain.stack, TimeDelta::days(1));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(secret_versions(&chain.stack, VAULT, "crashy"), 1, "the rotation finished before the kill");
        assert!(chain.attempts().is_empty(), "the first delivery already ended: {:#?}", chain.attempts());
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(first_pid as i32), nix::sys::signal::Signal::SIGKILL)
            .unwrap();

        // The killed invocation fails, the host restarts the handler, Event Grid redelivers.
        chain.settle(1, Duration::from_secs(60)).await;
        let attempts = chain.attempts();
        assert!(!attempts[0].status.is_some_and(delivery::is_success), "the first attempt did not fail: {attempts:#?}");
        let records = chain.host.invocations();
        // The host saw the process die under the invocation (or the connection drop, whichever it noticed first).
        assert!(
            matches!(
                &records[0].result,
                Err(InvocationError::WorkerExited { pid }) if *pid == first_pid
            ) || matches!(&records[0].result, Err(InvocationError::Transport(reason)) if reason.contains("connection closed")),
            "the kill did not land during the invocation: {records:#?}"
        );
        assert_ne!(chain.host.worker_pid(), Some(first_pid));
        assert!(attempts.last().unwrap().status.is_some_and(delivery::is_success), "{attempts:#?}");

        // One rotation in all, whether the killed request reached the vault or not.
        assert_eq!(secret_versions(&chain.stack, VAULT, "crashy"), 2);
        let latest = chain.stack.emulator().store().get_secret(VAULT, "crashy", None).unwrap().version;
        assert_eq!(latest.tags.get("KeyturnRotatedFrom"), Some(&v1));
        assert_eq!(outcomes_about(&chain, "crashy").len(), 1, "{:#?}", outcomes(&chain));
        assert!(chain.stack.grid().dead_letters().is_empty());

        assert_no_value_leaked(&chain, &all_secret_values(&chain.stack, VAULT));
        chain.shutdown().await;
    })
    .await;
}

/// A self-signed certificate policy Key Vault can renew by itself, without an AutoRenew action (so keyturn acts).
fn self_signed(subject: &str) -> CertificatePolicy {
    CertificatePolicy {
        issuer: Some(IssuerParams { name: Some("Self".into()), ..IssuerParams::default() }),
        x509_props: Some(X509Props {
            subject: Some(subject.into()),
            validity_months: Some(12),
            ..X509Props::default()
        }),
        lifetime_actions: Some(Vec::new()),
        ..CertificatePolicy::default()
    }
}

/// Writes a vault state holding `imported-cert` whose policy names the issuer `Unknown`, as Key Vault stores an
/// imported certificate's policy. The emulator issues self-signed certificates only (and refuses other issuers in
/// a policy), so the state is made with it and then edited, the way a saved vault would be restored.
async fn state_with_an_imported_certificate(path: &std::path::Path) -> String {
    let kv = KeyVaultEmulator::builder().vault(VAULT).no_throttling().persist_to(path).start().await.unwrap();
    let store = kv.store();
    store
        .create_certificate(
            VAULT,
            "imported-cert",
            Some(self_signed("CN=imported.example.test")),
            AttributeInput::default(),
            tags(&[("KeyturnRotation", "enabled")]),
        )
        .unwrap();
    let version = store.get_certificate(VAULT, "imported-cert", None).unwrap().version.version;
    kv.shutdown().await;

    let mut state: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    fn unknown_issuer(value: &mut Value) -> usize {
        match value {
            Value::Object(map) => {
                let mut changed = 0;
                if let Some(name) = map.get_mut("policy").and_then(|policy| policy.pointer_mut("/issuer/name"))
                    && name == "Self"
                {
                    *name = Value::from("Unknown");
                    changed += 1;
                }
                changed + map.values_mut().map(unknown_issuer).sum::<usize>()
            }
            Value::Array(items) => items.iter_mut().map(unknown_issuer).sum(),
            _ => 0,
        }
    }
    assert_eq!(unknown_issuer(&mut state), 1, "expected one certificate policy in {state:#}");
    std::fs::write(path, serde_json::to_vec(&state).unwrap()).unwrap();
    version
}

#[tokio::test]
async fn keys_and_self_signed_certificates_rotate_and_an_unknown_issuer_means_manual_renewal() {
    bounded(Duration::from_secs(120), async {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("vaults.json");
        let imported = state_with_an_imported_certificate(&state).await;
        let stack = LocalStack::start(KeyVaultEmulator::builder().vault(VAULT).persist_to(&state), grid_options())
            .await
            .unwrap();
        let store = stack.emulator().store();
        let key = seed_rsa_key(&stack, VAULT, "signing-key", 31, tags(&[("KeyturnRotation", "enabled")]));
        store
            .create_certificate(
                VAULT,
                "tls-cert",
                Some(self_signed("CN=api.example.test")),
                AttributeInput::default(),
                tags(&[("KeyturnRotation", "enabled")]),
            )
            .unwrap();
        // Issuance completes when the certificate is next read.
        let cert = store.get_certificate(VAULT, "tls-cert", None).unwrap().version.version;
        let settings = settings(&stack);
        let chain = chain(stack, settings).await;
        let store = chain.stack.emulator().store();

        // A day on, the key is 30 days from expiry: Key Vault's rotate operation makes its next version.
        advance(&chain.stack, TimeDelta::days(1));
        chain.settle(1, Duration::from_secs(60)).await;
        let keys = store.list_key_versions(VAULT, "signing-key").unwrap();
        assert_eq!(keys.len(), 2);
        let new_key = store.get_key(VAULT, "signing-key", None).unwrap().version.version;
        assert_ne!(new_key, key);
        let [rotated] = &outcomes_about(&chain, "signing-key")[..] else { panic!("{:#?}", outcomes(&chain)) };
        assert_eq!((rotated.status, rotated.action.as_deref()), (Status::Done, Some("rotated")));
        assert_eq!(
            (rotated.version_before.as_deref(), rotated.version_after.as_deref()),
            (Some(key.as_str()), Some(new_key.as_str()))
        );

        // Eleven months on, both certificates are 30 days from expiry.
        advance(&chain.stack, TimeDelta::days(340));
        chain.settle(3, Duration::from_secs(60)).await;
        let renewed = outcomes_about(&chain, "tls-cert");
        assert_eq!(renewed.len(), 1, "{renewed:#?}");
        assert_eq!((renewed[0].status, renewed[0].action.as_deref()), (Status::Done, Some("renewal-started")));
        assert_eq!(renewed[0].version_before.as_deref(), Some(cert.as_str()));
        let versions = store.list_certificate_versions(VAULT, "tls-cert").unwrap();
        assert_eq!(versions.len(), 2, "the renewal issued a new version");
        assert_ne!(store.get_certificate(VAULT, "tls-cert", None).unwrap().version.version, cert);

        let manual = outcomes_about(&chain, "imported-cert");
        assert_eq!(manual.len(), 1, "{manual:#?}");
        assert_eq!((manual[0].status, manual[0].action.as_deref()), (Status::Skipped, Some("manual-action-due")));
        assert!(
            manual[0].message.contains("manual renewal due") && manual[0].message.contains("'Unknown'"),
            "{}",
            manual[0].message
        );
        assert_eq!(store.list_certificate_versions(VAULT, "imported-cert").unwrap().len(), 1);
        assert_eq!(store.get_certificate(VAULT, "imported-cert", None).unwrap().version.version, imported);
        assert!(chain.stack.grid().dead_letters().is_empty());

        // Certificates keep their private keys in secrets of the same name: those never appear either.
        assert_no_value_leaked(&chain, &all_secret_values(&chain.stack, VAULT));
        chain.shutdown().await;
    })
    .await;
}
