//! Scenario 1: Redis killed mid-run and restarted, then flushed
//! (`FLUSHALL`) mid-run, under three `serve` processes (request path and
//! background worker) whose Claude and OpenAI tokens rotate every few
//! seconds. Refreshes go on through the database lease while Redis is
//! down, every request is answered, and the end state holds.

use std::time::Duration;

use refresh_tests::load::metric;
use refresh_tests::{Cluster, EndState, Load, Topology, eventually};

/// Waits until the emulator counted `more` refreshes beyond `from`.
async fn refreshes_beyond(cluster: &Cluster, from: u64, more: u64, what: &str) -> u64 {
    cluster.emulator.wait_for_refreshes(from + more, what).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs services: cargo xtask test"]
async fn redis_killed_restarted_and_flushed_mid_run() {
    // Tokens live 30 s and are refreshed within 25 s of expiry: every
    // account rotates about every 5 s, on request or in the background.
    let extra = "[flow]\nskew = \"25s\"\n[background]\ninterval = \"500ms\"\nwindow = \"25s\"\n";
    let mut cluster = Cluster::start("s1_redis", Topology::WithRedis, extra).await;
    cluster.emulator.set_token_lifetime(Some(30)).await;
    cluster.import(3, 3, -60).await;
    let ids: Vec<i64> = cluster.accounts.iter().map(|a| a.id).collect();
    let n = ids.len() as u64;

    let mut servers = Vec::new();
    for i in 0..3 {
        servers.push(cluster.serve(&format!("serve-{i}"), &[]).await);
    }
    let urls: Vec<String> = servers.iter().map(|(_, url)| url.clone()).collect();
    let load = Load::start(&urls, &ids, 6);

    let seen = refreshes_beyond(&cluster, 0, n, "every account refreshed once").await;
    cluster.redis.as_mut().expect("redis").kill();
    let seen = refreshes_beyond(&cluster, seen, n, "refreshes go on with Redis down").await;
    cluster.redis.as_mut().expect("redis").restart().await;
    let seen = refreshes_beyond(&cluster, seen, n, "refreshes go on after Redis restarted").await;
    let redis = cluster.redis.as_ref().expect("redis");
    eventually(
        "the restarted Redis holds keys again",
        Duration::from_secs(30),
        || std::future::ready(redis.dbsize() > 0),
    )
    .await;
    redis.flushall();
    refreshes_beyond(&cluster, seen, n, "refreshes go on after FLUSHALL").await;

    let answers = load.stop().await;
    let mut unavailable = 0.0;
    for url in &urls {
        unavailable += metric(
            url,
            "oauth_refresh_lock_unavailable_total",
            "layer=\"redis\"",
        )
        .await;
    }
    for (proc, _) in &mut servers {
        proc.stop().await;
    }
    let total: u64 = answers.values().sum();
    assert!(total > 0);
    assert_eq!(
        answers.get("200").copied().unwrap_or(0),
        total,
        "every request was answered with a token: {answers:?}"
    );
    assert!(
        unavailable >= 1.0,
        "Redis was down: the database lease took over"
    );
    cluster.assert_end_state(&EndState::default()).await;
}
