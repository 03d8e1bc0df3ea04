//! The vaults' contents: versioned secrets, keys and certificates with Key Vault's soft-delete rules, a change
//! feed of new versions, and optional persistence to a JSON file.
//!
//! One [`VaultStore`] holds every vault of a running emulator. The HTTP layer and the management API call the
//! same methods, so seeding a vault from a test and writing to it through the SDK behave identically (both
//! publish a [`VaultChange`]). Times are epoch seconds internally, as on the wire, read from the shared
//! [`Clock`].

use super::crypto::{self, KeyMaterial};
use super::error::ServiceError;
use crate::clock::Clock;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use tokio::sync::{Notify, broadcast};

/// Key Vault's tag limit per object.
pub const MAX_TAGS: usize = 15;
/// Soft-delete retention: how long a deleted object stays recoverable (and its name blocked).
pub const RECOVERABLE_DAYS: i64 = 90;
/// The recovery level a vault with soft delete (and no purge protection) reports.
pub const RECOVERY_LEVEL: &str = "Recoverable+Purgeable";
/// Largest secret value the service accepts, in bytes.
pub const MAX_SECRET_BYTES: usize = 25 * 1024;

/// The three kinds of vault object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StoredKind {
    Secret,
    Key,
    Certificate,
}

impl StoredKind {
    /// `Secret`, `Key`, `Certificate`: as in error codes and Event Grid's `ObjectType`.
    pub fn title(self) -> &'static str {
        match self {
            Self::Secret => "Secret",
            Self::Key => "Key",
            Self::Certificate => "Certificate",
        }
    }

    /// `secret`, `key`, `certificate`: as in error messages.
    pub fn lower(self) -> &'static str {
        match self {
            Self::Secret => "secret",
            Self::Key => "key",
            Self::Certificate => "certificate",
        }
    }

    /// The URL collection: `secrets`, `keys`, `certificates`.
    pub fn collection(self) -> &'static str {
        match self {
            Self::Secret => "secrets",
            Self::Key => "keys",
            Self::Certificate => "certificates",
        }
    }
}

/// One new version of an object, as published on the change feed (what Event Grid's
/// `*NewVersionCreated` events carry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultChange {
    pub vault: String,
    pub kind: StoredKind,
    pub name: String,
    /// 32 lowercase hex characters.
    pub version: String,
    /// The versioned id URL, e.g. `https://127.0.0.1:4433/secrets/db/0123...`.
    pub id: String,
    pub not_before: Option<DateTime<Utc>>,
    pub expires: Option<DateTime<Utc>>,
    /// True for the key and secret a certificate creates behind itself.
    pub managed: bool,
}

/// The current (latest) version of a live object, for expiry scanning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentObject {
    pub vault: String,
    pub kind: StoredKind,
    pub name: String,
    pub version: String,
    pub id: String,
    pub enabled: bool,
    pub not_before: Option<DateTime<Utc>>,
    pub expires: Option<DateTime<Utc>>,
    pub managed: bool,
}

/// A version's attributes, epoch seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attributes {
    pub enabled: bool,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
    pub created: i64,
    pub updated: i64,
}

/// Attribute values supplied by a caller: `None` leaves a value as it is (or at its default on create).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttributeInput {
    pub enabled: Option<bool>,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
}

/// One version of an object.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Version<D> {
    pub version: String,
    pub attributes: Attributes,
    pub tags: BTreeMap<String, String>,
    pub data: D,
}

/// A named object with its versions in creation order (the last one is current).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Object<D, X> {
    pub name: String,
    pub versions: Vec<Version<D>>,
    pub extra: X,
}

impl<D, X> Object<D, X> {
    /// The current version. Objects are created with their first version and versions are never removed
    /// one by one, so an object always has one.
    pub fn latest(&self) -> Option<&Version<D>> {
        self.versions.last()
    }
}

/// A soft-deleted object.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deleted<D, X> {
    pub object: Object<D, X>,
    pub deleted_date: i64,
    pub scheduled_purge_date: i64,
}

