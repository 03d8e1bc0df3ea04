//! The email channel against a real SMTP server: aiosmtpd (crates/notify/python/smtp_sink.py), run with the
//! interpreter in KEYTURN_PYTHON (scripts/test creates the venv from crates/notify/python/requirements.txt).
//! Plain SMTP, STARTTLS and implicit TLS with a certificate made here, and AUTH.

// Test helpers outside #[test] functions too: a panic there is a failed test with a line number.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use keyturn_notify::{ChannelKind, FailureKind, Notifier, NotifierOptions};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
use serde_json::Value;
use support::{LogCapture, TEST_TIMEOUT, notification};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::time::timeout;

const USER: &str = "keyturn";
const PASSWORD: &str = "p@ss:w0rd-smtp-secret";
/// PASSWORD percent-encoded for the URL's userinfo.
const PASSWORD_IN_URL: &str = "p%40ss%3Aw0rd-smtp-secret";
const ADDRESSES: &str = "from=keyturn%20%3Ckeyturn@example.com%3E&to=ops@example.com,security@example.com";

fn python() -> PathBuf {
    std::env::var_os("KEYTURN_PYTHON").map(PathBuf::from).filter(|p| p.exists()).unwrap_or_else(|| {
        panic!(
            "KEYTURN_PYTHON is unset or does not exist: it must name a Python with crates/notify/python/requirements.txt \
             installed (./scripts/test creates that venv and sets it)"
        )
    })
}

/// A CA and a server certificate for 127.0.0.1 signed by it, as PEM files in a temporary directory.
struct TestPki {
    dir: tempfile::TempDir,
    ca_pem: String,
}

impl TestPki {
    fn new() -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
        let issuer = Issuer::new(ca_params, ca_key);

        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.subject_alt_names.push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        let cert = params.signed_by(&key, &issuer).unwrap();

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
        Self { dir, ca_pem }
    }
}

/// The aiosmtpd process. `kill_on_drop` is its guard: a failing test still ends it, and closing its stdin
/// (which dropping does too) makes it exit on its own.
struct SmtpSink {
    _child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    port: u16,
}

impl SmtpSink {
    async fn start(mode: &str, pki: Option<&TestPki>, auth: bool) -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/smtp_sink.py");
        let mut command = Command::new(python());
        command.arg(script).args(["--mode", mode]);
        if let Some(pki) = pki {
            command.arg("--cert").arg(pki.dir.path().join("cert.pem"));
            command.arg("--key").arg(pki.dir.path().join("key.pem"));
        }
        if auth {
            command.args(["--user", USER, "--password", PASSWORD]);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {script} with KEYTURN_PYTHON: {e}"));
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = Self::next_line(&mut lines).await;
        let port = first["port"].as_u64().and_then(|p| u16::try_from(p).ok()).unwrap_or_else(|| panic!("{first}"));
        Self { _child: child, lines, port }
    }

    async fn next_line(lines: &mut Lines<BufReader<ChildStdout>>) -> Value {
        let line = timeout(Duration::from_secs(15), lines.next_line())
            .await
            .expect("the SMTP sink said nothing within 15 s")
            .unwrap()
            .expect("the SMTP sink exited (is aiosmtpd installed in KEYTURN_PYTHON?)");
        serde_json::from_str(&line).unwrap()
    }

    /// The next message the server accepted.
    async fn message(&mut self) -> Value {
        Self::next_line(&mut self.lines).await
    }

    fn options(pki: Option<&TestPki>) -> NotifierOptions {
        NotifierOptions {
            timeout: Duration::from_secs(10),
            extra_roots_pem: pki.map(|p| p.ca_pem.clone().into_bytes()),
            ..NotifierOptions::default()
        }
    }
}

fn assert_is_the_notification(message: &Value, event_id: &str) {
    assert_eq!(message["mail_from"], "keyturn@example.com");
    assert_eq!(message["rcpt_tos"], serde_json::json!(["ops@example.com", "security@example.com"]));
    let data = message["data"].as_str().unwrap();
    assert!(data.contains("Subject: [keyturn WARNING] Secret "), "{data}");
    assert!(data.contains(&format!("X-Keyturn-Event-Id: {event_id}")), "{data}");
    assert!(data.contains("From: keyturn <keyturn@example.com>"), "{data}");
    assert!(data.contains("multipart/alternative"), "{data}");
    assert!(data.contains("Content-Type: text/plain") && data.contains("Content-Type: text/html"), "{data}");
    assert!(data.contains("keyturn did not rotate it"), "{data}");
    assert!(!data.contains(PASSWORD) && !data.contains(PASSWORD_IN_URL), "{data}");
}

