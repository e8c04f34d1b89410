//! [`AccountCatalog`]: the administration of accounts (the operator
//! surface: import, list, show, edit, remove, re-authorize), separate from
//! the refresh-critical [`AccountRepository`](super::AccountRepository).

use std::fmt;

use async_trait::async_trait;
use serde_json::{Map, Value};

use super::account_repository::CorruptAccount;
use crate::domain::Fingerprint;
use crate::domain::{
    Account, AccountId, AccountStatus, AccountType, Credentials, Platform, ProxyUrl,
};
use crate::error::{DomainError, RefreshTokenTaken, StorageError, TokenHolder};

/// The longest account name a catalog accepts, in characters.
pub const MAX_NAME_CHARS: usize = 256;

/// An account to create; the store assigns its id. Starts at
/// `credentials_version` 0 with `expires_at` derived from the credentials.
#[derive(Clone, PartialEq)]
pub struct NewAccount {
    /// Human-readable name (1 to [`MAX_NAME_CHARS`] characters, not blank).
    pub name: String,
    /// Upstream provider.
    pub platform: Platform,
    /// Authentication type.
    pub account_type: AccountType,
    /// Initial status (default `active`).
    pub status: AccountStatus,
    /// Token material.
    pub credentials: Credentials,
    /// Non-secret per-platform data.
    pub extra: Map<String, Value>,
    /// The account's proxy.
    pub proxy: Option<ProxyUrl>,
    /// Scheduling priority.
    pub priority: i32,
}

impl NewAccount {
    /// An active account with no extra data, proxy or priority.
    pub fn new(
        name: impl Into<String>,
        platform: Platform,
        account_type: AccountType,
        credentials: Credentials,
    ) -> Self {
        Self {
            name: name.into(),
            platform,
            account_type,
            status: AccountStatus::Active,
            credentials,
            extra: Map::new(),
            proxy: None,
            priority: 0,
        }
    }

    /// Checks what a store cannot fix later: a usable name, a readable
    /// `expires_at` (unix seconds or RFC 3339; milliseconds are refused),
    /// and, for OAuth accounts, a refresh token to refresh with.
    ///
    /// # Errors
    /// [`DomainError::InvalidAccount`] naming the field; never a secret.
    pub fn validate(&self) -> Result<(), DomainError> {
        let invalid =
            |field: &'static str, reason: String| DomainError::InvalidAccount { field, reason };
        if self.name.trim().is_empty() {
            return Err(invalid("name", "must not be blank".into()));
        }
        if self.name.chars().count() > MAX_NAME_CHARS {
            return Err(invalid(
                "name",
                format!("longer than {MAX_NAME_CHARS} characters"),
            ));
        }
        if let Err(error) = self.credentials.expires_at() {
            return Err(invalid("credentials.expires_at", error.to_string()));
        }
        if self.account_type == AccountType::OAuth && self.credentials.refresh_token().is_none() {
            return Err(invalid(
                "credentials.refresh_token",
                "an oauth account needs a non-blank refresh token".into(),
            ));
        }
        Ok(())
    }

    /// The account as stored under `id`.
    pub fn into_account(self, id: AccountId) -> Account {
        let mut account = Account::new(id, self.platform, self.account_type, self.credentials);
        account.name = self.name;
        account.status = self.status;
        account.extra = self.extra;
        account.proxy = self.proxy;
        account.priority = self.priority;
        account
    }
}

impl fmt::Debug for NewAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewAccount")
            .field("name", &self.name)
            .field("platform", &self.platform)
            .field("account_type", &self.account_type)
            .field("status", &self.status)
            .field("credentials", &self.credentials)
            .field("proxy", &self.proxy)
            .finish_non_exhaustive()
    }
}

/// Which accounts a listing or a count covers; `None` = any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountFilter {
    /// Only this platform.
    pub platform: Option<Platform>,
    /// Only this status.
    pub status: Option<AccountStatus>,
}

impl AccountFilter {
    /// Whether `account` passes.
    pub fn matches(&self, account: &Account) -> bool {
        self.platform
            .as_ref()
            .is_none_or(|p| *p == account.platform)
            && self.status.is_none_or(|s| s == account.status)
    }
}

