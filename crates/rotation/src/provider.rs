//! Providers: what makes a secret's new value, in the steps AWS's rotation functions use.
//!
//! The engine drives every provider the same way, under the object's lock:
//! 1. [`Provider::create_pending`]: the new value (and any tag changes), not yet visible to consumers;
//! 2. [`Provider::set_pending`]: make the credential's owner accept it;
//! 3. [`Provider::test_pending`]: prove the new value works;
//! 4. the engine promotes it with one `set_secret` (Key Vault has no staging: that version is live at once);
//! 5. [`Provider::finish`]: clean up after promotion.
//!
//! The providers (docs/providers.md is the user's reference):
//! - `generated` (`provider/generated.rs`): a new value from the CSPRNG; step 1 only.
//! - `postgres`, `postgres-alternating` (`provider/postgres.rs`): a PostgreSQL password, single user or two
//!   alternating logins; every step, with the pending value kept in a pending home (`provider/pending.rs`)
//!   so that a replay after a crash resumes and never strands a credential.
//! - `mysql`, `mysql-alternating` (`provider/mysql.rs`): a MySQL password, the same two strategies, through an
//!   admin login. The database providers share their protocol, bindings and value shape (`provider/database.rs`).
//! - `azure-key`, `storage-account-key` (`provider/azure_keys.rs`): the Azure key family, dual credentials
//!   (storage accounts, Cosmos DB, Redis, Service Bus and Event Hubs rules, Azure AI services, Azure AI Search):
//!   regenerate the key *not* named by `CredentialId` through Resource Manager and switch the tag; the stored key
//!   stays valid throughout. One row per resource type in `provider/azure_keys/table.rs`.
//! - `entra-app-secret` (`provider/entra.rs`): an Entra ID application's client secret through Microsoft Graph
//!   (`provider/entra/graph.rs`): add a password, keep its secret in the pending home, promote it, and remove the
//!   previous password once the overlap the secret's tags set has ended.
//! - `webhook` (`provider/webhook.rs`): the user's own HTTPS rotator makes the value; keyturn keeps it in the
//!   pending home, has the rotator confirm it, and promotes it.
//!
//! Adding a provider is adding a module with a type implementing [`Provider`] and registering it in
//! [`Providers::standard`] (needs nothing) or [`Providers::from_settings`] (needs settings or the vault).

pub mod azure_keys;
pub mod database;
pub mod entra;
pub mod generated;
pub mod mysql;
pub mod pending;
pub mod postgres;
pub mod webhook;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use keyturn_config::SecretString;
use keyturn_vault::KeyVault;
use keyturn_vault::model::{SecretProperties, SecretVersion, Tags};

use crate::policy::Policy;

/// Everything a provider may look at: the secret as it is now, its policy, and why it is rotating.
#[derive(Debug)]
pub struct RotationContext<'a> {
    pub vault: &'a str,
    pub name: &'a str,
    pub current: &'a SecretVersion,
    pub policy: &'a Policy,
    /// The id of the event being handled: the idempotency key a provider can hand to its target.
    pub event_id: &'a str,
    pub now: DateTime<Utc>,
}

/// A new value, not yet promoted.
#[derive(Debug)]
pub struct Pending {
    pub value: SecretString,
    /// Tags to set on the new version on top of the carried-forward ones (e.g. `CredentialId` switched).
    pub tags: Tags,
}

/// A provider's failure. Whether it is worth a redelivery is the provider's call: a target that is down
/// is, a target that refuses the credential outright is not.
#[derive(Debug, Clone, thiserror::Error)]
#[error("provider {provider}: {message}")]
pub struct ProviderError {
    pub provider: &'static str,
    pub message: String,
    pub retryable: bool,
}

/// The future every provider step returns.
pub type ProviderFuture<'a, T> = BoxFuture<'a, Result<T, ProviderError>>;

/// A way to make a secret's next value. Object-safe: the engine holds `Arc<dyn Provider>`.
pub trait Provider: Send + Sync + fmt::Debug {
    /// The `KeyturnRotation` tag value that selects this provider.
    fn name(&self) -> &'static str;

    /// Step 1: the new value. Must be safe to repeat: a replay after a crash calls it again.
    fn create_pending<'a>(&'a self, ctx: &'a RotationContext<'a>) -> ProviderFuture<'a, Pending>;

    /// Step 2: make the credential's owner accept the pending value. Default: nothing to do.
    fn set_pending<'a>(&'a self, _ctx: &'a RotationContext<'a>, _pending: &'a Pending) -> ProviderFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    /// Step 3: prove the pending value works; an error here stops the rotation before promotion.
    /// Default: nothing to test.
    fn test_pending<'a>(&'a self, _ctx: &'a RotationContext<'a>, _pending: &'a Pending) -> ProviderFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    /// Step 5: after promotion (e.g. remove the pending home). Default: nothing to do.
    fn finish<'a>(&'a self, _ctx: &'a RotationContext<'a>, _promoted: &'a SecretProperties) -> ProviderFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    /// Whether the credential `previous` holds still works now that `latest` (the version a rotation made from
    /// it) is live: what `keyturn rollback` asks before writing `previous`'s value back. Default: revoked, the
    /// answer of every provider that keeps a single credential.
    fn previous_credential(
        &self,
        _latest: &SecretProperties,
        _previous: &SecretProperties,
        _now: DateTime<Utc>,
    ) -> PreviousCredential {
        PreviousCredential::Revoked(format!(
            "{} keeps a single credential: the rotation replaced the previous one, which no longer works; rotate \
             again instead",
            self.name()
        ))
    }
}

