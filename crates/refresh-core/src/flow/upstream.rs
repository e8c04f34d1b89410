//! The token request under a held claim: the hard deadline, and what each
//! outcome does to the claim (steps 6 and 7).

use std::sync::Arc;

use tokio::time::Instant;
use tracing::warn;

use super::claim::HeldClaim;
use super::lease_guard::LeaseGuard;
use super::{FlowInner, FlowResult};
use crate::domain::{Account, Credentials, RefreshKey, Secret};
use crate::error::{FlowError, ProviderError, StorageError};
use crate::ports::{RefreshContext, RefreshExecutor};

impl FlowInner {
    /// Presents `token` (the one the claim was taken on) under the claim
    /// `held`, then acts on the outcome as the fault table in the module
    /// docs says: answer, dead generation, not consumed, or quarantine.
    pub(super) async fn redeem(
        self: &Arc<Self>,
        key: &RefreshKey,
        held: HeldClaim,
        fresh: Account,
        executor: &Arc<dyn RefreshExecutor>,
        token: Secret,
        lease: &mut Option<LeaseGuard>,
    ) -> FlowResult {
        let id = fresh.id;
        // Step 6: send only while the claim has at least H + S of life left,
        // judged by local monotonic time from before the insert.
        let now = Instant::now();
        let life_left = (held.started + self.config.claim_ttl).saturating_duration_since(now);
        if life_left < self.config.send_margin() {
            warn!("the claim has too little life left to send within the hard deadline");
            self.claim_remove(&held).await;
            let source =
                StorageError::timeout("claim_acquire", "claiming took too long; nothing sent");
            return Err(FlowError::Claim { id, source });
        }
        let deadline = now + self.config.upstream_timeout;
        let ctx = RefreshContext::new(token, Arc::clone(&self.clock), deadline);
        let rotating = executor.rotates_refresh_token();
        super::steps::count_upstream_call();
        let answer = call_upstream(executor, &fresh, ctx).await;
        let outcome = answer
            .as_ref()
            .map_or_else(ProviderError::kind_name, |_| "ok");
        self.observer
            .upstream_call(&fresh.platform, now.elapsed(), outcome);
        match answer {
            Ok(issued) => {
                self.complete(key, held, fresh, issued, rotating, lease)
                    .await
            }
            Err(error) if error.is_grant_rejected() => {
                self.finish_claim(&held, true).await;
                self.race_recovery(&fresh, error).await
            }
            Err(error) => {
                match &error {
                    // The upstream asked the client to wait, and a cluster
                    // is one client: the claim holds the generation until
                    // then, so no instance sends it before.
                    ProviderError::RateLimited {
                        retry_after: Some(after),
                    } if !after.is_zero() => {
                        self.claim_hold(&held, *after).await;
                    }
                    _ => {
                        let maybe_consumed = rotating && !error.provably_not_consumed();
                        self.claim_unanswered(&held, maybe_consumed).await;
                    }
                }
                warn!(kind = error.kind_name(), "upstream refresh failed");
                Err(FlowError::Upstream {
                    id,
                    version: fresh.credentials_version,
                    source: error,
                })
            }
        }
    }
}

/// Runs the executor on its own task until `ctx.deadline`, then aborts it
/// (dropping its connection): no answer can arrive after the flow stopped
/// waiting. A task that panicked, or one aborted at the deadline, may have
/// sent the request: both are ambiguous.
async fn call_upstream(
    executor: &Arc<dyn RefreshExecutor>,
    account: &Account,
    ctx: RefreshContext,
) -> Result<Credentials, ProviderError> {
    let deadline = ctx.deadline;
    let (executor, account) = (Arc::clone(executor), account.clone());
    let mut call = tokio::spawn(async move { executor.refresh(&account, &ctx).await });
    match tokio::time::timeout_at(deadline, &mut call).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) => {
            warn!(
                panicked = join.is_panic(),
                "executor task failed; the request may have been sent"
            );
            Err(ProviderError::Ambiguous {
                reason: "the executor failed after the request may have been sent".to_owned(),
            })
        }
        Err(_) => {
            call.abort();
            warn!("upstream refresh did not answer by the hard deadline; aborted");
            Err(ProviderError::Ambiguous {
                reason: "no answer by the hard deadline; request aborted".to_owned(),
            })
        }
    }
}
