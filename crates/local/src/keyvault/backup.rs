//! Backup and restore of secrets, keys and certificates.
//!
//! A backup is an opaque blob holding the object with every version (a certificate also carries the key and
//! secret behind it). Like the service's, it is encrypted: AES-256-GCM under a key the stack generates at
//! start and shares across its vaults, so a blob restores into any vault of the same running stack and
//! nowhere else (a blob from another stack, or from before a restart, is refused as malformed). Restore takes
//! the name from the blob and follows the service's name rules: a live object of that name is a 409
//! `Conflict`, a soft-deleted one the usual "deleted but recoverable" 409.

use super::error::ServiceError;
use super::store::{CertData, CertExtra, KeyData, KeyExtra, Object, SecretData, StoredKind, VaultStore};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

/// The stack-wide key backups are sealed with. `None` only if the OS could supply no randomness at start;
/// then backup and restore fail with an error rather than sealing under a guessable key.
pub struct BackupKey(Option<LessSafeKey>);

impl std::fmt::Debug for BackupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BackupKey(****)")
    }
}

impl BackupKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        if aws_lc_rs::rand::fill(&mut bytes).is_err() {
            return Self(None);
        }
        Self(UnboundKey::new(&AES_256_GCM, &bytes).ok().map(LessSafeKey::new))
    }

    fn key(&self) -> Result<&LessSafeKey, ServiceError> {
        self.0
            .as_ref()
            .ok_or_else(|| ServiceError::Internal("the emulator has no backup key (no OS randomness at start)".into()))
    }

    fn seal(&self, plain: Vec<u8>) -> Result<String, ServiceError> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| ServiceError::Internal("no randomness for a nonce".into()))?;
        let mut data = plain;
        self.key()?
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(BLOB_AAD), &mut data)
            .map_err(|_| ServiceError::Internal("sealing the backup failed".into()))?;
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&data);
        Ok(URL_SAFE_NO_PAD.encode(blob))
    }

    fn open(&self, blob: &str) -> Option<Vec<u8>> {
        let raw = URL_SAFE_NO_PAD.decode(blob.trim_end_matches('=')).ok()?;
        if raw.len() < NONCE_LEN {
            return None;
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut data = sealed.to_vec();
        let plain = self.key().ok()?.open_in_place(nonce, Aad::from(BLOB_AAD), &mut data).ok()?;
        Some(plain.to_vec())
    }
}

const BLOB_AAD: &[u8] = b"keyturn-local backup v1";

#[derive(Serialize, Deserialize)]
enum Backup {
    Secret(Object<SecretData, ()>),
    Key(Object<KeyData, KeyExtra>),
    Certificate(Box<CertificateBackup>),
}

/// A certificate with the key and secret behind it.
#[derive(Serialize, Deserialize)]
struct CertificateBackup {
    certificate: Object<CertData, CertExtra>,
    key: Option<Object<KeyData, KeyExtra>>,
    secret: Option<Object<SecretData, ()>>,
}

impl Backup {
    fn kind(&self) -> StoredKind {
        match self {
            Self::Secret(_) => StoredKind::Secret,
            Self::Key(_) => StoredKind::Key,
            Self::Certificate(_) => StoredKind::Certificate,
        }
    }
}

fn malformed(kind: StoredKind) -> ServiceError {
    ServiceError::BadParameter(format!(
        "The {} backup blob is malformed or was not produced by this vault's environment (a backup restores only into vaults of the local stack that made it).",
        kind.lower()
    ))
}

fn exists(kind: StoredKind, name: &str) -> ServiceError {
    ServiceError::RestoreConflict { kind, name: name.to_owned() }
}

