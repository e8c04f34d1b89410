//! Hostile review: the flow_over_redis acceptance run (4 processes, 64
//! callers, layered Redis + durable lock, shared claim store) with other
//! Redis faults in the middle round, on a redis-server of the test's own:
//! FLUSHALL (+ SCRIPT FLUSH + CLIENT KILL TYPE pubsub), SIGSTOP for longer
//! than the command timeout, and a restart. Checked: zero refresh-token
//! reuse, one refresh per expiry, every caller served a valid token.
//! The harness is `common::flow`.

mod common;

use common::flow::{Fault, check, config, run, world};
use common::{OwnServer, unique_prefix};

async fn faulted(fault: Fault) {
    let server = OwnServer::start().await;
    let prefix = unique_prefix("hostile-flow");
    let w = world(&config(server.url(), &prefix)).await;
    let served = run(&w, Some((server, fault))).await;
    check(
        &w,
        &served,
        &format!("{fault:?} halfway"),
        !matches!(fault, Fault::Stop),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs services: cargo xtask test"]
async fn h_flow_redis_flushed_halfway_zero_reuse() {
    faulted(Fault::Flush).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs services: cargo xtask test"]
async fn h_flow_redis_stopped_halfway_zero_reuse() {
    faulted(Fault::Stop).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs services: cargo xtask test"]
async fn h_flow_redis_restarted_halfway_zero_reuse() {
    faulted(Fault::Restart).await;
}
