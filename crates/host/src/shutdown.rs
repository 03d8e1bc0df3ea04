//! Stop signals and the exit codes they lead to.
//!
//! The Functions host does not restart a handler that exits with 0, so keyturn never exits 0: a stop asked
//! for by a signal exits with the shell convention 128 + signal number, after draining.

use std::process::ExitCode;

/// Why the process is stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGTERM: the platform is recycling the instance.
    Terminate,
    /// SIGINT: Ctrl-C in a terminal (`func start`, `keyturn dev`).
    Interrupt,
}

impl Stop {
    /// 143 for SIGTERM, 130 for SIGINT: never 0, so the Functions host treats the exit as a stop, not as a
    /// handler that finished for good.
    pub fn exit_code(self) -> u8 {
        match self {
            Stop::Terminate => 143,
            Stop::Interrupt => 130,
        }
    }
}

impl From<Stop> for ExitCode {
    fn from(stop: Stop) -> Self {
        ExitCode::from(stop.exit_code())
    }
}

/// Exit code when the environment names no adapter to run (e.g. `FUNCTIONS_CUSTOMHANDLER_PORT` missing):
/// `EX_CONFIG` from sysexits.h.
pub const EXIT_NO_ADAPTER: u8 = 78;

/// Exit code when the adapter cannot start (the port cannot be bound) or its server stopped unasked.
pub const EXIT_SERVER_FAILED: u8 = 1;

/// Resolves on the first SIGTERM or SIGINT.
///
/// Handlers are installed when this is called, not when it is first polled, so that a signal arriving during
/// startup is not lost. If a handler cannot be installed (no signal support), that signal is simply never
/// reported; the error is logged.
pub fn signal() -> impl std::future::Future<Output = Stop> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let terminate = signal(SignalKind::terminate())
            .inspect_err(|error| tracing::error!(%error, "cannot listen for SIGTERM"))
            .ok();
        let interrupt = signal(SignalKind::interrupt())
            .inspect_err(|error| tracing::error!(%error, "cannot listen for SIGINT"))
            .ok();
        async move {
            let terminate = async {
                match terminate {
                    Some(mut stream) => stream.recv().await,
                    None => std::future::pending().await,
                }
            };
            let interrupt = async {
                match interrupt {
                    Some(mut stream) => stream.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = terminate => Stop::Terminate,
                _ = interrupt => Stop::Interrupt,
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            match tokio::signal::ctrl_c().await {
                Ok(()) => Stop::Interrupt,
                Err(error) => {
                    tracing::error!(%error, "cannot listen for Ctrl-C");
                    std::future::pending().await
                }
            }
        }
    }
}
