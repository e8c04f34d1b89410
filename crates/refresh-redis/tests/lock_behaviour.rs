//! `RedisLock` on a real server and on the cluster: owner checks, fences,
//! extension, and mutual exclusion under 200 concurrent acquirers.

#[macro_use]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Deployment, backend, delete_prefix, exec, key, raw, raw_key};
use refresh_core::ports::RefreshLock;
use refresh_redis::RedisBackend;

async fn raw_del(redis: &RedisBackend, deployment: Deployment, suffix: &str, name: &str) {
    let del = (
        "DEL",
        raw_key(&redis.config().key_prefix, suffix, &key(name)),
    );
    let _: i64 = match deployment {
        Deployment::Single => exec(&mut raw(&common::server_url()).await, del).await,
        Deployment::Cluster => {
            let client = redis::cluster::ClusterClient::new(common::cluster_urls()).unwrap();
            exec(&mut client.get_async_connection().await.unwrap(), del).await
        }
    };
}

async fn owner_checks(deployment: Deployment) {
    let redis = backend(deployment, "owner").await;
    let (a, b) = (redis.lock(), backend_like(&redis).await.lock());
    let ttl = Duration::from_millis(300);
    let lease = a.try_acquire(&key("1"), ttl).await.unwrap().expect("free");
    assert!(
        b.try_acquire(&key("1"), ttl).await.unwrap().is_none(),
        "held"
    );

    // A forged lease with another owner can neither extend nor release.
    let mut forged = lease.clone();
    forged.owner = refresh_core::ports::LeaseOwner::random();
    assert!(!b.extend(&forged, ttl).await.unwrap());
    assert!(!b.release(&forged).await.unwrap());
    assert!(
        b.try_acquire(&key("1"), ttl).await.unwrap().is_none(),
        "still held"
    );

    // It lapses; another owner takes it; the first owner's release and
    // extend leave the new holder alone.
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    let second = b
        .try_acquire(&key("1"), Duration::from_secs(5))
        .await
        .unwrap()
        .expect("lapsed");
    assert!(second.fence > lease.fence);
    assert!(!a.release(&lease).await.unwrap());
    assert!(!a.extend(&lease, ttl).await.unwrap());
    assert!(
        a.try_acquire(&key("1"), ttl).await.unwrap().is_none(),
        "second holder kept"
    );
    assert!(b.release(&second).await.unwrap());
    delete_prefix(deployment, &redis.config().key_prefix).await;
}

/// Another backend (own connection) on the same prefix: another process.
async fn backend_like(redis: &RedisBackend) -> RedisBackend {
    RedisBackend::connect(redis.config().clone()).await.unwrap()
}

async fn fences_increase(deployment: Deployment) {
    let redis = backend(deployment, "fence").await;
    let lock = redis.lock();
    let ttl = Duration::from_millis(200);
    let mut last = 0;
    for round in 0..6 {
        let lease = lock
            .try_acquire(&key("f"), ttl)
            .await
            .unwrap()
            .expect("free");
        assert!(
            lease.fence > last,
            "round {round}: {} after {last}",
            lease.fence
        );
        last = lease.fence;
        match round % 3 {
            0 => assert!(lock.release(&lease).await.unwrap()),
            // The lock key deleted behind the holder's back (eviction).
            1 => raw_del(&redis, deployment, "lease", "f").await,
            // The fence counter lost too (FLUSHALL, restart): the clock
            // floor keeps fences growing.
            _ => {
                raw_del(&redis, deployment, "lease", "f").await;
                raw_del(&redis, deployment, "fence", "f").await;
            }
        }
    }
    // And after a lapse.
    let lease = lock.try_acquire(&key("f"), ttl).await.unwrap().unwrap();
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    let after = lock.try_acquire(&key("f"), ttl).await.unwrap().unwrap();
    assert!(after.fence > lease.fence);
    delete_prefix(deployment, &redis.config().key_prefix).await;
}

async fn extension_keeps_it(deployment: Deployment) {
    let redis = backend(deployment, "extend").await;
    let (lock, other) = (redis.lock(), backend_like(&redis).await.lock());
    let ttl = Duration::from_millis(300);
    let lease = lock.try_acquire(&key("e"), ttl).await.unwrap().unwrap();
    for _ in 0..4 {
        tokio::time::sleep(ttl / 2).await;
        assert!(lock.extend(&lease, ttl).await.unwrap());
    }
    // 4 × ttl/2 = 2 initial TTLs later it is still held.
    assert!(other.try_acquire(&key("e"), ttl).await.unwrap().is_none());
    assert!(lock.release(&lease).await.unwrap());
    assert!(other.try_acquire(&key("e"), ttl).await.unwrap().is_some());
    delete_prefix(deployment, &redis.config().key_prefix).await;
}

async fn exclusion(deployment: Deployment) {
    let redis = backend(deployment, "exclusion").await;
    // Four "processes", 50 acquirers each.
    let mut locks = Vec::new();
    for _ in 0..4 {
        locks.push(backend_like(&redis).await.lock());
    }
    let inside = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let entries = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..200 {
        let lock = locks[i % 4].clone();
        let (inside, most, entries) = (inside.clone(), most.clone(), entries.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..3 {
                let Some(lease) = lock
                    .try_acquire(&key("x"), Duration::from_secs(10))
                    .await
                    .unwrap()
                else {
                    tokio::task::yield_now().await;
                    continue;
                };
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                entries.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
                inside.fetch_sub(1, Ordering::SeqCst);
                assert!(lock.release(&lease).await.unwrap(), "released by its owner");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(most.load(Ordering::SeqCst), 1, "never two holders at once");
    assert!(entries.load(Ordering::SeqCst) >= 1);
    delete_prefix(deployment, &redis.config().key_prefix).await;
}

on_both!(
    a_non_owner_cannot_release_or_extend_and_a_stale_release_keeps_the_new_holder,
    cluster_a_non_owner_cannot_release_or_extend_and_a_stale_release_keeps_the_new_holder,
    owner_checks
);
on_both!(
    fences_strictly_increase_across_releases_lapses_and_deleted_keys,
    cluster_fences_strictly_increase_across_releases_lapses_and_deleted_keys,
    fences_increase
);
on_both!(
    extension_keeps_a_lease_alive_past_its_initial_ttl,
    cluster_extension_keeps_a_lease_alive_past_its_initial_ttl,
    extension_keeps_it
);
on_both!(
    two_hundred_concurrent_acquirers_never_hold_at_once,
    cluster_two_hundred_concurrent_acquirers_never_hold_at_once,
    exclusion
);
