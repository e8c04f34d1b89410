//! [`StorageError`]: what every port returns when its backend fails.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

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
    #[source]
    source: Option<Arc<dyn StdError + Send + Sync>>,
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
            source: None,
        }
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

    /// The operation that failed (`get`, `compare_and_set_credentials`, ...).
    pub fn operation(&self) -> &'static str {
        self.operation
    }

    /// Whether a retry may help; from the kind, never from the message.
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }
}
