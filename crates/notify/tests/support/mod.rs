//! Shared by the integration tests: a notification from a real event fixture, a tracing capture, and the
//! local stack's HTTP receiver on loopback ([`keyturn_local::receivers`]), which checks what a real webhook
//! receiver, Slack or Teams would check.
// Each test binary uses part of this module; and, as in the tests themselves, a panic here is a failed test
// with a line number (clippy's allow-unwrap-in-tests only covers #[test] functions).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keyturn_notify::{Action, Notification};
use tokio::net::TcpListener;

/// The signing secret every sink's `/webhook` route verifies with.
pub(crate) const WEBHOOK_SECRET: &str = "whsec-test-0123456789abcdef";

/// Every test is bounded by this.
pub(crate) const TEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A near-expiry notification for the secret in the events crate's fixture, with `event_id`.
pub(crate) fn notification(event_id: &str) -> Notification {
    let event =
        keyturn_events::Event::from_slice(include_bytes!("../../../events/fixtures/eventgrid-secret-near-expiry.json"))
            .unwrap();
    let mut n = Notification::for_event(
        &event,
        Action::NotRotated { reason: "the secret has no keyturn rotation policy; rotate it by hand.".into() },
    )
    .unwrap();
    n.event_id = event_id.to_owned();
    n
}

/// Everything tracing writes while installed, at every level, from every crate.
#[derive(Clone, Default)]
pub(crate) struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    /// Installs the capture for the current thread (the tests run on a current-thread runtime).
    pub(crate) fn install(&self) -> tracing::subscriber::DefaultGuard {
        let writer = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub(crate) use keyturn_local::receivers::{HttpSink as Sink, Mode};

/// A receiver on a free loopback port (the local stack's, checking what the real services check), answering
/// in `mode`, its `/webhook` route verifying [`WEBHOOK_SECRET`].
pub(crate) async fn start_sink(mode: Mode) -> Sink {
    let sink = Sink::start(WEBHOOK_SECRET).await.unwrap();
    sink.set_mode(mode);
    sink
}

/// The same on `listener` (a receiver brought back on the address it was down on).
pub(crate) fn start_sink_on(listener: TcpListener, mode: Mode) -> Sink {
    let sink = Sink::start_on(listener, WEBHOOK_SECRET).unwrap();
    sink.set_mode(mode);
    sink
}
