//! Conformance suite of [`RefreshLock`]: one check per clause of its
//! `# Contract`.
//!
//! Checks, in the order they run: `acquire_excludes_a_second_holder`,
//! `release_is_owner_checked`, `extend_is_owner_checked`,
//! `fences_increase_across_acquisitions`,
//! `a_lapsed_lease_can_be_taken_and_the_old_owner_cannot_act`,
//! `extend_of_a_lapsed_lease_fails_and_does_not_revive_it`,
//! `extension_keeps_the_lease_past_its_first_ttl`,
//! `concurrent_acquire_has_one_winner`, `keys_are_independent`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::TimeHarness;
use super::harness::{Checks, check, past};
use crate::domain::RefreshKey;
use crate::ports::{Lease, RefreshLock};

type Lock = Arc<dyn RefreshLock>;

/// Runs every check (listed in the module docs), each on a fresh lock from
/// `make` and under its own timeout; `time` lets leases lapse. Needs a tokio
/// runtime with time enabled.
///
/// # Panics
/// On the first violated contract clause, with a message
/// `refresh_lock_suite: <check>: <clause>`; with
/// `refresh_lock_suite: <check> timed out` when a call never returns.
pub async fn refresh_lock_suite<F, Fut>(make: F, time: &dyn TimeHarness)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn RefreshLock>>,
{
    let ttl = time.short_ttl();
    let checks = Checks::with_time("refresh_lock_suite", time);
    check!(checks, acquire_excludes_a_second_holder(make().await, ttl));
    check!(checks, release_is_owner_checked(make().await, ttl));
    check!(checks, extend_is_owner_checked(make().await, ttl));
    check!(
        checks,
        fences_increase_across_acquisitions(make().await, ttl, time)
    );
    check!(
        checks,
        a_lapsed_lease_can_be_taken_and_the_old_owner_cannot_act(make().await, ttl, time)
    );
    check!(
        checks,
        extend_of_a_lapsed_lease_fails_and_does_not_revive_it(make().await, ttl, time)
    );
    check!(
        checks,
        extension_keeps_the_lease_past_its_first_ttl(make().await, ttl, time)
    );
    check!(checks, concurrent_acquire_has_one_winner(make().await, ttl));
    check!(checks, keys_are_independent(make().await, ttl));
}

fn key(name: &str) -> RefreshKey {
    RefreshKey::from_raw(format!("conformance:account:{name}"))
}

/// Takes a lease that must be free.
async fn held(lock: &Lock, key: &RefreshKey, ttl: Duration) -> Lease {
    lock.try_acquire(key, ttl)
        .await
        .expect("try_acquire")
        .unwrap_or_else(|| panic!("the lease of {} must be free", key.as_str()))
}

/// Whether someone holds `key` (probes by acquiring it, so call it only
/// when the answer is meant to be "yes", or on a key no longer needed).
async fn is_held(lock: &Lock, key: &RefreshKey, ttl: Duration) -> bool {
    lock.try_acquire(key, ttl)
        .await
        .expect("try_acquire")
        .is_none()
}

async fn acquire_excludes_a_second_holder(lock: Lock, ttl: Duration) {
    let k = key("a");
    let lease = held(&lock, &k, ttl).await;
    assert_eq!(lease.key, k, "the lease names its key");
    assert_eq!(lease.ttl, ttl, "the lease carries its ttl");
    assert!(is_held(&lock, &k, ttl).await, "a second acquire gets None");
    assert!(
        lock.release(&lease).await.expect("release"),
        "the holder releases"
    );
    assert!(!is_held(&lock, &k, ttl).await, "free after release");
}

async fn release_is_owner_checked(lock: Lock, ttl: Duration) {
    let k = key("b");
    let first = held(&lock, &k, ttl).await;
    assert!(
        lock.release(&first).await.expect("release"),
        "the owner releases"
    );
    let second = held(&lock, &k, ttl).await;
    assert!(
        !lock.release(&first).await.expect("release"),
        "a stale owner cannot release"
    );
    assert!(
        is_held(&lock, &k, ttl).await,
        "the second lease survives the stale release"
    );
    assert!(
        lock.release(&second).await.expect("release"),
        "the second owner releases"
    );
}

