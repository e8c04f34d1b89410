//! [`InMemoryClaimStore`]: generation claims in process memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::{AccountId, Credentials, add_duration};
use crate::error::StorageError;
use crate::ports::{
    Claim, ClaimAcquire, ClaimId, ClaimKey, ClaimState, ClaimStore, Clock, SystemClock,
};

struct Row {
    claim: Claim,
    /// On the store's clock; `None` = never.
    expires_at: Option<DateTime<Utc>>,
}

impl Row {
    fn expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    fn view(&self, now: DateTime<Utc>) -> Claim {
        Claim {
            remaining: self
                .expires_at
                .map(|at| (at - now).to_std().unwrap_or_default()),
            ..self.claim.clone()
        }
    }
}

/// Generation claims kept in one process, on the store's own [`Clock`].
///
/// Every flow sharing one instance is protected, so it serves a single
/// process (several flows in it included) and tests. It is not shared
/// across processes and does not survive a restart: a deployment with more
/// than one process uses a database claim store. Passing it to
/// [`RefreshFlow::builder`](crate::RefreshFlow::builder) is the explicit
/// single-process opt-in.
pub struct InMemoryClaimStore {
    rows: Mutex<HashMap<ClaimKey, Row>>,
    clock: Arc<dyn Clock>,
}

impl Default for InMemoryClaimStore {
    fn default() -> Self {
        Self::new(Arc::new(SystemClock))
    }
}

impl std::fmt::Debug for InMemoryClaimStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryClaimStore")
            .field("claims", &self.len())
            .finish()
    }
}

impl InMemoryClaimStore {
    /// A store whose expiries run on `clock` (the store's clock: flows
    /// with other clocks do not change it).
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            rows: Mutex::new(HashMap::new()),
            clock,
        }
    }

    /// A store on the system clock, for a single process.
    pub fn single_process() -> Self {
        Self::default()
    }

    fn rows(&self) -> MutexGuard<'_, HashMap<ClaimKey, Row>> {
        self.rows.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many claims are stored, in any state.
    pub fn len(&self) -> usize {
        self.rows().len()
    }

    /// Whether no claim is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every claim, as the store sees it now (for tests and tools).
    pub fn snapshot(&self) -> Vec<Claim> {
        let now = self.clock.now();
        self.rows().values().map(|row| row.view(now)).collect()
    }

    /// Every claim of `account` in `state`.
    pub fn claims_of(&self, account: AccountId, state: ClaimState) -> Vec<Claim> {
        self.snapshot()
            .into_iter()
            .filter(|c| c.account_id == account && c.state == state)
            .collect()
    }

    /// Applies `act` to the row of `key` if it holds `id`.
    fn with_held(
        &self,
        key: &ClaimKey,
        id: &ClaimId,
        act: impl FnOnce(&mut Row, DateTime<Utc>) -> bool,
    ) -> bool {
        let now = self.clock.now();
        let mut rows = self.rows();
        match rows.get_mut(key) {
            Some(row) if row.claim.id == *id => act(row, now),
            _ => false,
        }
    }
}

#[async_trait]
impl ClaimStore for InMemoryClaimStore {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn acquire(
        &self,
        key: &ClaimKey,
        id: &ClaimId,
        account: AccountId,
        base_version: u64,
        ttl: Duration,
    ) -> Result<ClaimAcquire, StorageError> {
        let now = self.clock.now();
        let mut rows = self.rows();
        if let Some(row) = rows.get(key) {
            if row.claim.id == *id && row.claim.state == ClaimState::Open {
                return Ok(ClaimAcquire::Won(id.clone()));
            }
            let free = row.expired(now)
                && match row.claim.state {
                    ClaimState::Open | ClaimState::Quarantined => row.claim.answer.is_none(),
                    ClaimState::Consumed => true,
                    ClaimState::Answered => false,
                };
            if !free {
                return Ok(ClaimAcquire::Existing(row.view(now)));
            }
        }
        rows.insert(
            key.clone(),
            Row {
                claim: Claim {
                    key: key.clone(),
                    id: id.clone(),
                    account_id: account,
                    base_version,
                    state: ClaimState::Open,
                    answer: None,
                    remaining: None,
                },
                expires_at: Some(add_duration(now, ttl)),
            },
        );
        Ok(ClaimAcquire::Won(id.clone()))
    }

    async fn get(&self, key: &ClaimKey) -> Result<Option<Claim>, StorageError> {
        let now = self.clock.now();
        Ok(self.rows().get(key).map(|row| row.view(now)))
    }

    async fn extend(
        &self,
        key: &ClaimKey,
        id: &ClaimId,
        ttl: Duration,
    ) -> Result<bool, StorageError> {
        Ok(self.with_held(key, id, |row, now| {
            if row.claim.state != ClaimState::Open {
                return false;
            }
            row.expires_at = Some(add_duration(now, ttl));
            true
        }))
    }

    async fn quarantine(
        &self,
        key: &ClaimKey,
        id: &ClaimId,
        ttl: Duration,
    ) -> Result<bool, StorageError> {
        Ok(self.with_held(key, id, |row, now| {
            if row.claim.state != ClaimState::Open {
                return false;
            }
            row.claim.state = ClaimState::Quarantined;
            row.expires_at = Some(add_duration(now, ttl));
            true
        }))
    }

    async fn save_answer(
        &self,
        key: &ClaimKey,
        id: &ClaimId,
        answer: &Credentials,
    ) -> Result<bool, StorageError> {
        Ok(self.with_held(key, id, |row, _| {
            if !matches!(
                row.claim.state,
                ClaimState::Open | ClaimState::Quarantined | ClaimState::Answered
            ) {
                return false;
            }
            row.claim.state = ClaimState::Answered;
            row.claim.answer = Some(answer.clone());
            row.expires_at = None;
            true
        }))
    }

    async fn mark_consumed(
        &self,
        key: &ClaimKey,
        id: &ClaimId,
        keep: Duration,
    ) -> Result<bool, StorageError> {
        Ok(self.with_held(key, id, |row, now| {
            row.claim.state = ClaimState::Consumed;
            row.claim.answer = None;
            row.expires_at = Some(add_duration(now, keep));
            true
        }))
    }

    async fn remove(&self, key: &ClaimKey, id: &ClaimId) -> Result<bool, StorageError> {
        let mut rows = self.rows();
        if rows.get(key).is_some_and(|row| row.claim.id == *id) {
            rows.remove(key);
            return Ok(true);
        }
        Ok(false)
    }

    async fn purge(&self, limit: usize) -> Result<u64, StorageError> {
        let now = self.clock.now();
        let mut rows = self.rows();
        let over: Vec<ClaimKey> = rows
            .iter()
            .filter(|(_, row)| row.expired(now) && row.claim.state != ClaimState::Answered)
            .map(|(key, _)| key.clone())
            .take(limit)
            .collect();
        for key in &over {
            rows.remove(key);
        }
        Ok(over.len() as u64)
    }
}
