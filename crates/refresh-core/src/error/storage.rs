//! [`StorageError`]: what every port returns when its backend fails.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use crate::domain::AccountId;

/// What went wrong in a backend, which decides whether a retry may help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StorageErrorKind {
    /// The server cannot be reached, the pool is exhausted, the connection
    /// dropped. Retryable.
    Unavailable,
    /// The operation did not finish in time. Retryable.
    Timeout,
    /// The backend is busy (SQLite lock contention, serialization failure).
    /// Retryable.
    Busy,
    /// A uniqueness or state conflict. Not retryable as is.
    Conflict,
    /// The addressed row does not exist.
    NotFound,
    /// Stored data cannot be decoded (corrupt JSON, unknown enum value).
    InvalidData,
    /// Anything else (a bug, a permission error).
    Other,
}

impl StorageErrorKind {
    /// Whether an identical retry may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Unavailable | Self::Timeout | Self::Busy)
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Unavailable => "unavailable",
            Self::Timeout => "timeout",
            Self::Busy => "busy",
            Self::Conflict => "conflict",
            Self::NotFound => "not found",
            Self::InvalidData => "invalid data",
            Self::Other => "error",
        }
    }
}

impl fmt::Display for StorageErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A backend failure: a kind, the operation, a short message and an optional
/// driver error as source. Backends must keep secrets out of the message
/// and out of the source's `Display` and `Debug` (no connection strings with
/// passwords, no bound parameters): both end up in logs.
#[derive(Debug, Clone, thiserror::Error)]
#[error("storage {kind} in {operation}: {message}")]
pub struct StorageError {
    kind: StorageErrorKind,
    operation: &'static str,
    message: String,
    /// Boxed: most errors have none, and every error type embedding a
    /// `StorageError` stays small.
    taken: Option<Box<RefreshTokenTaken>>,
    #[source]
    source: Option<Arc<dyn StdError + Send + Sync>>,
}

/// A catalog write refused because the refresh token it would store is
/// already held: two accounts sharing one rotating refresh token means
/// the first refresh of either rotates it and the other loses its grant.
/// Read it with [`StorageError::refresh_token_taken`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshTokenTaken {
    /// The entry of an import whose token is taken; `None` for a single
    /// `create` or `replace_credentials`.
    pub entry: Option<usize>,
    /// Who holds it.
    pub holder: TokenHolder,
}

/// Who already holds a refresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenHolder {
    /// A stored account.
    Account(AccountId),
    /// An earlier entry of the same import.
    Entry(usize),
}

impl fmt::Display for RefreshTokenTaken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(entry) = self.entry {
            write!(f, "entry {entry}: ")?;
        }
        f.write_str("credentials.refresh_token: ")?;
        match self.holder {
            TokenHolder::Account(id) => write!(f, "already held by account {id}")?,
            TokenHolder::Entry(entry) => write!(f, "the same refresh token as entry {entry}")?,
        }
        f.write_str(
            " (two accounts sharing one rotating refresh token lose each other's rotations)",
        )
    }
}

impl StorageError {
    /// A new error.
    pub fn new(
        kind: StorageErrorKind,
        operation: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            operation,
            message: message.into(),
            taken: None,
            source: None,
        }
    }

    /// A [`StorageErrorKind::Conflict`]: the refresh token of `taken.entry`
    /// is already held by `taken.holder`.
    pub fn refresh_token_taken(operation: &'static str, taken: RefreshTokenTaken) -> Self {
        Self {
            taken: Some(Box::new(taken)),
            ..Self::conflict(operation, taken.to_string())
        }
    }

    /// Which refresh token a catalog write was refused for, and who holds
    /// it; `None` for every other error.
    pub fn taken_refresh_token(&self) -> Option<RefreshTokenTaken> {
        self.taken.as_deref().copied()
    }

    /// This error with `entry` as the import entry it is about (a refresh
    /// token conflict found while storing entry `entry` of a batch).
    #[must_use]
    pub fn in_entry(mut self, entry: usize) -> Self {
        match &mut self.taken {
            Some(taken) => {
                taken.entry = Some(entry);
                self.message = taken.to_string();
            }
            None => self.message = format!("entry {entry}: {}", self.message),
        }
        self
    }

    /// Shorthand for [`StorageErrorKind::Unavailable`].
    pub fn unavailable(operation: &'static str, message: impl Into<String>) -> Self {
        Self::new(StorageErrorKind::Unavailable, operation, message)
    }

    /// Shorthand for [`StorageErrorKind::Timeout`].
    pub fn timeout(operation: &'static str, message: impl Into<String>) -> Self {
        Self::new(StorageErrorKind::Timeout, operation, message)
    }

    /// Shorthand for [`StorageErrorKind::Busy`].
    pub fn busy(operation: &'static str, message: impl Into<String>) -> Self {
        Self::new(StorageErrorKind::Busy, operation, message)
    }

    /// Shorthand for [`StorageErrorKind::Conflict`].
    pub fn conflict(operation: &'static str, message: impl Into<String>) -> Self {
        Self::new(StorageErrorKind::Conflict, operation, message)
    }

    /// Shorthand for [`StorageErrorKind::NotFound`].
    pub fn not_found(operation: &'static str, message: impl Into<String>) -> Self {
        Self::new(StorageErrorKind::NotFound, operation, message)
    }

    /// Shorthand for [`StorageErrorKind::InvalidData`].
    pub fn invalid_data(operation: &'static str, message: impl Into<String>) -> Self {
        Self::new(StorageErrorKind::InvalidData, operation, message)
    }

    /// Shorthand for [`StorageErrorKind::Other`].
    pub fn other(operation: &'static str, message: impl Into<String>) -> Self {
        Self::new(StorageErrorKind::Other, operation, message)
    }

    /// Attaches the driver error.
    pub fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// The kind.
    pub fn kind(&self) -> StorageErrorKind {
        self.kind
    }

    /// The message, without the kind and the operation.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The operation that failed (`get`, `compare_and_set_credentials`, ...).
    pub fn operation(&self) -> &'static str {
        self.operation
    }

    /// Whether a retry may help; from the kind, never from the message.
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }
}
