//! [`FakeVault`]: an in-memory vault for unit tests (feature `testing`): [`KeyVault`], [`Versions`] and
//! [`Inventory`] over a map, with an allow-list, a record of every call, and failures on demand. The real
//! implementation ([`crate::AzureKeyVault`]) is tested against the local emulator; this one lets the engine and
//! the handlers prove every row of their decision tables without processes or sockets.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use keyturn_config::SecretString;

use crate::VaultError;
use crate::inventory::{Collection, Inventory, Listed};
use crate::model::{
    CertificatePolicy, CertificateProperties, CertificateRenewal, KeyProperties, KeyRotationPolicy, NewSecretVersion,
    SecretProperties, SecretVersion, Tags,
};
use crate::ops::{KeyVault, VaultFuture};
use crate::versions::{VersionProperties, VersionUpdate, Versions};

/// One version of a fake object.
#[derive(Debug, Clone)]
pub struct FakeVersion {
    pub version: String,
    pub tags: Tags,
    pub content_type: Option<String>,
    pub enabled: bool,
    pub value: SecretString,
    pub not_before: Option<DateTime<Utc>>,
    pub expires: Option<DateTime<Utc>>,
}

impl FakeVersion {
    fn properties(&self, vault_time: Option<DateTime<Utc>>) -> VersionProperties {
        VersionProperties {
            version: self.version.clone(),
            enabled: self.enabled,
            tags: self.tags.clone(),
            not_before: self.not_before,
            expires: self.expires,
            vault_time,
        }
    }

    fn secret_properties(&self) -> SecretProperties {
        SecretProperties {
            version: self.version.clone(),
            content_type: self.content_type.clone(),
            tags: self.tags.clone(),
            enabled: self.enabled,
            not_before: self.not_before,
            expires: self.expires,
        }
    }
}

type ObjectKey = (String, Collection, String);

#[derive(Debug, Default)]
struct State {
    objects: HashMap<ObjectKey, Vec<FakeVersion>>,
    calls: Vec<String>,
    key_rotation: Option<KeyRotationPolicy>,
    certificate_policy: Option<CertificatePolicy>,
    issuer_provider: Option<String>,
    /// Every operation waits this long first (to let concurrent deliveries overlap).
    delay: Duration,
    /// Every operation fails with this HTTP status (after recording the call).
    failing: Option<u16>,
    /// How far the vault's clock runs ahead of the test's (the local stack's movable clock does).
    clock_ahead: TimeDelta,
    /// Answers carry no `Date` (Key Vault's always do).
    no_date: bool,
    next: u32,
}

/// An in-memory vault set: the vaults of `allowed` exist, every other one is refused before anything else, as
/// the real client refuses a vault outside `KEYTURN_VAULTS`.
#[derive(Debug)]
pub struct FakeVault {
    allowed: Vec<String>,
    state: Mutex<State>,
}

fn key(vault: &str, collection: Collection, name: &str) -> ObjectKey {
    (vault.to_ascii_lowercase(), collection, name.to_ascii_lowercase())
}

impl FakeVault {
    /// An empty fake holding the vaults `allowed`.
    pub fn new(allowed: &[&str]) -> Self {
        Self { allowed: allowed.iter().map(|v| v.to_ascii_lowercase()).collect(), state: Mutex::default() }
    }

    /// Adds `version` (with `tags`, enabled, value `value-of-<version>`, `text/plain`, no expiry) as the object's
    /// latest.
    pub fn add(&self, vault: &str, collection: Collection, name: &str, version: &str, tags: &[(&str, &str)]) {
        self.add_expiring(vault, collection, name, version, tags, None);
    }

    /// [`FakeVault::add`] with `expires` as the version's `exp`.
    pub fn add_expiring(
        &self,
        vault: &str,
        collection: Collection,
        name: &str,
        version: &str,
        tags: &[(&str, &str)],
        expires: Option<DateTime<Utc>>,
    ) {
        self.push(
            vault,
            collection,
            name,
            FakeVersion {
                version: version.to_owned(),
                tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                content_type: Some("text/plain".to_owned()),
                enabled: true,
                value: SecretString::new(format!("value-of-{version}")),
                not_before: None,
                expires,
            },
        );
    }

    /// Adds a version as the object's latest.
    pub fn push(&self, vault: &str, collection: Collection, name: &str, version: FakeVersion) {
        self.locked().objects.entry(key(vault, collection, name)).or_default().push(version);
    }

