//! The sweep bench (benches/sweep_throttling.rs) on 3 vaults of 200 due secrets against the debug binary, at Key
//! Vault's limits: it must keep working, every object must be swept and no read lost to a 429. The timing is
//! printed, not asserted: timing belongs in the bench. `KEYTURN_SWEEP_BENCH_SCALE=full` runs the bench's own
//! 10 vaults of 1,000 (for a measurement without a release build).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::Duration;

#[path = "../benches/sweep_throttling.rs"]
mod bench;

#[tokio::test(flavor = "multi_thread")]
async fn the_bench_sweeps_every_object_without_a_429() {
    let (vaults, per_vault) = match std::env::var("KEYTURN_SWEEP_BENCH_SCALE").as_deref() {
        Ok("full") => (10, 1000),
        _ => (3, 200),
    };
    let binary = keyturn_e2e::workspace_binary("sweep");
    let figures = keyturn_e2e::bounded(Duration::from_secs(600), bench::run(&binary, vaults, per_vault)).await;
    bench::print(&figures);
    assert!(!figures.failed, "{}", figures.outcome);
    assert_eq!(figures.throttled(), 0, "{}", figures.outcome);
    let swept = format!("swept {} objects in {vaults} vaults", vaults * per_vault);
    assert!(figures.outcome.contains(&swept), "{}", figures.outcome);
}
