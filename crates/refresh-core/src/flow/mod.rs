//! [`RefreshFlow`]: the one path every refresh takes.
//!
//! single flight in process → leases ([`LockStrategy`], contention only) →
//! due check → **claim the generation** (first on the caller's snapshot,
//! then in rounds from a re-read; a claim holding an answer is applied
//! instead, one found on a snapshot only sends the run to the re-read) →
//! re-read → upstream call within the hard deadline H (detached from the
//! caller, aborted at H) → answer into the claim → fenced compare-and-set →
//! notify → mark the claim consumed → release. The request path's callers
//! are answered right after the compare-and-set (`refresh_until_persisted`);
//! the rest of the run goes on on its task.
//!
//! The claim ([`ClaimStore`]) is what makes "one redemption per generation"
//! hold: only the winner of one atomic statement in the shared store sends
//! the refresh token, and every outcome that may have consumed it keeps the
//! claim. Leases reduce contention and wake waiters; safety does not depend
//! on them.
//!
//! # How faults are handled
//!
//! | fault | what the flow does |
//! |---|---|
//! | lock store down | next layer; all down → `LockUnavailable` (lock-free only by opt-in; the claim still decides) |
//! | lease lapsed, flushed or split | nothing special: the claim excludes a second sender |
//! | claim store down or slow | `Claim` error; the token is not sent (no opt-in bypasses this) |
//! | claim held by a live flow | `HeldElsewhere` |
//! | claim quarantined | `Quarantined { until }`: fail fast, no wait |
//! | claim holds an answer | the answer is applied by the fenced write, the claim marked consumed, due-ness re-checked |
//! | claim consumed | `CredentialsRegressed`: a consumed token came back; no call |
//! | account changed between claim and re-read | claim removed, start over once from the due check |
//! | not enough claim life left (by local monotonic time) | claim removed, nothing sent |
//! | upstream silent past H | call aborted; `Ambiguous`; claim quarantined |
//! | 5xx, reset after sending, 2xx garbage, executor panic | claim quarantined (non-rotating executors: removed) |
//! | 429 with `Retry-After` | claim quarantined until then (at most `quarantine`): no instance sends before it; error |
//! | not sent, 429 without `Retry-After`, parsed RFC 6749 error other than `invalid_grant` | claim removed; error |
//! | `invalid_grant` | generation marked dead (consumed); race recovery: another refresh token stored = success |
//! | write fails | bounded retries; the answer is already in the claim, so `NotPersisted { answer_saved: true }` and the next flow applies it |
//! | write and claim store both fail | `NotPersisted { answer_saved: false }`; a detached rescue keeps the leases, extends the claim and retries both with no deadline |
//! | write conflict | rotating: the refresh's changed keys are re-applied while the row still holds the presented token (unless its generation is consumed) or a redeemed one (consumed or answered); an answer whose own token is claimed has landed; otherwise the stored tokens stand |
//! | account deleted meanwhile | `AccountNotFound`; the answer stays in the claim |

mod claim;
mod config;
mod early;
mod lease_guard;
mod lock_strategy;
mod outcome;
mod persist;
mod rate_limit;
mod steps;
mod upstream;

use std::sync::Arc;
use std::time::Duration;

pub use crate::domain::ASSUMED_TOKEN_LIFETIME;
pub use config::{FlowConfig, MAX_CONSUMED_HORIZON, MAX_DURATION};
pub use lock_strategy::LockStrategy;
pub use outcome::RefreshOutcome;
pub use rate_limit::RateLimit;

use self::rate_limit::RateLimiters;

use crate::concurrency::{Detached, SingleFlight};
use crate::domain::{Account, Platform, RefreshKey};
use crate::error::{ConfigError, FlowError};
use crate::ports::{
    AccountRepository, ClaimStore, Clock, FlowObserver, NoObserver, RefreshExecutor, SystemClock,
    TokenCache,
};

type FlowResult = Result<RefreshOutcome, FlowError>;

/// The refresh operation shared by the token provider, the background
/// refresher and manual refreshes. Cheap to clone.
#[derive(Clone)]
pub struct RefreshFlow {
    inner: Arc<FlowInner>,
}

