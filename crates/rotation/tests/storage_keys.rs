//! The `storage-account-key` provider end to end: the engine in a handler-like child process, the SDK-backed
//! vault and the hand-written Resource Manager client (managed identity tokens from the local identity
//! endpoint), against the Key Vault emulator and the ARM emulator (crates/local/src/arm/).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use keyturn_local::arm::ArmEmulator;
use keyturn_rotation::provider::Provider;
use keyturn_rotation::{Engine, InProcessLock, RotationOutcome};
use keyturn_vault::KeyVault;
use support::{Parent, SCENARIO, Step, VAULT, event, new_secret, rotate_until_crash, tags};

const TEST: &str = "storage_account_keys";
const BOUND: Duration = Duration::from_secs(60);
const DUPLICATE: &str =
    "/subscriptions/0000/resourceGroups/rg-keys/providers/Microsoft.Storage/storageAccounts/dupacct";
const CRASH: &str = "/subscriptions/0000/resourceGroups/rg-keys/providers/Microsoft.Storage/storageAccounts/crashacct";
const MISSING: &str = "/subscriptions/0000/resourceGroups/rg-keys/providers/Microsoft.Storage/storageAccounts/nosuch";
/// An account the identity could manage but no binding gives to the test's vault (issue 13's attack).
const VICTIM: &str = "/subscriptions/0000/resourceGroups/rg-keys/providers/Microsoft.Storage/storageAccounts/victim";

fn policy(account: &str) -> keyturn_vault::model::Tags {
    tags(&[
        ("KeyturnRotation", "storage-account-key"),
        ("ValidityPeriodDays", "60"),
        ("CredentialId", "key1"),
        ("ProviderAddress", account),
    ])
}

/// The child: the scenario through the engine, as the handler runs it.
async fn scenario() {
    let settings = support::child_settings(&[(
        "KEYTURN_STORAGE_ACCOUNTS",
        format!("{VAULT}={DUPLICATE},{CRASH};{VAULT}/missing-*={MISSING};other-vault={VICTIM}"),
    )]);
    let (vault, providers) = support::vault_and_providers(&settings);
    let provider: Arc<dyn Provider> = providers.get("storage-account-key").unwrap().clone();
    let engine = Engine::new(vault.clone(), Arc::new(InProcessLock::default()), providers);
    let rotate = |name: &'static str, version: String| {
        let engine = engine.clone();
        async move { tokio::time::timeout(BOUND, engine.rotate(&event(name, &version))).await.unwrap() }
    };
    let key1 = std::env::var("KT_KEY1").unwrap();

    // A duplicate delivery: the second finds the rotation done.
    let v0 = vault.set_secret(VAULT, "dup-key", new_secret(&key1, policy(DUPLICATE))).await.unwrap().version;
    let first = rotate("dup-key", v0.clone()).await.unwrap();
    assert!(matches!(&first, RotationOutcome::Rotated { from, .. } if from == &v0), "{first}");
    let second = rotate("dup-key", v0.clone()).await.unwrap();
    assert!(matches!(second, RotationOutcome::AlreadyRotated { .. }), "{second}");
    let latest = vault.latest_secret(VAULT, "dup-key").await.unwrap();
    assert_eq!(latest.properties.tags["CredentialId"], "key2");
    assert_eq!(latest.properties.tags["ProviderAddress"], DUPLICATE);

    // A crash between the regeneration and the promotion: the replay finds key2 changed since the fingerprint
    // the first attempt recorded, and keeps it rather than regenerate again.
    let c0 = vault.set_secret(VAULT, "crash-key", new_secret(&key1, policy(CRASH))).await.unwrap().version;
    tokio::time::timeout(BOUND, rotate_until_crash(vault.clone(), provider, Step::Create, &event("crash-key", &c0)))
        .await
        .unwrap();
    assert_eq!(vault.latest_secret(VAULT, "crash-key").await.unwrap().properties.version, c0);
    let replay = rotate("crash-key", c0.clone()).await.unwrap();
    assert!(matches!(replay, RotationOutcome::Rotated { .. }), "{replay}");

    // An account Resource Manager does not know: permanent, nothing stored.
    let m0 = vault.set_secret(VAULT, "missing-key", new_secret("k", policy(MISSING))).await.unwrap().version;
    let error = rotate("missing-key", m0.clone()).await.unwrap_err();
    assert!(!error.is_retryable(), "{error}");
    assert!(error.to_string().contains("HTTP 404 (ResourceNotFound)"), "{error}");
    assert_eq!(vault.latest_secret(VAULT, "missing-key").await.unwrap().properties.version, m0);

    // A writer of one secret names an account not bound to it (bound to another vault), and one bound only to
    // other names: refused permanently, naming the missing binding, before Resource Manager is asked
    // (the parent checks the accounts' keys are untouched).
    for (name, account) in [("stolen-key", VICTIM), ("dup-other", MISSING)] {
        let s0 = vault.set_secret(VAULT, name, new_secret("mine", policy(account))).await.unwrap().version;
        let error = rotate(name, s0.clone()).await.unwrap_err();
        assert!(!error.is_retryable(), "{error}");
        assert!(error.to_string().contains("KEYTURN_STORAGE_ACCOUNTS has an entry for it"), "{error}");
        assert_eq!(vault.latest_secret(VAULT, name).await.unwrap().properties.version, s0);
    }
}

