//! The blob-lease rotation lock against a real Azurite, the Azure Storage emulator, which `./scripts/test`
//! starts (HTTPS with a local CA, `--oauth basic`: every request needs a bearer token with a valid issuer,
//! audience and lifetime) and announces in KEYTURN_TEST_AZURITE_BLOB_URL and KEYTURN_TEST_AZURITE_CA_FILE.
//! Without them these tests fail; they never skip.
//!
//! The lock is built the way a handler builds it: `keyturn_config::Settings` from the environment, the managed
//! identity credential against the local identity endpoint, the vault crate's transport. That credential
//! reads IDENTITY_ENDPOINT from the real process environment, which a test may not set (the workspace
//! forbids the `unsafe` of `std::env::set_var`), so each test re-runs itself as a child process with
//! `KT_LOCK_ROLE` naming the child's part; the parent owns the identity endpoint, and for the cross-process
//! tests, the children's lives.

// A failed setup is a failed test, in helpers too; children report to their parent on stdout.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use keyturn_events::{ObjectKind, ObjectRef};
use keyturn_local::identity::{IdentityEndpoint, TokenRegistry};
use keyturn_rotation::provider::generated::Generated;
use keyturn_rotation::provider::{Pending, Provider, ProviderFuture, RotationContext};
use keyturn_rotation::{
    BlobLeaseLock, Engine, LeaseDuration, LockError, Providers, Request, RotationError, RotationLock,
    lock_from_settings,
};
use keyturn_vault::Collection;
use keyturn_vault::testing::FakeVault;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

const ROLE: &str = "KT_LOCK_ROLE";
const KEY: &str = "KT_LOCK_KEY";
const MISSING: &str = "run ./scripts/test, which starts Azurite \
    (or wrap the command: scripts/lib/azurite.sh cargo nextest run -p keyturn-rotation)";

/// Azurite's blob endpoint and the CA that signed its certificate.
fn azurite() -> (String, PathBuf) {
    let url = std::env::var("KEYTURN_TEST_AZURITE_BLOB_URL")
        .unwrap_or_else(|_| panic!("KEYTURN_TEST_AZURITE_BLOB_URL is not set: {MISSING}"));
    let ca = std::env::var("KEYTURN_TEST_AZURITE_CA_FILE")
        .unwrap_or_else(|_| panic!("KEYTURN_TEST_AZURITE_CA_FILE is not set: {MISSING}"));
    (url, PathBuf::from(ca))
}

fn role() -> Option<String> {
    std::env::var(ROLE).ok()
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is set by the parent"))
}

/// A container no other test uses; it does not exist yet, so the lock creates it.
fn fresh_container() -> String {
    format!("locks-{}", &azure_core::Uuid::new_v4().simple().to_string()[..12])
}

// ---- the child's side: a handler-like process -------------------------------------------------------------

/// The settings, credential and transport a handler would build.
fn handler_parts()
-> (keyturn_config::Settings, Arc<dyn azure_core::credentials::TokenCredential>, azure_core::http::ClientOptions) {
    let settings = keyturn_config::Settings::from_env().unwrap();
    let options = keyturn_vault::http::client_options(&settings.retry, settings.ca_file.as_deref()).unwrap();
    let credential = keyturn_vault::credential::build_credential(&settings.credential, options.clone()).unwrap();
    (settings, credential, options)
}

/// The lock exactly as a handler gets it.
fn handler_lock() -> Arc<dyn RotationLock> {
    let (settings, credential, options) = handler_parts();
    let lock = lock_from_settings(&settings.lock, credential, options).unwrap();
    assert!(format!("{lock:?}").starts_with("BlobLeaseLock"), "the settings name a blob lease: {lock:?}");
    lock
}

/// The handler's lock with the shortest lease Azure allows, for the expiry tests.
fn short_lease_lock() -> BlobLeaseLock {
    let (settings, credential, options) = handler_parts();
    let keyturn_config::LockSettings::BlobLease { account_url, container } = &settings.lock else {
        panic!("the parent configures a blob lease")
    };
    BlobLeaseLock::new(account_url, container, credential, options, LeaseDuration::MIN).unwrap()
}

/// The next line the parent writes to this child's stdin; `None` once the parent closes it.
async fn from_parent() -> Option<String> {
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        let read = std::io::stdin().read_line(&mut line).unwrap();
        (read > 0).then(|| line.trim().to_owned())
    })
    .await
    .unwrap()
}

