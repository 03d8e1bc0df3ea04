//! The `expired` handler through the real chain: the Key Vault emulator's clock passes exp, the Event Grid
//! emulator delivers `*Expired` to the Functions host stand-in, which invokes the real `expired` binary, which
//! reads the expired version through the Azure SDK, acts where a tag opts in, and notifies through real
//! receivers: an HTTP sink checking the webhook signature and the Slack/Teams shapes, and aiosmtpd.
//!
//! Each test asserts what a user would notice (the vault's versions and enabled flags, the messages each
//! receiver got, the handler's answers) and that no secret value appeared anywhere.

// Helpers outside #[test] functions unwrap too: a panic there is a failed test with a line number.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use keyturn_e2e::receivers::{HttpSink, Received, SmtpSink, http_sink, wait_until};
use keyturn_e2e::{
    Chain, EXPIRED_EVENT_TYPES, bounded, fast_stack, secret_event, seed_rsa_key, seed_secret, tags, workspace_binary,
};
use keyturn_events::{Event, KeyVaultEventType};
use keyturn_host::{Outcome, Status};
use keyturn_local::keyvault::certs::{CertificatePolicy, IssuerParams, X509Props};
use keyturn_local::keyvault::store::AttributeInput;
use keyturn_local::stack::LocalStack;
use serde_json::Value;

const FUNCTION: &str = "expired";
const VAULT: &str = "kv-one";

fn settings(stack: &LocalStack, channels: &str) -> Vec<(String, String)> {
    let mut settings = stack.handler_env();
    for (name, value) in [
        ("KEYTURN_RETRY_MAX", "2"),
        ("KEYTURN_RETRY_DELAY_MS", "50"),
        ("KEYTURN_RETRY_MAX_DELAY_MS", "400"),
        ("KEYTURN_NOTIFY", channels),
    ] {
        settings.push((name.to_owned(), value.to_owned()));
    }
    settings
}

/// The `expired` binary behind the stand-in on `stack`, notifying `channels`.
async fn chain(stack: LocalStack, channels: &str) -> Chain {
    let settings = settings(&stack, channels);
    // These tests opt objects into disable/rotate: the deployment turns expired's actions on, as
    // `expiredActionsEnabled` does in infra (its write roles come with it).
    let mut deployment = keyturn_e2e::deployment_of(&stack, &settings);
    deployment.flags.insert("expiredActionsEnabled".into());
    Chain::start_as(stack, FUNCTION, &workspace_binary(FUNCTION), &EXPIRED_EVENT_TYPES, settings, deployment).await
}

fn secret_enabled(stack: &LocalStack, name: &str, version: &str) -> bool {
    // Read through the listing: the emulator (like Key Vault) refuses to get a disabled version.
    let versions = stack.emulator().store().list_secret_versions(VAULT, name).unwrap();
    versions.into_iter().find(|view| view.version.version == version).unwrap().version.attributes.enabled
}

/// The webhook notification about `name` (there must be exactly one accepted).
fn webhook_about(sink: &HttpSink, name: &str) -> Value {
    let found: Vec<Value> =
        sink.accepted_on("/webhook").iter().map(Received::json).filter(|json| json["object"]["name"] == name).collect();
    assert_eq!(found.len(), 1, "webhook notifications about {name}: {found:#?}");
    found.into_iter().next().unwrap()
}

/// Everything the receivers got, for the leak scan.
fn received_texts(sink: &HttpSink, smtp: &SmtpSink) -> Vec<String> {
    let mut texts = sink.bodies();
    texts.extend(smtp.messages().iter().map(|m| m["data"].as_str().unwrap_or_default().to_owned()));
    texts
}

