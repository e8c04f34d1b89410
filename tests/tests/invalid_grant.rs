//! Scenario 8: a grant revoked at the emulator (a real `invalid_grant`)
//! under two `oauth-refresh run` workers: its account is marked error once,
//! with a sanitized message, and never retried in a loop; the other
//! accounts refresh as usual.

use std::time::Duration;

use refresh_facade::core::AccountStatus;
use refresh_tests::{Cluster, EndState, Topology, eventually, stays};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn a_revoked_grant_marks_its_account_error_once() {
    let extra = "[background]\ninterval = \"300ms\"\n";
    let mut cluster = Cluster::start("s8_invalid", Topology::WithRedis, extra).await;
    cluster.import(2, 2, -60).await;
    let revoked = cluster.accounts[0].clone();
    cluster.emulator.revoke(revoked.grant).await;
    let mut workers = vec![cluster.run("run-0"), cluster.run("run-1")];
    let others: Vec<i64> = cluster.accounts[1..].iter().map(|a| a.id).collect();
    let except = [revoked.id];
    eventually(
        "the other accounts refreshed and stored",
        Duration::from_secs(30),
        || cluster.all_rotations_home(&except),
    )
    .await;
    let index = 0;
    eventually(
        "the revoked account marked error",
        Duration::from_secs(30),
        || async { cluster.stored().await[index].status == AccountStatus::Error },
    )
    .await;
    // Several cycles of both workers: the refusal is not asked again.
    stays(
        "the revoked grant was refused once",
        Duration::from_secs(2),
        || async { cluster.emulator.grant(revoked.grant).await.rejected == 1 },
    )
    .await;
    for worker in &mut workers {
        worker.stop().await;
    }
    let stored = cluster.stored().await;
    let message = stored[index].error_message.clone().unwrap_or_default();
    assert!(message.contains("invalid_grant"), "{message}");
    assert!(message.len() < 300, "a short sanitized message: {message}");
    let marks = cluster.log_lines_with("account marked error");
    assert_eq!(marks.len(), 1, "marked once: {marks:?}");
    for (account, row) in cluster.accounts.iter().zip(&stored) {
        if others.contains(&account.id) {
            assert_eq!(row.status, AccountStatus::Active);
            let grant = cluster.emulator.grant(account.grant).await;
            assert_eq!(grant.refreshes, 1, "refreshed once: {grant:?}");
        }
    }
    cluster
        .assert_end_state(&EndState {
            revoked: vec![revoked.grant],
            errored: vec![revoked.id],
            ..EndState::default()
        })
        .await;
}
