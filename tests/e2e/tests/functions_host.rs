//! The Functions host stand-in driving a real handler process (`probe-handler`, on `keyturn_host::run`): every fixture
//! in both schemas, batches of one and of many, payload variants, the handshakes, and every failure path the
//! real host has: failed and panicking invocations, a killed process, exit codes 0 and 200, three crashes,
//! functionTimeout.

// Helpers outside #[test] fns unwrap too: a panic there is a failed test with a line number.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use keyturn_e2e::{Answer, Fixture, client, deliver, fixtures, host_for};
use keyturn_local::functions_host::{FunctionsHost, InvocationRecord, Stream, WorkerStatus};
use serde_json::{Value, json};

const FUNCTION: &str = "test-event";

fn probe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_probe-handler"))
}

/// Every test is bounded: a hung handler must fail the test, not the CI run.
async fn bounded<T>(test: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(120), test)
        .await
        .unwrap_or_else(|_| panic!("the test did not finish within 120 s"))
}

async fn start_probe() -> FunctionsHost {
    host_for(FUNCTION, &probe()).start().await.unwrap()
}

/// An event of a type no handler knows, whose subject steers the probe (see probe-handler.rs).
fn steering_event(subject: &str) -> Value {
    json!({
        "id": format!("probe-{subject}-{}", uuid_like()),
        "topic": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/sample-kv",
        "subject": subject,
        "eventType": "Keyturn.Probe",
        "eventTime": "2026-01-01T00:00:00Z",
        "data": {},
        "dataVersion": "1",
        "metadataVersion": "1"
    })
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

async fn notify(host: &FunctionsHost, events: &[Value]) -> Answer {
    deliver(&client(), &host.webhook_url(FUNCTION), Some("Notification"), &Value::from(events.to_vec()).to_string())
        .await
}

fn record_for<'a>(records: &'a [InvocationRecord], event_id: &str) -> &'a InvocationRecord {
    records
        .iter()
        .find(|record| record.event_id.as_deref() == Some(event_id))
        .unwrap_or_else(|| panic!("no invocation for event {event_id}: {records:#?}"))
}

/// The probe's echo of one invocation (`done: type=... id=...`).
fn echo_of(records: &[InvocationRecord], event_id: &str) -> String {
    let record = record_for(records, event_id);
    let response = record.result.as_ref().unwrap_or_else(|error| panic!("invocation of {event_id} failed: {error}"));
    assert_eq!(response.logs.len(), 1, "{response:?}");
    response.logs[0].clone()
}

/// What the probe must have echoed for a Key Vault event, computed from the raw JSON (not through `events`).
fn expected_echo(event: &Value) -> Vec<String> {
    let data = &event["data"];
    let event_type = event.get("eventType").or_else(|| event.get("type")).and_then(Value::as_str).unwrap();
    let epoch = |value: &Value| match value {
        Value::Null => "none".to_owned(),
        Value::String(text) => text.trim().to_owned(),
        other => other.to_string(),
    };
    vec![
        format!("type={event_type}"),
        format!("id={}", event["id"].as_str().unwrap()),
        format!("vault={}", data["VaultName"].as_str().unwrap()),
        format!("name={}", data["ObjectName"].as_str().unwrap()),
        format!("version={}", data["Version"].as_str().unwrap_or("none")),
        format!("nbf={}", epoch(&data["NBF"])),
        format!("exp={}", epoch(&data["EXP"])),
    ]
}

fn assert_echo(records: &[InvocationRecord], event: &Value) {
    let echo = echo_of(records, event["id"].as_str().unwrap());
    assert!(echo.starts_with("done: "), "{echo}");
    for part in expected_echo(event) {
        assert!(echo.contains(&format!("{part} ")) || echo.ends_with(&part), "{echo} lacks {part}");
    }
}

fn notifications() -> Vec<Fixture> {
    let fixtures: Vec<Fixture> = fixtures().into_iter().filter(|fixture| !fixture.is_validation()).collect();
    assert!(fixtures.iter().any(Fixture::is_cloud_events), "no CloudEvents fixture");
    assert!(fixtures.iter().any(|fixture| !fixture.is_cloud_events()), "no Event Grid schema fixture");
    assert!(fixtures.len() >= 19, "expected every Key Vault fixture, found {}", fixtures.len());
    fixtures
}

