//! The blob threshold store against a real Azurite, the Azure Storage emulator, which `./scripts/test` starts
//! (HTTPS with a local CA, `--oauth basic`: every request needs a bearer token with a valid issuer, audience
//! and lifetime) and announces in KEYTURN_TEST_AZURITE_BLOB_URL and KEYTURN_TEST_AZURITE_CA_FILE. Without
//! them these tests fail; they never skip. Tokens come from the local identity endpoint's registry, as a
//! handler's managed identity would get them.
//!
//! Each "sweep" below is its own store with its own client and connection pool, as separate function
//! instances have; the races run them at once on a multi-threaded runtime, and one race runs them as
//! separate processes (this test binary re-run as children, `KT_SWEEP_ROLE` naming the child's part).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::http::{ClientOptions, Transport, Url};
use chrono::{DateTime, Duration, Utc};
use keyturn_events::ObjectKind;
use keyturn_local::identity::TokenRegistry;
use keyturn_sweep::{
    BlobThresholdStore, Claim, Escalation, ObjectVersion, StateError, ThresholdKey, ThresholdStore, Thresholds,
    claim_due,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::sync::Barrier;

const ROLE: &str = "KT_SWEEP_ROLE";
const CONTAINER: &str = "KT_SWEEP_CONTAINER";

const MISSING: &str = "run ./scripts/test, which starts Azurite \
    (or wrap the command: scripts/lib/azurite.sh cargo nextest run -p keyturn-sweep)";

/// Hands out tokens for Azure Storage from the local identity registry.
#[derive(Debug)]
struct LocalIdentity(TokenRegistry);

impl TokenCredential for LocalIdentity {
    fn get_token<'a, 'b, 'c, 'd, 'async_trait>(
        &'a self,
        scopes: &'b [&'c str],
        _options: Option<TokenRequestOptions<'d>>,
    ) -> std::pin::Pin<Box<dyn Future<Output = azure_core::Result<AccessToken>> + Send + 'async_trait>>
    where
        'a: 'async_trait,
        'b: 'async_trait,
        'c: 'async_trait,
        'd: 'async_trait,
        Self: 'async_trait,
    {
        let resource = scopes.first().map(|s| s.trim_end_matches("/.default").to_owned()).unwrap_or_default();
        assert_eq!(resource, "https://storage.azure.com", "the store asks for a storage token");
        let (token, _) = self.0.issue(&resource, "sweep-test-identity");
        let expires = azure_core::time::OffsetDateTime::now_utc() + azure_core::time::Duration::hours(1);
        Box::pin(async move { Ok(AccessToken::new(token, expires)) })
    }
}

struct Azurite {
    url: Url,
    options: ClientOptions,
    credential: Arc<dyn TokenCredential>,
    container: String,
}

impl Azurite {
    fn new() -> Self {
        let url = std::env::var("KEYTURN_TEST_AZURITE_BLOB_URL")
            .unwrap_or_else(|_| panic!("KEYTURN_TEST_AZURITE_BLOB_URL is not set: {MISSING}"));
        let ca = std::env::var("KEYTURN_TEST_AZURITE_CA_FILE")
            .unwrap_or_else(|_| panic!("KEYTURN_TEST_AZURITE_CA_FILE is not set: {MISSING}"));
        let certs = reqwest::Certificate::from_pem_bundle(&std::fs::read(ca).unwrap()).unwrap();
        let http = reqwest::Client::builder().tls_certs_merge(certs).build().unwrap();
        let options = ClientOptions { transport: Some(Transport::new(Arc::new(http))), ..ClientOptions::default() };
        // A container no other test uses; it does not exist yet, so the store creates it. A child process
        // works in its parent's.
        let container = std::env::var(CONTAINER)
            .unwrap_or_else(|_| format!("sweep-{}", &azure_core::Uuid::new_v4().simple().to_string()[..12]));
        Self {
            url: Url::parse(&url).unwrap(),
            options,
            credential: Arc::new(LocalIdentity(TokenRegistry::default())),
            container,
        }
    }

    /// A new store, as a new sweep instance (or a restarted one) would build it: its own clients.
    fn store(&self) -> BlobThresholdStore {
        BlobThresholdStore::new(&self.url, &self.container, self.credential.clone(), self.options.clone()).unwrap()
    }
}

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2027-01-01T03:00:00Z").unwrap().with_timezone(&Utc)
}

