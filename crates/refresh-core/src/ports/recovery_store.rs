//! [`RecoveryStore`]: where rotated credentials wait when they could not be
//! persisted.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::{AccountId, Credentials, Secret};
use crate::error::StorageError;

/// Credentials the upstream issued that the fenced write could not store.
#[derive(Debug, Clone, PartialEq)]
pub struct RecoveryRecord {
    /// The account.
    pub account_id: AccountId,
    /// The `credentials_version` the refresh started from (informational, and
    /// the guard of [`RecoveryStore::remove`]).
    pub base_version: u64,
    /// The refresh token the rotation consumed. The record applies while the
    /// account still holds it, whatever other writes bumped the version
    /// meanwhile; once the account holds another refresh token, someone
    /// rotated or replaced the tokens and the record is obsolete.
    pub consumed_refresh_token: Option<Secret>,
    /// The keys the refresh changed (new access token, rotated refresh
    /// token, expiry, ...), to be merged over the stored credentials.
    pub credentials: Credentials,
    /// When the record was written.
    pub created_at: DateTime<Utc>,
    /// A marker rather than credentials: a refresh presenting
    /// `consumed_refresh_token` was sent and its answer is still
    /// outstanding. While it is, flows report "held elsewhere" instead of
    /// presenting that token again (invariant 1); the late answer replaces
    /// the marker with a real record, or removes it.
    pub pending: bool,
}

/// Durable storage of [`RecoveryRecord`]s, one per account (invariant 2).
///
/// # Contract
/// - After [`save`](Self::save) returns `Ok`, [`load`](Self::load) returns
///   the record (or a later one) until it is removed.
/// - `save` replaces an existing record of the same account.
/// - [`remove`](Self::remove) deletes the record only if its
///   `base_version` matches, so a newer record is never removed by an older
///   flow.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait RecoveryStore: Send + Sync {
    /// Stores a record.
    ///
    /// # Errors
    /// A [`StorageError`] when the backend fails; the caller keeps the
    /// credentials in its error then.
    async fn save(&self, record: &RecoveryRecord) -> Result<(), StorageError>;

    /// The pending record of an account.
    ///
    /// # Errors
    /// A [`StorageError`] when the backend fails; the flow then does not
    /// call the upstream.
    async fn load(&self, id: AccountId) -> Result<Option<RecoveryRecord>, StorageError>;

    /// Removes the record if its `base_version` matches.
    ///
    /// # Errors
    /// A [`StorageError`] when the backend fails.
    async fn remove(&self, id: AccountId, base_version: u64) -> Result<(), StorageError>;
}
