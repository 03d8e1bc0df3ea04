//! What the provider tests share: a handler-like child process, events, the crash wrapper, PostgreSQL access.
//!
//! The managed identity credential reads IDENTITY_ENDPOINT/IDENTITY_HEADER from the real process environment,
//! and the workspace forbids the `unsafe` that `std::env::set_var` needs. So each test re-runs its own test
//! binary as a child (that one test, `KT_SCENARIO` naming what to do) with the environment a handler process
//! gets; the parent owns the Key Vault emulator (and its identity endpoint). The child builds everything the
//! way a handler does: `keyturn_config::Settings` from the environment, the SDK-backed vault, the providers.

// Helpers outside #[test] functions panic on purpose: a failed setup is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use keyturn_events::{ObjectKind, ObjectRef};
use keyturn_local::keyvault::{KeyVaultEmulator, RunningEmulator};
use keyturn_rotation::Request;
use keyturn_rotation::provider::{Pending, Provider, ProviderFuture, RotationContext};
use keyturn_vault::model::{NewSecretVersion, SecretProperties, Tags};
use tokio::sync::Notify;

pub const SCENARIO: &str = "KT_SCENARIO";
pub const VAULT: &str = "kv-prov";

/// What a near-expiry event for a secret version asks the engine to do.
pub fn event(name: &str, version: &str) -> Request {
    Request {
        object: ObjectRef::new(VAULT, ObjectKind::Secret, name, version).unwrap(),
        event_id: format!("evt-{name}-{version}"),
    }
}

pub fn tags(pairs: &[(&str, &str)]) -> Tags {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

pub fn new_secret(value: &str, tags: Tags) -> NewSecretVersion {
    NewSecretVersion {
        value: keyturn_config::SecretString::new(value.to_owned()),
        content_type: None,
        tags,
        not_before: None,
        expires: None,
    }
}

/// A required test variable; missing means the test was not started by the test command.
pub fn required_env(name: &str, what: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| panic!("{name} is not set: run ./scripts/test, which starts {what}"))
}

/// Where the test command's database server listens, and its admin login (each test adds its own client on top).
pub struct ServerEnv {
    pub host: String,
    pub port: u16,
    pub admin_user: String,
    pub admin_password: String,
    pub ca_file: String,
}

impl ServerEnv {
    /// From `<prefix>_HOST`, `_PORT`, `_ADMIN_USER`, `_ADMIN_PASSWORD` and `_CA_FILE` (`what`: the server, for the
    /// failure message).
    pub fn from_env(prefix: &str, what: &str) -> Self {
        let required = |name: &str| required_env(&format!("{prefix}_{name}"), what);
        Self {
            host: required("HOST"),
            port: required("PORT").parse().unwrap(),
            admin_user: required("ADMIN_USER"),
            admin_password: required("ADMIN_PASSWORD"),
            ca_file: required("CA_FILE"),
        }
    }
}

/// The parent's half: a Key Vault emulator and a child running `scenario` of `test` with a handler's
/// environment (plus `extra`); `ca_files` are bundled with the emulator's CA into KEYTURN_CA_FILE.
pub struct Parent {
    pub kv: RunningEmulator,
    dir: tempfile::TempDir,
}

impl Parent {
    pub async fn start() -> Self {
        let kv = KeyVaultEmulator::builder().vault(VAULT).no_throttling().start().await.unwrap();
        // A broad client of the emulator as the system-assigned identity (strict RBAC by default): its role, visibly.
        kv.grant_system_identity("Key Vault Administrator").unwrap();
        Self { kv, dir: tempfile::tempdir().unwrap() }
    }

    pub async fn run_child(&self, test: &str, scenario: &str, ca_pems: &[String], extra: &[(&str, String)]) {
        let mut bundle = self.kv.ca_pem().to_owned();
        for pem in ca_pems {
            bundle.push('\n');
            bundle.push_str(pem);
        }
        let ca_file = self.dir.path().join(format!("ca-{scenario}.pem"));
        std::fs::write(&ca_file, bundle).unwrap();
        let vault_url = self.kv.vault_url(VAULT).unwrap();
        let child = tokio::process::Command::new(std::env::current_exe().unwrap())
            .args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env(SCENARIO, scenario)
            .envs(self.kv.identity_env().vars())
            .env("KEYTURN_VAULTS", format!("{VAULT}={vault_url}"))
            .env("KEYTURN_CREDENTIAL", "managed-identity")
            .env("KEYTURN_CA_FILE", &ca_file)
            .env("KEYTURN_RETRY_MAX", "2")
            .env("KEYTURN_RETRY_DELAY_MS", "50")
            .env("KEYTURN_RETRY_MAX_DELAY_MS", "200")
            .env("KEYTURN_HTTP_TIMEOUT_SECS", "20")
            .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(Duration::from_secs(240), child)
            .await
            .expect("the child finished within 240 s")
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("1 passed"),
            "scenario {scenario} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    pub async fn stop(self) {
        self.kv.shutdown().await;
    }
}

