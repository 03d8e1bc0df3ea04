//! The `host-echo` binary as AWS Lambda runs it: a real process polling a local Lambda Runtime API, behind a
//! local function URL, fed by the local Event Grid emulator through the webhook path (validation handshakes,
//! batches, retries, dead-lettering), plus the process-level choice of adapter.

// Test helpers outside #[test] functions unwrap too: a panic there is a failed test with a line number.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chrono::{DateTime, Utc};
use keyturn_events::{Event, KeyVaultEvent, KeyVaultEventType, Payload, Schema, VaultObject};
use keyturn_local::clock::Clock;
use keyturn_local::eventgrid::{EndpointType, EventGrid, EventGridOptions, Subscription};
use keyturn_local::functions_host::Stream;
use keyturn_local::lambda::{Completion, LocalLambda};
use serde_json::{Value, json};

/// Every wait in these tests is bounded by this.
const LIMIT: Duration = Duration::from_secs(20);
const SECRET: &str = "4f6b1c2d9e8a7b3c5d0e1f2a3b4c5d6e";
const SECRET_HEADER: &str = "x-keyturn-webhook-secret";
const NEAR_EXPIRY: &str = include_str!("../../events/fixtures/eventgrid-secret-near-expiry.json");

/// `host-echo` as a local Lambda function with `settings` as its environment variables (nothing inherited).
async fn start_lambda(settings: &[(&str, &str)]) -> LocalLambda {
    LocalLambda::builder(env!("CARGO_BIN_EXE_host-echo"))
        .function_name("keyturn-echo")
        .timeout(LIMIT)
        .app_settings(settings.iter().copied())
        .start()
        .await
        .unwrap()
}

