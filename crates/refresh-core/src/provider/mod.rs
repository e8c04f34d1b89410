//! [`TokenProvider`]: the cache-first token getter of the request path.
//!
//! in-process cache → shared [`TokenCache`] → refresh through the
//! [`RefreshFlow`] when within the skew → wait for a refresh held elsewhere
//! (notification, bounded poll fallback) → [`ProviderRefreshPolicy`].

mod access_token;
mod local_cache;
mod metrics;
mod registry;
mod wait;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

pub use access_token::AccessToken;
pub use metrics::{MetricsSnapshot, PlatformMetrics, TokenMetrics};
pub use registry::ExecutorRegistry;

use self::local_cache::LocalCache;
use self::metrics::Event;
use crate::background::RefreshListener;
use crate::domain::{Account, AccountId, Platform, RefreshKey};
use crate::error::{FlowError, TokenError};
use crate::flow::single_flight::SingleFlight;
use crate::flow::{RefreshFlow, RefreshOutcome, bounded};
use crate::policy::{
    OnLockHeld, OnRefreshError, ProviderRefreshPolicy, cache_ttl, failure_ttl, token_is_valid,
};
use crate::ports::{RefreshExecutor, TokenCache};

/// The request path refreshes tokens expiring within this skew.
pub const REFRESH_SKEW: Duration = Duration::from_secs(3 * 60);

