//! The `near-expiry` handler's notifications through the real chain (Key Vault emulator → Event Grid emulator →
//! Functions host stand-in → the real `near-expiry` binary) to a real HTTP sink that checks the webhook signature
//! and the Slack and Teams shapes as those services would.
//!
//! What a user would notice: a rotation arrives as info naming the new version; a secret keyturn does not rotate
//! arrives as a warning saying what is due; a channel that was down gets the message once it is back (Event Grid
//! redelivers, the rotation is not repeated, the channels that had it do not get it again); the handler's lines
//! say how many channels have it; no secret value anywhere.

// Helpers outside #[test] functions unwrap too: a panic there is a failed test with a line number.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::TimeDelta;
use keyturn_e2e::receivers::{HttpSink, Received, WEBHOOK_SECRET, http_sink, wait_until};
use keyturn_e2e::{
    Chain, NEAR_EXPIRY_EVENT_TYPES, all_secret_values, assert_no_value_in, bounded, fast_retries, fast_stack,
    seed_secret, tags, workspace_binary,
};
use keyturn_host::Status;
use keyturn_local::stack::LocalStack;
use serde_json::Value;

const FUNCTION: &str = "near-expiry";
const VAULT: &str = "kv-one";

fn generated() -> BTreeMap<String, String> {
    tags(&[("KeyturnRotation", "generated"), ("ValidityPeriodDays", "60"), ("KeyturnFormat", "hex")])
}

/// Seeds a secret version expiring in 31 days (vault clock); returns its version.
fn seed(stack: &LocalStack, name: &str, value: &str, tags: BTreeMap<String, String>) -> String {
    seed_secret(stack, VAULT, name, value, 31, tags)
}

/// The stack's settings with short retries and the channels.
fn settings(stack: &LocalStack, channels: &str) -> Vec<(String, String)> {
    let mut settings = stack.handler_env();
    settings.extend(fast_retries());
    settings.push(("KEYTURN_NOTIFY".to_owned(), channels.to_owned()));
    settings
}

/// A day on: the seeded secrets are 30 days from expiry and Event Grid delivers `SecretNearExpiry`.
fn a_day_passes(stack: &LocalStack) {
    stack.emulator().clock().advance(TimeDelta::days(1).to_std().unwrap());
}

fn latest(stack: &LocalStack, name: &str) -> keyturn_local::keyvault::secrets::SecretView {
    stack.emulator().store().get_secret(VAULT, name, None).unwrap()
}

/// The accepted webhook notifications about `name`.
fn webhooks_about(sink: &HttpSink, name: &str) -> Vec<Value> {
    sink.accepted_on("/webhook").iter().map(Received::json).filter(|json| json["object"]["name"] == name).collect()
}

/// Every body a sink received, for the leak scan.
fn bodies(sinks: &[&HttpSink]) -> Vec<String> {
    sinks.iter().flat_map(|sink| sink.received()).map(|received| received.text()).collect()
}

