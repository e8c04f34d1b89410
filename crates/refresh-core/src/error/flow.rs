//! [`FlowError`]: a refresh operation failed, and at which stage.

use std::fmt;

use super::{ProviderError, StorageError};
use crate::domain::{AccountId, Credentials, Platform, RefreshKey};

/// The stage of the refresh flow an error comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowStage {
    /// Taking the lease.
    Lock,
    /// Reading or persisting a recovery record.
    Recovery,
    /// Re-reading the account under the lease.
    Reread,
    /// The upstream call.
    Upstream,
    /// The fenced write.
    Persist,
    /// The detached refresh task itself.
    Task,
}

impl fmt::Display for FlowStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Lock => "lock",
            Self::Recovery => "recovery",
            Self::Reread => "reread",
            Self::Upstream => "upstream",
            Self::Persist => "persist",
            Self::Task => "task",
        })
    }
}

/// A refresh operation that did not complete. Carries no token material in
/// its `Display`; [`FlowError::NotPersisted`] carries the new credentials in
/// a field whose `Debug` is redacted.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum FlowError {
    /// Neither lock layer could be reached and lock-free refresh is not
    /// allowed (REFERENCE.md defect 4).
    #[error("no refresh lock could be taken for {key}")]
    LockUnavailable {
        /// The key.
        key: RefreshKey,
        /// The last lock error.
        #[source]
        source: StorageError,
    },
    /// The lease lapsed or was taken over before the upstream call; nothing
    /// was sent (invariant 4).
    #[error("refresh lease for {key} was lost before the upstream call")]
    LeaseLost {
        /// The key.
        key: RefreshKey,
    },
    /// The recovery store failed.
    #[error("recovery store failed for account {id}")]
    Recovery {
        /// The account.
        id: AccountId,
        /// The store error.
        #[source]
        source: StorageError,
    },
    /// Re-reading the account under the lease failed; the caller's snapshot
    /// is never used instead (defect 6).
    #[error("re-reading account {id} failed")]
    Reread {
        /// The account.
        id: AccountId,
        /// The repository error.
        #[source]
        source: StorageError,
    },
    /// The account no longer exists.
    #[error("account {id} not found")]
    AccountNotFound {
        /// The account.
        id: AccountId,
    },
    /// The account is not (or no longer) refreshable by the executor.
    #[error("account {id} is not eligible for refresh by the {platform} executor")]
    NotEligible {
        /// The account.
        id: AccountId,
        /// The executor's platform.
        platform: Platform,
    },
    /// The upstream refresh failed (after race recovery).
    #[error("upstream refresh of account {id} failed")]
    Upstream {
        /// The account.
        id: AccountId,
        /// The `credentials_version` the failed refresh started from.
        version: u64,
        /// The classified provider error.
        #[source]
        source: ProviderError,
    },
    /// The executor returned credentials without an access token.
    #[error("executor returned no usable credentials for account {id}")]
    EmptyCredentials {
        /// The account.
        id: AccountId,
    },
    /// The upstream rotated the tokens but the fenced write failed after its
    /// retries. The credentials are carried here and, when
    /// `recovery_saved`, kept in the recovery store for the next flow
    /// (invariant 2).
    #[error(
        "account {id} was refreshed upstream but the new credentials were not persisted (recovery record saved: {recovery_saved})"
    )]
    NotPersisted {
        /// The account.
        id: AccountId,
        /// The new credentials (redacted `Debug`).
        credentials: Box<Credentials>,
        /// Whether a recovery record holds them.
        recovery_saved: bool,
        /// The last write error.
        #[source]
        source: StorageError,
    },
    /// The detached refresh task panicked or was aborted.
    #[error("refresh task for {key} ended abnormally")]
    TaskFailed {
        /// The key.
        key: RefreshKey,
    },
}

impl FlowError {
    /// The stage that failed.
    pub fn stage(&self) -> FlowStage {
        match self {
            Self::LockUnavailable { .. } | Self::LeaseLost { .. } => FlowStage::Lock,
            Self::Recovery { .. } => FlowStage::Recovery,
            Self::Reread { .. } | Self::AccountNotFound { .. } | Self::NotEligible { .. } => {
                FlowStage::Reread
            }
            Self::Upstream { .. } | Self::EmptyCredentials { .. } => FlowStage::Upstream,
            Self::NotPersisted { .. } => FlowStage::Persist,
            Self::TaskFailed { .. } => FlowStage::Task,
        }
    }

    /// Whether a later attempt may succeed. From the kind of the underlying
    /// error, never from message text.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Recovery { source, .. } | Self::Reread { source, .. } => source.is_retryable(),
            Self::Upstream { source, .. } => source.is_retryable(),
            Self::AccountNotFound { .. } | Self::NotEligible { .. } => false,
            Self::LockUnavailable { .. }
            | Self::LeaseLost { .. }
            | Self::EmptyCredentials { .. }
            | Self::NotPersisted { .. }
            | Self::TaskFailed { .. } => true,
        }
    }

    /// The provider error, for upstream failures.
    pub fn provider_error(&self) -> Option<&ProviderError> {
        match self {
            Self::Upstream { source, .. } => Some(source),
            _ => None,
        }
    }

    /// A short, secret-free description for the `error_message` column:
    /// `Token refresh failed (non-retryable): <error>: <cause>: ...`.
    pub fn account_error_message(&self) -> String {
        let mut message = format!("Token refresh failed (non-retryable): {self}");
        let mut cause = std::error::Error::source(self);
        while let Some(error) = cause {
            message.push_str(": ");
            message.push_str(&error.to_string());
            cause = error.source();
        }
        message.chars().take(500).collect()
    }
}
