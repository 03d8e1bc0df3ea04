//! The `new-version` handler through the real chain: new versions written to the Key Vault emulator raise
//! `*NewVersionCreated` in the Event Grid emulator, delivered through the Functions host stand-in to the real
//! `new-version` binary, which mirrors secrets across emulated vaults through the Azure SDK and notifies a real
//! HTTP sink (signature and Slack/Teams shapes checked).
//!
//! Vaults: `kv-one` and `kv-two` are allow-listed (`KEYTURN_VAULTS`), `kv-dr` is a mirror-only vault
//! (`KEYTURN_MIRROR_VAULTS`), `kv-evil` exists but is on neither list.

// Helpers outside #[test] functions unwrap too: a panic there is a failed test with a line number.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::TimeDelta;
use keyturn_e2e::receivers::{HttpSink, Received, http_sink};
use keyturn_e2e::{Chain, NEW_VERSION_EVENT_TYPES, bounded, fast_stack, secret_event, tags, workspace_binary};
use keyturn_events::{Event, KeyVaultEventType};
use keyturn_host::{Outcome, Status};
use keyturn_local::keyvault::SecretSpec;
use keyturn_local::keyvault::store::AttributeInput;
use keyturn_local::stack::LocalStack;

const FUNCTION: &str = "new-version";
const VAULTS: [&str; 4] = ["kv-one", "kv-two", "kv-dr", "kv-evil"];

/// The stack's settings with the allow-lists of this test and only names starting `app-` notified.
fn settings(stack: &LocalStack, channels: &str) -> Vec<(String, String)> {
    let url = |vault: &str| format!("{vault}={}", stack.emulator().vault_url(vault).unwrap());
    let mut settings: Vec<(String, String)> =
        stack.handler_env().into_iter().filter(|(name, _)| name != "KEYTURN_VAULTS").collect();
    for (name, value) in [
        ("KEYTURN_VAULTS", format!("{},{}", url("kv-one"), url("kv-two"))),
        ("KEYTURN_MIRROR_VAULTS", url("kv-dr")),
        ("KEYTURN_NOTIFY", channels.to_owned()),
        ("KEYTURN_NOTIFY_NEW_VERSION_NAMES", "app-*".to_owned()),
        ("KEYTURN_RETRY_MAX", "2".to_owned()),
        ("KEYTURN_RETRY_DELAY_MS", "50".to_owned()),
    ] {
        settings.push((name.to_owned(), value));
    }
    settings
}

fn seed(stack: &LocalStack, vault: &str, name: &str, value: &str, tags: BTreeMap<String, String>) -> String {
    let now = stack.emulator().clock().now();
    let spec = SecretSpec {
        value: value.to_owned(),
        content_type: Some("application/json".to_owned()),
        attributes: AttributeInput {
            nbf: Some((now - TimeDelta::days(1)).timestamp()),
            exp: Some((now + TimeDelta::days(90)).timestamp()),
            ..AttributeInput::default()
        },
        tags,
    };
    stack.emulator().store().set_secret(vault, name, spec).unwrap().version.version
}

fn versions(stack: &LocalStack, vault: &str, name: &str) -> usize {
    stack.emulator().store().list_secret_versions(vault, name).map(|v| v.len()).unwrap_or(0)
}

fn new_version_event(id: &str, vault: &str, name: &str, version: &str) -> Event {
    secret_event(KeyVaultEventType::SecretNewVersionCreated, id, vault, name, version, None)
}

/// The `new-version` binary behind the stand-in on a fresh stack, notifying every channel of `sink`.
async fn chain(sink: &HttpSink) -> Chain {
    let stack = fast_stack(&VAULTS).await;
    let settings = settings(&stack, &sink.channels());
    // kv-one and kv-two mirror into each other as well as into kv-dr: the deployment grants new-version the
    // mirror role on all three, as infra would for these mirror targets (kv-evil: nothing).
    let mut deployment = keyturn_e2e::deployment_of(&stack, &settings);
    deployment.mirror_vaults = vec!["kv-one".into(), "kv-two".into(), "kv-dr".into()];
    Chain::start_as(stack, FUNCTION, &workspace_binary(FUNCTION), &NEW_VERSION_EVENT_TYPES, settings, deployment).await
}

/// The typed outcome of every invocation the handler answered (each 200's `ReturnValue`), oldest first.
fn outcomes(chain: &Chain) -> Vec<Outcome> {
    chain.host.invocations().into_iter().filter_map(|record| record.result.ok()?.outcome()).collect()
}