#[tokio::test]
async fn storage_account_keys() {
    match std::env::var(SCENARIO).as_deref() {
        Ok("keys") => return scenario().await,
        Ok(other) => panic!("unknown scenario {other}"),
        Err(_) => {}
    }
    let parent = Parent::start().await;
    let arm = ArmEmulator::builder()
        .storage_account(DUPLICATE)
        .storage_account(CRASH)
        .storage_account(VICTIM)
        .start(parent.kv.token_registry().unwrap())
        .await
        .unwrap();
    // The child runs as the system-assigned identity, holding the key operator role on the accounts' resource group:
    // the victim is covered too (what stops the rotation there is the binding, not a missing role), and a missing
    // account is a 404, as ARM answers a caller with rights above it (without them it answers 403).
    let system = parent.kv.identities().system().object_id;
    arm.assign_role(&system, "keyturn key operator", "/subscriptions/0000/resourceGroups/rg-keys").unwrap();
    let key1 = arm.key(DUPLICATE, "key1").unwrap();
    let victim = (arm.key(VICTIM, "key1").unwrap(), arm.key(VICTIM, "key2").unwrap());
    parent
        .run_child(
            TEST,
            "keys",
            &[arm.ca_pem().to_owned()],
            &[("KEYTURN_ARM_ENDPOINT", arm.url().to_owned()), ("KT_KEY1", key1.clone())],
        )
        .await;

    // One regeneration for the duplicate delivery, of the key the secret did not hold; the vault holds it.
    assert_eq!(arm.regenerations(DUPLICATE, "key2"), Some(1));
    assert_eq!(arm.regenerations(DUPLICATE, "key1"), Some(0));
    assert_eq!(arm.key(DUPLICATE, "key1").unwrap(), key1, "the stored key stays valid");
    let stored = |name: &str| parent.kv.store().get_secret(VAULT, name, None).unwrap().version.data.value.clone();
    assert_eq!(stored("dup-key"), arm.key(DUPLICATE, "key2").unwrap());
    // One regeneration across the crash and the replay, and the vault holds that key.
    assert_eq!(arm.regenerations(CRASH, "key2"), Some(1));
    assert_eq!(stored("crash-key"), arm.key(CRASH, "key2").unwrap());
    // The unbound account: never regenerated, its keys unchanged.
    assert_eq!((arm.regenerations(VICTIM, "key1"), arm.regenerations(VICTIM, "key2")), (Some(0), Some(0)));
    assert_eq!((arm.key(VICTIM, "key1").unwrap(), arm.key(VICTIM, "key2").unwrap()), victim);
    arm.shutdown().await;
    parent.stop().await;
}
