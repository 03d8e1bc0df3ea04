//! The HTTP channels (webhook, Slack, Teams) against real receivers on loopback: what arrives, what happens
//! when a channel is down or slow, and that no channel secret ever shows.

// Test helpers outside #[test] functions too: a panic there is a failed test with a line number.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use keyturn_notify::{
    ChannelKind, FailureKind, Notifier, NotifierOptions, SIGNATURE_HEADER, SignatureError, verify_signature,
};
use support::{LogCapture, Mode, Sink, TEST_TIMEOUT, WEBHOOK_SECRET, notification, start_sink, start_sink_on};
use tokio::net::TcpListener;
use tokio::sync::Barrier;
use tokio::time::timeout;

const SLACK_PATH: &str = "/services/T0KEYTURN/B0KEYTURN/slackT0kenSlackT0ken";
const TEAMS_SIG: &str = "teamsSig-Xy12_Ab34-Cd56";

fn webhook(sink: &Sink) -> String {
    format!("webhook+http://{}/webhook/keyturn?secret={WEBHOOK_SECRET}", sink.base())
}
fn slack(sink: &Sink) -> String {
    format!("slack+http://{}{SLACK_PATH}", sink.base())
}
fn teams(sink: &Sink) -> String {
    format!("teams+http://{}/teams/workflows/abc/invoke?api-version=2016-06-01&sig={TEAMS_SIG}", sink.base())
}

