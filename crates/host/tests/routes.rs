//! The Azure Functions routes without a socket (`warp::test`): every branch of the wire contract.

// Test helpers outside #[test] functions unwrap too: a panic there is a failed test with a line number.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use keyturn_events::{Event, Payload};
use keyturn_host::azure_functions::routes;
use keyturn_host::azure_functions::wire::{INVOCATION_ID_HEADER, InvocationRequest};
use keyturn_host::{HandlerError, Invoker, Outcome};
use serde_json::{Value, json};
use warp::http::{Response, StatusCode};

const NEAR_EXPIRY: &str = include_str!("../../events/fixtures/eventgrid-secret-near-expiry.json");
const CLOUD_EVENTS_NEAR_EXPIRY: &str = include_str!("../../events/fixtures/cloudevents-secret-near-expiry.json");
const VALIDATION: &str = include_str!("../../events/fixtures/eventgrid-subscription-validation.json");

fn near_expiry() -> Value {
    serde_json::from_str(NEAR_EXPIRY).unwrap()
}

/// An invoker for `near-expiry` whose handler answers by the event's subject, so that one set of routes covers
/// every outcome: `done`, `skip`, `reject`, `permanent`, `retry`, `panic`.
fn invoker() -> Invoker {
    let deps: Result<(), String> = Ok(());
    Invoker::new("near-expiry", deps, |event: Event, _deps: Arc<()>| async move {
        if let Payload::SubscriptionValidation(_) = event.payload {
            return Ok(Outcome::skipped(format!("{} is not for this handler", event.event_type())));
        }
        match event.subject.as_str() {
            "db-password" => Ok(Outcome::done(format!("rotated {}", event.subject))),
            "skip" => Ok(Outcome::skipped("already rotated")),
            "reject" => Ok(Outcome::rejected("vault not allow-listed")),
            "permanent" => Err(HandlerError::permanent("no rotation policy")),
            "retry" => Err(HandlerError::retryable("vault answered 503")),
            "panic" => panic!("handler bug"),
            other => Ok(Outcome::done(format!("other subject {other}"))),
        }
    })
}

/// The near-expiry fixture with another subject (and a matching object, so it still decodes).
fn event_with_subject(subject: &str) -> Value {
    let mut event = near_expiry();
    event["subject"] = json!(subject);
    event["data"]["ObjectName"] = json!(subject);
    event["data"]["Id"] =
        json!(format!("https://sample-kv.vault.azure.net/secrets/{subject}/c5aab54cb80a27d8b0355bb5af566194"));
    event
}

async fn post(invoker: &Invoker, path: &str, body: impl AsRef<[u8]>) -> Response<bytes::Bytes> {
    warp::test::request()
        .method("POST")
        .path(path)
        .header("content-type", "application/json; charset=utf-8")
        .header(INVOCATION_ID_HEADER, "0b7e1a3c-test")
        .body(body)
        .reply(&routes(invoker.clone()))
        .await
}

async fn invoke(invoker: &Invoker, event: Value) -> Response<bytes::Bytes> {
    let request = serde_json::to_vec(&InvocationRequest::for_event(event)).unwrap();
    post(invoker, "/near-expiry", request).await
}

fn json_body(response: &Response<bytes::Bytes>) -> Value {
    serde_json::from_slice(response.body()).unwrap()
}

/// Asserts a `200` custom-handler answer with exactly this one `Logs` line and the same outcome, typed, in
/// `ReturnValue`.
fn assert_acknowledged(response: &Response<bytes::Bytes>, log: &str) {
    assert_eq!(response.status(), StatusCode::OK, "{:?}", response.body());
    assert_eq!(response.headers()["content-type"], "application/json");
    let (status, message) = log.split_once(": ").unwrap();
    assert_eq!(
        json_body(response),
        json!({"Outputs": {}, "Logs": [log], "ReturnValue": {"status": status, "message": message}})
    );
}

fn assert_error(response: &Response<bytes::Bytes>, status: StatusCode, message: &str) {
    assert_eq!(response.status(), status, "{:?}", response.body());
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(json_body(response), json!({"error": message}));
}

#[tokio::test]
async fn readiness_answers_get_root() {
    let response = warp::test::request().path("/").reply(&routes(invoker())).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json_body(&response), json!({"function": "near-expiry", "configured": true}));
}

#[tokio::test]
async fn done_is_200_with_the_log_line() {
    let response = invoke(&invoker(), near_expiry()).await;
    assert_acknowledged(&response, "done: rotated db-password");
}

#[tokio::test]
async fn skipped_and_rejected_are_200_with_their_log_lines() {
    let invoker = invoker();
    assert_acknowledged(&invoke(&invoker, event_with_subject("skip")).await, "skipped: already rotated");
    assert_acknowledged(&invoke(&invoker, event_with_subject("reject")).await, "rejected: vault not allow-listed");
}

