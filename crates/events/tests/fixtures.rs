//! Every fixture decodes, says what it should, and survives parse → serialize → re-parse unchanged.

// Test helpers outside #[test] fns: a panic there is a failed test, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use chrono::{TimeZone, Utc};
use keyturn_events::{Event, KeyVaultEventType, Lifecycle, ObjectKind, Payload, Schema, delivery};
use serde_json::Value;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Every `.json` under fixtures/ (shipped and variants), as (file name, events in it).
fn all_fixtures() -> Vec<(String, Vec<Value>)> {
    let mut out = Vec::new();
    for dir in [fixture_dir(), fixture_dir().join("variants")] {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                let bytes = std::fs::read(&path).unwrap();
                let events = delivery::split_batch(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                out.push((path.file_name().unwrap().to_string_lossy().into_owned(), events));
            }
        }
    }
    assert!(out.len() >= 27, "expected the 21 shipped fixtures and the variants, found {}", out.len());
    out
}

fn decode_fixture(name: &str) -> Event {
    let path = [fixture_dir().join(name), fixture_dir().join("variants").join(name)]
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("no fixture {name}"));
    Event::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn every_fixture_round_trips() {
    for (name, events) in all_fixtures() {
        for raw in events {
            let event = Event::from_value(raw).unwrap_or_else(|e| panic!("{name}: {e}"));
            let written = serde_json::to_vec(&event).unwrap();
            let again = Event::from_slice(&written).unwrap_or_else(|e| panic!("{name} re-parse: {e}"));
            assert_eq!(event, again, "{name}");
            // And the written form is canonical: writing it again changes nothing.
            assert_eq!(event.to_value(), again.to_value(), "{name}");
        }
    }
}

#[test]
fn schema_and_type_follow_the_file_name() {
    for (name, events) in all_fixtures() {
        let event = Event::from_value(events[0].clone()).unwrap();
        let expected_schema = if name.starts_with("cloudevents") { Schema::CloudEvents } else { Schema::EventGrid };
        assert_eq!(event.schema, expected_schema, "{name}");
        let Some(kv) = event.key_vault() else { continue };
        let kind = kv.event_type.object_kind().as_str().to_lowercase();
        assert!(name.contains(&kind) || kind == "vault", "{name} decoded as {}", kv.event_type);
        let lifecycle = match kv.event_type.lifecycle() {
            Lifecycle::NewVersionCreated => "new-version",
            Lifecycle::NearExpiry => "near-expiry",
            Lifecycle::Expired => "expired",
            Lifecycle::AccessPolicyChanged => "access-policy-changed",
        };
        assert!(name.contains(lifecycle), "{name} decoded as {}", kv.event_type);
    }
}

#[test]
fn all_nine_object_events_and_the_vault_event_appear_in_both_schemas_where_shipped() {
    let mut seen = std::collections::HashSet::new();
    for (_, events) in all_fixtures() {
        for raw in events {
            if let Some(kv) = Event::from_value(raw).unwrap().key_vault() {
                seen.insert(kv.event_type);
            }
        }
    }
    for t in KeyVaultEventType::ALL {
        assert!(seen.contains(&t), "no fixture for {t}");
    }
}

#[test]
fn accessors_give_the_object_and_its_times() {
    let event = decode_fixture("eventgrid-secret-near-expiry.json");
    assert_eq!(event.id, "b620eb99-826d-b5e8-970f-38ff3094f49b");
    assert_eq!(event.subject, "db-password");
    assert!(event.source.ends_with("/vaults/sample-kv"));
    assert_eq!(event.event_type(), "Microsoft.KeyVault.SecretNearExpiry");
    assert_eq!(event.time.unwrap().timestamp_subsec_nanos(), 103_673_600);
    let kv = event.key_vault().unwrap();
    assert_eq!(kv.event_type, KeyVaultEventType::SecretNearExpiry);
    let o = &kv.object;
    assert_eq!(o.vault_name(), "sample-kv");
    assert_eq!(o.kind(), ObjectKind::Secret);
    assert_eq!(o.name(), "db-password");
    assert_eq!(o.version(), Some("c5aab54cb80a27d8b0355bb5af566194"));
    assert_eq!(o.not_before(), Some(Utc.timestamp_opt(1_559_081_980, 0).unwrap()));
    assert_eq!(o.expires(), Some(Utc.timestamp_opt(1_561_673_980, 0).unwrap()));
}