/// One page of [`AccountCatalog::list`], by ascending id.
#[derive(Debug, Clone, Default)]
pub struct AccountPage {
    /// The accounts that could be read.
    pub accounts: Vec<Account>,
    /// Rows of the page that could not be read, by id.
    pub corrupt: Vec<CorruptAccount>,
    /// The id to pass as `after` for the next page: `Some` when this page
    /// held `limit` rows, `None` on the last page.
    pub next: Option<AccountId>,
}

/// How many accounts have each status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusCounts {
    /// `active`.
    pub active: u64,
    /// `disabled`.
    pub disabled: u64,
    /// `error`.
    pub error: u64,
}

impl StatusCounts {
    /// The count of `status`.
    pub fn get(&self, status: AccountStatus) -> u64 {
        match status {
            AccountStatus::Active => self.active,
            AccountStatus::Disabled => self.disabled,
            AccountStatus::Error => self.error,
        }
    }

    /// Adds one account of `status`.
    pub fn add(&mut self, status: AccountStatus) {
        match status {
            AccountStatus::Active => self.active += 1,
            AccountStatus::Disabled => self.disabled += 1,
            AccountStatus::Error => self.error += 1,
        }
    }

    /// Every account counted.
    pub fn total(&self) -> u64 {
        self.active + self.disabled + self.error
    }
}

/// The metadata fields an operator may change; `None` leaves a field as
/// it is. Credentials are not here: they change only through fenced
/// writes and [`AccountCatalog::replace_credentials`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetadataUpdate {
    /// A new name (validated like [`NewAccount::name`]).
    pub name: Option<String>,
    /// A new status.
    pub status: Option<AccountStatus>,
    /// A new error message (`Some(None)` clears it).
    pub error_message: Option<Option<String>>,
    /// New extra data (replaces the whole object).
    pub extra: Option<Map<String, Value>>,
    /// A new proxy (`Some(None)` = direct).
    pub proxy: Option<Option<ProxyUrl>>,
    /// A new priority.
    pub priority: Option<i32>,
}

impl MetadataUpdate {
    /// Applies the update to `account`.
    pub fn apply_to(&self, account: &mut Account) {
        if let Some(name) = &self.name {
            account.name.clone_from(name);
        }
        if let Some(status) = self.status {
            account.status = status;
        }
        if let Some(message) = &self.error_message {
            account.error_message.clone_from(message);
        }
        if let Some(extra) = &self.extra {
            account.extra.clone_from(extra);
        }
        if let Some(proxy) = &self.proxy {
            account.proxy.clone_from(proxy);
        }
        if let Some(priority) = self.priority {
            account.priority = priority;
        }
    }

    /// Checks the new name, if any.
    ///
    /// # Errors
    /// [`DomainError::InvalidAccount`] naming the field.
    pub fn validate(&self) -> Result<(), DomainError> {
        match &self.name {
            Some(name) if name.trim().is_empty() || name.chars().count() > MAX_NAME_CHARS => {
                Err(DomainError::InvalidAccount {
                    field: "name",
                    reason: format!("must be 1 to {MAX_NAME_CHARS} characters, not blank"),
                })
            }
            _ => Ok(()),
        }
    }
}

/// The `InvalidData` error of an invalid entry `index` of an import (or of
/// a single create, `index` 0).
pub fn invalid_entry(operation: &'static str, index: usize, error: &DomainError) -> StorageError {
    StorageError::invalid_data(operation, format!("entry {index}: {error}"))
}

/// Refuses a batch in which two entries carry the same (non-blank) refresh
/// token: the typed [`RefreshTokenTaken`] naming the later entry and the
/// earlier one. Backends call it before storing anything.
///
/// # Errors
/// [`StorageError::refresh_token_taken`] for the first repeated token.
pub fn duplicate_refresh_tokens(
    operation: &'static str,
    accounts: &[NewAccount],
) -> Result<(), StorageError> {
    let mut seen = std::collections::HashMap::new();
    for (index, account) in accounts.iter().enumerate() {
        let Some(token) = account.credentials.refresh_token() else {
            continue;
        };
        if let Some(first) = seen.insert(Fingerprint::of(&token), index) {
            return Err(StorageError::refresh_token_taken(
                operation,
                RefreshTokenTaken {
                    entry: Some(index),
                    holder: TokenHolder::Entry(first),
                },
            ));
        }
    }
    Ok(())
}

