//! The `new-version` handler's consumer refresh through the real chain: a new secret version raises
//! `SecretNewVersionCreated`, Event Grid delivers it through the Functions host stand-in to the real binary, which
//! refreshes the App Service app and restarts the Container App `KEYTURN_CONSUMERS` binds to the secret, through
//! the ARM emulator (crates/local/src/arm::consumers.rs) with the handler's own identity.
//!
//! The Container App's restart fails twice (503, as Resource Manager under load); with no local retries the
//! handler fails the invocation, Event Grid delivers the event again, and only the consumer still due is called:
//! the web app is refreshed once, the Container App restarted once after its two failures, and a duplicate
//! delivery afterwards calls nobody.
//!
//! With the lock container configured (a real Azurite, which ./scripts/test starts: `KEYTURN_TEST_AZURITE_*`;
//! without it that test fails, never skips), the record is a blob: a handler process killed between the
//! deliveries and restarted does not call the consumer already refreshed again.

// Helpers outside #[test] functions unwrap too: a panic there is a failed test with a line number.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use http::StatusCode;
use keyturn_e2e::receivers::{HttpSink, http_sink};
use keyturn_e2e::{
    Chain, NEW_VERSION_EVENT_TYPES, bounded, fast_stack, handler_env_trusting, secret_event, wait_for, workspace_binary,
};
use keyturn_events::KeyVaultEventType;
use keyturn_local::arm::consumers::ConsumerApps;
use keyturn_local::arm::{ArmEmulator, RunningArm};
use keyturn_local::keyvault::SecretSpec;

const VAULT: &str = "kv-one";
const WEB: &str = "/subscriptions/0000/resourceGroups/rg-app/providers/Microsoft.Web/sites/web-shop";
const APP: &str = "/subscriptions/0000/resourceGroups/rg-app/providers/Microsoft.App/containerApps/orders";
/// An app the deployment does not bind: never called.
const OTHER: &str = "/subscriptions/0000/resourceGroups/rg-other/providers/Microsoft.Web/sites/payroll";

/// The real `new-version` binary behind the stand-in, refreshing `apps` (served by an ARM emulator) bound to the
/// `app-*` secrets of `VAULT`, notifying `sink`, trusting `extra_ca` too, with `extra` settings. No local retries:
/// each failure goes back to Event Grid, which delivers the event again.
async fn consumer_chain(
    apps: &ConsumerApps,
    sink: &HttpSink,
    dir: &std::path::Path,
    extra_ca: &str,
    extra: &[(&str, String)],
) -> (Chain, RunningArm) {
    let stack = fast_stack(&[VAULT]).await;
    let arm = ArmEmulator::builder()
        .assignments(stack.emulator().arm_assignments().clone())
        .consumers(apps.clone())
        .ca_dir(dir.join("arm"))
        .start(stack.emulator().token_registry().unwrap())
        .await
        .unwrap();
    let mut settings = handler_env_trusting(&stack, dir, &format!("{}\n{extra_ca}", arm.ca_pem()));
    for (name, value) in [
        ("KEYTURN_ARM_ENDPOINT", arm.url().to_owned()),
        ("KEYTURN_CONSUMERS", format!("{VAULT}/app-*={WEB},{APP}")),
        ("KEYTURN_NOTIFY", sink.channels()),
        ("KEYTURN_RETRY_MAX", "0".to_owned()),
    ] {
        settings.push((name.to_owned(), value));
    }
    settings.extend(extra.iter().map(|(name, value)| ((*name).to_owned(), value.clone())));
    let chain =
        Chain::start(stack, "new-version", &workspace_binary("new-version"), &NEW_VERSION_EVENT_TYPES, settings).await;
    (chain, arm)
}