    /// The object's versions, oldest first.
    pub fn versions_of(&self, vault: &str, collection: Collection, name: &str) -> Vec<FakeVersion> {
        self.locked().objects.get(&key(vault, collection, name)).cloned().unwrap_or_default()
    }

    /// How many versions the object has.
    pub fn count(&self, vault: &str, collection: Collection, name: &str) -> usize {
        self.versions_of(vault, collection, name).len()
    }

    /// Every call so far, as `<operation> <vault>/<name>`.
    pub fn calls(&self) -> Vec<String> {
        self.locked().calls.clone()
    }

    /// Every operation waits `delay` from now on.
    pub fn set_delay(&self, delay: Duration) {
        self.locked().delay = delay;
    }

    /// Every operation fails with HTTP `status` from now on (`None`: none fails).
    pub fn fail_with(&self, status: Option<u16>) {
        self.locked().failing = status;
    }

    /// The vault's clock runs `by` ahead of the test's from now on (negative: behind); the time it tells is
    /// the `vault_time` of every [`VersionProperties`] it answers.
    pub fn set_clock_ahead(&self, by: TimeDelta) {
        self.locked().clock_ahead = by;
    }

    /// Answers carry no `Date` from now on (`true`), as Key Vault's never fail to.
    pub fn omit_date(&self, omit: bool) {
        self.locked().no_date = omit;
    }

    /// The vault's time as an answer's `Date` tells it (whole seconds), unless answers carry none.
    fn vault_time(&self) -> Option<DateTime<Utc>> {
        let state = self.locked();
        let now = Utc::now() + state.clock_ahead;
        (!state.no_date).then(|| DateTime::from_timestamp(now.timestamp(), 0)).flatten()
    }

    /// The rotation policy of every key (default: no Rotate action).
    pub fn set_key_rotation(&self, policy: KeyRotationPolicy) {
        self.locked().key_rotation = Some(policy);
    }

    /// The policy of every certificate (default: self-signed, no AutoRenew) and its issuer's provider.
    pub fn set_certificate_policy(&self, policy: CertificatePolicy, issuer_provider: Option<&str>) {
        let mut state = self.locked();
        state.certificate_policy = Some(policy);
        state.issuer_provider = issuer_provider.map(str::to_owned);
    }

    fn locked(&self) -> MutexGuard<'_, State> {
        // Poisoned only by a panicking test thread; the map is still whole.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Checks the allow-list, records the call, waits the delay and fails on demand.
    async fn enter(&self, operation: &'static str, vault: &str, name: &str) -> Result<(), VaultError> {
        self.check_allowed(vault)?;
        let (delay, failing) = {
            let mut state = self.locked();
            state.calls.push(format!("{operation} {vault}/{name}"));
            (state.delay, state.failing)
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        match failing {
            Some(status) => Err(VaultError::Http {
                operation,
                object: format!("{vault}/{name}"),
                status,
                code: None,
                message: "failing on demand".to_owned(),
            }),
            None => Ok(()),
        }
    }

    fn not_found(operation: &'static str, vault: &str, name: &str) -> VaultError {
        VaultError::Http {
            operation,
            object: format!("{vault}/{name}"),
            status: 404,
            code: Some("NotFound".to_owned()),
            message: "not found".to_owned(),
        }
    }

    fn latest(
        &self,
        operation: &'static str,
        vault: &str,
        collection: Collection,
        name: &str,
    ) -> Result<FakeVersion, VaultError> {
        self.locked()
            .objects
            .get(&key(vault, collection, name))
            .and_then(|versions| versions.last().cloned())
            .ok_or_else(|| Self::not_found(operation, vault, name))
    }

    fn one(
        &self,
        operation: &'static str,
        vault: &str,
        collection: Collection,
        name: &str,
        version: &str,
    ) -> Result<FakeVersion, VaultError> {
        self.locked()
            .objects
            .get(&key(vault, collection, name))
            .and_then(|versions| versions.iter().find(|v| v.version.eq_ignore_ascii_case(version)).cloned())
            .ok_or_else(|| Self::not_found(operation, vault, &format!("{name}/{version}")))
    }

    /// A new version made by the vault itself (rotate, renew): the latest's tags, a fresh version id.
    fn push_new(&self, vault: &str, collection: Collection, name: &str, tags: Tags) -> String {
        let mut state = self.locked();
        state.next += 1;
        let version = format!("v-new-{}", state.next);
        state.objects.entry(key(vault, collection, name)).or_default().push(FakeVersion {
            version: version.clone(),
            tags,
            content_type: None,
            enabled: true,
            value: SecretString::new(String::new()),
            not_before: None,
            expires: None,
        });
        version
    }
}

impl KeyVault for FakeVault {
    fn check_allowed(&self, vault: &str) -> Result<(), VaultError> {
        if self.allowed.contains(&vault.to_ascii_lowercase()) {
            Ok(())
        } else {
            Err(VaultError::NotAllowed { vault: vault.to_owned() })
        }
    }

