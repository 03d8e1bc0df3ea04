//! Real notification receivers on loopback for the end-to-end tests: [`HttpSink`] is the local stack's one
//! receiver ([`keyturn_local::receivers`]: keyturn's signed webhook, Slack and a Teams workflow, each checked
//! as the real one checks it), and [`SmtpSink`] is a real SMTP server (aiosmtpd, run with the interpreter in
//! `KEYTURN_PYTHON`).
//!
//! As everywhere in this crate, a missing prerequisite panics with what to do: a test fails, never skips.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use keyturn_local::receivers::{HttpSink, Mode, Received};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The signing secret of the sink's `/webhook` route.
pub const WEBHOOK_SECRET: &str = "whsec-e2e-0123456789abcdef";

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A receiver on 127.0.0.1 whose `/webhook` route verifies [`WEBHOOK_SECRET`].
///
/// # Panics
/// When no loopback port can be bound.
pub async fn http_sink() -> HttpSink {
    HttpSink::start(WEBHOOK_SECRET).await.unwrap_or_else(|error| panic!("binding the sink: {error}"))
}

/// Waits until `done` holds for what `sink` received.
///
/// # Panics
/// When it does not within `timeout`, listing what was received.
pub async fn wait_until(sink: &HttpSink, timeout: Duration, what: &str, done: impl Fn(&[Received]) -> bool) {
    if !sink.wait_until(timeout, done).await {
        panic!("the sink did not receive {what} within {timeout:?}; it received: {:#?}", sink.received());
    }
}

/// The Python with crates/notify/python/requirements.txt installed (`KEYTURN_PYTHON`, set by scripts/test).
///
/// # Panics
/// When it is unset or missing.
pub fn python() -> PathBuf {
    std::env::var_os("KEYTURN_PYTHON").map(PathBuf::from).filter(|p| p.exists()).unwrap_or_else(|| {
        panic!(
            "KEYTURN_PYTHON is unset or does not exist: it must name a Python with crates/notify/python/requirements.txt \
             installed (./scripts/test creates that venv and sets it)"
        )
    })
}

/// A real SMTP server (aiosmtpd, crates/notify/python/smtp_sink.py) without TLS on 127.0.0.1: the email
/// channel's loopback mode. The process is killed when this is dropped (and exits when its stdin closes).
#[derive(Debug)]
pub struct SmtpSink {
    _child: Child,
    pub port: u16,
    messages: Arc<Mutex<Vec<Value>>>,
}

impl SmtpSink {
    /// # Panics
    /// When the server does not start and report its port within 20 seconds.
    pub async fn start() -> Self {
        let script = crate::repo_root().join("crates/notify/python/smtp_sink.py");
        let mut child = Command::new(python())
            .arg(&script)
            .args(["--mode", "plain"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", script.display()));
        let stdout = child.stdout.take().unwrap_or_else(|| panic!("the SMTP sink has no stdout"));
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("the SMTP sink did not report its port within 20 s"))
            .unwrap_or_else(|e| panic!("reading the SMTP sink: {e}"))
            .unwrap_or_else(|| panic!("the SMTP sink exited before reporting its port"));
        let port = serde_json::from_str::<Value>(&first)
            .ok()
            .and_then(|v| v["port"].as_u64())
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or_else(|| panic!("the SMTP sink's first line is not {{\"port\": N}}: {first}"));
        let messages = Arc::new(Mutex::new(Vec::new()));
        let collected = messages.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(message) = serde_json::from_str::<Value>(&line) {
                    lock(&collected).push(message);
                }
            }
        });
        Self { _child: child, port, messages }
    }

    /// The channel as a `KEYTURN_NOTIFY` entry.
    pub fn channel(&self) -> String {
        format!("smtp://127.0.0.1:{}?from=keyturn@localhost&to=ops@localhost&tls=none&timeout=10", self.port)
    }

    /// The messages received so far: `{"mail_from", "rcpt_tos", "data", ...}`.
    pub fn messages(&self) -> Vec<Value> {
        lock(&self.messages).clone()
    }

    /// Waits until at least `count` messages whose data contains `needle` arrived.
    ///
    /// # Panics
    /// When they do not within `timeout`.
    pub async fn wait_for(&self, count: usize, needle: &str, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let found =
                self.messages().iter().filter(|m| m["data"].as_str().is_some_and(|d| d.contains(needle))).count();
            if found >= count {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{found} of {count} emails mentioning '{needle}' arrived within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