/// The last outcome about `vault/name`.
fn last_about(chain: &Chain, vault: &str, name: &str) -> Outcome {
    outcomes(chain)
        .into_iter()
        .rfind(|o| o.object.as_ref().is_some_and(|object| object.vault() == vault && object.name() == name))
        .unwrap_or_else(|| panic!("no outcome about {vault}/{name}: {:#?}", outcomes(chain)))
}

#[tokio::test]
async fn secrets_mirror_in_both_directions_without_a_loop_and_a_mirror_off_the_allow_list_is_refused() {
    bounded(Duration::from_secs(120), async {
        let sink = http_sink().await;
        let chain = chain(&sink).await;
        let stack = &chain.stack;
        let store = stack.emulator().store();

        let config_tags = tags(&[("KeyturnMirror", "kv-two, kv-dr"), ("owner", "team-a")]);
        let config = seed(stack, "kv-one", "app-config", "value-app-config-0001", config_tags.clone());
        let dr =
            seed(stack, "kv-two", "app-dr-secret", "value-app-dr-secret-0002", tags(&[("KeyturnMirror", "kv-one")]));
        seed(stack, "kv-one", "leaky", "value-leaky-0003", tags(&[("KeyturnMirror", "kv-evil")]));
        seed(stack, "kv-one", "other-name", "value-other-name-0004", BTreeMap::new());
        // The four new versions, the three replicas' own events (kv-two, kv-dr, kv-one).
        chain.settle(7, Duration::from_secs(60)).await;

        // kv-one → kv-two and kv-dr: value, content type, tags, exp and nbf, plus the source.
        let source = store.get_secret("kv-one", "app-config", None).unwrap().version;
        for mirror in ["kv-two", "kv-dr"] {
            assert_eq!(versions(stack, mirror, "app-config"), 1, "{mirror}");
            let copy = store.get_secret(mirror, "app-config", None).unwrap().version;
            assert_eq!(copy.data.value, source.data.value);
            assert_eq!(copy.data.content_type.as_deref(), Some("application/json"));
            assert_eq!((copy.attributes.nbf, copy.attributes.exp), (source.attributes.nbf, source.attributes.exp));
            let mut expected = config_tags.clone();
            expected.insert("KeyturnReplicaOf".into(), format!("kv-one/app-config/{config}"));
            assert_eq!(copy.tags, expected, "{mirror}");
        }
        // kv-two → kv-one, the other direction.
        assert_eq!(versions(stack, "kv-one", "app-dr-secret"), 1);
        let back = store.get_secret("kv-one", "app-dr-secret", None).unwrap().version;
        assert_eq!(back.tags.get("KeyturnReplicaOf"), Some(&format!("kv-two/app-dr-secret/{dr}")));
        // No loop: no source gained a version, the replicas did not replicate onward.
        assert_eq!(versions(stack, "kv-one", "app-config"), 1);
        assert_eq!(versions(stack, "kv-two", "app-dr-secret"), 1);
        // The mirror off both lists got nothing, and the event says why.
        assert!(store.list_secrets("kv-evil").unwrap().is_empty());
        chain.wait_for_answer("kv-one/leaky", Duration::from_secs(5)).await;
        let leaky = last_about(&chain, "kv-one", "leaky");
        assert_eq!((leaky.status, leaky.action.as_deref()), (Status::Rejected, Some("mirror-refused")));
        assert!(
            leaky
                .message
                .contains("'kv-evil' is not in KEYTURN_VAULTS or KEYTURN_MIRROR_VAULTS; nothing was sent to it"),
            "{leaky:#?}"
        );
        // A mirror-only vault takes replicas, but its own events are not acted on.
        chain.wait_for_answer("kv-dr/app-config", Duration::from_secs(5)).await;
        let dr_event = last_about(&chain, "kv-dr", "app-config");
        assert_eq!((dr_event.status, dr_event.action.as_deref()), (Status::Rejected, Some("not-allowed")));
        chain.wait_for_answer("kv-two/app-config", Duration::from_secs(5)).await;
        let replica = last_about(&chain, "kv-two", "app-config");
        assert_eq!(replica.status, Status::Done, "{replica:#?}");

        // Notifications: the app-* names as info, and the refused mirror (whatever its name) as a warning; each
        // accepted by every channel.
        let notified: Vec<String> = sink
            .accepted_on("/webhook")
            .iter()
            .map(Received::json)
            .map(|json| {
                let object = format!(
                    "{}/{}",
                    json["object"]["vault"].as_str().unwrap(),
                    json["object"]["name"].as_str().unwrap()
                );
                let expected = if object == "kv-one/leaky" { "warning" } else { "info" };
                assert_eq!(json["severity"], expected, "{json}");
                object
            })
            .collect();
        let mut sorted = notified.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            ["kv-one/app-config", "kv-one/app-dr-secret", "kv-one/leaky", "kv-two/app-config", "kv-two/app-dr-secret"]
        );
        assert_eq!(sink.accepted_on("/services/").len(), 5);
        assert_eq!(sink.accepted_on("/teams/").len(), 5);
        assert!(sink.received().iter().all(Received::accepted), "{:#?}", sink.received());

        // Idempotent: the same version again (a late duplicate) copies nothing.
        stack.grid().publish(new_version_event("again-1", "kv-one", "app-config", &config));
        let again = chain.wait_for_answer("Already mirrored in", Duration::from_secs(30)).await;
        assert!(again.contains("kv-two (") && again.contains("kv-dr ("), "{again}");
        chain.settle(8, Duration::from_secs(30)).await;
        assert_eq!(versions(stack, "kv-two", "app-config"), 1);
        assert_eq!(versions(stack, "kv-dr", "app-config"), 1);
        assert!(chain.stack.grid().dead_letters().is_empty());

        chain.assert_no_secret_leaked(&VAULTS, sink.bodies());
        chain.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn an_older_version_arriving_late_does_not_overwrite_a_newer_copy() {
    bounded(Duration::from_secs(120), async {
        let sink = http_sink().await;
        let chain = chain(&sink).await;
        let stack = &chain.stack;
        let mirror = tags(&[("KeyturnMirror", "kv-two")]);
        let v1 = seed(stack, "kv-one", "app-rotating", "value-app-rotating-0001", mirror.clone());
        let v2 = seed(stack, "kv-one", "app-rotating", "value-app-rotating-0002", mirror);
        // v1, v2 and the replica's own event (v1 may have been copied too, if its event beat v2's write).
        chain.settle(3, Duration::from_secs(60)).await;
        let copy = stack.emulator().store().get_secret("kv-two", "app-rotating", None).unwrap().version;
        assert_eq!(copy.tags.get("KeyturnReplicaOf"), Some(&format!("kv-one/app-rotating/{v2}")));

        let about_v1 = |chain: &Chain| chain.answers().into_iter().filter(|a| a.contains(&v1)).count();
        let before = about_v1(&chain);
        stack.grid().publish(new_version_event("late-v1", "kv-one", "app-rotating", &v1));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while about_v1(&chain) == before {
            assert!(tokio::time::Instant::now() < deadline, "no answer to the late event: {:#?}", chain.answers());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let late = chain.answers().into_iter().rfind(|a| a.contains(&v1)).unwrap();
        assert!(late.contains(&format!("a newer version ({v2}) exists")), "{late}");
        let copy = stack.emulator().store().get_secret("kv-two", "app-rotating", None).unwrap().version;
        assert_eq!(copy.tags.get("KeyturnReplicaOf"), Some(&format!("kv-one/app-rotating/{v2}")));

        chain.assert_no_secret_leaked(&VAULTS, sink.bodies());
        chain.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_key_is_notified_but_never_mirrored_and_the_answer_says_why() {
    bounded(Duration::from_secs(120), async {
        let sink = http_sink().await;
        let chain = chain(&sink).await;
        let store = chain.stack.emulator().store();
        let input = keyturn_local::keyvault::keys::KeySpecInput {
            kty: "RSA".into(),
            spec: keyturn_local::keyvault::crypto::KeySpec::Rsa(2048),
            key_ops: None,
            attributes: AttributeInput::default(),
            tags: tags(&[("KeyturnMirror", "kv-two")]),
        };
        store.create_key("kv-one", "app-signing", input).unwrap();

        chain.wait_for_answer("key kv-one/app-signing", Duration::from_secs(30)).await;
        let answer = last_about(&chain, "kv-one", "app-signing");
        assert_eq!((answer.status, answer.action.as_deref()), (Status::Done, Some("notified")));
        assert!(answer.message.contains("key material cannot be exported"), "{answer:#?}");
        assert!(store.list_keys("kv-two").unwrap().is_empty());
        let json = sink.accepted_on("/webhook")[0].json();
        assert_eq!(json["object"]["kind"], "Key");
        assert!(json["summary"].as_str().unwrap().contains("never mirrored"), "{json}");
        chain.shutdown().await;
    })
    .await;
}
