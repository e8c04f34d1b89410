//! Scenario 4: a worker is SIGKILLed while it holds the leases and its
//! token requests are at the upstream: the Claude one was processed (the
//! grant rotated, the answer died with the worker), the OpenAI one not.
//! Another worker finds the leases held until they lapse, then takes them
//! over, and never re-presents either token: the generation claims of a
//! request that may have been answered stay closed.

use std::time::Duration;

use refresh_tests::{Cluster, EndState, Topology, env, eventually, stays};
use serde_json::json;

const LEASE_TTL_MS: u64 = 6_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn a_killed_holder_leaves_leases_that_lapse_and_claims_that_hold() {
    let mut cluster = Cluster::start("s4_killed", Topology::WithRedis, "").await;
    cluster.import(1, 1, -60).await;
    let (claude, openai) = (cluster.accounts[0].clone(), cluster.accounts[1].clone());
    let e = &cluster.emulator;
    e.fault(json!({"kind": "hang", "path": claude.token_path, "processed": true}))
        .await;
    e.fault(json!({"kind": "hang", "path": openai.token_path, "processed": false}))
        .await;
    let settings = env(&[
        ("FW_MODE", "background"),
        ("FW_INTERVAL_MS", "200"),
        ("FW_LEASE_TTL_MS", &LEASE_TTL_MS.to_string()),
        ("FW_UPSTREAM_TIMEOUT_MS", "5000"),
        ("FW_STORAGE_TIMEOUT_MS", "400"),
    ]);
    let mut holder = cluster.fault_worker("worker-killed", &settings);
    let in_flight = || async {
        let stats = cluster.emulator.stats().await;
        (
            stats.requests(claude.token_path),
            stats.requests(openai.token_path),
        )
    };
    eventually(
        "both token requests are at the upstream",
        Duration::from_secs(30),
        || async { in_flight().await == (1, 1) },
    )
    .await;
    holder.kill().await;
    assert_eq!(
        cluster.emulator.grant(claude.grant).await.generation,
        2,
        "the Claude request was processed: its answer died with the worker"
    );

    let mut taker = cluster.fault_worker("worker-taker", &settings);
    // Past the lease TTL and then some: the leases lapse and are taken
    // over, the claims are not.
    stays(
        "neither token presented again",
        Duration::from_millis(LEASE_TTL_MS + 2_000),
        || async { in_flight().await == (1, 1) },
    )
    .await;
    taker.stop().await;
    let summary = Cluster::summary(&taker);
    assert!(
        summary.get("lock_contended:redis") >= 1,
        "the leases were held until they lapsed: {summary:?}"
    );
    assert!(
        summary.get("lock_acquired:redis") >= 1,
        "the lapsed leases were taken over: {summary:?}"
    );
    assert!(
        summary.get("refresh:held_elsewhere") >= 1,
        "the claims kept the taker out: {summary:?}"
    );
    assert_eq!(
        summary
            .counts
            .keys()
            .filter(|k| k.starts_with("upstream:"))
            .count(),
        0,
        "the taker presented no token: {summary:?}"
    );
    cluster
        .assert_end_state(&EndState {
            rotation_lost: vec![claude.id],
            ..EndState::default()
        })
        .await;
}
