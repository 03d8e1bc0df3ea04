//! Structured logs: one JSON object per line on stdout, which the Functions host (and Lambda) capture.

use std::sync::OnceLock;

use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// The environment variable holding the log filter, in `RUST_LOG` syntax (e.g. `info,host=debug`).
pub const LOG_FILTER_VARIABLE: &str = "KEYTURN_LOG";

const DEFAULT_FILTER: &str = "info";

/// Installs the process-wide JSON subscriber on stdout, filtered by `KEYTURN_LOG` (default `info`).
///
/// Idempotent: only the first call in a process does anything, so both a handler's `main` and [`crate::run`]
/// may call it. An invalid filter falls back to `info` and says so in the log rather than failing startup.
pub fn init_logging() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let requested = std::env::var(LOG_FILTER_VARIABLE).ok();
        let (filter, invalid) = match requested.as_deref().map(EnvFilter::try_new) {
            None => (EnvFilter::new(DEFAULT_FILTER), None),
            Some(Ok(filter)) => (filter, None),
            Some(Err(error)) => (EnvFilter::new(DEFAULT_FILTER), Some(error)),
        };
        let installed = tracing::subscriber::set_global_default(json_subscriber(filter, std::io::stdout));
        // Another subscriber already set (a test harness, an embedding binary) is fine: logs go there.
        if installed.is_ok()
            && let Some(error) = invalid
        {
            tracing::warn!(
                variable = LOG_FILTER_VARIABLE,
                %error,
                "invalid log filter; using \"{DEFAULT_FILTER}\""
            );
        }
    });
}

/// The subscriber [`init_logging`] installs, writing to `writer`: flat JSON objects (`message` and the event's
/// fields at the top level) plus the current span's fields under `span`, so a handler's own log lines carry
/// the invocation id.
pub(crate) fn json_subscriber<W>(filter: EnvFilter, writer: W) -> impl Subscriber + Send + Sync
where
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_ansi(false)
        .with_env_filter(filter)
        .with_writer(writer)
        .finish()
}

/// Captures what [`json_subscriber`] writes, for tests that assert on log lines.
#[cfg(test)]
pub(crate) mod capture {
    use std::io;
    use std::sync::{Arc, Mutex, PoisonError};

    use serde_json::Value;
    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    pub(crate) struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Captured {
        /// Every line written so far, each parsed as JSON (panics on a line that is not).
        pub(crate) fn lines(&self) -> Vec<Value> {
            let bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner).clone();
            String::from_utf8(bytes).unwrap().lines().map(|line| serde_json::from_str(line).unwrap()).collect()
        }
    }

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'writer> MakeWriter<'writer> for Captured {
        type Writer = Captured;
        fn make_writer(&'writer self) -> Captured {
            self.clone()
        }
    }
}