fn assert_held(result: Result<Box<dyn keyturn_rotation::LockGuard>, LockError>, key: &str) {
    let error = result.expect_err("the lock is held elsewhere");
    assert_eq!(error, LockError::Held { key: key.to_owned() });
    // What the engine turns it into: a retryable failure, so Event Grid redelivers later.
    assert!(RotationError::from(error).is_retryable());
}

// ---- the parent's side ------------------------------------------------------------------------------------

/// The parent's identity endpoint and the environment every child gets.
struct Parent {
    identity: IdentityEndpoint,
    azurite_url: String,
    ca: PathBuf,
    container: String,
}

impl Parent {
    async fn start() -> Self {
        let (azurite_url, ca) = azurite();
        let identity = IdentityEndpoint::start(TokenRegistry::default(), Vec::new()).await.unwrap();
        Self { identity, azurite_url, ca, container: fresh_container() }
    }

    /// Runs this test binary's `test` as a child in `role`, stdout piped, killed if dropped.
    fn spawn(&self, test: &str, role: &str, extra: &[(&str, String)]) -> Child {
        Command::new(std::env::current_exe().unwrap())
            .args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env(ROLE, role)
            .envs(self.identity.env().vars())
            .env("KEYTURN_CREDENTIAL", "managed-identity")
            .env("KEYTURN_VAULTS", "kv-lock")
            .env("KEYTURN_LOCK_ACCOUNT_URL", &self.azurite_url)
            .env("KEYTURN_LOCK_CONTAINER", &self.container)
            .env("KEYTURN_CA_FILE", &self.ca)
            .env("KEYTURN_RETRY_MAX", "2")
            .env("KEYTURN_RETRY_DELAY_MS", "50")
            .env("KEYTURN_RETRY_MAX_DELAY_MS", "200")
            .env("KEYTURN_HTTP_TIMEOUT_SECS", "10")
            .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // The child's panics and logs land in this test's own stderr, where nextest shows them.
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    }

    /// Runs a child to completion and returns its stdout, failing the test if the child's test failed (its
    /// stderr, with the panic, is this test's stderr).
    async fn run(&self, test: &str, role: &str, extra: &[(&str, String)]) -> String {
        let output = tokio::time::timeout(Duration::from_secs(60), self.spawn(test, role, extra).wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("child {role} finished within 60 s"))
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success() && stdout.contains("1 passed"), "child {role} failed:\n{stdout}");
        stdout
    }

    /// A token for the storage account from the parent's identity endpoint, as the credential would get it.
    fn storage_token(&self) -> String {
        self.identity.registry().issue("https://storage.azure.com", self.identity.system_client_id()).0
    }

    /// An HTTP client that trusts Azurite's CA.
    fn http(&self) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(&self.ca).unwrap()).unwrap();
        reqwest::Client::builder().tls_certs_merge([ca]).timeout(Duration::from_secs(10)).build().unwrap()
    }
}

/// Waits for a child's stdout line containing `marker` (libtest may have written "test <name> ... " before
/// it on the same line).
async fn line_with(lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>, marker: &str) -> String {
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains(marker) {
                return line;
            }
        }
        panic!("the child ended without printing {marker}");
    })
    .await
    .unwrap_or_else(|_| panic!("no {marker} from the child within 60 s"))
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

