//! The `test-event` handler: proves the deployed path works end to end, like a "send test event" button,
//! but through the real route (Event Grid → Functions host → this handler).
//!
//! It runs on:
//! - keyturn's own test event (`Keyturn.TestEvent`, Event Grid schema or CloudEvents; `data` names a vault
//!   object in Key Vault's shape), e.g. from `keyturn send test-event`;
//! - `SecretNewVersionCreated` of the canary secret (`KEYTURN_CANARY_SECRET`), in any allow-listed vault.
//!
//! The checks, every one run whatever the others found (see [`checks`]): a token for the vault from the
//! configured identity, listing the vault's secrets, reading the named object, taking and releasing a lock
//! in the lock storage, and a test message through every configured channel. Each result is one log line
//! and part of the outcome line; for the canary the result is also written on the canary version as
//! `KeyturnCanaryResult=pass <time>` or `fail:<check> <time>`, so a command can wait for it.
//!
//! # The retry rule
//! A failed check is REPORTED, not retried: the invocation is acknowledged (`done: ... fail:<check> ...`) and
//! the canary carries the failure, because a test that Event Grid retries for 24 hours hides the answer
//! someone is waiting for. Two exceptions fail the invocation so that Event Grid redelivers:
//! - a notification channel did not accept the test message: once it is back, the redelivery reaches it
//!   (only the channels that missed it, within one process), as every other handler's notifications do;
//! - the result could not be written on the canary version: nobody could read it otherwise.
//!
//! A canary version already tagged `pass` is not tested again (a duplicate delivery); one tagged `fail:...`
//! is (a redelivery after a channel failure). Writing the tag creates no version, so there is no loop.
//!
//! The typed outcome's `action` is the verdict, `pass` or `fail:<check>` (the canary tag's words), or
//! `already-tested`, `not-served`, `not-allowed`.
//!
//! # Layout
//! - this file: [`handle`] (which events are tests; the object admitted once, allow-list included), [`decide`]
//!   (the checks, the result tag and the retry rule).
//! - [`checks`]: the checks and their one-line results.
//! - `src/main.rs`: the binary, wiring only; `src/decisions.rs`: the rules above against the in-memory fakes.

pub mod checks;

use std::sync::Arc;

use chrono::{SecondsFormat, Utc};
use keyturn_deps::{Accepted, Deps, ErrorClass};
use keyturn_events::{Event, KeyVaultEventType, Lifecycle, Payload, VaultObject};
use keyturn_host::{HandlerError, Outcome};
use keyturn_rotation::policy::{self, CANARY_RESULT};
use keyturn_vault::VersionUpdate;

use crate::checks::{Check, CheckResult};

/// The function's name: its folder under function-definitions/, its route, its binary.
pub const FUNCTION: &str = "test-event";

/// Why this event is a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestKind {
    /// keyturn's own test event.
    TestEvent,
    /// A new version of the canary secret: the result is recorded on it.
    Canary,
}

/// The object to test with and why, or the outcome that says why this event is not a test.
pub fn trigger(event: &Event, canary: Option<&str>) -> Result<(TestKind, VaultObject), Box<Outcome>> {
    let not_served = |message: String| Box::new(Outcome::skipped(message).action(keyturn_deps::accept::NOT_SERVED));
    if let Some(object) = event.test_object() {
        return match object {
            Ok(object) => Ok((TestKind::TestEvent, object)),
            Err(error) => Err(Box::new(
                Outcome::rejected(format!("a keyturn test event whose data is not a vault object: {error}"))
                    .action("not-an-object"),
            )),
        };
    }
    match &event.payload {
        Payload::KeyVault(key_vault) if key_vault.event_type == KeyVaultEventType::SecretNewVersionCreated => {
            match canary {
                Some(canary) if canary.eq_ignore_ascii_case(key_vault.object.name()) => {
                    Ok((TestKind::Canary, key_vault.object.clone()))
                }
                Some(canary) => Err(not_served(format!(
                    "secret '{}' is not the canary ('{canary}', KEYTURN_CANARY_SECRET)",
                    key_vault.object.name()
                ))),
                None => Err(not_served(
                    "no canary secret is configured (KEYTURN_CANARY_SECRET); only keyturn test events are tests"
                        .to_owned(),
                )),
            }
        }
        _ => Err(not_served(format!(
            "'{}' is neither a keyturn test event ({}) nor a new version of the canary secret",
            event.event_type(),
            keyturn_events::event::TEST_EVENT_TYPE
        ))),
    }
}

/// Runs every check for a test event or a canary version and reports (and, for the canary, records) the
/// result.
pub async fn handle(event: Event, deps: Arc<Deps>) -> Result<Outcome, HandlerError> {
    let (trigger, object) = match trigger(&event, deps.canary()) {
        Ok(found) => found,
        Err(outcome) => return Ok(*outcome),
    };
    // A test event is reported as the object's new version; the canary's is one.
    let event_type = KeyVaultEventType::for_object(object.kind(), Lifecycle::NewVersionCreated)
        .unwrap_or(KeyVaultEventType::SecretNewVersionCreated);
    // Before anything that could touch the network: a test names a vault, and only allow-listed ones are used.
    let accepted = match deps.admit(&event, &object, event_type) {
        Ok(accepted) => accepted,
        Err(outcome) => return Ok(*outcome),
    };
    let _turn = deps.turn().await;
    decide(trigger, &accepted, &deps).await
}

