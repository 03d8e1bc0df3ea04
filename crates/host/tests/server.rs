//! The Azure Functions adapter over a real socket on 127.0.0.1: concurrency, panics, oversized bodies and the
//! graceful stop.

// Test helpers outside #[test] functions unwrap too: a panic there is a failed test with a line number.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use keyturn_events::Event;
use keyturn_host::azure_functions::wire::{INVOCATION_ID_HEADER, InvocationRequest, InvocationResponse};
use keyturn_host::azure_functions::{Stopped, serve};
use keyturn_host::{HandlerError, Invoker, Outcome};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Barrier, Semaphore, oneshot};
use tokio::task::JoinHandle;
use tokio::time::timeout;

const NEAR_EXPIRY: &str = include_str!("../../events/fixtures/eventgrid-secret-near-expiry.json");

/// Every wait in these tests is bounded by this.
const LIMIT: Duration = Duration::from_secs(10);

fn near_expiry() -> Value {
    serde_json::from_str(NEAR_EXPIRY).unwrap()
}

fn with_subject(subject: &str) -> Value {
    let mut event = near_expiry();
    event["subject"] = json!(subject);
    event["data"]["ObjectName"] = json!(subject);
    event["data"]["Id"] =
        json!(format!("https://sample-kv.vault.azure.net/secrets/{subject}/c5aab54cb80a27d8b0355bb5af566194"));
    event
}

/// A served adapter; the server task is aborted on drop so that a failing test leaves nothing running.
struct Server {
    address: SocketAddr,
    stop: Option<oneshot::Sender<&'static str>>,
    task: Option<JoinHandle<Result<Stopped<&'static str>, keyturn_host::azure_functions::ServeError>>>,
}

impl Server {
    async fn start(invoker: Invoker, drain_timeout: Duration) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel();
        let shutdown = async move { stopped.await.unwrap_or("stop sender dropped") };
        let task = tokio::spawn(serve(listener, invoker, shutdown, drain_timeout));
        Server { address, stop: Some(stop), task: Some(task) }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    fn stop(&mut self) {
        self.stop.take().unwrap().send("test asked").unwrap();
    }

    async fn stopped(&mut self) -> Stopped<&'static str> {
        timeout(LIMIT, self.task.take().unwrap()).await.expect("the server did not stop in time").unwrap().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(LIMIT).build().unwrap()
}

async fn invoke(client: &reqwest::Client, server: &Server, id: &str, event: Value) -> reqwest::Response {
    client
        .post(server.url("/near-expiry"))
        .header(INVOCATION_ID_HEADER, id)
        .json(&InvocationRequest::for_event(event))
        .send()
        .await
        .unwrap()
}

