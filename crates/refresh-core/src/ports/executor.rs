//! [`RefreshExecutor`]: the provider plugin SPI, and the [`RefreshContext`]
//! the flow hands it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::domain::{Account, AccountType, Credentials, Platform, RefreshKey, Secret};
use crate::error::ProviderError;
use crate::policy::needs_refresh;
use crate::ports::{Clock, SystemClock};

/// What the flow tells an executor about one refresh. `#[non_exhaustive]`
/// so the SPI can grow without breaking plugins; build one with
/// [`RefreshContext::new`] in tests.
#[derive(Clone)]
#[non_exhaustive]
pub struct RefreshContext {
    /// The refresh token the flow claimed: the executor sends exactly this
    /// value, never another one read from the account.
    pub refresh_token: Secret,
    /// The flow's clock; `now()` stamps expiries.
    pub clock: Arc<dyn Clock>,
    /// The hard deadline of the token request. The flow aborts the call
    /// (closing its connection) at this instant; an executor may use it to
    /// bound its own requests.
    pub deadline: Instant,
}

impl RefreshContext {
    /// A context for `refresh_token` on `clock`, due by `deadline`.
    pub fn new(refresh_token: Secret, clock: Arc<dyn Clock>, deadline: Instant) -> Self {
        Self {
            refresh_token,
            clock,
            deadline,
        }
    }

    /// A context for `refresh_token` on the system clock with `timeout`
    /// from now: for tests and tools that call an executor directly.
    pub fn for_token(refresh_token: impl Into<Secret>, timeout: Duration) -> Self {
        Self::new(
            refresh_token.into(),
            Arc::new(SystemClock),
            Instant::now() + timeout,
        )
    }

    /// The flow's current time.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Time left until [`deadline`](Self::deadline).
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

impl std::fmt::Debug for RefreshContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshContext")
            .field("refresh_token", &self.refresh_token)
            .field("remaining", &self.remaining())
            .finish_non_exhaustive()
    }
}

/// One upstream provider's refresh logic. A plugin implements this (and
/// depends on `refresh-core` alone); the flow supplies locking, the
/// generation claim, fencing, persistence and recovery.
///
/// # Contract
/// The generation claim is only as good as these rules; the executor
/// conformance suite checks them.
/// - [`refresh`](Self::refresh) sends **at most one** token request per
///   call, presenting exactly [`RefreshContext::refresh_token`]. It retries
///   internally only when the request provably was not sent (DNS, connect,
///   TLS or proxy refusal), and reports that case as
///   [`ProviderError::NotSent`].
/// - Once the token endpoint answered 2xx with usable tokens, it returns
///   them (merged over the old credentials: an omitted refresh token keeps
///   the old one). Follow-up failures (profile, project discovery) are
///   reported separately (a marker key, a log), never as the refresh's
///   error.
/// - A 2xx with an unusable body is [`ProviderError::InvalidResponse`]: the
///   upstream processed the request, so the token may be consumed.
/// - It never writes storage; the flow persists.
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

    /// Whether the upstream rotates refresh tokens (default `true`). Google
    /// keeps them: for a non-rotating executor re-sending a token is
    /// harmless, so a maybe-consumed outcome is not quarantined. An answer
    /// that does carry a new refresh token is handled as a rotation anyway.
    fn rotates_refresh_token(&self) -> bool {
        true
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
    /// `<platform prefix>:account:<id>`. An override must be stable across
    /// credential changes and distinct per account id: single flights,
    /// leases and cached tokens are shared by everything with the same key.
    fn key(&self, account: &Account) -> RefreshKey {
        RefreshKey::for_account(&self.platform(), account.id)
    }

    /// The token of an account of this platform that is never refreshed
    /// (a Claude setup token, an Antigravity `upstream` API key), or `None`
    /// when the account type is not served statically.
    fn static_token(&self, _account: &Account) -> Option<Secret> {
        None
    }

    /// Presents `ctx.refresh_token` to the upstream once and returns the new
    /// credentials merged over the old ones.
    ///
    /// # Errors
    /// A classified [`ProviderError`]; see the contract for which kinds say
    /// "not sent".
    async fn refresh(
        &self,
        account: &Account,
        ctx: &RefreshContext,
    ) -> Result<Credentials, ProviderError>;
}