#[tokio::test]
async fn plain_smtp_on_loopback_delivers_the_email() {
    timeout(TEST_TIMEOUT, async {
        let mut sink = SmtpSink::start("plain", None, false).await;
        let list = format!("smtp://127.0.0.1:{}?{ADDRESSES}&tls=none", sink.port);
        let notifier = Notifier::new(&list, SmtpSink::options(None)).unwrap();
        let delivery = notifier.send(&notification("evt-mail-plain")).await.unwrap();
        assert_eq!(delivery.sent[0].kind(), ChannelKind::Email);
        let message = sink.message().await;
        assert_is_the_notification(&message, "evt-mail-plain");
        assert_eq!(message["tls"], false);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn starttls_with_authentication_delivers_the_email_and_logs_no_password() {
    let capture = LogCapture::default();
    let _guard = capture.install();
    timeout(TEST_TIMEOUT, async {
        let pki = TestPki::new();
        let mut sink = SmtpSink::start("starttls", Some(&pki), true).await;
        let list = format!("smtp://{USER}:{PASSWORD_IN_URL}@127.0.0.1:{}?{ADDRESSES}", sink.port);
        let notifier = Notifier::new(&list, SmtpSink::options(Some(&pki))).unwrap();
        notifier.send(&notification("evt-mail-starttls")).await.unwrap();
        let message = sink.message().await;
        assert_is_the_notification(&message, "evt-mail-starttls");
        assert_eq!((message["tls"].as_bool(), message["auth_user"].as_str()), (Some(true), Some(USER)));

        let shown = format!("{}{notifier:?}", capture.text());
        assert!(shown.contains(&format!("smtp://127.0.0.1:{}", sink.port)), "{shown}");
        assert!(!shown.contains(PASSWORD) && !shown.contains(PASSWORD_IN_URL), "{shown}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn implicit_tls_with_authentication_delivers_the_email() {
    timeout(TEST_TIMEOUT, async {
        let pki = TestPki::new();
        let mut sink = SmtpSink::start("smtps", Some(&pki), true).await;
        let list = format!("smtps://{USER}:{PASSWORD_IN_URL}@127.0.0.1:{}?{ADDRESSES}", sink.port);
        let notifier = Notifier::new(&list, SmtpSink::options(Some(&pki))).unwrap();
        notifier.send(&notification("evt-mail-smtps")).await.unwrap();
        let message = sink.message().await;
        assert_is_the_notification(&message, "evt-mail-smtps");
        assert_eq!((message["tls"].as_bool(), message["auth_user"].as_str()), (Some(true), Some(USER)));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_wrong_password_is_refused_and_named_without_the_password() {
    timeout(TEST_TIMEOUT, async {
        let pki = TestPki::new();
        let sink = SmtpSink::start("starttls", Some(&pki), true).await;
        let wrong = "wr0ng-Passw0rd-value";
        let list = format!("smtp://{USER}:{wrong}@127.0.0.1:{}?{ADDRESSES}", sink.port);
        let notifier = Notifier::new(&list, SmtpSink::options(Some(&pki))).unwrap();
        let err = notifier.send(&notification("evt-mail-auth")).await.unwrap_err();
        assert_eq!(err.failures[0].kind, FailureKind::Refused);
        let message = err.to_string();
        assert!(message.contains(&format!("channel 1 (smtp://127.0.0.1:{})", sink.port)), "{message}");
        assert!(message.contains("535"), "the server's reply code is shown: {message}");
        assert!(!message.contains(wrong) && !format!("{err:?}").contains(wrong), "{message}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_server_certificate_that_is_not_trusted_is_refused() {
    timeout(TEST_TIMEOUT, async {
        let pki = TestPki::new();
        let sink = SmtpSink::start("smtps", Some(&pki), true).await;
        let list = format!("smtps://{USER}:{PASSWORD_IN_URL}@127.0.0.1:{}?{ADDRESSES}", sink.port);
        // No extra roots: the test CA is unknown to the platform.
        let notifier = Notifier::new(&list, SmtpSink::options(None)).unwrap();
        let err = notifier.send(&notification("evt-mail-untrusted")).await.unwrap_err();
        assert_eq!(err.failures[0].kind, FailureKind::Unreachable, "{err}");
        assert!(err.to_string().to_lowercase().contains("certificate"), "{err}");
    })
    .await
    .unwrap();
}
