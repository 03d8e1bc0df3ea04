//! The near-expiry bench (benches/near_expiry.rs) on a few iterations against the debug binary: it must keep
//! working, and its checks (every secret rotated once, every answer `done`) must hold. The figures it prints
//! under `cargo bench` are not asserted here: timing belongs in the bench.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

#[path = "../benches/near_expiry.rs"]
mod bench;

#[tokio::test(flavor = "multi_thread")]
async fn the_bench_works_on_a_few_iterations() {
    let config = bench::Config::smoke();
    let binary = keyturn_e2e::workspace_binary("near-expiry");
    let bare = keyturn_e2e::workspace_binary("bare-warp");
    let report = keyturn_e2e::bounded(Duration::from_secs(120), bench::run(config, &binary, &bare)).await;
    assert_eq!(report.start_to_ready.len(), config.starts);
    assert_eq!(report.unconfigured_start_to_ready.len(), config.starts);
    assert_eq!(report.bare_start_to_ready.len(), config.starts);
    for throttled in [&report.throttled, &report.throttled_real_retries] {
        assert_eq!((throttled.not_once, throttled.dead_lettered, throttled.vault_429s), (0, 0, 0), "{throttled:?}");
    }
    assert!(report.idle_rss_kb > 0 && report.rss_after_kb > 0);
    assert_eq!(report.chain.rotations, config.chain_secrets);
    assert_eq!(report.direct.rotations, config.direct_secrets);
    assert!(report.chain.per_second() > 0.0 && report.direct.per_second() > 0.0);
}
