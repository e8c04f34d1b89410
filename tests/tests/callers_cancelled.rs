//! Scenario 6: callers that give up mid-refresh. In a worker, every
//! caller's future is dropped while the upstream is still answering; over
//! HTTP, clients disconnect from `serve` before the answer. Either way the
//! refresh already sent finishes detached and is persisted: one refresh
//! per account, every rotation stored.

use std::time::Duration;

use refresh_tests::cluster::API_KEY;
use refresh_tests::{Cluster, EndState, Topology, env, eventually};

const LATENCY_MS: u64 = 1_500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn dropped_caller_futures_do_not_lose_the_refresh() {
    let mut cluster = Cluster::start("s6_dropped", Topology::WithRedis, "").await;
    cluster.import(2, 2, -60).await;
    cluster.emulator.set_latency(LATENCY_MS).await;
    let n = cluster.accounts.len() as u64;
    let ids: Vec<String> = cluster.accounts.iter().map(|a| a.id.to_string()).collect();
    let mut worker = cluster.fault_worker(
        "worker-cancelling",
        &env(&[
            ("FW_MODE", "tokens"),
            ("FW_ACCOUNTS", &ids.join(",")),
            ("FW_CALLER_TIMEOUT_MS", "200"),
        ]),
    );
    let status = worker.wait().await;
    assert!(status.success(), "{}", worker.logs());
    let summary = Cluster::summary(&worker);
    assert_eq!(
        summary.get("token:cancelled"),
        n,
        "every caller gave up before the answer: {summary:?}"
    );
    assert_eq!(summary.get("upstream:ok"), n, "{summary:?}");
    assert!(
        cluster.all_rotations_home(&[]).await,
        "every rotation stored"
    );
    assert_eq!(cluster.emulator.stats().await.refreshes, n);
    cluster.assert_end_state(&EndState::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn http_clients_disconnecting_from_serve_do_not_lose_the_refresh() {
    let mut cluster = Cluster::start("s6_http", Topology::WithRedis, "").await;
    cluster.import(2, 2, -60).await;
    cluster.emulator.set_latency(LATENCY_MS).await;
    let n = cluster.accounts.len() as u64;
    let (mut serve, url) = cluster.serve("serve", &["--no-worker"]).await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .expect("client");
    for account in &cluster.accounts {
        let sent = impatient
            .get(format!("{url}/v1/accounts/{}/access-token", account.id))
            .bearer_auth(API_KEY)
            .send()
            .await;
        assert!(
            sent.is_err_and(|e| e.is_timeout()),
            "the client gave up before the answer"
        );
    }
    eventually(
        "every rotation stored after the clients left",
        Duration::from_secs(30),
        || cluster.all_rotations_home(&[]),
    )
    .await;
    let patient = reqwest::Client::new();
    for account in &cluster.accounts {
        let answer = patient
            .get(format!("{url}/v1/accounts/{}/access-token", account.id))
            .bearer_auth(API_KEY)
            .send()
            .await
            .expect("request");
        assert_eq!(answer.status(), 200);
    }
    serve.stop().await;
    let stats = cluster.emulator.stats().await;
    assert_eq!(stats.refreshes, n, "one refresh per account: {stats:?}");
    cluster.assert_end_state(&EndState::default()).await;
}
