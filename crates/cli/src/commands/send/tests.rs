//! `keyturn send`: building, reading, addressing and posting events.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::Parser;
use keyturn_events::{Event, KeyVaultEventType};
use keyturn_sweep::dead_letters::DEAD_LETTER_FIELDS;

use super::delivery::redact_text;
use super::*;
use crate::exit::{CommandFailure, ExitStatus};

#[test]
fn typed_outcomes_are_shown_from_their_fields() {
    let body = serde_json::json!({
        "results": ["done: rotated kv-one/db from v1 to v2", "retry: vault answered 503"],
        "outcomes": [
            {"status": "done", "action": "rotated", "versionBefore": "v1", "versionAfter": "v2",
             "object": {"vault": "kv-one", "kind": "secret", "name": "db", "version": "v1"},
             "message": "rotated kv-one/db from v1 to v2"},
            null
        ]
    });
    assert_eq!(
        super::outcome_lines(&body.to_string()).unwrap(),
        ["done rotated secret kv-one/db v1 → v2: rotated kv-one/db from v1 to v2", "retry: vault answered 503"]
    );
    assert_eq!(super::outcome_lines("accepted"), None);
    assert_eq!(super::outcome_lines(r#"{"results": []}"#), None);
}

#[derive(Debug, Parser)]
struct Wrapper {
    #[command(flatten)]
    args: Args,
}

fn args(line: &[&str]) -> Args {
    Wrapper::try_parse_from(std::iter::once("send").chain(line.iter().copied())).unwrap().args
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600, 0).unwrap()
}

#[test]
fn the_event_is_what_key_vault_would_send_and_decodes_as_such() {
    let a = args(&["near-expiry", "--vault", "kv-one", "--secret", "db-password", "--version", "v1"]);
    let event = build_event(&a, now()).unwrap();
    let decoded = Event::from_value(event.to_value()).unwrap();
    let kv = decoded.key_vault().unwrap();
    assert_eq!(kv.event_type, KeyVaultEventType::SecretNearExpiry);
    assert_eq!(kv.object.id().as_str(), "https://kv-one.vault.azure.net/secrets/db-password/v1");
    assert_eq!(kv.object.expires(), Some(now() + chrono::Duration::days(30)));
    assert_eq!(decoded.subject, "db-password");

    let a =
        args(&["expired", "--vault", "kv-one", "--certificate", "tls", "--schema", "cloudevents", "--expires", "-2d"]);
    let event = build_event(&a, now()).unwrap();
    assert_eq!(event.to_value()["specversion"], "1.0");
    assert_eq!(event.event_type(), "Microsoft.KeyVault.CertificateExpired");
    assert_eq!(event.key_vault().unwrap().object.expires(), Some(now() - chrono::Duration::days(2)));

    let a = args(&["test-event", "--vault", "kv-one", "--secret", "keyturn-canary"]);
    let event = build_event(&a, now()).unwrap();
    assert_eq!(event.event_type(), keyturn_events::TEST_EVENT_TYPE);
    assert_eq!(event.test_object().unwrap().unwrap().name(), "keyturn-canary");
}

#[test]
fn exactly_one_object_is_required() {
    let parse = |line: &[&str]| Wrapper::try_parse_from(std::iter::once("send").chain(line.iter().copied()));
    assert!(parse(&["expired", "--vault", "kv"]).is_err());
    assert!(parse(&["expired", "--vault", "kv", "--secret", "a", "--key", "b"]).is_err());
    let bad = build_event(&args(&["expired", "--vault", "kv", "--secret", "a/b"]), now()).unwrap_err();
    assert_eq!(bad.status, ExitStatus::Usage, "{bad}");
}

#[test]
fn an_event_file_excludes_the_flags_that_build_an_event_and_needs_a_function() {
    let parse = |line: &[&str]| Wrapper::try_parse_from(std::iter::once("send").chain(line.iter().copied()));
    let a = parse(&["--event-file", "dead.json", "--function", "near-expiry", "--code", "k"]).unwrap().args;
    assert_eq!(a.event_file.as_deref(), Some(Path::new("dead.json")));
    assert!(parse(&["--event-file", "dead.json"]).is_err(), "--function is required");
    for extra in [&["expired"][..], &["--vault", "kv"], &["--secret", "s"], &["--schema", "cloudevents"]] {
        let mut line = vec!["--event-file", "dead.json", "--function", "f"];
        line.extend_from_slice(extra);
        let error = parse(&line).unwrap_err();
        assert_eq!(error.kind(), clap::error::ErrorKind::ArgumentConflict, "{extra:?}: {error}");
    }
    assert!(parse(&["--function", "f"]).is_err(), "an event or a file is required");
    assert!(parse(&["expired", "--secret", "s"]).is_err(), "a built event needs --vault");
}

const DEAD_LETTER: &str = r#"[{
    "id": "e-1", "subject": "db-password", "eventType": "Microsoft.KeyVault.SecretNearExpiry",
    "topic": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv-one",
    "eventTime": "2026-01-01T00:00:00Z", "dataVersion": "1", "metadataVersion": "1",
    "data": {"Id": "https://kv-one.vault.azure.net/secrets/db-password/v1", "VaultName": "kv-one",
             "ObjectType": "Secret", "ObjectName": "db-password", "Version": "v1", "NBF": null, "EXP": 1767225600},
    "deadLetterReason": "MaxDeliveryAttemptsExceeded", "deliveryAttempts": 30,
    "lastDeliveryOutcome": "Probation", "lastHttpStatusCode": 500,
    "publishTime": "2026-01-01T00:00:01Z", "LastDeliveryAttemptTime": "2026-01-02T00:00:00Z"
}]"#;

