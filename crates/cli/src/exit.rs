//! Exit codes scripts can rely on, and the error that carries one.

use std::fmt;
use std::process::ExitCode;

/// What the process exits with. The numbers are part of keyturn's interface (docs/cli.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: the command did what was asked.
    Ok,
    /// 1: the operation ran and failed: the endpoint answered an error, a vault call failed, a package
    /// did not validate.
    Failed,
    /// 2: the command line was wrong (clap reports these).
    Usage,
    /// 3: nothing answered at the endpoint (connection refused, timeout, unknown host).
    Unreachable,
    /// 4: something needed first is missing: a handler binary not built, settings not valid, no dev stack.
    Setup,
}

impl ExitStatus {
    pub fn code(self) -> u8 {
        match self {
            Self::Ok => 0,
            Self::Failed => 1,
            Self::Usage => 2,
            Self::Unreachable => 3,
            Self::Setup => 4,
        }
    }
}

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> Self {
        ExitCode::from(status.code())
    }
}

/// The table printed at the end of `keyturn --help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  the operation failed (an error answer, a failed vault call, an invalid package)
  2  usage error (unknown flag, missing argument)
  3  endpoint unreachable (nothing listening, timeout, unknown host)
  4  prerequisite missing (handler binary not built, invalid settings, no `keyturn dev` running)";

/// A command's failure: what went wrong, what to do about it, and the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandFailure {
    pub status: ExitStatus,
    pub message: String,
    /// The next step for the user, when there is an obvious one.
    pub hint: Option<String>,
}

impl CommandFailure {
    pub fn failed(message: impl Into<String>) -> Self {
        Self { status: ExitStatus::Failed, message: message.into(), hint: None }
    }

    pub fn unreachable(message: impl Into<String>) -> Self {
        Self { status: ExitStatus::Unreachable, message: message.into(), hint: None }
    }

    pub fn setup(message: impl Into<String>) -> Self {
        Self { status: ExitStatus::Setup, message: message.into(), hint: None }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for CommandFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CommandFailure {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_and_the_help_lists_each() {
        let all = [ExitStatus::Ok, ExitStatus::Failed, ExitStatus::Usage, ExitStatus::Unreachable, ExitStatus::Setup];
        assert_eq!(all.map(ExitStatus::code), [0, 1, 2, 3, 4]);
        for status in all {
            assert!(EXIT_CODES_HELP.contains(&format!("\n  {}  ", status.code())), "{status:?}");
        }
    }

    #[test]
    fn a_failure_shows_its_hint_on_its_own_line() {
        let failure =
            CommandFailure::setup("target/debug/near-expiry is missing").hint("run `cargo build -p near-expiry`");
        assert_eq!(
            failure.to_string(),
            "target/debug/near-expiry is missing\n  hint: run `cargo build -p near-expiry`"
        );
        assert_eq!(failure.status, ExitStatus::Setup);
    }
}