// ---- the tests --------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_lease_is_exclusive_until_released_and_its_blob_is_created_once() {
    const TEST: &str = "a_lease_is_exclusive_until_released_and_its_blob_is_created_once";
    if role().is_some() {
        let lock = handler_lock();
        let key = "kv-lock/secret/db";
        // The container and the blob do not exist yet: the first taker creates both.
        let guard = lock.acquire(key).await.unwrap();
        assert_held(lock.acquire(key).await, key);
        // Another object is independent.
        lock.acquire("kv-lock/secret/other").await.unwrap().release().await.unwrap();
        guard.release().await.unwrap();

        // Taking it again, through a second lock (new clients) too: the existing blob is reused.
        let again = handler_lock().acquire(key).await.unwrap();
        assert_held(lock.acquire(key).await, key);
        again.release().await.unwrap();

        // A guard dropped without release (an early return) gives the lease back without waiting it out.
        drop(lock.acquire(key).await.unwrap());
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match lock.acquire(key).await {
                Ok(guard) => break guard.release().await.unwrap(),
                Err(LockError::Held { .. }) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(error) => panic!("a dropped guard's lease was not released within 5 s: {error}"),
            }
        }
        return;
    }

    let parent = Parent::start().await;
    parent.run(TEST, "child", &[]).await;

    // One empty blob per object, named after the lock key.
    let listing = parent
        .http()
        .get(format!("{}/{}?restype=container&comp=list", parent.azurite_url, parent.container))
        .bearer_auth(parent.storage_token())
        .header("x-ms-version", "2026-04-06")
        .send()
        .await
        .unwrap();
    assert_eq!(listing.status(), 200);
    let xml = listing.text().await.unwrap();
    let names: Vec<&str> = xml.split("<Name>").skip(1).filter_map(|s| s.split("</Name>").next()).collect();
    assert_eq!(names, ["kv-lock/secret/db", "kv-lock/secret/other"], "{xml}");
    assert!(xml.contains("<Content-Length>0</Content-Length>"), "{xml}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_ten_concurrent_takers_exactly_one_gets_the_lease() {
    const TEST: &str = "of_ten_concurrent_takers_exactly_one_gets_the_lease";
    if role().is_some() {
        let lock = handler_lock();
        let key = "kv-lock/secret/contended";
        // Round one races on creating the blob too; round two finds it.
        for round in 1..=2 {
            let attempts: Vec<_> = (0..10)
                .map(|_| {
                    let lock = lock.clone();
                    tokio::spawn(async move { lock.acquire(key).await })
                })
                .collect();
            let mut winners = Vec::new();
            for attempt in attempts {
                match attempt.await.unwrap() {
                    Ok(guard) => winners.push(guard),
                    Err(error) => assert_eq!(error, LockError::Held { key: key.into() }, "round {round}"),
                }
            }
            assert_eq!(winners.len(), 1, "round {round}: exactly one holder");
            winners.pop().unwrap().release().await.unwrap();
        }
        return;
    }
    let parent = Parent::start().await;
    parent.run(TEST, "child", &[]).await;
}

#[tokio::test]
async fn of_two_processes_taking_the_same_lease_exactly_one_gets_it() {
    const TEST: &str = "of_two_processes_taking_the_same_lease_exactly_one_gets_it";
    if role().is_some() {
        let lock = handler_lock();
        // Get the token and a connection first, so both processes reach Azurite at the same moment.
        let warm_up = format!("kv-lock/secret/warm-up-{}", std::process::id());
        lock.acquire(&warm_up).await.unwrap().release().await.unwrap();
        println!("READY");
        assert_eq!(from_parent().await.as_deref(), Some("go"));
        let key = env(KEY);
        match lock.acquire(&key).await {
            Ok(guard) => {
                println!("RESULT won");
                // Hold until the parent has heard from the other process (it closes stdin).
                while from_parent().await.is_some() {}
                guard.release().await.unwrap();
            }
            Err(error) => {
                assert_eq!(error, LockError::Held { key: key.clone() });
                println!("RESULT held");
            }
        }
        return;
    }

    let parent = Parent::start().await;
    let extra = [(KEY, "kv-lock/secret/between-processes".to_owned())];
    let mut racers = [parent.spawn(TEST, "racer", &extra), parent.spawn(TEST, "racer", &extra)];
    let mut outputs: Vec<_> = racers.iter_mut().map(|r| BufReader::new(r.stdout.take().unwrap()).lines()).collect();
    for output in &mut outputs {
        line_with(output, "READY").await;
    }
    let mut inputs: Vec<_> = racers.iter_mut().map(|r| r.stdin.take().unwrap()).collect();
    let (a, b) = inputs.split_at_mut(1);
    let (go_a, go_b) = tokio::join!(a[0].write_all(b"go\n"), b[0].write_all(b"go\n"));
    go_a.unwrap();
    go_b.unwrap();
    let mut results = Vec::new();
    for output in &mut outputs {
        let line = line_with(output, "RESULT ").await;
        results.push(line.split_once("RESULT ").map(|(_, r)| r.trim().to_owned()).unwrap());
    }
    results.sort_unstable();
    assert_eq!(results, ["held", "won"]);
    drop(inputs);
    for (racer, output) in racers.iter_mut().zip(outputs) {
        // Drain the rest of the child's report so it cannot block on a full pipe, then check it passed.
        let rest = tokio::time::timeout(Duration::from_secs(30), async {
            let mut output = output;
            let mut rest = String::new();
            while let Some(line) = output.next_line().await.unwrap() {
                rest.push_str(&line);
                rest.push('\n');
            }
            rest
        })
        .await
        .expect("the racer finished within 30 s");
        let status = racer.wait().await.unwrap();
        assert!(status.success() && rest.contains("1 passed"), "a racer failed:\n{rest}");
    }
}