async fn post(lambda: &LocalLambda, headers: &[(&str, &str)], body: &Value) -> (u16, Value) {
    let client = reqwest::Client::builder().no_proxy().timeout(LIMIT).build().unwrap();
    let mut request = client.post(lambda.url()).json(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn greeting_and_secret() -> [(&'static str, &'static str); 2] {
    [("HOST_ECHO_GREETING", "hello"), ("KEYTURN_WEBHOOK_SECRET", SECRET)]
}

fn start_time() -> DateTime<Utc> {
    DateTime::from_timestamp(1_750_000_000, 0).unwrap()
}

fn event_grid() -> EventGrid {
    EventGrid::start(
        Clock::starting_at(start_time()),
        EventGridOptions { time_scale: 0.001, ..EventGridOptions::default() },
    )
}

/// A SecretNearExpiry event whose subject (the secret's name) tells `host-echo` what to do.
fn near_expiry(id: &str, subject: &str) -> Event {
    let object = VaultObject::new(
        "kv-one",
        keyturn_events::ObjectKind::Secret,
        subject,
        Some("0123456789abcdef0123456789abcdef"),
        None,
        None,
    )
    .unwrap();
    Event {
        id: id.to_owned(),
        subject: subject.to_owned(),
        source: "/subscriptions/0/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv-one".to_owned(),
        time: Some(start_time()),
        schema: Schema::EventGrid,
        payload: Payload::KeyVault(KeyVaultEvent { event_type: KeyVaultEventType::SecretNearExpiry, object }),
    }
}

fn webhook(name: &str, url: url::Url) -> Subscription {
    Subscription::new(name, url, EndpointType::Webhook)
}

/// `(statusCode, results)` of every function URL response so far.
fn answers(lambda: &LocalLambda) -> Vec<(u16, Value)> {
    lambda
        .runtime()
        .http_responses()
        .into_iter()
        .map(|response| {
            let body: Value = serde_json::from_str(&response.body).unwrap();
            (response.status_code, body["results"].clone())
        })
        .collect()
}

fn statuses(grid: &EventGrid, subscription: &str) -> Vec<Option<u16>> {
    grid.attempts().into_iter().filter(|a| a.subscription == subscription).map(|a| a.status).collect()
}

#[tokio::test]
async fn event_grid_validates_and_delivers_in_both_schemas() {
    let lambda = start_lambda(&greeting_and_secret()).await;
    let grid = event_grid();
    // Event Grid schema: the validation event, secret in a static delivery header.
    grid.subscribe(webhook("eg", lambda.url()).delivery_header(SECRET_HEADER, SECRET)).await.unwrap();
    // CloudEvents: the OPTIONS handshake, secret in the endpoint URL's query.
    let mut with_query = lambda.url();
    with_query.set_query(Some(&format!("secret={SECRET}")));
    grid.subscribe(webhook("ce", with_query).schema(Schema::CloudEvents)).await.unwrap();

    grid.publish(near_expiry("e-1", "db-password"));
    assert!(grid.settled(LIMIT).await);

    assert_eq!(statuses(&grid, "eg"), [Some(200)]);
    assert_eq!(statuses(&grid, "ce"), [Some(200)]);
    let records = lambda.runtime().invocations();
    // Two handshakes, then one delivery per subscription.
    assert_eq!(records.len(), 4, "{records:?}");
    let validation = &records[0];
    assert_eq!(validation.event["requestContext"]["http"]["method"], "POST");
    let Completion::Response(answer) = &validation.completion else { panic!("{validation:?}") };
    assert!(answer["body"].as_str().unwrap().contains("validationResponse"));
    let options = &records[1];
    assert_eq!(options.event["requestContext"]["http"]["method"], "OPTIONS");
    let Completion::Response(answer) = &options.completion else { panic!("{options:?}") };
    assert_eq!(answer["headers"]["webhook-allowed-origin"], "eventgrid.azure.net");

    let deliveries = &records[2..];
    // The CloudEvents batch arrives base64-encoded, as a function URL sends a non-text content type.
    assert!(deliveries.iter().any(|r| r.event["isBase64Encoded"] == true));
    for (status, results) in &answers(&lambda)[2..] {
        assert_eq!((*status, results.clone()), (200, json!(["done: hello e-1"])));
    }
}

#[tokio::test]
async fn a_batch_with_a_retryable_failure_is_resent_until_every_event_succeeds() {
    let lambda = start_lambda(&greeting_and_secret()).await;
    let grid = event_grid();
    let subscription = webhook("batch", lambda.url()).delivery_header(SECRET_HEADER, SECRET).max_events_per_batch(4);
    grid.subscribe(subscription).await.unwrap();

    // Published back to back on this (current-thread) runtime: the dispatcher takes them as one batch.
    grid.publish(near_expiry("ok", "db-password"));
    grid.publish(near_expiry("flaky", "fail-1"));
    grid.publish(near_expiry("crashy", "panic-1"));
    grid.publish(near_expiry("bad", "reject"));
    assert!(grid.settled(LIMIT).await);

    // 500 → Event Grid retries the whole batch → 200.
    assert_eq!(statuses(&grid, "batch"), [Some(500), Some(200)]);
    assert!(grid.dead_letters().is_empty());
    let answers = answers(&lambda);
    let deliveries = &answers[1..];
    assert_eq!(deliveries[0].0, 500);
    assert_eq!(
        deliveries[0].1,
        json!([
            "done: hello ok",
            "retry: asked to fail 1 time(s)",
            "retry: handler panicked: asked to panic 1 time(s)",
            "rejected: asked to reject"
        ])
    );
    assert_eq!(
        deliveries[1],
        (200, json!(["done: hello ok", "done: hello flaky", "done: hello crashy", "rejected: asked to reject"]))
    );
}

#[tokio::test]
async fn a_permanently_bad_event_is_acknowledged_with_200_and_logged() {
    let lambda = start_lambda(&greeting_and_secret()).await;
    let mut malformed: Value = serde_json::from_str(NEAR_EXPIRY).unwrap();
    malformed["data"]["EXP"] = json!(true);
    let (status, body) =
        post(&lambda, &[(SECRET_HEADER, SECRET), ("aeg-event-type", "Notification")], &json!([malformed])).await;
    assert_eq!(status, 200, "{body}");
    let result = body["results"][0].as_str().unwrap();
    assert!(result.starts_with("rejected: data.EXP: "), "{result}");
}

#[tokio::test]
async fn without_the_secret_nothing_runs_and_event_grid_gives_up() {
    let mut lambda = start_lambda(&greeting_and_secret()).await;
    let grid = event_grid();

    // A subscription with the wrong secret cannot even be created: its handshake gets 401.
    let wrong = webhook("wrong", lambda.url()).delivery_header(SECRET_HEADER, "not-the-secret-at-all");
    let error = grid.subscribe(wrong).await.unwrap_err().to_string();
    assert!(error.contains("401"), "{error}");
    let (status, body) = post(&lambda, &[("aeg-event-type", "Notification")], &json!([])).await;
    assert_eq!(status, 401, "{body}");

    // The secret is rotated on the Lambda side only: deliveries are refused with 401, which is final for a
    // webhook, so Event Grid dead-letters at once instead of retrying for a day.
    let dead_letters = tempfile::tempdir().unwrap();
    let subscription =
        webhook("rotated", lambda.url()).delivery_header(SECRET_HEADER, SECRET).dead_letter_dir(dead_letters.path());
    grid.subscribe(subscription).await.unwrap();
    lambda
        .redeploy([("HOST_ECHO_GREETING", "hello"), ("KEYTURN_WEBHOOK_SECRET", "a-brand-new-secret-value-0001")])
        .await
        .unwrap();
    grid.publish(near_expiry("e-1", "db-password"));
    assert!(grid.settled(LIMIT).await);

    assert_eq!(statuses(&grid, "rotated"), [Some(401)]);
    let letters = grid.dead_letters();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].dead_letter_reason, "UndeliverableDueToHttpUnauthorized");
    assert_eq!(letters[0].delivery_attempts, 1);
    // No handler ran: every answer was a handshake or a refusal.
    let answers = answers(&lambda);
    assert!(answers.iter().all(|(_, results)| results.is_null()), "{answers:?}");
    assert_eq!(answers.iter().map(|(status, _)| *status).collect::<Vec<_>>(), [401, 401, 200, 401]);
}