/// Live and deleted objects of one kind, keyed by lowercase name (Key Vault names are case-insensitive).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound(serialize = "D: Serialize, X: Serialize", deserialize = "D: Deserialize<'de>, X: Deserialize<'de>"))]
pub struct Objects<D, X> {
    pub live: BTreeMap<String, Object<D, X>>,
    pub deleted: BTreeMap<String, Deleted<D, X>>,
}

impl<D, X> Default for Objects<D, X> {
    fn default() -> Self {
        Self { live: BTreeMap::new(), deleted: BTreeMap::new() }
    }
}

impl<D: Clone, X: Default + Clone> Objects<D, X> {
    /// Refuses a create when the name is held by a soft-deleted object.
    pub fn check_creatable(&self, kind: StoredKind, name: &str) -> Result<(), ServiceError> {
        if self.deleted.contains_key(&name.to_ascii_lowercase()) {
            return Err(ServiceError::NameInDeletedState { kind, name: name.to_string() });
        }
        Ok(())
    }

    /// Appends a version, creating the object if needed.
    pub fn push(&mut self, name: &str, version: Version<D>) -> &mut Object<D, X> {
        let object = self.live.entry(name.to_ascii_lowercase()).or_insert_with(|| Object {
            name: name.to_string(),
            versions: Vec::new(),
            extra: X::default(),
        });
        object.versions.push(version);
        object
    }

    pub fn object(&self, kind: StoredKind, name: &str) -> Result<&Object<D, X>, ServiceError> {
        self.live.get(&name.to_ascii_lowercase()).ok_or_else(|| ServiceError::NotFound {
            kind,
            name: name.to_string(),
            version: None,
        })
    }

    pub fn object_mut(&mut self, kind: StoredKind, name: &str) -> Result<&mut Object<D, X>, ServiceError> {
        self.live.get_mut(&name.to_ascii_lowercase()).ok_or_else(|| ServiceError::NotFound {
            kind,
            name: name.to_string(),
            version: None,
        })
    }

    /// The named version, or the latest when `version` is `None`.
    pub fn version(
        &self,
        kind: StoredKind,
        name: &str,
        version: Option<&str>,
    ) -> Result<(&Object<D, X>, &Version<D>), ServiceError> {
        let object = self.object(kind, name)?;
        let found = match version {
            None => object.latest(),
            Some(v) => object.versions.iter().find(|x| x.version.eq_ignore_ascii_case(v)),
        };
        found.map(|found| (object, found)).ok_or_else(|| ServiceError::NotFound {
            kind,
            name: name.to_string(),
            version: version.map(str::to_string),
        })
    }

    pub fn version_mut(
        &mut self,
        kind: StoredKind,
        name: &str,
        version: Option<&str>,
    ) -> Result<&mut Version<D>, ServiceError> {
        let object = self.object_mut(kind, name)?;
        let found = match version {
            None => object.versions.last_mut(),
            Some(v) => object.versions.iter_mut().find(|x| x.version.eq_ignore_ascii_case(v)),
        };
        found.ok_or_else(|| ServiceError::NotFound {
            kind,
            name: name.to_string(),
            version: version.map(str::to_string),
        })
    }

    /// Soft-deletes an object.
    pub fn delete(&mut self, kind: StoredKind, name: &str, now: i64) -> Result<Deleted<D, X>, ServiceError> {
        let key = name.to_ascii_lowercase();
        let object = self.live.remove(&key).ok_or_else(|| ServiceError::NotFound {
            kind,
            name: name.to_string(),
            version: None,
        })?;
        let deleted = Deleted { object, deleted_date: now, scheduled_purge_date: now + RECOVERABLE_DAYS * 86_400 };
        self.deleted.insert(key, deleted.clone());
        Ok(deleted)
    }

    pub fn deleted(&self, kind: StoredKind, name: &str) -> Result<&Deleted<D, X>, ServiceError> {
        self.deleted
            .get(&name.to_ascii_lowercase())
            .ok_or_else(|| ServiceError::DeletedNotFound { kind, name: name.to_string() })
    }

