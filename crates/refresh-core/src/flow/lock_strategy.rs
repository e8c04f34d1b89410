//! [`LockStrategy`]: which leases the flow takes, and what it does when a
//! lock store is unavailable (invariant 5).

use std::sync::Arc;

use tracing::warn;

use super::FlowConfig;
use super::lease_guard::{Leases, release_all};
use crate::concurrency::bounded;
use crate::domain::RefreshKey;
use crate::error::{FlowError, StorageError};
use crate::ports::{FlowObserver, RefreshLock};

/// How the flow serializes refreshes across instances.
///
/// - [`LockStrategy::single`]: one lock; unavailable → "lock unavailable".
/// - [`LockStrategy::layered`]: a fast primary (Redis) falling back to a
///   durable secondary (database lease) when the primary is unavailable.
/// - [`LockStrategy::stacked`]: hold both; the primary may be skipped when it
///   is unavailable, the secondary (durable) lease never.
/// - [`LockStrategy::process_local`]: no cross-instance lock at all, only the
///   in-process single flight.
///
/// None of them is what keeps a refresh token from being presented twice:
/// the generation claim does, under every strategy (a lapsed, flushed or
/// split lease included). Leases keep peers from racing for the claim (and
/// so from failing with "held elsewhere"), and their holders publish the
/// notifications waiters wake on. The production recommendation is
/// therefore the cheapest one that keeps contention low: `layered` (Redis,
/// falling back to the database lease while Redis is down).
///
/// [`LockStrategy::allow_lock_free`] opts in to refreshing without any lease
/// when every lock store fails; it is off by default (REFERENCE.md defect 4).
#[derive(Clone)]
pub struct LockStrategy {
    primary: Option<Arc<dyn RefreshLock>>,
    secondary: Option<Arc<dyn RefreshLock>>,
    hold_both: bool,
    lock_free_on_failure: bool,
}

impl std::fmt::Debug for LockStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockStrategy")
            .field("primary", &self.primary.as_ref().map(|l| l.name()))
            .field("secondary", &self.secondary.as_ref().map(|l| l.name()))
            .field("hold_both", &self.hold_both)
            .field("lock_free_on_failure", &self.lock_free_on_failure)
            .finish()
    }
}

/// What acquisition found.
pub(crate) enum Acquired {
    /// Leases taken (none when lock-free by policy).
    Held(Leases),
    /// Another instance holds the lease.
    HeldElsewhere,
}

impl LockStrategy {
    /// One lock.
    pub fn single(lock: Arc<dyn RefreshLock>) -> Self {
        Self {
            primary: Some(lock),
            secondary: None,
            hold_both: false,
            lock_free_on_failure: false,
        }
    }

    /// `primary`, falling back to `secondary` only when `primary` errors.
    pub fn layered(primary: Arc<dyn RefreshLock>, secondary: Arc<dyn RefreshLock>) -> Self {
        Self {
            secondary: Some(secondary),
            ..Self::single(primary)
        }
    }

    /// Both leases; the secondary alone when the primary errors; "lock
    /// unavailable" when the secondary errors.
    pub fn stacked(primary: Arc<dyn RefreshLock>, secondary: Arc<dyn RefreshLock>) -> Self {
        Self {
            hold_both: true,
            ..Self::layered(primary, secondary)
        }
    }

    /// No cross-instance lock: only for a single process (explicit opt-in).
    pub fn process_local() -> Self {
        Self {
            primary: None,
            secondary: None,
            hold_both: false,
            lock_free_on_failure: true,
        }
    }

    /// Opts in to refreshing without a lease when every lock store errors.
    pub fn allow_lock_free(mut self) -> Self {
        self.lock_free_on_failure = true;
        self
    }

    pub(crate) async fn acquire(
        &self,
        key: &RefreshKey,
        config: &FlowConfig,
        observer: &dyn FlowObserver,
    ) -> Result<Acquired, FlowError> {
        let (ttl, release_timeout) = (config.lease_ttl, config.release_timeout);
        let mut held = Leases::new();
        let mut last_error: Option<StorageError> = None;
        let mut durable_failed = false;
        let layers = self.primary.iter().chain(self.secondary.iter());
        for (index, lock) in layers.enumerate() {
            if index > 0 && !held.is_empty() && !self.hold_both {
                break;
            }
            match bounded(
                config.storage_timeout,
                "try_acquire",
                lock.try_acquire(key, ttl),
            )
            .await
            {
                Ok(Some(lease)) => {
                    observer.lock_acquired(lock.name());
                    held.push((Arc::clone(lock), lease));
                }
                Ok(None) => {
                    observer.lock_contended(lock.name());
                    release_all(held, release_timeout).await;
                    return Ok(Acquired::HeldElsewhere);
                }
                Err(error) => {
                    observer.lock_unavailable(lock.name());
                    warn!(%key, lock = lock.name(), kind = %error.kind(), "refresh lock unavailable");
                    durable_failed = index > 0;
                    last_error = Some(error);
                }
            }
        }
        // Stacked: the durable layer is the authority. Proceeding on the fast
        // layer alone would let a peer that holds only the durable lease (its
        // fast layer failed) refresh at the same time.
        let must_fail = held.is_empty() || (self.hold_both && durable_failed);
        if let (true, Some(error)) = (must_fail, last_error) {
            if !self.lock_free_on_failure {
                release_all(held, release_timeout).await;
                return Err(FlowError::LockUnavailable {
                    key: key.clone(),
                    source: error,
                });
            }
            warn!(%key, "refresh lock unavailable; refreshing with the leases held (or none) by explicit policy");
        }
        Ok(Acquired::Held(held))
    }
}
