//! Issue 13's attacks ("tags choose, the deployment authorizes") through the real handler binaries on the
//! local stack: each asserts that nothing outside the attacker's own object changed, that the refusal is a
//! permanent, clear outcome with a warning notification, and that what the writer may legitimately ask for
//! keeps working beside it. docs/security.md lists which line each test proves.
//!
//! # Layout
//! - `bindings.rs`: mirroring over a secret that is not a replica; a replica rotating itself.
//! - `expired.rs`: a forged `*Expired` event for a version that has not expired, tagged to be disabled or rotated.
//! - `postgres.rs`: the PostgreSQL admin steered at itself or another login, an unbound server, a harvest server.
//! - `storage.rs`: the keys of a storage account not bound to the secret.
//! - `webhook.rs`: a webhook rotator not bound to the secret.

// Helpers outside #[test] functions unwrap too: a panic there is a failed test with a line number.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bindings;
mod expired;
mod postgres;
mod storage;
mod webhook;

use keyturn_e2e::Chain;
use keyturn_e2e::receivers::{HttpSink, Received};
use keyturn_host::{Outcome, Status};
use keyturn_local::stack::LocalStack;

/// The last outcome that names `vault/name` as its object.
fn last_about(chain: &Chain, vault: &str, name: &str) -> Outcome {
    let outcomes = chain.outcomes();
    outcomes
        .iter()
        .rfind(|o| o.object.as_ref().is_some_and(|object| object.vault() == vault && object.name() == name))
        .cloned()
        .unwrap_or_else(|| panic!("no outcome about {vault}/{name}: {outcomes:#?}"))
}

/// Asserts that the event about `vault/name` (its subject) was refused for good: its one answer is `rejected`
/// (Event Grid will not retry it), its message says each of `why`, and one warning notification about the
/// object says the same.
fn assert_refused(chain: &Chain, sink: &HttpSink, vault: &str, name: &str, why: &[&str]) {
    let answers = chain.outcomes_for_subject(name);
    assert_eq!(answers.len(), 1, "{vault}/{name}: one answer, and no retry: {answers:#?}");
    let refused = &answers[0];
    assert_eq!(refused.status, Status::Rejected, "{vault}/{name}: {refused:#?}");
    let warnings = notifications_about(sink, vault, name);
    assert_eq!(warnings.len(), 1, "{vault}/{name}: one notification: {warnings:#?}");
    assert_eq!(warnings[0]["severity"], "warning", "{vault}/{name}: {:#?}", warnings[0]);
    let summary = warnings[0]["summary"].as_str().unwrap_or_default();
    for needle in why {
        assert!(refused.message.contains(needle), "{vault}/{name}: the answer does not say '{needle}': {refused:#?}");
        assert!(summary.contains(needle), "{vault}/{name}: the warning does not say '{needle}': {summary}");
    }
}

/// The notifications the sink's signed webhook accepted about `vault/name`, as JSON.
fn notifications_about(sink: &HttpSink, vault: &str, name: &str) -> Vec<serde_json::Value> {
    sink.accepted_on("/webhook")
        .iter()
        .map(Received::json)
        .filter(|json| json["object"]["name"] == name && json["object"]["vault"] == vault)
        .collect()
}

/// Seeds `vault/name` with `value` and tags, expiring in a year (the vault's clock never gets near it, so
/// only the test's own events arrive); returns the version.
fn seed_for_a_year(stack: &LocalStack, vault: &str, name: &str, value: &str, pairs: &[(&str, &str)]) -> String {
    keyturn_e2e::seed_secret(stack, vault, name, value, 365, keyturn_e2e::tags(pairs))
}

/// Publishes the near-expiry event of `version` of `vault/name` (event id `<name>-near-expiry`).
fn near_expiry(chain: &Chain, vault: &str, name: &str, version: &str) {
    let exp = chain.stack.emulator().clock().now() + chrono::TimeDelta::days(30);
    let id = format!("{name}-near-expiry");
    chain.stack.grid().publish(keyturn_e2e::secret_near_expiry(&id, vault, name, version, exp));
}
