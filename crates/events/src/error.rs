//! The one error this crate returns.

use std::fmt;

/// Why a payload could not be decoded, and where: `path` is the JSON path of the offending value
/// (`data.EXP`, `eventType`), or `(event)` when the payload as a whole is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    path: String,
    message: String,
}

impl DecodeError {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        let path = path.into();
        // serde_path_to_error says "." for the root and "?" where it could not tell (a syntax error).
        let path = if matches!(path.as_str(), "" | "." | "?") { "(event)".to_owned() } else { path };
        Self { path, message: message.into() }
    }

    /// From a serde failure located by `serde_path_to_error`, with `prefix` naming where the decoded
    /// value sits in the whole event (`data` for the payload).
    pub(crate) fn from_serde(prefix: &str, err: serde_path_to_error::Error<serde_json::Error>) -> Self {
        let inner = err.path().to_string();
        let path = match (prefix.is_empty(), inner.as_str()) {
            (true, _) => inner,
            (false, "" | "." | "?") => prefix.to_owned(),
            (false, _) => format!("{prefix}.{inner}"),
        };
        Self::new(path, err.into_inner().to_string())
    }

    /// The JSON path of the value that failed, e.g. `data.EXP`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What was wrong with it.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for DecodeError {}
