//! Scenario 3: the database refuses credential writes after the upstream
//! rotated (a repository wrapper in the worker fails every write while a
//! flag file exists), and the worker then crashes (SIGKILL) holding the
//! leases. Callers in another worker, finding the refreshes held
//! elsewhere, bring every rotation home from the answers saved in the
//! generation claims while the dead worker's leases still live, without a
//! single new upstream call.

use std::time::Duration;

use refresh_tests::{Cluster, EndState, Topology, env, eventually, stays};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn rotations_come_home_from_the_claims_before_any_new_upstream_call() {
    let mut cluster = Cluster::start("s3_writes", Topology::DatabaseOnly, "").await;
    cluster.import(2, 2, -60).await;
    let n = cluster.accounts.len() as u64;
    let flag = cluster.path().join("fail-writes");
    std::fs::write(&flag, "").expect("flag");
    let initial = cluster.stored_refresh_tokens().await;

    let mut failing = cluster.fault_worker(
        "worker-failing-writes",
        &env(&[
            ("FW_MODE", "background"),
            ("FW_INTERVAL_MS", "300"),
            ("FW_FAIL_WRITES_FLAG", flag.to_str().expect("utf-8")),
        ]),
    );
    cluster
        .emulator
        .wait_for_refreshes(n, "the upstream rotated every account")
        .await;
    // Every account's write failed after its upstream success.
    eventually(
        "a failed write after each upstream success",
        Duration::from_secs(30),
        || {
            let mut failed: Vec<&str> = Vec::new();
            let logs = failing.logs();
            for line in logs.lines().filter(|l| l.contains("fenced write failed")) {
                if let Some(id) = line.split("account_id=").nth(1) {
                    failed.push(id.split([' ', '}']).next().unwrap_or_default());
                }
            }
            failed.sort_unstable();
            failed.dedup();
            std::future::ready(failed.len() as u64 == n)
        },
    )
    .await;
    assert_eq!(
        cluster.stored_refresh_tokens().await,
        initial,
        "no write got through"
    );
    failing.kill().await;
    std::fs::remove_file(&flag).expect("remove flag");

    let requests = |stats: &refresh_facade::providers::emulator::Stats| {
        stats.requests("/v1/oauth/token") + stats.requests("/oauth/token")
    };
    let before = requests(&cluster.emulator.stats().await);
    let ids: Vec<String> = cluster.accounts.iter().map(|a| a.id.to_string()).collect();
    let mut callers = cluster.fault_worker(
        "worker-callers",
        &env(&[("FW_MODE", "tokens"), ("FW_ACCOUNTS", &ids.join(","))]),
    );
    let status = callers.wait().await;
    assert!(status.success(), "{}", callers.logs());
    let summary = Cluster::summary(&callers);
    assert_eq!(
        summary.get("token:ok"),
        n,
        "every caller got a token: {summary:?}"
    );
    assert_eq!(
        summary
            .counts
            .keys()
            .filter(|k| k.starts_with("upstream:"))
            .count(),
        0,
        "no token was presented: {summary:?}"
    );
    eventually(
        "every rotation came home from its claim",
        Duration::from_secs(10),
        || cluster.all_rotations_home(&[]),
    )
    .await;
    stays(
        "no new upstream call",
        Duration::from_millis(300),
        || async { requests(&cluster.emulator.stats().await) == before },
    )
    .await;
    assert_eq!(cluster.emulator.stats().await.refreshes, n);
    cluster.assert_end_state(&EndState::default()).await;
}
