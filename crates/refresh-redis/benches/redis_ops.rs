//! Round trips of the Redis backends against a real server
//! (`REFRESH_TEST_REDIS_URL`, or `redis://127.0.0.1:6379/` when unset):
//!
//! - `ping`: one `PING`, the floor of any command;
//! - `two_pings`: two sequential `PING`s, the floor of two round trips;
//! - `lease_acquire_release`: `try_acquire` + `release` of one key (two
//!   scripts, two round trips): compare with `two_pings`;
//! - `cache_get`: `get` of a present entry (one `HGET` and a JSON decode).
//!
//! Keys live under a prefix of their own, deleted at the end.

use std::time::Duration;

use criterion::{Criterion, criterion_main};
use refresh_core::ports::{CachedToken, RefreshLock, TokenCache};
use refresh_core::{AccountId, Platform, RefreshKey, Secret};
use refresh_redis::{RedisBackend, RedisConfig};
use tokio::runtime::Runtime;

const LEASE_TTL: Duration = Duration::from_secs(30);
const CACHE_TTL: Duration = Duration::from_secs(3600);

fn url() -> String {
    std::env::var("REFRESH_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Deletes every key under `prefix` (never a flush: the server is shared).
async fn delete_prefix(prefix: &str) {
    let client = redis::Client::open(url().as_str()).expect("url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect for cleanup");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    for key in keys {
        let _: Result<i64, _> = redis::cmd("DEL").arg(&key).query_async(&mut conn).await;
    }
}

fn redis_ops(c: &mut Criterion) {
    let rt = runtime();
    let prefix = format!("bench-redis-ops-{}", std::process::id());
    let config = RedisConfig::new(url())
        .expect("valid url")
        .with_prefix(prefix.clone());
    let redis = rt.block_on(RedisBackend::connect(config)).expect("connect");
    rt.block_on(redis.ping())
        .expect("the Redis server answers PING (set REFRESH_TEST_REDIS_URL)");
    let lock = redis.lock();
    let cache = redis.token_cache();
    let lease_key = RefreshKey::for_account(&Platform::Anthropic, AccountId(1));
    let cache_key = RefreshKey::for_account(&Platform::Anthropic, AccountId(2));
    let cached = CachedToken {
        access_token: Secret::from("at-bench-0123456789abcdef0123456789abcdef"),
        version: 1,
        expires_at: None,
    };
    rt.block_on(cache.put(&cache_key, &cached, CACHE_TTL))
        .expect("seed the cached entry");

    c.bench_function("ping", |b| {
        b.to_async(&rt)
            .iter(|| async { redis.ping().await.expect("ping") });
    });
    c.bench_function("two_pings", |b| {
        b.to_async(&rt).iter(|| async {
            redis.ping().await.expect("ping");
            redis.ping().await.expect("ping");
        });
    });
    c.bench_function("lease_acquire_release", |b| {
        b.to_async(&rt).iter(|| async {
            let lease = lock
                .try_acquire(&lease_key, LEASE_TTL)
                .await
                .expect("acquire")
                .expect("the lease is free: every iteration releases it");
            assert!(lock.release(&lease).await.expect("release"));
        });
    });
    c.bench_function("cache_get", |b| {
        b.to_async(&rt).iter(|| async {
            let hit = cache.get(&cache_key).await.expect("get");
            assert!(hit.is_some(), "the seeded entry is present");
            hit
        });
    });

    rt.block_on(delete_prefix(&prefix));
}

/// The group `criterion_main!` runs (`criterion_group!` declares an
/// undocumented `pub fn`).
mod group {
    #![allow(missing_docs, unreachable_pub)]
    criterion::criterion_group!(benches, super::redis_ops);
}

criterion_main!(group::benches);