#[tokio::test]
async fn misconfiguration_fails_every_request_with_500_and_the_reason() {
    // No greeting: the handler's own configuration failed to load.
    let lambda = start_lambda(&[("KEYTURN_WEBHOOK_SECRET", SECRET)]).await;
    for _ in 0..2 {
        let (status, body) = post(
            &lambda,
            &[(SECRET_HEADER, SECRET), ("aeg-event-type", "Notification")],
            &json!([near_expiry("e", "x").to_value()]),
        )
        .await;
        assert_eq!(status, 500);
        assert_eq!(body["results"], json!(["retry: not configured: HOST_ECHO_GREETING is not set"]));
    }

    // No secret: nothing runs unauthenticated, and Event Grid keeps retrying until it is set.
    let lambda = start_lambda(&[("HOST_ECHO_GREETING", "hello")]).await;
    let (status, body) = post(
        &lambda,
        &[(SECRET_HEADER, SECRET), ("aeg-event-type", "Notification")],
        &json!([near_expiry("e", "x").to_value()]),
    )
    .await;
    assert_eq!(status, 500);
    assert!(body["error"].as_str().unwrap().starts_with("not configured: KEYTURN_WEBHOOK_SECRET is not set"), "{body}");
}

/// Every line the process wrote on `stream`.
fn lines(lambda: &LocalLambda, stream: Stream) -> Vec<String> {
    lambda.output().lines().into_iter().filter(|line| line.stream == stream).map(|line| line.text).collect()
}