/// The child's half: settings from the environment, the SDK-backed vault.
pub fn child_settings(extra: &[(&str, String)]) -> keyturn_config::Settings {
    let extra: Vec<(String, String)> = extra.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    keyturn_config::Settings::from_lookup(move |name| {
        extra.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).or_else(|| std::env::var(name).ok())
    })
    .unwrap()
}

/// The vault clients and every provider, sharing one credential and transport, as the handler builds them.
pub fn vault_and_providers(
    settings: &keyturn_config::Settings,
) -> (Arc<keyturn_vault::AzureKeyVault>, keyturn_rotation::Providers) {
    let options = keyturn_vault::http::client_options(&settings.retry, settings.ca_file.as_deref()).unwrap();
    let credential = keyturn_vault::credential::build_credential(&settings.credential, options.clone()).unwrap();
    let vault =
        Arc::new(keyturn_vault::AzureKeyVault::new(&settings.vaults, credential.clone(), options.clone()).unwrap());
    let providers = keyturn_rotation::Providers::from_settings(settings, vault.clone(), credential, options).unwrap();
    (vault, providers)
}

/// Where a crash is simulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Create,
    Set,
    Test,
    /// After the engine's `set_secret`, before the provider's finish.
    Promote,
}

/// A provider that behaves like `inner` until `step` has completed, then never returns: the test drops the
/// rotation future at that point, which is what a killed handler process looks like to the vault and to
/// the credential's owner (nothing after the step happens; nothing is rolled back).
#[derive(Debug)]
pub struct CrashAfter {
    pub inner: Arc<dyn Provider>,
    pub step: Step,
    pub reached: Arc<Notify>,
}

impl CrashAfter {
    async fn crash_if(&self, step: Step) {
        if self.step == step {
            self.reached.notify_one();
            futures::future::pending::<()>().await;
        }
    }
}

impl Provider for CrashAfter {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn create_pending<'a>(&'a self, ctx: &'a RotationContext<'a>) -> ProviderFuture<'a, Pending> {
        Box::pin(async move {
            let pending = self.inner.create_pending(ctx).await?;
            self.crash_if(Step::Create).await;
            Ok(pending)
        })
    }

    fn set_pending<'a>(&'a self, ctx: &'a RotationContext<'a>, pending: &'a Pending) -> ProviderFuture<'a, ()> {
        Box::pin(async move {
            self.inner.set_pending(ctx, pending).await?;
            self.crash_if(Step::Set).await;
            Ok(())
        })
    }

    fn test_pending<'a>(&'a self, ctx: &'a RotationContext<'a>, pending: &'a Pending) -> ProviderFuture<'a, ()> {
        Box::pin(async move {
            self.inner.test_pending(ctx, pending).await?;
            self.crash_if(Step::Test).await;
            Ok(())
        })
    }

    fn finish<'a>(&'a self, ctx: &'a RotationContext<'a>, promoted: &'a SecretProperties) -> ProviderFuture<'a, ()> {
        Box::pin(async move {
            self.crash_if(Step::Promote).await;
            self.inner.finish(ctx, promoted).await
        })
    }
}

/// Rotates `event` with `provider` wrapped to crash after `step` (an in-process lock, only that provider), and
/// drops the rotation there: what a handler killed right after that step leaves behind.
pub async fn rotate_until_crash(
    vault: Arc<dyn keyturn_vault::KeyVault>,
    provider: Arc<dyn Provider>,
    step: Step,
    event: &Request,
) {
    let reached = Arc::new(Notify::new());
    let crash = CrashAfter { inner: provider, step, reached: reached.clone() };
    let engine = keyturn_rotation::Engine::new(
        vault,
        Arc::new(keyturn_rotation::InProcessLock::default()),
        keyturn_rotation::Providers::default().with(Arc::new(crash)),
    );
    run_until_crash(engine.rotate(event), &reached).await;
}

/// Runs `rotation` until the crash wrapper signals its step, then drops it mid-flight.
pub async fn run_until_crash<F: std::future::Future>(rotation: F, reached: &Notify) {
    tokio::select! {
        result = rotation => panic!("the rotation finished instead of crashing: {:?}", std::any::type_name_of_val(&result)),
        _ = reached.notified() => {}
    }
}