#[tokio::test]
async fn a_live_holder_keeps_its_lease_and_a_crashed_one_blocks_for_one_lease_only() {
    const TEST: &str = "a_live_holder_keeps_its_lease_and_a_crashed_one_blocks_for_one_lease_only";
    let key = "kv-lock/secret/crash";
    match role().as_deref() {
        Some("holder") => {
            let lock = short_lease_lock();
            let _guard = lock.acquire(key).await.unwrap();
            println!("ACQUIRED");
            // Hold (and renew) until the parent kills this process: a crash, with no release.
            tokio::time::sleep(Duration::from_secs(120)).await;
            panic!("the parent kills the holder long before this");
        }
        Some("probe") => return assert_held(short_lease_lock().acquire(key).await, key),
        Some("taker") => {
            let lock = short_lease_lock();
            // The crashed holder's lease is still running...
            assert_held(lock.acquire(key).await, key);
            // ...and ends within one lease.
            let started = Instant::now();
            loop {
                match lock.acquire(key).await {
                    Ok(guard) => {
                        println!("TAKEN {}", started.elapsed().as_millis());
                        return guard.release().await.unwrap();
                    }
                    Err(LockError::Held { .. }) if started.elapsed() < Duration::from_secs(30) => {
                        tokio::time::sleep(Duration::from_millis(250)).await
                    }
                    Err(error) => panic!("the crashed holder's lease did not end within 30 s: {error}"),
                }
            }
        }
        Some(other) => panic!("unknown role {other}"),
        None => {}
    }

    let parent = Parent::start().await;
    let lease = LeaseDuration::MIN.as_duration();
    let mut holder = parent.spawn(TEST, "holder", &[]);
    let mut lines = BufReader::new(holder.stdout.take().unwrap()).lines();
    line_with(&mut lines, "ACQUIRED").await;
    let acquired = Instant::now();

    // Past one lease, the live holder still has it: it renews.
    tokio::time::sleep((lease + Duration::from_secs(3)).saturating_sub(acquired.elapsed())).await;
    parent.run(TEST, "probe", &[]).await;

    // Crash the holder (SIGKILL: no release, no more renewals).
    holder.start_kill().unwrap();
    holder.wait().await.unwrap();
    let killed = Instant::now();
    let taker = parent.run(TEST, "taker", &[]).await;
    let waited = killed.elapsed();
    assert!(taker.contains("TAKEN "), "{taker}");
    // The last renewal came at most a third of a lease before the crash; the lease ends a lease after it.
    // Allow a few seconds for the child processes to start.
    assert!(waited < lease + Duration::from_secs(5), "the lock was free again only after {waited:?}");
}

/// The `generated` provider, whose test step breaks the object's lease once (an operator clearing a "stuck"
/// lock, or the lease lost to a frozen instance): what happens between the provider's steps and the promotion.
struct BreaksTheLeaseOnce {
    blob: azure_storage_blob::BlobClient,
    broken: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for BreaksTheLeaseOnce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BreaksTheLeaseOnce")
    }
}

impl Provider for BreaksTheLeaseOnce {
    fn name(&self) -> &'static str {
        "generated"
    }
    fn create_pending<'a>(&'a self, ctx: &'a RotationContext<'a>) -> ProviderFuture<'a, Pending> {
        Generated.create_pending(ctx)
    }
    fn test_pending<'a>(&'a self, _: &'a RotationContext<'a>, _: &'a Pending) -> ProviderFuture<'a, ()> {
        Box::pin(async move {
            if !self.broken.swap(true, std::sync::atomic::Ordering::SeqCst) {
                let now = azure_storage_blob::models::BlobClientBreakLeaseOptions {
                    break_period: Some(0),
                    ..Default::default()
                };
                self.blob.break_lease(Some(now)).await.unwrap();
            }
            Ok(())
        })
    }
}