/// The test of an accepted object.
pub async fn decide(trigger: TestKind, accepted: &Accepted, deps: &Deps) -> Result<Outcome, HandlerError> {
    let object = &accepted.object;
    let (vault, name, version, collection) = (object.vault(), object.name(), object.version(), accepted.collection);
    let target = object.described();

    if trigger == TestKind::Canary {
        let properties = deps
            .versions()
            .version_properties(vault, collection, name, version)
            .await
            .map_err(|e| e.handler_error(format!("{target}: reading the canary version {version}")))?;
        if let Some(result) = policy::tag(&properties.tags, CANARY_RESULT)
            && result.starts_with("pass")
        {
            return Ok(Outcome::skipped(format!("canary {vault}/{name}/{version} already tested: {result}"))
                .about(object)
                .action("already-tested"));
        }
    }

    let results = checks::run_all(deps, accepted).await;
    let failed = results.iter().find(|r| !r.ok);
    let verdict = failed.map_or_else(|| "pass".to_owned(), |r| format!("fail:{}", r.check.as_str()));
    let lines = results.iter().map(CheckResult::to_string).collect::<Vec<_>>().join("; ");
    let mut line = format!("test of {target}: {verdict} ({lines})");

    if trigger == TestKind::Canary {
        let value = format!("{verdict} {}", Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true));
        record(deps, vault, collection, name, version, &value)
            .await
            .map_err(|e| e.handler_error(format!("{target}: recording the result '{value}' on version {version}")))?;
        line.push_str(&format!("; recorded on version {version} as {CANARY_RESULT}={value}"));
    }

    if results.iter().any(|r| r.check == Check::Channels && !r.ok) {
        // The one failure worth Event Grid's retries: the redelivery reaches the channel once it is back.
        return Err(HandlerError::retryable(line));
    }
    // The verdict is the action: `pass` or `fail:<check>`, the words of the canary's result tag.
    Ok(Outcome::done(line).about(object).action(verdict).versions(Some(version.to_owned()), None))
}

/// Writes the result tag on the canary version, keeping its other tags.
async fn record(
    deps: &Deps,
    vault: &str,
    collection: keyturn_vault::Collection,
    name: &str,
    version: &str,
    value: &str,
) -> Result<(), keyturn_vault::VaultError> {
    let properties = deps.versions().version_properties(vault, collection, name, version).await?;
    let mut tags = properties.tags;
    tags.retain(|key, _| !key.eq_ignore_ascii_case(CANARY_RESULT));
    tags.insert(CANARY_RESULT.to_owned(), value.to_owned());
    deps.versions()
        .update_version(vault, collection, name, version, VersionUpdate { enabled: None, tags: Some(tags) })
        .await?;
    Ok(())
}

#[cfg(test)]
mod decisions;

#[cfg(test)]
mod tests {
    use super::*;
    use keyturn_events::{KeyVaultEvent, ObjectKind, Schema};

    const SOURCE: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv-one";

    fn object(name: &str) -> VaultObject {
        VaultObject::new("kv-one", ObjectKind::Secret, name, Some("v1"), None, None).unwrap()
    }

    fn key_vault_event(event_type: KeyVaultEventType, name: &str) -> Event {
        Event {
            id: "e1".into(),
            subject: name.into(),
            source: SOURCE.into(),
            time: None,
            schema: Schema::EventGrid,
            payload: Payload::KeyVault(KeyVaultEvent { event_type, object: object(name) }),
        }
    }

    #[test]
    fn test_events_of_both_schemas_are_tests() {
        for schema in [Schema::EventGrid, Schema::CloudEvents] {
            let event = Event::test_event("t1", SOURCE, object("anything"), None, schema);
            let event = Event::from_value(event.to_value()).unwrap();
            let (trigger, found) = trigger(&event, None).unwrap();
            assert_eq!(trigger, TestKind::TestEvent);
            assert_eq!(found.name(), "anything");
        }
    }

    #[test]
    fn only_the_canarys_new_versions_are_canary_runs() {
        let canary = key_vault_event(KeyVaultEventType::SecretNewVersionCreated, "Keyturn-Canary");
        assert_eq!(trigger(&canary, Some("keyturn-canary")).unwrap().0, TestKind::Canary);
        let skipped = trigger(&canary, None).unwrap_err();
        assert_eq!(skipped.status, keyturn_host::Status::Skipped);
        assert!(skipped.message.contains("KEYTURN_CANARY_SECRET"), "{skipped:?}");
        let other = key_vault_event(KeyVaultEventType::SecretNewVersionCreated, "db-password");
        assert_eq!(trigger(&other, Some("keyturn-canary")).unwrap_err().status, keyturn_host::Status::Skipped);
        let expired = key_vault_event(KeyVaultEventType::SecretExpired, "keyturn-canary");
        let skipped = trigger(&expired, Some("keyturn-canary")).unwrap_err();
        assert!(skipped.message.contains("Keyturn.TestEvent"), "{skipped:?}");
    }
}
