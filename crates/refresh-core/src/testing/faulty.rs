//! Fault-injecting wrappers around any backend.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::FaultPlan;
use crate::domain::{Account, AccountId, Credentials, RefreshKey};
use crate::error::StorageError;
use crate::ports::{
    AccountRepository, CachedToken, CasOutcome, DueCursor, Lease, PutOutcome, RecoveryRecord,
    RecoveryStore, RefreshLock, RefreshNotice, TokenCache,
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
        expected_version: u64,
        credentials: &Credentials,
    ) -> Result<CasOutcome, StorageError> {
        self.faults.check("compare_and_set_credentials")?;
        self.inner
            .compare_and_set_credentials(id, expected_version, credentials)
            .await
    }

    async fn list_due(
        &self,
        before: DateTime<Utc>,
        after: Option<DueCursor>,
        limit: usize,
    ) -> Result<Vec<Account>, StorageError> {
        self.faults.check("list_due")?;
        self.inner.list_due(before, after, limit).await
    }

    async fn set_error(&self, id: AccountId, message: &str) -> Result<(), StorageError> {
        self.faults.check("set_error")?;
        self.inner.set_error(id, message).await
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
impl<T: RecoveryStore + ?Sized> RecoveryStore for Faulty<T> {
    async fn save(&self, record: &RecoveryRecord) -> Result<(), StorageError> {
        self.faults.check("save")?;
        self.inner.save(record).await
    }

    async fn load(&self, id: AccountId) -> Result<Option<RecoveryRecord>, StorageError> {
        self.faults.check("load")?;
        self.inner.load(id).await
    }

    async fn remove(&self, id: AccountId, base_version: u64) -> Result<(), StorageError> {
        self.faults.check("remove")?;
        self.inner.remove(id, base_version).await
    }
}
