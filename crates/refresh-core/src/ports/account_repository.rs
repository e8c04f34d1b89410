//! [`AccountRepository`]: where accounts and their credentials live.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::{Account, AccountId, Credentials, Fingerprint};
use crate::error::StorageError;

/// What a fenced credential write expects to replace: the stored
/// `credentials_version` AND the fingerprint of the stored refresh token, so
/// a row deleted and re-created at the same id and version is not
/// overwritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CasExpectation {
    /// The stored `credentials_version`.
    pub version: u64,
    /// [`Fingerprint`] of the stored refresh token (as
    /// [`Credentials::refresh_token`] reads it: trimmed, non-blank), or
    /// `None` when the row must hold none.
    pub refresh_token: Option<Fingerprint>,
}

impl CasExpectation {
    /// What `account` holds now.
    pub fn of(account: &Account) -> Self {
        Self {
            version: account.credentials_version,
            refresh_token: account
                .credentials
                .refresh_token()
                .map(|t| Fingerprint::of(&t)),
        }
    }

    /// Whether `account` is what this expects.
    pub fn matches(&self, account: &Account) -> bool {
        *self == Self::of(account)
    }
}

/// The result of a fenced credential write.
#[derive(Debug, Clone, PartialEq)]
pub enum CasOutcome {
    /// Written; the account as stored now (version bumped by one).
    Applied(Account),
    /// The stored version or refresh token differs from the expected one;
    /// nothing was written.
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

    /// Whether this cursor is strictly past `other` in listing order
    /// (unknown expiries first, then by `(expires_at, id)`): every page's
    /// [`next`](DuePage::next) is past the cursor it was listed after.
    pub fn is_past(&self, other: &Self) -> bool {
        (self.expires_at, self.id) > (other.expires_at, other.id)
    }
}

/// A stored account row that cannot be read back (credentials that are not
/// a JSON object, an unknown platform or type name, a ciphertext that does
/// not open): reported by id so a listing goes on with the others.
#[derive(Debug, Clone)]
pub struct CorruptAccount {
    /// The row's id.
    pub id: AccountId,
    /// Why it cannot be read (kind `InvalidData`; no secret in it).
    pub error: StorageError,
}

/// One page of [`AccountRepository::list_due`].
#[derive(Debug, Clone, Default)]
pub struct DuePage {
    /// The due accounts that could be read, in listing order.
    pub accounts: Vec<Account>,
    /// Due rows that could not be read, in listing order. They count
    /// towards the page's `limit` and the cursor moves past them.
    pub corrupt: Vec<CorruptAccount>,
    /// Where the next page starts: `Some` when this page held `limit` rows
    /// (accounts and corrupt rows together), so more may follow; `None`
    /// when the listing is complete.
    pub next: Option<DueCursor>,
}

impl DuePage {
    /// How many rows the page covered (readable and corrupt).
    pub fn rows(&self) -> usize {
        self.accounts.len() + self.corrupt.len()
    }

    /// A page of `accounts` only, with `next` set when it holds `limit`
    /// rows (for backends that cannot hold corrupt rows).
    pub fn of(accounts: Vec<Account>, limit: usize) -> Self {
        let next = if accounts.len() >= limit {
            accounts.last().map(DueCursor::after)
        } else {
            None
        };
        Self {
            accounts,
            corrupt: Vec::new(),
            next,
        }
    }
}

/// Account storage.
///
/// # Contract
/// - Reads are linearizable per account: a `get` after an `Applied` write
///   sees that write.
/// - [`compare_and_set_credentials`](Self::compare_and_set_credentials) is
///   atomic, compares the version AND the refresh-token fingerprint, writes
///   only `credentials`, `credentials_version` (+1) and the
///   derived `expires_at`, and never touches status, error, extra or
///   scheduling fields (invariant 3).
/// - Status and scheduling writes never touch credentials or the version;
///   [`set_error`](Self::set_error) is fenced on the version the failure was
///   observed on.
/// - [`list_due`](Self::list_due) is keyset-paged with an EXCLUSIVE cursor
///   and an exclusive `before`: an account expiring exactly at `before` is
///   not due. A row that cannot be decoded never aborts a listing: it is
///   reported in [`DuePage::corrupt`] and the cursor moves past it.
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

    /// Writes `credentials` if the stored row matches `expected` (version
    /// and refresh-token fingerprint), bumping the version by one and
    /// re-deriving `expires_at`.
    ///
    /// # Errors
    /// A [`StorageError`] when the backend fails; a mismatch or a missing
    /// row is an `Ok` outcome, not an error.
    async fn compare_and_set_credentials(
        &self,
        id: AccountId,
        expected: CasExpectation,
        credentials: &Credentials,
    ) -> Result<CasOutcome, StorageError>;

    /// A page of `active` accounts whose `expires_at` is strictly before
    /// `before` or unknown, ordered by `(expires_at, id)` with unknown first,
    /// starting strictly after `after`. The page covers exactly `limit` rows
    /// (readable accounts plus [corrupt](DuePage::corrupt) ones) unless fewer
    /// remain; [`DuePage::next`] is `None` on the last page. Backends serve
    /// it from an index.
    ///
    /// # Errors
    /// A [`StorageError`] when the backend fails (a corrupt row is not an
    /// error of the listing).
    async fn list_due(
        &self,
        before: DateTime<Utc>,
        after: Option<DueCursor>,
        limit: usize,
    ) -> Result<DuePage, StorageError>;

    /// Sets status `error` with a sanitized message if the stored
    /// `credentials_version` still equals `observed_version` (the version
    /// the failure was observed on): a re-import of fresh credentials in
    /// between is not marked. Touches nothing else. `Ok(false)` when the
    /// version moved.
    ///
    /// # Errors
    /// `NotFound` when the account does not exist; other kinds when the
    /// backend fails.
    async fn set_error(
        &self,
        id: AccountId,
        observed_version: u64,
        message: &str,
    ) -> Result<bool, StorageError>;

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