#[test]
fn the_same_event_decodes_alike_in_both_schemas() {
    for kind in ["secret", "key", "certificate"] {
        for lifecycle in ["new-version", "near-expiry", "expired"] {
            let eg = decode_fixture(&format!("eventgrid-{kind}-{lifecycle}.json"));
            let ce = decode_fixture(&format!("cloudevents-{kind}-{lifecycle}.json"));
            assert_eq!(
                (eg.id, eg.subject, eg.source, eg.time, eg.payload),
                (ce.id, ce.subject, ce.source, ce.time, ce.payload)
            );
        }
    }
}

#[test]
fn string_epochs_whitespace_and_camel_case_decode_like_the_canonical_form() {
    let spec = decode_fixture("eventgrid-secret-new-version-spec-example.json");
    let messy = decode_fixture("eventgrid-secret-new-version-docs-whitespace.json");
    assert_eq!(spec, messy);
    assert_eq!(spec.key_vault().unwrap().object.expires().unwrap().timestamp(), 1_559_082_102);

    let canonical = decode_fixture("eventgrid-secret-near-expiry.json");
    let camel = decode_fixture("eventgrid-secret-near-expiry-camelcase.json");
    assert_eq!(canonical.payload, camel.payload);
}

#[test]
fn null_or_missing_times_are_absent_and_unknown_fields_are_ignored() {
    let key = decode_fixture("eventgrid-key-near-expiry-null-times-extra-fields.json");
    let o = &key.key_vault().unwrap().object;
    assert_eq!((o.not_before(), o.expires()), (None, None));
    let cert = decode_fixture("cloudevents-certificate-new-version-no-times.json");
    let o = &cert.key_vault().unwrap().object;
    assert_eq!((o.kind(), o.name(), o.expires()), (ObjectKind::Certificate, "Web-TLS", None));
}

#[test]
fn vault_events_have_no_version() {
    let event = decode_fixture("eventgrid-vault-access-policy-changed.json");
    let kv = event.key_vault().unwrap();
    assert_eq!(kv.event_type, KeyVaultEventType::VaultAccessPolicyChanged);
    assert_eq!((kv.object.kind(), kv.object.version()), (ObjectKind::Vault, None));
}

#[test]
fn sovereign_cloud_hosts_are_accepted() {
    let event = decode_fixture("cloudevents-secret-expired-string-times.json");
    assert_eq!(event.key_vault().unwrap().object.id().host_str(), Some("other-kv.vault.azure.cn"));
}

#[test]
fn unknown_event_types_are_kept_whole() {
    let event = decode_fixture("eventgrid-storage-blob-created-unknown.json");
    let Payload::Unknown(unknown) = &event.payload else { panic!("decoded as {:?}", event.payload) };
    assert_eq!(unknown.event_type, "Microsoft.Storage.BlobCreated");
    assert_eq!(unknown.data["contentLength"], 524_288);
    assert_eq!(event.event_type(), "Microsoft.Storage.BlobCreated");
}

#[test]
fn the_validation_handshake_decodes_and_answers() {
    let bytes = std::fs::read(fixture_dir().join("eventgrid-subscription-validation.json")).unwrap();
    let batch = delivery::split_batch(&bytes).unwrap();
    let event = Event::from_value(batch[0].clone()).unwrap();
    let Payload::SubscriptionValidation(v) = &event.payload else { panic!("decoded as {:?}", event.payload) };
    assert_eq!(v.validation_code, "512d38b6-c7b8-40c8-89fe-f46f9e9622b6");
    assert_eq!(
        delivery::validation_response(&batch).unwrap(),
        serde_json::json!({"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"})
    );
}