    /// Moves a deleted object back to live.
    pub fn recover(&mut self, kind: StoredKind, name: &str) -> Result<&Object<D, X>, ServiceError> {
        let key = name.to_ascii_lowercase();
        if self.live.contains_key(&key) {
            return Err(ServiceError::AlreadyExists { kind, name: name.to_string() });
        }
        let deleted =
            self.deleted.remove(&key).ok_or_else(|| ServiceError::DeletedNotFound { kind, name: name.to_string() })?;
        Ok(self.live.entry(key).or_insert(deleted.object))
    }

    /// Removes a deleted object for good.
    pub fn purge(&mut self, kind: StoredKind, name: &str) -> Result<(), ServiceError> {
        self.deleted
            .remove(&name.to_ascii_lowercase())
            .map(|_| ())
            .ok_or_else(|| ServiceError::DeletedNotFound { kind, name: name.to_string() })
    }

    /// Purges deleted objects whose retention has passed (the service does this on its own schedule).
    pub fn purge_due(&mut self, now: i64) {
        self.deleted.retain(|_, d| d.scheduled_purge_date > now);
    }
}

/// A secret version's payload. Its Debug output never shows the value.
#[derive(Clone, Serialize, Deserialize)]
pub struct SecretData {
    pub value: String,
    pub content_type: Option<String>,
    /// Backs a certificate (then `kid` points at the certificate's key of the same name and version).
    pub managed: bool,
}

impl std::fmt::Debug for SecretData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretData")
            .field("value", &"****")
            .field("content_type", &self.content_type)
            .field("managed", &self.managed)
            .finish()
    }
}

/// A key version's payload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyData {
    /// `RSA`, `RSA-HSM`, `EC` or `EC-HSM`, as requested.
    pub kty: String,
    pub key_ops: Vec<String>,
    pub material: KeyMaterial,
    pub managed: bool,
}

/// A certificate version's payload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CertData {
    #[serde(with = "crypto::b64")]
    pub cer: Vec<u8>,
    #[serde(with = "crypto::b64")]
    pub x5t: Vec<u8>,
}

/// Per-key state beyond its versions.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KeyExtra {
    pub rotation_policy: Option<super::keys::RotationPolicy>,
}

/// Per-certificate state beyond its versions.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CertExtra {
    pub policy: super::certs::CertificatePolicy,
    pub operation: Option<super::certs::PendingCertificate>,
}

/// Everything one vault holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VaultState {
    pub secrets: Objects<SecretData, ()>,
    pub keys: Objects<KeyData, KeyExtra>,
    pub certificates: Objects<CertData, CertExtra>,
}

/// One vault: its name, canonical URL and contents.
#[derive(Debug)]
pub struct Vault {
    pub name: String,
    /// `https://127.0.0.1:<port>` (no trailing slash).
    pub base_url: String,
    // std RwLock: critical sections are short, synchronous, and reads dominate (the benchmark is reads).
    state: RwLock<VaultState>,
}

impl Vault {
    pub fn read(&self) -> RwLockReadGuard<'_, VaultState> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, VaultState> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// `https://host/<collection>/<name>/<version>`
    pub fn versioned_id(&self, kind: StoredKind, name: &str, version: &str) -> String {
        format!("{}/{}/{name}/{version}", self.base_url, kind.collection())
    }
}

/// Failures loading or saving the persistence file.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("reading the vault state file {path} failed: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the vault state file {path} is not valid: {source}")]
    Parse { path: PathBuf, source: serde_json::Error },
    #[error("writing the vault state file {path} failed: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("serialising the vault state failed: {0}")]
    Serialise(serde_json::Error),
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    format: u32,
    vaults: BTreeMap<String, VaultState>,
}

const SNAPSHOT_FORMAT: u32 = 1;

/// Reads a persistence file written by [`VaultStore::save`]; a missing file is an empty store.
pub fn load_snapshot(path: &Path) -> Result<BTreeMap<String, VaultState>, PersistError> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(source) => {
            return Err(PersistError::Read { path: path.to_path_buf(), source });
        }
    };
    let snapshot: Snapshot =
        serde_json::from_slice(&text).map_err(|source| PersistError::Parse { path: path.to_path_buf(), source })?;
    Ok(snapshot.vaults)
}