#[tokio::test]
async fn expired_secrets_keys_and_certificates_are_notified_critically_everywhere_and_acted_on_only_by_opt_in() {
    bounded(Duration::from_secs(120), async {
        let sink = http_sink().await;
        let smtp = SmtpSink::start().await;
        let stack = fast_stack(&[VAULT]).await;
        let notify_only =
            seed_secret(&stack, VAULT, "notify-only", "value-notify-only-0001", 1, tags(&[("owner", "team-a")]));
        let disable_me = seed_secret(
            &stack,
            VAULT,
            "disable-me",
            "value-disable-me-0002",
            1,
            tags(&[("KeyturnExpiredAction", "disable")]),
        );
        let rotate_me = seed_secret(
            &stack,
            VAULT,
            "rotate-me",
            "value-rotate-me-0003",
            1,
            tags(&[("KeyturnExpiredAction", "rotate"), ("KeyturnRotation", "generated"), ("ValidityPeriodDays", "60")]),
        );
        let store = stack.emulator().store();
        let key = seed_rsa_key(&stack, VAULT, "signing-key", 2, BTreeMap::new());
        let policy = CertificatePolicy {
            issuer: Some(IssuerParams { name: Some("Self".into()), ..IssuerParams::default() }),
            x509_props: Some(X509Props {
                subject: Some("CN=api.example.test".into()),
                validity_months: Some(1),
                ..X509Props::default()
            }),
            lifetime_actions: Some(Vec::new()),
            ..CertificatePolicy::default()
        };
        store.create_certificate(VAULT, "tls-cert", Some(policy), AttributeInput::default(), BTreeMap::new()).unwrap();
        // Issuance completes when the certificate is next read.
        store.get_certificate(VAULT, "tls-cert", None).unwrap();

        let chain = chain(stack, &format!("{} {}", sink.channels(), smtp.channel())).await;
        let stack = &chain.stack;

        // 40 days on, every one of them has expired (the certificate was valid for a month).
        stack.emulator().clock().advance(TimeDelta::days(40).to_std().unwrap());
        chain.settle(5, Duration::from_secs(60)).await;

        // Every channel got one critical message per expired object, and accepted it as its real receiver would.
        for route in ["/webhook", "/services/", "/teams/"] {
            assert_eq!(sink.accepted_on(route).len(), 5, "{route}: {:#?}", sink.received());
        }
        assert!(sink.received().iter().all(Received::accepted), "{:#?}", sink.received());
        smtp.wait_for(5, "CRITICAL", Duration::from_secs(10)).await;
        for name in ["notify-only", "disable-me", "rotate-me", "signing-key", "tls-cert"] {
            let json = webhook_about(&sink, name);
            assert_eq!(json["severity"], "critical", "{json}");
            assert!(json["headline"].as_str().unwrap().ends_with("has expired"), "{json}");
            let emails = smtp.messages().iter().filter(|m| m["data"].as_str().unwrap().contains(name)).count();
            assert!(emails >= 1, "no email about {name}");
        }

        // No tag: notified only, and the message says the expired version is still enabled.
        let summary = |name: &str| webhook_about(&sink, name)["summary"].as_str().unwrap().to_owned();
        assert!(summary("notify-only").contains(&format!("The expired version {notify_only} is still enabled")));
        assert!(summary("notify-only").contains("no action is configured"), "{}", summary("notify-only"));
        assert!(secret_enabled(stack, "notify-only", &notify_only));
        assert_eq!(stack.emulator().store().list_secret_versions(VAULT, "notify-only").unwrap().len(), 1);
        assert!(summary("signing-key").contains(&format!("The expired version {key} is still enabled")));
        assert!(stack.emulator().store().get_key(VAULT, "signing-key", None).unwrap().version.attributes.enabled);

        // disable: exactly the expired version was disabled, and the message says so.
        assert!(!secret_enabled(stack, "disable-me", &disable_me));
        assert!(summary("disable-me").contains("keyturn disabled it"), "{}", summary("disable-me"));
        assert!(summary("disable-me").contains(&format!("The expired version {disable_me} is disabled")));

        // rotate: one new version through the engine, named in the message; the expired one untouched.
        let versions = stack.emulator().store().list_secret_versions(VAULT, "rotate-me").unwrap();
        assert_eq!(versions.len(), 2);
        let latest = stack.emulator().store().get_secret(VAULT, "rotate-me", None).unwrap().version;
        assert_ne!(latest.version, rotate_me);
        assert_eq!(latest.tags.get("KeyturnRotatedFrom"), Some(&rotate_me));
        assert!(summary("rotate-me").contains(&format!("the new version is {}", latest.version)));
        assert!(secret_enabled(stack, "rotate-me", &rotate_me));

        let answers = outcomes(&chain);
        assert_eq!(answers.iter().filter(|a| a.status == Status::Done).count(), 5, "{answers:#?}");
        let rotated = outcomes_about(&chain, "rotate-me");
        assert_eq!(rotated[0].action.as_deref(), Some("rotated"), "{rotated:#?}");
        assert_eq!(rotated[0].version_after.as_deref(), Some(latest.version.as_str()));
        assert!(chain.stack.grid().dead_letters().is_empty());

        chain.assert_no_secret_leaked(&[VAULT], received_texts(&sink, &smtp));
        chain.shutdown().await;
    })
    .await;
}

