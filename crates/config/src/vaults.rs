//! The vault allow-list and the rules a vault URL must meet.
//!
//! keyturn acts only on vaults listed here. Events name a vault by its name (`data.VaultName`); the name is
//! looked up in this list before any request is built, so an event naming another vault never causes a
//! network call and no token is ever sent to a host outside the list.

use std::fmt;
use std::net::IpAddr;

use url::{Host, Url};

use crate::{ConfigError, Env};

/// The vaults keyturn may act on.
pub const VAULTS: &str = "KEYTURN_VAULTS";
/// The vaults `new-version` replicates secrets to.
pub const MIRROR_VAULTS: &str = "KEYTURN_MIRROR_VAULTS";

/// The DNS suffixes of Key Vault in the Azure clouds (public, China, US Government).
pub const KEY_VAULT_DNS_SUFFIXES: &[&str] = &["vault.azure.net", "vault.azure.cn", "vault.usgovcloudapi.net"];

const EXPECTED: &str = "a comma-separated list of vault names (contoso), name=https://url entries \
     (contoso=https://contoso.vault.azure.net, local=https://127.0.0.1:8443) or vault URLs";

/// What kind of host serves a vault, which decides how strictly its authentication challenge is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointKind {
    /// A real Key Vault host (`<name>.vault.azure.net` and the other clouds' suffixes).
    Azure,
    /// A loopback endpoint (a local emulator), explicitly configured.
    Local,
}

impl EndpointKind {
    /// Whether the SDK must check that the vault's 401 challenge names a resource the vault host belongs to.
    /// Real vaults keep the check on; a loopback host cannot pass it, and a loopback endpoint can only be
    /// configured explicitly, so turning it off there opens nothing to a remote attacker.
    pub fn verify_challenge_resource(self) -> bool {
        matches!(self, Self::Azure)
    }
}

/// One allowed vault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultEntry {
    name: String,
    url: Url,
    kind: EndpointKind,
}

impl VaultEntry {
    /// The vault's name, lowercase (Key Vault names are case-insensitive).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The vault's URL: `https://host[:port]/`, nothing else.
    pub fn url(&self) -> &Url {
        &self.url
    }
    pub fn kind(&self) -> EndpointKind {
        self.kind
    }

    /// Parses one entry: `name`, `name=https://url` or `https://url`.
    pub fn parse(entry: &str) -> Result<Self, String> {
        let entry = entry.trim();
        let (name, url) = match entry.split_once('=') {
            Some((name, url)) => (Some(name.trim()), Some(url.trim())),
            None if entry.contains("://") => (None, Some(entry)),
            None => (Some(entry), None),
        };
        if let Some(name) = name {
            check_vault_name(name)?;
        }
        let Some(url) = url else {
            // A bare name is a vault in the public cloud.
            let name = name.unwrap_or_default().to_ascii_lowercase();
            let url = Url::parse(&format!("https://{name}.vault.azure.net/"))
                .map_err(|e| format!("'{entry}' does not make a vault URL: {e}"))?;
            return Ok(Self { name, url, kind: EndpointKind::Azure });
        };
        let url = Url::parse(url).map_err(|e| format!("'{url}' is not a URL: {e}"))?;
        if url.scheme() != "https" {
            return Err(format!("'{url}' is not https (the Azure SDK sends tokens over https only)"));
        }
        if !url.username().is_empty() || url.password().is_some() || url.query().is_some() || url.fragment().is_some() {
            return Err(format!("'{url}' must be a bare https://host[:port] URL"));
        }
        if url.path() != "/" {
            return Err(format!("'{url}' has a path; a vault URL is a bare https://host[:port]"));
        }
        let kind = match url.host() {
            Some(Host::Ipv4(ip)) if IpAddr::V4(ip).is_loopback() => EndpointKind::Local,
            Some(Host::Ipv6(ip)) if IpAddr::V6(ip).is_loopback() => EndpointKind::Local,
            Some(Host::Domain(host)) if host.eq_ignore_ascii_case("localhost") => EndpointKind::Local,
            Some(Host::Domain(host)) if azure_suffix(host).is_some() => EndpointKind::Azure,
            _ => {
                return Err(format!(
                    "'{url}' is neither a Key Vault host (<name>.{}) nor a loopback address",
                    KEY_VAULT_DNS_SUFFIXES.join(", <name>.")
                ));
            }
        };
        let name = match (kind, name) {
            (EndpointKind::Local, None) => {
                return Err(format!("'{url}' is a local endpoint and needs a name: <name>={url}"));
            }
            (EndpointKind::Local, Some(name)) => name.to_ascii_lowercase(),
            (EndpointKind::Azure, name) => {
                // A real vault's name is its host's first label; events carry that name, so a different
                // configured name could never match an event and is surely a mistake.
                let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
                let label = host.split('.').next().unwrap_or_default().to_owned();
                check_vault_name(&label)?;
                if let Some(name) = name
                    && !name.eq_ignore_ascii_case(&label)
                {
                    return Err(format!("'{name}' does not match the vault '{label}' of '{url}'"));
                }
                label
            }
        };
        Ok(Self { name, url, kind })
    }
}

