//! A package as `keyturn package` writes it, started by the Functions host stand-in as `func start` would start
//! it in that folder (no executable override, no app settings given: only what the package holds). What Core
//! Tools refuses, the stand-in refuses with Core Tools' message, so a package `func start` would not run fails
//! here too.
// The helpers below are test code too: a panic is a failed test with a line number.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use keyturn_e2e::{client, deliver, repo_root, workspace_binary};
use keyturn_local::functions_host::{FunctionApp, FunctionsHost};

const FUNCTION: &str = "test-event";

/// `keyturn package test-event` with the probe handler as its executable, into `out`; the package folder.
async fn package(out: &Path) -> PathBuf {
    let binary = format!("{FUNCTION}={}", env!("CARGO_BIN_EXE_probe-handler"));
    let output = tokio::process::Command::new(workspace_binary("keyturn"))
        .args(["package", FUNCTION, "--binary", &binary, "--out"])
        .arg(out)
        .current_dir(repo_root())
        .env("NO_COLOR", "1")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    out.join(FUNCTION)
}

/// Starts the stand-in on the package folder as `func start` would run it there.
async fn func_start(folder: &Path) -> Result<FunctionsHost, String> {
    let app = FunctionApp::load(folder).unwrap();
    FunctionsHost::builder(app).init_timeout(Duration::from_secs(20)).start().await.map_err(|error| error.to_string())
}

fn event() -> String {
    serde_json::json!([{
        "id": "package-func-start-1",
        "topic": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv-one",
        "subject": "db-password", "eventType": "Microsoft.KeyVault.SecretNewVersionCreated",
        "eventTime": "2026-01-01T00:00:00Z", "dataVersion": "1", "metadataVersion": "1",
        "data": {"Id": "https://kv-one.vault.azure.net/secrets/db-password/v1", "VaultName": "kv-one",
                 "ObjectType": "Secret", "ObjectName": "db-password", "Version": "v1", "NBF": null, "EXP": null}
    }])
    .to_string()
}

#[tokio::test]
async fn the_package_keyturn_writes_starts_and_handles_an_event() {
    let out = tempfile::tempdir().unwrap();
    let folder = package(out.path()).await;
    let host = func_start(&folder).await.unwrap();
    let answer = deliver(&client(), &host.webhook_url(FUNCTION), Some("Notification"), &event()).await;
    assert_eq!(answer.status, 202, "{answer:?}");
    host.shutdown().await;
}

#[tokio::test]
async fn a_package_without_local_settings_fails_with_core_tools_message() {
    let out = tempfile::tempdir().unwrap();
    let folder = package(out.path()).await;
    std::fs::remove_file(folder.join("local.settings.json")).unwrap();
    let error = func_start(&folder).await.map(|_| ()).unwrap_err();
    assert!(error.contains("Worker runtime cannot be 'None'. Please set a valid runtime."), "{error}");
}

#[tokio::test]
async fn a_package_without_the_worker_runtime_or_storage_fails_with_core_tools_message() {
    let out = tempfile::tempdir().unwrap();
    let folder = package(out.path()).await;
    let settings = folder.join("local.settings.json");
    let written: serde_json::Value = serde_json::from_slice(&std::fs::read(&settings).unwrap()).unwrap();

    let mut without_runtime = written.clone();
    without_runtime["Values"].as_object_mut().unwrap().remove("FUNCTIONS_WORKER_RUNTIME");
    std::fs::write(&settings, without_runtime.to_string()).unwrap();
    let error = func_start(&folder).await.map(|_| ()).unwrap_err();
    assert!(error.contains("Worker runtime cannot be 'None'"), "{error}");

    let mut without_storage = written;
    without_storage["Values"].as_object_mut().unwrap().remove("AzureWebJobsStorage");
    std::fs::write(&settings, without_storage.to_string()).unwrap();
    let error = func_start(&folder).await.map(|_| ()).unwrap_err();
    assert!(error.starts_with("Missing value for AzureWebJobsStorage in local.settings.json."), "{error}");
}

#[tokio::test]
async fn a_package_whose_handler_lost_its_executable_bit_fails_as_the_host_does() {
    let out = tempfile::tempdir().unwrap();
    let folder = package(out.path()).await;
    std::fs::set_permissions(folder.join("handler"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let error = func_start(&folder).await.map(|_| ()).unwrap_err();
    assert!(error.starts_with("An error occurred trying to start process"), "{error}");
    assert!(error.contains("Permission denied"), "{error}");
}
