//! [`Deps`] over in-memory fakes (feature `testing`), so that every handler's decision table is unit-tested
//! without processes or sockets: a [`FakeVault`] for the vaults and the mirrors, a [`FakeNotifier`], the
//! in-process lock, and the rotation engine with the standard providers over the same fake vault.

use std::sync::Arc;

use keyturn_config::Settings;
use keyturn_events::{Event, KeyVaultEventType, VaultObject};
use keyturn_notify::testing::FakeNotifier;
use keyturn_rotation::{Engine, InProcessLock, Providers};
use keyturn_vault::testing::{FakeCredential, FakeVault};

use crate::{Deps, DepsError, Parts};

/// A handler's world in memory: the deps, and the fakes behind them to arrange and inspect.
#[derive(Debug)]
pub struct World {
    pub vault: Arc<FakeVault>,
    pub notifier: FakeNotifier,
    pub deps: Arc<Deps>,
}

impl World {
    /// Deps for the settings in `pairs` (read as from the environment; `KEYTURN_VAULTS` defaults to `kv-one`,
    /// `KEYTURN_CREDENTIAL` to a managed identity, though the credential used is a [`FakeCredential`] that
    /// grants every token) with the notification channels
    /// of `channels` (a `KEYTURN_NOTIFY` list; nothing is sent). The fake vault holds every vault of
    /// `KEYTURN_VAULTS` and `KEYTURN_MIRROR_VAULTS`, empty.
    ///
    /// # Errors
    /// When a setting is invalid.
    pub fn new(pairs: &[(&str, &str)], channels: &str) -> Result<Self, DepsError> {
        let lookup = |name: &str| {
            pairs.iter().find(|(key, _)| *key == name).map(|(_, value)| (*value).to_owned()).or_else(|| match name {
                "KEYTURN_VAULTS" => Some("kv-one=https://127.0.0.1:9".to_owned()),
                "KEYTURN_CREDENTIAL" => Some("managed-identity".to_owned()),
                // Required by the setting's parser; the fake credential never calls it.
                "IDENTITY_ENDPOINT" => Some("http://127.0.0.1:9/msi/token".to_owned()),
                _ => None,
            })
        };
        let settings = Settings::from_lookup(lookup)?;
        let names: Vec<&str> = settings
            .vaults
            .entries()
            .iter()
            .chain(settings.mirror_vaults.entries())
            .map(keyturn_config::VaultEntry::name)
            .collect();
        let vault = Arc::new(FakeVault::new(&names));
        let notifier = FakeNotifier::with_channels(channels);
        let credential = Arc::new(FakeCredential { granting: true });
        let lock = Arc::new(InProcessLock::default());
        let engine = Engine::new(vault.clone(), lock.clone(), Providers::standard());
        let deps = Deps::from_parts(Parts {
            settings,
            vaults: vault.clone(),
            versions: vault.clone(),
            inventory: vault.clone(),
            mirrors: vault.clone(),
            credential,
            notifier: Arc::new(notifier.clone()),
            lock,
            engine,
        });
        Ok(Self { vault, notifier, deps: Arc::new(deps) })
    }
}

/// A Key Vault event of `event_type` about `vault/name` at `version`, in Event Grid schema, decoded as the host
/// decodes it.
///
/// # Panics
/// When the names cannot form an object URL (a test's own mistake).
pub fn event(id: &str, event_type: KeyVaultEventType, vault: &str, name: &str, version: &str) -> Event {
    #[allow(clippy::expect_used)]
    let object =
        VaultObject::new(vault, event_type.object_kind(), name, Some(version), None, None).expect("a valid object");
    let source = format!("/subscriptions/s/resourceGroups/r/providers/Microsoft.KeyVault/vaults/{vault}");
    Event {
        id: id.to_owned(),
        subject: name.to_owned(),
        source,
        time: None,
        schema: keyturn_events::Schema::EventGrid,
        payload: keyturn_events::Payload::KeyVault(keyturn_events::KeyVaultEvent { event_type, object }),
    }
}
