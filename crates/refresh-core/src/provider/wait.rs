//! Waiting for a refresh held by another instance (invariant 8).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, warn};

use super::metrics::Event;
use super::{AccessToken, ProviderInner, TokenResult};
use crate::concurrency::bounded;
use crate::domain::{Account, Fingerprint, RefreshKey, add_duration};
use crate::error::{FlowError, TokenError};
use crate::policy::{ProviderRefreshPolicy, token_is_valid};
use crate::ports::{Claim, ClaimKey, ClaimState, RefreshExecutor, RefreshNotice};

/// Polls never come faster than this, whatever the configured interval.
const MIN_POLL_INTERVAL: Duration = Duration::from_millis(10);

impl ProviderInner {
    /// Waits for the holder's "refreshed" notification, polling the shared
    /// cache on the policy's schedule as a fallback, then re-reads the
    /// account. A still-valid stored token is returned; an expired one keeps
    /// the caller waiting (notification or poll) up to `max_wait`, then
    /// fails. Never returns an expired token.
    pub(super) async fn wait_for_refresh(
        &self,
        current: &Account,
        executor: &Arc<dyn RefreshExecutor>,
        key: &RefreshKey,
        policy: &ProviderRefreshPolicy,
    ) -> TokenResult {
        let started = Instant::now();
        let result = self
            .wait_inner(current, executor, key, policy, started)
            .await;
        let waited = started.elapsed();
        let hit = result
            .as_ref()
            .is_ok_and(|t| t.version > current.credentials_version);
        self.record(&current.platform, Event::Wait { waited, hit });
        self.flow.observer().waited(&current.platform, waited, hit);
        if waited >= policy.wait.warn_after {
            warn!(account_id = %current.id, waited_ms = waited.as_millis() as u64, hit, "slow wait for a refresh held elsewhere");
        }
        result
    }

