//! `KEYTURN_CONSUMERS`: the apps that read which secrets, so the `new-version` handler can make them pick up a
//! new version at once instead of on their own schedule (App Service caches Key Vault references for up to 24
//! hours).
//!
//! Format: the binding grammar ([`crate::bindings`]): `;`-separated `<vault>[/<name or prefix*>[,...]]=<resource
//! id>[,<resource id>...]`, e.g. `kv-prod/app-*=/subscriptions/<s>/resourceGroups/<g>/providers/Microsoft.Web/
//! sites/web-shop`. A resource id is an App Service or Functions app (`Microsoft.Web/sites/<app>`, or one of its
//! deployment slots `.../sites/<app>/slots/<slot>`) or a Container App (`Microsoft.App/containerApps/<app>`).
//!
//! Tags choose, the deployment authorizes, and here tags do not even choose: only this setting names consumers,
//! so a secret's writer can never make keyturn restart or refresh an app. Unset: no consumer is refreshed.

use crate::bindings::{Binding, TargetKind};
use crate::{ConfigError, Env};

pub const CONSUMERS: &str = "KEYTURN_CONSUMERS";

const CONSUMER_IDS: TargetKind = TargetKind {
    placeholder: "<resource id>[,<resource id>]",
    description: "resource ids of App Service or Functions apps (/subscriptions/<s>/resourceGroups/<g>/providers/\
                  Microsoft.Web/sites/<app>[/slots/<slot>]) or Container Apps (/subscriptions/<s>/resourceGroups/<g>/\
                  providers/Microsoft.App/containerApps/<app>)",
    is_valid: |id| Consumer::parse(id).is_some(),
};

/// A consumer, by what refreshing it takes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Consumer {
    /// An App Service or Functions app (or a slot of one): its Key Vault references are refreshed.
    WebApp { id: String },
    /// A Container App: its active revisions are restarted (they read secrets at start).
    ContainerApp { id: String },
}

impl Consumer {
    /// The consumer a resource id names (trimmed, without a trailing slash), if it is one keyturn can refresh.
    pub fn parse(id: &str) -> Option<Self> {
        let id = id.trim().trim_end_matches('/');
        let segments: Vec<&str> = id.split('/').collect();
        // Each name becomes a path segment of a Resource Manager URL: no dots-only segment, no query or
        // fragment characters, nothing empty.
        let safe = |s: &&str| {
            !s.is_empty()
                && !s.chars().all(|c| c == '.')
                && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.()".contains(c))
        };
        let is = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
        let scoped = |s: &str, rgs: &str, g: &str, providers: &str| {
            is(rgs, "resourceGroups") && is(providers, "providers") && [s, g].iter().all(safe)
        };
        match segments.as_slice() {
            ["", sub, s, rgs, g, providers, ns, kind, app]
                if is(sub, "subscriptions") && scoped(s, rgs, g, providers) && safe(app) =>
            {
                if is(ns, "Microsoft.Web") && is(kind, "sites") {
                    Some(Self::WebApp { id: id.to_owned() })
                } else if is(ns, "Microsoft.App") && is(kind, "containerApps") {
                    Some(Self::ContainerApp { id: id.to_owned() })
                } else {
                    None
                }
            }
            ["", sub, s, rgs, g, providers, ns, kind, app, slots, slot]
                if is(sub, "subscriptions")
                    && scoped(s, rgs, g, providers)
                    && is(ns, "Microsoft.Web")
                    && is(kind, "sites")
                    && is(slots, "slots")
                    && [*app, *slot].iter().all(safe) =>
            {
                Some(Self::WebApp { id: id.to_owned() })
            }
            _ => None,
        }
    }

    /// The resource id.
    pub fn id(&self) -> &str {
        match self {
            Self::WebApp { id } | Self::ContainerApp { id } => id,
        }
    }
}

impl std::fmt::Display for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id())
    }
}

