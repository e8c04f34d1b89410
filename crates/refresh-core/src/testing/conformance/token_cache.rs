//! Conformance suite of [`TokenCache`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::TimeHarness;
use crate::domain::RefreshKey;
use crate::ports::{CachedToken, PutOutcome, TokenCache};

fn key(name: &str) -> RefreshKey {
    RefreshKey::from_raw(format!("conformance:account:{name}"))
}

fn token(text: &str, version: u64) -> CachedToken {
    CachedToken {
        access_token: text.into(),
        version,
        expires_at: None,
    }
}

/// Runs every check, each on a fresh cache from `make`; `time` lets TTLs
/// pass.
///
/// # Panics
/// On the first violated contract clause, naming the check.
pub async fn token_cache_suite<F, Fut>(make: F, time: &dyn TimeHarness)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn TokenCache>>,
{
    let ttl = time.short_ttl();
    miss_is_none_not_error(make().await).await;
    put_then_get_round_trips(make().await, ttl).await;
    put_never_replaces_a_newer_version(make().await, ttl).await;
    invalidate_removes(make().await, ttl).await;
    entries_lapse_after_their_ttl(make().await, ttl, time).await;
    a_subscriber_sees_the_next_publish_of_its_key(make().await).await;
}

async fn miss_is_none_not_error(cache: Arc<dyn TokenCache>) {
    assert!(
        cache.get(&key("a")).await.expect("get").is_none(),
        "miss_is_none_not_error"
    );
}

async fn put_then_get_round_trips(cache: Arc<dyn TokenCache>, ttl: Duration) {
    let mut t = token("at-1", 1);
    t.expires_at = chrono::DateTime::from_timestamp(1_893_456_000, 0);
    assert_eq!(
        cache.put(&key("b"), &t, ttl).await.expect("put"),
        PutOutcome::Stored,
        "put_then_get_round_trips: stored"
    );
    assert_eq!(
        cache.get(&key("b")).await.expect("get"),
        Some(t),
        "put_then_get_round_trips"
    );
}

async fn put_never_replaces_a_newer_version(cache: Arc<dyn TokenCache>, ttl: Duration) {
    let k = key("c");
    cache.put(&k, &token("at-5", 5), ttl).await.expect("put");
    let outcome = cache.put(&k, &token("at-4", 4), ttl).await.expect("put");
    assert_eq!(
        outcome,
        PutOutcome::Superseded { cached_version: 5 },
        "put_never_replaces_a_newer_version"
    );
    assert_eq!(
        cache.get(&k).await.expect("get"),
        Some(token("at-5", 5)),
        "put_never_replaces_a_newer_version: kept"
    );
    assert_eq!(
        cache.put(&k, &token("at-5b", 5), ttl).await.expect("put"),
        PutOutcome::Stored,
        "put_never_replaces_a_newer_version: equal version replaces"
    );
    assert_eq!(
        cache.put(&k, &token("at-6", 6), ttl).await.expect("put"),
        PutOutcome::Stored,
        "put_never_replaces_a_newer_version: newer replaces"
    );
}

async fn invalidate_removes(cache: Arc<dyn TokenCache>, ttl: Duration) {
    let k = key("d");
    cache.put(&k, &token("at-1", 1), ttl).await.expect("put");
    cache.invalidate(&k).await.expect("invalidate");
    assert!(
        cache.get(&k).await.expect("get").is_none(),
        "invalidate_removes"
    );
    cache
        .invalidate(&k)
        .await
        .expect("invalidate of a missing key is fine");
}

async fn entries_lapse_after_their_ttl(
    cache: Arc<dyn TokenCache>,
    ttl: Duration,
    time: &dyn TimeHarness,
) {
    let k = key("e");
    cache.put(&k, &token("at-1", 1), ttl).await.expect("put");
    time.advance(ttl + Duration::from_millis(50)).await;
    assert!(
        cache.get(&k).await.expect("get").is_none(),
        "entries_lapse_after_their_ttl"
    );
    assert_eq!(
        cache.put(&k, &token("at-0", 0), ttl).await.expect("put"),
        PutOutcome::Stored,
        "entries_lapse_after_their_ttl: a lapsed newer version does not block"
    );
}

async fn a_subscriber_sees_the_next_publish_of_its_key(cache: Arc<dyn TokenCache>) {
    let mine = key("f");
    let notice = cache.subscribe_refreshed(&mine).await.expect("subscribe");
    cache
        .publish_refreshed(&key("other"), 99)
        .await
        .expect("publish other");
    cache.publish_refreshed(&mine, 7).await.expect("publish");
    let got = tokio::time::timeout(Duration::from_secs(5), notice)
        .await
        .expect("a_subscriber_sees_the_next_publish_of_its_key: notice arrives");
    assert_eq!(
        got,
        Some(7),
        "a_subscriber_sees_the_next_publish_of_its_key: own key's version, not another key's"
    );
}