    fn latest_secret<'a>(&'a self, vault: &'a str, name: &'a str) -> VaultFuture<'a, SecretVersion> {
        Box::pin(async move {
            self.enter("latest_secret", vault, name).await?;
            let latest = self.latest("get secret", vault, Collection::Secrets, name)?;
            Ok(SecretVersion { properties: latest.secret_properties(), value: latest.value })
        })
    }

    fn set_secret<'a>(
        &'a self,
        vault: &'a str,
        name: &'a str,
        new: NewSecretVersion,
    ) -> VaultFuture<'a, SecretProperties> {
        Box::pin(async move {
            self.enter("set_secret", vault, name).await?;
            let version = {
                let mut state = self.locked();
                state.next += 1;
                format!("v-new-{}", state.next)
            };
            let stored = FakeVersion {
                version,
                tags: new.tags,
                content_type: new.content_type,
                enabled: true,
                value: new.value,
                not_before: new.not_before,
                expires: new.expires,
            };
            let properties = stored.secret_properties();
            self.push(vault, Collection::Secrets, name, stored);
            Ok(properties)
        })
    }

    fn latest_key<'a>(&'a self, vault: &'a str, name: &'a str) -> VaultFuture<'a, KeyProperties> {
        Box::pin(async move {
            self.enter("latest_key", vault, name).await?;
            let latest = self.latest("get key", vault, Collection::Keys, name)?;
            Ok(KeyProperties {
                version: latest.version,
                tags: latest.tags,
                enabled: latest.enabled,
                expires: latest.expires,
            })
        })
    }

    fn key_rotation_policy<'a>(&'a self, vault: &'a str, name: &'a str) -> VaultFuture<'a, KeyRotationPolicy> {
        Box::pin(async move {
            self.enter("key_rotation_policy", vault, name).await?;
            Ok(self.locked().key_rotation.clone().unwrap_or(KeyRotationPolicy { rotates: false, trigger: None }))
        })
    }

    fn rotate_key<'a>(&'a self, vault: &'a str, name: &'a str) -> VaultFuture<'a, KeyProperties> {
        Box::pin(async move {
            self.enter("rotate_key", vault, name).await?;
            let latest = self.latest("rotate key", vault, Collection::Keys, name)?;
            let version = self.push_new(vault, Collection::Keys, name, latest.tags.clone());
            Ok(KeyProperties { version, tags: latest.tags, enabled: true, expires: None })
        })
    }

    fn latest_certificate<'a>(&'a self, vault: &'a str, name: &'a str) -> VaultFuture<'a, CertificateProperties> {
        Box::pin(async move {
            self.enter("latest_certificate", vault, name).await?;
            let latest = self.latest("get certificate", vault, Collection::Certificates, name)?;
            Ok(CertificateProperties {
                version: latest.version,
                tags: latest.tags,
                enabled: latest.enabled,
                expires: latest.expires,
            })
        })
    }

    fn certificate_policy<'a>(&'a self, vault: &'a str, name: &'a str) -> VaultFuture<'a, CertificatePolicy> {
        Box::pin(async move {
            self.enter("certificate_policy", vault, name).await?;
            Ok(self
                .locked()
                .certificate_policy
                .clone()
                .unwrap_or(CertificatePolicy { issuer: Some("Self".to_owned()), auto_renew: false }))
        })
    }

    fn issuer_provider<'a>(&'a self, vault: &'a str, issuer: &'a str) -> VaultFuture<'a, Option<String>> {
        Box::pin(async move {
            self.enter("issuer_provider", vault, issuer).await?;
            Ok(self.locked().issuer_provider.clone())
        })
    }

    fn renew_certificate<'a>(&'a self, vault: &'a str, name: &'a str) -> VaultFuture<'a, CertificateRenewal> {
        Box::pin(async move {
            self.enter("renew_certificate", vault, name).await?;
            Ok(CertificateRenewal { status: "inProgress".to_owned() })
        })
    }
}