#[tokio::test]
async fn a_permanent_error_is_200_rejected() {
    let response = invoke(&invoker(), event_with_subject("permanent")).await;
    assert_acknowledged(&response, "rejected: no rotation policy");
}

#[tokio::test]
async fn a_retryable_error_is_500_with_the_reason() {
    let response = invoke(&invoker(), event_with_subject("retry")).await;
    assert_error(&response, StatusCode::INTERNAL_SERVER_ERROR, "vault answered 503");
}

#[tokio::test]
async fn a_panic_is_500_and_the_routes_keep_working() {
    let invoker = invoker();
    let response = invoke(&invoker, event_with_subject("panic")).await;
    assert_error(&response, StatusCode::INTERNAL_SERVER_ERROR, "handler panicked: handler bug");
    assert_acknowledged(&invoke(&invoker, near_expiry()).await, "done: rotated db-password");
}

#[tokio::test]
async fn the_event_may_arrive_as_a_json_encoded_string() {
    let response = invoke(&invoker(), json!(NEAR_EXPIRY)).await;
    assert_acknowledged(&response, "done: rotated db-password");
}

#[tokio::test]
async fn cloud_events_schema_is_accepted() {
    let event: Value = serde_json::from_str(CLOUD_EVENTS_NEAR_EXPIRY).unwrap();
    let response = invoke(&invoker(), event).await;
    assert_acknowledged(&response, "done: rotated db-password");
}

#[tokio::test]
async fn subscription_validation_goes_to_the_handler() {
    let batch: Value = serde_json::from_str(VALIDATION).unwrap();
    let response = invoke(&invoker(), batch[0].clone()).await;
    assert_acknowledged(&response, "skipped: Microsoft.EventGrid.SubscriptionValidationEvent is not for this handler");
}

