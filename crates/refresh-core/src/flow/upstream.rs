//! The upstream call, and what happens when it outlives its deadline.

use std::sync::Arc;

use tracing::{Instrument, debug, warn};

use super::FlowInner;
use super::lease_keeper::LeaseGuard;
use super::recovery::PENDING_MARKER_TTL;
use crate::domain::{Account, Credentials, RefreshKey};
use crate::error::ProviderError;
use crate::ports::RefreshExecutor;

impl FlowInner {
    /// Runs the executor on its own task. An answer within
    /// `upstream_timeout` is returned as is. Otherwise the caller gets an
    /// ambiguous error (the upstream may have rotated already) but the call
    /// is not dropped:
    /// - a pending-call marker goes to the recovery store, so no flow
    ///   presents the possibly consumed token while the call is outstanding
    ///   (they report "held elsewhere");
    /// - the lease moves to a task that waits for the answer; it keeps the
    ///   lease for another `upstream_timeout` (for as long as the call runs,
    ///   if the marker could not be saved);
    /// - whenever the answer comes, it is persisted with the fenced write
    ///   (a failed write leaves a recovery record), and the marker is
    ///   cleared; a call silent for [`PENDING_MARKER_TTL`] timeouts is
    ///   abandoned.
    ///
    /// An executor that panics may have sent the request too: its marker
    /// stays until it expires.
    pub(super) async fn call_upstream(
        self: &Arc<Self>,
        key: &RefreshKey,
        executor: &Arc<dyn RefreshExecutor>,
        fresh: &Account,
        lease: &mut Option<LeaseGuard>,
    ) -> Result<Credentials, ProviderError> {
        let (executor, account) = (Arc::clone(executor), fresh.clone());
        let mut call = tokio::spawn(async move { executor.refresh(&account).await });
        let timeout = self.config.upstream_timeout;
        match tokio::time::timeout(timeout, &mut call).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => {
                warn!(
                    panicked = join.is_panic(),
                    "executor task failed; the request may have been sent"
                );
                self.save_marker(fresh).await;
                Err(ProviderError::Ambiguous {
                    reason: "the executor failed after the request may have been sent".to_owned(),
                })
            }
            Err(_) => {
                warn!(
                    timeout_ms = timeout.as_millis() as u64,
                    "upstream refresh did not answer in time; waiting for a late answer under the lease"
                );
                let marker_saved = self.save_marker(fresh).await;
                let (this, key, base, mut lease) =
                    (Arc::clone(self), key.clone(), fresh.clone(), lease.take());
                tokio::spawn(
                    async move {
                        let grace = if marker_saved {
                            timeout
                        } else {
                            // Without a marker only the lease protects the
                            // token: keep it for as long as the call may run.
                            timeout.saturating_mul(PENDING_MARKER_TTL - 1)
                        };
                        let mut late = tokio::time::timeout(grace, &mut call).await;
                        if late.is_err() {
                            if let Some(lease) = lease.take() {
                                lease.release(this.config.release_timeout).await;
                            }
                            let cap = timeout.saturating_mul(PENDING_MARKER_TTL - 2);
                            late = tokio::time::timeout(cap, &mut call).await;
                        }
                        match late {
                            Ok(Ok(Ok(issued))) => {
                                let _ = this.complete(&key, base.clone(), issued).await;
                            }
                            Ok(_) => debug!("late upstream call ended without credentials"),
                            Err(_) => {
                                call.abort();
                                warn!("upstream call never answered; presumed dead");
                            }
                        }
                        this.clear_marker(&base).await;
                        if let Some(lease) = lease {
                            lease.release(this.config.release_timeout).await;
                        }
                    }
                    .in_current_span(),
                );
                Err(ProviderError::Ambiguous {
                    reason: format!("no answer within {timeout:?}"),
                })
            }
        }
    }
}