/// The typed outcome of every invocation the handler answered (each 200's `ReturnValue`), oldest first.
fn outcomes(chain: &Chain) -> Vec<Outcome> {
    chain.host.invocations().into_iter().filter_map(|record| record.result.ok()?.outcome()).collect()
}

/// The outcomes about the object named `name`.
fn outcomes_about(chain: &Chain, name: &str) -> Vec<Outcome> {
    outcomes(chain).into_iter().filter(|o| o.object.as_ref().is_some_and(|object| object.name() == name)).collect()
}

/// A `SecretExpired` event for `version`, as Event Grid would deliver it.
fn expired_event(id: &str, vault: &str, name: &str, version: &str) -> Event {
    secret_event(KeyVaultEventType::SecretExpired, id, vault, name, version, Some(Utc::now()))
}

#[tokio::test]
async fn disable_touches_only_the_expired_version_and_a_foreign_vault_is_refused() {
    bounded(Duration::from_secs(120), async {
        let sink = http_sink().await;
        let stack = fast_stack(&[VAULT]).await;
        let chain = chain(stack, &sink.channels()).await;
        let stack = &chain.stack;
        let opt_in = tags(&[("KeyturnExpiredAction", "disable")]);
        let old = seed_secret(stack, VAULT, "two-versions", "value-two-versions-old-01", 1, opt_in.clone());
        let new = seed_secret(stack, VAULT, "two-versions", "value-two-versions-new-02", 90, opt_in);
        // Two days on by the vault's clock, the old version has expired (the handler acts on the vault's word only);
        // the current one has not.
        stack.emulator().clock().advance(TimeDelta::days(2).to_std().unwrap());

        // Events are published by hand: the emulator raises Expired for the current version only, and Key Vault
        // may deliver one late. The old version expired while a newer one is current: only the old one is disabled.
        stack.grid().publish(expired_event("expired-old-1", VAULT, "two-versions", &old));
        chain.wait_for_answer("two-versions version", Duration::from_secs(30)).await;
        assert!(!secret_enabled(stack, "two-versions", &old));
        assert!(secret_enabled(stack, "two-versions", &new));

        // A second delivery of another event for it finds it already disabled and changes nothing.
        stack.grid().publish(expired_event("expired-old-2", VAULT, "two-versions", &old));
        chain.settle(2, Duration::from_secs(30)).await;
        let answers = outcomes_about(&chain, "two-versions");
        assert_eq!(answers.len(), 2, "{answers:#?}");
        assert_eq!(answers[0].action.as_deref(), Some("disabled"), "{answers:#?}");
        assert_eq!(answers[1].action.as_deref(), Some("notified"), "{answers:#?}");
        assert!(answers[1].message.contains("did not need to disable it"), "{answers:#?}");
        assert!(secret_enabled(stack, "two-versions", &new));

        // A tag that is not a known action: nothing is done, but the critical message still goes out.
        let bad = seed_secret(
            stack,
            VAULT,
            "bad-tag",
            "value-bad-tag-000003",
            90,
            tags(&[("KeyturnExpiredAction", "delete")]),
        );
        stack.grid().publish(expired_event("expired-bad-tag", VAULT, "bad-tag", &bad));
        chain.wait_for_answer("bad-tag", Duration::from_secs(30)).await;
        let [rejected] = &outcomes_about(&chain, "bad-tag")[..] else { panic!("{:#?}", outcomes(&chain)) };
        assert_eq!((rejected.status, rejected.action.as_deref()), (Status::Rejected, Some("invalid-policy")));
        assert_eq!(rejected.notified.len(), 3, "{rejected:#?}");
        assert!(
            rejected
                .message
                .contains("tag KeyturnExpiredAction: 'delete' is not valid; expected one of rotate, disable, notify"),
            "{rejected:#?}"
        );
        assert!(secret_enabled(stack, "bad-tag", &bad));
        assert_eq!(webhook_about(&sink, "bad-tag")["severity"], "critical");
        chain.settle(3, Duration::from_secs(30)).await;

        // A vault outside the allow-list: refused before anything is read or sent; no message goes out.
        let before = sink.received().len();
        stack.grid().publish(expired_event("expired-foreign", "kv-elsewhere", "two-versions", &old));
        chain.settle(4, Duration::from_secs(30)).await;
        chain.wait_for_answer("kv-elsewhere", Duration::from_secs(10)).await;
        let refused =
            outcomes(&chain).into_iter().rfind(|o| o.object.as_ref().is_some_and(|o| o.vault() == "kv-elsewhere"));
        let refused = refused.expect("an outcome about kv-elsewhere");
        assert_eq!((refused.status, refused.action.as_deref()), (Status::Rejected, Some("not-allowed")));
        assert!(refused.notified.is_empty());
        assert_eq!(sink.received().len(), before);

        chain.assert_no_secret_leaked(&[VAULT], sink.bodies());
        chain.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_channel_that_is_down_gets_the_message_once_it_is_back_through_event_grid_retries() {
    bounded(Duration::from_secs(120), async {
        let sink = http_sink().await;
        sink.set_down(true);
        let stack = fast_stack(&[VAULT]).await;
        seed_secret(&stack, VAULT, "while-down", "value-while-down-0001", 1, BTreeMap::new());
        let chain = chain(stack, &sink.channels()).await;

        chain.stack.emulator().clock().advance(TimeDelta::days(2).to_std().unwrap());
        // Event Grid retries while the channels refuse...
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while chain.attempts().iter().filter(|a| a.status == Some(500)).count() < 2 {
            assert!(tokio::time::Instant::now() < deadline, "no retried attempts: {:#?}", chain.attempts());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(sink.accepted_on("/").is_empty());
        // ...and once they are back, a redelivery reaches every one of them.
        sink.set_down(false);
        wait_until(&sink, Duration::from_secs(60), "the message on all three channels", |received| {
            ["/webhook", "/services/", "/teams/"]
                .iter()
                .all(|route| received.iter().any(|r| r.path().starts_with(route) && r.accepted()))
        })
        .await;
        chain.settle(1, Duration::from_secs(60)).await;
        let delivered = chain.attempts().into_iter().filter(|a| a.outcome == "Delivered").count();
        assert_eq!(delivered, 1, "{:#?}", chain.attempts());
        assert!(chain.stack.grid().dead_letters().is_empty());
        assert_eq!(webhook_about(&sink, "while-down")["severity"], "critical");

        chain.assert_no_secret_leaked(&[VAULT], sink.bodies());
        chain.shutdown().await;
    })
    .await;
}