impl Versions for FakeVault {
    fn secret_version<'a>(&'a self, vault: &'a str, name: &'a str, version: &'a str) -> VaultFuture<'a, SecretVersion> {
        Box::pin(async move {
            self.enter("secret_version", vault, name).await?;
            let found = self.one("get secret version", vault, Collection::Secrets, name, version)?;
            Ok(SecretVersion { properties: found.secret_properties(), value: found.value })
        })
    }

    fn version_properties<'a>(
        &'a self,
        vault: &'a str,
        collection: Collection,
        name: &'a str,
        version: &'a str,
    ) -> VaultFuture<'a, VersionProperties> {
        Box::pin(async move {
            self.enter("version_properties", vault, name).await?;
            Ok(self.one("get version", vault, collection, name, version)?.properties(self.vault_time()))
        })
    }

    fn update_version<'a>(
        &'a self,
        vault: &'a str,
        collection: Collection,
        name: &'a str,
        version: &'a str,
        update: VersionUpdate,
    ) -> VaultFuture<'a, VersionProperties> {
        Box::pin(async move {
            self.enter("update_version", vault, name).await?;
            let vault_time = self.vault_time();
            let mut state = self.locked();
            let found = state
                .objects
                .get_mut(&key(vault, collection, name))
                .and_then(|versions| versions.iter_mut().find(|v| v.version.eq_ignore_ascii_case(version)))
                .ok_or_else(|| Self::not_found("update version", vault, name))?;
            if let Some(enabled) = update.enabled {
                found.enabled = enabled;
            }
            if let Some(tags) = update.tags {
                found.tags = tags;
            }
            Ok(found.properties(vault_time))
        })
    }
}

impl Inventory for FakeVault {
    fn list<'a>(&'a self, vault: &'a str, collection: Collection) -> VaultFuture<'a, Vec<Listed>> {
        Box::pin(async move {
            self.enter("list", vault, collection.as_str()).await?;
            let state = self.locked();
            let mut listed: Vec<Listed> = state
                .objects
                .iter()
                .filter(|((v, c, _), _)| *v == vault.to_ascii_lowercase() && *c == collection)
                .filter_map(|((_, _, name), versions)| versions.last().map(|latest| listed(name, None, latest)))
                .collect();
            listed.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(listed)
        })
    }

    fn versions<'a>(&'a self, vault: &'a str, collection: Collection, name: &'a str) -> VaultFuture<'a, Vec<Listed>> {
        Box::pin(async move {
            self.enter("versions", vault, name).await?;
            Ok(self
                .versions_of(vault, collection, name)
                .iter()
                .map(|version| listed(name, Some(&version.version), version))
                .collect())
        })
    }
}

fn listed(name: &str, version: Option<&str>, found: &FakeVersion) -> Listed {
    Listed {
        name: name.to_owned(),
        version: version.map(str::to_owned),
        enabled: found.enabled,
        created: None,
        not_before: found.not_before,
        expires: found.expires,
        tags: found.tags.clone(),
        managed: false,
    }
}

/// A credential that grants a token for any scope, or refuses every request; nothing is sent anywhere.
#[derive(Debug, Clone, Copy)]
pub struct FakeCredential {
    pub granting: bool,
}

impl azure_core::credentials::TokenCredential for FakeCredential {
    // The `#[async_trait]` expansion of the trait's one method, written out.
    fn get_token<'life0, 'life1, 'life2, 'life3, 'async_trait>(
        &'life0 self,
        _scopes: &'life1 [&'life2 str],
        _options: Option<azure_core::credentials::TokenRequestOptions<'life3>>,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = azure_core::Result<azure_core::credentials::AccessToken>>
                + Send
                + 'async_trait,
        >,
    >
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        'life3: 'async_trait,
        Self: 'async_trait,
    {
        let granting = self.granting;
        Box::pin(async move {
            if granting {
                let expires_on = ::time::OffsetDateTime::now_utc() + ::time::Duration::hours(1);
                Ok(azure_core::credentials::AccessToken::new("fake-token", expires_on))
            } else {
                Err(azure_core::Error::with_message(azure_core::error::ErrorKind::Credential, "refused on demand"))
            }
        })
    }
}
