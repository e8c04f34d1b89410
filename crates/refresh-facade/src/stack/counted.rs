//! Counting wrappers around the repository and the shared token cache, so
//! an operator (and a test) can see which stores a code path touches: the
//! warm token read must touch none.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use refresh_core::plugin::*;

/// Calls made to the stores, by store and operation.
#[derive(Debug, Default)]
pub struct StoreCalls {
    counters: [AtomicU64; OPS.len()],
}

/// Every (store, operation) pair counted, in [`StoreCalls::snapshot`]
/// order.
const OPS: [(&str, &str); 12] = [
    ("database", "get"),
    ("database", "insert"),
    ("database", "compare_and_set"),
    ("database", "list_due"),
    ("database", "set_error"),
    ("database", "clear_error"),
    ("database", "clear_temp_unschedulable"),
    ("redis", "get"),
    ("redis", "put"),
    ("redis", "invalidate"),
    ("redis", "publish"),
    ("redis", "subscribe"),
];

#[derive(Clone, Copy)]
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
enum Op {
    DbGet,
    DbInsert,
    DbCas,
    DbListDue,
    DbSetError,
    DbClearError,
    DbClearTemp,
    CacheGet,
    CachePut,
    CacheInvalidate,
    CachePublish,
    CacheSubscribe,
}

impl StoreCalls {
    fn bump(&self, op: Op) {
        self.counters[op as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// `(store, operation, calls)` for every counted pair; `store` is
    /// `database` (the account repository) or `redis` (the shared cache).
    pub fn snapshot(&self) -> Vec<(&'static str, &'static str, u64)> {
        OPS.iter()
            .zip(&self.counters)
            .map(|(&(store, op), n)| (store, op, n.load(Ordering::Relaxed)))
            .collect()
    }

    /// Calls made to `store` so far, all operations.
    pub fn total(&self, store: &str) -> u64 {
        self.snapshot()
            .into_iter()
            .filter(|(s, _, _)| *s == store)
            .map(|(_, _, n)| n)
            .sum()
    }
}

/// An [`AccountRepository`] that counts its calls.
pub(crate) struct CountedRepository {
    pub(crate) inner: Arc<dyn AccountRepository>,
    pub(crate) calls: Arc<StoreCalls>,
}

#[async_trait]
impl AccountRepository for CountedRepository {
    async fn get(&self, id: AccountId) -> Result<Option<Account>, StorageError> {
        self.calls.bump(Op::DbGet);
        self.inner.get(id).await
    }

    async fn insert(&self, account: Account) -> Result<Account, StorageError> {
        self.calls.bump(Op::DbInsert);
        self.inner.insert(account).await
    }

    async fn compare_and_set_credentials(
        &self,
        id: AccountId,
        expected: CasExpectation,
        credentials: &Credentials,
    ) -> Result<CasOutcome, StorageError> {
        self.calls.bump(Op::DbCas);
        self.inner
            .compare_and_set_credentials(id, expected, credentials)
            .await
    }

    async fn list_due(
        &self,
        before: DateTime<Utc>,
        after: Option<DueCursor>,
        limit: usize,
    ) -> Result<DuePage, StorageError> {
        self.calls.bump(Op::DbListDue);
        self.inner.list_due(before, after, limit).await
    }

    async fn set_error(
        &self,
        id: AccountId,
        observed_version: u64,
        message: &str,
    ) -> Result<bool, StorageError> {
        self.calls.bump(Op::DbSetError);
        self.inner.set_error(id, observed_version, message).await
    }

    async fn clear_error(&self, id: AccountId) -> Result<(), StorageError> {
        self.calls.bump(Op::DbClearError);
        self.inner.clear_error(id).await
    }

    async fn clear_temp_unschedulable(&self, id: AccountId) -> Result<(), StorageError> {
        self.calls.bump(Op::DbClearTemp);
        self.inner.clear_temp_unschedulable(id).await
    }
}

/// A [`TokenCache`] that counts its calls.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) struct CountedCache {
    pub(crate) inner: Arc<dyn TokenCache>,
    pub(crate) calls: Arc<StoreCalls>,
}

#[async_trait]
impl TokenCache for CountedCache {
    async fn get(&self, key: &RefreshKey) -> Result<Option<CachedToken>, StorageError> {
        self.calls.bump(Op::CacheGet);
        self.inner.get(key).await
    }

    async fn put(
        &self,
        key: &RefreshKey,
        token: &CachedToken,
        ttl: Duration,
    ) -> Result<PutOutcome, StorageError> {
        self.calls.bump(Op::CachePut);
        self.inner.put(key, token, ttl).await
    }

    async fn invalidate(&self, key: &RefreshKey) -> Result<(), StorageError> {
        self.calls.bump(Op::CacheInvalidate);
        self.inner.invalidate(key).await
    }

    async fn publish_refreshed(&self, key: &RefreshKey, version: u64) -> Result<(), StorageError> {
        self.calls.bump(Op::CachePublish);
        self.inner.publish_refreshed(key, version).await
    }

    async fn subscribe_refreshed(&self, key: &RefreshKey) -> Result<RefreshNotice, StorageError> {
        self.calls.bump(Op::CacheSubscribe);
        self.inner.subscribe_refreshed(key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use refresh_core::memory::{InMemoryAccountRepository, InMemoryTokenCache};

    #[tokio::test]
    async fn every_call_is_counted_under_its_store_and_operation() {
        let calls = Arc::new(StoreCalls::default());
        let repo = CountedRepository {
            inner: Arc::new(InMemoryAccountRepository::new()),
            calls: Arc::clone(&calls),
        };
        let cache = CountedCache {
            inner: Arc::new(InMemoryTokenCache::default()),
            calls: Arc::clone(&calls),
        };
        assert!(repo.get(AccountId(1)).await.unwrap().is_none());
        let key = RefreshKey::for_account(&Platform::Anthropic, AccountId(1));
        assert!(cache.get(&key).await.unwrap().is_none());
        cache.invalidate(&key).await.unwrap();
        assert_eq!(calls.total("database"), 1);
        assert_eq!(calls.total("redis"), 2);
        let snapshot = calls.snapshot();
        assert!(snapshot.contains(&("database", "get", 1)));
        assert!(snapshot.contains(&("redis", "invalidate", 1)));
    }
}
