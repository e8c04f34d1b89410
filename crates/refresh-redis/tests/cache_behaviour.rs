//! `RedisTokenCache` on a real server and on the cluster: notifications
//! across processes, and the version guard under concurrent puts.

#[macro_use]
mod common;

use std::time::Duration;

use common::{Deployment, backend, delete_prefix};
use refresh_core::RefreshKey;
use refresh_core::ports::{CachedToken, PutOutcome, TokenCache};
use refresh_redis::RedisBackend;

fn key(name: &str) -> RefreshKey {
    RefreshKey::from_raw(format!("openai:account:{name}"))
}

fn token(version: u64) -> CachedToken {
    CachedToken {
        access_token: format!("at-{version}").into(),
        version,
        expires_at: None,
    }
}

async fn woken_across_processes(deployment: Deployment) {
    let publisher = backend(deployment, "notify").await;
    // Another process: its own connections, same prefix.
    let waiter_side = RedisBackend::connect(publisher.config().clone())
        .await
        .unwrap();
    let (cache, other) = (publisher.token_cache(), waiter_side.token_cache());
    // Many waiters on two keys share the one subscriber connection.
    let mut notices = Vec::new();
    for _ in 0..20 {
        notices.push(other.subscribe_refreshed(&key("a")).await.unwrap());
    }
    let unrelated = other.subscribe_refreshed(&key("b")).await.unwrap();
    cache.publish_refreshed(&key("a"), 42).await.unwrap();
    for notice in notices {
        let heard = tokio::time::timeout(Duration::from_secs(10), notice)
            .await
            .expect("the publish resolves the notice");
        assert_eq!(heard, Some(42));
    }
    // The other key's waiter heard nothing; a later publish of it does.
    cache.publish_refreshed(&key("b"), 7).await.unwrap();
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(10), unrelated)
            .await
            .unwrap(),
        Some(7)
    );
    // A new subscription after the delivery works again.
    let again = other.subscribe_refreshed(&key("a")).await.unwrap();
    cache.publish_refreshed(&key("a"), 43).await.unwrap();
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(10), again)
            .await
            .unwrap(),
        Some(43)
    );
    delete_prefix(deployment, &publisher.config().key_prefix).await;
}

async fn guard_under_concurrency(deployment: Deployment) {
    let redis = backend(deployment, "guard").await;
    let mut caches = Vec::new();
    for _ in 0..4 {
        caches.push(
            RedisBackend::connect(redis.config().clone())
                .await
                .unwrap()
                .token_cache(),
        );
    }
    let mut tasks = Vec::new();
    for i in 0..100u64 {
        let cache = caches[(i % 4) as usize].clone();
        // Versions 1..=100 in a scrambled order.
        let version = (i * 37) % 100 + 1;
        tasks.push(tokio::spawn(async move {
            cache
                .put(&key("g"), &token(version), Duration::from_secs(30))
                .await
                .unwrap()
        }));
    }
    let mut stored = 0;
    for task in tasks {
        match task.await.unwrap() {
            PutOutcome::Stored => stored += 1,
            PutOutcome::Superseded { cached_version } => assert!(cached_version <= 100),
        }
    }
    assert!(stored >= 1);
    let cached = caches[0].get(&key("g")).await.unwrap().expect("cached");
    assert_eq!(cached.version, 100, "the highest version wins");
    assert_eq!(cached.access_token.expose(), "at-100");
    // An older put after the fact is refused.
    assert_eq!(
        caches[1]
            .put(&key("g"), &token(99), Duration::from_secs(30))
            .await
            .unwrap(),
        PutOutcome::Superseded {
            cached_version: 100
        }
    );
    delete_prefix(deployment, &redis.config().key_prefix).await;
}

on_both!(
    a_waiter_in_another_process_is_woken_by_a_publish,
    cluster_a_waiter_in_another_process_is_woken_by_a_publish,
    woken_across_processes
);
on_both!(
    the_version_guard_holds_under_100_concurrent_puts,
    cluster_the_version_guard_holds_under_100_concurrent_puts,
    guard_under_concurrency
);