#[tokio::test]
async fn a_consumer_failing_twice_is_restarted_by_redeliveries_and_called_exactly_once_after_success() {
    bounded(Duration::from_secs(120), async {
        let sink = http_sink().await;
        let dir = tempfile::tempdir().unwrap();
        let apps = ConsumerApps::new()
            .web_app(WEB)
            .web_app(OTHER)
            .container_app(APP, &[("orders--r1", false), ("orders--r2", true)]);
        apps.fail_next(APP, 2, StatusCode::SERVICE_UNAVAILABLE);
        let (chain, arm) = consumer_chain(&apps, &sink, dir.path(), "", &[]).await;
        let spec = SecretSpec { value: "value-app-api-0001".to_owned(), ..SecretSpec::default() };
        let version = chain.stack.emulator().store().set_secret(VAULT, "app-api", spec).unwrap().version.version;

        let answer = chain.wait_for_answer("Consumers refreshed", Duration::from_secs(60)).await;
        chain.settle(1, Duration::from_secs(30)).await;
        assert!(answer.contains("restarted revision(s) orders--r2"), "{answer}");
        assert_eq!(apps.calls(WEB), Some((1, 1)), "the web app: refreshed once, on the first delivery");
        assert_eq!(apps.calls(APP), Some((3, 1)), "the Container App: two failures, then one restart");
        assert_eq!(apps.calls(OTHER), Some((0, 0)), "an app no entry binds");
        let deliveries = chain.attempts().len();
        assert_eq!(deliveries, 3, "one delivery and two redeliveries");
        assert_eq!(sink.accepted_on("/webhook").len(), 1, "the channels are told once, when every consumer is done");
        assert!(chain.stack.grid().dead_letters().is_empty());

        // A duplicate delivery of the same event after success calls nobody.
        chain.stack.grid().publish(secret_event(
            KeyVaultEventType::SecretNewVersionCreated,
            "duplicate-1",
            VAULT,
            "app-api",
            &version,
            None,
        ));
        chain.settle(2, Duration::from_secs(30)).await;
        let again = chain.wait_for_answer("Consumers already refreshed", Duration::from_secs(30)).await;
        assert!(again.contains(&WEB.to_ascii_lowercase()) && again.contains(&APP.to_ascii_lowercase()), "{again}");
        assert_eq!((apps.calls(WEB), apps.calls(APP)), (Some((1, 1)), Some((3, 1))));

        chain.assert_no_secret_leaked(&[VAULT], sink.bodies());
        chain.shutdown().await;
        arm.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn with_the_lock_container_the_record_survives_a_killed_handler() {
    bounded(Duration::from_secs(120), async {
        let missing =
            "run ./scripts/test, which starts Azurite (or: scripts/lib/azurite.sh cargo nextest run -p keyturn-e2e)";
        let azurite = std::env::var("KEYTURN_TEST_AZURITE_BLOB_URL")
            .unwrap_or_else(|_| panic!("KEYTURN_TEST_AZURITE_BLOB_URL is not set: {missing}"));
        let azurite_ca = std::env::var("KEYTURN_TEST_AZURITE_CA_FILE")
            .unwrap_or_else(|_| panic!("KEYTURN_TEST_AZURITE_CA_FILE is not set: {missing}"));
        let sink = http_sink().await;
        let dir = tempfile::tempdir().unwrap();
        let apps = ConsumerApps::new().web_app(WEB).container_app(APP, &[("orders--r1", true)]);
        // The Container App fails until the handler has been killed and restarted.
        apps.fail_next(APP, u32::MAX, StatusCode::SERVICE_UNAVAILABLE);
        let lock = [
            ("KEYTURN_LOCK_ACCOUNT_URL", azurite),
            ("KEYTURN_LOCK_CONTAINER", format!("keyturn-consumers-{}", chrono::Utc::now().timestamp_micros())),
        ];
        let azurite_ca = std::fs::read_to_string(&azurite_ca).unwrap();
        let (chain, arm) = consumer_chain(&apps, &sink, dir.path(), &azurite_ca, &lock).await;
        let spec = SecretSpec { value: "value-app-api-0002".to_owned(), ..SecretSpec::default() };
        chain.stack.emulator().store().set_secret(VAULT, "app-api", spec).unwrap();
        wait_for("the web app's refresh", Duration::from_secs(30), || apps.calls(WEB) == Some((1, 1))).await;
        // The first delivery answered (500, for the Container App): the web app's refresh is recorded by then. (A
        // kill between a call and its record would refresh that consumer once more, which is harmless.)
        wait_for("the first delivery's answer", Duration::from_secs(30), || !chain.attempts().is_empty()).await;

        let pid = chain.host.worker_pid().unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        wait_for("a restarted handler", Duration::from_secs(30), || chain.host.worker_pid().is_some_and(|p| p != pid))
            .await;
        apps.fail_next(APP, 0, StatusCode::SERVICE_UNAVAILABLE);
        chain.wait_for_answer("Consumers refreshed", Duration::from_secs(60)).await;

        assert_eq!(
            apps.calls(WEB),
            Some((1, 1)),
            "the restarted handler found the web app's refresh recorded: {:#?}",
            chain.everything_recorded()
        );
        assert_eq!(apps.calls(APP).map(|(_, succeeded)| succeeded), Some(1));
        chain.assert_no_secret_leaked(&[VAULT], sink.bodies());
        chain.shutdown().await;
        arm.shutdown().await;
    })
    .await;
}
