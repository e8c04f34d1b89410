//! [`FlowError`]: a refresh operation failed, and at which stage.

use std::fmt;

use chrono::{DateTime, Utc};

use super::{ProviderError, StorageError, redact_token_like};
use crate::domain::{AccountId, Credentials, Platform, RefreshKey};

/// The stage of the refresh flow an error comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowStage {
    /// Taking the lease.
    Lock,
    /// The generation claim.
    Claim,
    /// Re-reading the account under the lease.
    Reread,
    /// The upstream call.
    Upstream,
    /// The fenced write.
    Persist,
    /// The detached refresh task itself.
    Task,
}

impl FlowStage {
    /// The stage's stable lower-case name (`lock`, `claim`, `reread`,
    /// `upstream`, `persist`, `task`), usable as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lock => "lock",
            Self::Claim => "claim",
            Self::Reread => "reread",
            Self::Upstream => "upstream",
            Self::Persist => "persist",
            Self::Task => "task",
        }
    }
}

impl fmt::Display for FlowStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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
    /// The claim store could not be asked or refused the claim: the token
    /// was not presented (invariant 1).
    #[error("generation claim for account {id} failed")]
    Claim {
        /// The account.
        id: AccountId,
        /// The store error.
        #[source]
        source: StorageError,
    },
    /// An earlier request presenting the account's refresh token may have
    /// consumed it and no answer came: nobody presents it again until the
    /// quarantine ends (by the claim store's clock).
    #[error("refresh of account {id} is quarantined until {until}")]
    Quarantined {
        /// The account.
        id: AccountId,
        /// When the quarantine ends, on this process's clock.
        until: DateTime<Utc>,
    },
    /// The account holds a refresh token whose generation was already
    /// consumed (an old export re-imported, a backup restored). Nothing was
    /// sent; needs a human (a fresh login or import).
    #[error("account {id} holds a consumed refresh token (credentials regressed)")]
    CredentialsRegressed {
        /// The account.
        id: AccountId,
        /// The `credentials_version` that holds it.
        version: u64,
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
    /// retries. The credentials are carried here; when `answer_saved` the
    /// generation claim holds them and the next flow applies them
    /// (invariant 2), otherwise a detached rescue keeps retrying the write
    /// and the claim under the leases.
    #[error(
        "account {id} was refreshed upstream but the new credentials were not persisted (answer saved in the claim: {answer_saved})"
    )]
    NotPersisted {
        /// The account.
        id: AccountId,
        /// The new credentials (redacted `Debug`).
        credentials: Box<Credentials>,
        /// Whether the generation claim holds them.
        answer_saved: bool,
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
            Self::LockUnavailable { .. } => FlowStage::Lock,
            Self::Claim { .. } | Self::Quarantined { .. } | Self::CredentialsRegressed { .. } => {
                FlowStage::Claim
            }
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
            Self::Claim { source, .. } | Self::Reread { source, .. } => source.is_retryable(),
            Self::Upstream { source, .. } => source.is_retryable(),
            Self::AccountNotFound { .. }
            | Self::NotEligible { .. }
            | Self::Quarantined { .. }
            | Self::CredentialsRegressed { .. } => false,
            Self::LockUnavailable { .. }
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

    /// The `credentials_version` a failure that deserves an error mark was
    /// observed on: an upstream refusal or regressed credentials. `None` for
    /// failures that are not the account's fault.
    pub fn observed_version(&self) -> Option<u64> {
        match self {
            Self::Upstream { version, .. } | Self::CredentialsRegressed { version, .. } => {
                Some(*version)
            }
            _ => None,
        }
    }

    /// A short, secret-free description for the `error_message` column:
    /// `Token refresh failed (non-retryable): <error>: <cause>: ...`, with
    /// every token-like word of the chain (an executor-supplied reason
    /// included) redacted.
    pub fn account_error_message(&self) -> String {
        let mut message = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(error) = cause {
            message.push_str(": ");
            message.push_str(&error.to_string());
            cause = error.source();
        }
        let message = format!(
            "Token refresh failed (non-retryable): {}",
            redact_token_like(&message)
        );
        message.chars().take(500).collect()
    }
}
