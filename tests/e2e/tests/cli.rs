//! The real `keyturn` binary, end to end: `send` to a Functions host stand-in running a real handler process
//! (and to a closed port), `package` producing a folder the stand-in runs as `func start` would, `dev` left
//! running (twice at once) and stopped with SIGINT, and `check` over a vault of hundreds of objects that must
//! not change.
//!
//! The binary is the one `cargo build --workspace` leaves in target/<profile>/ (`keyturn_e2e::workspace_binary`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use keyturn_e2e::{client, deliver, host_for, keyturn, repo_root, workspace_binary};
use keyturn_local::functions_host::{FunctionApp, FunctionsHost};
use keyturn_local::keyvault::certs::{IssuerParams, X509Props};
use keyturn_local::keyvault::crypto::{Curve, KeySpec};
use keyturn_local::keyvault::keys::KeySpecInput;
use keyturn_local::keyvault::store::AttributeInput;
use keyturn_local::keyvault::{CertificatePolicy, KeyVaultEmulator, SecretSpec};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

fn probe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_probe-handler"))
}

async fn bounded<T>(test: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(120), test)
        .await
        .unwrap_or_else(|_| panic!("the test did not finish within 120 s"))
}

// ---------------------------------------------------------------------------------------------------------------
// send

#[tokio::test]
async fn send_posts_an_event_the_handler_decodes_and_reports_its_answer() {
    bounded(async {
        let host = host_for("test-event", &probe()).start().await.unwrap();
        let to = host.url();

        let run =
            keyturn(&["send", "test-event", "--vault", "kv-one", "--secret", "keyturn-canary", "--to", &to], &[]).await;
        assert_eq!(run.code, 0, "{run:?}");
        assert!(run.stdout.starts_with("202 Accepted"), "{run:?}");
        let record = host.invocations().into_iter().last().unwrap();
        assert_eq!(record.subject.as_deref(), Some("keyturn-canary"));
        let logs = host.output().lines().into_iter().map(|l| l.text).collect::<Vec<_>>().join("\n");
        assert!(logs.contains("Keyturn.TestEvent"), "the probe did not see a test event:\n{logs}");

        // A Key Vault event in CloudEvents schema, to a function named explicitly, as JSON for a script.
        let run = keyturn(
            &[
                "send",
                "near-expiry",
                "--vault",
                "kv-one",
                "--key",
                "signing",
                "--version",
                "v7",
                "--schema",
                "cloudevents",
                "--function",
                "test-event",
                "--to",
                &to,
                "--json",
            ],
            &[],
        )
        .await;
        assert_eq!(run.code, 0, "{run:?}");
        let answer: Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(answer["status"], 202);
        assert_eq!(answer["event"]["type"], "Microsoft.KeyVault.KeyNearExpiry");
        assert_eq!(answer["event"]["data"]["Id"], "https://kv-one.vault.azure.net/keys/signing/v7");
        assert!(answer["url"].as_str().unwrap().ends_with("/runtime/webhooks/eventgrid?functionName=test-event"));

        // The handler fails the invocation (the probe's `retry` subject): exit 1, the answer shown.
        let run = keyturn(
            &["send", "expired", "--vault", "kv-one", "--secret", "retry", "--function", "test-event", "--to", &to],
            &[],
        )
        .await;
        assert_eq!(run.code, 1, "{run:?}");
        assert!(run.stdout.starts_with("500"), "{run:?}");
        assert!(run.stderr.contains("the handler failed the invocation"), "{run:?}");

        // No such function at that host.
        let run = keyturn(&["send", "expired", "--vault", "kv-one", "--secret", "db", "--to", &to], &[]).await;
        assert_eq!(run.code, 1, "{run:?}");
        assert!(run.stderr.contains("no function named 'expired'"), "{run:?}");
        host.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn send_replays_a_dead_letter_file_and_refuses_one_with_a_bad_event() {
    bounded(async {
        let host = host_for("test-event", &probe()).start().await.unwrap();
        let to = host.url();
        let dir = tempfile::tempdir().unwrap();
        // Event Grid's dead-letter blob: an array of events, each with the dead-letter fields added.
        let event = serde_json::json!({
            "id": "dead-1", "topic": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv-one",
            "subject": "replayed-secret", "eventType": "Microsoft.KeyVault.SecretNearExpiry",
            "eventTime": "2026-01-01T00:00:00Z", "dataVersion": "1", "metadataVersion": "1",
            "data": {"Id": "https://kv-one.vault.azure.net/secrets/replayed-secret/v1", "VaultName": "kv-one",
                     "ObjectType": "Secret", "ObjectName": "replayed-secret", "Version": "v1",
                     "NBF": null, "EXP": 1767225600},
            "deadLetterReason": "MaxDeliveryAttemptsExceeded", "deliveryAttempts": 30,
            "lastDeliveryOutcome": "Probation", "lastHttpStatusCode": 500,
            "publishTime": "2026-01-01T00:00:01Z", "lastDeliveryAttemptTime": "2026-01-02T00:00:00Z"
        });
        let dead = dir.path().join("dead.json");
        std::fs::write(&dead, serde_json::json!([event]).to_string()).unwrap();
        let args = ["send", "--event-file", dead.to_str().unwrap(), "--function", "test-event", "--to", &to];
        let run = keyturn(&args, &[]).await;
        assert_eq!(run.code, 0, "{run:?}");
        assert!(run.stdout.starts_with("202 Accepted"), "{run:?}");
        let records = host.invocations();
        assert_eq!(records.len(), 1, "{records:?}");
        assert_eq!(records[0].event_id.as_deref(), Some("dead-1"));
        assert_eq!(records[0].subject.as_deref(), Some("replayed-secret"));
        let logs = host.output().lines().into_iter().map(|l| l.text).collect::<Vec<_>>().join("\n");
        assert!(logs.contains("type=Microsoft.KeyVault.SecretNearExpiry id=dead-1"), "the probe's view:\n{logs}");

        // A batch whose second event is malformed: exit 2, the file, the event and the path named, nothing sent.
        let mut bad = event.clone();
        bad["id"] = "dead-2".into();
        bad["data"]["EXP"] = "next tuesday".into();
        let broken = dir.path().join("broken.json");
        std::fs::write(&broken, serde_json::json!([event, bad]).to_string()).unwrap();
        let args = ["send", "--event-file", broken.to_str().unwrap(), "--function", "test-event", "--to", &to];
        let run = keyturn(&args, &[]).await;
        assert_eq!(run.code, 2, "{run:?}");
        assert!(run.stderr.contains("broken.json") && run.stderr.contains("event [1]"), "{run:?}");
        assert!(run.stderr.contains("data.EXP"), "{run:?}");
        assert!(run.stdout.is_empty(), "{run:?}");
        assert_eq!(host.invocations().len(), 1, "nothing more was delivered");
        host.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn send_to_an_endpoint_that_is_down_exits_3_and_says_so() {
    bounded(async {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let to = format!("http://127.0.0.1:{port}");
        let run = keyturn(&["send", "near-expiry", "--vault", "kv-one", "--secret", "db", "--to", &to], &[]).await;
        assert_eq!(run.code, 3, "{run:?}");
        assert!(run.stderr.contains(&format!("nothing is listening at {to}")), "{run:?}");
        assert!(run.stdout.is_empty(), "{run:?}");

        // `--to dev` with no dev running: a prerequisite is missing (4), and the message says which.
        let state = tempfile::tempdir().unwrap();
        let path = state.path().join("dev.json");
        let run = keyturn(
            &[
                "send",
                "near-expiry",
                "--vault",
                "kv-one",
                "--secret",
                "db",
                "--to",
                "dev",
                "--state-file",
                path.to_str().unwrap(),
            ],
            &[],
        )
        .await;
        assert_eq!(run.code, 4, "{run:?}");
        assert!(run.stderr.contains("no running `keyturn dev` found"), "{run:?}");

        // A usage error is 2.
        let run = keyturn(&["send", "near-expiry", "--vault", "kv-one"], &[]).await;
        assert_eq!(run.code, 2, "{run:?}");
    })
    .await;
}

// ---------------------------------------------------------------------------------------------------------------
// package

#[tokio::test]
async fn a_package_runs_under_the_functions_host_as_func_start_would_run_it() {
    bounded(async {
        let out = tempfile::tempdir().unwrap();
        let binary = format!("test-event={}", probe().display());
        let run =
            keyturn(&["package", "test-event", "--binary", &binary, "--out", out.path().to_str().unwrap()], &[]).await;
        assert_eq!(run.code, 0, "{run:?}");
        assert!(run.stdout.contains("test-event") && run.stdout.contains("MiB"), "sizes reported: {run:?}");
        let folder = out.path().join("test-event");
        assert!(out.path().join("test-event.zip").is_file());

        // No executable override: the stand-in starts `handler` from host.json, in the package folder.
        let app = FunctionApp::load(&folder).unwrap();
        assert_eq!(app.executable_path(), folder.join("handler"));
        let host = FunctionsHost::builder(app).init_timeout(Duration::from_secs(20)).start().await.unwrap();
        let event = serde_json::json!([{
            "id": "package-1", "topic": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv-one",
            "subject": "db-password", "eventType": "Microsoft.KeyVault.SecretNewVersionCreated",
            "eventTime": "2026-01-01T00:00:00Z", "dataVersion": "1", "metadataVersion": "1",
            "data": {"Id": "https://kv-one.vault.azure.net/secrets/db-password/v1", "VaultName": "kv-one",
                     "ObjectType": "Secret", "ObjectName": "db-password", "Version": "v1", "NBF": null, "EXP": null}
        }]);
        let answer =
            deliver(&client(), &host.webhook_url("test-event"), Some("Notification"), &event.to_string()).await;
        assert_eq!(answer.status, 202, "{answer:?}");
        host.shutdown().await;

        // A handler that is not built: exit 4 with the cargo command that builds it.
        let empty = tempfile::tempdir().unwrap();
        // The deployments' dist profile by default; the quicker release build on request.
        for (profile, hint) in [
            (None, "cargo build --profile dist -p near-expiry"),
            (Some("release"), "cargo build --release -p near-expiry"),
        ] {
            let mut args = vec!["package", "near-expiry"];
            args.extend(profile.map(|profile| ["--profile", profile]).into_iter().flatten());
            args.extend(["--target-dir", empty.path().to_str().unwrap(), "--out", out.path().to_str().unwrap()]);
            let run = keyturn(&args, &[]).await;
            assert_eq!(run.code, 4, "{run:?}");
            assert!(run.stderr.contains(hint), "{run:?}");
        }
    })
    .await;
}

// ---------------------------------------------------------------------------------------------------------------
// dev

/// A running `keyturn dev`, killed if the test fails before stopping it.
struct Dev {
    child: tokio::process::Child,
    banner: String,
}

impl Dev {
    async fn start(state_file: &Path) -> Dev {
        let binary = format!("test-event={}", probe().display());
        let mut child = tokio::process::Command::new(workspace_binary("keyturn"))
            .args(["dev", "--vault", "kv-one", "--handler", "test-event", "--binary", &binary, "--state-file"])
            .arg(state_file)
            .current_dir(repo_root())
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut banner = String::new();
        let read = async {
            while let Some(line) = lines.next_line().await.unwrap() {
                banner.push_str(&line);
                banner.push('\n');
                if line.contains("Ctrl-C stops the stack") {
                    return;
                }
            }
            panic!("keyturn dev ended before it was ready:\n{banner}");
        };
        tokio::time::timeout(Duration::from_secs(60), read).await.expect("keyturn dev was ready within 60 s");
        Dev { child, banner }
    }

    /// The value printed after `label` in the banner.
    fn value(&self, label: &str) -> String {
        let line = self.banner.lines().find(|l| l.trim_start().starts_with(label)).unwrap_or_else(|| {
            panic!("no '{label}' line in:\n{}", self.banner);
        });
        line.trim_start()[label.len()..].split_whitespace().next().unwrap().to_owned()
    }

    fn handler_pid(&self) -> i32 {
        let line = self.banner.lines().find(|l| l.contains("handler test-event")).unwrap();
        line.rsplit("(pid ").next().unwrap().trim_end_matches(')').parse().unwrap()
    }

    async fn interrupt(mut self) -> i32 {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id().unwrap()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("keyturn dev stopped within 30 s of SIGINT")
            .unwrap();
        status.code().unwrap_or(-1)
    }
}

fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

#[tokio::test]
async fn dev_refuses_a_sweep_schedule_the_functions_host_would_not_index() {
    bounded(async {
        // Unix cron's five fields: Functions timers take six, seconds first.
        let run = keyturn(&["dev", "--sweep-schedule", "*/5 * * * *"], &[]).await;
        assert_eq!(run.code, 2, "{run:?}");
        assert!(run.stderr.contains("'*/5 * * * *' is not an NCRONTAB schedule: it has 5 field(s)"), "{run:?}");
    })
    .await;
}

#[tokio::test]
async fn dev_runs_until_sigint_twice_at_once_and_leaves_nothing_behind() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let (first_state, second_state) = (dir.path().join("one.json"), dir.path().join("two.json"));
        let (first, second) = tokio::join!(Dev::start(&first_state), Dev::start(&second_state));

        let management = first.value("management API");
        assert_ne!(management, second.value("management API"), "two stacks on ephemeral ports");
        let about: Value = client().get(&management).send().await.unwrap().json().await.unwrap();
        assert_eq!(about["vaults"]["kv-one"].as_str().unwrap(), first.value("vault kv-one"));
        assert!(Path::new(&first.value("CA certificate")).is_file());
        assert!(first.banner.contains("\"FUNCTIONS_WORKER_RUNTIME\": \"custom\""), "{}", first.banner);
        assert!(first.banner.contains("export KEYTURN_VAULTS='kv-one=https://127.0.0.1:"), "{}", first.banner);

        // Strict RBAC: a `func start` run needs the handler's own identity. The banner and the state file give its
        // AZURE_CLIENT_ID, and the identity endpoint issues tokens for it (it is an identity the stack knows).
        let client_id = first.value("test-event").trim_start_matches("AZURE_CLIENT_ID=").to_owned();
        let state: Value = serde_json::from_slice(&std::fs::read(&first_state).unwrap()).unwrap();
        assert_eq!(state["clientIds"]["test-event"].as_str(), Some(client_id.as_str()), "{state:#}");
        let identity_endpoint = first.value("identity endpoint");
        let header = first
            .banner
            .lines()
            .find_map(|line| line.strip_prefix("export IDENTITY_HEADER='"))
            .map(|rest| rest.trim_end_matches('\'').to_owned())
            .unwrap_or_else(|| panic!("no IDENTITY_HEADER in:\n{}", first.banner));
        let token = client()
            .get(format!("{identity_endpoint}?api-version=2019-08-01&resource=https%3A%2F%2Fvault.azure.net&client_id={client_id}"))
            .header("x-identity-header", header)
            .send()
            .await
            .unwrap();
        assert_eq!(token.status().as_u16(), 200, "a token for test-event's identity: {}", token.text().await.unwrap());
        let token: Value = token.json().await.unwrap();
        assert_eq!(token["client_id"].as_str(), Some(client_id.as_str()), "{token}");

        // `send --to dev` finds the running handler through the state file.
        let run = keyturn(
            &[
                "send",
                "test-event",
                "--vault",
                "kv-one",
                "--secret",
                "keyturn-canary",
                "--to",
                "dev",
                "--state-file",
                first_state.to_str().unwrap(),
            ],
            &[],
        )
        .await;
        assert_eq!(run.code, 0, "{run:?}");

        let pids = [first.handler_pid(), second.handler_pid()];
        assert!(pids.iter().all(|pid| alive(*pid)));
        let (first_code, second_code) = tokio::join!(first.interrupt(), second.interrupt());
        assert_eq!((first_code, second_code), (0, 0), "Ctrl-C is a clean stop");
        for pid in pids {
            // The handler was the stand-in's child: reaped by it, so it is gone, not a zombie.
            assert!(!alive(pid), "handler process {pid} outlived keyturn dev");
        }
        assert!(!first_state.exists() && !second_state.exists(), "state files removed at stop");
        assert!(client().get(&management).send().await.is_err(), "the management API still answers");
    })
    .await;
}

// ---------------------------------------------------------------------------------------------------------------
// check

const VAULT: &str = "kv-check";
const SECRETS: usize = 240;
const KEYS: usize = 30;

fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn seed(kv: &keyturn_local::keyvault::RunningEmulator) {
    let store = kv.store();
    let now = kv.clock().now().timestamp();
    let day = 86_400;
    for i in 0..SECRETS {
        let (exp, tags) = match i % 4 {
            0 => (Some(now + 10 * day), tags(&[("KeyturnRotation", "generated"), ("ValidityPeriodDays", "60")])),
            1 => (Some(now - 3 * day), tags(&[])),
            2 => (None, tags(&[("KeyturnRotation", "generated")])),
            _ => (Some(now + 90 * day), tags(&[("KeyturnMirror", "kv-dr")])),
        };
        let spec = SecretSpec {
            value: "v".into(),
            content_type: None,
            attributes: AttributeInput { exp, ..Default::default() },
            tags,
        };
        store.set_secret(VAULT, &format!("secret-{i:03}"), spec).unwrap();
    }
    for i in 0..KEYS {
        let input = KeySpecInput {
            kty: "EC".into(),
            spec: KeySpec::Ec(Curve::P256),
            key_ops: None,
            attributes: AttributeInput { exp: Some(now + 20 * day), ..Default::default() },
            tags: tags(&[("KeyturnRotation", "enabled")]),
        };
        store.create_key(VAULT, &format!("key-{i:03}"), input).unwrap();
    }
    let policy = CertificatePolicy {
        issuer: Some(IssuerParams { name: Some("Self".into()), ..Default::default() }),
        x509_props: Some(X509Props { subject: Some("CN=api.example.test".into()), ..Default::default() }),
        lifetime_actions: Some(Vec::new()),
        ..Default::default()
    };
    store
        .create_certificate(
            VAULT,
            "api-tls",
            Some(policy),
            AttributeInput::default(),
            tags(&[("KeyturnRotation", "enabled")]),
        )
        .unwrap();
}

/// The vault's whole state. Certificates are issued lazily, on the first read after their delay: settle them
/// first, so the snapshot compares content, not the emulator's bookkeeping.
fn snapshot(kv: &keyturn_local::keyvault::RunningEmulator) -> Value {
    kv.store().current_objects();
    serde_json::to_value(&*kv.store().vault(VAULT).unwrap().read()).unwrap()
}

#[tokio::test]
async fn check_reports_every_object_of_a_large_vault_and_changes_nothing() {
    bounded(async {
        let kv = KeyVaultEmulator::builder().vault(VAULT).start().await.unwrap();
        // `keyturn check` runs as the stack's system-assigned identity, which holds nothing unless assigned:
        // the surveyor's role, visibly.
        kv.grant_system_identity("Key Vault Reader").unwrap();
        seed(&kv);
        let before = snapshot(&kv);
        let identity = kv.identity_env();
        let env = vec![
            ("KEYTURN_CREDENTIAL".to_owned(), "managed-identity".to_owned()),
            ("IDENTITY_ENDPOINT".to_owned(), identity.endpoint.clone()),
            ("IDENTITY_HEADER".to_owned(), identity.header.clone()),
            ("KEYTURN_VAULTS".to_owned(), format!("{VAULT}={}", kv.vault_url(VAULT).unwrap())),
            ("KEYTURN_CA_FILE".to_owned(), kv.ca_pem_path().display().to_string()),
        ];

        let run = keyturn(&["check", "--vault", VAULT, "--json"], &env).await;
        assert_eq!(run.code, 0, "{}", run.stderr);
        let rows: Vec<Value> = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(
            rows.len(),
            SECRETS + KEYS + 1,
            "every object across every page, the certificate's key and secret left out"
        );
        let find = |name: &str| rows.iter().find(|r| r["name"] == name).unwrap_or_else(|| panic!("no row for {name}"));
        let action = |name: &str, handler: &str| find(name)[handler]["action"].as_str().unwrap().to_owned();

        assert_eq!(action("secret-000", "nearExpiry"), "rotate");
        assert_eq!(find("secret-000")["policy"], "generated, password(32), 60 days");
        assert_eq!(find("secret-000")["expiresIn"], "in 9 days", "10 days at seeding, a little less now");
        assert_eq!(action("secret-001", "nearExpiry"), "notify");
        assert_eq!(action("secret-001", "expired"), "notify");
        assert_eq!(find("secret-001")["expiresIn"], "expired 3 days ago");
        assert_eq!(action("secret-002", "nearExpiry"), "none");
        assert_eq!(find("secret-003")["newVersion"]["detail"], "and replicate to kv-dr");
        assert_eq!(action("key-007", "nearExpiry"), "rotate");
        assert_eq!(find("key-007")["kind"], "Key");
        assert_eq!(action("api-tls", "nearExpiry"), "renew");
        assert_eq!(find("api-tls")["version"].as_str().map(str::len), Some(32));

        // The table, for people: a header, one line per object, a summary.
        let run = keyturn(&["check"], &env).await;
        assert_eq!(run.code, 0, "{}", run.stderr);
        let mut lines = run.stdout.lines();
        assert!(lines.next().unwrap().starts_with("VAULT"), "{}", run.stdout);
        assert!(run.stdout.contains(&format!("{} objects: ", SECRETS + KEYS + 1)), "{}", run.stdout);
        assert!(run.stderr.contains("listing secrets in kv-check"), "progress on stderr: {}", run.stderr);

        // Not assert_eq: the state holds key material and is far too long to print.
        assert!(snapshot(&kv) == before, "keyturn check changed the vault");
        kv.shutdown().await;
    })
    .await;
}
