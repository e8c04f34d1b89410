//! Faults of the Redis server itself, on a `redis-server` each test owns
//! (never the shared servers):
//!
//! - killed mid-test: every lock and cache operation fails `Unavailable` or
//!   `Timeout` within a bound (no hang), and a "refreshed" notice taken
//!   before the kill resolves `None` (the channel closed, waiters poll);
//! - restarted: the SAME `RedisLock` / `RedisTokenCache` objects work again
//!   (leases, cached tokens, and a new subscription that hears a publish
//!   from another backend).

mod common;

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use common::{OwnServer, token, unique_prefix};
use refresh_core::ports::{PutOutcome, RefreshLock, TokenCache};
use refresh_core::{AccountId, Platform, RefreshKey, StorageError, StorageErrorKind};
use refresh_redis::RedisBackend;

/// The command timeout of every backend here.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(300);
/// How long any call may take with the server gone: the command timeout
/// plus a generous margin (a subscription may wait for a connect and a
/// command).
const BOUND: Duration = Duration::from_millis(4 * 300);
/// How long the same objects may take to work again after a restart (the
/// notification connection reconnects with a backoff of up to 5 s).
const RECOVERY: Duration = Duration::from_secs(20);
/// Pause between attempts while waiting for a reconnection (polling, not
/// synchronisation: each attempt is itself the check).
const RETRY_PAUSE: Duration = Duration::from_millis(25);
const LEASE_TTL: Duration = Duration::from_secs(30);
const CACHE_TTL: Duration = Duration::from_secs(60);

async fn connect(server: &OwnServer, prefix: &str) -> RedisBackend {
    server.backend(prefix, COMMAND_TIMEOUT).await
}

fn key(id: i64) -> RefreshKey {
    RefreshKey::for_account(&Platform::Anthropic, AccountId(id))
}

/// Awaits `call` for at most [`BOUND`] and asserts it failed with a
/// retryable connection kind (what makes the flow fall through to its next
/// lock layer).
async fn fails_fast<T: Debug>(what: &str, call: impl Future<Output = Result<T, StorageError>>) {
    let result = tokio::time::timeout(BOUND, call)
        .await
        .unwrap_or_else(|_| panic!("{what} did not return within {BOUND:?} of the server dying"));
    match result {
        Err(error) => assert!(
            matches!(
                error.kind(),
                StorageErrorKind::Unavailable | StorageErrorKind::Timeout
            ),
            "{what}: expected Unavailable or Timeout, got {:?} ({error})",
            error.kind()
        ),
        Ok(value) => panic!("{what} succeeded with the server killed: {value:?}"),
    }
}

