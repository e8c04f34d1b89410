//! [`RefreshOutcome`]: what a refresh operation did.

use crate::domain::Account;

/// The result of [`RefreshFlow::refresh_if_needed`](super::RefreshFlow::refresh_if_needed).
#[derive(Debug, Clone, PartialEq)]
pub enum RefreshOutcome {
    /// New credentials were persisted; the account as stored now.
    Refreshed {
        /// The account after the write.
        account: Account,
        /// The credentials came from an answer stored in a generation claim
        /// rather than a new upstream call.
        recovered: bool,
    },
    /// No refresh was needed after the re-read, or race recovery found
    /// another worker's rotation; the account as stored.
    StillFresh {
        /// The stored account.
        account: Account,
    },
    /// Another instance holds the refresh lease.
    HeldElsewhere,
}

impl RefreshOutcome {
    /// The account, unless held elsewhere.
    pub fn account(&self) -> Option<&Account> {
        match self {
            Self::Refreshed { account, .. } | Self::StillFresh { account } => Some(account),
            Self::HeldElsewhere => None,
        }
    }
}