/// Handler: `panic` panics, `slow` waits for a permit from the semaphore in its deps, anything else is done.
fn invoker(permits: Arc<Semaphore>) -> Invoker {
    let deps: Result<Arc<Semaphore>, String> = Ok(permits);
    Invoker::new("near-expiry", deps, |event: Event, permits: Arc<Arc<Semaphore>>| async move {
        match event.subject.as_str() {
            "panic" => panic!("handler bug"),
            "slow" => {
                let _permit = permits.acquire().await.map_err(HandlerError::retryable)?;
                Ok(Outcome::done("slow one finished"))
            }
            subject => Ok(Outcome::done(format!("rotated {subject}"))),
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_and_one_invocation_over_a_socket() {
    let server = Server::start(invoker(Arc::new(Semaphore::new(0))), LIMIT).await;
    let client = client();

    let ready = client.get(server.url("/")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    let response = invoke(&client, &server, "inv-1", near_expiry()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: InvocationResponse = response.json().await.unwrap();
    assert_eq!(body.logs, ["done: rotated db-password"]);
    // The typed outcome travels in `ReturnValue`.
    assert_eq!(body.outcome(), Some(Outcome::done("rotated db-password")));
    assert_eq!(body, InvocationResponse::for_outcome(&Outcome::done("rotated db-password")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invocations_run_concurrently() {
    const CONCURRENT: usize = 8;
    // Each invocation waits at the barrier: none can finish unless all eight run at the same time.
    let barrier = Arc::new(Barrier::new(CONCURRENT));
    let deps: Result<Arc<Barrier>, String> = Ok(barrier);
    let invoker = Invoker::new("near-expiry", deps, |event: Event, barrier: Arc<Arc<Barrier>>| async move {
        barrier.wait().await;
        Ok(Outcome::done(event.subject))
    });
    let server = Server::start(invoker, LIMIT).await;
    let client = client();

    let mut calls = Vec::new();
    for index in 0..CONCURRENT {
        let client = client.clone();
        let url = server.url("/near-expiry");
        calls.push(tokio::spawn(async move {
            let request = InvocationRequest::for_event(with_subject(&format!("secret-{index}")));
            let response = client.post(url).json(&request).send().await.unwrap();
            (response.status(), response.json::<InvocationResponse>().await.unwrap())
        }));
    }
    for (index, call) in calls.into_iter().enumerate() {
        let (status, body) = timeout(LIMIT, call).await.unwrap().unwrap();
        assert_eq!(status, 200);
        assert_eq!(body.logs, vec![format!("done: secret-{index}")]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_fails_its_invocation_and_the_server_keeps_serving() {
    let server = Server::start(invoker(Arc::new(Semaphore::new(0))), LIMIT).await;
    let client = client();

    let response = invoke(&client, &server, "inv-panic", with_subject("panic")).await;
    assert_eq!(response.status(), 500);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"error": "handler panicked: handler bug"}));

    for index in 0..3 {
        let response = invoke(&client, &server, &format!("inv-{index}"), near_expiry()).await;
        assert_eq!(response.status(), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bodies_get_clear_answers_and_the_server_survives() {
    let server = Server::start(invoker(Arc::new(Semaphore::new(0))), LIMIT).await;
    let client = client();
    let url = server.url("/near-expiry");

    // 10 MB: the whole body is read and dropped, so the client sees the 413 rather than a reset connection.
    let mut big = near_expiry();
    big["data"]["padding"] = json!("x".repeat(10 * 1024 * 1024));
    let response = client.post(&url).json(&InvocationRequest::for_event(big)).send().await.unwrap();
    assert_eq!(response.status(), 413);

    // The same size without Content-Length (chunked): the limit holds whatever the headers claim.
    let chunks =
        futures::stream::iter((0..10).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 1024 * 1024]))));
    let response = client.post(&url).body(reqwest::Body::wrap_stream(chunks)).send().await.unwrap();
    assert_eq!(response.status(), 413);

    let response = client.post(&url).body("\u{0}\u{1}not json").send().await.unwrap();
    assert_eq!(response.status(), 400);

    let wrong_binding = json!({"Data": {"myEvent": near_expiry()}, "Metadata": {}});
    let response = client.post(&url).json(&wrong_binding).send().await.unwrap();
    assert_eq!(response.status(), 400);

    let response = client.post(server.url("/expired")).json(&json!({})).send().await.unwrap();
    assert_eq!(response.status(), 404);

    let response = invoke(&client, &server, "after", near_expiry()).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_drains_running_invocations_then_refuses_new_connections() {
    let permits = Arc::new(Semaphore::new(0));
    let invoker = invoker(Arc::clone(&permits));
    let mut server = Server::start(invoker.clone(), LIMIT).await;
    let client = client();

    let slow = {
        let client = client.clone();
        let url = server.url("/near-expiry");
        tokio::spawn(async move {
            let request = InvocationRequest::for_event(with_subject("slow"));
            let response = client.post(url).json(&request).send().await.unwrap();
            (response.status(), response.json::<InvocationResponse>().await.unwrap())
        })
    };
    timeout(LIMIT, async {
        while invoker.in_flight() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();

    server.stop();
    // Stopping waits for the slow invocation...
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!server.task.as_ref().unwrap().is_finished());
    // ...while new connections are refused.
    let refused = reqwest::Client::new().get(server.url("/")).send().await;
    assert!(refused.is_err(), "a stopping server accepted a connection");

    permits.add_permits(1);
    let (status, body) = timeout(LIMIT, slow).await.unwrap().unwrap();
    assert_eq!(status, 200);
    assert_eq!(body.logs, vec!["done: slow one finished".to_owned()]);
    assert_eq!(server.stopped().await, Stopped { cause: "test asked", abandoned: 0 });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_that_takes_too_long_gives_up_and_says_how_many_were_abandoned() {
    let invoker = invoker(Arc::new(Semaphore::new(0)));
    let mut server = Server::start(invoker.clone(), Duration::from_millis(200)).await;
    let client = client();

    let stuck = tokio::spawn({
        let client = client.clone();
        let url = server.url("/near-expiry");
        async move {
            let request = InvocationRequest::for_event(with_subject("slow"));
            client.post(url).json(&request).send().await
        }
    });
    timeout(LIMIT, async {
        while invoker.in_flight() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();

    server.stop();
    let stopped = server.stopped().await;
    assert_eq!(stopped, Stopped { cause: "test asked", abandoned: 1 });
    // The abandoned caller never got an answer; in production the process exits now, closing its connection
    // (the host then fails the invocation and Event Grid retries).
    assert!(!stuck.is_finished());
    stuck.abort();
}
