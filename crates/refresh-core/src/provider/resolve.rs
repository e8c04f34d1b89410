//! The slow path of [`TokenProvider::access_token`](super::TokenProvider::access_token):
//! shared cache, stored account, refresh, policy, caching.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::{debug, warn};

use super::metrics::{Event, PlatformMetrics};
use super::{AccessToken, ProviderInner, Snapshot, TokenResult, UNVERIFIED_TTL, unix_ms};
use crate::concurrency::bounded;
use crate::domain::{Account, Platform, RefreshKey};
use crate::error::{FlowError, TokenError};
use crate::flow::RefreshOutcome;
use crate::policy::{
    OnLockHeld, OnRefreshError, ProviderRefreshPolicy, failure_ttl, request_ttl, token_is_valid,
};
use crate::ports::RefreshExecutor;

impl ProviderInner {
    pub(super) fn policy(&self, platform: &Platform) -> ProviderRefreshPolicy {
        self.policies
            .get(platform)
            .cloned()
            .unwrap_or_else(|| ProviderRefreshPolicy::for_platform(platform))
    }

    pub(super) fn metrics(&self, platform: &Platform) -> Arc<PlatformMetrics> {
        self.metrics.platform(platform)
    }

    pub(super) fn record(&self, platform: &Platform, event: Event) {
        self.metrics(platform).record(event, unix_ms(self));
    }

    /// The slow path, shared by every concurrent caller of one account.
    pub(super) async fn resolve(
        &self,
        snapshot: &Account,
        origin: Snapshot,
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
                    self.flow.observer().shared_cache_lookup(true);
                    let token = AccessToken::from_cached(snapshot.id, cached);
                    self.cache_locally(&token, self.ttl(token.expires_at, now));
                    return Ok(token);
                }
                Ok(_) => self.flow.observer().shared_cache_lookup(false),
                Err(error) => {
                    debug!(%key, kind = %error.kind(), "shared cache read failed; continuing")
                }
            }
        }
        let (mut current, verified) = match origin {
            Snapshot::Caller => self.newest(snapshot).await,
            Snapshot::Stored => (snapshot.clone(), true),
        };
        // The stored account may have been disabled since the snapshot.
        super::inactive(&current)?;
        // Tokens served by a policy fallback are cached in this process only,
        // briefly: a shared entry could outlive a newer token elsewhere
        // (REFERENCE.md defect 11).
        let mut fallback_ttl = None;
        if executor.needs_refresh(&current, self.skew, now) {
            let policy = self.policy(&current.platform);
            self.record(&current.platform, Event::RefreshRequest);
            match self
                .flow
                .refresh_until_persisted(&current, executor, self.skew)
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
                        _ => return self.wait_and_cache(&current, executor, key, &policy).await,
                    }
                }
                Err(FlowError::NotPersisted { credentials, .. })
                    if credentials.access_token().is_some() =>
                {
                    // The upstream issued a token that is not stored yet (it
                    // waits in its generation claim or a rescue); it is the newest there is.
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
                self.cache_everywhere(key, &token, ttl);
            }
        }
        Ok(token)
    }

    /// The account's access token while it is valid.
    pub(super) fn valid_token(&self, account: &Account) -> Option<AccessToken> {
        AccessToken::of_account(account)
            .filter(|t| token_is_valid(t.expires_at, self.flow.clock().now()))
    }

    /// The TTL of a token served by a policy fallback.
    pub(super) fn fallback_ttl(&self, ttl: Duration, token: &AccessToken) -> Option<Duration> {
        failure_ttl(ttl, token.expires_at, self.flow.clock().now())
    }

    pub(super) fn storage_timeout(&self) -> Duration {
        self.flow.config().storage_timeout
    }

    /// The stored account when it is at least as new as the snapshot; the
    /// snapshot when the read fails or finds nothing (REFERENCE.md §3.7).
    /// The second value says whether the store answered.
    pub(super) async fn newest(&self, snapshot: &Account) -> (Account, bool) {
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
    pub(super) fn ttl(
        &self,
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Option<Duration> {
        request_ttl(expires_at, now, self.skew, UNVERIFIED_TTL)
    }

    pub(super) async fn wait_and_cache(
        &self,
        current: &Account,
        executor: &Arc<dyn RefreshExecutor>,
        key: &RefreshKey,
        policy: &ProviderRefreshPolicy,
    ) -> TokenResult {
        let token = self
            .wait_for_refresh(current, executor, key, policy)
            .await?;
        let ttl = self.ttl(token.expires_at, self.flow.clock().now());
        self.cache_everywhere(key, &token, ttl);
        Ok(token)
    }

    pub(super) fn cache_locally(&self, token: &AccessToken, ttl: Option<Duration>) {
        if let Some(ttl) = ttl {
            let ttl = ttl.min(self.local_max_age);
            self.local.put(token, ttl, self.flow.clock().now());
        }
    }

    pub(super) fn cache_everywhere(
        &self,
        key: &RefreshKey,
        token: &AccessToken,
        ttl: Option<Duration>,
    ) {
        let Some(ttl) = ttl else { return };
        self.cache_locally(token, Some(ttl));
        let Some(shared) = &self.shared else { return };
        // Off the callers' path: they are served from this process's
        // cache, and the put is version-guarded, so a late one never
        // replaces a newer token.
        let (shared, key, cached) = (Arc::clone(shared), key.clone(), token.to_cached());
        let timeout = self.storage_timeout();
        tokio::spawn(async move {
            let put = bounded(timeout, "cache_put", shared.put(&key, &cached, ttl));
            if let Err(error) = put.await {
                debug!(%key, kind = %error.kind(), "shared cache write failed");
            }
        });
    }
}
