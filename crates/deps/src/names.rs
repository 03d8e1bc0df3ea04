//! [`NameFilter`]: which object names a handler's notifications are about.
//!
//! Grammar (`KEYTURN_NOTIFY_NEW_VERSION_NAMES`): comma-separated entries; `prefix*` matches every name
//! starting with `prefix`, anything else matches that exact name; case-insensitive, like Key Vault names.
//! Unset or empty: every name.

/// A set of exact names and prefixes; empty means every name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameFilter {
    exact: Vec<String>,
    prefixes: Vec<String>,
}

/// A filter entry that is not a Key Vault name (or a name followed by `*`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{entry}' is not an object name or a name prefix followed by '*' (letters, digits and hyphens)")]
pub struct NameFilterError {
    pub entry: String,
}

impl NameFilter {
    /// Parses the grammar above.
    pub fn parse(raw: &str) -> Result<Self, NameFilterError> {
        let mut filter = Self::default();
        for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (name, prefix) = match entry.strip_suffix('*') {
                Some(prefix) => (prefix, true),
                None => (entry, false),
            };
            let valid =
                !name.is_empty() && name.len() <= 127 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
            if !valid {
                return Err(NameFilterError { entry: entry.to_owned() });
            }
            let name = name.to_ascii_lowercase();
            if prefix { filter.prefixes.push(name) } else { filter.exact.push(name) }
        }
        Ok(filter)
    }

    /// Whether notifications about `name` go out.
    pub fn matches(&self, name: &str) -> bool {
        if self.exact.is_empty() && self.prefixes.is_empty() {
            return true;
        }
        let name = name.to_ascii_lowercase();
        self.exact.contains(&name) || self.prefixes.iter().any(|p| name.starts_with(p.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_entries_match_every_name() {
        assert!(NameFilter::parse("").unwrap().matches("anything"));
        assert!(NameFilter::default().matches("db-password"));
    }

    #[test]
    fn prefixes_and_exact_names_match_case_insensitively() {
        let filter = NameFilter::parse(" app-* , DB-password").unwrap();
        assert!(filter.matches("app-token"));
        assert!(filter.matches("APP-"));
        assert!(filter.matches("db-PASSWORD"));
        assert!(!filter.matches("db-password-old"));
        assert!(!filter.matches("other"));
    }

    #[test]
    fn entries_that_are_not_names_are_refused() {
        for bad in ["a/b", "*", "pre*fix", "x y"] {
            assert_eq!(NameFilter::parse(bad).unwrap_err().entry, bad.trim(), "{bad}");
        }
    }
}
