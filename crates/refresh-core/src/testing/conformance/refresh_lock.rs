//! Conformance suite of [`RefreshLock`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::TimeHarness;
use crate::domain::RefreshKey;
use crate::ports::{Lease, RefreshLock};

/// Takes a lease that must be free.
async fn held(lock: &Arc<dyn RefreshLock>, key: &RefreshKey, ttl: Duration) -> Lease {
    lock.try_acquire(key, ttl)
        .await
        .expect("acquire")
        .expect("the lease is free")
}

fn key(name: &str) -> RefreshKey {
    RefreshKey::from_raw(format!("conformance:account:{name}"))
}

/// Runs every check, each on a fresh lock from `make`; `time` lets leases
/// lapse.
///
/// # Panics
/// On the first violated contract clause, naming the check.
pub async fn refresh_lock_suite<F, Fut>(make: F, time: &dyn TimeHarness)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn RefreshLock>>,
{
    let ttl = time.short_ttl();
    acquire_excludes_a_second_holder(make().await, ttl).await;
    release_is_owner_checked(make().await, ttl).await;
    extend_is_owner_checked(make().await, ttl).await;
    fences_increase_across_acquisitions(make().await, ttl, time).await;
    a_lapsed_lease_can_be_taken_and_the_old_owner_cannot_act(make().await, ttl, time).await;
    extension_keeps_the_lease_past_its_first_ttl(make().await, ttl, time).await;
    concurrent_acquire_has_one_winner(make().await, ttl).await;
    keys_are_independent(make().await, ttl).await;
}

async fn acquire_excludes_a_second_holder(lock: Arc<dyn RefreshLock>, ttl: Duration) {
    let k = key("a");
    let lease = held(&lock, &k, ttl).await;
    assert_eq!(lease.key, k, "acquire_excludes_a_second_holder: key");
    assert!(
        lock.try_acquire(&k, ttl).await.expect("acquire").is_none(),
        "acquire_excludes_a_second_holder"
    );
    assert!(
        lock.release(&lease).await.expect("release"),
        "acquire_excludes_a_second_holder: release"
    );
    assert!(
        lock.try_acquire(&k, ttl).await.expect("acquire").is_some(),
        "acquire_excludes_a_second_holder: free after release"
    );
}

async fn release_is_owner_checked(lock: Arc<dyn RefreshLock>, ttl: Duration) {
    let k = key("b");
    let first = held(&lock, &k, ttl).await;
    assert!(
        lock.release(&first).await.expect("release"),
        "release_is_owner_checked: owner releases"
    );
    let second = held(&lock, &k, ttl).await;
    assert!(
        !lock.release(&first).await.expect("release"),
        "release_is_owner_checked: stale owner cannot release"
    );
    assert!(
        lock.try_acquire(&k, ttl).await.expect("acquire").is_none(),
        "release_is_owner_checked: second lease survives"
    );
    assert!(
        lock.release(&second).await.expect("release"),
        "release_is_owner_checked: second owner releases"
    );
}

async fn extend_is_owner_checked(lock: Arc<dyn RefreshLock>, ttl: Duration) {
    let k = key("c");
    let first = held(&lock, &k, ttl).await;
    assert!(
        lock.extend(&first, ttl).await.expect("extend"),
        "extend_is_owner_checked: owner extends"
    );
    lock.release(&first).await.expect("release");
    let second = held(&lock, &k, ttl).await;
    assert!(
        !lock.extend(&first, ttl).await.expect("extend"),
        "extend_is_owner_checked: stale owner cannot extend"
    );
    lock.release(&second).await.expect("release");
}

async fn fences_increase_across_acquisitions(
    lock: Arc<dyn RefreshLock>,
    ttl: Duration,
    time: &dyn TimeHarness,
) {
    let k = key("d");
    let mut last = 0;
    for round in 0..3 {
        let lease = held(&lock, &k, ttl).await;
        assert!(
            lease.fence > last,
            "fences_increase_across_acquisitions: round {round}"
        );
        last = lease.fence;
        if round == 1 {
            time.advance(ttl + Duration::from_millis(50)).await;
        } else {
            lock.release(&lease).await.expect("release");
        }
    }
}

async fn a_lapsed_lease_can_be_taken_and_the_old_owner_cannot_act(
    lock: Arc<dyn RefreshLock>,
    ttl: Duration,
    time: &dyn TimeHarness,
) {
    let k = key("e");
    let old = held(&lock, &k, ttl).await;
    time.advance(ttl + Duration::from_millis(50)).await;
    let new = lock
        .try_acquire(&k, ttl)
        .await
        .expect("acquire")
        .expect("a_lapsed_lease_can_be_taken: lapsed lease is free");
    assert_ne!(
        old.owner, new.owner,
        "a_lapsed_lease_can_be_taken: fresh owner"
    );
    assert!(
        !lock.extend(&old, ttl).await.expect("extend"),
        "a_lapsed_lease: old owner cannot extend"
    );
    assert!(
        !lock.release(&old).await.expect("release"),
        "a_lapsed_lease: old owner cannot release"
    );
    assert!(
        lock.try_acquire(&k, ttl).await.expect("acquire").is_none(),
        "a_lapsed_lease: new lease still held"
    );
}

async fn extension_keeps_the_lease_past_its_first_ttl(
    lock: Arc<dyn RefreshLock>,
    ttl: Duration,
    time: &dyn TimeHarness,
) {
    let k = key("f");
    let lease = held(&lock, &k, ttl).await;
    time.advance(ttl / 2).await;
    assert!(
        lock.extend(&lease, ttl).await.expect("extend"),
        "extension_keeps_the_lease: extend"
    );
    time.advance(ttl * 3 / 4).await;
    assert!(
        lock.try_acquire(&k, ttl).await.expect("acquire").is_none(),
        "extension_keeps_the_lease_past_its_first_ttl"
    );
    assert!(
        lock.release(&lease).await.expect("release"),
        "extension_keeps_the_lease: still owned"
    );
}

async fn concurrent_acquire_has_one_winner(lock: Arc<dyn RefreshLock>, ttl: Duration) {
    let k = key("g");
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (lock, k) = (Arc::clone(&lock), k.clone());
        tasks.push(tokio::spawn(async move { lock.try_acquire(&k, ttl).await }));
    }
    let mut winners = 0;
    for t in tasks {
        winners += usize::from(t.await.expect("join").expect("acquire").is_some());
    }
    assert_eq!(winners, 1, "concurrent_acquire_has_one_winner");
}

async fn keys_are_independent(lock: Arc<dyn RefreshLock>, ttl: Duration) {
    let a = lock.try_acquire(&key("h1"), ttl).await.expect("acquire");
    let b = lock.try_acquire(&key("h2"), ttl).await.expect("acquire");
    assert!(a.is_some() && b.is_some(), "keys_are_independent");
}
