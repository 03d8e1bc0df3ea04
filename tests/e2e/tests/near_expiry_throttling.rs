//! A burst of objects reach exp − 30 days at the same moment, and the vault throttles at Key Vault's real limits
//! (per vault per 10 s: secret create 300, RSA-2048 key create 20, 4,000 of everything else; 429 with no
//! Retry-After). Through the real chain: the handler paces every request to its class's limit (no 429 at all),
//! answers at once for the events whose turn is further away than it may wait, Event Grid redelivers those on
//! its (time-scaled) schedule, and in the end every object is rotated exactly once and nothing is dead-lettered.
//!
//! - 1,000 secrets: at least 1,000 creates at 300 per 10 s need four throttling windows, 30-60 s.
//! - 50 RSA keys: 50 rotations at 20 per 10 s need three windows; paced at 18 per 10 s, about 28 s.
//!
//! Each run is bounded at 5 minutes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use keyturn_e2e::{Chain, NEAR_EXPIRY_EVENT_TYPES, seed_rsa_key, tags, workspace_binary};
use keyturn_host::Status;
use keyturn_local::eventgrid::EventGridOptions;
use keyturn_local::keyvault::store::AttributeInput;
use keyturn_local::keyvault::{KeyVaultEmulator, SecretSpec, Throttling};
use keyturn_local::stack::LocalStack;

const FUNCTION: &str = "near-expiry";
const VAULT: &str = "kv-one";

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_secrets_near_expiry_under_key_vault_throttling_rotate_exactly_once() {
    const SECRETS: usize = 1000;
    let stack = throttled_stack().await;
    let exp = (stack.emulator().clock().now() + TimeDelta::days(31)).timestamp();
    let policy = tags(&[
        ("KeyturnRotation", "generated"),
        ("ValidityPeriodDays", "60"),
        ("KeyturnFormat", "alphanumeric"),
        ("KeyturnLength", "24"),
    ]);
    for i in 0..SECRETS {
        let spec = SecretSpec {
            value: format!("seeded-bulk-value-{i:05}"),
            content_type: None,
            attributes: AttributeInput { exp: Some(exp), ..AttributeInput::default() },
            tags: policy.clone(),
        };
        stack.emulator().store().set_secret(VAULT, &format!("bulk-{i:04}"), spec).unwrap();
    }
    let chain = rotate_all(stack, SECRETS).await;
    let store = chain.stack.emulator().store();
    let not_once =
        not_rotated_once(SECRETS, |i| store.list_secret_versions(VAULT, &format!("bulk-{i:04}")).unwrap().len());
    assert!(not_once.is_empty(), "secrets not rotated exactly once (index, versions): {not_once:?}");
    chain.shutdown().await;
}

/// Key rotations are paced to the key-create limit (20 per 10 s), apart from the secrets' and from the reads
/// each rotation also makes: 50 keys at once, and the vault refuses none of their requests.
#[tokio::test(flavor = "multi_thread")]
async fn fifty_rsa_keys_near_expiry_under_key_vault_throttling_rotate_exactly_once() {
    const KEYS: usize = 50;
    let stack = throttled_stack().await;
    for i in 0..KEYS {
        seed_rsa_key(&stack, VAULT, &format!("signing-{i:02}"), 31, tags(&[("KeyturnRotation", "enabled")]));
    }
    let chain = rotate_all(stack, KEYS).await;
    let store = chain.stack.emulator().store();
    let not_once =
        not_rotated_once(KEYS, |i| store.list_key_versions(VAULT, &format!("signing-{i:02}")).unwrap().len());
    // What the handler said about each (its warnings: a failed rotation, a retry), to tell why.
    let lines = chain.host.output().lines();
    let said: Vec<Vec<&str>> = not_once
        .iter()
        .map(|(i, _)| {
            let name = format!("signing-{i:02}");
            lines.iter().filter(|line| line.text.contains(&name)).map(|line| line.text.as_str()).collect()
        })
        .collect();
    assert!(
        not_once.is_empty(),
        "keys not rotated exactly once (index, versions): {not_once:?}; the handler said: {said:#?}"
    );
    chain.shutdown().await;
}