#[tokio::test]
async fn a_lease_broken_mid_rotation_promotes_nothing_and_the_redelivery_rotates() {
    const TEST: &str = "a_lease_broken_mid_rotation_promotes_nothing_and_the_redelivery_rotates";
    if role().is_some() {
        let (settings, credential, options) = handler_parts();
        let lock = lock_from_settings(&settings.lock, credential.clone(), options.clone()).unwrap();
        let keyturn_config::LockSettings::BlobLease { account_url, container } = &settings.lock else {
            panic!("the parent configures a blob lease")
        };
        // Another client of the same container: whoever breaks the lease.
        let mut url = account_url.clone();
        url.path_segments_mut().unwrap().pop_if_empty().push(container);
        let client_options =
            azure_storage_blob::BlobContainerClientOptions { client_options: options, ..Default::default() };
        let other = azure_storage_blob::BlobContainerClient::new(url, Some(credential), Some(client_options)).unwrap();
        let provider = BreaksTheLeaseOnce { blob: other.blob_client("kv-lock/secret/db"), broken: Default::default() };
        let vault = Arc::new(FakeVault::new(&["kv-lock"]));
        vault.add(
            "kv-lock",
            Collection::Secrets,
            "db",
            "v1",
            &[("KeyturnRotation", "generated"), ("ValidityPeriodDays", "60")],
        );
        let engine = Engine::new(vault.clone(), lock, Providers::standard().with(Arc::new(provider)));
        let request = Request {
            object: ObjectRef::new("kv-lock", ObjectKind::Secret, "db", "v1").unwrap(),
            event_id: "broken-lease".into(),
        };

        let error = engine.rotate(&request).await.unwrap_err();
        assert!(matches!(&error, RotationError::Lock(LockError::Lost { .. })), "{error}");
        assert!(error.is_retryable(), "Event Grid redelivers");
        assert_eq!(vault.count("kv-lock", Collection::Secrets, "db"), 1, "nothing was promoted");
        assert!(!vault.calls().iter().any(|c| c.starts_with("set_secret")), "{:?}", vault.calls());
        // The redelivery takes the (broken) lease afresh and rotates.
        let outcome = engine.rotate(&request).await.unwrap();
        assert_eq!(outcome.label(), "rotated", "{outcome}");
        assert_eq!(vault.count("kv-lock", Collection::Secrets, "db"), 2);
        return;
    }
    let parent = Parent::start().await;
    parent.run(TEST, "child", &[]).await;
}

#[tokio::test]
async fn azurite_refuses_requests_without_a_valid_storage_token() {
    let parent = Parent::start().await;
    let http = parent.http();
    let container = |name: &str| format!("{}/{name}?restype=container", parent.azurite_url);
    let put = |name: &str, token: Option<String>| {
        let mut request = http.put(container(name)).header("x-ms-version", "2026-04-06").header("content-length", "0");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let refused = |name: &'static str, token: Option<String>| {
        let put = put(name, token);
        async move {
            let response = put.await.unwrap();
            let status = response.status();
            let body = response.text().await.unwrap();
            assert_eq!(status, 403, "{name}: {body}");
            body
        }
    };
    let jwt = |claims: serde_json::Value| {
        let b64 = |v: serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        format!("{}.{}.c2lnbmF0dXJl", b64(serde_json::json!({"alg": "RS256", "typ": "JWT"})), b64(claims))
    };
    let now = now_ms() / 1000;
    let claims = |aud: &str, exp: u64| {
        serde_json::json!({
            "aud": aud, "iss": format!("https://sts.windows.net/{}/", keyturn_local::identity::TENANT_ID),
            "iat": now - 7200, "nbf": now - 7200, "exp": exp,
        })
    };

    assert!(refused("no-token", None).await.contains("AuthorizationFailure"));
    assert!(refused("opaque", Some("not-a-jwt".into())).await.contains("AuthenticationFailed"));
    let vault_token = parent.identity.registry().issue("https://vault.azure.net", parent.identity.system_client_id()).0;
    assert!(refused("vault-token", Some(vault_token)).await.contains("Invalid token audience"));
    assert!(refused("expired", Some(jwt(claims("https://storage.azure.com", now - 60)))).await.contains("expired"));

    // A storage token from the identity endpoint is accepted: the refusals above are about the token.
    let created = put("with-token", Some(parent.storage_token())).await.unwrap();
    assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
    // Azurite checks the claims only, not the signature: what the local identity endpoint's tokens rely on.
    let unsigned = put("unsigned", Some(jwt(claims("https://storage.azure.com", now + 3600)))).await.unwrap();
    assert_eq!(unsigned.status(), 201);
}