#[tokio::test]
async fn a_rotation_is_info_and_what_keyturn_did_not_rotate_is_a_warning_on_every_channel() {
    bounded(Duration::from_secs(120), async {
        let sink = http_sink().await;
        let stack = fast_stack(&[VAULT]).await;
        let v0 = seed(&stack, "rotating", "seeded-rotating-value-0001", generated());
        seed(&stack, "manual-one", "seeded-manual-value-0002", tags(&[("owner", "team-a")]));
        // Opted in but without its required ValidityPeriodDays: a permanent failure a person must fix.
        seed(&stack, "broken-policy", "seeded-broken-value-0003", tags(&[("KeyturnRotation", "generated")]));
        let settings = settings(&stack, &sink.channels());
        let chain =
            Chain::start(stack, FUNCTION, &workspace_binary(FUNCTION), &NEAR_EXPIRY_EVENT_TYPES, settings).await;

        a_day_passes(&chain.stack);
        chain.settle(3, Duration::from_secs(60)).await;
        wait_until(&sink, Duration::from_secs(30), "three messages on each channel", |received| {
            ["/webhook", "/services/", "/teams/"]
                .iter()
                .all(|route| received.iter().filter(|r| r.path().starts_with(route) && r.accepted()).count() == 3)
        })
        .await;
        assert!(sink.received().iter().all(Received::accepted), "{:#?}", sink.received());

        // The rotation: info, naming the version the vault now holds and the event that made it.
        let rotated = latest(&chain.stack, "rotating");
        let [info] = webhooks_about(&sink, "rotating").try_into().unwrap();
        assert_eq!(info["severity"], "info", "{info:#}");
        assert_eq!(info["action"]["type"], "rotated");
        assert_eq!(info["action"]["new_version"], rotated.version.version.as_str());
        assert_eq!(info["object"]["version"], v0.as_str(), "the message is about the event's version");
        assert_eq!(
            Some(info["event_id"].as_str().unwrap()),
            rotated.version.tags.get("KeyturnEventId").map(String::as_str)
        );

        // Not opted in: a warning saying what a person must do; nothing changed in the vault.
        let [warning] = webhooks_about(&sink, "manual-one").try_into().unwrap();
        assert_eq!(warning["severity"], "warning", "{warning:#}");
        assert_eq!(warning["action"]["type"], "not_rotated");
        assert!(warning["action"]["reason"].as_str().unwrap().contains("rotate it by hand"), "{warning:#}");
        let [broken] = webhooks_about(&sink, "broken-policy").try_into().unwrap();
        assert_eq!(broken["severity"], "warning", "{broken:#}");
        assert!(broken["action"]["reason"].as_str().unwrap().contains("ValidityPeriodDays"), "{broken:#}");
        let store = chain.stack.emulator().store();
        assert_eq!(store.list_secret_versions(VAULT, "manual-one").unwrap().len(), 1);
        assert_eq!(store.list_secret_versions(VAULT, "broken-policy").unwrap().len(), 1);

        // One typed outcome per event, each naming how many channels have the message; nothing was retried.
        let [rotated_outcome] = &chain.outcomes_about("rotating")[..] else { panic!("{:#?}", chain.outcomes()) };
        assert_eq!((rotated_outcome.status, rotated_outcome.action.as_deref()), (Status::Done, Some("rotated")));
        assert_eq!(
            (rotated_outcome.version_before.as_deref(), rotated_outcome.version_after.as_deref()),
            (Some(v0.as_str()), Some(rotated.version.version.as_str()))
        );
        assert_eq!(rotated_outcome.object.as_ref().map(|o| (o.vault(), o.version())), Some((VAULT, v0.as_str())));
        assert_eq!(rotated_outcome.notified.len(), 3, "{rotated_outcome:#?}");
        let [manual] = &chain.outcomes_about("manual-one")[..] else { panic!("{:#?}", chain.outcomes()) };
        assert_eq!((manual.status, manual.action.as_deref()), (Status::Skipped, Some("not-opted-in")));
        assert_eq!(manual.object.as_ref().map(|o| o.vault()), Some(VAULT));
        assert_eq!((manual.version_before.as_deref(), manual.version_after.as_deref()), (None, None));
        assert_eq!(manual.notified.len(), 3, "{manual:#?}");
        // A permanent error is acknowledged as rejected with only its message (no object, no channel list): the
        // message names the object and says how many channels have the warning.
        let [broken] = &chain.outcomes_for_subject("broken-policy")[..] else { panic!("{:#?}", chain.outcomes()) };
        assert_eq!(broken.status, Status::Rejected, "{broken:#?}");
        assert!(broken.message.starts_with(&format!("secret {VAULT}/broken-policy: ")), "{broken:#?}");
        assert!(broken.message.ends_with("; notified 3 channels"), "{broken:#?}");
        assert!(
            chain.attempts().iter().all(|a| a.status.is_some_and(keyturn_events::delivery::is_success)),
            "{:#?}",
            chain.attempts()
        );

        let mut texts = chain.everything_recorded();
        texts.extend(bodies(&[&sink]));
        assert_no_value_in(&texts, &all_secret_values(&chain.stack, &[VAULT]));
        chain.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_channel_that_was_down_gets_the_rotation_once_it_is_back_and_the_others_get_it_once() {
    bounded(Duration::from_secs(120), async {
        let up = http_sink().await;
        let down = http_sink().await;
        down.set_down(true);
        let stack = fast_stack(&[VAULT]).await;
        let v0 = seed(&stack, "while-down", "seeded-while-down-0001", generated());
        let channels =
            format!("{} webhook+http://127.0.0.1:{}/webhook?secret={WEBHOOK_SECRET}", up.channels(), down.addr.port());
        let settings = settings(&stack, &channels);
        let chain =
            Chain::start(stack, FUNCTION, &workspace_binary(FUNCTION), &NEAR_EXPIRY_EVENT_TYPES, settings).await;

        a_day_passes(&chain.stack);
        // Event Grid retries while one channel refuses...
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while chain.attempts().iter().filter(|a| a.status == Some(500)).count() < 2 {
            assert!(tokio::time::Instant::now() < deadline, "no retried attempts: {:#?}", chain.attempts());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(down.accepted_on("/").is_empty());
        // ...and once it is back, a redelivery reaches it.
        down.set_down(false);
        wait_until(&down, Duration::from_secs(60), "the rotation message", |received| {
            received.iter().any(Received::accepted)
        })
        .await;
        chain.settle(1, Duration::from_secs(60)).await;
        let attempts = chain.attempts();
        assert_eq!(attempts.iter().filter(|a| a.outcome == "Delivered").count(), 1, "{attempts:#?}");
        assert!(chain.stack.grid().dead_letters().is_empty());

        // One rotation, however many deliveries.
        let rotated = latest(&chain.stack, "while-down");
        assert_eq!(chain.stack.emulator().store().list_secret_versions(VAULT, "while-down").unwrap().len(), 2);
        // The channel that was down has the info message once; the three that were up had it from the first
        // delivery and were not sent it again.
        let [info] = webhooks_about(&down, "while-down").try_into().unwrap();
        assert_eq!(info["severity"], "info", "{info:#}");
        assert_eq!(info["action"]["new_version"], rotated.version.version.as_str());
        assert_eq!(up.received().len(), 3, "{:#?}", up.received());
        assert!(up.received().iter().all(Received::accepted));
        assert_eq!(webhooks_about(&up, "while-down"), [info], "the same message on every channel");

        // The failed attempts said why; the one acknowledged outcome says the rotation was already done and all
        // four channels have it.
        let [last] = &chain.outcomes_about("while-down")[..] else { panic!("{:#?}", chain.outcomes()) };
        assert_eq!((last.status, last.action.as_deref()), (Status::Skipped, Some("already-rotated")));
        assert_eq!(
            (last.version_before.as_deref(), last.version_after.as_deref()),
            (Some(rotated.version.version.as_str()), None),
            "the latest version it found"
        );
        assert_eq!(last.object.as_ref().map(|o| (o.vault(), o.version())), Some((VAULT, v0.as_str())));
        assert_eq!(last.notified.len(), 4, "{last:#?}");
        let recorded = format!("{:?}", chain.host.invocations());
        assert!(recorded.contains("notifying: 1 of 4 notification channels did not accept"), "{recorded}");

        let mut texts = chain.everything_recorded();
        texts.extend(bodies(&[&up, &down]));
        assert_no_value_in(&texts, &all_secret_values(&chain.stack, &[VAULT]));
        chain.shutdown().await;
    })
    .await;
}
