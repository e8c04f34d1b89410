//! [`DbLeaseLock`]: core's [`RefreshLock`] as a row per key in
//! `refresh_leases`, judged by the database's clock.

use std::time::Duration;

use async_trait::async_trait;
use sea_orm::TransactionTrait;

use crate::db::{Db, column, exec, millis, query_one};
use crate::error::storage_error;
use refresh_core::{Lease, LeaseOwner, RefreshKey, RefreshLock, StorageError};

/// The database lease: the durable layer of `LockStrategy::stacked`/
/// `layered` and the only lock of the embedded default.
///
/// - **Acquire** is one statement: insert the key's row, or take over a row
///   whose lease lapsed by the database's clock, bumping its fence
///   (`INSERT … ON CONFLICT (lease_key) DO UPDATE … WHERE
///   refresh_leases.expires_at <= now RETURNING fence`). Two acquirers
///   cannot both win: the database serializes the upsert of one row.
/// - **Extend** and **release** are `UPDATE … WHERE lease_key = ? AND owner
///   = ? AND expires_at > now`: only the holder of a live lease acts.
/// - **Expiry** is computed and compared with the database's clock
///   (PostgreSQL `statement_timestamp()`, SQLite `julianday('now')`), so the
///   clocks of the client processes do not matter.
/// - **Fences** only grow: rows are never deleted, a release clears the
///   owner and keeps the fence.
#[derive(Clone)]
pub struct DbLeaseLock {
    db: Db,
}

impl std::fmt::Debug for DbLeaseLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbLeaseLock")
            .field("backend", &self.db.dialect().0)
            .finish()
    }
}

impl DbLeaseLock {
    pub(crate) fn new(db: Db) -> Self {
        Self { db }
    }

    /// MySQL (no `RETURNING`): the same step as a transaction.
    async fn acquire_in_transaction(
        &self,
        key: &RefreshKey,
        owner: &LeaseOwner,
        ttl: Duration,
    ) -> Result<Option<u64>, StorageError> {
        const OP: &str = "try_acquire";
        let dialect = self.db.dialect();
        let txn = self
            .db
            .conn()
            .begin()
            .await
            .map_err(|e| storage_error(OP, e))?;
        let ensure = "INSERT INTO refresh_leases (lease_key, owner, fence, expires_at) \
                      VALUES ($1, NULL, 0, 0) ON DUPLICATE KEY UPDATE lease_key = lease_key";
        exec(&txn, dialect, OP, ensure, vec![key.as_str().into()]).await?;
        let take = "UPDATE refresh_leases SET owner = $1, fence = fence + 1, expires_at = {now} + $2 \
                    WHERE lease_key = $3 AND expires_at <= {now}";
        let values = vec![owner.as_str().into(), millis(ttl), key.as_str().into()];
        let fence = if exec(&txn, dialect, OP, take, values).await? == 1 {
            let read = "SELECT fence FROM refresh_leases WHERE lease_key = $1";
            let row = query_one(&txn, dialect, OP, read, vec![key.as_str().into()]).await?;
            row.map(|row| column::<i64>(&row, OP, "fence"))
                .transpose()?
        } else {
            None
        };
        txn.commit().await.map_err(|e| storage_error(OP, e))?;
        Ok(fence.map(|f| u64::try_from(f).unwrap_or_default()))
    }
}

#[async_trait]
impl RefreshLock for DbLeaseLock {
    fn name(&self) -> &'static str {
        "database"
    }

    async fn try_acquire(
        &self,
        key: &RefreshKey,
        ttl: Duration,
    ) -> Result<Option<Lease>, StorageError> {
        const OP: &str = "try_acquire";
        let owner = LeaseOwner::random();
        let fence = if self.db.dialect().has_returning() {
            let sql = "INSERT INTO refresh_leases (lease_key, owner, fence, expires_at) \
                       VALUES ($1, $2, 1, {now} + $3) \
                       ON CONFLICT (lease_key) DO UPDATE SET owner = excluded.owner, \
                       fence = refresh_leases.fence + 1, expires_at = excluded.expires_at \
                       WHERE refresh_leases.expires_at <= {now} \
                       RETURNING fence";
            let values = vec![key.as_str().into(), owner.as_str().into(), millis(ttl)];
            let row = query_one(self.db.conn(), self.db.dialect(), OP, sql, values).await?;
            row.map(|row| column::<i64>(&row, OP, "fence"))
                .transpose()?
                .map(|f| u64::try_from(f).unwrap_or_default())
        } else {
            self.acquire_in_transaction(key, &owner, ttl).await?
        };
        Ok(fence.map(|fence| Lease {
            key: key.clone(),
            owner,
            fence,
            ttl,
        }))
    }

    async fn extend(&self, lease: &Lease, ttl: Duration) -> Result<bool, StorageError> {
        let sql = "UPDATE refresh_leases SET expires_at = {now} + $1 \
                   WHERE lease_key = $2 AND owner = $3 AND expires_at > {now}";
        let values = vec![
            millis(ttl),
            lease.key.as_str().into(),
            lease.owner.as_str().into(),
        ];
        Ok(exec(self.db.conn(), self.db.dialect(), "extend", sql, values).await? == 1)
    }

    async fn release(&self, lease: &Lease) -> Result<bool, StorageError> {
        let sql = "UPDATE refresh_leases SET owner = NULL, expires_at = 0 \
                   WHERE lease_key = $1 AND owner = $2 AND expires_at > {now}";
        let values = vec![lease.key.as_str().into(), lease.owner.as_str().into()];
        Ok(exec(self.db.conn(), self.db.dialect(), "release", sql, values).await? == 1)
    }
}
