//! [`TokenProvider`]: the cache-first token getter of the request path.
//!
//! in-process cache → shared [`TokenCache`] → refresh through the
//! [`RefreshFlow`] when within the skew → wait for a refresh held elsewhere
//! (notification, bounded poll fallback) → [`ProviderRefreshPolicy`].

mod access_token;
mod builder;
mod local_cache;
mod metrics;
mod resolve;
mod wait;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

pub use crate::ports::ExecutorRegistry;
pub use access_token::AccessToken;
pub use builder::TokenProviderBuilder;
pub use metrics::{MetricsSnapshot, PlatformMetrics, TokenMetrics};

use self::local_cache::LocalCache;
use self::metrics::Event;
use crate::concurrency::{SingleFlight, bounded};
use crate::domain::{Account, AccountId, AccountStatus, Platform, RefreshKey};
use crate::error::{FlowError, TokenError};
use crate::flow::RefreshFlow;
use crate::policy::ProviderRefreshPolicy;
use crate::ports::RefreshListener;
use crate::ports::{RefreshExecutor, TokenCache};

/// The request path refreshes tokens expiring within this skew.
pub const REFRESH_SKEW: Duration = Duration::from_secs(3 * 60);

/// Default longest in-process caching of any entry
/// ([`TokenProviderBuilder::local_max_age`]).
pub const LOCAL_MAX_AGE: Duration = Duration::from_secs(30);

/// Longest in-process caching of a token the store could not confirm.
pub(crate) const UNVERIFIED_TTL: Duration = Duration::from_secs(60);

type TokenResult = Result<AccessToken, TokenError>;

/// Hands out currently valid access tokens. Cheap to clone.
#[derive(Clone)]
pub struct TokenProvider {
    inner: Arc<ProviderInner>,
}

struct ProviderInner {
    flow: RefreshFlow,
    executors: ExecutorRegistry,
    shared: Option<Arc<dyn TokenCache>>,
    local: LocalCache,
    policies: HashMap<Platform, ProviderRefreshPolicy>,
    skew: Duration,
    local_max_age: Duration,
    metrics: TokenMetrics,
    flights: Arc<SingleFlight<RefreshKey, TokenResult>>,
    /// Cold reads by id, one per account at a time.
    by_id: Arc<SingleFlight<AccountId, TokenResult>>,
}

impl std::fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenProvider")
            .field("executors", &self.inner.executors)
            .field("skew", &self.inner.skew)
            .finish_non_exhaustive()
    }
}

impl TokenProvider {
    /// Starts a builder.
    pub fn builder(flow: RefreshFlow, executors: ExecutorRegistry) -> TokenProviderBuilder {
        TokenProviderBuilder {
            flow,
            executors,
            shared: None,
            policies: HashMap::new(),
            skew: REFRESH_SKEW,
            capacity: 100_000,
            local_max_age: LOCAL_MAX_AGE,
        }
    }

    /// A currently valid access token for `account`.
    ///
    /// The warm path is one in-process cache lookup. On a miss, concurrent
    /// callers for the same account share one resolution: shared cache, then
    /// the stored account (a newer version wins over the caller's snapshot),
    /// a refresh when within the skew, a bounded wait when the refresh is
    /// held elsewhere. A token that has expired is never returned.
    ///
    /// An account that is not `active` (`disabled`, `error`) is neither
    /// served nor refreshed: [`TokenError::Inactive`], also when the stored
    /// account read on a miss is no longer active.
    ///
    /// # Errors
    /// A [`TokenError`]: an inactive account, unsupported platform or type,
    /// no access token, a failed refresh the policy does not absorb, a wait
    /// that timed out with an expired token.
    pub async fn access_token(&self, account: &Account) -> TokenResult {
        self.access_token_inner(account, None, Snapshot::Caller)
            .await
    }

    /// A currently valid access token for the account with id `id`: the
    /// read of a sidecar that knows only ids.
    ///
    /// The warm path touches no storage, no shared cache and no executor:
    /// once a token of the account was resolved in this process, it is one
    /// in-process lookup by id until the token enters the refresh skew (or
    /// is invalidated). A miss reads the account and continues as
    /// [`access_token`](Self::access_token): an account that is not
    /// `active` is [`TokenError::Inactive`], never refreshed. (A status
    /// change made by another process reaches a warm entry when it lapses,
    /// at the latest when the token enters the skew; one made through this
    /// process's catalog should be followed by
    /// [`invalidate_local`](Self::invalidate_local).)
    ///
    /// # Errors
    /// [`TokenError::UnknownAccount`] when no account has the id,
    /// [`TokenError::Storage`] when it cannot be read, and every error of
    /// [`access_token`](Self::access_token).
    pub async fn access_token_by_id(&self, id: AccountId) -> TokenResult {
        let inner = &self.inner;
        if let Some(token) = inner.local.get(id, inner.flow.clock().now()) {
            return Ok(token);
        }
        // Concurrent cold reads of one account share one read and one
        // resolution: a stampede of N callers costs one query, not N
        // (which would starve the pool the refresh itself needs).
        let provider = self.clone();
        let flight = inner.by_id.join_or_start(&id, || async move {
            let inner = &provider.inner;
            let read = inner.flow.repository().get(id);
            let account = bounded(inner.storage_timeout(), "get", read)
                .await
                .map_err(|source| TokenError::Storage { id, source })?
                .ok_or(TokenError::UnknownAccount { id })?;
            // The account was read just now: no second read of it.
            provider
                .access_token_inner(&account, None, Snapshot::Stored)
                .await
        });
        flight.await.unwrap_or(Err(TokenError::Refresh {
            id,
            source: FlowError::TaskFailed {
                key: RefreshKey::from_raw(format!("account:{id}")),
            },
        }))
    }

