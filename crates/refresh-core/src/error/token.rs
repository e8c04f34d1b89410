//! [`TokenError`]: why [`TokenProvider::access_token`](crate::TokenProvider::access_token)
//! returned no token.

use std::time::Duration;

use super::{FlowError, StorageError};
use crate::domain::{AccountId, AccountStatus, AccountType, Platform};

/// The request path could not produce a currently valid access token.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// No executor is registered for the account's platform.
    #[error("no executor registered for platform {platform}")]
    UnsupportedPlatform {
        /// The platform.
        platform: Platform,
    },
    /// The account's platform or type is not served (e.g. a Bedrock account).
    #[error("account {id} ({platform}/{account_type}) is not served by the token provider")]
    NotEligible {
        /// The account.
        id: AccountId,
        /// Its platform.
        platform: Platform,
        /// Its type.
        account_type: AccountType,
    },
    /// The credentials hold no access token.
    #[error("access_token not found in credentials of account {id}")]
    MissingAccessToken {
        /// The account.
        id: AccountId,
    },
    /// The refresh failed and the policy does not allow the existing token
    /// (or it has expired).
    #[error("refresh of account {id} failed")]
    Refresh {
        /// The account.
        id: AccountId,
        /// The flow error.
        #[source]
        source: FlowError,
    },
    /// A refresh held elsewhere did not produce a valid token in time, and
    /// the existing token has expired.
    #[error(
        "account {id}: refresh held elsewhere did not finish within {waited:?} and the stored token has expired"
    )]
    WaitTimedOut {
        /// The account.
        id: AccountId,
        /// How long the caller waited.
        waited: Duration,
    },
    /// The only token available has expired.
    #[error("the access token of account {id} has expired")]
    Expired {
        /// The account.
        id: AccountId,
    },
    /// The caller cancelled while waiting.
    #[error("cancelled while waiting for the token of account {id}")]
    Cancelled {
        /// The account.
        id: AccountId,
    },
    /// The account is `disabled` or `error`: it is neither served nor
    /// refreshed until an operator sets it `active` again.
    #[error("account {id} is {status}, not active")]
    Inactive {
        /// The account.
        id: AccountId,
        /// Its status.
        status: AccountStatus,
    },
    /// No account has this id.
    #[error("account {id} not found")]
    UnknownAccount {
        /// The id asked for.
        id: AccountId,
    },
    /// Reading the account failed and no usable snapshot was left.
    #[error("reading account {id} failed")]
    Storage {
        /// The account.
        id: AccountId,
        /// The repository error.
        #[source]
        source: StorageError,
    },
}

impl TokenError {
    /// Whether retrying the call may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Refresh { source, .. } => source.is_retryable(),
            Self::Storage { source, .. } => source.is_retryable(),
            Self::WaitTimedOut { .. } | Self::Cancelled { .. } | Self::Expired { .. } => true,
            Self::UnsupportedPlatform { .. }
            | Self::NotEligible { .. }
            | Self::MissingAccessToken { .. }
            | Self::Inactive { .. }
            | Self::UnknownAccount { .. } => false,
        }
    }
}
