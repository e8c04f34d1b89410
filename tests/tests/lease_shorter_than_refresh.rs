//! Scenario 2: the lease TTL is shorter than the time a refresh holds it
//! (upstream latency plus a slow credential write). The extension keeps
//! the lease: three workers contend for the same due accounts, yet no
//! lease lapses under its holder, nobody else gets past the lease to the
//! generation claim, and each account is refreshed exactly once.

use std::time::Duration;

use refresh_tests::{Cluster, EndState, Topology, env};

/// Lease TTL, hard upstream deadline and per-call storage deadline: the
/// smallest TTL the flow accepts (it must exceed H + 2 storage calls).
const LEASE_TTL_MS: u64 = 3_000;
const UPSTREAM_TIMEOUT_MS: u64 = 2_000;
const STORAGE_TIMEOUT_MS: u64 = 400;
/// Emulator latency and credential-write delay: together longer than the
/// lease TTL.
const LATENCY_MS: u64 = 1_800;
const WRITE_DELAY_MS: u64 = 1_500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn lease_extension_keeps_a_lease_shorter_than_the_refresh() {
    const { assert!(LATENCY_MS + WRITE_DELAY_MS > LEASE_TTL_MS) };
    let mut cluster = Cluster::start("s2_lease", Topology::WithRedis, "").await;
    cluster.import(2, 2, -60).await;
    cluster.emulator.set_latency(LATENCY_MS).await;
    let settings = env(&[
        ("FW_MODE", "background"),
        ("FW_INTERVAL_MS", "200"),
        ("FW_LEASE_TTL_MS", &LEASE_TTL_MS.to_string()),
        ("FW_UPSTREAM_TIMEOUT_MS", &UPSTREAM_TIMEOUT_MS.to_string()),
        ("FW_STORAGE_TIMEOUT_MS", &STORAGE_TIMEOUT_MS.to_string()),
        ("FW_WRITE_DELAY_MS", &WRITE_DELAY_MS.to_string()),
    ]);
    let mut workers: Vec<_> = (0..3)
        .map(|i| cluster.fault_worker(&format!("worker-{i}"), &settings))
        .collect();
    let n = cluster.accounts.len() as u64;
    cluster
        .emulator
        .wait_for_refreshes(n, "every account refreshed")
        .await;
    refresh_tests::eventually(
        "every rotation reached the database",
        Duration::from_secs(60),
        || cluster.all_rotations_home(&[]),
    )
    .await;
    for worker in &mut workers {
        worker.stop().await;
    }

    let stats = cluster.emulator.stats().await;
    assert_eq!(stats.refreshes, n, "one refresh per account: {stats:?}");
    let lapsed = cluster.log_lines_with("lease had already lapsed");
    let lost = cluster.log_lines_with("lease lost during refresh");
    assert!(
        lapsed.is_empty() && lost.is_empty(),
        "a lease lapsed under its holder: {lapsed:?} {lost:?}"
    );
    assert!(
        !cluster.log_lines_with("lease extended").is_empty(),
        "the refreshes outlived the TTL, so the lease was extended"
    );
    let summaries: Vec<_> = workers.iter().map(Cluster::summary).collect();
    let total = |name: &str| summaries.iter().map(|s| s.get(name)).sum::<u64>();
    assert_eq!(
        total("refresh:recovered"),
        0,
        "nobody got past a live lease to apply the holder's answer: {summaries:?}"
    );
    assert!(
        total("lock_contended:redis") >= 1,
        "the workers contended: {summaries:?}"
    );
    assert_eq!(total("upstream:ok"), n, "{summaries:?}");
    cluster.assert_end_state(&EndState::default()).await;
}
