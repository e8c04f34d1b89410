//! Scenario 5: upstream faults on a Claude account an `oauth-refresh run`
//! worker refreshes continuously (its tokens are always due): a burst of
//! 5xx, 429 with `Retry-After` (no call before it), a request that hangs
//! after the body was sent (ambiguous: no blind retry of the same refresh
//! token before the quarantine ends), a malformed and an oversized body
//! (read no further than the bound). The account recovers after each, an
//! OpenAI account beside it is unaffected, and the end state holds. A
//! second test shows `Retry-After` binding every worker of the cluster,
//! not only the one that got the 429.

use std::time::Duration;

use refresh_tests::{Cluster, EndState, Topology, eventually, stays};
use serde_json::{Value, json};

const CONFIG: &str = "[flow]\nlease_ttl = \"6s\"\nupstream_timeout = \"2s\"\nupstream_grace = \"1s\"\n\
storage_timeout = \"1s\"\nclaim_ttl = \"10s\"\nquarantine = \"4s\"\n\
[background]\ninterval = \"300ms\"\nwindow = \"30s\"\n";

/// Injects `fault` on the Claude path, waits until the emulator applied
/// it, then runs `during` and waits until the account is refreshed again.
async fn fault_then_recovery<F, Fut>(cluster: &Cluster, fault: Value, during: F)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let e = &cluster.emulator;
    let claude = &cluster.accounts[0];
    let injected = e.stats().await.faults_injected;
    let refreshed = e.grant(claude.grant).await.refreshes;
    e.fault(fault.clone()).await;
    eventually(
        &format!("the emulator applied {fault}"),
        Duration::from_secs(30),
        || async { e.stats().await.faults_injected > injected },
    )
    .await;
    during().await;
    eventually(
        &format!("the account refreshed again after {fault}"),
        Duration::from_secs(30),
        || async { e.grant(claude.grant).await.refreshes > refreshed },
    )
    .await;
}

/// Asserts that no request reaches the Claude path for `span`.
async fn no_call_for(cluster: &Cluster, span: Duration, what: &str) {
    let path = cluster.accounts[0].token_path;
    let before = cluster.emulator.requests(path).await;
    stays(what, span, || async {
        cluster.emulator.requests(path).await == before
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn five_xx_retry_after_hang_malformed_and_oversized_answers() {
    let mut cluster = Cluster::start("s5_upstream", Topology::DatabaseOnly, CONFIG).await;
    cluster.emulator.set_token_lifetime(Some(20)).await;
    cluster.import(1, 1, -60).await;
    let (claude, openai) = (cluster.accounts[0].clone(), cluster.accounts[1].clone());
    let path = claude.token_path;
    let mut worker = cluster.run("run");
    cluster
        .emulator
        .wait_for_refreshes(2, "both accounts refreshed")
        .await;
    let openai_before = cluster.emulator.grant(openai.grant).await.refreshes;

    for _ in 0..3 {
        cluster
            .emulator
            .fault(json!({"kind": "server_error", "path": path}))
            .await;
    }
    fault_then_recovery(
        &cluster,
        json!({"kind": "server_error", "path": path}),
        || async {},
    )
    .await;

    fault_then_recovery(
        &cluster,
        json!({"kind": "rate_limited", "retry_after": "3", "path": path}),
        || {
            no_call_for(
                &cluster,
                Duration::from_millis(2_000),
                "no call before Retry-After",
            )
        },
    )
    .await;

    // Hangs after the request was read: aborted at the 2 s deadline, then
    // the token is quarantined for 4 s (no call before 6 s). The window
    // outlasts the deadline plus the background's own retry backoff
    // (2 s × [0.5, 1]): without the quarantine the retry comes at 3–4 s
    // and fails it; a 3 s window passed with or without it.
    fault_then_recovery(&cluster, json!({"kind": "hang", "path": path}), || {
        no_call_for(
            &cluster,
            Duration::from_millis(5_000),
            "no blind retry after a hang",
        )
    })
    .await;

    // Garbage is quarantined for 4 s; the window outlasts the background's
    // retry backoff (at most 2 s), which alone kept a 1.5 s window quiet.
    fault_then_recovery(
        &cluster,
        json!({"kind": "malformed_json", "path": path}),
        || {
            no_call_for(
                &cluster,
                Duration::from_millis(3_000),
                "no blind retry after garbage",
            )
        },
    )
    .await;

    fault_then_recovery(
        &cluster,
        json!({"kind": "oversized", "bytes": 20_000_000, "path": path}),
        || async {},
    )
    .await;
    let stats = cluster.emulator.stats().await;
    assert!(
        stats.oversized_bytes_sent < 20_000_000,
        "the oversized body was not read to its end: {stats:?}"
    );

    worker.stop().await;
    assert!(
        cluster.emulator.grant(openai.grant).await.refreshes > openai_before,
        "the OpenAI account kept refreshing"
    );
    cluster.assert_end_state(&EndState::default()).await;
}

/// `Retry-After` binds the cluster, not only the process that got the
/// 429: with two `run` workers on the same always-due account, no token
/// request reaches the upstream before it, whichever worker asks next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn retry_after_binds_every_worker() {
    let mut cluster = Cluster::start("s5_retry_after", Topology::DatabaseOnly, CONFIG).await;
    cluster.emulator.set_token_lifetime(Some(20)).await;
    cluster.import(1, 0, -60).await;
    let path = cluster.accounts[0].token_path;
    let mut workers = vec![cluster.run("run-0"), cluster.run("run-1")];
    cluster
        .emulator
        .wait_for_refreshes(1, "the account refreshed")
        .await;
    fault_then_recovery(
        &cluster,
        json!({"kind": "rate_limited", "retry_after": "3", "path": path}),
        || {
            no_call_for(
                &cluster,
                Duration::from_millis(2_000),
                "no call before Retry-After",
            )
        },
    )
    .await;
    for worker in &mut workers {
        worker.stop().await;
    }
    cluster.assert_end_state(&EndState::default()).await;
}
