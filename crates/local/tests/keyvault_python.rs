//! The official Azure SDK for Python (azure-identity, azure-keyvault-secrets/-keys/-certificates, pinned in
//! crates/local/python/requirements.txt) runs crates/local/python/keyvault_scenario.py against the emulator.
//!
//! The interpreter comes from KEYTURN_PYTHON (scripts/test points it at the venv that
//! scripts/suites/python-sdk.sh creates). Without it this test fails: it is never skipped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use keyturn_local::keyvault::KeyVaultEmulator;
use std::path::PathBuf;
use std::time::Duration;

#[tokio::test]
async fn python_sdk_scenario_passes() {
    let python = std::env::var_os("KEYTURN_PYTHON").map(PathBuf::from).filter(|p| p.exists()).unwrap_or_else(|| {
        panic!("KEYTURN_PYTHON is unset or does not exist: run ./scripts/test, which creates the venv")
    });
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/keyvault_scenario.py");
    let kv = KeyVaultEmulator::builder().vault("kv-python").start().await.unwrap();
    let child = tokio::process::Command::new(&python)
        .arg(&script)
        .env("KEYTURN_VAULT_URL", kv.vault_url("kv-python").unwrap())
        .env("KEYTURN_CA", kv.ca_pem_path())
        .envs(kv.identity_env().vars())
        // Keep proxies out of a loopback conversation.
        .env("NO_PROXY", "127.0.0.1,localhost")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(180), child)
        .await
        .expect("the Python scenario finished within 180 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("python scenario: ok"),
        "python scenario failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    kv.shutdown().await;
}