#[tokio::test]
async fn every_fixture_in_both_schemas_one_by_one_and_all_at_once() {
    bounded(async {
        let host = start_probe().await;
        let url = host.webhook_url(FUNCTION);
        let fixtures = notifications();

        // One delivery per fixture, as Event Grid sends them (maxEventsPerBatch 1); CloudEvents as one object.
        for fixture in &fixtures {
            let body = if fixture.is_cloud_events() {
                fixture.events[0].to_string()
            } else {
                Value::from(fixture.events.clone()).to_string()
            };
            let answer = deliver(&client(), &url, Some("Notification"), &body).await;
            assert_eq!(answer.status, 202, "{}: {answer:?}", fixture.name);
        }
        let records = host.invocations();
        let all: Vec<Value> = fixtures.iter().flat_map(|fixture| fixture.events.clone()).collect();
        assert_eq!(records.len(), all.len());
        for event in &all {
            assert_echo(&records, event);
        }

        // Every fixture in one batch: split into parallel invocations, 202 when all succeed.
        let answer = notify(&host, &all).await;
        assert_eq!(answer.status, 202, "{answer:?}");
        let records = host.invocations();
        assert_eq!(records.len(), 2 * all.len());
        assert!(records.iter().all(|record| record.result.is_ok()), "{records:#?}");

        // The handler's response Logs reach the captured output.
        assert!(
            host.output()
                .lines()
                .iter()
                .any(|line| line.stream == Stream::InvocationLog
                    && line.text.starts_with("done: type=Microsoft.KeyVault.")),
            "no invocation log captured"
        );
        host.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_batch_runs_in_parallel() {
    bounded(async {
        let host = start_probe().await;
        let events: Vec<Value> = (0..8).map(|_| steering_event("sleep-1000")).collect();
        let started = std::time::Instant::now();
        let answer = notify(&host, &events).await;
        assert_eq!(answer.status, 202, "{answer:?}");
        // Eight one-second invocations one after another would take eight seconds.
        assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
        host.shutdown().await;
    })
    .await;
}

/// Real payloads vary beyond the fixtures: camelCase keys, NBF/EXP as strings or null, stray whitespace.
#[tokio::test]
async fn payload_variants_beyond_the_fixtures() {
    bounded(async {
        let host = start_probe().await;
        let base =
            fixtures().into_iter().find(|fixture| fixture.name == "eventgrid-secret-near-expiry").unwrap().events[0]
                .clone();
        let cloud =
            fixtures().into_iter().find(|fixture| fixture.name == "cloudevents-key-expired").unwrap().events[0].clone();

        let variant = |id: &str, from: &Value, edit: &dyn Fn(&mut serde_json::Map<String, Value>)| {
            let mut event = from.clone();
            event["id"] = json!(id);
            edit(event["data"].as_object_mut().unwrap());
            event
        };
        let camel = variant("variant-camel", &base, &|data| {
            let pascal: Vec<(String, Value)> = std::mem::take(data).into_iter().collect();
            for (key, value) in pascal {
                let camel = match key.as_str() {
                    "NBF" => "nbf".to_owned(),
                    "EXP" => "exp".to_owned(),
                    _ => key[..1].to_lowercase() + &key[1..],
                };
                data.insert(camel, value);
            }
        });
        let strings = variant("variant-strings", &base, &|data| {
            data.insert("NBF".into(), json!("1559081980"));
            data.insert("EXP".into(), json!("1561673980"));
        });
        let nulls = variant("variant-nulls", &cloud, &|data| {
            data.insert("NBF".into(), Value::Null);
            data.insert("EXP".into(), Value::Null);
        });
        let spaced = variant("variant-whitespace", &base, &|data| {
            let name = data.remove("ObjectName").unwrap();
            data.insert("ObjectName ".into(), json!(format!(" {} ", name.as_str().unwrap())));
            let version = data["Version"].as_str().unwrap().to_owned();
            data.insert("Version".into(), json!(format!(" {version}")));
        });
        let events = vec![camel.clone(), strings.clone(), nulls.clone(), spaced.clone()];
        let answer = notify(&host, &events).await;
        assert_eq!(answer.status, 202, "{answer:?}");

        let records = host.invocations();
        // The camelCase one echoes what the PascalCase original says.
        let mut camel_expected = base.clone();
        camel_expected["id"] = json!("variant-camel");
        assert_echo(&records, &camel_expected);
        assert_echo(&records, &strings);
        assert_echo(&records, &nulls);
        let echo = echo_of(&records, "variant-whitespace");
        let name = base["data"]["ObjectName"].as_str().unwrap();
        let version = base["data"]["Version"].as_str().unwrap();
        assert!(echo.contains(&format!("name={name} version={version} ")), "{echo}");

        // Valid JSON that is no well-formed event is acknowledged (rejected), not retried for 24 hours.
        let broken = variant("variant-broken", &base, &|data| {
            data.insert("EXP".into(), json!(true));
        });
        let answer = notify(&host, &[broken]).await;
        assert_eq!(answer.status, 202, "{answer:?}");
        let echo = echo_of(&host.invocations(), "variant-broken");
        assert!(echo.starts_with("rejected: ") && echo.contains("EXP"), "{echo}");
        host.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn handshakes_and_protocol_errors_are_answered_by_the_host() {
    bounded(async {
        let host = start_probe().await;
        let url = host.webhook_url(FUNCTION);
        let validation = fixtures().into_iter().find(Fixture::is_validation).unwrap();
        let code = validation.events[0]["data"]["validationCode"].as_str().unwrap().to_owned();
        let body = Value::from(validation.events.clone()).to_string();

        let answer = deliver(&client(), &url, Some("SubscriptionValidation"), &body).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(serde_json::from_str::<Value>(&answer.body).unwrap(), json!({"validationResponse": code}));

        let answer = deliver(&client(), &url, Some("Unsubscribe"), "[]").await;
        assert_eq!(answer.status, 202, "{answer:?}");

        let response = client()
            .request(reqwest::Method::OPTIONS, &url)
            .header("WebHook-Request-Origin", "eventgrid.azure.net")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["WebHook-Allowed-Origin"], "eventgrid.azure.net");

        let answer = deliver(&client(), &url, None, &body).await;
        assert_eq!(answer.status, 400, "{answer:?}");
        assert!(answer.body.contains("aeg-event-type"), "{answer:?}");

        let answer = deliver(&client(), &host.webhook_url("near-expiry"), Some("Notification"), "[]").await;
        assert_eq!((answer.status, answer.body.as_str()), (404, "cannot find function: 'near-expiry'"));

        // None of these reached the handler.
        assert!(host.invocations().is_empty(), "{:#?}", host.invocations());
        host.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn one_failing_event_fails_the_batch_and_a_panic_does_not_stop_the_handler() {
    bounded(async {
        let host = start_probe().await;
        let pid = host.worker_pid().unwrap();

        let batch = [steering_event("a"), steering_event("retry"), steering_event("b")];
        let answer = notify(&host, &batch).await;
        assert_eq!(answer.status, 500, "{answer:?}");
        assert!(answer.body.starts_with("1 of 3 invocations failed"), "{answer:?}");

        // A permanent error and a rejection are acknowledged: Event Grid must not retry them.
        let answer =
            notify(&host, &[steering_event("permanent"), steering_event("reject"), steering_event("skip")]).await;
        assert_eq!(answer.status, 202, "{answer:?}");

        let answer = notify(&host, &[steering_event("panic")]).await;
        assert_eq!(answer.status, 500, "{answer:?}");
        assert!(answer.body.contains("500"), "{answer:?}");
        let answer = notify(&host, &[steering_event("after-panic")]).await;
        assert_eq!(answer.status, 202, "{answer:?}");
        assert_eq!(host.worker_pid(), Some(pid), "a panic must not cost the process");
        host.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_handler_killed_mid_invocation_is_restarted_and_the_next_delivery_succeeds() {
    bounded(async {
        let host = start_probe().await;
        let pid = host.worker_pid().unwrap();
        let url = host.webhook_url(FUNCTION);
        let slow = Value::from(vec![steering_event("sleep-5000")]).to_string();
        let in_flight = tokio::spawn(async move { deliver(&client(), &url, Some("Notification"), &slow).await });
        // Let the invocation reach the handler, then kill it the hard way.
        tokio::time::sleep(Duration::from_millis(500)).await;
        kill(pid, nix::sys::signal::Signal::SIGKILL);

        let answer = in_flight.await.unwrap();
        assert_eq!(answer.status, 500, "{answer:?}");

        let answer = notify(&host, &[steering_event("after-kill")]).await;
        assert_eq!(answer.status, 202, "{answer:?}");
        let status = host.status();
        assert!(matches!(status, WorkerStatus::Running { pid: new, generation: 2, .. } if new != pid), "{status:?}");
        host.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn exit_code_zero_is_not_restarted() {
    bounded(async {
        let host = start_probe().await;
        let answer = notify(&host, &[steering_event("exit-0")]).await;
        assert_eq!(answer.status, 500, "{answer:?}");
        let status =
            tokio::time::timeout(Duration::from_secs(10), host.wait_for_status(WorkerStatus::is_final)).await.unwrap();
        assert_eq!(status, WorkerStatus::Exited);

        let answer = notify(&host, &[steering_event("after-exit")]).await;
        assert_eq!(answer.status, 500, "{answer:?}");
        assert!(answer.body.contains("exited with code 0"), "{answer:?}");
        assert!(
            host.output()
                .lines()
                .iter()
                .any(|line| line.stream == Stream::Stderr && line.text.contains("probe-handler: exiting with code 0")),
            "the handler's stderr was not captured"
        );
        host.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn exit_code_200_restarts_without_counting_as_a_crash() {
    bounded(async {
        let host = start_probe().await;
        for _ in 0..3 {
            let answer = notify(&host, &[steering_event("exit-200")]).await;
            assert_eq!(answer.status, 500, "{answer:?}");
        }
        let answer = notify(&host, &[steering_event("after-restarts")]).await;
        assert_eq!(answer.status, 202, "{answer:?}");
        assert!(matches!(host.status(), WorkerStatus::Running { generation: 4, .. }), "{:?}", host.status());
        host.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn the_third_crash_stops_the_host() {
    bounded(async {
        let host = start_probe().await;
        for crash in 1..=3 {
            let answer = notify(&host, &[steering_event("exit-3")]).await;
            assert_eq!(answer.status, 500, "crash {crash}: {answer:?}");
        }
        let status =
            tokio::time::timeout(Duration::from_secs(10), host.wait_for_status(WorkerStatus::is_final)).await.unwrap();
        assert!(matches!(&status, WorkerStatus::Failed(reason) if reason.contains("crashed 3 times")), "{status:?}");

        let answer = notify(&host, &[steering_event("after-crashes")]).await;
        assert_eq!(answer.status, 503, "{answer:?}");
        assert!(answer.body.contains("crashed 3 times"), "{answer:?}");
        host.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn an_invocation_past_the_function_timeout_fails() {
    bounded(async {
        let host =
            host_for(FUNCTION, &probe()).function_timeout(Some(Duration::from_millis(500))).start().await.unwrap();
        let answer = notify(&host, &[steering_event("sleep-3000")]).await;
        assert_eq!(answer.status, 500, "{answer:?}");
        assert!(answer.body.contains("function timeout"), "{answer:?}");
        let answer = notify(&host, &[steering_event("quick")]).await;
        assert_eq!(answer.status, 202, "{answer:?}");
        host.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn the_same_binary_serves_another_function_folder_through_an_app_setting() {
    bounded(async {
        let host =
            host_for("near-expiry", &probe()).app_setting("PROBE_FUNCTION", "near-expiry").start().await.unwrap();
        let event =
            fixtures().into_iter().find(|fixture| fixture.name == "cloudevents-secret-near-expiry").unwrap().events[0]
                .clone();
        let answer =
            deliver(&client(), &host.webhook_url("near-expiry"), Some("Notification"), &event.to_string()).await;
        assert_eq!(answer.status, 202, "{answer:?}");
        assert_echo(&host.invocations(), &event);
        host.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn shutdown_and_drop_leave_no_process_behind() {
    bounded(async {
        let host = start_probe().await;
        let pid = host.worker_pid().unwrap();
        host.shutdown().await;
        assert!(process_gone(pid).await, "handler {pid} survived shutdown");

        let host = start_probe().await;
        let pid = host.worker_pid().unwrap();
        drop(host);
        assert!(process_gone(pid).await, "handler {pid} survived drop");
    })
    .await;
}

#[tokio::test]
async fn a_missing_executable_fails_start_with_its_path() {
    bounded(async {
        let missing = PathBuf::from("/nonexistent/keyturn-handler");
        let error = host_for(FUNCTION, &missing).start().await.unwrap_err().to_string();
        assert!(error.contains("/nonexistent/keyturn-handler"), "{error}");
        let error = host_for("no-such-function", &probe()).start().await.unwrap_err().to_string();
        assert!(error.contains("\"no-such-function\" is not defined"), "{error}");
    })
    .await;
}

#[test]
fn workspace_binaries_are_found_beside_the_test_executable() {
    assert_eq!(keyturn_e2e::workspace_binary("probe-handler"), probe());
}

fn kill(pid: u32, signal: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap());
    nix::sys::signal::kill(pid, signal).unwrap();
}

/// Whether `pid` has exited (gone, or a zombie waiting to be reaped), polling for up to five seconds.
async fn process_gone(pid: u32) -> bool {
    for _ in 0..100 {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            // The state follows the parenthesised command name.
            Ok(stat) if stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')) => {
                return true;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    false
}