/// What became of a rotated secret's previous credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreviousCredential {
    /// It still works; `until` is when it stops working on its own, if it does (an Entra password's end date).
    Survives { until: Option<DateTime<Utc>> },
    /// It no longer works, for the reason given (which names the provider).
    Revoked(String),
}

/// The token scope for a service endpoint: its own origin's `/.default` in Azure's clouds; `public` (the public
/// cloud's scope) for a loopback emulator, whose tokens are issued for the public cloud's audience.
pub(crate) fn token_scope(endpoint: &url::Url, public: &str) -> String {
    match endpoint.host() {
        Some(url::Host::Domain(domain)) if domain != "localhost" => format!("https://{domain}/.default"),
        _ => public.to_owned(),
    }
}

/// The providers a deployment offers, by name.
#[derive(Debug, Clone, Default)]
pub struct Providers {
    by_name: BTreeMap<&'static str, Arc<dyn Provider>>,
}

impl Providers {
    /// Every provider keyturn ships.
    pub fn standard() -> Self {
        Self::default().with(Arc::new(generated::Generated))
    }

    /// Every provider keyturn ships, built once per process: `vault` holds the pending homes and the admin
    /// secrets; the Resource Manager calls use `credential` and `options` (the same credential, transport and
    /// bounded retries as the vault clients); `KEYTURN_CA_FILE` is trusted beside the platform's roots for
    /// PostgreSQL, MySQL and the webhook rotators. Touches no network.
    pub fn from_settings(
        settings: &keyturn_config::Settings,
        vault: Arc<dyn KeyVault>,
        credential: Arc<dyn azure_core::credentials::TokenCredential>,
        options: azure_core::http::ClientOptions,
    ) -> Result<Self, ProviderError> {
        use postgres::{Postgres, Strategy};
        let ca_file = settings.ca_file.as_deref();
        // A provider acting on something other than the tagged secret exists only with a binding (issue 13):
        // a tag naming it otherwise meets "not a provider this deployment has".
        let mut providers = Self::standard();
        let pg = &settings.providers.postgres;
        if !pg.servers.is_empty() {
            providers = providers
                .with(Arc::new(Postgres::new(Strategy::SingleUser, vault.clone(), ca_file)?.bound(pg.clone())));
            if !pg.admins.is_empty() {
                providers = providers
                    .with(Arc::new(Postgres::new(Strategy::Alternating, vault.clone(), ca_file)?.bound(pg.clone())));
            }
        }
        providers = providers.mysql(settings, &vault)?;
        let entra = &settings.providers.entra;
        if !entra.applications.is_empty() {
            providers = providers.with(Arc::new(entra::EntraAppSecret::new(
                entra,
                vault.clone(),
                credential.clone(),
                &settings.retry,
                ca_file,
            )?));
        }
        if !settings.providers.azure_keys.is_empty() {
            let arm = crate::arm::ArmClient::new(settings.providers.arm_endpoint.clone(), credential, options);
            let family = azure_keys::AzureKeys::new(arm, settings.providers.azure_keys.clone(), vault.clone());
            providers = providers.with(Arc::new(family.storage_accounts_only())).with(Arc::new(family));
        }
        if let Some(rotators) = settings.providers.webhook_rotators.as_ref() {
            providers = providers.with(Arc::new(webhook::Webhook::new(Some(rotators), vault, ca_file)?));
        }
        Ok(providers)
    }

    /// The mysql providers, when the deployment binds servers and admins (both strategies change passwords through
    /// an admin login).
    fn mysql(self, settings: &keyturn_config::Settings, vault: &Arc<dyn KeyVault>) -> Result<Self, ProviderError> {
        use mysql::{Mysql, Strategy};
        let bindings = &settings.providers.mysql;
        if bindings.servers.is_empty() || bindings.admins.is_empty() {
            return Ok(self);
        }
        let ca_file = settings.ca_file.as_deref();
        let mut providers = self;
        for strategy in [Strategy::SingleUser, Strategy::Alternating] {
            providers = providers.with(Arc::new(Mysql::new(strategy, vault.clone(), ca_file)?.bound(bindings.clone())));
        }
        Ok(providers)
    }

    /// Adds (or replaces) a provider.
    pub fn with(mut self, provider: Arc<dyn Provider>) -> Self {
        self.by_name.insert(provider.name(), provider);
        self
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Provider>> {
        self.by_name.get(name)
    }

    /// The names, for error messages.
    pub fn names(&self) -> Vec<&'static str> {
        self.by_name.keys().copied().collect()
    }
}
