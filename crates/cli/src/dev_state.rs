//! The file `keyturn dev` writes while it runs, so `keyturn send --to dev` (and scripts) can find the
//! stack: its vaults, management API and each handler's webhook. Written atomically at start, removed at
//! stop (only by the process that wrote it, so a second `dev` does not lose its own file to the first).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::exit::CommandFailure;

/// What a running `keyturn dev` offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DevState {
    pub pid: u32,
    pub management_url: String,
    /// Vault name → `https://127.0.0.1:<port>`.
    pub vaults: BTreeMap<String, String>,
    pub ca_file: String,
    pub identity_endpoint: String,
    /// Function name → the base URL of the Functions host stand-in serving it (`http://127.0.0.1:<port>`).
    pub functions: BTreeMap<String, String>,
    /// Function name → the client id of its own managed identity (its `AZURE_CLIENT_ID`): the stack enforces
    /// RBAC, so a `func start` run of a handler needs this to hold that handler's grants (the system identity
    /// holds none). Absent in files an older `keyturn dev` wrote.
    #[serde(default)]
    pub client_ids: BTreeMap<String, String>,
}

/// `<temp dir>/keyturn-dev.json` unless `--state-file` says otherwise.
pub fn default_path() -> PathBuf {
    std::env::temp_dir().join("keyturn-dev.json")
}

impl DevState {
    /// Writes the file atomically (a reader never sees half of it).
    pub fn write(&self, path: &Path) -> Result<(), CommandFailure> {
        let text = serde_json::to_vec_pretty(self)
            .map_err(|error| CommandFailure::failed(format!("cannot encode the dev state: {error}")))?;
        let partial = path.with_extension(format!("{}.partial", self.pid));
        std::fs::write(&partial, text)
            .and_then(|()| std::fs::rename(&partial, path))
            .map_err(|error| CommandFailure::failed(format!("cannot write {}: {error}", path.display())))
    }

    /// Reads the file a running `keyturn dev` wrote.
    pub fn read(path: &Path) -> Result<Self, CommandFailure> {
        let text = std::fs::read(path).map_err(|error| {
            CommandFailure::setup(format!("no running `keyturn dev` found ({}: {error})", path.display()))
                .hint("start one with `keyturn dev` in another terminal, or pass --to <url>")
        })?;
        serde_json::from_slice(&text).map_err(|error| {
            CommandFailure::setup(format!("{} is not a keyturn dev state file: {error}", path.display()))
                .hint("restart `keyturn dev`, which rewrites it")
        })
    }

    /// Removes the file if it is still this process's.
    pub fn remove_if_ours(path: &Path, pid: u32) {
        if Self::read(path).is_ok_and(|state| state.pid == pid) {
            // Best effort: a leftover file names ports nothing listens on, and send reports that clearly.
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(pid: u32) -> DevState {
        DevState {
            pid,
            management_url: "http://127.0.0.1:1".into(),
            vaults: BTreeMap::from([("kv-one".into(), "https://127.0.0.1:2".into())]),
            ca_file: "/tmp/ca.pem".into(),
            identity_endpoint: "http://127.0.0.1:3/msi/token".into(),
            functions: BTreeMap::from([("near-expiry".into(), "http://127.0.0.1:4".into())]),
            client_ids: BTreeMap::from([("near-expiry".into(), "0b8d6f3e-0000-4000-8000-000000000001".into())]),
        }
    }

    #[test]
    fn the_file_round_trips_and_only_its_writer_removes_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dev.json");
        state(7).write(&path).unwrap();
        assert_eq!(DevState::read(&path).unwrap(), state(7));
        DevState::remove_if_ours(&path, 8);
        assert!(path.is_file(), "another process's file was removed");
        DevState::remove_if_ours(&path, 7);
        assert!(!path.exists());
        let missing = DevState::read(&path).unwrap_err();
        assert!(missing.hint.unwrap_or_default().contains("keyturn dev"));
    }
}
