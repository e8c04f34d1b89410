//! [`AccountCatalog`] of the [`InMemoryAccountRepository`].

use async_trait::async_trait;

use super::InMemoryAccountRepository;
use super::account_repository::State;
use crate::domain::{Account, AccountId, Credentials, Platform};
use crate::error::{RefreshTokenTaken, StorageError, TokenHolder};
use crate::ports::{
    AccountCatalog, AccountFilter, AccountPage, MetadataUpdate, NewAccount, StatusCounts,
    duplicate_refresh_tokens, invalid_entry,
};

fn taken(op: &'static str, entry: Option<usize>, holder: AccountId) -> StorageError {
    StorageError::refresh_token_taken(
        op,
        RefreshTokenTaken {
            entry,
            holder: TokenHolder::Account(holder),
        },
    )
}

impl State {
    /// The next free id: one past the largest stored.
    fn next_id(&self) -> AccountId {
        AccountId(self.accounts.keys().next_back().map_or(1, |id| id.0 + 1))
    }

    /// The stored account other than `except` holding `credentials`'
    /// refresh token, if any.
    fn holder_of(&self, credentials: &Credentials, except: Option<AccountId>) -> Option<AccountId> {
        let token = credentials.refresh_token()?;
        self.accounts
            .values()
            .find(|a| {
                Some(a.id) != except && a.credentials.refresh_token().as_ref() == Some(&token)
            })
            .map(|a| a.id)
    }

    fn create(&mut self, new: NewAccount) -> Account {
        let mut account = new.into_account(self.next_id());
        account.derive_expires_at();
        self.index(&account);
        self.accounts.insert(account.id, account.clone());
        account
    }
}

#[async_trait]
impl AccountCatalog for InMemoryAccountRepository {
    async fn create(&self, account: NewAccount) -> Result<Account, StorageError> {
        account
            .validate()
            .map_err(|e| invalid_entry("create", 0, &e))?;
        let mut state = self.write();
        if let Some(holder) = state.holder_of(&account.credentials, None) {
            return Err(taken("create", None, holder));
        }
        Ok(state.create(account))
    }

    async fn import(&self, accounts: Vec<NewAccount>) -> Result<Vec<Account>, StorageError> {
        for (index, account) in accounts.iter().enumerate() {
            account
                .validate()
                .map_err(|e| invalid_entry("import", index, &e))?;
        }
        duplicate_refresh_tokens("import", &accounts)?;
        let mut state = self.write();
        for (index, account) in accounts.iter().enumerate() {
            if let Some(holder) = state.holder_of(&account.credentials, None) {
                return Err(taken("import", Some(index), holder));
            }
        }
        Ok(accounts.into_iter().map(|a| state.create(a)).collect())
    }

    async fn list(
        &self,
        filter: &AccountFilter,
        after: Option<AccountId>,
        limit: usize,
    ) -> Result<AccountPage, StorageError> {
        use std::ops::Bound;
        let state = self.read();
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let accounts: Vec<Account> = state
            .accounts
            .range((start, Bound::Unbounded))
            .map(|(_, account)| account)
            .filter(|account| filter.matches(account))
            .take(limit)
            .cloned()
            .collect();
        let next = (accounts.len() >= limit)
            .then(|| accounts.last().map(|a| a.id))
            .flatten();
        Ok(AccountPage {
            accounts,
            corrupt: Vec::new(),
            next,
        })
    }

    async fn count_by_status(
        &self,
        platform: Option<Platform>,
    ) -> Result<StatusCounts, StorageError> {
        let mut counts = StatusCounts::default();
        for account in self.read().accounts.values() {
            if platform.as_ref().is_none_or(|p| *p == account.platform) {
                counts.add(account.status);
            }
        }
        Ok(counts)
    }

    async fn update_metadata(
        &self,
        id: AccountId,
        update: &MetadataUpdate,
    ) -> Result<Account, StorageError> {
        update
            .validate()
            .map_err(|e| invalid_entry("update_metadata", 0, &e))?;
        let mut stored = None;
        self.write().update(id, "update_metadata", |account| {
            update.apply_to(account);
            stored = Some(account.clone());
        })?;
        stored.ok_or_else(|| StorageError::not_found("update_metadata", "account not found"))
    }

    async fn delete(&self, id: AccountId) -> Result<bool, StorageError> {
        let mut state = self.write();
        let Some(account) = state.accounts.remove(&id) else {
            return Ok(false);
        };
        state.unindex(&account);
        Ok(true)
    }

    async fn replace_credentials(
        &self,
        id: AccountId,
        credentials: &Credentials,
    ) -> Result<Account, StorageError> {
        credentials.expires_at().map_err(|e| {
            StorageError::invalid_data(
                "replace_credentials",
                format!("credentials.expires_at: {e}"),
            )
        })?;
        let mut stored = None;
        let mut state = self.write();
        if !state.accounts.contains_key(&id) {
            return Err(StorageError::not_found(
                "replace_credentials",
                "account not found",
            ));
        }
        if let Some(holder) = state.holder_of(credentials, Some(id)) {
            return Err(taken("replace_credentials", None, holder));
        }
        state.update(id, "replace_credentials", |account| {
            account.set_credentials(credentials.clone());
            account.credentials_version += 1;
            stored = Some(account.clone());
        })?;
        stored.ok_or_else(|| StorageError::not_found("replace_credentials", "account not found"))
    }
}
