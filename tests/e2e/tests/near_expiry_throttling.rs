//! 1,000 secrets reach exp − 30 days at the same moment, and the vault throttles at Key Vault's real limits
//! (secret create: 300 per 10 s per vault; 429 with no Retry-After). Through the real chain: the handler paces
//! its creates to the limit (no 429 at all), answers at once for the events whose turn is further away than it
//! may wait, Event Grid redelivers those on its (time-scaled) schedule, and in the end every secret is rotated
//! exactly once and nothing is dead-lettered.
//!
//! At least 1,000 creates at 300 per 10 s need four throttling windows, so the run takes 30-60 s; it is bounded
//! at 5 minutes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use keyturn_e2e::{Chain, NEAR_EXPIRY_EVENT_TYPES, workspace_binary};
use keyturn_host::Status;
use keyturn_local::eventgrid::EventGridOptions;
use keyturn_local::keyvault::store::AttributeInput;
use keyturn_local::keyvault::{KeyVaultEmulator, SecretSpec, Throttling};
use keyturn_local::stack::LocalStack;

const FUNCTION: &str = "near-expiry";
const VAULT: &str = "kv-one";
const SECRETS: usize = 1000;

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_secrets_near_expiry_under_key_vault_throttling_rotate_exactly_once() {
    tokio::time::timeout(Duration::from_secs(300), async {
        // Event Grid at 1/500 of real time: retries after 20 ms, 60 ms, ... 7.2 s, 21.6 s; a day to live is 173 s.
        let options = EventGridOptions { time_scale: 0.002, ..EventGridOptions::default() };
        let stack =
            LocalStack::start(KeyVaultEmulator::builder().vault(VAULT).throttling(Throttling::key_vault()), options)
                .await
                .unwrap();
        let exp = (stack.emulator().clock().now() + TimeDelta::days(31)).timestamp();
        let policy: BTreeMap<String, String> = [
            ("KeyturnRotation", "generated"),
            ("ValidityPeriodDays", "60"),
            ("KeyturnFormat", "alphanumeric"),
            ("KeyturnLength", "24"),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
        for i in 0..SECRETS {
            let spec = SecretSpec {
                value: format!("seeded-bulk-value-{i:05}"),
                content_type: None,
                attributes: AttributeInput { exp: Some(exp), ..AttributeInput::default() },
                tags: policy.clone(),
            };
            stack.emulator().store().set_secret(VAULT, &format!("bulk-{i:04}"), spec).unwrap();
        }
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
        chain.settle(SECRETS, Duration::from_secs(240)).await;
        let elapsed = started.elapsed();

        let store = chain.stack.emulator().store();
        let mut not_once = Vec::new();
        for i in 0..SECRETS {
            let versions = store.list_secret_versions(VAULT, &format!("bulk-{i:04}")).unwrap().len();
            if versions != 2 {
                not_once.push((i, versions));
            }
        }
        assert!(not_once.is_empty(), "secrets not rotated exactly once (index, versions): {not_once:?}");
        let dead = chain.stack.grid().dead_letters();
        assert!(dead.is_empty(), "{} dead-lettered, e.g. {:?}", dead.len(), dead.first());

        // The handler paced its creates to the vault's limit: the vault refused none of them (a refused one fails
        // its invocation with the vault's 429, one stderr line each) ...
        let lines = chain.host.output().lines();
        let vault_429s: Vec<&str> = lines
            .iter()
            .filter(|line| {
                line.stream == keyturn_local::functions_host::Stream::Stderr && line.text.contains("HTTP 429")
            })
            .map(|line| line.text.as_str())
            .collect();
        assert!(
            vault_429s.is_empty(),
            "the vault throttled {} requests the handler should have paced, e.g. {:?}",
            vault_429s.len(),
            vault_429s.first()
        );
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
            rotated, SECRETS,
            "every secret rotated by one invocation; deliveries (outcome, duplicate): {deliveries:?}; the other \
             outcomes: {others:#?}"
        );
        tracing::info!(?elapsed, attempts = attempts.len(), retried, "1,000 rotations under throttling");
        eprintln!(
            "{SECRETS} rotations under throttling: {elapsed:?}, {} delivery attempts ({retried} redeliveries)",
            attempts.len()
        );
        chain.shutdown().await;
    })
    .await
    .unwrap_or_else(|_| panic!("the run did not finish within 300 s"));
}
