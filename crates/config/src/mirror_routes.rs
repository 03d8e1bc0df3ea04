//! `KEYTURN_MIRROR_ROUTES`: which destination vaults the secrets of which source vault (and names) may be
//! mirrored to. Tags choose, the deployment authorizes: a secret's `KeyturnMirror` tag may only pick among the
//! destinations routed for its vault and name; an unrouted destination is refused and notified.
//!
//! Format: `;`-separated `<source vault>[/<name or prefix*>[,...]]=<destination vault>[,<destination>...]`,
//! e.g. `kv-prod/app-*=kv-dr,kv-eu; kv-prod/db-password=kv-dr`. Every destination must be a vault keyturn can
//! reach (`KEYTURN_VAULTS` or `KEYTURN_MIRROR_VAULTS`).
//!
//! Unset: the routes of a deployment from before routes existed, unchanged ([`MirrorRoutes::Legacy`]): any
//! watched vault may mirror to any listed vault. Setting routes narrows that; it never widens it.

use crate::bindings::{Binding, TargetKind};
use crate::notify::NameFilter;
use crate::vaults::{VaultList, is_object_name};
use crate::{ConfigError, Env};

/// A route's targets: vault names.
const DESTINATION_VAULTS: TargetKind =
    TargetKind { placeholder: "<destination vault>[,<vault>]", description: "vault names", is_valid: is_object_name };

pub const MIRROR_ROUTES: &str = "KEYTURN_MIRROR_ROUTES";

/// One route: the secrets of `source` whose names `names` matches may be copied to `destinations`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorRoute {
    /// The source vault's name, lowercase.
    pub source: String,
    pub names: NameFilter,
    /// The destination vaults' names, lowercase.
    pub destinations: Vec<String>,
}

/// The deployment's mirror routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MirrorRoutes {
    /// `KEYTURN_MIRROR_ROUTES` unset: as before routes existed, any listed vault may receive copies (the
    /// allow-lists still bound it, and a secret that is not a replica is still never overwritten).
    Legacy,
    /// Only these routes.
    Routes(Vec<MirrorRoute>),
}

impl MirrorRoutes {
    /// Whether a secret `source/name` may be mirrored to `destination` (names case-insensitive).
    pub fn allows(&self, source: &str, name: &str, destination: &str) -> bool {
        match self {
            Self::Legacy => true,
            Self::Routes(routes) => routes.iter().any(|route| {
                route.source.eq_ignore_ascii_case(source)
                    && route.names.matches(name)
                    && route.destinations.iter().any(|d| d.eq_ignore_ascii_case(destination))
            }),
        }
    }

    /// Reads `KEYTURN_MIRROR_ROUTES`; every destination must be in `reachable` (the watched and mirror vaults).
    pub(crate) fn from_env(env: &Env<'_>, reachable: &[&VaultList]) -> Result<Self, Vec<ConfigError>> {
        let Some(raw) = env.get(MIRROR_ROUTES) else { return Ok(Self::Legacy) };
        let invalid = |problem: String| {
            vec![ConfigError::invalid(
                MIRROR_ROUTES,
                &raw,
                format!(
                    "';'-separated <source vault>[/<name or prefix*>]=<destination vault>[,<vault>] entries: {problem}"
                ),
            )]
        };
        let mut routes = Vec::new();
        let entries = Binding::parse(&raw, DESTINATION_VAULTS).map_err(invalid)?;
        for (position, Binding { vault: source, names, targets: destinations }) in entries.into_iter().enumerate() {
            if let Some(unknown) = destinations.iter().find(|d| !reachable.iter().any(|list| list.get(d).is_some())) {
                return Err(invalid(format!(
                    "entry {}: '{unknown}' is in neither KEYTURN_VAULTS nor KEYTURN_MIRROR_VAULTS, so keyturn cannot \
                     reach it",
                    position + 1
                )));
            }
            if destinations.contains(&source) {
                return Err(invalid(format!("entry {}: '{source}' routes to itself", position + 1)));
            }
            routes.push(MirrorRoute { source, names, destinations });
        }
        Ok(Self::Routes(routes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::lookup;

    fn parse(raw: Option<&str>) -> Result<MirrorRoutes, Vec<ConfigError>> {
        let vaults = VaultList::parse("KEYTURN_VAULTS", "kv-prod,kv-dev").unwrap();
        let mirrors = VaultList::parse("KEYTURN_MIRROR_VAULTS", "kv-dr,kv-eu").unwrap();
        let pairs: Vec<(&str, &str)> = raw.map(|r| vec![(MIRROR_ROUTES, r)]).unwrap_or_default();
        MirrorRoutes::from_env(&Env::new(&lookup(&pairs)), &[&vaults, &mirrors])
    }

    #[test]
    fn unset_keeps_the_lists_rule_and_routes_narrow_it_per_source_and_name() {
        assert_eq!(parse(None).unwrap(), MirrorRoutes::Legacy);
        assert!(MirrorRoutes::Legacy.allows("kv-dev", "anything", "kv-prod"));

        let routes = parse(Some("KV-prod/app-*,db-password=kv-dr,kv-eu; kv-dev=kv-dr")).unwrap();
        assert!(routes.allows("kv-prod", "app-web", "KV-EU") && routes.allows("kv-prod", "db-password", "kv-dr"));
        assert!(!routes.allows("kv-prod", "other", "kv-dr"), "a name no route of kv-prod covers");
        assert!(!routes.allows("kv-prod", "app-web", "kv-dev"), "a destination no route gives kv-prod");
        assert!(routes.allows("kv-dev", "anything", "kv-dr") && !routes.allows("kv-dev", "anything", "kv-eu"));
        assert!(!routes.allows("kv-other", "app-web", "kv-dr"), "a source with no route");
    }

    #[test]
    fn a_route_to_a_vault_keyturn_cannot_reach_or_to_itself_is_a_configuration_error() {
        for (raw, says) in [
            ("kv-prod=kv-nowhere", "'kv-nowhere' is in neither"),
            ("kv-prod=kv-prod", "routes to itself"),
            ("kv-prod", "entry 1 is not"),
            ("kv-prod/a b=kv-dr", "'a b' is not a secret name"),
        ] {
            let errors = parse(Some(raw)).unwrap_err();
            assert_eq!(errors[0].variable(), MIRROR_ROUTES, "{raw}");
            assert!(errors[0].to_string().contains(says), "{raw}: {}", errors[0]);
        }
    }
}
