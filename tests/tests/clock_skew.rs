//! Scenario 7: three workers whose clocks are 30 s behind, right, and 30 s
//! ahead race for the same expired accounts on the database lease (whose
//! expiry the database judges by its own clock). No account is refreshed
//! twice, and no lease is taken from its holder early.

use std::time::Duration;

use refresh_tests::{Cluster, EndState, Topology, env, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn thirty_seconds_of_skew_neither_doubles_a_refresh_nor_steals_a_lease() {
    let mut cluster = Cluster::start("s7_skew", Topology::DatabaseOnly, "").await;
    cluster.import(2, 2, -60).await;
    // Each refresh holds its 4 s lease for 1.5 s or more.
    cluster.emulator.set_latency(1_500).await;
    let n = cluster.accounts.len() as u64;
    let mut workers = Vec::new();
    for (name, offset) in [("behind", "-30"), ("on-time", "0"), ("ahead", "30")] {
        workers.push(cluster.fault_worker(
            &format!("worker-{name}"),
            &env(&[
                ("FW_MODE", "background"),
                ("FW_INTERVAL_MS", "200"),
                ("FW_CLOCK_OFFSET_SECS", offset),
                ("FW_LEASE_TTL_MS", "4000"),
                ("FW_UPSTREAM_TIMEOUT_MS", "3000"),
                ("FW_STORAGE_TIMEOUT_MS", "400"),
            ]),
        ));
    }
    cluster
        .emulator
        .wait_for_refreshes(n, "every account refreshed")
        .await;
    eventually("every rotation stored", Duration::from_secs(30), || {
        cluster.all_rotations_home(&[])
    })
    .await;
    for worker in &mut workers {
        worker.stop().await;
    }
    let stats = cluster.emulator.stats().await;
    for grant in &stats.grants {
        assert_eq!(grant.refreshes, 1, "refreshed once: {grant:?}");
    }
    let summaries: Vec<_> = workers.iter().map(Cluster::summary).collect();
    let total = |name: &str| summaries.iter().map(|s| s.get(name)).sum::<u64>();
    assert!(
        total("lock_contended:database") >= 1,
        "the workers raced for the leases: {summaries:?}"
    );
    let lapsed = cluster.log_lines_with("lease had already lapsed");
    let lost = cluster.log_lines_with("lease lost during refresh");
    assert!(
        lapsed.is_empty() && lost.is_empty(),
        "a lease was taken from its holder: {lapsed:?} {lost:?}"
    );
    assert_eq!(total("refresh:recovered"), 0, "{summaries:?}");
    cluster.assert_end_state(&EndState::default()).await;
}
