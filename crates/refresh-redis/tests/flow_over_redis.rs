//! The request path over real Redis, in the production lock layout: the
//! acceptance run of the Redis backends.
//!
//! Four independent "processes", each with its own `RefreshFlow` and
//! `TokenProvider` (own in-process caches and single flights) and its own
//! `RedisBackend` (own command and notification connections, one
//! `RedisLock` and one `RedisTokenCache`), under
//! `LockStrategy::layered(redis lock, durable lock)` where the durable lock
//! is one in-memory lock shared by the four, as a database lease would be.
//! The account repository and the generation-claim store are in-memory and
//! shared. 64 callers (16 per process, 16 per account) ask for the tokens of
//! 4 accounts against one rotating `FakeUpstream` (answering after
//! `UPSTREAM_LATENCY`), on a multi-thread runtime and the system clock:
//! the tokens really expire.
//!
//! Tokens live `LIFETIME` and are refreshed within `SKEW` of their
//! expiry. Each round starts once every stored token is due (its cache
//! entries, in Redis too, lapse exactly then) but still valid, so each
//! account expires once per round: the expected number of refreshes is
//! accounts × rounds. Checked: no refresh token is presented twice
//! (`reuses() == 0`), one upstream refresh per account per round, and every
//! caller gets a token valid when it returns, issued for the version it
//! claims and never older than the token stored when it asked.
//!
//! The second test runs the same on a `redis-server` of its own that is
//! killed (SIGKILL) once half the callers of the middle round started: the
//! flows fall through to the durable layer, the caches and notifications
//! fail, and there is still no reuse.
//!
//! The harness (and its constants) is `common::flow`, shared with
//! `hostile_flow_redis`.

mod common;

use common::flow::{Fault, check, config, run, world};
use common::{Deployment, OwnServer, delete_prefix, unique_prefix};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs services: cargo xtask test"]
async fn four_processes_64_callers_zero_reuse_one_refresh_per_expiry() {
    let prefix = unique_prefix("flow");
    let w = world(&config(common::server_url(), &prefix)).await;
    let served = run(&w, None).await;
    check(&w, &served, "shared server", true).await;
    delete_prefix(Deployment::Single, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs services: cargo xtask test"]
async fn redis_killed_halfway_still_zero_reuse() {
    let server = OwnServer::start().await;
    let prefix = unique_prefix("flow-killed");
    let w = world(&config(server.url(), &prefix)).await;
    let served = run(&w, Some((server, Fault::Kill))).await;
    check(&w, &served, "killed halfway", true).await;
}