fn key(name: &str, threshold: u32) -> ThresholdKey {
    ThresholdKey::new(ObjectVersion::new("kv1", ObjectKind::Secret, name, "0f264706aa"), threshold)
}

#[tokio::test]
async fn a_threshold_fires_once_across_sweeps_and_a_restart() {
    let azurite = Azurite::new();
    let first = azurite.store();
    let Claim::Claimed(token) = first.claim(&key("db-password", 7), "sweep-1", t0()).await.unwrap() else {
        panic!("the first sweep claims it (and creates the container)")
    };
    assert!(!token.taken_over);
    // A second sweep meanwhile: in progress, not its own.
    let second = azurite.store();
    assert_eq!(
        second.claim(&key("db-password", 7), "sweep-2", t0()).await.unwrap(),
        Claim::InProgress { since: t0(), sweep: "sweep-1".into() }
    );
    first.complete(&token, t0() + Duration::seconds(3)).await.unwrap();
    drop(first);

    // After a restart (a new store, new clients), days later, and with the name in another case.
    let restarted = azurite.store();
    let other_case = ThresholdKey::new(ObjectVersion::new("KV1", ObjectKind::Secret, "DB-Password", "0F264706AA"), 7);
    assert_eq!(
        restarted.claim(&other_case, "sweep-3", t0() + Duration::days(2)).await.unwrap(),
        Claim::AlreadyFired { at: t0() + Duration::seconds(3), sweep: "sweep-1".into() }
    );
    // Another threshold of the same version, and the same threshold of the next version, are their own.
    assert!(matches!(restarted.claim(&key("db-password", 3), "sweep-3", t0()).await.unwrap(), Claim::Claimed(_)));
    let next_version = ThresholdKey::new(ObjectVersion::new("kv1", ObjectKind::Secret, "db-password", "fdf97a4c"), 7);
    assert!(matches!(restarted.claim(&next_version, "sweep-3", t0()).await.unwrap(), Claim::Claimed(_)));
}

#[tokio::test]
async fn an_undelivered_notice_is_released_and_claimed_by_the_next_sweep() {
    let azurite = Azurite::new();
    let store = azurite.store();
    let Claim::Claimed(token) = store.claim(&key("api-key", 0), "sweep-1", t0()).await.unwrap() else { panic!() };
    store.release(&token).await.unwrap();
    let next = azurite.store();
    let Claim::Claimed(again) = next.claim(&key("api-key", 0), "sweep-2", t0() + Duration::hours(1)).await.unwrap()
    else {
        panic!("released: the next sweep sends it")
    };
    assert!(!again.taken_over);
    // The first sweep's stale token can neither complete nor release the new claim.
    assert_eq!(store.complete(&token, t0()).await, Err(StateError::ClaimLost { key: key("api-key", 0).path() }));
    store.release(&token).await.unwrap();
    assert!(matches!(next.claim(&key("api-key", 0), "sweep-3", t0()).await.unwrap(), Claim::InProgress { .. }));
    next.complete(&again, t0() + Duration::hours(1)).await.unwrap();
    assert!(matches!(next.claim(&key("api-key", 0), "sweep-3", t0()).await.unwrap(), Claim::AlreadyFired { .. }));
}

/// Eight sweeps at once, each over the same 25 thresholds: every threshold is claimed by exactly one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sweeps_never_both_claim_a_threshold() {
    let azurite = Azurite::new();
    // The container exists first, so the race is about the records, not about creating the container.
    let Claim::Claimed(_) = azurite.store().claim(&key("warm-up", 1), "setup", t0()).await.unwrap() else { panic!() };

    const SWEEPS: usize = 8;
    let keys: Arc<Vec<ThresholdKey>> = Arc::new((0..25).map(|i| key(&format!("secret-{i:02}"), 14)).collect());
    let barrier = Arc::new(Barrier::new(SWEEPS));
    let mut tasks = Vec::new();
    for sweep in 0..SWEEPS {
        let (store, keys, barrier) = (azurite.store(), keys.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let name = format!("sweep-{sweep}");
            let claims = futures::future::join_all(keys.iter().map(|k| store.claim(k, &name, t0()))).await;
            claims.into_iter().map(Result::unwrap).collect::<Vec<Claim>>()
        }));
    }
    let mut winners = vec![0; keys.len()];
    for task in tasks {
        for (i, claim) in task.await.unwrap().into_iter().enumerate() {
            match claim {
                Claim::Claimed(_) => winners[i] += 1,
                Claim::InProgress { .. } => {}
                Claim::AlreadyFired { .. } => panic!("nobody completed anything"),
            }
        }
    }
    assert_eq!(winners, vec![1; keys.len()], "exactly one claim per threshold");
}

