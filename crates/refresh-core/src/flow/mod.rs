//! [`RefreshFlow`]: the one path every refresh takes.
//!
//! single flight in process → lease ([`LockStrategy`]) → re-read → consume a
//! pending recovery record → double-check → upstream call (detached) →
//! fenced compare-and-set persist with bounded retry while the lease is
//! extended → recovery record on persist failure → notify waiters → release.
//!
//! # How faults are handled
//!
//! | fault | what the flow does |
//! |---|---|
//! | lock store down | next layer; all down → `LockUnavailable` (lock-free only by opt-in) |
//! | lease extension fails | retried every `ttl/10`; a lease unconfirmed for a whole TTL counts as lost; with every lease lost the flow stops before the upstream call (`LeaseLost`) |
//! | storage call hangs | each is bounded by [`FlowConfig::storage_timeout`] |
//! | re-read fails | `Reread` error; never refreshes from the caller's snapshot |
//! | `invalid_grant` | race recovery: a rotation by someone else (or a late answer in the recovery store) is success |
//! | upstream silent past `upstream_timeout` | caller gets `Ambiguous`; a pending-call marker stops every flow from presenting the token again; the lease stays with the call for another `upstream_timeout` and a late answer is persisted; later still, it becomes a recovery record |
//! | write fails | bounded retries; then the credentials go to the recovery store (and an in-process copy) and `NotPersisted` carries them; the next flow persists them before any upstream call |
//! | write conflict without rotation | the refresh's changed keys are re-applied over the newer row |
//! | executor panics | `TaskFailed`; leases released on unwind |

mod bounded;
mod config;
mod lease_keeper;
mod lock_strategy;
mod outcome;
mod persist;
mod recovery;
pub(crate) mod single_flight;
mod steps;
mod upstream;

use std::sync::Arc;
use std::time::Duration;

pub(crate) use bounded::bounded;
pub use config::FlowConfig;
pub use lock_strategy::LockStrategy;
pub use outcome::RefreshOutcome;

use self::single_flight::SingleFlight;
use crate::domain::{Account, RefreshKey};
use crate::error::{ConfigError, FlowError};
use crate::memory::InMemoryRecoveryStore;
use crate::ports::{
    AccountRepository, Clock, RecoveryStore, RefreshExecutor, SystemClock, TokenCache,
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
    recovery: Arc<dyn RecoveryStore>,
    /// Every record is also kept here; see `save_record`.
    local_recovery: InMemoryRecoveryStore,
    notifier: Option<Arc<dyn TokenCache>>,
    clock: Arc<dyn Clock>,
    config: FlowConfig,
    flights: Arc<SingleFlight<RefreshKey, FlowResult>>,
}

impl std::fmt::Debug for RefreshFlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshFlow")
            .field("locks", &self.inner.locks)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl RefreshFlow {
    /// Starts a builder over the account repository and the lock strategy.
    pub fn builder(repo: Arc<dyn AccountRepository>, locks: LockStrategy) -> RefreshFlowBuilder {
        RefreshFlowBuilder {
            repo,
            locks,
            recovery: None,
            notifier: None,
            clock: None,
            config: FlowConfig::default(),
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

    /// The repository the flow writes to.
    pub fn repository(&self) -> &Arc<dyn AccountRepository> {
        &self.inner.repo
    }

    /// The clock the flow reads.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// The configuration.
    pub fn config(&self) -> &FlowConfig {
        &self.inner.config
    }
}

/// Builds a [`RefreshFlow`].
pub struct RefreshFlowBuilder {
    repo: Arc<dyn AccountRepository>,
    locks: LockStrategy,
    recovery: Option<Arc<dyn RecoveryStore>>,
    notifier: Option<Arc<dyn TokenCache>>,
    clock: Option<Arc<dyn Clock>>,
    config: FlowConfig,
}

impl RefreshFlowBuilder {
    /// Where rotated credentials wait when a write fails. Defaults to an
    /// in-memory store, which survives within the process only; use a
    /// durable one in production (invariant 2).
    pub fn recovery(mut self, store: Arc<dyn RecoveryStore>) -> Self {
        self.recovery = Some(store);
        self
    }

    /// The shared cache whose "refreshed" channel wakes waiters elsewhere.
    pub fn notifier(mut self, cache: Arc<dyn TokenCache>) -> Self {
        self.notifier = Some(cache);
        self
    }

    /// The clock (default: system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Timeouts and retry bounds.
    pub fn config(mut self, config: FlowConfig) -> Self {
        self.config = config;
        self
    }

    /// Builds the flow.
    ///
    /// # Errors
    /// [`ConfigError`] when the configuration breaks an invariant (a lease
    /// shorter than a worst-case refresh).
    pub fn build(self) -> Result<RefreshFlow, ConfigError> {
        self.config.validate()?;
        Ok(RefreshFlow {
            inner: Arc::new(FlowInner {
                repo: self.repo,
                locks: self.locks,
                recovery: self
                    .recovery
                    .unwrap_or_else(|| Arc::new(InMemoryRecoveryStore::new())),
                local_recovery: InMemoryRecoveryStore::new(),
                notifier: self.notifier,
                clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
                config: self.config,
                flights: Arc::new(SingleFlight::new()),
            }),
        })
    }
}