/// Every vault of one emulator, the shared clock and the change feed. Cheap to clone.
#[derive(Debug, Clone)]
pub struct VaultStore {
    inner: Arc<StoreInner>,
}

#[derive(Debug)]
struct StoreInner {
    vaults: BTreeMap<String, Arc<Vault>>,
    clock: Clock,
    changes: broadcast::Sender<VaultChange>,
    persist_to: Option<PathBuf>,
    dirty: Notify,
    certificate_delay_secs: i64,
    backup_key: super::backup::BackupKey,
}

impl VaultStore {
    /// A store over `vaults` (name, canonical base URL, initial state). Certificate operations complete
    /// `certificate_delay` after they start, on `clock`.
    pub fn new(
        vaults: Vec<(String, String, VaultState)>,
        clock: Clock,
        persist_to: Option<PathBuf>,
        certificate_delay: std::time::Duration,
    ) -> Self {
        let (changes, _) = broadcast::channel(4096);
        let vaults = vaults
            .into_iter()
            .map(|(name, base_url, state)| {
                let vault = Arc::new(Vault { name: name.clone(), base_url, state: RwLock::new(state) });
                (name, vault)
            })
            .collect();
        Self {
            inner: Arc::new(StoreInner {
                vaults,
                clock,
                changes,
                persist_to,
                dirty: Notify::new(),
                certificate_delay_secs: i64::try_from(certificate_delay.as_secs()).unwrap_or(i64::MAX),
                backup_key: super::backup::BackupKey::generate(),
            }),
        }
    }

    /// The shared clock.
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// How long certificate issuance takes, in clock seconds.
    pub(crate) fn certificate_delay_secs(&self) -> i64 {
        self.inner.certificate_delay_secs
    }

    /// The key backups of every vault in this store are sealed with.
    pub(crate) fn backup_key(&self) -> &super::backup::BackupKey {
        &self.inner.backup_key
    }

    /// The clock's reading in epoch seconds.
    pub fn now(&self) -> i64 {
        self.inner.clock.now().timestamp()
    }

    /// The vault named `name`.
    pub fn vault(&self, name: &str) -> Result<&Arc<Vault>, ServiceError> {
        self.inner.vaults.get(name).ok_or_else(|| ServiceError::NoSuchVault(name.to_string()))
    }

    /// Names of every vault.
    pub fn vault_names(&self) -> impl Iterator<Item = &str> {
        self.inner.vaults.keys().map(String::as_str)
    }

    /// A receiver of every new version from now on (secrets, keys, certificates, in every vault).
    ///
    /// A receiver that falls more than 4,096 changes behind gets `RecvError::Lagged`; scan
    /// [`VaultStore::current_objects`] to resynchronise.
    pub fn subscribe(&self) -> broadcast::Receiver<VaultChange> {
        self.inner.changes.subscribe()
    }

    /// The current version of every live object in every vault, with its nbf/exp, for expiry scanning.
    pub fn current_objects(&self) -> Vec<CurrentObject> {
        let mut out = Vec::new();
        for vault in self.inner.vaults.values() {
            self.settle_certificates(vault);
            let state = vault.read();
            let mut add = |kind: StoredKind, name: &str, version: &str, attrs: &Attributes, managed: bool| {
                out.push(CurrentObject {
                    vault: vault.name.clone(),
                    kind,
                    name: name.to_string(),
                    version: version.to_string(),
                    id: vault.versioned_id(kind, name, version),
                    enabled: attrs.enabled,
                    not_before: attrs.nbf.and_then(|t| DateTime::from_timestamp(t, 0)),
                    expires: attrs.exp.and_then(|t| DateTime::from_timestamp(t, 0)),
                    managed,
                });
            };
            for object in state.secrets.live.values() {
                if let Some(v) = object.latest() {
                    add(StoredKind::Secret, &object.name, &v.version, &v.attributes, v.data.managed);
                }
            }
            for object in state.keys.live.values() {
                if let Some(v) = object.latest() {
                    add(StoredKind::Key, &object.name, &v.version, &v.attributes, v.data.managed);
                }
            }
            for object in state.certificates.live.values() {
                if let Some(v) = object.latest() {
                    add(StoredKind::Certificate, &object.name, &v.version, &v.attributes, false);
                }
            }
        }
        out
    }

