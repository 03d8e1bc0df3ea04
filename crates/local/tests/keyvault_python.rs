//! The official Azure SDK for Python (azure-identity, azure-keyvault-secrets/-keys/-certificates, the newest
//! releases, pinned in crates/local/python/requirements.txt) runs crates/local/python/keyvault_scenario.py
//! against the emulator: once with default settings (no api_version: each client sends its own default,
//! 2026-04-01 for secrets and certificates), then pinned to every API version those SDKs offer.
//!
//! RBAC is strict: the scenario runs as a user-assigned identity holding exactly the roles it uses (Secrets,
//! Crypto and Certificates Officer on the vault).
//!
//! The interpreter comes from KEYTURN_PYTHON (scripts/test points it at the venv it builds from the
//! requirements file). Without it this test fails: it is never skipped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use keyturn_local::keyvault::KeyVaultEmulator;
use keyturn_local::rbac::Scope;
use std::path::PathBuf;
use std::time::Duration;

/// Every version the SDK releases' `ApiVersion` enums offer (keys stops at 2025-07-01 and keeps its default
/// for a newer pin).
const PINNED: &[&str] = &["2026-04-01", "2025-07-01", "7.6", "7.5", "7.4", "7.3", "7.2", "7.1", "7.0", "2016-10-01"];

/// Runs the scenario against a fresh strict-RBAC vault; `Err` with the output when it fails.
async fn scenario(python: &PathBuf, api_version: Option<&str>) -> Result<String, String> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/keyvault_scenario.py");
    let kv = KeyVaultEmulator::builder().vault("kv-python").start().await.unwrap();
    let identity = kv.add_user_assigned_identity("python-scenario");
    for role in ["Key Vault Secrets Officer", "Key Vault Crypto Officer", "Key Vault Certificates Officer"] {
        kv.assign_role(&identity.object_id, role, Scope::vault("kv-python")).unwrap();
    }
    let mut command = tokio::process::Command::new(python);
    command
        .arg(&script)
        .env("KEYTURN_VAULT_URL", kv.vault_url("kv-python").unwrap())
        .env("KEYTURN_CA", kv.ca_pem_path())
        .env("AZURE_CLIENT_ID", &identity.client_id)
        .envs(kv.identity_env().vars())
        .env_remove("KEYTURN_API_VERSION")
        // Keep proxies out of a loopback conversation.
        .env("NO_PROXY", "127.0.0.1,localhost")
        .kill_on_drop(true);
    if let Some(version) = api_version {
        command.env("KEYTURN_API_VERSION", version);
    }
    let output = tokio::time::timeout(Duration::from_secs(300), command.output())
        .await
        .expect("the Python scenario finished within 300 s")
        .unwrap();
    kv.shutdown().await;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() && stdout.contains("python scenario: ok") {
        Ok(stdout)
    } else {
        Err(format!(
            "api-version {}: python scenario failed ({}):\n{stdout}\n{}",
            api_version.unwrap_or("(SDK defaults)"),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

fn python() -> PathBuf {
    std::env::var_os("KEYTURN_PYTHON").map(PathBuf::from).filter(|p| p.exists()).unwrap_or_else(|| {
        panic!("KEYTURN_PYTHON is unset or does not exist: run ./scripts/test, which creates the venv")
    })
}

#[tokio::test]
async fn python_sdk_scenario_passes_with_default_settings() {
    let stdout = scenario(&python(), None).await.unwrap_or_else(|failure| panic!("{failure}"));
    assert!(
        stdout.contains("secrets 2026-04-01") && stdout.contains("certificates 2026-04-01"),
        "the newest SDKs default to 2026-04-01: {stdout}"
    );
}

#[tokio::test]
async fn python_sdk_scenario_passes_pinned_to_every_version_the_sdks_offer() {
    let python = python();
    let runs = PINNED.iter().map(|version| scenario(&python, Some(version)));
    let failures: Vec<String> = futures::future::join_all(runs).await.into_iter().filter_map(Result::err).collect();
    assert!(failures.is_empty(), "{} of {} pinned runs failed:\n{}", failures.len(), PINNED.len(), failures.join("\n"));
}
