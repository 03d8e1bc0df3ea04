//! The checks of a test run. Each returns a [`CheckResult`] (never an error: a failed check is a result),
//! and each result is logged as one line. No check reads a secret value it could show: the object is read
//! by its properties, listings carry names only, and the credential's token is dropped unseen.

use std::fmt;

use keyturn_deps::{Accepted, Deps};
use keyturn_events::ObjectRef;
use keyturn_notify::Action;
use keyturn_vault::Collection;

/// One check, by the name used in logs and in `fail:<check>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// A token for the vault from the configured credential.
    Identity,
    /// Listing the vault's secrets.
    VaultList,
    /// Reading the object the test names.
    VaultRead,
    /// Taking and releasing a lock in the lock storage.
    Lock,
    /// A test message through every configured channel.
    Channels,
}

impl Check {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::VaultList => "vault-list",
            Self::VaultRead => "vault-read",
            Self::Lock => "lock",
            Self::Channels => "channels",
        }
    }
}

/// What one check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    pub check: Check,
    pub ok: bool,
    pub detail: String,
}

impl fmt::Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let result = if self.ok { "ok" } else { "FAILED" };
        write!(f, "{} {result}: {}", self.check.as_str(), self.detail)
    }
}

fn result(check: Check, outcome: Result<String, String>) -> CheckResult {
    let (ok, detail) = match outcome {
        Ok(detail) => (true, detail),
        Err(detail) => (false, detail),
    };
    if ok {
        tracing::info!(check = check.as_str(), result = "ok", "{detail}");
    } else {
        tracing::warn!(check = check.as_str(), result = "failed", "{detail}");
    }
    CheckResult { check, ok, detail }
}

/// Every check, in order; each runs whatever the earlier ones found, so one run shows everything broken.
pub async fn run_all(deps: &Deps, accepted: &Accepted) -> Vec<CheckResult> {
    let vault = accepted.object.vault();
    vec![
        result(Check::Identity, identity(deps, vault).await),
        result(Check::VaultList, list(deps, vault).await),
        result(Check::VaultRead, read(deps, accepted).await),
        result(Check::Lock, lock(deps, &accepted.object).await),
        result(Check::Channels, channels(deps, accepted).await),
    ]
}

/// The token scope of a vault: Key Vault's audience in the vault's cloud (public for loopback emulators).
pub fn vault_scope(vault_host: &str) -> &'static str {
    let host = vault_host.to_ascii_lowercase();
    if host.ends_with(".vault.azure.cn") {
        "https://vault.azure.cn/.default"
    } else if host.ends_with(".vault.usgovcloudapi.net") {
        "https://vault.usgovcloudapi.net/.default"
    } else {
        "https://vault.azure.net/.default"
    }
}

async fn identity(deps: &Deps, vault: &str) -> Result<String, String> {
    let host =
        deps.settings().vaults.get(vault).and_then(|e| e.url().host_str().map(str::to_owned)).unwrap_or_default();
    let scope = vault_scope(&host);
    let credential = deps.settings().credential.kind();
    match deps.credential().get_token(&[scope], None).await {
        // The token itself is never looked at, only that one came.
        Ok(_) => Ok(format!("a token for {scope} from the {credential} credential")),
        Err(error) => Err(format!("no token for {scope} from the {credential} credential: {error}")),
    }
}

async fn list(deps: &Deps, vault: &str) -> Result<String, String> {
    match deps.inventory().list(vault, Collection::Secrets).await {
        Ok(items) => Ok(format!("{} secret(s) listed in {vault}", items.len())),
        Err(error) => Err(error.to_string()),
    }
}

async fn read(deps: &Deps, accepted: &Accepted) -> Result<String, String> {
    let object = &accepted.object;
    let (vault, name, version) = (object.vault(), object.name(), object.version());
    match deps.versions().version_properties(vault, accepted.collection, name, version).await {
        Ok(properties) => Ok(format!(
            "read {} version {} ({})",
            object.described(),
            properties.version,
            if properties.enabled { "enabled" } else { "disabled" }
        )),
        Err(error) => Err(error.to_string()),
    }
}

async fn lock(deps: &Deps, object: &ObjectRef) -> Result<String, String> {
    // A key of its own: a test never holds the lock a real rotation of the object needs.
    let key = format!("keyturn-test-event/{}/{}", object.vault(), object.name()).to_ascii_lowercase();
    let guard = deps.lock().acquire(&key).await.map_err(|e| e.to_string())?;
    guard.release().await.map_err(|e| format!("taken, but releasing failed: {e}"))?;
    Ok(format!("took and released '{key}'"))
}

async fn channels(deps: &Deps, accepted: &Accepted) -> Result<String, String> {
    let notifier = deps.notifier();
    if notifier.is_empty() {
        return Ok("no channel configured (KEYTURN_NOTIFY)".to_owned());
    }
    let summary = format!(
        "This is a keyturn test message (event {}): the path from Event Grid to keyturn and on to this channel works. Nothing needs doing.",
        accepted.event_id
    );
    let notification = accepted.notification(Action::Informed { summary });
    match notifier.send(&notification).await {
        Ok(delivery) => Ok(format!(
            "{} channel(s) accepted the test message{}",
            delivery.sent.len() + delivery.already_accepted.len(),
            if delivery.already_accepted.is_empty() {
                String::new()
            } else {
                format!(" ({} on an earlier attempt)", delivery.already_accepted.len())
            }
        )),
        Err(error) => Err(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scope_follows_the_vaults_cloud() {
        assert_eq!(vault_scope("contoso.vault.azure.net"), "https://vault.azure.net/.default");
        assert_eq!(vault_scope("contoso.VAULT.azure.cn"), "https://vault.azure.cn/.default");
        assert_eq!(vault_scope("contoso.vault.usgovcloudapi.net"), "https://vault.usgovcloudapi.net/.default");
        assert_eq!(vault_scope("127.0.0.1"), "https://vault.azure.net/.default");
    }

    #[test]
    fn a_result_line_names_the_check_and_what_it_found() {
        let ok = CheckResult { check: Check::Lock, ok: true, detail: "took and released 'x'".into() };
        assert_eq!(ok.to_string(), "lock ok: took and released 'x'");
        let failed = CheckResult { check: Check::Channels, ok: false, detail: "1 of 2".into() };
        assert_eq!(failed.to_string(), "channels FAILED: 1 of 2");
    }
}
