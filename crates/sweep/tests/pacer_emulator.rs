//! The pacer against the Key Vault emulator's throttling (the service's fixed per-vault windows, 429 with
//! no `Retry-After`), with the limits scaled down to two seconds so the test is short: paced, a burst of
//! reads over three vaults gets no 429; unpaced, the same burst is throttled (the limits are real).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use keyturn_local::keyvault::{KeyVaultEmulator, RunningEmulator, Throttling};
use keyturn_sweep::{Pacer, PacerLimits, RateLimit};
use serde_json::{Value, json};

const API: &str = "api-version=2025-07-01";
const VAULTS: [&str; 3] = ["kv-pace-1", "kv-pace-2", "kv-pace-3"];
const WINDOW: Duration = Duration::from_secs(2);
const LIMIT: u32 = 200;
const READS_PER_VAULT: usize = 500;

async fn token(kv: &RunningEmulator) -> String {
    let env = kv.identity_env();
    let body: Value = reqwest::Client::new()
        .get(format!("{}?api-version=2019-08-01&resource=https://vault.azure.net", env.endpoint))
        .header("x-identity-header", &env.header)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["access_token"].as_str().unwrap().to_string()
}

struct Bench {
    kv: RunningEmulator,
    http: reqwest::Client,
    token: String,
}

impl Bench {
    async fn start() -> Self {
        let throttling = Throttling { window: WINDOW, secret_other: LIMIT, ..Throttling::key_vault() };
        let mut builder = KeyVaultEmulator::builder().throttling(throttling);
        for vault in VAULTS {
            builder = builder.vault(vault);
        }
        let kv = builder.start().await.unwrap();
        // A broad client of the emulator as the system-assigned identity (strict RBAC by default): its role, visibly.
        kv.grant_system_identity("Key Vault Administrator").unwrap();
        let ca = reqwest::Certificate::from_pem(kv.ca_pem().as_bytes()).unwrap();
        let http = reqwest::Client::builder().tls_certs_only([ca]).timeout(Duration::from_secs(20)).build().unwrap();
        let token = token(&kv).await;
        let bench = Self { kv, http, token };
        for vault in VAULTS {
            let url = format!("{}/secrets/s?{API}", bench.kv.vault_url(vault).unwrap().trim_end_matches('/'));
            let status = bench.http.put(url).bearer_auth(&bench.token).json(&json!({"value": "x"})).send().await;
            assert_eq!(status.unwrap().status(), 200);
        }
        // The seeding counted in another bucket (creates), but start every vault's window afresh anyway.
        tokio::time::sleep(WINDOW).await;
        bench
    }

    /// Reads every vault's secret READS_PER_VAULT times, 32 at a time, each after `pacer` allows it (if
    /// any); the statuses.
    async fn burst(&self, pacer: Option<Arc<Pacer>>) -> Vec<u16> {
        let requests = (0..READS_PER_VAULT).flat_map(|_| VAULTS);
        futures::stream::iter(requests)
            .map(|vault| {
                let pacer = pacer.clone();
                async move {
                    if let Some(pacer) = pacer {
                        pacer.acquire(vault).await;
                    }
                    let url = format!("{}/secrets/s/?{API}", self.kv.vault_url(vault).unwrap().trim_end_matches('/'));
                    self.http.get(url).bearer_auth(&self.token).send().await.unwrap().status().as_u16()
                }
            })
            .buffer_unordered(32)
            .collect()
            .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paced_reads_are_never_throttled_and_unpaced_ones_are() {
    let bench = Bench::start().await;
    // 80 % of the limit: the rest absorbs the arrival jitter of a loaded test machine.
    let limits = PacerLimits {
        per_vault: RateLimit { requests: LIMIT, per: WINDOW },
        per_subscription: None,
        headroom: 0.8,
        burst: 5,
    };
    let started = Instant::now();
    let statuses = bench.burst(Some(Arc::new(Pacer::new(limits)))).await;
    let took = started.elapsed();
    assert_eq!(statuses.len(), VAULTS.len() * READS_PER_VAULT);
    let throttled = statuses.iter().filter(|&&s| s == 429).count();
    assert_eq!(throttled, 0, "paced reads were throttled");
    assert!(statuses.iter().all(|&s| s == 200));
    // 500 reads per vault at 80 % of 200 per 2 s take about 6.2 s; the pacer must not be much slower.
    let paced = WINDOW.mul_f64(READS_PER_VAULT as f64 / (f64::from(LIMIT) * 0.8));
    assert!(took <= paced.mul_f64(1.3), "took {took:?}; pacing alone takes {paced:?}");
    eprintln!(
        "paced: {} reads over {} vaults in {took:?} (pacing alone: {paced:?}), 0 throttled",
        statuses.len(),
        VAULTS.len()
    );

    tokio::time::sleep(WINDOW).await;
    let unpaced = bench.burst(None).await;
    let unpaced_throttled = unpaced.iter().filter(|&&s| s == 429).count();
    eprintln!("unpaced: {unpaced_throttled} of {} throttled", unpaced.len());
    assert!(unpaced_throttled > 0, "the same burst unpaced must be throttled");
    bench.kv.shutdown().await;
}
