//! Conformance suite of [`TokenCache`]: one check per clause of its
//! `# Contract`.
//!
//! Checks, in the order they run: `miss_is_none_not_error`,
//! `put_then_get_round_trips`, `put_never_replaces_a_newer_version`,
//! `invalidate_removes`, `entries_lapse_after_their_ttl`,
//! `a_subscriber_sees_the_next_publish_of_its_key`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::TimeHarness;
use super::fixtures::at;
use super::harness::{Checks, check, past};
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

/// Runs every check (listed in the module docs), each on a fresh cache from
/// `make` and under its own timeout; `time` lets TTLs pass. Needs a tokio
/// runtime with time enabled.
///
/// # Panics
/// On the first violated contract clause, with a message
/// `token_cache_suite: <check>: <clause>`; with
/// `token_cache_suite: <check> timed out` when a call never returns.
pub async fn token_cache_suite<F, Fut>(make: F, time: &dyn TimeHarness)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn TokenCache>>,
{
    let ttl = time.short_ttl();
    let checks = Checks::with_time("token_cache_suite", time);
    check!(checks, miss_is_none_not_error(make().await));
    check!(checks, put_then_get_round_trips(make().await, ttl));
    check!(
        checks,
        put_never_replaces_a_newer_version(make().await, ttl)
    );
    check!(checks, invalidate_removes(make().await, ttl));
    check!(
        checks,
        entries_lapse_after_their_ttl(make().await, ttl, time)
    );
    check!(
        checks,
        a_subscriber_sees_the_next_publish_of_its_key(make().await)
    );
}

async fn miss_is_none_not_error(cache: Arc<dyn TokenCache>) {
    assert!(
        cache.get(&key("a")).await.expect("get").is_none(),
        "a miss is Ok(None)"
    );
}

async fn put_then_get_round_trips(cache: Arc<dyn TokenCache>, ttl: Duration) {
    let mut t = token("at-1", 1);
    t.expires_at = Some(at(0));
    assert_eq!(
        cache.put(&key("b"), &t, ttl).await.expect("put"),
        PutOutcome::Stored,
        "a put of a new key is Stored"
    );
    assert_eq!(
        cache.get(&key("b")).await.expect("get"),
        Some(t),
        "get returns the token as put"
    );
}

async fn put_never_replaces_a_newer_version(cache: Arc<dyn TokenCache>, ttl: Duration) {
    let k = key("c");
    cache.put(&k, &token("at-5", 5), ttl).await.expect("put");
    let outcome = cache.put(&k, &token("at-4", 4), ttl).await.expect("put");
    assert_eq!(
        outcome,
        PutOutcome::Superseded { cached_version: 5 },
        "an older version is superseded"
    );
    assert_eq!(
        cache.get(&k).await.expect("get"),
        Some(token("at-5", 5)),
        "the newer token is kept"
    );
    assert_eq!(
        cache.put(&k, &token("at-5b", 5), ttl).await.expect("put"),
        PutOutcome::Stored,
        "an equal version replaces"
    );
    assert_eq!(
        cache.put(&k, &token("at-6", 6), ttl).await.expect("put"),
        PutOutcome::Stored,
        "a newer version replaces"
    );
}

async fn invalidate_removes(cache: Arc<dyn TokenCache>, ttl: Duration) {
    let k = key("d");
    cache.put(&k, &token("at-1", 1), ttl).await.expect("put");
    cache.invalidate(&k).await.expect("invalidate");
    assert!(
        cache.get(&k).await.expect("get").is_none(),
        "a get after invalidate misses"
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
    time.advance(past(ttl)).await;
    assert!(
        cache.get(&k).await.expect("get").is_none(),
        "a get after the ttl misses"
    );
    assert_eq!(
        cache.put(&k, &token("at-0", 0), ttl).await.expect("put"),
        PutOutcome::Stored,
        "a lapsed newer version does not block"
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
        .expect("a notice arrives within 5 s of the publish");
    assert_eq!(got, Some(7), "own key's version, not another key's");
}