#[tokio::test]
async fn an_event_that_is_not_an_http_request_fails_the_invocation_and_sigterm_exits_143() {
    let mut lambda = start_lambda(&greeting_and_secret()).await;
    let scheduled = json!({"version": "0", "detail-type": "Scheduled Event", "source": "aws.events", "detail": {}});
    let completion = lambda.runtime().invoke(scheduled).await.expect("no completion");
    // (lambda_runtime sends the error-type header as `unhandled`; the class is in the body.)
    let Completion::Error { body, .. } = completion else { panic!("{completion:?}") };
    assert_eq!(body["errorType"], "keyturn.NotAnHttpRequest");
    assert!(body["errorMessage"].as_str().unwrap().contains("missing field `requestContext`"), "{body}");

    let status = lambda.terminate(LIMIT).await.expect("the handler did not exit");
    assert_eq!(status.code(), Some(143));
    // Every stdout line is JSON, including the runtime's and the decision lines.
    let stdout = lines(&lambda, Stream::Stdout);
    for line in &stdout {
        serde_json::from_str::<Value>(line).unwrap_or_else(|error| panic!("not JSON ({error}): {line}"));
    }
    assert!(stdout.iter().any(|line| line.contains("polling the Lambda Runtime API")), "{stdout:#?}");
}

#[tokio::test]
async fn both_platforms_present_without_a_choice_exit_78_and_say_why() {
    let mut lambda = start_lambda(&[("HOST_ECHO_GREETING", "hello"), ("FUNCTIONS_CUSTOMHANDLER_PORT", "7071")]).await;
    let status = lambda.wait_for_exit(LIMIT).await.expect("the handler did not exit");
    assert_eq!(status.code(), Some(78));
    let stderr = lines(&lambda, Stream::Stderr).join("\n");
    assert!(
        stderr.contains("echo: cannot start: both AWS_LAMBDA_RUNTIME_API and FUNCTIONS_CUSTOMHANDLER_PORT are set; set KEYTURN_ADAPTER"),
        "{stderr}"
    );
    assert_eq!(lambda.runtime().polls(), 0);
    // Lambda is told why, so the waiting invocation shows the reason.
    let init_errors = lambda.runtime().init_errors();
    assert_eq!(init_errors.len(), 1, "{init_errors:?}");
    let error = &init_errors[0];
    assert_eq!(error.error_type, "keyturn.CannotStart");
    assert_eq!(error.body["errorType"], "keyturn.CannotStart");
    assert!(error.body["errorMessage"].as_str().unwrap().starts_with("echo: both AWS_LAMBDA_RUNTIME_API"), "{error:?}");
    // With no process left, a request fails at once (502) instead of waiting for the timeout.
    let (status, body) =
        post(&lambda, &[(SECRET_HEADER, SECRET), ("aeg-event-type", "Notification")], &json!([])).await;
    assert_eq!(status, 502, "{body}");
}

#[tokio::test]
async fn keyturn_adapter_chooses_azure_functions_even_on_lambda() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    let lambda = start_lambda(&[
        ("HOST_ECHO_GREETING", "hello"),
        ("FUNCTIONS_CUSTOMHANDLER_PORT", &port),
        ("KEYTURN_ADAPTER", "azure-functions"),
    ])
    .await;
    let client = reqwest::Client::builder().no_proxy().timeout(LIMIT).build().unwrap();
    let readiness = tokio::time::timeout(LIMIT, async {
        loop {
            if let Ok(response) = client.get(format!("http://127.0.0.1:{port}/")).send().await {
                return response.json::<Value>().await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the Azure adapter never answered readiness");
    assert_eq!(readiness, json!({"function": "echo", "configured": true}));
    assert_eq!(lambda.runtime().polls(), 0, "the Azure adapter must not poll the Lambda Runtime API");
}

#[tokio::test]
async fn a_reserved_variable_is_refused_as_lambda_refuses_it() {
    let error = LocalLambda::builder(env!("CARGO_BIN_EXE_host-echo"))
        .app_setting("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:1")
        .start()
        .await
        .unwrap_err();
    assert!(error.to_string().starts_with("the app setting AWS_LAMBDA_RUNTIME_API is a reserved"), "{error}");
}