/// Account administration for operators (the CLI and the HTTP sidecar).
///
/// # Contract
/// - [`create`](Self::create) and [`import`](Self::import) assign fresh ids
///   the store chooses (never an id in use, also after explicit
///   [`insert`](super::AccountRepository::insert)s), store version 0 and
///   derive `expires_at` from the credentials. Each entry is checked with
///   [`NewAccount::validate`] first.
/// - [`import`](Self::import) is all or nothing: when any entry is invalid
///   or the store fails, no account of the batch is stored.
/// - [`list`](Self::list) is keyset-paged by ascending id with an exclusive
///   `after`, filtered by platform and status; a row that cannot be read is
///   reported in [`AccountPage::corrupt`] and the listing goes on.
/// - [`update_metadata`](Self::update_metadata) writes only the given
///   metadata fields: never credentials, `credentials_version` or
///   `expires_at`.
/// - [`replace_credentials`](Self::replace_credentials) is a credential
///   write: it bumps `credentials_version` (so an in-flight refresh's
///   fenced write loses) and re-derives `expires_at`, touching nothing else.
/// - A refresh token is held by one account at most: `create`, `import`
///   and `replace_credentials` refuse a (non-blank) refresh token another
///   stored account holds, or that an earlier entry of the same import
///   carries, with a `Conflict` whose
///   [`taken_refresh_token`](StorageError::taken_refresh_token) names the
///   entry and the holder (nothing is stored). Two accounts sharing one
///   rotating refresh token would lose each other's rotations.
/// - Errors carry a [`StorageErrorKind`](crate::StorageErrorKind) and no
///   secret; an invalid entry is `InvalidData` naming its index and field.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait AccountCatalog: Send + Sync {
    /// Creates one account under a fresh id.
    ///
    /// # Errors
    /// `InvalidData` for an invalid account; `Conflict` with
    /// [`taken_refresh_token`](StorageError::taken_refresh_token) when
    /// another account holds its refresh token; other kinds when the store
    /// fails.
    async fn create(&self, account: NewAccount) -> Result<Account, StorageError>;

    /// Creates every account of `accounts`, in order, in one transaction;
    /// returns them as stored.
    ///
    /// # Errors
    /// `InvalidData` naming the first invalid entry's index and field (then
    /// nothing is stored); `Conflict` with
    /// [`taken_refresh_token`](StorageError::taken_refresh_token) for an
    /// entry whose refresh token is held; other kinds when the store fails
    /// (nothing is stored either).
    async fn import(&self, accounts: Vec<NewAccount>) -> Result<Vec<Account>, StorageError>;

    /// Up to `limit` accounts passing `filter` with ids greater than
    /// `after`, by ascending id.
    ///
    /// # Errors
    /// A [`StorageError`] when the store fails.
    async fn list(
        &self,
        filter: &AccountFilter,
        after: Option<AccountId>,
        limit: usize,
    ) -> Result<AccountPage, StorageError>;

    /// How many accounts of `platform` (any when `None`) have each status.
    ///
    /// # Errors
    /// A [`StorageError`] when the store fails.
    async fn count_by_status(
        &self,
        platform: Option<Platform>,
    ) -> Result<StatusCounts, StorageError>;

    /// Applies `update` and returns the account as stored.
    ///
    /// # Errors
    /// `NotFound` for a missing account; `InvalidData` for an invalid name;
    /// other kinds when the store fails.
    async fn update_metadata(
        &self,
        id: AccountId,
        update: &MetadataUpdate,
    ) -> Result<Account, StorageError>;

    /// Deletes the account; `Ok(false)` when there was none.
    ///
    /// # Errors
    /// A [`StorageError`] when the store fails.
    async fn delete(&self, id: AccountId) -> Result<bool, StorageError>;

    /// An operator's re-authorization: stores `credentials` whatever the
    /// stored version, bumping it by one, and returns the account as stored.
    ///
    /// # Errors
    /// `NotFound` for a missing account; `InvalidData` for an unreadable
    /// `expires_at`; `Conflict` with
    /// [`taken_refresh_token`](StorageError::taken_refresh_token) when
    /// another account holds the refresh token; other kinds when the store
    /// fails.
    async fn replace_credentials(
        &self,
        id: AccountId,
        credentials: &Credentials,
    ) -> Result<Account, StorageError>;
}