impl fmt::Display for VaultEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, self.url)
    }
}

/// The Key Vault DNS suffix `host` is directly under (`<name>.<suffix>`), if any.
fn azure_suffix(host: &str) -> Option<&'static str> {
    let host = host.to_ascii_lowercase();
    KEY_VAULT_DNS_SUFFIXES.iter().copied().find(|suffix| {
        host.strip_suffix(suffix)
            .and_then(|rest| rest.strip_suffix('.'))
            .is_some_and(|label| !label.is_empty() && !label.contains('.'))
    })
}

/// Key Vault's naming rule: 3-24 characters, letters, digits and hyphens, starting with a letter.
fn check_vault_name(name: &str) -> Result<(), String> {
    let valid = (3..=24).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if valid {
        Ok(())
    } else {
        Err(format!("'{name}' is not a vault name (3-24 letters, digits and hyphens, starting with a letter)"))
    }
}

/// Key Vault's rule for secret, key and certificate names.
pub fn is_object_name(name: &str) -> bool {
    (1..=127).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Key Vault's form of a version id, as it issues them: 32 lowercase hexadecimal characters. An event's
/// `data.Version` is checked against it before it reaches an SDK call, which pastes it into the request
/// path: whoever can post an event must not choose that path.
pub fn is_object_version(version: &str) -> bool {
    version.len() == 32 && version.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A list of allowed vaults, looked up by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VaultList {
    entries: Vec<VaultEntry>,
}

impl VaultList {
    /// Parses a comma-separated list of entries; `variable` only names the source in errors.
    pub fn parse(variable: &'static str, raw: &str) -> Result<Self, Vec<ConfigError>> {
        let mut entries: Vec<VaultEntry> = Vec::new();
        let mut errors = Vec::new();
        for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match VaultEntry::parse(part) {
                Ok(entry) if entries.iter().any(|e| e.name == entry.name) => {
                    errors.push(ConfigError::other(variable, format!("vault '{}' is listed twice", entry.name)));
                }
                Ok(entry) => entries.push(entry),
                Err(problem) => errors.push(ConfigError::other(variable, format!("{problem}; expected {EXPECTED}"))),
            }
        }
        if errors.is_empty() { Ok(Self { entries }) } else { Err(errors) }
    }

    pub(crate) fn from_env(env: &Env<'_>, variable: &'static str, required: bool) -> Result<Self, Vec<ConfigError>> {
        match env.get(variable) {
            Some(raw) => Self::parse(variable, &raw),
            None if required => Err(vec![ConfigError::missing(variable, EXPECTED)]),
            None => Ok(Self::default()),
        }
    }

    pub fn entries(&self) -> &[VaultEntry] {
        &self.entries
    }

    /// The entry for the vault an event names (case-insensitive), or `None` when it is not allowed.
    pub fn get(&self, name: &str) -> Option<&VaultEntry> {
        self.entries.iter().find(|e| e.name.eq_ignore_ascii_case(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(entry: &str) -> VaultEntry {
        VaultEntry::parse(entry).unwrap()
    }

    #[test]
    fn a_bare_name_is_a_public_cloud_vault() {
        let entry = one("Contoso-KV");
        assert_eq!(entry.name(), "contoso-kv");
        assert_eq!(entry.url().as_str(), "https://contoso-kv.vault.azure.net/");
        assert_eq!(entry.kind(), EndpointKind::Azure);
        assert!(entry.kind().verify_challenge_resource());
    }

    #[test]
    fn named_and_bare_urls_of_every_cloud_are_real_vaults() {
        for (entry, name) in [
            ("contoso=https://contoso.vault.azure.net", "contoso"),
            ("https://fabrikam.vault.azure.cn/", "fabrikam"),
            ("gov=https://GOV.vault.usgovcloudapi.net", "gov"),
        ] {
            let parsed = one(entry);
            assert_eq!(parsed.name(), name, "{entry}");
            assert_eq!(parsed.kind(), EndpointKind::Azure, "{entry}");
            assert_eq!(parsed.url().path(), "/");
        }
    }

    #[test]
    fn loopback_endpoints_are_local_and_skip_the_challenge_resource_check() {
        for entry in [
            "local=https://127.0.0.1:8443",
            "emu=https://127.9.9.9:1",
            "six=https://[::1]:8443",
            "lhost=https://localhost:1",
        ] {
            let parsed = one(entry);
            assert_eq!(parsed.kind(), EndpointKind::Local, "{entry}");
            assert!(!parsed.kind().verify_challenge_resource());
        }
    }

    #[test]
    fn anything_else_is_refused_with_the_reason() {
        for (entry, reason) in [
            ("local=http://127.0.0.1:8443", "is not https"),
            ("evil=https://evil.example.com", "neither a Key Vault host"),
            ("https://contoso.vault.azure.net.evil.com", "neither a Key Vault host"),
            ("https://a.b.vault.azure.net", "neither a Key Vault host"),
            ("https://vault.azure.net", "neither a Key Vault host"),
            ("lan=https://10.0.0.5", "neither a Key Vault host"),
            ("https://127.0.0.1:8443", "needs a name"),
            ("other=https://contoso.vault.azure.net", "does not match the vault 'contoso'"),
            ("contoso=https://contoso.vault.azure.net/secrets", "has a path"),
            ("contoso=https://user:pw@contoso.vault.azure.net", "bare https://host"),
            ("1bad", "is not a vault name"),
            ("ab", "is not a vault name"),
            ("bad_name", "is not a vault name"),
        ] {
            let error = VaultEntry::parse(entry).unwrap_err();
            assert!(error.contains(reason), "{entry}: {error}");
        }
    }

    #[test]
    fn lists_are_looked_up_case_insensitively_and_duplicates_are_refused() {
        let list = VaultList::parse(VAULTS, " contoso , local=https://127.0.0.1:9,").unwrap();
        assert_eq!(list.entries().len(), 2);
        assert_eq!(list.get("CONTOSO").map(VaultEntry::name), Some("contoso"));
        assert_eq!(list.get("local").map(VaultEntry::kind), Some(EndpointKind::Local));
        assert!(list.get("fabrikam").is_none());

        let errors = VaultList::parse(VAULTS, "contoso,https://contoso.vault.azure.net,evil=http://x").unwrap_err();
        assert_eq!(errors.len(), 2);
        assert!(errors[0].to_string().starts_with("KEYTURN_VAULTS: vault 'contoso' is listed twice"));
        assert!(errors[1].to_string().contains("expected a comma-separated list"));
    }
    #[test]
    fn versions_are_32_lowercase_hex_as_key_vault_issues_them_and_every_fixture_has_one() {
        assert!(is_object_version("ee059b2bb5bc48398a53b168c6cdcb10"));
        for bad in [
            "",
            "v1",
            "EE059B2BB5BC48398A53B168C6CDCB10",
            "ee059b2bb5bc48398a53b168c6cdcb1",
            "../../keys/signing-key00000000",
            "ee059b2bb5bc48398a53b168c6cdcb10?x",
            "ee059b2bb5bc48398a53b168c6cdcb1g",
        ] {
            assert!(!is_object_version(bad), "{bad:?}");
        }
        // The real events keyturn round-trips (crates/events/fixtures, variants included) carry versions of
        // that form (after the tolerant decoder trims whitespace).
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events/fixtures");
        let mut seen = 0;
        for dir in [root.clone(), root.join("variants")] {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let text = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
                for line in text.lines().filter(|l| l.to_ascii_lowercase().contains("\"version\":")) {
                    let value = line.split_once(':').map(|(_, v)| v.trim().trim_end_matches(',').trim_matches('"'));
                    if let Some(version) = value.filter(|v| *v != "null") {
                        assert!(is_object_version(version.trim()), "{}: {version:?}", dir.display());
                        seen += 1;
                    }
                }
            }
        }
        assert!(seen >= 20, "only {seen} versions found in the fixtures");
    }
}
