//! The binding grammar every provider acting on something outside the vault shares (issue 13: tags choose,
//! the deployment authorizes): `;`-separated entries `<vault>[/<name>|<prefix>*[,...]]=<target>[,<target>...]`.
//!
//! A secret in `<vault>` whose name the entry's filter matches (every name when the entry names none) may
//! pick one of the entry's targets in its tags; nothing else may. What a target looks like (a storage account
//! resource id, an application object id) is the caller's [`TargetKind`]; targets are kept lowercase, without
//! a trailing slash, and compared case-insensitively.

use crate::notify::NameFilter;
use crate::vaults::is_object_name;

/// One entry: the secrets of a vault (and names) and the targets they may act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The vault's name, lowercase.
    pub vault: String,
    /// The secret names it applies to (every name when the entry names none).
    pub names: NameFilter,
    /// The targets, lowercase, without a trailing slash.
    pub targets: Vec<String>,
}

/// What a binding's targets must look like.
#[derive(Debug, Clone, Copy)]
pub struct TargetKind {
    /// The entry's shape for error messages, e.g. `<account resource id>`.
    pub placeholder: &'static str,
    /// What a valid target is, for error messages.
    pub description: &'static str,
    /// Whether a (lowercased, trimmed) target is valid.
    pub is_valid: fn(&str) -> bool,
}

impl Binding {
    /// Whether the secret `vault/name` may act on `target` (case-insensitive).
    pub fn allows(bindings: &[Self], vault: &str, name: &str, target: &str) -> bool {
        let target = normalise(target);
        bindings
            .iter()
            .any(|b| b.vault.eq_ignore_ascii_case(vault) && b.names.matches(name) && b.targets.contains(&target))
    }

    /// Parses a whole setting; the error names the entry by position and says what was wrong.
    pub fn parse(raw: &str, kind: TargetKind) -> Result<Vec<Self>, String> {
        let mut bindings = Vec::new();
        for (index, entry) in raw.split(';').map(str::trim).filter(|e| !e.is_empty()).enumerate() {
            let position = index + 1;
            let Some((scope, targets)) = entry.split_once('=') else {
                return Err(format!("entry {position} is not <vault>[/<name or prefix*>]={}", kind.placeholder));
            };
            let (vault, names) = match scope.trim().split_once('/') {
                Some((vault, names)) => (vault.trim(), Some(names.trim())),
                None => (scope.trim(), None),
            };
            if !is_object_name(vault) {
                return Err(format!("entry {position}: '{vault}' is not a vault name"));
            }
            let names = match names {
                None => NameFilter::default(),
                Some(names) => NameFilter::parse(names)
                    .map_err(|bad| format!("entry {position}: '{bad}' is not a secret name or name prefix*"))?,
            };
            let targets: Vec<String> = targets.split(',').map(normalise).filter(|t| !t.is_empty()).collect();
            if targets.is_empty() || !targets.iter().all(|t| (kind.is_valid)(t)) {
                return Err(format!("entry {position}: the targets must be {}", kind.description));
            }
            bindings.push(Self { vault: vault.to_ascii_lowercase(), names, targets });
        }
        Ok(bindings)
    }
}

fn normalise(target: &str) -> String {
    target.trim().trim_end_matches('/').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGITS: TargetKind = TargetKind {
        placeholder: "<number>",
        description: "numbers",
        is_valid: |t| t.chars().all(|c| c.is_ascii_digit()),
    };

    #[test]
    fn entries_bind_targets_to_a_vault_and_its_names() {
        let bindings = Binding::parse(" kv-one=1/ ; KV-two/app-*,db=2,3 ;", DIGITS).unwrap();
        assert!(Binding::allows(&bindings, "KV-ONE", "anything", "1"));
        assert!(!Binding::allows(&bindings, "kv-one", "anything", "2"));
        assert!(
            Binding::allows(&bindings, "kv-two", "app-web", "3") && Binding::allows(&bindings, "kv-two", "db", "2")
        );
        assert!(!Binding::allows(&bindings, "kv-two", "other", "2"), "a name outside the entry's filter");
        assert!(Binding::parse("", DIGITS).unwrap().is_empty());
        for (bad, says) in [
            ("kv-one", "entry 1 is not <vault>[/<name or prefix*>]=<number>"),
            ("kv=1;kv-two=x", "entry 2: the targets must be numbers"),
            ("=1", "entry 1: '' is not a vault name"),
            ("kv one=1", "'kv one' is not a vault name"),
            ("kv/a b=1", "'a b' is not a secret name"),
            ("kv=", "the targets must be numbers"),
        ] {
            let error = Binding::parse(bad, DIGITS).unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }
}
