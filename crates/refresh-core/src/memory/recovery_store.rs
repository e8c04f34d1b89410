//! [`InMemoryRecoveryStore`]: recovery records kept in process memory.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::domain::AccountId;
use crate::error::StorageError;
use crate::ports::{RecoveryRecord, RecoveryStore};

/// Recovery records in memory: they survive a failed write but not a process
/// restart. Durable deployments use the database store.
#[derive(Debug, Default)]
pub struct InMemoryRecoveryStore {
    records: Mutex<HashMap<AccountId, RecoveryRecord>>,
}

impl InMemoryRecoveryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many records are pending.
    pub fn len(&self) -> usize {
        self.records.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Drops the record of an account, whatever its base version.
    pub fn forget(&self, id: AccountId) {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    /// Whether no record is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl RecoveryStore for InMemoryRecoveryStore {
    async fn save(&self, record: &RecoveryRecord) -> Result<(), StorageError> {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(record.account_id, record.clone());
        Ok(())
    }

    async fn load(&self, id: AccountId) -> Result<Option<RecoveryRecord>, StorageError> {
        Ok(self
            .records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned())
    }

    async fn remove(&self, id: AccountId, base_version: u64) -> Result<(), StorageError> {
        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        if records
            .get(&id)
            .is_some_and(|r| r.base_version == base_version)
        {
            records.remove(&id);
        }
        Ok(())
    }
}
