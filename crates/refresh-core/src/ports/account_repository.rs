//! [`AccountRepository`]: where accounts and their credentials live.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::{Account, AccountId, Credentials};
use crate::error::StorageError;

/// The result of a fenced credential write.
#[derive(Debug, Clone, PartialEq)]
pub enum CasOutcome {
    /// Written; the account as stored now (version bumped by one).
    Applied(Account),
    /// The stored version differs from the expected one; nothing was written.
    VersionMismatch {
        /// The stored version.
        current_version: u64,
    },
    /// No such account.
    NotFound,
}

/// Where a page of due accounts starts: after this `(expires_at, id)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DueCursor {
    /// `expires_at` of the last account of the previous page (`None` =
    /// unknown expiry, which sorts first).
    pub expires_at: Option<DateTime<Utc>>,
    /// Its id.
    pub id: AccountId,
}

impl DueCursor {
    /// The cursor just past `account`.
    pub fn after(account: &Account) -> Self {
        Self {
            expires_at: account.expires_at,
            id: account.id,
        }
    }
}

/// Account storage.
///
/// # Contract
/// - Reads are linearizable per account: a `get` after an `Applied` write
///   sees that write.
/// - [`compare_and_set_credentials`](Self::compare_and_set_credentials) is
///   atomic, writes only `credentials`, `credentials_version` (+1) and the
///   derived `expires_at`, and never touches status, error, extra or
///   scheduling fields (invariant 3).
/// - Status and scheduling writes never touch credentials or the version.
/// - Errors carry a [`StorageErrorKind`](crate::StorageErrorKind) that says
///   whether a retry may help; no secret appears in them.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait AccountRepository: Send + Sync {
    /// Reads one account; `Ok(None)` when it does not exist.
    ///
    /// # Errors
    /// A [`StorageError`] when the backend fails or the row cannot be
    /// decoded (`InvalidData`).
    async fn get(&self, id: AccountId) -> Result<Option<Account>, StorageError>;

    /// Inserts a new account as given (its `credentials_version` is kept,
    /// `expires_at` is derived from the credentials) and returns it as stored.
    ///
    /// # Errors
    /// `Conflict` when the id exists; other kinds when the backend fails.
    async fn insert(&self, account: Account) -> Result<Account, StorageError>;

    /// Writes `credentials` if the stored version equals `expected_version`,
    /// bumping the version by one.
    ///
    /// # Errors
    /// A [`StorageError`] when the backend fails; a version mismatch or a
    /// missing row is an `Ok` outcome, not an error.
    async fn compare_and_set_credentials(
        &self,
        id: AccountId,
        expected_version: u64,
        credentials: &Credentials,
    ) -> Result<CasOutcome, StorageError>;

    /// A page of `active` accounts whose `expires_at` is before `before` or
    /// unknown, ordered by `(expires_at, id)` with unknown first, starting
    /// after `after`. The page holds exactly `limit` accounts unless fewer
    /// remain, so a short page is the last one. Backends serve it from an
    /// index.
    ///
    /// # Errors
    /// A [`StorageError`] when the backend fails.
    async fn list_due(
        &self,
        before: DateTime<Utc>,
        after: Option<DueCursor>,
        limit: usize,
    ) -> Result<Vec<Account>, StorageError>;

    /// Sets status `error` with a sanitized message. Touches nothing else.
    ///
    /// # Errors
    /// `NotFound` when the account does not exist; other kinds when the
    /// backend fails.
    async fn set_error(&self, id: AccountId, message: &str) -> Result<(), StorageError>;

    /// Sets status `active` and clears the error message.
    ///
    /// # Errors
    /// As [`set_error`](Self::set_error).
    async fn clear_error(&self, id: AccountId) -> Result<(), StorageError>;

    /// Clears the temp-unschedulable until/reason fields.
    ///
    /// # Errors
    /// As [`set_error`](Self::set_error).
    async fn clear_temp_unschedulable(&self, id: AccountId) -> Result<(), StorageError>;
}