async fn extend_is_owner_checked(lock: Lock, ttl: Duration) {
    let k = key("c");
    let first = held(&lock, &k, ttl).await;
    assert!(
        lock.extend(&first, ttl).await.expect("extend"),
        "the owner extends"
    );
    lock.release(&first).await.expect("release");
    let second = held(&lock, &k, ttl).await;
    assert!(
        !lock.extend(&first, ttl).await.expect("extend"),
        "a stale owner cannot extend"
    );
    assert!(
        lock.release(&second).await.expect("release"),
        "the second lease is still its owner's"
    );
}

async fn fences_increase_across_acquisitions(lock: Lock, ttl: Duration, time: &dyn TimeHarness) {
    let k = key("d");
    let mut last = 0;
    for round in 0..3 {
        let lease = held(&lock, &k, ttl).await;
        assert!(
            lease.fence > last,
            "round {round}: fence {} after {last}",
            lease.fence
        );
        last = lease.fence;
        if round == 1 {
            time.advance(past(ttl)).await;
        } else {
            lock.release(&lease).await.expect("release");
        }
    }
}

async fn a_lapsed_lease_can_be_taken_and_the_old_owner_cannot_act(
    lock: Lock,
    ttl: Duration,
    time: &dyn TimeHarness,
) {
    let k = key("e");
    let old = held(&lock, &k, ttl).await;
    time.advance(past(ttl)).await;
    let new = held(&lock, &k, ttl).await;
    assert_ne!(old.owner, new.owner, "the new holder has a fresh owner");
    assert!(
        !lock.extend(&old, ttl).await.expect("extend"),
        "the old owner cannot extend"
    );
    assert!(
        !lock.release(&old).await.expect("release"),
        "the old owner cannot release"
    );
    assert!(is_held(&lock, &k, ttl).await, "the new lease is still held");
}

async fn extend_of_a_lapsed_lease_fails_and_does_not_revive_it(
    lock: Lock,
    ttl: Duration,
    time: &dyn TimeHarness,
) {
    // Nobody took the key in between: a lapsed lease is lost all the same.
    let k = key("i");
    let lapsed = held(&lock, &k, ttl).await;
    time.advance(past(ttl)).await;
    assert!(
        !lock.extend(&lapsed, ttl).await.expect("extend"),
        "extend of a lapsed lease returns Ok(false)"
    );
    let next = lock.try_acquire(&k, ttl).await.expect("try_acquire");
    assert!(
        next.is_some(),
        "the failed extend did not revive the lapsed lease"
    );
    assert!(
        !lock.release(&lapsed).await.expect("release"),
        "the lapsed owner cannot release its successor"
    );
}

async fn extension_keeps_the_lease_past_its_first_ttl(
    lock: Lock,
    ttl: Duration,
    time: &dyn TimeHarness,
) {
    let k = key("f");
    let lease = held(&lock, &k, ttl).await;
    time.advance(ttl / 2).await;
    assert!(
        lock.extend(&lease, ttl).await.expect("extend"),
        "the owner extends"
    );
    time.advance(ttl * 3 / 4).await;
    assert!(
        is_held(&lock, &k, ttl).await,
        "held 1.25 ttl after acquiring, 0.75 ttl after the extend"
    );
    assert!(
        lock.release(&lease).await.expect("release"),
        "still its owner's"
    );
}

async fn concurrent_acquire_has_one_winner(lock: Lock, ttl: Duration) {
    let k = key("g");
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (lock, k) = (Arc::clone(&lock), k.clone());
            tokio::spawn(async move { lock.try_acquire(&k, ttl).await })
        })
        .collect();
    let mut winners = 0;
    for t in tasks {
        winners += usize::from(t.await.expect("join").expect("try_acquire").is_some());
    }
    assert_eq!(winners, 1, "32 concurrent acquirers of a free key: winners");
}

async fn keys_are_independent(lock: Lock, ttl: Duration) {
    let first = held(&lock, &key("h1"), ttl).await;
    let second = held(&lock, &key("h2"), ttl).await;
    assert!(
        lock.release(&first).await.expect("release"),
        "releasing one key"
    );
    assert!(
        is_held(&lock, &key("h2"), ttl).await,
        "leaves the other held"
    );
    assert!(
        lock.release(&second).await.expect("release"),
        "the other is still its owner's"
    );
}