/// The deployment's consumers, per vault and names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Consumers {
    bindings: Vec<Binding>,
}

impl Consumers {
    /// Reads `KEYTURN_CONSUMERS`.
    pub(crate) fn from_env(env: &Env<'_>) -> Result<Self, Vec<ConfigError>> {
        let Some(raw) = env.get(CONSUMERS) else { return Ok(Self::default()) };
        Self::parse(&raw).map_err(|problem| {
            vec![ConfigError::invalid(
                CONSUMERS,
                &raw,
                format!("';'-separated <vault>[/<name or prefix*>]=<resource id>[,<resource id>] entries: {problem}"),
            )]
        })
    }

    /// Parses the setting's value (the error says which entry was wrong and how).
    pub fn parse(raw: &str) -> Result<Self, String> {
        Binding::parse(raw, CONSUMER_IDS).map(|bindings| Self { bindings })
    }

    /// Whether no consumer is configured.
    pub fn is_empty(&self) -> bool {
        self.bindings.is_empty()
    }

    /// The consumers of the secret `vault/name`, each once, in a stable order.
    pub fn of(&self, vault: &str, name: &str) -> Vec<Consumer> {
        let mut consumers: Vec<Consumer> = self
            .bindings
            .iter()
            .filter(|b| b.vault.eq_ignore_ascii_case(vault) && b.names.matches(name))
            .flat_map(|b| b.targets.iter().filter_map(|id| Consumer::parse(id)))
            .collect();
        consumers.sort();
        consumers.dedup();
        consumers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEB: &str = "/subscriptions/0000/resourceGroups/rg-app/providers/Microsoft.Web/sites/web-shop";
    const SLOT: &str = "/subscriptions/0000/resourceGroups/rg-app/providers/Microsoft.Web/sites/web-shop/slots/staging";
    const APP: &str = "/subscriptions/0000/resourceGroups/rg-app/providers/Microsoft.App/containerApps/orders";

    #[test]
    fn web_apps_slots_and_container_apps_are_consumers_and_nothing_else_is() {
        assert!(matches!(Consumer::parse(WEB), Some(Consumer::WebApp { .. })));
        assert!(matches!(Consumer::parse(&format!("{SLOT}/")), Some(Consumer::WebApp { id }) if id == SLOT));
        assert!(matches!(Consumer::parse(APP), Some(Consumer::ContainerApp { .. })));
        for bad in [
            "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/a",
            "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.App/containerApps/a/slots/b",
            "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Web/sites/..",
            "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Web/sites/a?api-version=1",
            "https://management.azure.com/subscriptions/0/resourceGroups/g/providers/Microsoft.Web/sites/a",
            "web-shop",
        ] {
            assert_eq!(Consumer::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_secret_gets_the_consumers_of_every_entry_that_covers_it_once() {
        let consumers =
            Consumers::parse(&format!("kv-prod/app-*={WEB},{APP}; KV-PROD/app-web={WEB},{SLOT}; kv-dev={APP}"))
                .unwrap();
        let ids = |vault: &str, name: &str| -> Vec<String> {
            consumers.of(vault, name).iter().map(|c| c.id().to_owned()).collect()
        };
        let lower = |id: &str| id.to_ascii_lowercase();
        assert_eq!(ids("kv-prod", "app-web"), [lower(WEB), lower(SLOT), lower(APP)]);
        assert_eq!(ids("kv-prod", "app-other"), [lower(WEB), lower(APP)]);
        assert!(ids("kv-prod", "db-password").is_empty(), "a name no entry covers");
        assert_eq!(ids("kv-dev", "anything"), [lower(APP)]);
        assert!(Consumers::parse("").unwrap().is_empty());
        let error = Consumers::parse("kv-prod=/subscriptions/0/resourceGroups/g/providers/Microsoft.Sql/servers/s")
            .unwrap_err();
        assert!(error.contains("entry 1: the targets must be resource ids of App Service"), "{error}");
    }
}
