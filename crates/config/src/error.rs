//! Configuration errors: each names its variable and says what a valid value looks like.

use std::fmt;

/// One setting that is missing or invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    variable: &'static str,
    problem: String,
}

impl ConfigError {
    /// A required setting that is not set.
    pub(crate) fn missing(variable: &'static str, expected: impl fmt::Display) -> Self {
        Self { variable, problem: format!("is not set; expected {expected}") }
    }

    /// A setting whose value is not valid. Only for settings that are not secret: the value is quoted.
    pub(crate) fn invalid(variable: &'static str, value: &str, expected: impl fmt::Display) -> Self {
        Self { variable, problem: format!("'{value}' is not valid; expected {expected}") }
    }

    /// A setting that is present but wrong for a reason the message explains in full.
    pub(crate) fn other(variable: &'static str, problem: impl fmt::Display) -> Self {
        Self { variable, problem: problem.to_string() }
    }

    /// The environment variable at fault.
    pub fn variable(&self) -> &'static str {
        self.variable
    }
}

/// Every problem found in one read of the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid configuration (see docs/configuration.md): ")?;
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