/// The objects, by index, without exactly two versions (seeded, rotated once), with how many they have.
fn not_rotated_once(objects: usize, versions: impl Fn(usize) -> usize) -> Vec<(usize, usize)> {
    (0..objects).map(|i| (i, versions(i))).filter(|(_, versions)| *versions != 2).collect()
}

/// The local stack with one vault throttled at Key Vault's published limits.
async fn throttled_stack() -> LocalStack {
    // Event Grid at 1/500 of real time: retries after 20 ms, 60 ms, ... 7.2 s, 21.6 s; a day to live is 173 s.
    let options = EventGridOptions { time_scale: 0.002, ..EventGridOptions::default() };
    LocalStack::start(KeyVaultEmulator::builder().vault(VAULT).throttling(Throttling::key_vault()), options)
        .await
        .unwrap()
}

/// Starts the chain, moves the clock a day so the `objects` seeded to expire in 31 days raise near-expiry events
/// at once, and waits until each is rotated. Asserts: nothing dead-lettered, no request throttled by the vault,
/// some deliveries left for later by the pacing (the burst did reach the limit), and one invocation rotated
/// each object.
async fn rotate_all(stack: LocalStack, objects: usize) -> Chain {
    tokio::time::timeout(Duration::from_secs(300), async move {
        let mut settings = stack.handler_env();
        // The handler gives up on a throttled call after about a second, and Event Grid takes it from there.
        settings.extend(
            [
                ("KEYTURN_RETRY_MAX", "2"),
                ("KEYTURN_RETRY_DELAY_MS", "200"),
                ("KEYTURN_RETRY_MAX_DELAY_MS", "800"),
                ("KEYTURN_HTTP_TIMEOUT_SECS", "20"),
                ("KEYTURN_LOG", "warn"),
            ]
            .map(|(name, value)| (name.to_owned(), value.to_owned())),
        );
        let chain =
            Chain::start(stack, FUNCTION, &workspace_binary(FUNCTION), &NEAR_EXPIRY_EVENT_TYPES, settings).await;

        let started = Instant::now();
        chain.stack.emulator().clock().advance(Duration::from_secs(24 * 3600));
        chain.settle(objects, Duration::from_secs(240)).await;
        let elapsed = started.elapsed();

        let dead = chain.stack.grid().dead_letters();
        assert!(dead.is_empty(), "{} dead-lettered, e.g. {:?}", dead.len(), dead.first());

        // The handler paced its requests to the vault's limits: the vault refused none of them, not even one the
        // handler's own retries would have hidden ...
        let throttled = chain.stack.emulator().throttled();
        assert_eq!(throttled, 0, "the vault throttled {throttled} requests the handler should have paced");
        // ... and the events whose turn lay beyond the wait an invocation may spend were redelivered, not lost.
        let attempts = chain.attempts();
        let retried = attempts.iter().filter(|attempt| attempt.attempt > 1).count();
        assert!(retried > 0, "no delivery was left for later: the burst never reached the limit");
        let outcomes = chain.outcomes();
        let rotated =
            outcomes.iter().filter(|o| (o.status, o.action.as_deref()) == (Status::Done, Some("rotated"))).count();
        let mut others: BTreeMap<String, usize> = BTreeMap::new();
        for outcome in outcomes.iter().filter(|o| (o.status, o.action.as_deref()) != (Status::Done, Some("rotated"))) {
            *others.entry(format!("{:?} {:?}: {}", outcome.status, outcome.action, outcome.message)).or_default() += 1;
        }
        let mut deliveries: BTreeMap<(String, bool), usize> = BTreeMap::new();
        for attempt in &attempts {
            *deliveries.entry((attempt.outcome.clone(), attempt.duplicate)).or_default() += 1;
        }
        assert_eq!(
            rotated, objects,
            "every object rotated by one invocation; deliveries (outcome, duplicate): {deliveries:?}; the other \
             outcomes: {others:#?}"
        );
        eprintln!(
            "{objects} rotations under throttling: {elapsed:?}, {} delivery attempts ({retried} redeliveries)",
            attempts.len()
        );
        chain
    })
    .await
    .unwrap_or_else(|_| panic!("the run did not finish within 300 s"))
}