    /// Publishes a new version on the change feed and schedules a save.
    pub(crate) fn published(
        &self,
        vault: &Vault,
        kind: StoredKind,
        name: &str,
        version: &str,
        attrs: &Attributes,
        managed: bool,
    ) {
        let change = VaultChange {
            vault: vault.name.clone(),
            kind,
            name: name.to_string(),
            version: version.to_string(),
            id: vault.versioned_id(kind, name, version),
            not_before: attrs.nbf.and_then(|t| DateTime::from_timestamp(t, 0)),
            expires: attrs.exp.and_then(|t| DateTime::from_timestamp(t, 0)),
            managed,
        };
        tracing::debug!(vault = %change.vault, kind = kind.lower(), name = %change.name, version = %change.version, "new version");
        // No subscriber is fine: the feed is for whoever listens.
        let _ = self.inner.changes.send(change);
        self.mark_dirty();
    }

    /// Schedules a save of the persistence file (no-op without one).
    pub(crate) fn mark_dirty(&self) {
        if self.inner.persist_to.is_some() {
            self.inner.dirty.notify_one();
        }
    }

    /// Waits until a change needs saving.
    pub(crate) async fn dirtied(&self) {
        self.inner.dirty.notified().await;
    }

    /// Writes every vault's state to the persistence file (atomically: temp file, then rename).
    pub fn save(&self) -> Result<(), PersistError> {
        let Some(path) = &self.inner.persist_to else {
            return Ok(());
        };
        let vaults = self.inner.vaults.iter().map(|(name, vault)| (name.clone(), vault.read().clone())).collect();
        let snapshot = Snapshot { format: SNAPSHOT_FORMAT, vaults };
        let bytes = serde_json::to_vec(&snapshot).map_err(PersistError::Serialise)?;
        let tmp = path.with_extension("tmp");
        let write = |p: &Path| std::fs::write(p, &bytes);
        write(&tmp)
            .and_then(|_| std::fs::rename(&tmp, path))
            .map_err(|source| PersistError::Write { path: path.clone(), source })
    }

    /// Builds attributes for a new version at the clock's current time.
    pub fn new_attributes(&self, input: &AttributeInput) -> Attributes {
        let now = self.now();
        Attributes {
            enabled: input.enabled.unwrap_or(true),
            nbf: input.nbf,
            exp: input.exp,
            created: now,
            updated: now,
        }
    }
}

/// Applies caller-supplied attribute changes and stamps `updated`.
pub fn apply_attributes(attrs: &mut Attributes, input: &AttributeInput, now: i64) {
    if let Some(enabled) = input.enabled {
        attrs.enabled = enabled;
    }
    if input.nbf.is_some() {
        attrs.nbf = input.nbf;
    }
    if input.exp.is_some() {
        attrs.exp = input.exp;
    }
    attrs.updated = now;
}

/// Validates an object name as the service does: 1-127 characters of `0-9a-zA-Z-`.
pub fn check_name(name: &str) -> Result<(), ServiceError> {
    let ok = !name.is_empty() && name.len() <= 127 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ServiceError::BadParameter(format!(
            "The request URI contains an invalid name: {name}. Names must be 1-127 characters of 0-9, a-z, A-Z and -."
        )))
    }
}

/// Validates tags against the service's limits.
pub fn check_tags(tags: &BTreeMap<String, String>) -> Result<(), ServiceError> {
    if tags.len() > MAX_TAGS {
        return Err(ServiceError::BadParameter(format!(
            "The number of tags ({}) exceeds the maximum of {MAX_TAGS}.",
            tags.len()
        )));
    }
    for (name, value) in tags {
        if name.is_empty() || name.len() > 512 || value.len() > 256 {
            return Err(ServiceError::BadParameter(format!(
                "Tag '{name}' is invalid: tag names must be 1-512 characters and values at most 256 characters."
            )));
        }
    }
    Ok(())
}

/// A fresh version id: 32 lowercase hex characters, as the service issues.
pub fn new_version_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}