#[tokio::test]
async fn webhook_slack_and_teams_receive_signed_well_formed_messages() {
    timeout(TEST_TIMEOUT, async {
        let sink = start_sink(Mode::Up).await;
        let list = format!("{}, {} ; {}", webhook(&sink), slack(&sink), teams(&sink));
        let notifier = Notifier::from_urls(&list).unwrap();
        let n = notification("evt-shape");

        let delivery = notifier.send(&n).await.unwrap();
        let kinds: Vec<_> = delivery.sent.iter().map(|c| c.kind()).collect();
        assert_eq!(kinds, [ChannelKind::Webhook, ChannelKind::Slack, ChannelKind::Teams]);
        assert!(delivery.already_accepted.is_empty());

        let received = sink.received();
        assert_eq!(received.len(), 3);
        for r in &received {
            assert_eq!(r.verdict, Ok(()), "{} was refused", r.path_and_query);
        }

        let hook = &sink.received_on("/webhook")[0];
        assert_eq!(hook.path_and_query, "/webhook/keyturn", "keyturn's secret= option is not sent on");
        assert_eq!(hook.headers["x-keyturn-event-id"], "evt-shape");
        assert_eq!(hook.headers["content-type"], "application/json");
        let json = hook.json();
        assert_eq!(json["event_id"], "evt-shape");
        assert_eq!(json["severity"], "warning");
        assert_eq!(json["object"]["vault"], n.vault.as_str());
        assert_eq!(json["object"]["name"], n.name.as_str());
        assert_eq!(json["action"]["type"], "not_rotated");
        assert!(
            json["portal_link"].as_str().unwrap().starts_with("https://portal.azure.com/#@/resource/subscriptions/")
        );
        // The same request, replayed six minutes later, is rejected by the documented check.
        let header = hook.headers[SIGNATURE_HEADER].to_str().unwrap();
        let later = Utc::now() + chrono::TimeDelta::minutes(6);
        assert!(matches!(
            verify_signature(WEBHOOK_SECRET.as_bytes(), header, &hook.body, later),
            Err(SignatureError::OutsideTolerance { .. })
        ));

        let slack = &sink.received_on("/services/")[0];
        assert_eq!(slack.path_and_query, SLACK_PATH);
        assert_eq!(slack.json()["blocks"][0]["type"], "header");
        assert!(slack.json()["text"].as_str().unwrap().starts_with("[keyturn WARNING] Secret "));

        let teams = &sink.received_on("/teams/")[0];
        assert_eq!(teams.path_and_query, format!("/teams/workflows/abc/invoke?api-version=2016-06-01&sig={TEAMS_SIG}"));
        let card = &teams.json()["attachments"][0]["content"];
        assert_eq!(card["body"][0]["color"], "Warning");

        for r in &received {
            let body = String::from_utf8_lossy(&r.body);
            assert!(
                !body.contains(WEBHOOK_SECRET) && !body.contains(TEAMS_SIG) && !body.contains("slackT0ken"),
                "{body}"
            );
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_channel_that_is_down_fails_the_send_and_gets_the_event_on_redelivery_while_the_others_do_not_repeat() {
    timeout(TEST_TIMEOUT, async {
        // The webhook's receiver is not running at all (connection refused); Slack answers 503.
        let webhook_port = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let webhook_addr = webhook_port.local_addr().unwrap();
        drop(webhook_port);
        let sink = start_sink(Mode::Up).await;
        let slack_sink = start_sink(Mode::Down).await;
        let list = format!(
            "webhook+http://{webhook_addr}/webhook?secret={WEBHOOK_SECRET} {} {}",
            slack(&slack_sink),
            teams(&sink)
        );
        let notifier = Notifier::from_urls(&list).unwrap();
        let n = notification("evt-down");

        let err = notifier.send(&n).await.unwrap_err();
        let failed: Vec<_> = err.failures.iter().map(|f| (f.channel.kind(), f.kind)).collect();
        assert_eq!(
            failed,
            [(ChannelKind::Webhook, FailureKind::Unreachable), (ChannelKind::Slack, FailureKind::Refused)]
        );
        assert_eq!(err.sent.iter().map(|c| c.kind()).collect::<Vec<_>>(), [ChannelKind::Teams]);
        let message = err.to_string();
        assert!(
            message.contains("2 of 3 notification channels did not accept event evt-down (retryable)"),
            "{message}"
        );
        assert!(message.contains(&format!("channel 1 (webhook+http://{webhook_addr})")), "{message}");
        assert!(message.contains(&format!("channel 2 (slack+http://{})", slack_sink.base())), "{message}");
        assert!(message.contains("HTTP 503 Service Unavailable"), "{message}");
        assert!(message.contains("Cannot POST ****"), "the receiver's echo of the path is scrubbed: {message}");
        for secret in [WEBHOOK_SECRET, "slackT0ken", TEAMS_SIG] {
            assert!(!message.contains(secret), "{message}");
            assert!(!format!("{err:?}").contains(secret));
        }

        // Both come back; Event Grid redelivers the same event.
        let webhook_sink = start_sink_on(TcpListener::bind(webhook_addr).await.unwrap(), Mode::Up);
        slack_sink.set_mode(Mode::Up);
        let delivery = notifier.send(&n).await.unwrap();
        assert_eq!(
            delivery.sent.iter().map(|c| c.kind()).collect::<Vec<_>>(),
            [ChannelKind::Webhook, ChannelKind::Slack]
        );
        assert_eq!(delivery.already_accepted.iter().map(|c| c.kind()).collect::<Vec<_>>(), [ChannelKind::Teams]);
        assert_eq!(webhook_sink.received().len(), 1);
        assert_eq!(webhook_sink.received()[0].verdict, Ok(()));
        assert_eq!(slack_sink.received().len(), 2, "one refused attempt, one accepted");
        assert_eq!(sink.received_on("/teams/").len(), 1, "Teams is not sent the event twice");

        // A third delivery of the same event sends nothing; a new event goes everywhere.
        let delivery = notifier.send(&n).await.unwrap();
        assert!(delivery.sent.is_empty());
        assert_eq!(delivery.already_accepted.len(), 3);
        notifier.send(&notification("evt-next")).await.unwrap();
        assert_eq!(sink.received_on("/teams/").len(), 2);
        assert_eq!(slack_sink.received().len(), 3);
        assert_eq!(webhook_sink.received().len(), 2);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn each_channel_is_bounded_by_its_own_timeout() {
    timeout(TEST_TIMEOUT, async {
        let hanging = start_sink(Mode::Hang).await;
        let list = format!("{}&timeout=0.3 {}?timeout=1 {}", webhook(&hanging), slack(&hanging), teams(&hanging));
        let options = NotifierOptions { timeout: Duration::from_millis(500), ..NotifierOptions::default() };
        let notifier = Notifier::new(&list, options).unwrap();

        let err = notifier.send(&notification("evt-slow")).await.unwrap_err();
        let details: Vec<_> = err.failures.iter().map(|f| (f.kind, f.detail.as_str())).collect();
        assert_eq!(
            details,
            [
                (FailureKind::TimedOut, "no answer within 300ms"),
                (FailureKind::TimedOut, "no answer within 1s"),
                (FailureKind::TimedOut, "no answer within 500ms"),
            ]
        );
        assert_eq!(hanging.received().len(), 0, "no request completed");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn channels_are_sent_concurrently() {
    timeout(TEST_TIMEOUT, async {
        // The receiver answers only once all three requests are waiting at once: sent one after another, the
        // first would never be answered and would time out.
        let sink = start_sink(Mode::Together(Arc::new(Barrier::new(3)))).await;
        let list = format!("{} {} {}", webhook(&sink), slack(&sink), teams(&sink));
        let options = NotifierOptions { timeout: Duration::from_secs(10), ..NotifierOptions::default() };
        let notifier = Notifier::new(&list, options).unwrap();
        let delivery = notifier.send(&notification("evt-together")).await.unwrap();
        assert_eq!(delivery.sent.len(), 3);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn secrets_never_reach_logs_errors_or_debug_output() {
    let capture = LogCapture::default();
    let _guard = capture.install();
    timeout(TEST_TIMEOUT, async {
        let sink = start_sink(Mode::Down).await;
        let list = format!("{} {} {}", webhook(&sink), slack(&sink), teams(&sink));
        let notifier = Notifier::from_urls(&list).unwrap();
        let failed = notifier.send(&notification("evt-secrets")).await.unwrap_err();
        sink.set_mode(Mode::Up);
        let delivered = notifier.send(&notification("evt-secrets")).await.unwrap();

        let bad = format!("{} slack+http://example.com{SLACK_PATH}", webhook(&sink));
        let build_error = Notifier::from_urls(&bad).unwrap_err();
        let short_secret = Notifier::from_urls(&format!("webhook+https://r.example/h?secret={}", &TEAMS_SIG[..12]));

        let shown = [
            capture.text(),
            failed.to_string(),
            format!("{failed:?}"),
            format!("{delivered:?}"),
            format!("{notifier:?}"),
            build_error.to_string(),
            format!("{build_error:?}"),
            format!("{short_secret:?}"),
        ];
        for text in &shown {
            for secret in [WEBHOOK_SECRET, "slackT0ken", "B0KEYTURN", TEAMS_SIG, &TEAMS_SIG[..12]] {
                assert!(!text.contains(secret), "'{secret}' shown in: {text}");
            }
        }
        // The capture did see the sends, named by endpoint: the scan above looked at real log lines.
        let logs = &shown[0];
        assert!(logs.contains("notification not accepted") && logs.contains("notification accepted"), "{logs}");
        assert!(logs.contains(&format!("slack+http://{}", sink.base())), "{logs}");
        assert!(logs.contains("evt-secrets"), "{logs}");
    })
    .await
    .unwrap();
}

/// The verification code docs/notifications.md gives receivers (crates/notify/receivers/), run on a real request.
#[tokio::test]
async fn the_documented_receiver_checks_accept_a_real_request_and_reject_a_tampered_or_old_one() {
    let python = std::env::var_os("KEYTURN_PYTHON").filter(|p| std::path::Path::new(p).exists()).unwrap_or_else(|| {
        panic!("KEYTURN_PYTHON is unset or does not exist: ./scripts/test creates the test venv and sets it")
    });
    timeout(TEST_TIMEOUT, async {
        let sink = start_sink(Mode::Up).await;
        let notifier = Notifier::from_urls(&webhook(&sink)).unwrap();
        notifier.send(&notification("evt-documented")).await.unwrap();
        let request = &sink.received()[0];
        let header = request.headers[SIGNATURE_HEADER].to_str().unwrap().to_owned();
        let dir = tempfile::tempdir().unwrap();
        let genuine = dir.path().join("genuine.json");
        let tampered = dir.path().join("tampered.json");
        std::fs::write(&genuine, &request.body).unwrap();
        std::fs::write(&tampered, String::from_utf8_lossy(&request.body).replace("warning", "info")).unwrap();

        let receivers = concat!(env!("CARGO_MANIFEST_DIR"), "/receivers");
        let run = |program: &std::ffi::OsStr, script: &str, body: &std::path::Path, extra: &[&str]| {
            let output = std::process::Command::new(program)
                .arg(format!("{receivers}/{script}"))
                .args([WEBHOOK_SECRET, &header])
                .arg(body)
                .args(extra)
                .output()
                .unwrap_or_else(|e| panic!("could not run {script}: {e}"));
            (output.status.success(), String::from_utf8_lossy(&output.stdout).trim().to_owned())
        };
        let bash = std::ffi::OsStr::new("bash");
        assert_eq!(run(&python, "verify_webhook.py", &genuine, &[]), (true, "valid".to_owned()));
        assert_eq!(run(&python, "verify_webhook.py", &tampered, &[]), (false, "INVALID".to_owned()));
        let in_ten_minutes = (Utc::now().timestamp() + 600).to_string();
        assert_eq!(run(&python, "verify_webhook.py", &genuine, &[&in_ten_minutes]), (false, "INVALID".to_owned()));
        assert_eq!(run(bash, "verify_webhook.sh", &genuine, &[]), (true, "valid".to_owned()));
        let (ok, said) = run(bash, "verify_webhook.sh", &tampered, &[]);
        assert!(!ok && said.starts_with("INVALID: no v1 signature matches"), "{said}");
    })
    .await
    .unwrap();
}
