//! [`LeaseKeeper`]: extends the held leases while the refresh runs
//! (invariant 4).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::{debug, warn};

use super::lock_strategy::HeldLeases;
use crate::ports::{Lease, RefreshLock};

/// Extends every held lease every `ttl / 3` until dropped. If an extension
/// reports the lease lost, [`LeaseKeeper::lost`] turns true; the flow then
/// relies on the fenced write alone.
pub(crate) struct LeaseKeeper {
    lost: Arc<AtomicBool>,
    _stop: Option<DropGuard>,
}

impl LeaseKeeper {
    pub(crate) fn start(held: &HeldLeases, ttl: Duration) -> Self {
        let lost = Arc::new(AtomicBool::new(false));
        if held.is_empty() {
            return Self { lost, _stop: None };
        }
        let leases: Vec<(Arc<dyn RefreshLock>, Lease)> = held.leases.clone();
        let stop = CancellationToken::new();
        let (token, flag) = (stop.clone(), Arc::clone(&lost));
        let period = (ttl / 3).max(Duration::from_millis(10));
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = token.cancelled() => return,
                    () = tokio::time::sleep(period) => {}
                }
                for (lock, lease) in &leases {
                    match lock.extend(lease, ttl).await {
                        Ok(true) => debug!(key = %lease.key, fence = lease.fence, "lease extended"),
                        Ok(false) => {
                            warn!(key = %lease.key, lock = lock.name(), "lease lost during refresh; relying on the fenced write");
                            flag.store(true, Ordering::SeqCst);
                        }
                        Err(error) => {
                            warn!(key = %lease.key, lock = lock.name(), kind = %error.kind(), "lease extension failed; retrying")
                        }
                    }
                }
            }
        });
        Self {
            lost,
            _stop: Some(stop.drop_guard()),
        }
    }

    /// Whether a lease was reported lost.
    pub(crate) fn lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }
}