impl VaultStore {
    /// The backup blob of `name` (every version).
    pub fn backup(&self, vault: &str, kind: StoredKind, name: &str) -> Result<String, ServiceError> {
        let vault_ref = self.vault(vault)?;
        let backup = {
            let state = vault_ref.read();
            match kind {
                StoredKind::Secret => {
                    let object = state.secrets.object(kind, name)?;
                    if object.latest().is_some_and(|v| v.data.managed) {
                        return Err(ServiceError::Forbidden(format!(
                            "Secret {name} backs a certificate; back up the certificate instead."
                        )));
                    }
                    Backup::Secret(object.clone())
                }
                StoredKind::Key => {
                    let object = state.keys.object(kind, name)?;
                    if object.latest().is_some_and(|v| v.data.managed) {
                        return Err(ServiceError::Forbidden(format!(
                            "Key {name} backs a certificate; back up the certificate instead."
                        )));
                    }
                    Backup::Key(object.clone())
                }
                StoredKind::Certificate => Backup::Certificate(Box::new(CertificateBackup {
                    certificate: state.certificates.object(kind, name)?.clone(),
                    key: state.keys.object(StoredKind::Key, name).ok().cloned(),
                    secret: state.secrets.object(StoredKind::Secret, name).ok().cloned(),
                })),
            }
        };
        let plain = serde_json::to_vec(&backup).map_err(|e| ServiceError::Internal(format!("backup: {e}")))?;
        self.backup_key().seal(plain)
    }

    /// Restores a `kind` backup blob into `vault`; the restored object's display name.
    pub fn restore(&self, vault: &str, kind: StoredKind, blob: &str) -> Result<String, ServiceError> {
        let plain = self.backup_key().open(blob).ok_or_else(|| malformed(kind))?;
        let backup: Backup = serde_json::from_slice(&plain).map_err(|_| malformed(kind))?;
        if backup.kind() != kind {
            return Err(ServiceError::BadParameter(format!(
                "The backup blob holds a {}, not a {}.",
                backup.kind().lower(),
                kind.lower()
            )));
        }
        let vault_ref = self.vault(vault)?;
        let now = self.now();
        let mut state = vault_ref.write();
        let name = match backup {
            Backup::Secret(object) => {
                let name = object.name.clone();
                state.secrets.purge_due(now);
                state.secrets.check_creatable(kind, &name)?;
                if state.secrets.live.contains_key(&name.to_ascii_lowercase()) {
                    return Err(exists(kind, &name));
                }
                state.secrets.live.insert(name.to_ascii_lowercase(), object);
                name
            }
            Backup::Key(object) => {
                let name = object.name.clone();
                state.keys.purge_due(now);
                state.keys.check_creatable(kind, &name)?;
                if state.keys.live.contains_key(&name.to_ascii_lowercase()) {
                    return Err(exists(kind, &name));
                }
                state.keys.live.insert(name.to_ascii_lowercase(), object);
                name
            }
            Backup::Certificate(backup) => {
                let CertificateBackup { certificate, key, secret } = *backup;
                let name = certificate.name.clone();
                let lower = name.to_ascii_lowercase();
                state.certificates.purge_due(now);
                state.keys.purge_due(now);
                state.secrets.purge_due(now);
                state.certificates.check_creatable(kind, &name)?;
                if state.certificates.live.contains_key(&lower) {
                    return Err(exists(kind, &name));
                }
                // The key and secret behind the certificate take the same name in their collections.
                if key.is_some() {
                    state.keys.check_creatable(StoredKind::Key, &name)?;
                    if state.keys.live.contains_key(&lower) {
                        return Err(exists(StoredKind::Key, &name));
                    }
                }
                if secret.is_some() {
                    state.secrets.check_creatable(StoredKind::Secret, &name)?;
                    if state.secrets.live.contains_key(&lower) {
                        return Err(exists(StoredKind::Secret, &name));
                    }
                }
                if let Some(key) = key {
                    state.keys.live.insert(lower.clone(), key);
                }
                if let Some(secret) = secret {
                    state.secrets.live.insert(lower.clone(), secret);
                }
                state.certificates.live.insert(lower, certificate);
                name
            }
        };
        drop(state);
        self.mark_dirty();
        Ok(name)
    }
}