/// Retries `attempt` until it answers `Ok`, for at most [`RECOVERY`].
async fn until_ok<T, F, Fut>(what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StorageError>>,
{
    let deadline = tokio::time::Instant::now() + RECOVERY;
    loop {
        let last = match tokio::time::timeout(BOUND, attempt()).await {
            Ok(Ok(value)) => return value,
            Ok(Err(error)) => format!("{:?}: {error}", error.kind()),
            Err(_) => format!("no answer within {BOUND:?}"),
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} still fails {RECOVERY:?} after the restart: {last}"
        );
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn a_killed_server_fails_every_operation_within_the_bound_and_closes_notices() {
    let mut server = OwnServer::start().await;
    let prefix = unique_prefix("faults-kill");
    let redis = connect(&server, &prefix).await;
    let (lock, cache) = (redis.lock(), redis.token_cache());
    let (k, other) = (key(1), key(2));

    // Everything works while the server is up, and the connections (the
    // command connection, the notification connection) are established.
    redis.ping().await.expect("ping");
    let lease = lock
        .try_acquire(&k, LEASE_TTL)
        .await
        .expect("acquire")
        .expect("the lease is free");
    assert_eq!(
        cache
            .put(&k, &token("at-1", 1), CACHE_TTL)
            .await
            .expect("put"),
        PutOutcome::Stored
    );
    assert_eq!(cache.get(&k).await.expect("get"), Some(token("at-1", 1)));
    let notice = cache.subscribe_refreshed(&k).await.expect("subscribe");

    server.kill();

    // The notice taken before the kill: the channel closed, so it resolves
    // `None` (never hangs, never a made-up version).
    let heard = tokio::time::timeout(BOUND, notice)
        .await
        .unwrap_or_else(|_| panic!("the notice did not resolve within {BOUND:?} of the kill"));
    assert_eq!(heard, None, "a notice whose channel closed resolves None");

    // Every operation fails fast, with a kind the flow falls through on.
    fails_fast("ping", redis.ping()).await;
    fails_fast("try_acquire", lock.try_acquire(&other, LEASE_TTL)).await;
    fails_fast("extend", lock.extend(&lease, LEASE_TTL)).await;
    fails_fast("release", lock.release(&lease)).await;
    fails_fast("get", cache.get(&k)).await;
    fails_fast("put", cache.put(&k, &token("at-2", 2), CACHE_TTL)).await;
    fails_fast("invalidate", cache.invalidate(&k)).await;
    fails_fast("publish_refreshed", cache.publish_refreshed(&k, 2)).await;
    fails_fast("subscribe_refreshed", cache.subscribe_refreshed(&k)).await;
    // And again, once the clients had time to notice (reconnect attempts
    // in flight must not make a call hang either).
    fails_fast("try_acquire (again)", lock.try_acquire(&k, LEASE_TTL)).await;
    fails_fast("get (again)", cache.get(&other)).await;
    fails_fast(
        "subscribe_refreshed (again)",
        cache.subscribe_refreshed(&other),
    )
    .await;
    // The server is gone with its keys: nothing to delete.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn the_same_lock_and_cache_work_again_after_a_restart() {
    let mut server = OwnServer::start().await;
    let prefix = unique_prefix("faults-restart");
    let redis = connect(&server, &prefix).await;
    let (lock, cache) = (redis.lock(), redis.token_cache());
    let k = key(1);

    let before = lock
        .try_acquire(&k, LEASE_TTL)
        .await
        .expect("acquire")
        .expect("the lease is free");
    assert!(lock.release(&before).await.expect("release"));
    assert_eq!(
        cache
            .put(&k, &token("at-1", 1), CACHE_TTL)
            .await
            .expect("put"),
        PutOutcome::Stored
    );
    let notice = cache.subscribe_refreshed(&k).await.expect("subscribe");

    server.kill();
    fails_fast("try_acquire while down", lock.try_acquire(&k, LEASE_TTL)).await;
    fails_fast("get while down", cache.get(&k)).await;
    let heard = tokio::time::timeout(BOUND, notice)
        .await
        .expect("the notice resolves once the server is gone");
    assert_eq!(heard, None);

    server.restart().await;

    // The same lock: the first call may still find the old connection
    // broken; it reconnects within the bound.
    let lease = until_ok("try_acquire after the restart", || {
        lock.try_acquire(&k, LEASE_TTL)
    })
    .await
    .expect("the restarted server holds no lease");
    assert!(
        lease.fence > before.fence,
        "fences keep growing across a restart without persistence: {} then {}",
        before.fence,
        lease.fence
    );
    assert!(
        lock.try_acquire(&k, LEASE_TTL)
            .await
            .expect("acquire")
            .is_none(),
        "the lease taken after the restart excludes others"
    );
    assert!(lock.extend(&lease, LEASE_TTL).await.expect("extend"));
    assert!(lock.release(&lease).await.expect("release"));

    // The same cache: the entry went with the old process; puts and gets
    // work again.
    assert_eq!(cache.get(&k).await.expect("get"), None);
    assert_eq!(
        cache
            .put(&k, &token("at-2", 2), CACHE_TTL)
            .await
            .expect("put"),
        PutOutcome::Stored
    );
    assert_eq!(cache.get(&k).await.expect("get"), Some(token("at-2", 2)));
    cache.invalidate(&k).await.expect("invalidate");
    assert_eq!(cache.get(&k).await.expect("get"), None);

    // The same cache's notification connection comes back: a new
    // subscription hears a publish from another backend (another process).
    let notice = until_ok("subscribe_refreshed after the restart", || {
        cache.subscribe_refreshed(&k)
    })
    .await;
    let publisher = connect(&server, &prefix).await;
    publisher
        .token_cache()
        .publish_refreshed(&k, 7)
        .await
        .expect("publish from another backend");
    let heard = tokio::time::timeout(BOUND, notice)
        .await
        .unwrap_or_else(|_| panic!("the publish was not heard within {BOUND:?}"));
    assert_eq!(heard, Some(7));
    // The server is ours and dies with the test: nothing to delete.
}