    async fn wait_inner(
        &self,
        current: &Account,
        executor: &Arc<dyn RefreshExecutor>,
        key: &RefreshKey,
        policy: &ProviderRefreshPolicy,
        started: Instant,
    ) -> TokenResult {
        let mut notice = self.subscribe(key).await;
        // A holder that finished between this caller's "held elsewhere" and
        // its subscription published before anyone listened: one re-read
        // closes that gap instead of sleeping through the first delay.
        if let Some(token) = self.stored_newer_token(current).await {
            return Ok(token);
        }
        for delay in &policy.wait.schedule {
            let delay = jittered(*delay, policy.wait.jitter);
            let fired = tokio::select! {
                fired = &mut notice => fired,
                () = tokio::time::sleep(delay) => {
                    // The poll's reads race the notice: they may have been
                    // sent just before the holder's write committed, and a
                    // notification arriving meanwhile must not wait for
                    // them (on a loaded database, tens of milliseconds).
                    let reads = async {
                        if let Some(token) = self.cached_newer_token(current, key).await {
                            return Polled::Token(token);
                        }
                        // No shared cache, or it missed (down, flushed,
                        // not yet written): the stored account is the
                        // authority. Without this, a waiter with no
                        // working notification channel could only see the
                        // holder's new token after the whole schedule, and
                        // would settle for the old one.
                        if let Some(token) = self.stored_newer_token(current).await {
                            return Polled::Token(token);
                        }
                        Polled::Claim(self.read_claim(current, executor).await)
                    };
                    tokio::select! {
                        biased;
                        polled = reads => {
                            let claim = match polled {
                                Polled::Token(token) => return Ok(token),
                                Polled::Claim(claim) => claim,
                            };
                            if let Some(token) = self.act_on_claim(current, executor, claim).await? {
                                return Ok(token);
                            }
                            continue;
                        }
                        fired = &mut notice => fired,
                    }
                }
            };
            if fired.is_none() {
                // The channel closed: stop listening, keep polling.
                notice = RefreshNotice::never();
                continue;
            }
            // A holder on the request path cached its token before the
            // publish: one GET; the stored account when it did not.
            if let Some(token) = self.cached_newer_token(current, key).await {
                return Ok(token);
            }
            if let Some(token) = self.stored_newer_token(current).await {
                return Ok(token);
            }
            notice = self.subscribe(key).await;
        }
        let deadline = started
            .checked_add(policy.wait.max_wait)
            .unwrap_or_else(|| started + Duration::from_secs(365 * 24 * 3600));
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
            let pause = policy
                .wait
                .poll_interval
                .max(MIN_POLL_INTERVAL)
                .min(deadline - Instant::now());
            tokio::select! {
                fired = &mut notice => {
                    notice = match fired {
                        Some(_) => self.subscribe(key).await,
                        None => RefreshNotice::never(),
                    };
                }
                () = tokio::time::sleep(pause) => {
                    if let Some(token) = self.check_claim(current, executor).await? {
                        return Ok(token);
                    }
                }
            }
        }
    }

    /// What the generation claim of the account's token says, at a poll:
    /// a holder that ended in a maybe-consumed outcome cannot refresh before
    /// the quarantine ends, so the waiter fails fast naming the end; a holder
    /// that left its answer in the claim (its write failed) will not notify,
    /// so the waiter applies the answer itself (fenced, without the leases:
    /// a crashed holder's lease may outlive the wait).
    async fn check_claim(
        &self,
        current: &Account,
        executor: &Arc<dyn RefreshExecutor>,
    ) -> Result<Option<AccessToken>, TokenError> {
        let claim = self.read_claim(current, executor).await;
        self.act_on_claim(current, executor, claim).await
    }

    /// The generation claim of the account's refresh token, when it can be
    /// read.
    async fn read_claim(
        &self,
        current: &Account,
        executor: &Arc<dyn RefreshExecutor>,
    ) -> Option<Claim> {
        let token = current.credentials.refresh_token()?;
        let key = ClaimKey::new(executor.platform(), Fingerprint::of(&token));
        let read = self.flow.claims().get(&key);
        bounded(self.storage_timeout(), "claim_get", read)
            .await
            .ok()
            .flatten()
    }

    /// See [`check_claim`](Self::check_claim).
    async fn act_on_claim(
        &self,
        current: &Account,
        executor: &Arc<dyn RefreshExecutor>,
        claim: Option<Claim>,
    ) -> Result<Option<AccessToken>, TokenError> {
        let Some(claim) = claim else {
            return Ok(None);
        };
        match claim.state {
            ClaimState::Quarantined => {
                let remaining = claim.remaining.unwrap_or_default();
                Err(TokenError::Refresh {
                    id: current.id,
                    source: FlowError::Quarantined {
                        id: current.id,
                        until: add_duration(self.flow.clock().now(), remaining),
                    },
                })
            }
            ClaimState::Answered => {
                let applied = self.flow.apply_left_answer(current, executor).await;
                Ok(applied.and_then(|account| self.valid_token(&account)))
            }
            _ => Ok(None),
        }
    }

    async fn subscribe(&self, key: &RefreshKey) -> RefreshNotice {
        match &self.shared {
            Some(shared) => bounded(
                self.storage_timeout(),
                "subscribe_refreshed",
                shared.subscribe_refreshed(key),
            )
            .await
            .unwrap_or_else(|error| {
                debug!(%key, kind = %error.kind(), "cannot subscribe to refresh notifications; polling only");
                RefreshNotice::never()
            }),
            None => RefreshNotice::never(),
        }
    }

    async fn cached_newer_token(&self, current: &Account, key: &RefreshKey) -> Option<AccessToken> {
        let shared = self.shared.as_ref()?;
        let read = bounded(self.storage_timeout(), "cache_get", shared.get(key));
        let cached = read.await.ok().flatten()?;
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
        let read = self.flow.repository().get(current.id);
        let stored = bounded(self.storage_timeout(), "get", read)
            .await
            .ok()
            .flatten()?;
        self.valid_token(&stored)
    }
}

/// What a poll's reads found: a newer token, or else the generation claim
/// (read, not yet acted on: acting may write, and is not cut short).
enum Polled {
    Token(AccessToken),
    Claim(Option<Claim>),
}

/// `delay` times a uniform factor in `[1 − jitter, 1 + jitter]`.
fn jittered(delay: Duration, jitter: f64) -> Duration {
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    if jitter == 0.0 {
        return delay;
    }
    let factor = 1.0 - jitter + 2.0 * jitter * fastrand::f64();
    Duration::try_from_secs_f64(delay.as_secs_f64() * factor).unwrap_or(delay)
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
        // invariant 10: a bad configured jitter cannot panic.
        assert_eq!(
            jittered(Duration::from_millis(100), f64::NAN),
            Duration::from_millis(100)
        );
        assert!(jittered(Duration::from_millis(100), 7.0) <= Duration::from_millis(200));
        assert!(jittered(Duration::MAX, 0.5) > Duration::ZERO);
    }
}
