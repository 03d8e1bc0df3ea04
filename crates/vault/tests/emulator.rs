//! `AzureKeyVault` (built from `keyturn_config::Settings` as a handler builds it) against the Key Vault emulator:
//! reads and writes through TLS, the managed identity endpoint and the 401 challenge; server errors retried
//! a bounded number of times and then reported as retryable.
//!
//! Like the rotation crate's emulator test, the managed identity credential needs IDENTITY_ENDPOINT in the
//! real process environment, so the test re-runs itself as a child process with that environment.

// Helpers outside #[test] functions panic on purpose too: a failed setup is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use keyturn_config::SecretString;
use keyturn_local::keyvault::{FaultRule, Faults, KeyVaultEmulator, OperationKind};
use keyturn_vault::model::NewSecretVersion;
use keyturn_vault::{AzureKeyVault, KeyVault};

const SCENARIO: &str = "KT_SCENARIO";
const TEST: &str = "vault_operations_and_bounded_retries_against_the_emulator";

fn vault() -> AzureKeyVault {
    AzureKeyVault::from_settings(&keyturn_config::Settings::from_env().unwrap()).unwrap()
}

async fn scenario_round_trip() {
    let vault = vault();
    let exp = chrono::DateTime::from_timestamp(1_900_000_000, 0).unwrap();
    let stored = vault
        .set_secret(
            "kv-vault",
            "api-key",
            NewSecretVersion {
                value: SecretString::new("s3cret".into()),
                content_type: Some("text/plain".into()),
                tags: [("owner".to_string(), "team-a".to_string())].into(),
                not_before: None,
                expires: Some(exp),
            },
        )
        .await
        .unwrap();
    let latest = vault.latest_secret("KV-VAULT", "api-key").await.unwrap();
    assert_eq!(latest.properties, stored);
    assert_eq!(latest.properties.expires, Some(exp));
    assert_eq!(latest.value.expose(), "s3cret");
    let missing = vault.latest_secret("kv-vault", "nope").await.unwrap_err();
    assert_eq!(missing.status(), Some(404));
    assert!(!missing.is_retryable());
}

async fn scenario_faults() {
    let vault = vault();
    let started = Instant::now();
    let error = vault.latest_secret("kv-vault", "api-key").await.unwrap_err();
    assert_eq!(error.status(), Some(503), "{error}");
    assert!(error.is_retryable(), "exhausted retries must be retryable: {error}");
    // 3 retries of 50, 100, 100 ms (capped): bounded, and not the SDK's default minute.
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
}

async fn run_child(scenario: &str, kv: &keyturn_local::keyvault::RunningEmulator) {
    let extra = [
        (SCENARIO, scenario.to_owned()),
        ("KEYTURN_RETRY_MAX", "3".to_owned()),
        ("KEYTURN_RETRY_DELAY_MS", "50".to_owned()),
        ("KEYTURN_RETRY_MAX_DELAY_MS", "100".to_owned()),
        ("KEYTURN_HTTP_TIMEOUT_SECS", "20".to_owned()),
    ];
    support::run_child(TEST, kv, "kv-vault", &extra, &format!("scenario {scenario}")).await;
}

#[tokio::test]
async fn vault_operations_and_bounded_retries_against_the_emulator() {
    match std::env::var(SCENARIO).as_deref() {
        Ok("round-trip") => return scenario_round_trip().await,
        Ok("faults") => return scenario_faults().await,
        Ok(other) => panic!("unknown scenario {other}"),
        Err(_) => {}
    }
    let kv = KeyVaultEmulator::builder().vault("kv-vault").no_throttling().start().await.unwrap();
    // A broad client of the emulator as the system-assigned identity (strict RBAC by default): its role, visibly.
    kv.grant_system_identity("Key Vault Administrator").unwrap();
    run_child("round-trip", &kv).await;
    let always_unavailable = FaultRule { internal_error_share: 0.0, unavailable_share: 1.0, latency: Duration::ZERO };
    kv.set_faults(Faults::none().with(OperationKind::SecretRead, always_unavailable));
    run_child("faults", &kv).await;
    kv.shutdown().await;
}