pub(crate) struct FlowInner {
    repo: Arc<dyn AccountRepository>,
    locks: LockStrategy,
    claims: Arc<dyn ClaimStore>,
    notifier: Option<Arc<dyn TokenCache>>,
    clock: Arc<dyn Clock>,
    config: FlowConfig,
    observer: Arc<dyn FlowObserver>,
    /// Per-platform bounds on upstream token calls.
    rate_limits: RateLimiters,
    flights: Arc<SingleFlight<RefreshKey, FlowResult>>,
    /// Rescues and consumed-mark retries that outlive their run.
    detached: Arc<Detached>,
}

impl std::fmt::Debug for RefreshFlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshFlow")
            .field("locks", &self.inner.locks)
            .field("claims", &self.inner.claims.name())
            .field("config", &self.inner.config)
            .field(
                "rate_limited",
                &self.inner.rate_limits.platforms().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl RefreshFlow {
    /// Starts a builder over the account repository, the lock strategy and
    /// the generation-claim store. The claim store is required: it must be
    /// shared by every instance that refreshes the same accounts, durable
    /// and linearizable (a database store in a cluster;
    /// [`InMemoryClaimStore`](crate::memory::InMemoryClaimStore) for one
    /// process).
    pub fn builder(
        repo: Arc<dyn AccountRepository>,
        locks: LockStrategy,
        claims: Arc<dyn ClaimStore>,
    ) -> RefreshFlowBuilder {
        RefreshFlowBuilder {
            repo,
            locks,
            claims,
            notifier: None,
            clock: None,
            config: FlowConfig::default(),
            observer: None,
            rate_limits: Vec::new(),
        }
    }

    /// Refreshes the account if it is due within `window` (or the
    /// executor's minimum window).
    ///
    /// Concurrent calls for the same key in this process share one run. The
    /// run is a detached task: dropping the returned future does not abort an
    /// upstream call already sent, and persistence and lease release still
    /// happen (invariant 7). A caller joining a running flight gets that
    /// flight's result, computed with the first caller's window.
    ///
    /// # Errors
    /// A [`FlowError`] naming the failed stage; see its variants.
    pub async fn refresh_if_needed(
        &self,
        account: &Account,
        executor: &Arc<dyn RefreshExecutor>,
        window: Duration,
    ) -> FlowResult {
        let key = executor.key(account);
        let flight = self.inner.flights.join_or_start(&key, || {
            let inner = Arc::clone(&self.inner);
            let (account, executor, key) = (account.clone(), Arc::clone(executor), key.clone());
            async move { inner.run(key, account, executor, window).await }
        });
        flight.await.unwrap_or(Err(FlowError::TaskFailed { key }))
    }

    /// As [`refresh_if_needed`](Self::refresh_if_needed), but a run this
    /// call starts answers `Refreshed` as soon as its fenced write committed
    /// (the claim won, the answer saved into it, the credentials stored):
    /// the request path's callers do not wait for the publish, the consumed
    /// mark and the lease release, which the run goes on with on its own
    /// task ([`in_flight`](Self::in_flight) counts it until it ends). A call
    /// that joins a run already in the air gets that run's final result.
    pub(crate) async fn refresh_until_persisted(
        &self,
        account: &Account,
        executor: &Arc<dyn RefreshExecutor>,
        window: Duration,
    ) -> FlowResult {
        let key = executor.key(account);
        let (persisted, early) = tokio::sync::oneshot::channel();
        let mut flight = self.inner.flights.join_or_start(&key, || {
            let inner = Arc::clone(&self.inner);
            let (account, executor, key) = (account.clone(), Arc::clone(executor), key.clone());
            early::handing_out_to(persisted, window, async move {
                inner.run(key, account, executor, window).await
            })
        });
        tokio::select! {
            biased;
            Ok(account) = early => Ok(RefreshOutcome::Refreshed { account, recovered: false }),
            result = &mut flight => result.unwrap_or(Err(FlowError::TaskFailed { key })),
        }
    }

    /// Applies an answer a holder left in the generation claim of the
    /// account's refresh token, without the leases (see the token
    /// provider's waiters). The account as stored after, or `None`.
    pub(crate) async fn apply_left_answer(
        &self,
        account: &Account,
        executor: &Arc<dyn RefreshExecutor>,
    ) -> Option<Account> {
        self.inner.apply_left_answer(account.id, executor).await
    }

    /// How many refreshes of this flow are running now: runs whose callers
    /// went away, a rescue of an answer that neither the write nor the
    /// claim store took yet, and a consumed mark retried in the background.
    pub fn in_flight(&self) -> usize {
        self.inner.flights.len() + self.inner.detached.len()
    }

    /// Resolves once nothing of this flow is running (see
    /// [`in_flight`](Self::in_flight)): what a graceful shutdown, or a
    /// one-shot command before it exits, awaits so in-flight refreshes
    /// finish and persist, and a rescued answer lands, before the process
    /// exits. A rescue retries until the database answers, so bound the
    /// wait and report what is still running when it ends. New refreshes
    /// may start after it resolved; stop the callers first.
    pub async fn drained(&self) {
        loop {
            self.inner.flights.idle().await;
            self.inner.detached.idle().await;
            if self.in_flight() == 0 {
                return;
            }
        }
    }

    /// The repository the flow writes to.
    pub fn repository(&self) -> &Arc<dyn AccountRepository> {
        &self.inner.repo
    }

    /// The generation-claim store.
    pub fn claims(&self) -> &Arc<dyn ClaimStore> {
        &self.inner.claims
    }

    /// The clock the flow reads.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// The configuration.
    pub fn config(&self) -> &FlowConfig {
        &self.inner.config
    }

    /// The observer the flow reports to.
    pub fn observer(&self) -> &Arc<dyn FlowObserver> {
        &self.inner.observer
    }
}

/// Builds a [`RefreshFlow`].
pub struct RefreshFlowBuilder {
    repo: Arc<dyn AccountRepository>,
    locks: LockStrategy,
    claims: Arc<dyn ClaimStore>,
    notifier: Option<Arc<dyn TokenCache>>,
    clock: Option<Arc<dyn Clock>>,
    config: FlowConfig,
    observer: Option<Arc<dyn FlowObserver>>,
    rate_limits: Vec<(Platform, RateLimit)>,
}

impl RefreshFlowBuilder {
    /// Bounds the upstream token calls of `platform` (default: unbounded).
    /// Every path's calls count (request path, background, manual); a run
    /// waits for a cell after its due check and before it claims the
    /// generation, so the wait never shortens the claim or the call's hard
    /// deadline. A later call for the same platform replaces the bound.
    pub fn rate_limit(mut self, platform: Platform, limit: RateLimit) -> Self {
        self.rate_limits.retain(|(p, _)| *p != platform);
        self.rate_limits.push((platform, limit));
        self
    }

    /// Where lock, upstream and outcome events go (default: nowhere). The
    /// token provider built over this flow reports to it too.
    pub fn observer(mut self, observer: Arc<dyn FlowObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The shared cache whose "refreshed" channel wakes waiters elsewhere.
    pub fn notifier(mut self, cache: Arc<dyn TokenCache>) -> Self {
        self.notifier = Some(cache);
        self
    }

    /// The clock (default: system clock). It stamps expiries and judges
    /// due-ness; claim expiry is judged by the claim store's own clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Deadlines, claim lifetimes and retry bounds.
    pub fn config(mut self, config: FlowConfig) -> Self {
        self.config = config;
        self
    }

    /// Builds the flow.
    ///
    /// # Errors
    /// [`ConfigError`] when the configuration breaks an invariant (a claim
    /// life shorter than the hard deadline plus the grace, an unbounded
    /// duration, a lease shorter than the upstream call, a rate above one
    /// call per nanosecond).
    pub fn build(self) -> Result<RefreshFlow, ConfigError> {
        self.config.validate()?;
        let mut rate_limits = RateLimiters::default();
        for (platform, limit) in self.rate_limits {
            rate_limits.insert(platform, limit)?;
        }
        Ok(RefreshFlow {
            inner: Arc::new(FlowInner {
                repo: self.repo,
                locks: self.locks,
                claims: self.claims,
                notifier: self.notifier,
                clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
                config: self.config,
                observer: self.observer.unwrap_or_else(|| Arc::new(NoObserver)),
                rate_limits,
                flights: Arc::new(SingleFlight::new()),
                detached: Arc::new(Detached::default()),
            }),
        })
    }
}
