//! The `sweep` end to end: the real sweep binary behind the Functions host stand-in, fired as its timer fires,
//! under its own identity (Key Vault Reader, as infra/roles.json grants), listing the Key Vault emulator over
//! HTTPS, its state in a real Azurite (HTTPS, `--oauth basic`), its notices to the local receivers (the signed
//! webhook, Slack) and to the PagerDuty Events API v2 stand-in.
//!
//! Azurite is started by ./scripts/test and announced in KEYTURN_TEST_AZURITE_BLOB_URL and
//! KEYTURN_TEST_AZURITE_CA_FILE; without them these tests fail, they never skip.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::Duration;

use keyturn_e2e::receivers::{HttpSink, http_sink};
use keyturn_e2e::{
    Chain, bounded, deployment_of, fast_retries, fast_stack, seed_secret, start_scheduled_timer_host, start_timer_host,
    tags, wait_for, workspace_binary,
};
use keyturn_local::functions_host::{FunctionsHost, InvocationError, WorkerStatus};
use keyturn_local::paging::PagerDutyReceiver;
use serde_json::Value;

const FUNCTION: &str = "sweep";
const VAULT: &str = "kv-one";
const ROUTING_KEY: &str = "R0UTINGKEY0123456789abcdefABCDEF";

/// Everything one test runs against.
struct World {
    chain: Chain,
    sink: HttpSink,
    pagerduty: PagerDutyReceiver,
    settings: Vec<(String, String)>,
    _dir: tempfile::TempDir,
}

const MISSING: &str = "run ./scripts/test, which starts Azurite (or: source scripts/lib/azurite.sh; azurite_start)";

/// The stack, the receivers, and the sweep with its state in a fresh Azurite container; warnings to the
/// webhook and Slack (digests), critical to Slack and PagerDuty.
async fn world() -> World {
    world_with(&[], &[]).await
}

/// [`world`] with more settings and the deployment's `when` flags on.
async fn world_with(extra: &[(&str, &str)], flags: &[&str]) -> World {
    let azurite = std::env::var("KEYTURN_TEST_AZURITE_BLOB_URL")
        .unwrap_or_else(|_| panic!("KEYTURN_TEST_AZURITE_BLOB_URL is not set: {MISSING}"));
    let azurite_ca = std::env::var("KEYTURN_TEST_AZURITE_CA_FILE")
        .unwrap_or_else(|_| panic!("KEYTURN_TEST_AZURITE_CA_FILE is not set: {MISSING}"));
    let stack = fast_stack(&[VAULT]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut bundle = std::fs::read(stack.emulator().ca_pem_path()).unwrap();
    bundle.extend(std::fs::read(&azurite_ca).unwrap());
    let ca_file = dir.path().join("ca-bundle.pem");
    std::fs::write(&ca_file, bundle).unwrap();

    let sink = http_sink().await;
    let pagerduty = PagerDutyReceiver::start().await.unwrap();
    let base = sink.base();
    let channels = format!(
        "{} slack+http://{base}/services/T0/B0/slacktoken0001 {}",
        sink.webhook_channel(),
        pagerduty.channel_url(ROUTING_KEY)
    );
    let container = format!("sweep-e2e-{}", chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default());
    let mut settings: Vec<(String, String)> =
        stack.handler_env().into_iter().filter(|(name, _)| name != "KEYTURN_CA_FILE").collect();
    settings.extend(fast_retries());
    for (name, value) in [
        ("KEYTURN_CA_FILE", ca_file.display().to_string()),
        ("KEYTURN_NOTIFY", channels),
        ("KEYTURN_SWEEP_ROUTES", "info=webhook;warning=webhook,slack;critical=slack,pagerduty".to_owned()),
        ("KEYTURN_SWEEP_STATE_ACCOUNT_URL", azurite),
        ("KEYTURN_SWEEP_STATE_CONTAINER", container),
    ] {
        settings.push((name.to_owned(), value));
    }
    settings.extend(extra.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())));
    let mut deployment = deployment_of(&stack, &settings);
    deployment.flags.extend(flags.iter().map(|flag| (*flag).to_owned()));
    let chain = Chain::start_timer_as(stack, FUNCTION, &workspace_binary(FUNCTION), settings.clone(), deployment).await;
    World { chain, sink, pagerduty, settings, _dir: dir }
}

