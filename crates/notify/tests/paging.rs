//! The PagerDuty and Opsgenie channels through a real [`Notifier`] against the local receivers that follow
//! the vendors' contracts (crates/local/src/paging.rs): one alert per object version, resolved or closed
//! when keyturn rotates, retries on 429 and 5xx, refusals not retried, and keys that never show.

// Test helpers outside #[test] functions too: a panic there is a failed test with a line number.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keyturn_events::Event;
use keyturn_local::paging::{OpsgenieReceiver, PagerDutyReceiver};
use keyturn_notify::{Action, ChannelKind, FailureKind, Notification, Notifier, NotifierOptions, alert_key};
use tokio::time::timeout;

const ROUTING_KEY: &str = "R0utingKeyR0utingKeyR0utingKey12";
const GENIE_KEY: &str = "5f0c8a3e-1b2d-4c6e-9a7f-0e1d2c3b4a59";
const TEST_TIMEOUT: Duration = Duration::from_secs(30);

fn event(fixture: &[u8]) -> Event {
    Event::from_slice(fixture).unwrap()
}

/// keyturn could not rotate a secret nearing expiry: a warning.
fn manual_rotation_due(event_id: &str) -> Notification {
    let e = event(include_bytes!("../../events/fixtures/eventgrid-secret-near-expiry.json"));
    let mut n = Notification::for_event(&e, Action::NotRotated { reason: "no rotation policy.".into() }).unwrap();
    n.event_id = event_id.to_owned();
    n
}

/// keyturn rotated the same version away.
fn rotated(event_id: &str) -> Notification {
    let e = event(include_bytes!("../../events/fixtures/eventgrid-secret-near-expiry.json"));
    let mut n = Notification::for_event(&e, Action::Rotated { new_version: "fdf97a4c".into() }).unwrap();
    n.event_id = event_id.to_owned();
    n
}

fn expired(event_id: &str) -> Notification {
    let e = event(include_bytes!("../../events/fixtures/eventgrid-key-expired.json"));
    let mut n =
        Notification::for_event(&e, Action::NotRotated { reason: "keys are not rotated here.".into() }).unwrap();
    n.event_id = event_id.to_owned();
    n
}

fn new_version(event_id: &str) -> Notification {
    let e = event(include_bytes!("../../events/fixtures/eventgrid-secret-new-version.json"));
    let mut n = Notification::for_event(&e, Action::Informed { summary: "A new version exists.".into() }).unwrap();
    n.event_id = event_id.to_owned();
    n
}

