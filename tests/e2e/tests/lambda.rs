//! The real handler binaries as AWS Lambda runs them: `target/<profile>/near-expiry` (and `expired`) polling
//! the local Lambda Runtime API (`keyturn_local::lambda`), behind its function URL, subscribed in the Event Grid
//! emulator as a WebHook with the shared secret as a static delivery header, reaching the Key Vault emulator
//! over HTTPS with a managed identity token, exactly as under the Functions host stand-in.
//!
//! Each test asserts what a user would check: the validation handshakes, the vault's versions, what the
//! function answered, Event Grid's attempts and dead letters, and that no secret value appeared anywhere.

// Helpers outside #[test] functions unwrap too: a panic there is a failed test with a line number.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::TimeDelta;
use keyturn_e2e::receivers::http_sink;
use keyturn_e2e::{
    EXPIRED_EVENT_TYPES, NEAR_EXPIRY_EVENT_TYPES, all_secret_values, assert_no_value_in, bounded, counting_relay,
    fast_stack, seed_secret, tags, workspace_binary,
};
use keyturn_events::Schema;
use keyturn_host::{Outcome, Status};
use keyturn_local::eventgrid::{Attempt, EndpointType, Subscription};
use keyturn_local::keyvault::{FaultRule, Faults, OperationKind};
use keyturn_local::lambda::{Completion, LocalLambda};
use keyturn_local::stack::LocalStack;
use serde_json::Value;

const VAULT: &str = "kv-one";
/// The shared secret: `KEYTURN_WEBHOOK_SECRET` of the function, the static delivery header of the subscription.
const SECRET: &str = "e2e-lambda-webhook-secret-0123456789";
const SECRET_HEADER: &str = "x-keyturn-webhook-secret";
/// Every wait for the function or Event Grid inside a test.
const SETTLE: Duration = Duration::from_secs(60);

/// The stack's handler environment (identity endpoint, allow-list, CA), `function`'s own identity with its
/// infra/roles.json grants, short retries so a failing call comes back to Event Grid quickly, and the webhook
/// secret.
fn settings(stack: &LocalStack, function: &str) -> Vec<(String, String)> {
    let mut settings = stack.handler_env();
    let identity = stack.handler_identity(function, &keyturn_e2e::deployment_of(stack, &settings)).unwrap();
    settings.extend(identity.app_settings());
    for (name, value) in [
        ("KEYTURN_RETRY_MAX", "2"),
        ("KEYTURN_RETRY_DELAY_MS", "50"),
        ("KEYTURN_RETRY_MAX_DELAY_MS", "400"),
        ("KEYTURN_HTTP_TIMEOUT_SECS", "20"),
        ("KEYTURN_WEBHOOK_SECRET", SECRET),
    ] {
        settings.push((name.to_owned(), value.to_owned()));
    }
    settings
}

/// The real `function` binary as a Lambda function with `settings`, once it polls the Runtime API.
async fn lambda(function: &str, settings: Vec<(String, String)>) -> LocalLambda {
    let mut lambda = LocalLambda::builder(workspace_binary(function))
        .function_name(format!("keyturn-{function}"))
        .memory_size(256)
        .app_settings(settings)
        .start()
        .await
        .unwrap();
    lambda.wait_until_polling(Duration::from_secs(20)).await.unwrap();
    lambda
}

/// A WebHook subscription to the function URL with the secret as a static delivery header.
fn webhook(name: &str, lambda: &LocalLambda, event_types: &[&str]) -> Subscription {
    Subscription::new(name, lambda.url(), EndpointType::Webhook)
        .event_types(event_types.iter().copied())
        .delivery_header(SECRET_HEADER, SECRET)
}

fn generated(format: &str, length: &str) -> BTreeMap<String, String> {
    tags(&[
        ("KeyturnRotation", "generated"),
        ("ValidityPeriodDays", "60"),
        ("KeyturnFormat", format),
        ("KeyturnLength", length),
    ])
}