    /// As [`access_token`](Self::access_token), returning
    /// [`TokenError::Cancelled`] as soon as `cancel` fires. A refresh already
    /// sent still completes in the background.
    ///
    /// # Errors
    /// As [`access_token`](Self::access_token), plus `Cancelled`.
    pub async fn access_token_with_cancel(
        &self,
        account: &Account,
        cancel: &CancellationToken,
    ) -> TokenResult {
        self.access_token_inner(account, Some(cancel), Snapshot::Caller)
            .await
    }

    async fn access_token_inner(
        &self,
        account: &Account,
        cancel: Option<&CancellationToken>,
        snapshot: Snapshot,
    ) -> TokenResult {
        let inner = &self.inner;
        inactive(account)?;
        let executor = inner.executors.get(&account.platform).ok_or_else(|| {
            TokenError::UnsupportedPlatform {
                platform: account.platform.clone(),
            }
        })?;
        if !executor.can_refresh(account) {
            return static_token(executor.as_ref(), account);
        }
        let now = inner.flow.clock().now();
        if let Some(token) = inner.local.get(account.id, now) {
            return Ok(token);
        }
        inner.flow.observer().process_cache_miss();
        let key = executor.key(account);
        let flight = inner.flights.join_or_start(&key, || {
            let (inner, account, executor, key) = (
                Arc::clone(&self.inner),
                account.clone(),
                Arc::clone(executor),
                key.clone(),
            );
            async move { inner.resolve(&account, snapshot, &executor, &key).await }
        });
        let result = match cancel {
            None => flight.await,
            Some(cancel) => tokio::select! {
                result = flight => result,
                () = cancel.cancelled() => {
                    inner.metrics(&account.platform).record(Event::Cancelled, unix_ms(inner));
                    return Err(TokenError::Cancelled { id: account.id });
                }
            },
        };
        result.unwrap_or(Err(TokenError::Refresh {
            id: account.id,
            source: FlowError::TaskFailed { key },
        }))
    }

    /// Reads served from process memory so far (the warm path reports to
    /// no [`FlowObserver`](crate::FlowObserver); a metrics exporter reads
    /// this counter instead).
    pub fn local_hits(&self) -> u64 {
        self.inner.local.hits()
    }

    /// Drops the in-process cached token of an account.
    pub fn invalidate_local(&self, id: AccountId) {
        self.inner.local.invalidate(id);
    }

    /// The request-path counters.
    pub fn metrics(&self) -> &TokenMetrics {
        &self.inner.metrics
    }
}

/// Where the account a resolution starts from came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Snapshot {
    /// The caller's copy, possibly old: the stored account is read first.
    Caller,
    /// Read from the store by this call just before.
    Stored,
}

/// [`TokenError::Inactive`] for an account that is not `active`.
pub(super) fn inactive(account: &Account) -> Result<(), TokenError> {
    if account.status == AccountStatus::Active {
        Ok(())
    } else {
        Err(TokenError::Inactive {
            id: account.id,
            status: account.status,
        })
    }
}

fn static_token(executor: &dyn RefreshExecutor, account: &Account) -> TokenResult {
    let token = executor
        .static_token(account)
        .ok_or_else(|| TokenError::NotEligible {
            id: account.id,
            platform: account.platform.clone(),
            account_type: account.account_type,
        })?;
    if token.is_blank() {
        return Err(TokenError::MissingAccessToken { id: account.id });
    }
    Ok(AccessToken {
        account_id: account.id,
        token,
        expires_at: None,
        version: account.credentials_version,
    })
}

fn unix_ms(inner: &ProviderInner) -> u64 {
    u64::try_from(inner.flow.clock().now().timestamp_millis()).unwrap_or(0)
}

#[async_trait]
impl RefreshListener for TokenProvider {
    async fn on_refreshed(&self, account: &Account) {
        self.invalidate_local(account.id);
    }
}