/// Everything tracing writes while installed.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let writer = self.clone();
        tracing::subscriber::set_default(
            tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .finish(),
        )
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn pagerduty_triggers_once_per_object_version_and_a_rotation_resolves_it() {
    timeout(TEST_TIMEOUT, async {
        let pd = PagerDutyReceiver::start().await.unwrap();
        let notifier = Notifier::from_urls(&pd.channel_url(ROUTING_KEY)).unwrap();
        assert_eq!(notifier.channels().next().unwrap().kind(), ChannelKind::PagerDuty);

        let first = manual_rotation_due("evt-1");
        let key = alert_key(&first);
        assert!(key.starts_with("keyturn:") && key.ends_with(&first.version.clone().unwrap().to_ascii_lowercase()));
        notifier.send(&first).await.unwrap();
        // A later sweep or another event about the same version: the same alert, not a second one.
        notifier.send(&manual_rotation_due("evt-2")).await.unwrap();
        let alerts = pd.alerts(ROUTING_KEY);
        assert_eq!(alerts.len(), 1);
        let alert = &alerts[&key];
        assert_eq!((alert.status.as_str(), alert.severity.as_str(), alert.triggers), ("triggered", "warning", 2));
        assert_eq!(alert.summary, first.title());
        let payload = &alert.last_trigger["payload"];
        assert_eq!(payload["source"], first.vault.as_str());
        assert_eq!(payload["custom_details"]["Object"], format!("Secret {}", first.name));

        notifier.send(&rotated("evt-3")).await.unwrap();
        assert_eq!(pd.alerts(ROUTING_KEY)[&key].status, "resolved");
        let actions: Vec<_> = pd.requests().iter().map(|r| (r.status, r.event_action.clone().unwrap())).collect();
        assert_eq!(actions, [(202, "trigger".into()), (202, "trigger".into()), (202, "resolve".into())]);

        // A new version is news, not a page: nothing is sent and the channel counts it as accepted.
        let delivery = notifier.send(&new_version("evt-4")).await.unwrap();
        assert_eq!(delivery.sent.len(), 1);
        assert_eq!(pd.requests().len(), 3);
        pd.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn throttled_pages_are_retried_and_a_pager_that_stays_down_gets_the_page_on_the_next_attempt() {
    timeout(TEST_TIMEOUT, async {
        let pd = PagerDutyReceiver::start().await.unwrap();
        let notifier = Notifier::from_urls(&pd.channel_url(ROUTING_KEY)).unwrap();
        pd.throttle_next(2);
        notifier.send(&expired("evt-throttled")).await.unwrap();
        let statuses: Vec<u16> = pd.requests().iter().map(|r| r.status).collect();
        assert_eq!(statuses, [429, 429, 202]);

        let logs = Logs::default();
        let _guard = logs.install();
        pd.fail_next(3);
        let err = notifier.send(&manual_rotation_due("evt-down")).await.unwrap_err();
        assert_eq!(err.failures.len(), 1);
        let failure = &err.failures[0];
        assert_eq!(failure.kind, FailureKind::Refused);
        assert!(failure.detail.contains("HTTP 500") && failure.detail.contains("after 3 attempts"), "{failure}");
        assert!(!pd.alerts(ROUTING_KEY).contains_key(&alert_key(&manual_rotation_due("x"))));

        // The caller tries again later (Event Grid's redelivery, the next sweep): now it is paged.
        notifier.send(&manual_rotation_due("evt-down")).await.unwrap();
        assert_eq!(pd.alerts(ROUTING_KEY)[&alert_key(&manual_rotation_due("x"))].status, "triggered");
        let text = format!("{}{err}{err:?}{notifier:?}", logs.text());
        assert!(!text.contains(ROUTING_KEY), "the routing key leaked: {text}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_refused_event_is_not_retried_and_names_the_channel_only() {
    timeout(TEST_TIMEOUT, async {
        let og = OpsgenieReceiver::start(vec!["another-key".into()]).await.unwrap();
        let notifier = Notifier::from_urls(&og.channel_url(GENIE_KEY)).unwrap();
        let err = notifier.send(&expired("evt-401")).await.unwrap_err();
        let failure = &err.failures[0];
        assert_eq!(failure.kind, FailureKind::Refused);
        assert!(failure.detail.contains("401") && failure.detail.contains("Could not authenticate"), "{failure}");
        assert_eq!(og.requests().len(), 1, "a 401 is not retried");
        let text = format!("{err}{err:?}");
        assert!(text.contains("opsgenie+http://127.0.0.1"), "{text}");
        assert!(!text.contains(GENIE_KEY), "{text}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn opsgenie_creates_by_alias_counts_repeats_and_a_rotation_closes_the_alert() {
    timeout(TEST_TIMEOUT, async {
        let og = OpsgenieReceiver::start(vec![GENIE_KEY.into()]).await.unwrap();
        let notifier = Notifier::from_urls(&og.channel_url(GENIE_KEY)).unwrap();
        og.throttle_next(1);
        notifier.send(&manual_rotation_due("evt-1")).await.unwrap();
        notifier.send(&manual_rotation_due("evt-2")).await.unwrap();
        let key = alert_key(&manual_rotation_due("x"));
        let alert = &og.alerts()[&key];
        assert_eq!((alert.status.as_str(), alert.priority.as_str(), alert.count), ("open", "P3", 2));
        assert!(alert.tags.contains(&"severity:warning".to_owned()), "{:?}", alert.tags);
        assert_eq!(alert.last_create["source"], "keyturn");

        notifier.send(&rotated("evt-3")).await.unwrap();
        let alert = &og.alerts()[&key];
        assert_eq!(alert.status, "closed");
        assert_eq!(alert.close_note.as_deref(), Some("keyturn rotated it: the new version is fdf97a4c."));
        let requests: Vec<_> = og.requests().iter().map(|r| (r.status, r.action.clone())).collect();
        assert_eq!(
            requests,
            [(429, "create".into()), (202, "create".into()), (202, "create".into()), (202, "close".into())]
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_critical_only_pager_hears_nothing_below_critical() {
    timeout(TEST_TIMEOUT, async {
        let og = OpsgenieReceiver::start(vec![GENIE_KEY.into()]).await.unwrap();
        let pd = PagerDutyReceiver::start().await.unwrap();
        let list = format!(
            "{}?min_severity=critical {}?min_severity=critical",
            og.channel_url(GENIE_KEY),
            pd.channel_url(ROUTING_KEY)
        );
        let notifier = Notifier::from_urls(&list).unwrap();
        notifier.send(&manual_rotation_due("evt-warning")).await.unwrap();
        assert!(og.requests().is_empty() && pd.requests().is_empty());
        notifier.send(&expired("evt-critical")).await.unwrap();
        let key = alert_key(&expired("x"));
        assert_eq!(og.alerts()[&key].priority, "P1");
        assert_eq!(pd.alerts(ROUTING_KEY)[&key].severity, "critical");
    })
    .await
    .unwrap();
}

/// The production schemes, `pagerduty://` and `opsgenie://`, speak HTTPS: both receivers behind a local CA
/// the notifier is told to trust.
#[tokio::test]
async fn the_https_schemes_page_over_tls() {
    timeout(TEST_TIMEOUT, async {
        let dir = tempfile::tempdir().unwrap();
        let pd = PagerDutyReceiver::start_https(&dir.path().join("pd")).await;
        let og = OpsgenieReceiver::start_https(vec![GENIE_KEY.into()], &dir.path().join("og")).await;
        let (pd, og) = match (pd, og) {
            (Ok(pd), Ok(og)) => (pd, og),
            (pd, og) => panic!("receivers: {:?} {:?}", pd.err(), og.err()),
        };
        let list = format!("{} {}", pd.channel_url(ROUTING_KEY), og.channel_url(GENIE_KEY));
        assert!(list.starts_with("pagerduty://") && list.contains(" opsgenie://"), "{list}");
        let roots = format!("{}{}", pd.ca_pem().unwrap(), og.ca_pem().unwrap());
        let options = NotifierOptions { extra_roots_pem: Some(roots.into_bytes()), ..NotifierOptions::default() };
        let notifier = Notifier::new(&list, options).unwrap();
        let endpoints: Vec<&str> = notifier.channels().map(|c| c.endpoint()).collect();
        assert!(endpoints[0].starts_with("pagerduty+https://127.0.0.1:"), "{endpoints:?}");
        assert!(endpoints[1].starts_with("opsgenie+https://127.0.0.1:"), "{endpoints:?}");
        let n = expired("evt-tls");
        assert_eq!(notifier.send(&n).await.unwrap().sent.len(), 2);
        assert_eq!(pd.alerts(ROUTING_KEY)[&alert_key(&n)].status, "triggered");
        assert_eq!(og.alerts()[&alert_key(&n)].status, "open");

        // Without the CA the same channels fail: a certificate the platform does not trust.
        let untrusting = Notifier::from_urls(&list).unwrap();
        let err = untrusting.send(&expired("evt-untrusted")).await.unwrap_err();
        assert_eq!(err.failures.len(), 2);
        assert!(err.failures.iter().all(|f| f.kind == FailureKind::Unreachable), "{err}");
    })
    .await
    .unwrap();
}