/// A sweep that died holding claims: once they are stale, sweeps racing to take them over get one winner each.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stale_claim_is_taken_over_by_exactly_one_sweep() {
    let azurite = Azurite::new();
    let lifetime = Duration::minutes(15);
    let dead = azurite.store().with_claim_lifetime(lifetime);
    let keys: Vec<ThresholdKey> = (0..10).map(|i| key(&format!("cert-{i}"), 30)).collect();
    let mut dead_tokens = Vec::new();
    for k in &keys {
        let Claim::Claimed(token) = dead.claim(k, "sweep-dead", t0()).await.unwrap() else { panic!() };
        dead_tokens.push(token);
    }
    // Not stale yet.
    let early = azurite.store().with_claim_lifetime(lifetime);
    assert!(matches!(
        early.claim(&keys[0], "sweep-early", t0() + Duration::minutes(14)).await.unwrap(),
        Claim::InProgress { .. }
    ));

    let later = t0() + Duration::minutes(16);
    let keys = Arc::new(keys);
    let barrier = Arc::new(Barrier::new(6));
    let mut tasks = Vec::new();
    for sweep in 0..6 {
        let (store, keys, barrier) = (azurite.store().with_claim_lifetime(lifetime), keys.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let name = format!("sweep-{sweep}");
            let claims = futures::future::join_all(keys.iter().map(|k| store.claim(k, &name, later))).await;
            claims.into_iter().map(Result::unwrap).collect::<Vec<Claim>>()
        }));
    }
    let mut winners = vec![0; keys.len()];
    for task in tasks {
        for (i, claim) in task.await.unwrap().into_iter().enumerate() {
            if let Claim::Claimed(token) = claim {
                assert!(token.taken_over);
                winners[i] += 1;
            }
        }
    }
    assert_eq!(winners, vec![1; keys.len()], "exactly one takeover per stale claim");
    // The dead sweep, coming back, cannot mark them fired.
    let error = dead.complete(&dead_tokens[0], later).await.unwrap_err();
    assert!(matches!(error, StateError::ClaimLost { .. }), "{error}");
}

/// Three sweep instances at once, once a day for ten weeks, restarted halfway (new stores, nothing kept in
/// memory): every object version gets each threshold's notice exactly once, namely every threshold that was
/// the most recently crossed one on some day, and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn daily_concurrent_sweeps_with_a_restart_send_each_threshold_exactly_once() {
    use std::collections::{BTreeMap, BTreeSet};
    let azurite = Azurite::new();
    let thresholds = Arc::new(Thresholds::default());
    let escalation = Escalation::default();
    let objects: Arc<Vec<(ObjectVersion, DateTime<Utc>)>> = Arc::new(
        [3, 9, 20, 33, 47, 61, 66]
            .iter()
            .map(|&days| {
                let object = ObjectVersion::new("kv1", ObjectKind::Certificate, &format!("cert-{days}"), "0a1b2c");
                (object, t0() + Duration::days(days) + Duration::hours(5))
            })
            .collect(),
    );
    let mut expected: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
    let mut sent: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    let mut stores: Vec<Arc<BlobThresholdStore>> = (0..3).map(|_| Arc::new(azurite.store())).collect();
    for day in 0..70 {
        if day == 35 {
            stores = (0..3).map(|_| Arc::new(azurite.store())).collect();
        }
        let now = t0() + Duration::days(day);
        for (object, expires) in objects.iter() {
            if let Some(due) = thresholds.due(*expires, now, &escalation) {
                expected.entry(object.path()).or_default().insert(due.threshold);
            }
        }
        let mut tasks = Vec::new();
        for (i, store) in stores.iter().enumerate() {
            let (store, objects, thresholds) = (store.clone(), objects.clone(), thresholds.clone());
            tasks.push(tokio::spawn(async move {
                let sweep = format!("day{day}-sweep{i}");
                let mut fired = Vec::new();
                for (object, expires) in objects.iter() {
                    let claimed = claim_due(store.as_ref(), object, *expires, &thresholds, &escalation, &sweep, now)
                        .await
                        .unwrap();
                    if let Some((due, token)) = claimed {
                        store.complete(&token, now).await.unwrap();
                        fired.push((object.path(), due.threshold));
                    }
                }
                fired
            }));
        }
        for task in tasks {
            for (path, threshold) in task.await.unwrap() {
                sent.entry(path).or_default().push(threshold);
            }
        }
    }
    for (path, thresholds) in &sent {
        let once: BTreeSet<u32> = thresholds.iter().copied().collect();
        assert_eq!(once.len(), thresholds.len(), "{path}: a threshold fired twice: {thresholds:?}");
    }
    let sent: BTreeMap<String, BTreeSet<u32>> =
        sent.into_iter().map(|(path, thresholds)| (path, thresholds.into_iter().collect())).collect();
    assert_eq!(sent, expected);
    assert_eq!(sent["kv1/certificate/cert-66/0a1b2c"], BTreeSet::from([0, 1, 3, 7, 14, 30, 60]));
}

