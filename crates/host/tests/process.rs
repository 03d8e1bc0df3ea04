//! The `host-echo` binary as the Functions host runs it: a real process on a real port, stopped by real
//! signals. What only a process shows: exit codes, stderr, JSON lines on stdout.

// Test helpers outside #[test] functions unwrap too: a panic there is a failed test with a line number.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Output, Stdio};
use std::time::Duration;

use keyturn_host::azure_functions::wire::{INVOCATION_ID_HEADER, InvocationRequest, InvocationResponse};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio::time::timeout;

const NEAR_EXPIRY: &str = include_str!("../../events/fixtures/eventgrid-secret-near-expiry.json");

/// Every wait in these tests is bounded by this.
const LIMIT: Duration = Duration::from_secs(10);

fn event_with_subject(subject: &str) -> Value {
    let mut event: Value = serde_json::from_str(NEAR_EXPIRY).unwrap();
    event["subject"] = json!(subject);
    event["data"]["ObjectName"] = json!(subject);
    event["data"]["Id"] =
        json!(format!("https://sample-kv.vault.azure.net/secrets/{subject}/c5aab54cb80a27d8b0355bb5af566194"));
    event
}

/// A port nothing listens on right now (the race with another process taking it is accepted).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts `host-echo` with only the given environment; killed on drop (`kill_on_drop`), even if a test fails.
fn start(env: &[(&str, String)]) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_host-echo"));
    command
        .env_clear()
        .envs(env.iter().map(|(name, value)| (name, value)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command.spawn().unwrap()
}

async fn wait_ready(client: &reqwest::Client, port: u16) -> Value {
    timeout(LIMIT, async {
        loop {
            if let Ok(response) = client.get(format!("http://127.0.0.1:{port}/")).send().await {
                return response.json::<Value>().await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the handler never answered readiness")
}

fn signal(child: &Child, name: &str) {
    let pid = child.id().unwrap().to_string();
    let status = std::process::Command::new("kill").args([format!("-{name}"), pid]).status().unwrap();
    assert!(status.success());
}

async fn invoke(client: &reqwest::Client, port: u16, id: &str, event: Value) -> reqwest::Response {
    client
        .post(format!("http://127.0.0.1:{port}/echo"))
        .header(INVOCATION_ID_HEADER, id)
        .json(&InvocationRequest::for_event(event))
        .send()
        .await
        .unwrap()
}

/// Reads stdout lines (each must be JSON) until one has this `message`; returns the lines read.
async fn read_until(stdout: &mut BufReader<ChildStdout>, message: &str) -> Vec<Value> {
    let mut lines = Vec::new();
    timeout(LIMIT, async {
        let mut line = String::new();
        loop {
            line.clear();
            assert_ne!(stdout.read_line(&mut line).await.unwrap(), 0, "stdout closed");
            let parsed: Value =
                serde_json::from_str(&line).unwrap_or_else(|error| panic!("stdout line is not JSON ({error}): {line}"));
            let found = parsed["message"] == message;
            lines.push(parsed);
            if found {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no log line {message:?} on stdout; read: {lines:?}"));
    lines
}

async fn exit(child: Child) -> Output {
    timeout(LIMIT, child.wait_with_output()).await.expect("the handler did not exit").unwrap()
}

#[tokio::test]
async fn without_any_platform_variable_it_exits_78_and_says_why() {
    let child = start(&[("HOST_ECHO_GREETING", "hello".into())]);
    let output = exit(child).await;
    assert_eq!(output.status.code(), Some(78));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains(
            "echo: cannot start: no platform found: neither AWS_LAMBDA_RUNTIME_API (AWS Lambda) nor FUNCTIONS_CUSTOMHANDLER_PORT (Azure Functions) is set"
        ),
        "{stderr}"
    );
}

#[tokio::test]
async fn sigterm_lets_the_running_invocation_finish_then_exits_143() {
    let port = free_port();
    let mut child =
        start(&[("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string()), ("HOST_ECHO_GREETING", "hello".into())]);
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let client = reqwest::Client::builder().timeout(LIMIT).build().unwrap();
    assert_eq!(wait_ready(&client, port).await, json!({"function": "echo", "configured": true}));

    let slow = tokio::spawn({
        let client = client.clone();
        async move { invoke(&client, port, "inv-slow", event_with_subject("sleep-500")).await }
    });
    // The handler logs "sleeping" once it runs: the stop arrives mid-invocation.
    let lines = read_until(&mut stdout, "sleeping").await;
    let sleeping = lines.last().unwrap();
    assert_eq!(sleeping["span"]["invocation_id"], "inv-slow");
    signal(&child, "TERM");

    let response = timeout(LIMIT, slow).await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    let body: InvocationResponse = response.json().await.unwrap();
    assert_eq!(body.logs, vec!["done: hello b620eb99-826d-b5e8-970f-38ff3094f49b".to_owned()]);

    let decision = read_until(&mut stdout, "hello b620eb99-826d-b5e8-970f-38ff3094f49b").await;
    let decision = decision.last().unwrap();
    assert_eq!(decision["invocation_id"], "inv-slow");
    assert_eq!(decision["outcome"], "done");
    assert_eq!(decision["function"], "echo");
    read_until(&mut stdout, "stopped").await;
    assert_eq!(exit(child).await.status.code(), Some(143));
}

#[tokio::test]
async fn not_configured_fails_every_invocation_with_the_message_and_sigint_exits_130() {
    let port = free_port();
    let child = start(&[("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())]);
    let client = reqwest::Client::builder().timeout(LIMIT).build().unwrap();
    assert_eq!(wait_ready(&client, port).await, json!({"function": "echo", "configured": false}));

    for id in ["inv-1", "inv-2"] {
        let response = invoke(&client, port, id, event_with_subject("db-password")).await;
        assert_eq!(response.status(), 500);
        assert_eq!(
            response.json::<Value>().await.unwrap(),
            json!({"error": "not configured: HOST_ECHO_GREETING is not set"})
        );
    }

    signal(&child, "INT");
    let output = exit(child).await;
    assert_eq!(output.status.code(), Some(130));
    let stderr = String::from_utf8(output.stderr).unwrap();
    for id in ["inv-1", "inv-2"] {
        let line = format!("echo: invocation {id} failed: not configured: HOST_ECHO_GREETING is not set");
        assert!(stderr.contains(&line), "{stderr}");
    }
    let stdout = String::from_utf8(output.stdout).unwrap();
    let errors: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|line| line["failure"] == "not_configured")
        .collect();
    assert_eq!(errors.len(), 2, "{stdout}");
}
