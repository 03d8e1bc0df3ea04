//! Rotation windows (`KeyturnRotationWindow`) through the real chain: the emulator's clock passes exp − 30 days
//! (or exp), Event Grid delivers to the Functions host stand-in, which runs the real `near-expiry` (or `expired`)
//! binary against the emulator.
//!
//! The handlers judge windows by their own clock, the real one (the stack's movable clock is the vault's and
//! Event Grid's), so each window here is written relative to the moment the test starts: one that opened an
//! hour ago and closes in an hour, one that opens in six hours. Whatever the day or hour the suite runs at,
//! the first is open and the second closed while the test runs (a few seconds).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Timelike, Utc};
use keyturn_e2e::{
    Chain, EXPIRED_EVENT_TYPES, NEAR_EXPIRY_EVENT_TYPES, bounded, fast_retries, fast_stack, seed_secret, tags,
    workspace_binary,
};
use keyturn_host::Status;
use keyturn_local::stack::LocalStack;

const VAULT: &str = "kv-one";

/// A daily window `HH:MM-HH:MM UTC` from `start` for `length` (it may cross midnight).
fn daily_window(start: DateTime<Utc>, length: TimeDelta) -> String {
    format!("{}-{} UTC", start.format("%H:%M"), (start + length).format("%H:%M"))
}

fn versions(stack: &LocalStack, name: &str) -> usize {
    stack.emulator().store().list_secret_versions(VAULT, name).unwrap().len()
}

fn advance(stack: &LocalStack, by: TimeDelta) {
    stack.emulator().clock().advance(by.to_std().unwrap());
}

fn opted_in(window: &str, extra: &[(&'static str, &'static str)]) -> std::collections::BTreeMap<String, String> {
    let mut pairs =
        vec![("KeyturnRotation", "generated"), ("ValidityPeriodDays", "60"), ("KeyturnRotationWindow", window)];
    pairs.extend_from_slice(extra);
    tags(&pairs)
}

#[tokio::test]
async fn near_expiry_defers_a_rotation_outside_its_window_and_rotates_inside_it() {
    bounded(Duration::from_secs(120), async {
        let started = Utc::now();
        let open = daily_window(started - TimeDelta::hours(1), TimeDelta::hours(2));
        let closed_start = started + TimeDelta::hours(6);
        let closed = daily_window(closed_start, TimeDelta::hours(1));
        let stack = fast_stack(&[VAULT]).await;
        let waits = seed_secret(&stack, VAULT, "waits-for-window", "seeded-waits-0001", 31, opted_in(&closed, &[]));
        seed_secret(&stack, VAULT, "in-window", "seeded-in-window-0002", 31, opted_in(&open, &[]));
        let mut settings = stack.handler_env();
        settings.extend(fast_retries());
        let chain =
            Chain::start(stack, "near-expiry", &workspace_binary("near-expiry"), &NEAR_EXPIRY_EVENT_TYPES, settings)
                .await;

        advance(&chain.stack, TimeDelta::days(1));
        chain.settle(2, Duration::from_secs(60)).await;

        // Inside its window: rotated, as without a window.
        assert_eq!(versions(&chain.stack, "in-window"), 2);
        let [rotated] = &chain.outcomes_about("in-window")[..] else { panic!("{:#?}", chain.outcomes()) };
        assert_eq!((rotated.status, rotated.action.as_deref()), (Status::Done, Some("rotated")));

        // Outside it: nothing written, and the typed outcome says until when.
        assert_eq!(versions(&chain.stack, "waits-for-window"), 1);
        let [deferred] = &chain.outcomes_about("waits-for-window")[..] else { panic!("{:#?}", chain.outcomes()) };
        assert_eq!((deferred.status, deferred.action.as_deref()), (Status::Deferred, Some("deferred")));
        assert_eq!(deferred.object.as_ref().map(|o| o.version()), Some(waits.as_str()));
        let until = closed_start.with_second(0).unwrap().with_nanosecond(0).unwrap();
        assert_eq!(
            deferred.message,
            format!(
                "{VAULT}/waits-for-window deferred until {}: outside its rotation window ({closed}); the scheduled \
                 sweep rotates it then",
                until.format("%Y-%m-%d %H:%M UTC")
            )
        );
        assert_eq!(chain.answers().iter().filter(|a| a.starts_with("deferred: ")).count(), 1, "{:#?}", chain.answers());
        // Acknowledged: Event Grid neither retried it nor dead-lettered it.
        assert!(chain.stack.grid().dead_letters().is_empty());
        assert_eq!(chain.attempts().len(), 2, "{:#?}", chain.attempts());
        chain.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn an_expired_object_is_rotated_whatever_its_window_says() {
    bounded(Duration::from_secs(120), async {
        let closed = daily_window(Utc::now() + TimeDelta::hours(6), TimeDelta::hours(1));
        let stack = fast_stack(&[VAULT]).await;
        let expired = seed_secret(
            &stack,
            VAULT,
            "expired-closed-window",
            "seeded-expired-0001",
            1,
            opted_in(&closed, &[("KeyturnExpiredAction", "rotate")]),
        );
        let mut settings = stack.handler_env();
        settings.extend(fast_retries());
        // The deployment turns expired's actions on, as `expiredActionsEnabled` does in infra.
        let mut deployment = keyturn_e2e::deployment_of(&stack, &settings);
        deployment.flags.insert("expiredActionsEnabled".into());
        let chain =
            Chain::start_as(stack, "expired", &workspace_binary("expired"), &EXPIRED_EVENT_TYPES, settings, deployment)
                .await;

        // Expired by the vault's clock; the handler's own clock still sees the expiry ahead, and the window is
        // closed: the expired event alone decides, and the rotation is not held back.
        advance(&chain.stack, TimeDelta::days(2));
        chain.settle(1, Duration::from_secs(60)).await;

        assert_eq!(versions(&chain.stack, "expired-closed-window"), 2);
        let latest = chain.stack.emulator().store().get_secret(VAULT, "expired-closed-window", None).unwrap().version;
        assert_eq!(latest.tags.get("KeyturnRotatedFrom"), Some(&expired));
        let [outcome] = &chain.outcomes_about("expired-closed-window")[..] else { panic!("{:#?}", chain.outcomes()) };
        assert_eq!((outcome.status, outcome.action.as_deref()), (Status::Done, Some("rotated")));
        assert_eq!(outcome.version_after.as_deref(), Some(latest.version.as_str()));
        chain.shutdown().await;
    })
    .await;
}
