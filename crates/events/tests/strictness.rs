//! Decoding is strict where a mistake would make keyturn act on the wrong object, and its errors name the
//! JSON path that failed.

// Test helpers outside #[test] fns: a panic there is a failed test, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use keyturn_events::Event;
use serde_json::{Value, json};

fn near_expiry() -> Value {
    json!({
        "id": "b620eb99-826d-b5e8-970f-38ff3094f49b",
        "topic": "/subscriptions/0/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/sample-kv",
        "subject": "db-password",
        "eventType": "Microsoft.KeyVault.SecretNearExpiry",
        "eventTime": "2019-07-25T01:08:33.1036736Z",
        "data": {
            "Id": "https://sample-kv.vault.azure.net/secrets/db-password/c5aab54cb80a27d8b0355bb5af566194",
            "VaultName": "sample-kv",
            "ObjectType": "Secret",
            "ObjectName": "db-password",
            "Version": "c5aab54cb80a27d8b0355bb5af566194",
            "NBF": 1559081980,
            "EXP": 1561673980
        },
        "dataVersion": "1",
        "metadataVersion": "1"
    })
}

/// Decodes `near_expiry()` with one change applied and returns the error as "path: message".
fn error_after(change: impl FnOnce(&mut Value)) -> (String, String) {
    let mut event = near_expiry();
    change(&mut event);
    let err = Event::from_value(event).expect_err("the change should make the event invalid");
    (err.path().to_owned(), err.to_string())
}

#[test]
fn the_unchanged_event_decodes() {
    assert!(Event::from_value(near_expiry()).is_ok());
}

#[test]
fn an_id_naming_another_object_is_rejected_naming_the_mismatch() {
    let (path, msg) = error_after(|e| e["data"]["ObjectName"] = json!("other-secret"));
    assert_eq!(path, "data.ObjectName");
    assert!(msg.contains("'other-secret'") && msg.contains("'db-password'"), "{msg}");

    let (path, msg) = error_after(|e| e["data"]["Version"] = json!("ffffffffffffffffffffffffffffffff"));
    assert_eq!(path, "data.Version");
    assert!(msg.contains("c5aab54cb80a27d8b0355bb5af566194"), "{msg}");

    let (path, _) = error_after(|e| e["data"]["VaultName"] = json!("other-kv"));
    assert_eq!(path, "data.VaultName");

    let (path, msg) = error_after(|e| {
        e["data"]["Id"] = json!("https://sample-kv.vault.azure.net/keys/db-password/c5aab54cb80a27d8b0355bb5af566194");
    });
    assert_eq!(path, "data.ObjectType");
    assert!(msg.contains("/keys/"), "{msg}");
}

#[test]
fn an_object_type_that_contradicts_the_event_type_is_rejected() {
    let (path, msg) = error_after(|e| e["data"]["ObjectType"] = json!("Key"));
    assert_eq!(path, "data.ObjectType");
    assert!(msg.contains("SecretNearExpiry"), "{msg}");
}

#[test]
fn a_missing_version_or_unversioned_id_is_rejected() {
    assert_eq!(error_after(|e| e["data"]["Version"] = Value::Null).0, "data.Version");
    let (path, msg) = error_after(|e| e["data"]["Id"] = json!("https://sample-kv.vault.azure.net/secrets/db-password"));
    assert_eq!(path, "data.Id");
    assert!(msg.contains("versioned"), "{msg}");
    assert_eq!(
        error_after(|e| e["data"]["Id"] =
            json!("http://sample-kv.vault.azure.net/secrets/db-password/c5aab54cb80a27d8b0355bb5af566194"))
        .0,
        "data.Id"
    );
    assert_eq!(error_after(|e| e["data"]["Id"] = json!("not a url")).0, "data.Id");
}

#[test]
fn wrong_types_name_their_path() {
    let (path, msg) = error_after(|e| e["data"]["EXP"] = json!(true));
    assert_eq!(path, "data.EXP");
    assert!(msg.starts_with("data.EXP: expected epoch seconds"), "{msg}");
    assert_eq!(error_after(|e| e["data"]["ObjectName"] = json!(42)).0, "data.ObjectName");
    assert_eq!(error_after(|e| e["eventTime"] = json!("yesterday")).0, "eventTime");
    assert_eq!(error_after(|e| e["eventType"] = json!(7)).0, "eventType");
    assert_eq!(error_after(|e| e["data"] = json!("a string")).0, "data");
}

#[test]
fn missing_required_fields_name_their_path() {
    let (path, msg) = error_after(|e| {
        e["data"].as_object_mut().unwrap().remove("Id");
    });
    assert_eq!(path, "data");
    assert!(msg.contains("missing field `Id`"), "{msg}");
    let (path, msg) = error_after(|e| {
        e.as_object_mut().unwrap().remove("id");
    });
    assert_eq!(path, "(event)");
    assert!(msg.contains("missing field `id`"), "{msg}");
    assert_eq!(error_after(|e| e["id"] = json!("  ")).0, "id");
}

#[test]
fn neither_schema_or_both_is_rejected() {
    let (path, msg) = error_after(|e| {
        e.as_object_mut().unwrap().remove("eventType");
    });
    assert_eq!(path, "(event)");
    assert!(msg.contains("neither"), "{msg}");
    let (_, msg) = error_after(|e| e["specversion"] = json!("1.0"));
    assert!(msg.contains("both"), "{msg}");
}

#[test]
fn duplicate_keys_differing_only_in_case_are_rejected() {
    let (path, _) = error_after(|e| e["data"]["id"] = json!("https://x.vault.azure.net/secrets/a/b"));
    assert_eq!(path, "data.Id");
}

#[test]
fn non_json_and_non_objects_are_rejected_with_a_position() {
    let err = Event::from_slice(b"{not json").unwrap_err();
    assert_eq!(err.path(), "(event)");
    assert!(err.message().contains("line 1"), "{err}");
    assert!(Event::from_slice(b"[]").unwrap_err().message().contains("found an array"));
    assert!(Event::from_slice(b"{} {}").is_err());
}
