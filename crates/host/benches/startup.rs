//! How fast a handler is ready and how much the adapter adds per invocation, measured on the real
//! `host-echo` binary on both adapters (run with `cargo bench -p keyturn-host --bench startup`).
//!
//! - Azure Functions: process start to first readiness answer (target under 10 ms, since the Functions host
//!   starts handlers cold), then the invocation round trip on a kept-alive connection.
//! - AWS Lambda: the cold start as Lambda sees it, process start to the first event processed: the
//!   invocation is queued at the local Runtime API before the process starts, and the clock stops when the
//!   function posts its response (an Event Grid batch of one event, through the webhook path with its secret
//!   check). Then the warm invocation round trip through the Runtime API.

// A bench reports on stdout; helpers unwrap because a failed measurement should stop loudly.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keyturn_local::lambda::{Completion, LocalLambda};

const STARTS: usize = 50;
const INVOCATIONS: usize = 2000;
const LAMBDA_INVOCATIONS: usize = 500;
const SECRET: &str = "4f6b1c2d9e8a7b3c5d0e1f2a3b4c5d6e";
const NEAR_EXPIRY: &str = include_str!("../../events/fixtures/eventgrid-secret-near-expiry.json");

/// Kills the handler even if the bench panics.
struct Handler(Child);

impl Drop for Handler {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start(port: u16) -> Handler {
    let child = Command::new(env!("CARGO_BIN_EXE_host-echo"))
        .env_clear()
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("HOST_ECHO_GREETING", "hello")
        .env("KEYTURN_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Handler(child)
}

/// One HTTP/1.1 request on a kept-alive connection; returns the status code. Responses here are small and
/// carry Content-Length, which is all this minimal reader handles.
fn request(stream: &mut TcpStream, head: &str, body: &[u8]) -> u16 {
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let read = stream.read(&mut chunk).unwrap();
        assert!(read > 0, "connection closed");
        buffer.extend_from_slice(&chunk[..read]);
        let text = String::from_utf8_lossy(&buffer);
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse().ok())?
                })
                .unwrap();
            if buffer.len() >= end + 4 + length {
                return text[9..12].parse().unwrap();
            }
        }
    }
}

fn readiness(port: u16) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    Some(request(&mut stream, "GET / HTTP/1.1\r\nhost: localhost\r\n\r\n", b""))
}

fn summary(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    println!("{name}: n={} min={:?} median={:?} p95={:?} max={:?}", samples.len(), at(0.0), at(0.5), at(0.95), at(1.0));
}

fn main() {
    let mut starts = Vec::new();
    for _ in 0..STARTS {
        let port = free_port();
        let begin = Instant::now();
        let _handler = start(port);
        loop {
            if readiness(port) == Some(200) {
                break;
            }
            assert!(begin.elapsed() < Duration::from_secs(10), "never ready");
            std::thread::sleep(Duration::from_micros(200));
        }
        starts.push(begin.elapsed());
    }
    summary("start to ready", starts);

    let port = free_port();
    let _handler = start(port);
    while readiness(port) != Some(200) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let body = format!(r#"{{"Data":{{"eventGridEvent":{NEAR_EXPIRY}}},"Metadata":{{}}}}"#);
    let head = format!(
        "POST /echo HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\nX-Azure-Functions-InvocationId: bench\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_nodelay(true).unwrap();
    let mut latencies = Vec::new();
    for _ in 0..INVOCATIONS {
        let begin = Instant::now();
        assert_eq!(request(&mut stream, &head, body.as_bytes()), 200);
        latencies.push(begin.elapsed());
    }
    summary("invocation round trip (keep-alive)", latencies);

    lambda_cold_start();
}

/// A function URL request carrying one Event Grid notification with the right secret.
fn webhook_event() -> serde_json::Value {
    serde_json::json!({
        "version": "2.0",
        "rawPath": "/",
        "rawQueryString": "",
        "headers": {
            "content-type": "application/json",
            "aeg-event-type": "Notification",
            "x-keyturn-webhook-secret": SECRET
        },
        "requestContext": {"requestId": "bench", "http": {"method": "POST", "path": "/"}},
        "body": format!("[{NEAR_EXPIRY}]"),
        "isBase64Encoded": false
    })
}

fn processed(completion: Result<Completion, keyturn_local::lambda::InvokeError>) {
    let Ok(Completion::Response(answer)) = completion else { panic!("not processed: {completion:?}") };
    assert_eq!(answer["statusCode"], 200, "{answer}");
    assert!(answer["body"].as_str().unwrap().contains("done: hello"), "{answer}");
}

/// `host-echo` as a local Lambda function (started, not yet polling).
async fn echo_function() -> LocalLambda {
    LocalLambda::builder(env!("CARGO_BIN_EXE_host-echo"))
        .timeout(Duration::from_secs(10))
        .app_settings([("HOST_ECHO_GREETING", "hello"), ("KEYTURN_WEBHOOK_SECRET", SECRET), ("KEYTURN_LOG", "warn")])
        .start()
        .await
        .unwrap()
}

fn lambda_cold_start() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    runtime.block_on(async {
        let mut starts = Vec::new();
        for _ in 0..STARTS {
            // The clock starts just before the spawn; the invocation is queued before the process polls.
            let function = echo_function().await;
            processed(function.runtime().invoke(webhook_event()).await);
            starts.push(function.started_at().unwrap().elapsed());
            function.shutdown().await;
        }
        summary("lambda: start to first event processed", starts);

        let function = echo_function().await;
        processed(function.runtime().invoke(webhook_event()).await);
        let mut latencies = Vec::new();
        for _ in 0..LAMBDA_INVOCATIONS {
            let begin = Instant::now();
            processed(function.runtime().invoke(webhook_event()).await);
            latencies.push(begin.elapsed());
        }
        summary("lambda: warm invocation round trip (Runtime API)", latencies);
        function.shutdown().await;
    });
}