fn versions(stack: &LocalStack, name: &str) -> usize {
    stack.emulator().store().list_secret_versions(VAULT, name).unwrap().len()
}

fn rotated_from(stack: &LocalStack, name: &str) -> Option<String> {
    stack.emulator().store().get_secret(VAULT, name, None).unwrap().version.tags.get("KeyturnRotatedFrom").cloned()
}

fn advance(stack: &LocalStack, days: i64) {
    stack.emulator().clock().advance(TimeDelta::days(days).to_std().unwrap());
}

fn attempts(stack: &LocalStack, subscription: &str) -> Vec<Attempt> {
    stack.grid().attempts().into_iter().filter(|attempt| attempt.subscription == subscription).collect()
}

/// Waits until attempts for `events` distinct events were made to `subscription` and nothing is in flight.
async fn settle(stack: &LocalStack, subscription: &str, events: usize) {
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let seen: HashSet<String> =
            attempts(stack, subscription).into_iter().flat_map(|attempt| attempt.event_ids).collect();
        if seen.len() >= events {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "only {} of {events} events were delivered", seen.len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    assert!(stack.grid().settled(left).await, "Event Grid still had deliveries in flight");
}

/// `(statusCode, results)` of every function URL answer so far; `results` is `Null` when no handler ran.
fn answers(lambda: &LocalLambda) -> Vec<(u16, Value)> {
    lambda
        .runtime()
        .http_responses()
        .into_iter()
        .map(|response| {
            let body: Value = serde_json::from_str(&response.body).unwrap_or(Value::Null);
            (response.status_code, body["results"].clone())
        })
        .collect()
}

/// Every result line any handler invocation answered (`done: ...`, `skipped: ...`, `retry: ...`).
fn results(lambda: &LocalLambda) -> Vec<String> {
    answers(lambda)
        .into_iter()
        .flat_map(|(_, results)| results.as_array().cloned().unwrap_or_default())
        .filter_map(|result| result.as_str().map(str::to_owned))
        .collect()
}

/// The typed outcome of every acknowledged event (the response's `outcomes`; a retried event has none).
fn outcomes(lambda: &LocalLambda) -> Vec<Outcome> {
    lambda
        .runtime()
        .http_responses()
        .into_iter()
        .filter_map(|response| serde_json::from_str::<Value>(&response.body).ok())
        .flat_map(|body| body["outcomes"].as_array().cloned().unwrap_or_default())
        .filter_map(|outcome| Outcome::from_return_value(&outcome))
        .collect()
}

/// Everything recorded: the process's stdout and stderr, every invocation (events and answers), Event Grid's
/// attempts and dead letters.
fn everything_recorded(stack: &LocalStack, lambda: &LocalLambda) -> Vec<String> {
    let mut texts: Vec<String> = lambda.output().lines().into_iter().map(|line| line.text).collect();
    texts.extend(lambda.runtime().invocations().iter().map(|invocation| format!("{invocation:?}")));
    texts.extend(stack.grid().attempts().iter().map(|attempt| format!("{attempt:?}")));
    texts.extend(stack.grid().dead_letters().iter().map(|letter| format!("{letter:?}")));
    texts
}

#[tokio::test]
async fn near_expiry_on_lambda_passes_both_handshakes_and_rotates_each_opted_in_secret_exactly_once() {
    bounded(Duration::from_secs(120), async {
        let stack = fast_stack(&[VAULT]).await;
        let db =
            seed_secret(&stack, VAULT, "eg-db-password", "seeded-db-password-0001", 31, generated("password", "40"));
        let api = seed_secret(&stack, VAULT, "ce-api-token", "seeded-api-token-0002", 31, generated("hex", "24"));
        seed_secret(&stack, VAULT, "eg-manual", "seeded-manual-0003", 31, tags(&[("ValidityPeriodDays", "60")]));
        let lambda = lambda("near-expiry", settings(&stack, "near-expiry")).await;

        // Event Grid schema: the validation event. CloudEvents: the OPTIONS handshake. Each subscription takes
        // the secrets whose name starts with its prefix.
        stack
            .grid()
            .subscribe(webhook("eg", &lambda, &NEAR_EXPIRY_EVENT_TYPES).subject_begins_with("eg-"))
            .await
            .unwrap();
        let cloud_events =
            webhook("ce", &lambda, &NEAR_EXPIRY_EVENT_TYPES).subject_begins_with("ce-").schema(Schema::CloudEvents);
        stack.grid().subscribe(cloud_events).await.unwrap();
        let handshakes = lambda.runtime().invocations();
        assert_eq!(handshakes.len(), 2, "{handshakes:#?}");
        assert_eq!(handshakes[0].event["headers"]["aeg-event-type"], "SubscriptionValidation");
        let Completion::Response(answer) = &handshakes[0].completion else { panic!("{:?}", handshakes[0]) };
        assert_eq!(answer["statusCode"], 200);
        assert!(answer["body"].as_str().unwrap().contains("validationResponse"), "{answer}");
        assert_eq!(handshakes[1].event["requestContext"]["http"]["method"], "OPTIONS");
        let Completion::Response(answer) = &handshakes[1].completion else { panic!("{:?}", handshakes[1]) };
        assert_eq!(answer["headers"]["webhook-allowed-origin"], "eventgrid.azure.net");

        advance(&stack, 1);
        settle(&stack, "eg", 2).await;
        settle(&stack, "ce", 1).await;

        // Exactly one new version of each opted-in secret; the other one untouched.
        assert_eq!(versions(&stack, "eg-db-password"), 2);
        assert_eq!(versions(&stack, "ce-api-token"), 2);
        assert_eq!(versions(&stack, "eg-manual"), 1);
        assert_eq!(rotated_from(&stack, "eg-db-password"), Some(db.clone()));
        assert_eq!(rotated_from(&stack, "ce-api-token"), Some(api.clone()));
        let latest = stack.emulator().store().get_secret(VAULT, "eg-db-password", None).unwrap().version;
        assert_eq!(latest.data.value.chars().count(), 40, "KeyturnLength=40");
        let hex = stack.emulator().store().get_secret(VAULT, "ce-api-token", None).unwrap().version;
        assert_eq!(hex.data.value.len(), 48, "24 random bytes as hex");

        for subscription in ["eg", "ce"] {
            assert!(
                attempts(&stack, subscription).iter().all(|a| a.status == Some(200)),
                "{:#?}",
                stack.grid().attempts()
            );
        }
        assert!(stack.grid().dead_letters().is_empty());
        let outcomes = outcomes(&lambda);
        let about =
            |name: &str| outcomes.iter().find(|o| o.object.as_ref().is_some_and(|object| object.name() == name));
        let rotated = about("eg-db-password").expect("an outcome about eg-db-password");
        assert_eq!(
            (rotated.action.as_deref(), rotated.version_before.as_deref()),
            (Some("rotated"), Some(db.as_str()))
        );
        let rotated = about("ce-api-token").expect("an outcome about ce-api-token");
        assert_eq!(
            (rotated.action.as_deref(), rotated.version_before.as_deref()),
            (Some("rotated"), Some(api.as_str()))
        );
        let manual = about("eg-manual").expect("an outcome about eg-manual");
        assert_eq!((manual.status, manual.action.as_deref()), (Status::Skipped, Some("not-opted-in")));
        // The one-line text is still there for people: the outcome's own line.
        let rotated = about("eg-db-password").expect("an outcome about eg-db-password");
        assert!(results(&lambda).contains(&rotated.log_line()), "{:#?}", results(&lambda));
        // The CloudEvents batch crossed the function URL base64-encoded (its content type is not text).
        let invocations = lambda.runtime().invocations();
        assert!(invocations.iter().any(|i| i.event["isBase64Encoded"] == true && i.event["body"].is_string()));

        assert_no_value_in(&everything_recorded(&stack, &lambda), &all_secret_values(&stack, &[VAULT]));
        lambda.shutdown().await;
        stack.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_batch_of_several_secrets_is_one_invocation_and_rotates_each_once() {
    bounded(Duration::from_secs(120), async {
        let stack = fast_stack(&[VAULT]).await;
        let names: Vec<String> = (1..=5).map(|n| format!("batch-{n}")).collect();
        let seeded: Vec<String> = names
            .iter()
            .enumerate()
            .map(|(n, name)| {
                seed_secret(
                    &stack,
                    VAULT,
                    name,
                    &format!("seeded-batch-value-{n:04}"),
                    31,
                    generated("alphanumeric", "32"),
                )
            })
            .collect();
        let lambda = lambda("near-expiry", settings(&stack, "near-expiry")).await;
        stack
            .grid()
            .subscribe(webhook("batch", &lambda, &NEAR_EXPIRY_EVENT_TYPES).max_events_per_batch(10))
            .await
            .unwrap();

        // The expiry watcher publishes every event due at once, back to back on this (current-thread) runtime:
        // the dispatcher takes them as one batch.
        advance(&stack, 1);
        settle(&stack, "batch", names.len()).await;

        let attempts = attempts(&stack, "batch");
        assert_eq!(attempts.len(), 1, "{attempts:#?}");
        assert_eq!((attempts[0].event_ids.len(), attempts[0].status), (names.len(), Some(200)));
        for (name, version) in names.iter().zip(&seeded) {
            assert_eq!(versions(&stack, name), 2, "{name}");
            assert_eq!(rotated_from(&stack, name).as_ref(), Some(version), "{name}");
        }
        // One function URL request (after the handshake) answered every event of the batch.
        let answers = answers(&lambda);
        assert_eq!(answers.len(), 2, "{answers:#?}");
        let (status, results) = &answers[1];
        assert_eq!(*status, 200);
        let results = results.as_array().unwrap();
        assert_eq!(results.len(), names.len());
        // Each event's outcome says it rotated its secret from the seeded version; its line is the result.
        let outcomes = outcomes(&lambda);
        assert_eq!(outcomes.len(), names.len(), "{outcomes:#?}");
        for (name, version) in names.iter().zip(&seeded) {
            let [rotated] = &outcomes
                .iter()
                .filter(|o| o.object.as_ref().is_some_and(|object| object.name() == name))
                .collect::<Vec<_>>()[..]
            else {
                panic!("{name}: {outcomes:#?}")
            };
            assert_eq!((rotated.status, rotated.action.as_deref()), (Status::Done, Some("rotated")), "{name}");
            assert_eq!(rotated.version_before.as_ref(), Some(version), "{name}");
            let latest = stack.emulator().store().get_secret(VAULT, name, None).unwrap().version.version;
            assert_eq!(rotated.version_after.as_ref(), Some(&latest), "{name}");
        }
        let lines: Vec<Value> = outcomes.iter().map(|o| Value::String(o.log_line())).collect();
        assert_eq!(results, &lines);

        assert_no_value_in(&everything_recorded(&stack, &lambda), &all_secret_values(&stack, &[VAULT]));
        lambda.shutdown().await;
        stack.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn vault_503s_fail_the_batch_with_500_and_event_grids_retries_converge_on_one_rotation_each() {
    bounded(Duration::from_secs(150), async {
        let stack = fast_stack(&[VAULT]).await;
        let names = ["flaky-1", "flaky-2", "flaky-3"];
        let seeded: Vec<String> = names
            .iter()
            .map(|name| {
                seed_secret(&stack, VAULT, name, &format!("seeded-{name}-value"), 31, generated("password", "32"))
            })
            .collect();
        let lambda = lambda("near-expiry", settings(&stack, "near-expiry")).await;
        stack
            .grid()
            .subscribe(webhook("flaky", &lambda, &NEAR_EXPIRY_EVENT_TYPES).max_events_per_batch(10))
            .await
            .unwrap();

        // Phase 1: every secret create answers 503, so no rotation can finish and the batch fails with 500.
        let emulator = stack.emulator();
        emulator.set_faults(
            Faults::none()
                .with(OperationKind::SecretCreate, FaultRule { unavailable_share: 1.0, ..FaultRule::default() }),
        );
        advance(&stack, 1);
        let deadline = tokio::time::Instant::now() + SETTLE;
        while !attempts(&stack, "flaky").iter().any(|attempt| attempt.status == Some(500)) {
            assert!(tokio::time::Instant::now() < deadline, "no attempt failed: {:#?}", attempts(&stack, "flaky"));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for name in names {
            assert_eq!(versions(&stack, name), 1, "{name} rotated while every create failed");
        }

        // Phase 2: half of every secret operation answers 503, reads included; Event Grid resends the whole
        // batch on its schedule until it is answered 200.
        emulator.set_faults(Faults::none().with_all(FaultRule { unavailable_share: 0.5, ..FaultRule::default() }));
        let deadline = tokio::time::Instant::now() + SETTLE;
        while !attempts(&stack, "flaky").iter().any(|attempt| attempt.status == Some(200)) {
            assert!(tokio::time::Instant::now() < deadline, "never converged: {:#?}", attempts(&stack, "flaky"));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(stack.grid().settled(SETTLE).await);
        emulator.set_faults(Faults::none());

        let attempts = attempts(&stack, "flaky");
        assert!(attempts.len() >= 2, "{attempts:#?}");
        assert!(attempts.iter().all(|attempt| attempt.event_ids.len() == names.len()), "one batch: {attempts:#?}");
        let (last, earlier) = attempts.split_last().unwrap();
        assert_eq!(last.status, Some(200));
        assert!(earlier.iter().all(|attempt| attempt.status == Some(500)), "{attempts:#?}");
        // Exactly one rotation each, however the retries fell.
        for (name, version) in names.iter().zip(&seeded) {
            assert_eq!(versions(&stack, name), 2, "{name}");
            assert_eq!(rotated_from(&stack, name).as_ref(), Some(version), "{name}");
        }
        assert!(stack.grid().dead_letters().is_empty());
        let results = results(&lambda);
        assert!(results.iter().any(|r| r.starts_with("retry: ")), "{results:#?}");

        assert_no_value_in(&everything_recorded(&stack, &lambda), &all_secret_values(&stack, &[VAULT]));
        lambda.shutdown().await;
        stack.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_wrong_secret_is_refused_with_401_and_dead_lettered_and_the_vault_sees_nothing() {
    bounded(Duration::from_secs(120), async {
        let stack = fast_stack(&[VAULT]).await;
        let seeded =
            seed_secret(&stack, VAULT, "guarded", "seeded-guarded-value-0001", 31, generated("password", "32"));
        // The function reaches the vault only through a counting relay: whatever it sends there is counted.
        let (vault_relay, vault_connections) = counting_relay(stack.emulator().vault_addr(VAULT).unwrap()).await;
        let mut settings: Vec<(String, String)> =
            settings(&stack, "near-expiry").into_iter().filter(|(name, _)| name != "KEYTURN_VAULTS").collect();
        settings.push(("KEYTURN_VAULTS".into(), format!("{VAULT}=https://{vault_relay}")));
        let mut lambda = lambda("near-expiry", settings.clone()).await;

        // A subscription with the wrong secret cannot even be created: its handshake gets 401.
        let wrong = Subscription::new("wrong", lambda.url(), EndpointType::Webhook)
            .delivery_header(SECRET_HEADER, "not-the-secret-at-all-0000");
        let error = stack.grid().subscribe(wrong).await.unwrap_err().to_string();
        assert!(error.contains("401"), "{error}");

        // The secret is rotated on the Lambda side only: the delivery is refused with 401, which is final for a
        // webhook, so Event Grid dead-letters at once instead of retrying for a day.
        let dead_letters = tempfile::tempdir().unwrap();
        let subscription = webhook("rotated", &lambda, &NEAR_EXPIRY_EVENT_TYPES).dead_letter_dir(dead_letters.path());
        stack.grid().subscribe(subscription).await.unwrap();
        settings.retain(|(name, _)| name != "KEYTURN_WEBHOOK_SECRET");
        settings.push(("KEYTURN_WEBHOOK_SECRET".into(), "a-brand-new-webhook-secret-00001".into()));
        lambda.redeploy(settings).await.unwrap();
        lambda.wait_until_polling(Duration::from_secs(20)).await.unwrap();
        advance(&stack, 1);
        settle(&stack, "rotated", 1).await;

        let statuses: Vec<Option<u16>> = attempts(&stack, "rotated").iter().map(|attempt| attempt.status).collect();
        assert_eq!(statuses, [Some(401)]);
        let letters = stack.grid().dead_letters();
        assert_eq!(letters.len(), 1, "{letters:#?}");
        assert_eq!(letters[0].dead_letter_reason, "UndeliverableDueToHttpUnauthorized");
        assert_eq!(letters[0].delivery_attempts, 1);
        let record = std::fs::read_dir(dead_letters.path().join("ROTATED")).unwrap().count();
        assert_eq!(record, 1, "a dead-letter blob is written under the subscription's name");

        // Nothing ran: every answer was a refusal or the handshake, and the vault saw no connection at all.
        let answers = answers(&lambda);
        assert_eq!(answers.iter().map(|(status, _)| *status).collect::<Vec<_>>(), [401, 200, 401]);
        assert!(answers.iter().all(|(_, results)| results.is_null()), "{answers:#?}");
        assert_eq!(vault_connections.load(Ordering::SeqCst), 0);
        assert_eq!(versions(&stack, "guarded"), 1);
        assert!(stack.emulator().store().get_secret(VAULT, "guarded", None).unwrap().version.version == seeded);

        lambda.shutdown().await;
        stack.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn expired_on_lambda_notifies_the_webhook_receiver_unchanged() {
    bounded(Duration::from_secs(120), async {
        let sink = http_sink().await;
        let stack = fast_stack(&[VAULT]).await;
        let version =
            seed_secret(&stack, VAULT, "expiring", "seeded-expiring-value-0001", 1, tags(&[("owner", "team-a")]));
        let mut settings = settings(&stack, "expired");
        let webhook_channel = sink.channels().split_whitespace().next().unwrap().to_owned();
        settings.push(("KEYTURN_NOTIFY".into(), webhook_channel));
        let lambda = lambda("expired", settings).await;
        stack.grid().subscribe(webhook("expired", &lambda, &EXPIRED_EVENT_TYPES)).await.unwrap();

        advance(&stack, 2);
        settle(&stack, "expired", 1).await;

        let statuses: Vec<Option<u16>> = attempts(&stack, "expired").iter().map(|attempt| attempt.status).collect();
        assert_eq!(statuses, [Some(200)]);
        // The signed webhook arrived and the receiver accepted it as keyturn's real receiver would.
        let accepted = sink.accepted_on("/webhook");
        assert_eq!(accepted.len(), 1, "{:#?}", sink.received());
        let message = accepted[0].json();
        assert_eq!(message["severity"], "critical", "{message}");
        assert_eq!(message["object"]["name"], "expiring", "{message}");
        assert!(message["headline"].as_str().unwrap().ends_with("has expired"), "{message}");
        assert!(
            message["summary"].as_str().unwrap().contains(&format!("The expired version {version} is still enabled"))
        );
        let results = results(&lambda);
        assert_eq!(results.len(), 1, "{results:#?}");
        let outcomes = outcomes(&lambda);
        assert_eq!(outcomes.len(), 1, "{outcomes:#?}");
        assert_eq!((outcomes[0].status, outcomes[0].action.as_deref()), (Status::Done, Some("notified")));

        let mut texts = everything_recorded(&stack, &lambda);
        texts.extend(sink.received().into_iter().map(|received| received.text()));
        assert_no_value_in(&texts, &all_secret_values(&stack, &[VAULT]));
        lambda.shutdown().await;
        stack.shutdown().await;
    })
    .await;
}
