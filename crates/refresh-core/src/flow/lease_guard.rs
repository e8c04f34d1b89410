//! [`LeaseGuard`]: the leases of one run and the task that extends them
//! while the run (or its rescue) holds them (invariant 4).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::{debug, warn};

use super::lock_strategy::HeldLeases;
use super::{FlowConfig, bounded};
use crate::ports::{Lease, RefreshLock};

/// The leases of one run. A task extends every lease every `ttl / 3`
/// (sooner, `ttl / 10`, after a failed extension) until the guard is
/// released or dropped; a lease its lock reports lost is no longer
/// extended. Leases only reduce contention: the generation claim, not the
/// lease, keeps a second sender out, so a lost lease changes nothing else.
pub(crate) struct LeaseGuard {
    held: HeldLeases,
    _keeper: Option<DropGuard>,
}

impl LeaseGuard {
    pub(crate) fn start(held: HeldLeases, config: &FlowConfig) -> Self {
        if held.is_empty() {
            return Self {
                held,
                _keeper: None,
            };
        }
        let leases: Vec<(Arc<dyn RefreshLock>, Lease)> = held.leases.clone();
        let stop = CancellationToken::new();
        let token = stop.clone();
        let (ttl, storage_timeout) = (config.lease_ttl, config.storage_timeout);
        let period = (ttl / 3).max(Duration::from_millis(10));
        let retry = (ttl / 10).max(Duration::from_millis(10));
        tokio::spawn(async move {
            let mut live = vec![true; leases.len()];
            let mut pause = period;
            while live.iter().any(|l| *l) {
                tokio::select! {
                    () = token.cancelled() => return,
                    () = tokio::time::sleep(pause) => {}
                }
                pause = period;
                for ((lock, lease), live) in leases.iter().zip(live.iter_mut()) {
                    if !*live {
                        continue;
                    }
                    match bounded(storage_timeout, "extend", lock.extend(lease, ttl)).await {
                        Ok(true) => debug!(key = %lease.key, fence = lease.fence, "lease extended"),
                        Ok(false) => {
                            warn!(key = %lease.key, lock = lock.name(), "lease lost during refresh; the claim still guards the token");
                            *live = false;
                        }
                        Err(error) => {
                            warn!(key = %lease.key, lock = lock.name(), kind = %error.kind(), "lease extension failed; retrying");
                            pause = retry;
                        }
                    }
                }
            }
        });
        Self {
            held,
            _keeper: Some(stop.drop_guard()),
        }
    }

    pub(crate) async fn release(self, timeout: Duration) {
        let Self { mut held, _keeper } = self;
        drop(_keeper);
        held.release(timeout).await;
    }
}
