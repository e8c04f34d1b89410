//! [`RefreshListener`]: users' own post-refresh actions.

use async_trait::async_trait;

use crate::domain::Account;

/// Runs after each successful background refresh, after the built-in
/// post-refresh actions (clear temp-unschedulable, invalidate the cache).
///
/// # Contract
/// Best effort: a listener cannot fail the refresh, logs its own errors,
/// never logs secrets, and should return promptly (it runs inside the
/// account's deadline).
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait RefreshListener: Send + Sync {
    /// The account as stored after the refresh.
    async fn on_refreshed(&self, account: &Account);
}
