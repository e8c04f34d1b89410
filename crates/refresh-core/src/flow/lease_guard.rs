//! [`LeaseGuard`]: the leases of one run and the task that extends them
//! while the run (or its rescue) holds them (invariant 4).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::{debug, warn};

use super::FlowConfig;
use crate::concurrency::bounded;
use crate::ports::{Lease, RefreshLock};

/// The leases of one run. A task extends every lease every `ttl / 3`
/// (sooner, `ttl / 10`, after a failed extension) until the guard is
/// released or dropped; a lease its lock reports lost is no longer
/// extended. Leases only reduce contention: the generation claim, not the
/// lease, keeps a second sender out, so a lost lease changes nothing else.
pub(crate) struct LeaseGuard {
    held: Leases,
    _keeper: Option<DropGuard>,
}

/// The leases one run took, with the lock each came from.
pub(crate) type Leases = Vec<(Arc<dyn RefreshLock>, Lease)>;

/// Releases every lease, each bounded by `timeout`. Runs on the flow's
/// detached task, so it happens even when the caller was cancelled
/// (REFERENCE.md defect 3).
pub(crate) async fn release_all(leases: Leases, timeout: Duration) {
    for (lock, lease) in leases {
        let outcome = match tokio::time::timeout(timeout, lock.release(&lease)).await {
            Ok(Ok(true)) => continue,
            Ok(Ok(false)) => "lease had already lapsed at release",
            Ok(Err(_)) => "lease release failed; it will lapse",
            Err(_) => "lease release timed out; it will lapse",
        };
        warn!(key = %lease.key, lock = lock.name(), outcome);
    }
}

impl LeaseGuard {
    pub(crate) fn start(held: Leases, config: &FlowConfig) -> Self {
        if held.is_empty() {
            return Self {
                held,
                _keeper: None,
            };
        }
        let leases = held.clone();
        let stop = CancellationToken::new();
        let token = stop.clone();
        let (ttl, storage_timeout) = (config.lease_ttl, config.storage_timeout);
        let period = (ttl / 3).max(Duration::from_millis(10));
        let retry = (ttl / 10).max(Duration::from_millis(10));
        tokio::spawn(async move {
            let mut leases = leases;
            let mut pause = period;
            while !leases.is_empty() {
                tokio::select! {
                    () = token.cancelled() => return,
                    () = tokio::time::sleep(pause) => {}
                }
                pause = period;
                let mut live = Vec::with_capacity(leases.len());
                for (lock, lease) in leases {
                    match bounded(storage_timeout, "extend", lock.extend(&lease, ttl)).await {
                        Ok(true) => debug!(key = %lease.key, fence = lease.fence, "lease extended"),
                        Ok(false) => {
                            warn!(key = %lease.key, lock = lock.name(), "lease lost during refresh; the claim still guards the token");
                            continue;
                        }
                        Err(error) => {
                            warn!(key = %lease.key, lock = lock.name(), kind = %error.kind(), "lease extension failed; retrying");
                            pause = retry;
                        }
                    }
                    live.push((lock, lease));
                }
                leases = live;
            }
        });
        Self {
            held,
            _keeper: Some(stop.drop_guard()),
        }
    }

    pub(crate) async fn release(self, timeout: Duration) {
        let Self { held, _keeper } = self;
        drop(_keeper);
        release_all(held, timeout).await;
    }
}
