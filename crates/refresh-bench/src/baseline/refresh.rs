//! Go's RefreshIfNeeded (REFERENCE.md §3.2), defects included.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Result, anyhow};
use refresh_facade::core::ports::RefreshContext;
use refresh_facade::core::{Account, Credentials, Platform, RefreshExecutor, SystemClock};
use sea_orm::DatabaseConnection;

use super::store::RedisStore;
use super::table::{self, GoAccount};

/// What RefreshIfNeeded returns.
pub(crate) enum Refresh {
    /// `SETNX` lost: no account, no error.
    LockHeld,
    /// Not due after the re-read: the fresh account.
    NotRefreshed(GoAccount),
    /// Refreshed and written: the account as written.
    Refreshed(GoAccount),
}

/// The refresh operation shared by the getter and the sweep.
#[derive(Clone)]
pub(crate) struct Baseline {
    pub(crate) db: DatabaseConnection,
    pub(crate) store: RedisStore,
    executor: Arc<dyn RefreshExecutor>,
    /// The per-account in-process mutex of the later Go fix.
    local: Arc<Mutex<HashMap<i64, Arc<tokio::sync::Mutex<()>>>>>,
}

impl Baseline {
    pub(crate) fn new(
        db: DatabaseConnection,
        store: RedisStore,
        executor: Arc<dyn RefreshExecutor>,
    ) -> Self {
        Self {
            db,
            store,
            executor,
            local: Arc::default(),
        }
    }

    /// Go's executor predicate: unknown expiry → not due; due when
    /// `expiry - now < window`.
    pub(crate) fn needs_refresh(account: &GoAccount, window: Duration) -> bool {
        let now = chrono::Utc::now().timestamp();
        account
            .expires_at()
            .is_some_and(|at| at - now < window.as_secs() as i64)
    }

    /// Steps 1-8 of §3.2.
    pub(crate) async fn refresh_if_needed(
        &self,
        snapshot: &GoAccount,
        window: Duration,
    ) -> Result<Refresh> {
        // 1. key (Claude: by id); 2. local mutex.
        let key = RedisStore::key(snapshot.id);
        let mutex = {
            let mut local = self.local.lock().map_err(|_| anyhow!("poisoned"))?;
            Arc::clone(local.entry(snapshot.id).or_default())
        };
        let _local = mutex.lock().await;
        // 3. SET NX EX 30; a store error proceeds unlocked (defect 4).
        let locked = match self.store.try_lock(&key).await {
            Ok(false) => return Ok(Refresh::LockHeld),
            Ok(true) => true,
            Err(_) => false,
        };
        let result = self.locked(snapshot, window).await;
        if locked {
            // Plain DEL (defect 1); errors ignored.
            let _ = self.store.unlock(&key).await;
        }
        result
    }

    async fn locked(&self, snapshot: &GoAccount, window: Duration) -> Result<Refresh> {
        // 4. re-read; Go falls back to the snapshot (defect 6).
        let fresh = match table::get(&self.db, snapshot.id).await {
            Ok(Some(fresh)) => fresh,
            _ => snapshot.clone(),
        };
        // 5. double-check.
        if !Self::needs_refresh(&fresh, window) {
            return Ok(Refresh::NotRefreshed(fresh));
        }
        // 6. the executor on the fresh account.
        let credentials = Credentials::from_map(fresh.credentials.clone());
        let account = Account::oauth(fresh.id, Platform::Anthropic, credentials.clone());
        let token = credentials
            .refresh_token()
            .ok_or_else(|| anyhow!("no refresh token available"))?;
        let ctx = RefreshContext::new(
            token,
            Arc::new(SystemClock),
            tokio::time::Instant::now() + Duration::from_secs(60),
        );
        let issued = self.executor.refresh(&account, &ctx).await?;
        // 7. MergeCredentials, `_token_version` = now ms, full-row update.
        let mut merged = Credentials::merge(Some(&credentials), Some(issued)).into_map();
        merged.insert(
            "_token_version".into(),
            chrono::Utc::now().timestamp_millis().into(),
        );
        let mut written = fresh;
        written.credentials = merged;
        written.updated_at = chrono::Utc::now().timestamp();
        table::update(&self.db, &written).await?;
        Ok(Refresh::Refreshed(written))
    }
}
