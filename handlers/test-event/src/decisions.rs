//! The rules of the crate docs against the in-memory fakes: no process, no socket.

use keyturn_deps::testing::{World, event};
use keyturn_events::KeyVaultEventType::*;
use keyturn_events::{Event, ObjectKind, Schema, VaultObject};
use keyturn_host::Status;
use keyturn_rotation::policy::CANARY_RESULT;
use keyturn_vault::Collection;

use crate::handle;

const CHANNELS: &str = "slack://hooks.slack.com/services/T/B/X";
const SETTINGS: &[(&str, &str)] = &[("KEYTURN_CANARY_SECRET", "keyturn-canary")];
const SOURCE: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv-one";

fn world() -> World {
    World::new(SETTINGS, CHANNELS).unwrap()
}

fn test_event(vault: &str, name: &str) -> Event {
    let object = VaultObject::new(vault, ObjectKind::Secret, name, Some("v1"), None, None).unwrap();
    Event::test_event("t1", SOURCE, object, None, Schema::EventGrid)
}

fn canary_tag(world: &World, version: &str) -> Option<String> {
    world
        .vault
        .versions_of("kv-one", Collection::Secrets, "keyturn-canary")
        .into_iter()
        .find(|v| v.version == version)
        .and_then(|v| v.tags.get(CANARY_RESULT).cloned())
}

#[tokio::test]
async fn a_test_event_runs_every_check_and_passes_and_records_nothing() {
    let world = world();
    world.vault.add("kv-one", Collection::Secrets, "app", "v1", &[]);
    let outcome = handle(test_event("kv-one", "app"), world.deps.clone()).await.unwrap();
    assert_eq!((outcome.status, outcome.action.as_deref()), (Status::Done, Some("pass")), "{}", outcome.message);
    for check in ["identity ok", "vault-list ok", "vault-read ok", "lock ok", "channels ok"] {
        assert!(outcome.message.contains(check), "{check} missing from {}", outcome.message);
    }
    assert!(!outcome.message.contains("recorded on"));
    assert_eq!(world.notifier.sent().len(), 1);
    assert!(!world.vault.calls().iter().any(|call| call.starts_with("update_version")));
}

#[tokio::test]
async fn a_failed_check_is_reported_not_retried() {
    let world = world();
    // The object the test names does not exist: vault-read fails, the others still run.
    let outcome = handle(test_event("kv-one", "missing"), world.deps.clone()).await.unwrap();
    assert_eq!((outcome.status, outcome.action.as_deref()), (Status::Done, Some("fail:vault-read")));
    assert!(outcome.message.contains("channels ok"), "{}", outcome.message);
}

#[tokio::test]
async fn the_canary_records_its_result_once_and_a_pass_is_not_tested_again() {
    let world = world();
    world.vault.add("kv-one", Collection::Secrets, "keyturn-canary", "c1", &[("owner", "platform")]);
    let canary = event("e1", SecretNewVersionCreated, "kv-one", "keyturn-canary", "c1");
    let outcome = handle(canary.clone(), world.deps.clone()).await.unwrap();
    assert_eq!(outcome.action.as_deref(), Some("pass"), "{}", outcome.message);
    assert!(canary_tag(&world, "c1").is_some_and(|tag| tag.starts_with("pass ")), "{:?}", canary_tag(&world, "c1"));
    let versions = world.vault.versions_of("kv-one", Collection::Secrets, "keyturn-canary");
    assert_eq!(versions.len(), 1, "writing the result made no version");
    assert_eq!(versions[0].tags.get("owner").map(String::as_str), Some("platform"));
    let again = handle(canary, world.deps.clone()).await.unwrap();
    assert_eq!((again.status, again.action.as_deref()), (Status::Skipped, Some("already-tested")));
}

#[tokio::test]
async fn a_channel_that_refuses_is_retried_and_the_failure_recorded() {
    let world = world();
    world.vault.add("kv-one", Collection::Secrets, "keyturn-canary", "c1", &[]);
    world.notifier.refuse(true);
    let canary = event("e1", SecretNewVersionCreated, "kv-one", "keyturn-canary", "c1");
    let error = handle(canary.clone(), world.deps.clone()).await.unwrap_err();
    assert!(error.is_retryable() && error.message().contains("fail:channels"), "{error}");
    assert!(canary_tag(&world, "c1").is_some_and(|tag| tag.starts_with("fail:channels ")));
    // A canary tagged fail is tested again on the redelivery.
    world.notifier.refuse(false);
    assert_eq!(handle(canary, world.deps.clone()).await.unwrap().action.as_deref(), Some("pass"));
}

#[tokio::test]
async fn other_events_and_foreign_vaults_touch_nothing() {
    let world = world();
    let foreign = handle(test_event("kv-evil", "app"), world.deps.clone()).await.unwrap();
    assert_eq!((foreign.status, foreign.action.as_deref()), (Status::Rejected, Some("not-allowed")));
    let not_canary =
        handle(event("e1", SecretNewVersionCreated, "kv-one", "db", "v1"), world.deps.clone()).await.unwrap();
    assert_eq!((not_canary.status, not_canary.action.as_deref()), (Status::Skipped, Some("not-served")));
    let expired =
        handle(event("e1", SecretExpired, "kv-one", "keyturn-canary", "v1"), world.deps.clone()).await.unwrap();
    assert_eq!(expired.action.as_deref(), Some("not-served"));
    assert!(world.vault.calls().is_empty());
    assert!(world.notifier.sent().is_empty());
}
