//! The Lambda cold-start bench (benches/lambda_cold_start.rs) on a few iterations against the debug binary: it
//! must keep working, and its checks (every delivery answered 200 with its secret rotated exactly once) must
//! hold. The figures it prints under `cargo bench` are not asserted here: timing belongs in the bench.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

#[path = "../benches/lambda_cold_start.rs"]
mod bench;

#[tokio::test(flavor = "multi_thread")]
async fn the_bench_works_on_a_few_iterations() {
    let config = bench::Config::smoke();
    let binary = keyturn_e2e::workspace_binary("near-expiry");
    let report = keyturn_e2e::bounded(Duration::from_secs(120), bench::run(config, &binary)).await;
    assert_eq!((report.cold.len(), report.init.len(), report.warm.len()), (config.starts, config.starts, config.warm));
    // Init is part of the cold start, never more.
    assert!(report.init.iter().zip(&report.cold).all(|(init, cold)| init <= cold), "{report:?}");
}