/// Longest in-process caching of a token the store could not confirm.
const UNVERIFIED_TTL: Duration = Duration::from_secs(60);

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
    metrics: TokenMetrics,
    flights: Arc<SingleFlight<RefreshKey, TokenResult>>,
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
    /// # Errors
    /// A [`TokenError`]: unsupported platform or type, no access token, a
    /// failed refresh the policy does not absorb, a wait that timed out
    /// with an expired token.
    pub async fn access_token(&self, account: &Account) -> TokenResult {
        self.access_token_inner(account, None).await
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
        self.access_token_inner(account, Some(cancel)).await
    }

    async fn access_token_inner(
        &self,
        account: &Account,
        cancel: Option<&CancellationToken>,
    ) -> TokenResult {
        let inner = &self.inner;
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
        let key = executor.key(account);
        let flight = inner.flights.join_or_start(&key, || {
            let (inner, account, executor, key) = (
                Arc::clone(&self.inner),
                account.clone(),
                Arc::clone(executor),
                key.clone(),
            );
            async move { inner.resolve(&account, &executor, &key).await }
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

    /// Drops the in-process cached token of an account.
    pub fn invalidate_local(&self, id: AccountId) {
        self.inner.local.invalidate(id);
    }

    /// The request-path counters.
    pub fn metrics(&self) -> &TokenMetrics {
        &self.inner.metrics
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

impl ProviderInner {
    fn policy(&self, platform: &Platform) -> ProviderRefreshPolicy {
        self.policies
            .get(platform)
            .cloned()
            .unwrap_or_else(|| ProviderRefreshPolicy::for_platform(platform))
    }

    fn metrics(&self, platform: &Platform) -> Arc<PlatformMetrics> {
        self.metrics.platform(platform)
    }

    fn record(&self, platform: &Platform, event: Event) {
        self.metrics(platform).record(event, unix_ms(self));
    }

    /// The slow path, shared by every concurrent caller of one account.
    async fn resolve(
        &self,
        snapshot: &Account,
        executor: &Arc<dyn RefreshExecutor>,
        key: &RefreshKey,
    ) -> TokenResult {
        let now = self.flow.clock().now();
        if let Some(shared) = &self.shared {
            match bounded(self.storage_timeout(), "cache_get", shared.get(key)).await {
                Ok(Some(cached))
                    if cached.version >= snapshot.credentials_version
                        && token_is_valid(cached.expires_at, now) =>
                {
                    let token = AccessToken::from_cached(snapshot.id, cached);
                    self.cache_locally(&token, self.ttl(token.expires_at, now));
                    return Ok(token);
                }
                Ok(_) => {}
                Err(error) => {
                    debug!(%key, kind = %error.kind(), "shared cache read failed; continuing")
                }
            }
        }
        let (mut current, verified) = self.newest(snapshot).await;
        // Tokens served by a policy fallback are cached in this process only,
        // briefly: a shared entry could outlive a newer token elsewhere
        // (REFERENCE.md defect 11).
        let mut fallback_ttl = None;
        if executor.needs_refresh(&current, self.skew, now) {
            let policy = self.policy(&current.platform);
            self.record(&current.platform, Event::RefreshRequest);
            match self
                .flow
                .refresh_if_needed(&current, executor, self.skew)
                .await
            {
                Ok(
                    RefreshOutcome::Refreshed { account, .. }
                    | RefreshOutcome::StillFresh { account },
                ) => {
                    self.record(&current.platform, Event::RefreshSuccess);
                    current = account;
                }
                Ok(RefreshOutcome::HeldElsewhere) => {
                    self.record(&current.platform, Event::LockContention);
                    match (policy.on_lock_held, self.valid_token(&current)) {
                        (OnLockHeld::UseExistingToken, Some(token)) => {
                            fallback_ttl = Some(self.fallback_ttl(policy.failure_ttl, &token));
                        }
                        _ => return self.wait_and_cache(&current, key, &policy).await,
                    }
                }
                Err(FlowError::NotPersisted { credentials, .. })
                    if credentials.access_token().is_some() =>
                {
                    // The upstream issued a token that is not stored yet (it
                    // waits in a recovery record); it is the newest there is.
                    self.record(&current.platform, Event::RefreshFailure);
                    current.credentials = *credentials;
                    let token = self.valid_token(&current);
                    let token = token.ok_or(TokenError::Expired { id: current.id })?;
                    self.cache_locally(&token, self.fallback_ttl(Duration::ZERO, &token));
                    return Ok(token);
                }
                Err(error) => {
                    self.record(&current.platform, Event::RefreshFailure);
                    if matches!(error, FlowError::LockUnavailable { .. }) {
                        self.record(&current.platform, Event::LockAcquireFailure);
                    }
                    match (policy.on_refresh_error, self.valid_token(&current)) {
                        (OnRefreshError::UseExistingToken, Some(token)) => {
                            warn!(account_id = %current.id, stage = %error.stage(), "refresh failed; serving the still-valid existing token");
                            fallback_ttl = Some(self.fallback_ttl(policy.failure_ttl, &token));
                        }
                        _ => {
                            return Err(TokenError::Refresh {
                                id: current.id,
                                source: error,
                            });
                        }
                    }
                }
            }
        }
        let token = AccessToken::of_account(&current)
            .ok_or(TokenError::MissingAccessToken { id: current.id })?;
        let now = self.flow.clock().now();
        if !token_is_valid(token.expires_at, now) {
            return Err(TokenError::Expired { id: current.id });
        }
        match fallback_ttl {
            Some(ttl) => self.cache_locally(&token, ttl),
            // The store could not confirm this is the newest token: keep it
            // briefly, in this process only.
            None if !verified => self.cache_locally(
                &token,
                self.ttl(token.expires_at, now)
                    .map(|t| t.min(UNVERIFIED_TTL)),
            ),
            None => {
                let ttl = self.ttl(token.expires_at, now);
                self.cache_everywhere(key, &token, ttl).await;
            }
        }
        Ok(token)
    }

    /// The account's access token while it is valid.
    fn valid_token(&self, account: &Account) -> Option<AccessToken> {
        AccessToken::of_account(account)
            .filter(|t| token_is_valid(t.expires_at, self.flow.clock().now()))
    }

    /// The TTL of a token served by a policy fallback.
    fn fallback_ttl(&self, ttl: Duration, token: &AccessToken) -> Option<Duration> {
        failure_ttl(ttl, token.expires_at, self.flow.clock().now())
    }

    fn storage_timeout(&self) -> Duration {
        self.flow.config().storage_timeout
    }

    /// The stored account when it is at least as new as the snapshot; the
    /// snapshot when the read fails or finds nothing (REFERENCE.md §3.7).
    /// The second value says whether the store answered.
    async fn newest(&self, snapshot: &Account) -> (Account, bool) {
        let read = self.flow.repository().get(snapshot.id);
        match bounded(self.storage_timeout(), "get", read).await {
            Ok(Some(stored)) if stored.credentials_version >= snapshot.credentials_version => {
                (stored, true)
            }
            Ok(_) => (snapshot.clone(), true),
            Err(error) => {
                debug!(account_id = %snapshot.id, kind = %error.kind(), "account read failed; using the snapshot");
                (snapshot.clone(), false)
            }
        }
    }

    /// The §5.2 cache TTL, shortened so the entry lapses by the time the
    /// token enters the refresh skew: a cached token is never served past
    /// the point where a miss would have refreshed it.
    /// A token already inside the skew (served while a refresh is held
    /// elsewhere) is cached for at most [`UNVERIFIED_TTL`].
    fn ttl(&self, expires_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<Duration> {
        let ttl = cache_ttl(expires_at, now)?;
        let Some(left) = expires_at.and_then(|at| (at - now).to_std().ok()) else {
            return Some(ttl);
        };
        Some(match left.checked_sub(self.skew).filter(|d| !d.is_zero()) {
            Some(until_due) => ttl.min(until_due),
            None => ttl.min(UNVERIFIED_TTL),
        })
    }

    async fn wait_and_cache(
        &self,
        current: &Account,
        key: &RefreshKey,
        policy: &ProviderRefreshPolicy,
    ) -> TokenResult {
        let token = self.wait_for_refresh(current, key, policy).await?;
        let ttl = self.ttl(token.expires_at, self.flow.clock().now());
        self.cache_everywhere(key, &token, ttl).await;
        Ok(token)
    }

    fn cache_locally(&self, token: &AccessToken, ttl: Option<Duration>) {
        if let Some(ttl) = ttl {
            self.local.put(token, ttl, self.flow.clock().now());
        }
    }

    async fn cache_everywhere(&self, key: &RefreshKey, token: &AccessToken, ttl: Option<Duration>) {
        let Some(ttl) = ttl else { return };
        self.cache_locally(token, Some(ttl));
        if let Some(shared) = &self.shared
            && let Err(error) = bounded(
                self.storage_timeout(),
                "cache_put",
                shared.put(key, &token.to_cached(), ttl),
            )
            .await
        {
            debug!(%key, kind = %error.kind(), "shared cache write failed");
        }
    }
}

#[async_trait]
impl RefreshListener for TokenProvider {
    async fn on_refreshed(&self, account: &Account) {
        self.invalidate_local(account.id);
    }
}

/// Builds a [`TokenProvider`].
pub struct TokenProviderBuilder {
    flow: RefreshFlow,
    executors: ExecutorRegistry,
    shared: Option<Arc<dyn TokenCache>>,
    policies: HashMap<Platform, ProviderRefreshPolicy>,
    skew: Duration,
    capacity: u64,
}

impl TokenProviderBuilder {
    /// The cache shared by all instances (Redis in production).
    pub fn shared_cache(mut self, cache: Arc<dyn TokenCache>) -> Self {
        self.shared = Some(cache);
        self
    }

    /// Overrides the policy of one platform.
    pub fn policy(mut self, platform: Platform, policy: ProviderRefreshPolicy) -> Self {
        self.policies.insert(platform, policy);
        self
    }

    /// The refresh skew (default 3 min).
    pub fn skew(mut self, skew: Duration) -> Self {
        self.skew = skew;
        self
    }

    /// Capacity of the in-process cache, in accounts (default 100 000).
    pub fn local_capacity(mut self, capacity: u64) -> Self {
        self.capacity = capacity;
        self
    }

    /// Builds the provider.
    pub fn build(self) -> TokenProvider {
        TokenProvider {
            inner: Arc::new(ProviderInner {
                flow: self.flow,
                executors: self.executors,
                shared: self.shared,
                local: LocalCache::new(self.capacity),
                policies: self.policies,
                skew: self.skew,
                metrics: TokenMetrics::default(),
                flights: Arc::new(SingleFlight::new()),
            }),
        }
    }
}
