//! Fault-injecting wrappers around any backend.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::FaultPlan;
use crate::domain::{Account, AccountId, Credentials, RefreshKey};
use crate::error::StorageError;
use crate::ports::{
    AccountRepository, CachedToken, CasExpectation, CasOutcome, Claim, ClaimAcquire, ClaimId,
    ClaimKey, ClaimStore, DueCursor, DuePage, Lease, PutOutcome, RefreshLock, RefreshNotice,
    TokenCache,
};

/// Wraps a backend; each call first consults [`Faulty::faults`]. Operation
/// names are the trait method names (`get`, `compare_and_set_credentials`,
/// `try_acquire`, ...).
pub struct Faulty<T: ?Sized> {
    /// The scripted failures and call counts.
    pub faults: FaultPlan,
    inner: Arc<T>,
}

impl<T: ?Sized> Faulty<T> {
    /// Wraps `inner` with no failures scripted.
    pub fn new(inner: Arc<T>) -> Self {
        Self {
            faults: FaultPlan::default(),
            inner,
        }
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &Arc<T> {
        &self.inner
    }
}

impl<T: ?Sized> std::fmt::Debug for Faulty<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faulty")
            .field("faults", &self.faults)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl<T: AccountRepository + ?Sized> AccountRepository for Faulty<T> {
    async fn get(&self, id: AccountId) -> Result<Option<Account>, StorageError> {
        self.faults.check("get")?;
        self.inner.get(id).await
    }

    async fn insert(&self, account: Account) -> Result<Account, StorageError> {
        self.faults.check("insert")?;
        self.inner.insert(account).await
    }

    async fn compare_and_set_credentials(
        &self,
        id: AccountId,
        expected: CasExpectation,
        credentials: &Credentials,
    ) -> Result<CasOutcome, StorageError> {
        self.faults.check("compare_and_set_credentials")?;
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
        self.faults.check("list_due")?;
        self.inner.list_due(before, after, limit).await
    }

    async fn set_error(
        &self,
        id: AccountId,
        observed_version: u64,
        message: &str,
    ) -> Result<bool, StorageError> {
        self.faults.check("set_error")?;
        self.inner.set_error(id, observed_version, message).await
    }

    async fn clear_error(&self, id: AccountId) -> Result<(), StorageError> {
        self.faults.check("clear_error")?;
        self.inner.clear_error(id).await
    }

    async fn clear_temp_unschedulable(&self, id: AccountId) -> Result<(), StorageError> {
        self.faults.check("clear_temp_unschedulable")?;
        self.inner.clear_temp_unschedulable(id).await
    }
}

#[async_trait]
impl<T: RefreshLock + ?Sized> RefreshLock for Faulty<T> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn try_acquire(
        &self,
        key: &RefreshKey,
        ttl: Duration,
    ) -> Result<Option<Lease>, StorageError> {
        self.faults.check("try_acquire")?;
        self.inner.try_acquire(key, ttl).await
    }

    async fn extend(&self, lease: &Lease, ttl: Duration) -> Result<bool, StorageError> {
        self.faults.check("extend")?;
        self.inner.extend(lease, ttl).await
    }

    async fn release(&self, lease: &Lease) -> Result<bool, StorageError> {
        self.faults.check("release")?;
        self.inner.release(lease).await
    }
}

#[async_trait]
impl<T: TokenCache + ?Sized> TokenCache for Faulty<T> {
    async fn get(&self, key: &RefreshKey) -> Result<Option<CachedToken>, StorageError> {
        self.faults.check("get")?;
        self.inner.get(key).await
    }

    async fn put(
        &self,
        key: &RefreshKey,
        token: &CachedToken,
        ttl: Duration,
    ) -> Result<PutOutcome, StorageError> {
        self.faults.check("put")?;
        self.inner.put(key, token, ttl).await
    }

    async fn invalidate(&self, key: &RefreshKey) -> Result<(), StorageError> {
        self.faults.check("invalidate")?;
        self.inner.invalidate(key).await
    }

    async fn publish_refreshed(&self, key: &RefreshKey, version: u64) -> Result<(), StorageError> {
        self.faults.check("publish_refreshed")?;
        self.inner.publish_refreshed(key, version).await
    }

    async fn subscribe_refreshed(&self, key: &RefreshKey) -> Result<RefreshNotice, StorageError> {
        self.faults.check("subscribe_refreshed")?;
        self.inner.subscribe_refreshed(key).await
    }
}

#[async_trait]
impl<T: ClaimStore + ?Sized> ClaimStore for Faulty<T> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn acquire(
        &self,
        key: &ClaimKey,
        id: &ClaimId,
        account: AccountId,
        base_version: u64,
        ttl: Duration,
    ) -> Result<ClaimAcquire, StorageError> {
        self.faults.check("acquire")?;
        self.inner
            .acquire(key, id, account, base_version, ttl)
            .await
    }

    async fn get(&self, key: &ClaimKey) -> Result<Option<Claim>, StorageError> {
        self.faults.check("get")?;
        self.inner.get(key).await
    }

    async fn extend(
        &self,
        key: &ClaimKey,
        id: &ClaimId,
        ttl: Duration,
    ) -> Result<bool, StorageError> {
        self.faults.check("extend")?;
        self.inner.extend(key, id, ttl).await
    }

    async fn quarantine(
        &self,
        key: &ClaimKey,
        id: &ClaimId,
        ttl: Duration,
    ) -> Result<bool, StorageError> {
        self.faults.check("quarantine")?;
        self.inner.quarantine(key, id, ttl).await
    }

    async fn save_answer(
        &self,
        key: &ClaimKey,
        id: &ClaimId,
        answer: &Credentials,
    ) -> Result<bool, StorageError> {
        self.faults.check("save_answer")?;
        self.inner.save_answer(key, id, answer).await
    }

    async fn mark_consumed(
        &self,
        key: &ClaimKey,
        id: &ClaimId,
        keep: Duration,
    ) -> Result<bool, StorageError> {
        self.faults.check("mark_consumed")?;
        self.inner.mark_consumed(key, id, keep).await
    }

    async fn remove(&self, key: &ClaimKey, id: &ClaimId) -> Result<bool, StorageError> {
        self.faults.check("remove")?;
        self.inner.remove(key, id).await
    }

    async fn purge(&self, limit: usize) -> Result<u64, StorageError> {
        self.faults.check("purge")?;
        self.inner.purge(limit).await
    }
}