/// Four sweep processes, released at the same moment, each claiming the same 30 thresholds: every threshold
/// is claimed by exactly one process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sweep_processes_never_both_claim_a_threshold() {
    const TEST: &str = "concurrent_sweep_processes_never_both_claim_a_threshold";
    let keys: Vec<ThresholdKey> = (0..30).map(|i| key(&format!("proc-secret-{i:02}"), 7)).collect();
    if let Ok(role) = std::env::var(ROLE) {
        let store = Azurite::new().store();
        // Token, connection and container first, so the processes meet Azurite at the same moment.
        let warm_up = key(&format!("warm-up-{role}"), 0);
        assert!(matches!(store.claim(&warm_up, &role, t0()).await.unwrap(), Claim::Claimed(_)));
        println!("READY");
        let line = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).unwrap();
            line
        })
        .await
        .unwrap();
        assert_eq!(line.trim(), "go");
        let claims = futures::future::join_all(keys.iter().map(|k| store.claim(k, &role, t0()))).await;
        for (k, claim) in keys.iter().zip(claims) {
            let verdict = match claim.unwrap() {
                Claim::Claimed(_) => "claimed",
                Claim::InProgress { .. } => "in-progress",
                Claim::AlreadyFired { .. } => "fired",
            };
            println!("RESULT {} {verdict}", k.path());
        }
        return;
    }

    let azurite = Azurite::new();
    let mut children = Vec::new();
    for i in 0..4 {
        let child = Command::new(std::env::current_exe().unwrap())
            .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env(ROLE, format!("process-{i}"))
            .env(CONTAINER, &azurite.container)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        children.push(child);
    }
    let mut outputs: Vec<_> = children.iter_mut().map(|c| BufReader::new(c.stdout.take().unwrap()).lines()).collect();
    for output in &mut outputs {
        tokio::time::timeout(StdDuration::from_secs(60), async {
            while let Some(line) = output.next_line().await.unwrap() {
                if line.contains("READY") {
                    return;
                }
            }
            panic!("a child ended before it was ready");
        })
        .await
        .expect("every child is ready within 60 s");
    }
    let mut inputs: Vec<_> = children.iter_mut().map(|c| c.stdin.take().unwrap()).collect();
    futures::future::join_all(inputs.iter_mut().map(|i| i.write_all(b"go\n")))
        .await
        .into_iter()
        .for_each(|r| r.unwrap());
    let mut claimed: std::collections::BTreeMap<String, usize> = keys.iter().map(|k| (k.path(), 0)).collect();
    let mut answers = 0;
    for (child, mut output) in children.iter_mut().zip(outputs) {
        let rest = tokio::time::timeout(StdDuration::from_secs(60), async {
            let mut rest = String::new();
            while let Some(line) = output.next_line().await.unwrap() {
                rest.push_str(&line);
                rest.push('\n');
            }
            rest
        })
        .await
        .expect("every child finishes within 60 s");
        for line in rest.lines() {
            if let Some((path, verdict)) = line.split_once("RESULT ").and_then(|(_, r)| r.split_once(' ')) {
                answers += 1;
                if verdict == "claimed" {
                    *claimed.get_mut(path).unwrap() += 1;
                } else {
                    assert_eq!(verdict, "in-progress", "{line}");
                }
            }
        }
        let status = child.wait().await.unwrap();
        assert!(status.success() && rest.contains("1 passed"), "a child failed:\n{rest}");
    }
    assert_eq!(answers, 4 * keys.len());
    assert!(claimed.values().all(|&n| n == 1), "each threshold claimed by exactly one process: {claimed:?}");
}
