//! [`LeaseKeeper`]: extends the held leases while the refresh runs
//! (invariant 4).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::{debug, warn};

use tokio::time::Instant;

use super::lock_strategy::HeldLeases;
use super::{FlowConfig, bounded};
use crate::ports::{Lease, RefreshLock};

/// Extends every held lease every `ttl / 3` until dropped; after a failed
/// extension it retries sooner (`ttl / 10`). Each extension is bounded by
/// the storage timeout. A lease counts as lost when its lock says so or when
/// no extension of it succeeded for a whole TTL; [`LeaseKeeper::lost`] turns
/// true, and extending stops, once the last held lease (the durable one of a
/// stacked pair) is lost. The flow then
/// stops before the upstream call, or relies on the fenced write if the call
/// was already sent.
pub(crate) struct LeaseKeeper {
    lost: Arc<AtomicBool>,
    _stop: Option<DropGuard>,
}

impl LeaseKeeper {
    pub(crate) fn start(held: &HeldLeases, config: &FlowConfig) -> Self {
        let lost = Arc::new(AtomicBool::new(false));
        if held.is_empty() {
            return Self { lost, _stop: None };
        }
        let leases: Vec<(Arc<dyn RefreshLock>, Lease)> = held.leases.clone();
        let stop = CancellationToken::new();
        let (token, flag) = (stop.clone(), Arc::clone(&lost));
        let (ttl, storage_timeout) = (config.lease_ttl, config.storage_timeout);
        let period = (ttl / 3).max(Duration::from_millis(10));
        let retry = (ttl / 10).max(Duration::from_millis(10));
        tokio::spawn(async move {
            // Per lease: when an extension last succeeded; `None` once lost.
            let mut confirmed: Vec<Option<Instant>> = vec![Some(Instant::now()); leases.len()];
            let mut pause = period;
            loop {
                tokio::select! {
                    () = token.cancelled() => return,
                    () = tokio::time::sleep(pause) => {}
                }
                pause = period;
                for ((lock, lease), state) in leases.iter().zip(confirmed.iter_mut()) {
                    let Some(since) = *state else { continue };
                    match bounded(storage_timeout, "extend", lock.extend(lease, ttl)).await {
                        Ok(true) => {
                            debug!(key = %lease.key, fence = lease.fence, "lease extended");
                            *state = Some(Instant::now());
                        }
                        Ok(false) => {
                            warn!(key = %lease.key, lock = lock.name(), "lease lost during refresh");
                            *state = None;
                        }
                        Err(error) if since.elapsed() >= ttl => {
                            warn!(key = %lease.key, lock = lock.name(), kind = %error.kind(), "no extension for a whole ttl; presuming the lease lapsed");
                            *state = None;
                        }
                        Err(error) => {
                            warn!(key = %lease.key, lock = lock.name(), kind = %error.kind(), "lease extension failed; retrying");
                            pause = retry;
                        }
                    }
                }
                // The last lease is the authority: the durable one of a
                // stacked pair, or the only one.
                if confirmed.last().is_some_and(Option::is_none) {
                    flag.store(true, Ordering::SeqCst);
                    return;
                }
            }
        });
        Self {
            lost,
            _stop: Some(stop.drop_guard()),
        }
    }

    /// Whether a lease was lost or presumed lapsed.
    pub(crate) fn lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }
}

/// The leases of one run and the task that extends them. Dropping it stops
/// the extension; [`HeldLeases`]'s own drop still releases.
pub(crate) struct LeaseGuard {
    pub(crate) held: HeldLeases,
    pub(crate) keeper: LeaseKeeper,
}

impl LeaseGuard {
    /// Checks, with one bounded extension, that the authoritative (last)
    /// lease is still held right before the upstream call: a Redis failover
    /// or flush since acquisition would otherwise go unnoticed until the
    /// keeper's first tick. A failed check of the store itself is not a
    /// loss; the keeper handles that.
    pub(crate) async fn confirm(&self, config: &FlowConfig) -> bool {
        if self.keeper.lost() {
            return false;
        }
        let Some((lock, lease)) = self.held.leases.last() else {
            return true;
        };
        let extend = lock.extend(lease, config.lease_ttl);
        !matches!(
            bounded(config.storage_timeout, "extend", extend).await,
            Ok(false)
        )
    }

    pub(crate) async fn release(self, timeout: Duration) {
        let Self { mut held, keeper } = self;
        drop(keeper);
        held.release(timeout).await;
    }
}
