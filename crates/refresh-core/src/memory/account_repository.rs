//! [`InMemoryAccountRepository`]: the reference account store.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::RwLock;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::{Account, AccountId, AccountStatus, Credentials};
use crate::error::StorageError;
use crate::ports::{AccountRepository, CasExpectation, CasOutcome, DueCursor, DuePage};

/// Sort key of the due index: unknown expiry first, then by expiry and id.
type DueKey = (Option<DateTime<Utc>>, AccountId);

#[derive(Default)]
pub(super) struct State {
    pub(super) accounts: BTreeMap<AccountId, Account>,
    /// Index of active accounts by `(expires_at, id)`; `list_due` walks it
    /// instead of scanning every row.
    due: BTreeSet<DueKey>,
}

impl State {
    pub(super) fn unindex(&mut self, account: &Account) {
        self.due.remove(&(account.expires_at, account.id));
    }

    pub(super) fn index(&mut self, account: &Account) {
        if account.status == AccountStatus::Active {
            self.due.insert((account.expires_at, account.id));
        }
    }

    pub(super) fn update(
        &mut self,
        id: AccountId,
        op: &'static str,
        f: impl FnOnce(&mut Account),
    ) -> Result<(), StorageError> {
        let mut account = self
            .accounts
            .remove(&id)
            .ok_or_else(|| StorageError::not_found(op, format!("account {id} not found")))?;
        self.unindex(&account);
        f(&mut account);
        self.index(&account);
        self.accounts.insert(id, account);
        Ok(())
    }
}

/// A process-local account store. Every operation is atomic under one lock;
/// it defines the semantics the SQL backends must match.
#[derive(Default)]
pub struct InMemoryAccountRepository {
    state: RwLock<State>,
}

impl InMemoryAccountRepository {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store holding `accounts`.
    ///
    /// # Panics
    /// When two accounts share an id.
    pub fn with_accounts(accounts: impl IntoIterator<Item = Account>) -> Self {
        let repo = Self::new();
        {
            let mut state = repo.write();
            for mut account in accounts {
                account.derive_expires_at();
                state.index(&account);
                assert!(
                    state.accounts.insert(account.id, account).is_none(),
                    "duplicate account id"
                );
            }
        }
        repo
    }

    /// Every stored account, by id (for tests and tools).
    pub fn snapshot(&self) -> Vec<Account> {
        self.read().accounts.values().cloned().collect()
    }

    pub(super) fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for InMemoryAccountRepository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryAccountRepository")
            .field("accounts", &self.read().accounts.len())
            .finish()
    }
}

#[async_trait]
impl AccountRepository for InMemoryAccountRepository {
    async fn get(&self, id: AccountId) -> Result<Option<Account>, StorageError> {
        Ok(self.read().accounts.get(&id).cloned())
    }

    async fn insert(&self, mut account: Account) -> Result<Account, StorageError> {
        let mut state = self.write();
        if state.accounts.contains_key(&account.id) {
            return Err(StorageError::conflict(
                "insert",
                format!("account {} already exists", account.id),
            ));
        }
        account.derive_expires_at();
        state.index(&account);
        state.accounts.insert(account.id, account.clone());
        Ok(account)
    }

    async fn compare_and_set_credentials(
        &self,
        id: AccountId,
        expected: CasExpectation,
        credentials: &Credentials,
    ) -> Result<CasOutcome, StorageError> {
        let mut state = self.write();
        let Some(current) = state.accounts.get(&id) else {
            return Ok(CasOutcome::NotFound);
        };
        if !expected.matches(current) {
            return Ok(CasOutcome::VersionMismatch {
                current_version: current.credentials_version,
            });
        }
        let mut applied = None;
        state.update(id, "compare_and_set_credentials", |account| {
            account.set_credentials(credentials.clone());
            account.credentials_version += 1;
            applied = Some(account.clone());
        })?;
        Ok(applied.map_or(CasOutcome::NotFound, CasOutcome::Applied))
    }

    async fn list_due(
        &self,
        before: DateTime<Utc>,
        after: Option<DueCursor>,
        limit: usize,
    ) -> Result<DuePage, StorageError> {
        use std::ops::Bound;
        let state = self.read();
        let start = match after {
            Some(cursor) => Bound::Excluded((cursor.expires_at, cursor.id)),
            None => Bound::Unbounded,
        };
        let accounts = state
            .due
            .range((start, Bound::Unbounded))
            .take_while(|(expires_at, _)| expires_at.is_none_or(|at| at < before))
            .take(limit)
            .filter_map(|(_, id)| state.accounts.get(id).cloned())
            .collect();
        Ok(DuePage::of(accounts, limit))
    }

    async fn set_error(
        &self,
        id: AccountId,
        observed_version: u64,
        message: &str,
    ) -> Result<bool, StorageError> {
        let mut marked = false;
        self.write().update(id, "set_error", |account| {
            if account.credentials_version == observed_version {
                account.status = AccountStatus::Error;
                account.error_message = Some(message.to_owned());
                marked = true;
            }
        })?;
        Ok(marked)
    }

    async fn clear_error(&self, id: AccountId) -> Result<(), StorageError> {
        self.write().update(id, "clear_error", |account| {
            account.status = AccountStatus::Active;
            account.error_message = None;
        })
    }

    async fn clear_temp_unschedulable(&self, id: AccountId) -> Result<(), StorageError> {
        self.write()
            .update(id, "clear_temp_unschedulable", |account| {
                account.temp_unschedulable_until = None;
                account.temp_unschedulable_reason = None;
            })
    }
}