impl World {
    fn seed(&self, name: &str, days: i64) -> String {
        // A distinct value per version, for the leak scan.
        let value = format!("value-{name}-{}", chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default());
        seed_secret(&self.chain.stack, VAULT, name, &value, days, Default::default())
    }

    /// Another instance of the function app (a restart, or a second instance running at the same time).
    async fn another_host(&self) -> FunctionsHost {
        start_timer_host(&self.chain.stack, FUNCTION, &workspace_binary(FUNCTION), self.settings.clone()).await
    }

    /// The object names in every digest a route accepted so far, one list per message.
    fn digests(&self, route: &str) -> Vec<Vec<String>> {
        self.sink.accepted_on(route).iter().map(|received| digest_names(&received.json())).collect()
    }

    /// Every PagerDuty request so far, as (action, dedup key).
    fn pages(&self) -> Vec<(String, String)> {
        self.pagerduty
            .requests()
            .into_iter()
            .filter(|r| r.status == 202)
            .map(|r| (r.event_action.unwrap_or_default(), r.dedup_key.unwrap_or_default()))
            .collect()
    }
}

/// The names a digest lists: the webhook's JSON, or Slack's bullet lines.
fn digest_names(json: &Value) -> Vec<String> {
    if json["type"] == "keyturn.digest" {
        return json["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["objects"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap().to_owned()))
            .collect();
    }
    json["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["text"]["text"].as_str())
        .flat_map(|text| text.lines())
        .filter_map(|line| line.strip_prefix("• "))
        .map(|line| line.split(' ').next().unwrap().to_owned())
        .collect()
}

async fn sweep(host: &FunctionsHost) -> String {
    let response = host.invoke_timer(FUNCTION, false).await.unwrap_or_else(|e| panic!("the sweep failed: {e}"));
    response.logs.join("\n")
}

#[tokio::test]
async fn each_threshold_fires_once_per_version_across_sweeps_and_a_restart_and_a_rotation_resolves_the_page() {
    bounded(Duration::from_secs(240), async {
        let world = world().await;
        world.seed("db-password", 20); // the 30-day threshold: a warning
        let paged_version = world.seed("api-key", 3); // the 3-day threshold: critical
        world.seed("far-away", 200); // nothing due

        let first = sweep(&world.chain.host).await;
        assert!(first.contains("swept 3 objects in 1 vaults"), "{first}");
        // One digest per channel, the most urgent first; the webhook takes no critical notice.
        assert_eq!(world.digests("/webhook"), [vec!["db-password".to_owned()]]);
        assert_eq!(world.digests("/services/"), [vec!["api-key".to_owned(), "db-password".to_owned()]]);
        let key = format!("keyturn:{VAULT}:secret:api-key:{paged_version}");
        assert_eq!(world.pages(), [("trigger".to_owned(), key.clone())]);

        // Again, then after the handler process is killed and the host restarts it (nothing in memory, the
        // same state): nothing new.
        sweep(&world.chain.host).await;
        let pid = world.chain.host.worker_pid().expect("the handler runs");
        std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
        let restarted = tokio::time::timeout(
            Duration::from_secs(30),
            world.chain.host.wait_for_status(|s| matches!(s, WorkerStatus::Running { pid: new, .. } if *new != pid)),
        )
        .await
        .expect("the host restarts the killed handler");
        println!("restarted: {restarted:?}");
        let host = &world.chain.host;
        let again = sweep(host).await;
        assert!(again.contains("0 notices in 0 digest messages, 0 pages"), "{again}");
        assert_eq!(world.sink.accepted_on("/").len(), 2, "{:#?}", world.sink.received());
        assert_eq!(world.pages().len(), 1);

        // api-key is rotated: the next sweep resolves its page, once; the new version is far from expiry.
        world.seed("api-key", 90);
        let resolved = sweep(host).await;
        assert!(resolved.contains("1 pages resolved"), "{resolved}");
        assert_eq!(world.pages()[1], ("resolve".to_owned(), key.clone()));
        assert_eq!(world.pagerduty.alerts(ROUTING_KEY)[&key].status, "resolved");
        sweep(host).await;
        assert_eq!(world.pages().len(), 2, "resolved once");
        world.chain.assert_no_secret_leaked(&[VAULT], world.sink.bodies());
        world.chain.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn on_its_own_schedule_the_host_sweeps_every_two_seconds_and_each_threshold_still_fires_once() {
    bounded(Duration::from_secs(120), async {
        let world = world_with(&[("KEYTURN_SWEEP_SCHEDULE", "*/2 * * * * *")], &[]).await;
        world.seed("db-password", 20);
        // The stand-in fires the sweep itself, as the host does on the schedule the app setting names.
        let scheduled = start_scheduled_timer_host(
            &world.chain.stack,
            FUNCTION,
            &workspace_binary(FUNCTION),
            world.settings.clone(),
        )
        .await;
        let started = std::time::Instant::now();
        let swept = || scheduled.invocations().into_iter().filter(|run| run.result.is_ok()).count();
        wait_for("three scheduled sweeps", Duration::from_secs(30), || swept() >= 3).await;
        // Every two seconds, one at a time: three runs take at least four seconds.
        assert!(started.elapsed() >= Duration::from_secs(4), "{:?} for {} runs", started.elapsed(), swept());
        assert!(scheduled.invocations().iter().all(|run| run.function == FUNCTION));
        // However often it runs, the 30-day threshold of this version is sent once.
        assert_eq!(world.digests("/webhook"), [vec!["db-password".to_owned()]]);
        // The test's own host fired nothing.
        assert!(world.chain.host.invocations().is_empty());
        scheduled.shutdown().await;
        world.chain.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn two_sweeps_at_once_do_not_notify_twice() {
    bounded(Duration::from_secs(240), async {
        let world = world().await;
        for i in 0..40 {
            world.seed(&format!("app-{i:02}"), 10);
        }
        let second = world.another_host().await;
        let (a, b) = tokio::join!(sweep(&world.chain.host), sweep(&second));
        println!("{a}\n{b}");
        for route in ["/webhook", "/services/"] {
            let mut names: Vec<String> = world.digests(route).into_iter().flatten().collect();
            let total = names.len();
            names.sort();
            names.dedup();
            assert_eq!((total, names.len()), (40, 40), "{route}: every object once");
        }
        second.shutdown().await;
        world.chain.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_digest_of_250_objects_arrives_as_three_messages() {
    bounded(Duration::from_secs(300), async {
        let world = world().await;
        for i in 0..250 {
            world.seed(&format!("svc-{i:03}"), 12);
        }
        let swept = sweep(&world.chain.host).await;
        assert!(swept.contains("swept 250 objects"), "{swept}");
        for route in ["/webhook", "/services/"] {
            let sizes: Vec<usize> = world.digests(route).iter().map(Vec::len).collect();
            assert_eq!(sizes, [100, 100, 50], "{route}");
        }
        let parts: Vec<u64> =
            world.sink.accepted_on("/webhook").iter().map(|r| r.json()["parts"].as_u64().unwrap()).collect();
        assert_eq!(parts, [3, 3, 3]);
        world.chain.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_pager_that_is_down_gets_the_page_on_a_later_sweep_and_the_others_nothing_twice() {
    bounded(Duration::from_secs(240), async {
        let world = world().await;
        let version = world.seed("api-key", 1);
        // Down for the whole first sweep: keyturn's three attempts all get 500.
        world.pagerduty.fail_next(3);
        let failed = world.chain.host.invoke_timer(FUNCTION, false).await;
        let Err(InvocationError::Status { status: 500, body }) = &failed else { panic!("{failed:?}") };
        assert!(body.contains("1 deliveries left for the next sweep"), "{body}");
        assert!(world.pages().is_empty());
        assert_eq!(world.digests("/services/"), [vec!["api-key".to_owned()]], "Slack got it at once");

        let later = sweep(&world.chain.host).await;
        assert!(later.contains("1 pages"), "{later}");
        let key = format!("keyturn:{VAULT}:secret:api-key:{version}");
        assert_eq!(world.pages(), [("trigger".to_owned(), key)]);
        assert_eq!(world.digests("/services/").len(), 1, "Slack did not get it twice");
        world.chain.shutdown().await;
    })
    .await;
}

/// A lost near-expiry event repaired: with `KEYTURN_SWEEP_REPAIR=on` and the deployment's `sweepRepairEnabled`
/// (near-expiry's write roles for the sweep's identity, enforced by the emulator), an opted-in secret 20 days
/// from expiry is rotated once by the sweep; without the flag's roles the same attempt is refused by RBAC and
/// reported, never silently skipped.
#[tokio::test]
async fn with_repair_on_a_lost_near_expiry_event_is_repaired_once_and_needs_the_flags_roles() {
    bounded(Duration::from_secs(240), async {
        let opted_in = [("KeyturnRotation", "generated"), ("ValidityPeriodDays", "60")];
        let world = world_with(&[("KEYTURN_SWEEP_REPAIR", "on")], &["sweepRepairEnabled"]).await;
        let first = seed_secret(&world.chain.stack, VAULT, "db-password", "value-db-password-1", 20, tags(&opted_in));
        let swept = sweep(&world.chain.host).await;
        assert!(swept.contains("1 missed rotations repaired"), "{swept}");
        let store = world.chain.stack.emulator().store();
        let latest = store.get_secret(VAULT, "db-password", None).unwrap();
        assert_ne!(latest.version.version, first, "a new version");
        let again = sweep(&world.chain.host).await;
        assert!(again.contains("0 missed rotations repaired"), "{again}");
        world.chain.shutdown().await;

        // The same without the flag: Key Vault Reader cannot write; the sweep says so and fails the run.
        let world = world_with(&[("KEYTURN_SWEEP_REPAIR", "on")], &[]).await;
        seed_secret(&world.chain.stack, VAULT, "db-password", "value-db-password-2", 20, tags(&opted_in));
        let refused = world.chain.host.invoke_timer(FUNCTION, false).await;
        let Err(InvocationError::Status { status: 500, body }) = &refused else { panic!("{refused:?}") };
        assert!(body.contains("repairing the missed rotation of secret kv-one/db-password"), "{body}");
        world.chain.shutdown().await;
    })
    .await;
}

/// The dead-letter container on Azurite, created as a deployment creates it (Event Grid does not), and what
/// writes to it: Event Grid's subscription (with the topic's identity) and the test itself.
struct DeadLetterContainer {
    url: url::Url,
    http: reqwest::Client,
    token: String,
}

impl DeadLetterContainer {
    /// A fresh container name and the account's blob endpoint, for the sweep's settings.
    fn name() -> (String, String) {
        let account = std::env::var("KEYTURN_TEST_AZURITE_BLOB_URL")
            .unwrap_or_else(|_| panic!("KEYTURN_TEST_AZURITE_BLOB_URL is not set: {MISSING}"));
        (account, format!("deadletter-e2e-{}", chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()))
    }

    /// Creates the container `name` in `account` with a token from the stack's identity endpoint (the topic's
    /// identity; Azurite checks a token's issuer, audience and lifetime).
    async fn create(stack: &keyturn_local::stack::LocalStack, account: &str, name: &str) -> Self {
        let ca = std::env::var("KEYTURN_TEST_AZURITE_CA_FILE")
            .unwrap_or_else(|_| panic!("KEYTURN_TEST_AZURITE_CA_FILE is not set: {MISSING}"));
        let certs = reqwest::Certificate::from_pem_bundle(&std::fs::read(ca).unwrap()).unwrap();
        let http = reqwest::Client::builder().tls_certs_merge(certs).build().unwrap();
        let registry = stack.emulator().token_registry().expect("the stack's identity endpoint");
        let (token, _) = registry.issue("https://storage.azure.com", "eventgrid-topic-identity");
        let mut url = url::Url::parse(account).unwrap();
        url.path_segments_mut().unwrap().pop_if_empty().push(name);
        let container = Self { url, http, token };
        let mut create = container.url.clone();
        create.set_query(Some("restype=container"));
        let created = container.request(reqwest::Method::PUT, create).send().await.unwrap();
        assert_eq!(created.status().as_u16(), 201, "creating the dead-letter container: {:?}", created.text().await);
        container
    }

    fn request(&self, method: reqwest::Method, url: url::Url) -> reqwest::RequestBuilder {
        self.http.request(method, url).bearer_auth(&self.token).header("x-ms-version", "2023-11-03")
    }

    /// Event Grid's side: the subscription's `deadLetterDestination`.
    fn destination(&self) -> keyturn_local::eventgrid::BlobDestination {
        let token = self.token.clone();
        keyturn_local::eventgrid::BlobDestination::new(self.url.clone(), self.http.clone(), move || token.clone())
    }

    /// Writes a blob by hand, as something other than Event Grid might.
    async fn put(&self, name: &str, body: &str) {
        let mut url = self.url.clone();
        url.path_segments_mut().unwrap().extend(name.split('/'));
        let put = self
            .request(reqwest::Method::PUT, url)
            .header("x-ms-blob-type", "BlockBlob")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        assert_eq!(put.status().as_u16(), 201, "writing {name}");
    }

    /// The blob names in the container.
    async fn names(&self) -> Vec<String> {
        let mut url = self.url.clone();
        url.set_query(Some("restype=container&comp=list"));
        let list = self.request(reqwest::Method::GET, url).send().await.unwrap().text().await.unwrap();
        list.split("<Name>").skip(1).filter_map(|rest| rest.split("</Name>").next()).map(str::to_owned).collect()
    }
}

/// A `SecretNearExpiry` dead-lettered on purpose (near-expiry's endpoint is down until Event Grid gives up, at
/// its retry schedule scaled down) is found by the next sweep in the dead-letter container on Azurite, where the
/// local Event Grid wrote it as the service does, and re-driven through the rotation engine: the secret is
/// rotated exactly once, and the digest and the outcome name it. Sweeps after it, a second instance at the same
/// time and a restart neither rotate again nor report it again. A blob that is not Event Grid's is reported as
/// unusable, once; a dead letter whose object was rotated meanwhile is reported as no longer needed.
#[tokio::test]
async fn a_dead_lettered_near_expiry_event_is_re_driven_by_the_next_sweep_exactly_once_and_reported() {
    bounded(Duration::from_secs(300), async {
        use keyturn_local::eventgrid::{EndpointType, Subscription};

        let (account, name) = DeadLetterContainer::name();
        let settings = [
            ("KEYTURN_SWEEP_REPAIR", "on"),
            ("KEYTURN_SWEEP_DEAD_LETTER_ACCOUNT_URL", account.as_str()),
            ("KEYTURN_SWEEP_DEAD_LETTER_CONTAINER", name.as_str()),
        ];
        let world = world_with(&settings, &["sweepRepairEnabled"]).await;
        let stack = &world.chain.stack;
        let container = DeadLetterContainer::create(stack, &account, &name).await;

        // Near-expiry's endpoint: nothing listens there. Three attempts, then the dead-letter container.
        let down = url::Url::parse("http://127.0.0.1:9/api/near-expiry").unwrap();
        let subscription = Subscription::new("keyturn-near-expiry", down, EndpointType::AzureFunction)
            .event_types(["Microsoft.KeyVault.SecretNearExpiry"])
            .max_delivery_attempts(3)
            .dead_letter_blob(container.destination());
        stack.grid().subscribe(subscription).await.unwrap();

        // 30 days less an hour from expiry: inside Key Vault's window (the emulator raises its near-expiry event
        // at once), but before the sweep's own repair grace, so only the dead letter can make the sweep rotate it.
        let opted_in = tags(&[("KeyturnRotation", "generated"), ("ValidityPeriodDays", "60")]);
        let exp = stack.emulator().clock().now() + chrono::TimeDelta::days(30) - chrono::TimeDelta::hours(1);
        let spec = keyturn_local::keyvault::SecretSpec {
            value: "value-db-password-1".into(),
            content_type: Some("text/plain".into()),
            attributes: keyturn_local::keyvault::store::AttributeInput {
                exp: Some(exp.timestamp()),
                ..Default::default()
            },
            tags: opted_in.clone(),
        };
        let first = keyturn_e2e::store_secret(stack, VAULT, "db-password", spec);
        // A second one, rotated by hand after its event was dead-lettered: no longer needed.
        seed_secret(stack, VAULT, "api-token", "value-api-token-1", 29, opted_in.clone());
        keyturn_e2e::wait_for("two dead letters", Duration::from_secs(60), || stack.grid().dead_letters().len() == 2)
            .await;
        let blobs = container.names().await;
        assert_eq!(blobs.len(), 2, "{blobs:?}");
        assert!(blobs.iter().all(|b| b.starts_with("KEYTURN-NEAR-EXPIRY/")), "Event Grid's layout: {blobs:?}");
        seed_secret(stack, VAULT, "api-token", "value-api-token-2", 90, opted_in);
        container.put("KEYTURN-NEAR-EXPIRY/2026/1/1/0/not-event-grids.json", "{not json").await;

        let swept = sweep(&world.chain.host).await;
        println!("{swept}");
        let versions = keyturn_e2e::secret_versions(stack, VAULT, "db-password");
        assert_eq!(versions.len(), 2, "rotated once: {swept}");
        assert!(swept.contains("3 dead letters (1 re-driven, 1 unusable)"), "{swept}");
        let line = |name: &str| {
            let needle = format!("secret {VAULT}/{name} version");
            swept
                .split("; ")
                .find(|part| part.contains(&needle))
                .unwrap_or_else(|| panic!("{name}: {swept}"))
                .to_owned()
        };
        assert!(
            line("db-password").contains(&format!(
                "version {first}, dead-lettered MaxDeliveryAttemptsExceeded): re-driven: rotated from {first}"
            )),
            "{swept}"
        );
        assert!(line("api-token").contains("not re-driven, no longer needed: already rotated"), "{swept}");
        assert!(swept.contains("not-event-grids.json: unusable: not JSON"), "{swept}");
        // The digest (info goes to the webhook) names the repaired secret in its own section.
        let digests = world.sink.accepted_on("/webhook");
        let groups: Vec<(String, Vec<String>)> = digests
            .iter()
            .flat_map(|d| d.json()["groups"].as_array().unwrap().clone())
            .map(|g| {
                (
                    g["section"].as_str().unwrap().to_owned(),
                    digest_names(&serde_json::json!({"type": "keyturn.digest", "groups": [g]})),
                )
            })
            .collect();
        assert!(groups.contains(&("repaired".to_owned(), vec!["db-password".to_owned()])), "{groups:?}");
        assert!(groups.contains(&("dead-lettered".to_owned(), vec!["api-token".to_owned()])), "{groups:?}");

        // Again, two instances at once, then after a restart: nothing rotated or reported twice.
        let second = world.another_host().await;
        let (a, b) = tokio::join!(sweep(&world.chain.host), sweep(&second));
        second.shutdown().await;
        let third = world.another_host().await;
        let c = sweep(&third).await;
        third.shutdown().await;
        for later in [&a, &b, &c] {
            assert!(!later.contains("dead letter"), "reported once: {later}");
        }
        assert_eq!(keyturn_e2e::secret_versions(stack, VAULT, "db-password").len(), 2, "re-driven once");
        assert_eq!(container.names().await.len(), 3, "the dead letters stay where Event Grid put them");
        world.chain.assert_no_secret_leaked(&[VAULT], world.sink.bodies());
        world.chain.shutdown().await;
    })
    .await;
}
