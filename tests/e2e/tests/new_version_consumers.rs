//! The `new-version` handler's consumer refresh through the real chain: a new secret version raises
//! `SecretNewVersionCreated`, Event Grid delivers it through the Functions host stand-in to the real binary, which
//! refreshes the App Service app and restarts the Container App `KEYTURN_CONSUMERS` binds to the secret, through
//! the ARM emulator (crates/local/src/arm_consumers.rs) with the handler's own identity.
//!
//! The Container App's restart fails twice (503, as Resource Manager under load); with no local retries the
//! handler fails the invocation, Event Grid delivers the event again, and only the consumer still due is called:
//! the web app is refreshed once, the Container App restarted once after its two failures, and a duplicate
//! delivery afterwards calls nobody.

// Helpers outside #[test] functions unwrap too: a panic there is a failed test with a line number.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use http::StatusCode;
use keyturn_e2e::receivers::http_sink;
use keyturn_e2e::{
    Chain, NEW_VERSION_EVENT_TYPES, bounded, fast_stack, handler_env_trusting, secret_event, workspace_binary,
};
use keyturn_events::KeyVaultEventType;
use keyturn_local::arm::ArmEmulator;
use keyturn_local::arm_consumers::ConsumerApps;
use keyturn_local::keyvault::SecretSpec;

const VAULT: &str = "kv-one";
const WEB: &str = "/subscriptions/0000/resourceGroups/rg-app/providers/Microsoft.Web/sites/web-shop";
const APP: &str = "/subscriptions/0000/resourceGroups/rg-app/providers/Microsoft.App/containerApps/orders";
/// An app the deployment does not bind: never called.
const OTHER: &str = "/subscriptions/0000/resourceGroups/rg-other/providers/Microsoft.Web/sites/payroll";

#[tokio::test]
async fn a_consumer_failing_twice_is_restarted_by_redeliveries_and_called_exactly_once_after_success() {
    bounded(Duration::from_secs(120), async {
        let sink = http_sink().await;
        let dir = tempfile::tempdir().unwrap();
        let stack = fast_stack(&[VAULT]).await;
        let apps = ConsumerApps::new()
            .web_app(WEB)
            .web_app(OTHER)
            .container_app(APP, &[("orders--r1", false), ("orders--r2", true)]);
        apps.fail_next(APP, 2, StatusCode::SERVICE_UNAVAILABLE);
        let arm = ArmEmulator::builder()
            .consumers(apps.clone())
            .ca_dir(dir.path().join("arm"))
            .start(stack.emulator().token_registry().unwrap())
            .await
            .unwrap();
        let mut settings = handler_env_trusting(&stack, dir.path(), arm.ca_pem());
        for (name, value) in [
            ("KEYTURN_ARM_ENDPOINT", arm.url().to_owned()),
            ("KEYTURN_CONSUMERS", format!("{VAULT}/app-*={WEB},{APP}")),
            ("KEYTURN_NOTIFY", sink.channels()),
            // No local retries: each failure goes back to Event Grid, which delivers the event again.
            ("KEYTURN_RETRY_MAX", "0".to_owned()),
        ] {
            settings.push((name.to_owned(), value));
        }
        let chain =
            Chain::start(stack, "new-version", &workspace_binary("new-version"), &NEW_VERSION_EVENT_TYPES, settings)
                .await;
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
