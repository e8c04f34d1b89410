//! [`RefreshExecutor`]: the provider plugin SPI.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::{Account, AccountType, Credentials, Platform, RefreshKey, Secret};
use crate::error::ProviderError;
use crate::policy::needs_refresh;

/// One upstream provider's refresh logic. A plugin implements this (and
/// depends on `refresh-core` alone); the flow supplies locking, fencing,
/// persistence and recovery.
///
/// # Contract
/// - [`refresh`](Self::refresh) presents the account's refresh token to the
///   upstream at most once per call and returns the new credentials merged
///   over the old ones (an omitted refresh token keeps the old one). It
///   never writes storage; the flow persists.
/// - Errors are classified [`ProviderError`]s with no token material and no
///   raw body.
/// - The provided methods share one due predicate between the request path
///   and the background refresher (REFERENCE.md defect 10); override
///   [`min_window`](Self::min_window) rather than the predicate.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait RefreshExecutor: Send + Sync {
    /// The platform served.
    fn platform(&self) -> Platform;

    /// Whether the flow may refresh this account: by default, the platform
    /// matches and the type is `oauth`.
    fn can_refresh(&self, account: &Account) -> bool {
        account.platform == self.platform() && account.account_type == AccountType::OAuth
    }

    /// The smallest refresh window of this platform (Antigravity: 15 min).
    fn min_window(&self) -> Duration {
        Duration::ZERO
    }

    /// Whether the access token is due within `max(window, min_window)`.
    fn needs_refresh(&self, account: &Account, window: Duration, now: DateTime<Utc>) -> bool {
        needs_refresh(account, window.max(self.min_window()), now)
    }

    /// The lock, cache and notification key: by default
    /// `<platform prefix>:account:<id>`. An override must stay unique per
    /// account and depend on the account id only: single flights, leases and
    /// cached tokens are shared by everything with the same key.
    fn key(&self, account: &Account) -> RefreshKey {
        RefreshKey::for_account(&self.platform(), account.id)
    }

    /// The token of an account of this platform that is never refreshed
    /// (a Claude setup token, an Antigravity `upstream` API key), or `None`
    /// when the account type is not served statically.
    fn static_token(&self, _account: &Account) -> Option<Secret> {
        None
    }

    /// Calls the upstream and returns the new credentials merged over the
    /// old ones.
    ///
    /// # Errors
    /// A classified [`ProviderError`].
    async fn refresh(&self, account: &Account) -> Result<Credentials, ProviderError>;
}