#[tokio::test]
async fn an_event_that_fails_typed_decoding_is_200_rejected_with_its_path() {
    let mut event = near_expiry();
    event["data"]["ObjectName"] = json!("other-secret");
    let response = invoke(&invoker(), event).await;
    assert_eq!(response.status(), StatusCode::OK);
    let logs = &json_body(&response)["Logs"];
    let line = logs[0].as_str().unwrap();
    assert!(line.starts_with("rejected: data.ObjectName: 'other-secret' does not match"), "{line}");
    assert_eq!(logs.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_binding_that_is_not_an_object_is_200_rejected() {
    let response = invoke(&invoker(), json!(42)).await;
    assert_acknowledged(&response, "rejected: (event): expected an event object, found a number");
}

#[tokio::test]
async fn not_configured_is_500_with_the_same_message_every_time() {
    let deps: Result<(), String> = Err("KEYTURN_VAULTS is not set".into());
    let invoker =
        Invoker::new("near-expiry", deps, |_event: Event, _deps: Arc<()>| async { Ok(Outcome::done("unreachable")) });
    let ready = warp::test::request().path("/").reply(&routes(invoker.clone())).await;
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(json_body(&ready)["configured"], false);
    for _ in 0..2 {
        let response = invoke(&invoker, near_expiry()).await;
        assert_error(&response, StatusCode::INTERNAL_SERVER_ERROR, "not configured: KEYTURN_VAULTS is not set");
    }
}

#[tokio::test]
async fn an_unknown_function_is_404_naming_the_served_one() {
    let request = serde_json::to_vec(&InvocationRequest::for_event(near_expiry())).unwrap();
    let response = post(&invoker(), "/expired", request).await;
    assert_error(
        &response,
        StatusCode::NOT_FOUND,
        "no function named 'expired' here; this handler serves 'near-expiry'",
    );
}

#[tokio::test]
async fn function_names_match_case_insensitively() {
    let request = serde_json::to_vec(&InvocationRequest::for_event(near_expiry())).unwrap();
    let response = post(&invoker(), "/Near-Expiry", request).await;
    assert_acknowledged(&response, "done: rotated db-password");
}

#[tokio::test]
async fn any_other_route_is_404_with_what_is_served() {
    let invoker = invoker();
    for (method, path) in [("GET", "/near-expiry"), ("POST", "/"), ("PUT", "/"), ("POST", "/near-expiry/extra")] {
        let response = warp::test::request().method(method).path(path).reply(&routes(invoker.clone())).await;
        assert_error(
            &response,
            StatusCode::NOT_FOUND,
            &format!("no route for {method} {path}; this handler answers GET / (readiness) and POST /near-expiry"),
        );
    }
}

#[tokio::test]
async fn a_non_json_body_is_400() {
    let response = post(&invoker(), "/near-expiry", "this is not json").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let error = json_body(&response)["error"].as_str().unwrap().to_owned();
    assert!(error.starts_with("the request body is not JSON: "), "{error}");
}

#[tokio::test]
async fn an_empty_body_is_400() {
    let response = post(&invoker(), "/near-expiry", "").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let error = json_body(&response)["error"].as_str().unwrap().to_owned();
    assert!(error.starts_with("the request body is not JSON: "), "{error}");
}

#[tokio::test]
async fn a_body_that_is_not_an_envelope_is_400_saying_why() {
    for (body, why) in [
        (json!({"Metadata": {}}), "missing field `Data`"),
        // The event posted as is, without the envelope.
        (near_expiry(), "missing field `Data`"),
        (json!([near_expiry()]), "expected a JSON object, found an array"),
        (json!({"Data": "x"}), "invalid type: string \"x\", expected a map"),
    ] {
        let response = post(&invoker(), "/near-expiry", body.to_string()).await;
        assert_error(
            &response,
            StatusCode::BAD_REQUEST,
            &format!(
                "the request body is not a custom-handler invocation ({{\"Data\": {{...}}, \"Metadata\": {{...}}}}): {why}"
            ),
        );
    }
}

#[tokio::test]
async fn a_wrong_binding_name_is_400_naming_both() {
    let body = json!({"Data": {"event": near_expiry()}, "Metadata": {}});
    let response = post(&invoker(), "/near-expiry", body.to_string()).await;
    assert_error(
        &response,
        StatusCode::BAD_REQUEST,
        "\"Data\" has no \"eventGridEvent\" binding (it has: \"event\"); the function's eventGridTrigger binding must be named \"eventGridEvent\"",
    );
}

#[tokio::test]
async fn a_binding_string_that_is_not_json_is_400() {
    let body = json!({"Data": {"eventGridEvent": "{not json"}});
    let response = post(&invoker(), "/near-expiry", body.to_string()).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let error = json_body(&response)["error"].as_str().unwrap().to_owned();
    assert!(error.starts_with("\"Data.eventGridEvent\" is a string but not JSON: "), "{error}");
}

#[tokio::test]
async fn a_ten_megabyte_body_is_413() {
    let mut event = near_expiry();
    event["data"]["padding"] = json!("x".repeat(10 * 1024 * 1024));
    let request = serde_json::to_vec(&InvocationRequest::for_event(event)).unwrap();
    let response = post(&invoker(), "/near-expiry", request).await;
    assert_error(&response, StatusCode::PAYLOAD_TOO_LARGE, "the request body is larger than the 4 MiB limit");
}

#[tokio::test]
async fn a_body_just_under_the_limit_is_accepted() {
    let mut event = near_expiry();
    let base = serde_json::to_vec(&InvocationRequest::for_event(event.clone())).unwrap().len();
    // `"padding":""` and its comma add 13 bytes; fill the rest up to exactly the limit.
    let padding = keyturn_host::azure_functions::BODY_LIMIT - base - 13;
    event["data"]["padding"] = json!("x".repeat(padding));
    let request = serde_json::to_vec(&InvocationRequest::for_event(event)).unwrap();
    assert_eq!(request.len(), keyturn_host::azure_functions::BODY_LIMIT);
    let response = post(&invoker(), "/near-expiry", request).await;
    assert_acknowledged(&response, "done: rotated db-password");
}

/// A timer function (the sweep) takes its tick under `Data.timer`, answers like any function, and refuses an
/// envelope that carries an event instead, naming the binding it expected.
#[tokio::test]
async fn a_timer_function_takes_its_tick_under_the_timer_binding() {
    use keyturn_host::timer::{Tick, TickSource};
    let deps: Result<(), String> = Ok(());
    let invoker = Invoker::timer("sweep", deps, |tick: Tick, _deps: Arc<()>| async move {
        assert_eq!(tick.source, TickSource::AzureTimer);
        Ok(Outcome::done(format!("swept (past due: {})", tick.past_due)))
    });
    let tick = Tick::azure_binding_value(true, "2027-01-01T00:00:00Z", "2027-01-01T01:00:00Z");
    let body = json!({"Data": {"timer": tick}, "Metadata": {}});
    let response = post(&invoker, "/sweep", body.to_string()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json_body(&response)["Logs"][0], "done: swept (past due: true)");

    let body = InvocationRequest::for_event(near_expiry());
    let response = post(&invoker, "/sweep", serde_json::to_vec(&body).unwrap()).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let error = json_body(&response)["error"].as_str().unwrap().to_owned();
    assert!(error.contains("the function's timerTrigger binding must be named \"timer\""), "{error}");

    let body = json!({"Data": {"timer": {"eventType": "Microsoft.KeyVault.SecretNearExpiry"}}});
    let response = post(&invoker, "/sweep", body.to_string()).await;
    assert_eq!(response.status(), StatusCode::OK, "acknowledged: retrying cannot help");
    assert!(json_body(&response)["Logs"][0].as_str().unwrap().starts_with("rejected: not a timer tick"));
}
