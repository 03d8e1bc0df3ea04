//! What the emulator test binaries share: re-running one test as a child process.
//!
//! The managed identity credential reads IDENTITY_ENDPOINT from the real process environment, which a test
//! must not change under its siblings; so each test starts the emulator, then re-runs itself with that
//! environment set, and the child runs the actual scenario.

use std::time::Duration;

use keyturn_local::keyvault::RunningEmulator;

/// Runs `test` (this binary's test of that name) as a child process pointed at `vault` on `kv`, with
/// `extra` set too, and fails unless the child passed. `what` names the scenario in the failure message.
pub(crate) async fn run_child(test: &str, kv: &RunningEmulator, vault: &str, extra: &[(&str, String)], what: &str) {
    let child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .envs(extra.iter().map(|(k, v)| (k, v)))
        .envs(kv.identity_env().vars())
        .env("KEYTURN_VAULTS", format!("{vault}={}", kv.vault_url(vault).unwrap()))
        .env("KEYTURN_CREDENTIAL", "managed-identity")
        .env("KEYTURN_CA_FILE", kv.ca_pem_path())
        .kill_on_drop(true)
        .output();
    let output =
        tokio::time::timeout(Duration::from_secs(120), child).await.expect("the child finished in 120 s").unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{what} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