#[test]
fn a_dead_letter_file_loses_its_dead_letter_fields_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dead.json");
    std::fs::write(&path, DEAD_LETTER).unwrap();
    let batch = read_event_file(&path).unwrap();
    assert_eq!(batch.len(), 1);
    let mut expected: Value = serde_json::from_str(DEAD_LETTER).unwrap();
    let object = expected[0].as_object_mut().unwrap();
    for field in DEAD_LETTER_FIELDS.iter().copied().chain(["LastDeliveryAttemptTime"]) {
        object.remove(field);
    }
    assert_eq!(batch[0], expected[0], "every dead-letter field gone, nothing else touched");

    // One event rather than an array is a batch of one.
    std::fs::write(&path, serde_json::to_string(&expected[0]).unwrap()).unwrap();
    assert_eq!(read_event_file(&path).unwrap(), vec![expected[0].clone()]);
}

#[test]
fn a_file_with_a_bad_event_is_a_usage_error_naming_the_event_and_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dead.json");
    let mut batch: Value = serde_json::from_str(DEAD_LETTER).unwrap();
    let mut bad = batch[0].clone();
    bad["data"]["EXP"] = json!("next tuesday");
    batch.as_array_mut().unwrap().push(bad);
    std::fs::write(&path, batch.to_string()).unwrap();
    let error = read_event_file(&path).unwrap_err();
    assert_eq!(error.status, ExitStatus::Usage);
    assert!(error.message.contains("dead.json") && error.message.contains("event [1]"), "{error}");
    assert!(error.message.contains("data.EXP"), "{error}");

    for (text, says) in [("{", "not JSON"), ("[]", "no events"), ("42", "expected an event object")] {
        std::fs::write(&path, text).unwrap();
        let error = read_event_file(&path).unwrap_err();
        assert!(error.status == ExitStatus::Usage && error.message.contains(says), "{text}: {error}");
    }
    let error = read_event_file(&dir.path().join("absent.json")).unwrap_err();
    assert!(error.status == ExitStatus::Usage && error.message.contains("absent.json"), "{error}");
}

#[test]
fn webhook_urls_get_the_path_the_function_and_the_code() {
    let url = webhook_url("http://localhost:7071", "near-expiry", None).unwrap();
    assert_eq!(url.as_str(), "http://localhost:7071/runtime/webhooks/eventgrid?functionName=near-expiry");
    let url = webhook_url("https://app.azurewebsites.net/", "expired", Some("s3cr3t")).unwrap();
    assert_eq!(
        url.as_str(),
        "https://app.azurewebsites.net/runtime/webhooks/eventgrid?functionName=expired&code=s3cr3t"
    );
    assert_eq!(
        redact(&url).as_str(),
        "https://app.azurewebsites.net/runtime/webhooks/eventgrid?functionName=expired&code=****"
    );
    let full = "http://127.0.0.1:9/runtime/webhooks/eventgrid?functionName=test-event";
    assert_eq!(webhook_url(full, "near-expiry", None).unwrap().as_str(), full, "an explicit function wins");
    assert_eq!(webhook_url("localhost:7071", "x", None).unwrap_err().status, ExitStatus::Usage);
    assert!(webhook_url("not a url", "x", None).is_err());
}

#[tokio::test]
async fn no_failure_prints_the_code_or_a_signature() {
    let shown = |failure: &CommandFailure| format!("{} {}", failure.message, failure.hint.clone().unwrap_or_default());
    // Unreachable: reqwest's own message would carry the full URL.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = webhook_url(&format!("http://127.0.0.1:{closed}/?sig=sas-sig-42"), "expired", Some("fn-key-42")).unwrap();
    let failure = post(&url, &[], Duration::from_secs(5)).await.unwrap_err();
    // Malformed and wrong-scheme --to values that hold a code.
    let malformed = webhook_url("http://[::1/runtime/webhooks/eventgrid?code=fn-key-42&x=1", "x", None).unwrap_err();
    let ftp = webhook_url("ftp://host/?code=fn-key-42&sig=sas-sig-42", "x", None).unwrap_err();
    for failure in [failure, malformed, ftp] {
        let text = shown(&failure);
        assert!(!text.contains("fn-key-42") && !text.contains("sas-sig-42"), "{text}");
    }
    assert_eq!(redact_text("a?code=k1&sig=s2 b code=k3"), "a?code=****&sig=**** b code=****");
}

#[test]
fn times_are_absolute_or_relative() {
    assert_eq!(parse_when("2026-02-01T00:00:00Z", now()).unwrap().timestamp(), 1_769_904_000);
    assert_eq!(parse_when("30d", now()).unwrap(), now() + chrono::Duration::days(30));
    assert_eq!(parse_when("-2h", now()).unwrap(), now() - chrono::Duration::hours(2));
    assert_eq!(parse_when("+15m", now()).unwrap(), now() + chrono::Duration::minutes(15));
    assert!(parse_when("soon", now()).is_err());
    assert!(parse_when("3w", now()).unwrap_err().contains("unit 'w'"));
}
