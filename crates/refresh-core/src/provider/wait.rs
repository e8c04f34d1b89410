//! Waiting for a refresh held by another instance (invariant 8).

use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, warn};

use super::metrics::Event;
use super::{AccessToken, ProviderInner, TokenResult};
use crate::domain::{Account, RefreshKey};
use crate::error::TokenError;
use crate::policy::{ProviderRefreshPolicy, token_is_valid};
use crate::ports::RefreshNotice;

impl ProviderInner {
    /// Waits for the holder's "refreshed" notification, polling the shared
    /// cache on the policy's schedule as a fallback, then re-reads the
    /// account. A still-valid stored token is returned; an expired one keeps
    /// the caller waiting (notification or poll) up to `max_wait`, then
    /// fails. Never returns an expired token.
    pub(super) async fn wait_for_refresh(
        &self,
        current: &Account,
        key: &RefreshKey,
        policy: &ProviderRefreshPolicy,
    ) -> TokenResult {
        let started = Instant::now();
        let result = self.wait_inner(current, key, policy, started).await;
        let waited = started.elapsed();
        let hit = result
            .as_ref()
            .is_ok_and(|t| t.version > current.credentials_version);
        self.record(&current.platform, Event::Wait { waited, hit });
        if waited >= policy.wait.warn_after {
            warn!(account_id = %current.id, waited_ms = waited.as_millis() as u64, hit, "slow wait for a refresh held elsewhere");
        }
        result
    }

    async fn wait_inner(
        &self,
        current: &Account,
        key: &RefreshKey,
        policy: &ProviderRefreshPolicy,
        started: Instant,
    ) -> TokenResult {
        let mut notice = self.subscribe(key).await;
        for delay in &policy.wait.schedule {
            let delay = jittered(*delay, policy.wait.jitter);
            tokio::select! {
                _ = &mut notice => {
                    if let Some(token) = self.stored_newer_token(current).await {
                        return Ok(token);
                    }
                    notice = self.subscribe(key).await;
                }
                () = tokio::time::sleep(delay) => {
                    if let Some(token) = self.cached_newer_token(current, key).await {
                        return Ok(token);
                    }
                }
            }
        }
        let deadline = started + policy.wait.max_wait;
        loop {
            if let Some(token) = self.stored_valid_token(current).await {
                return Ok(token);
            }
            if Instant::now() >= deadline {
                return Err(TokenError::WaitTimedOut {
                    id: current.id,
                    waited: started.elapsed(),
                });
            }
            let pause = policy.wait.poll_interval.min(deadline - Instant::now());
            tokio::select! {
                _ = &mut notice => notice = self.subscribe(key).await,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    async fn subscribe(&self, key: &RefreshKey) -> RefreshNotice {
        match &self.shared {
            Some(shared) => shared.subscribe_refreshed(key).await.unwrap_or_else(|error| {
                debug!(%key, kind = %error.kind(), "cannot subscribe to refresh notifications; polling only");
                RefreshNotice::never()
            }),
            None => RefreshNotice::never(),
        }
    }

    async fn cached_newer_token(&self, current: &Account, key: &RefreshKey) -> Option<AccessToken> {
        let shared = self.shared.as_ref()?;
        let cached = shared.get(key).await.ok().flatten()?;
        (cached.version > current.credentials_version
            && token_is_valid(cached.expires_at, self.flow.clock().now()))
        .then(|| AccessToken::from_cached(current.id, cached))
    }

    async fn stored_newer_token(&self, current: &Account) -> Option<AccessToken> {
        self.stored_valid_token(current)
            .await
            .filter(|t| t.version > current.credentials_version)
    }

    async fn stored_valid_token(&self, current: &Account) -> Option<AccessToken> {
        let stored = self
            .flow
            .repository()
            .get(current.id)
            .await
            .ok()
            .flatten()?;
        AccessToken::of_account(&stored)
            .filter(|t| token_is_valid(t.expires_at, self.flow.clock().now()))
    }
}

/// `delay` times a uniform factor in `[1 − jitter, 1 + jitter]`.
fn jittered(delay: Duration, jitter: f64) -> Duration {
    if jitter <= 0.0 {
        return delay;
    }
    delay.mul_f64(1.0 - jitter + 2.0 * jitter * fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_bounds() {
        for _ in 0..1000 {
            let d = jittered(Duration::from_millis(100), 0.2);
            assert!(
                d >= Duration::from_millis(80) && d <= Duration::from_millis(120),
                "{d:?}"
            );
        }
        assert_eq!(
            jittered(Duration::from_millis(100), 0.0),
            Duration::from_millis(100)
        );
    }
}
