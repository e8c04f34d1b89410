//! [`LoginSessionStore`]: logins in progress (an OAuth authorization-code
//! login begun by one process and completed by any), single-use and
//! expiring by the store's clock.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::{Platform, Secret};
use crate::error::StorageError;

/// The longest session id a store accepts, in bytes (a UUID has 32 or 36).
pub const MAX_LOGIN_SESSION_ID_LEN: usize = 64;

/// A login in progress as a store keeps it: its id, its platform and an
/// opaque payload.
///
/// The payload is whatever the login flow needs to complete the login
/// (the serialized session of `refresh-providers`: PKCE verifier, state,
/// redirect URI, options). Core does not read it; it is a [`Secret`]
/// because it holds the verifier and the state, so a durable store seals
/// it at rest and `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct PendingLogin {
    /// The session id the login is completed by (printable ASCII, 1 to
    /// [`MAX_LOGIN_SESSION_ID_LEN`] bytes).
    pub id: String,
    /// The platform it logs in to.
    pub platform: Platform,
    /// The serialized session.
    pub payload: Secret,
}

impl PendingLogin {
    /// Whether `id` can name a session: 1 to [`MAX_LOGIN_SESSION_ID_LEN`]
    /// printable ASCII characters. A store answers
    /// [`LoginTake::Absent`] for any other id without asking its backend.
    pub fn is_valid_id(id: &str) -> bool {
        !id.is_empty()
            && id.len() <= MAX_LOGIN_SESSION_ID_LEN
            && id.bytes().all(|b| b.is_ascii_graphic())
    }
}

impl fmt::Debug for PendingLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingLogin")
            .field("id", &self.id)
            .field("platform", &self.platform)
            .field("payload", &self.payload)
            .finish()
    }
}

/// What [`LoginSessionStore::take`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum LoginTake {
    /// The session, now removed: this caller is the only one that gets it.
    Taken(PendingLogin),
    /// The session existed but was past its expiry (by the store's clock);
    /// it is removed.
    Expired,
    /// No such session: never stored, already taken, or purged.
    Absent,
}

/// Logins in progress, shared by every process that may complete one.
///
/// # Contract
/// - [`put`](Self::put) stores a session for `ttl` by the **store's**
///   clock (a database's `now()`, not the caller's) and returns that
///   expiry. An id already stored is refused with a `Conflict` error and
///   the stored session is kept.
/// - [`take`](Self::take) is one atomic step: of any number of concurrent
///   takes of one id, at most one gets [`LoginTake::Taken`]; every later
///   take gets [`LoginTake::Absent`]. A session past its expiry is never
///   returned: its take is [`LoginTake::Expired`] (and removes it).
/// - [`purge`](Self::purge) deletes up to `limit` expired sessions and no
///   live one.
/// - The payload comes back byte for byte. A durable store keeps it sealed
///   at rest; no error and no log line carries it.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait LoginSessionStore: Send + Sync {
    /// Stores `login` until `ttl` from now by the store's clock; returns
    /// that instant.
    ///
    /// # Errors
    /// `Conflict` when the id is stored already; `InvalidData` for an id
    /// [`PendingLogin::is_valid_id`] refuses; other kinds when the store
    /// fails.
    async fn put(&self, login: &PendingLogin, ttl: Duration)
    -> Result<DateTime<Utc>, StorageError>;

    /// Removes the session `id` and returns it, if it is live.
    ///
    /// # Errors
    /// A [`StorageError`] when the store fails (then nothing was removed,
    /// or the removal is as if it had not happened: the caller gets no
    /// session either way). `InvalidData` when the stored session cannot
    /// be read back (a key no longer configured); it is removed.
    async fn take(&self, id: &str) -> Result<LoginTake, StorageError>;

    /// Deletes up to `limit` expired sessions; returns how many.
    ///
    /// # Errors
    /// A [`StorageError`] when the store fails.
    async fn purge(&self, limit: usize) -> Result<u64, StorageError>;
}
