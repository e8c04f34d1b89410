//! The steps of one refresh run, executed on the flow's detached task.

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use tracing::{Instrument, debug, info, info_span, warn};

use super::claim::{Claimed, HeldClaim};
use super::lease_guard::LeaseGuard;
use super::lock_strategy::Acquired;
use super::{FlowInner, FlowResult, RefreshOutcome};
use crate::concurrency::bounded;
use crate::domain::{Account, AccountId, Fingerprint, RefreshKey, Secret};
use crate::error::{FlowError, ProviderError, StorageError};
use crate::ports::{ClaimKey, RefreshEvent, RefreshExecutor};

/// How many times one run goes back to the due check: after applying an
/// answer found in a claim (the access token it brings may already be due),
/// or after the account changed between claiming and the re-read.
const MAX_ROUNDS: usize = 3;

tokio::task_local! {
    /// Upstream requests sent by the run on this task (for its
    /// [`RefreshEvent`]).
    static UPSTREAM_CALLS: Cell<u32>;
}

/// Counts one upstream request of the current run.
pub(super) fn count_upstream_call() {
    let _ = UPSTREAM_CALLS.try_with(|calls| calls.set(calls.get().saturating_add(1)));
}

impl FlowInner {
    pub(super) async fn run(
        self: Arc<Self>,
        key: RefreshKey,
        snapshot: Account,
        executor: Arc<dyn RefreshExecutor>,
        window: Duration,
    ) -> FlowResult {
        let span =
            info_span!("refresh", account_id = %snapshot.id, platform = %snapshot.platform, %key);
        let (observer, platform) = (Arc::clone(&self.observer), snapshot.platform.clone());
        let (account_id, clock) = (snapshot.id, Arc::clone(&self.clock));
        let started = Instant::now();
        let run = async move {
            let acquired = self
                .locks
                .acquire(&key, &self.config, self.observer.as_ref())
                .await;
            let held = match acquired {
                Ok(Acquired::Held(held)) => held,
                Ok(Acquired::HeldElsewhere) => {
                    debug!("refresh lease held elsewhere");
                    return (Ok(RefreshOutcome::HeldElsewhere), None);
                }
                Err(error) => return (Err(error), None),
            };
            let layers = held.iter().map(|(lock, _)| lock.name()).collect::<Vec<_>>();
            let layers = if layers.is_empty() {
                "none".to_owned()
            } else {
                layers.join("+")
            };
            debug!(fences = ?held.iter().map(|(_, l)| l.fence).collect::<Vec<_>>(), "refresh leases acquired");
            let mut lease = Some(LeaseGuard::start(held, &self.config));
            let result = self
                .run_locked(&key, &snapshot, &executor, window, &mut lease)
                .await;
            if let Some(lease) = lease {
                lease.release(self.config.release_timeout).await;
            }
            (result, Some(layers))
        }
        .instrument(span);
        let ((result, lock_layer), attempts) = UPSTREAM_CALLS
            .scope(Cell::new(0), async {
                let ended = run.await;
                (ended, UPSTREAM_CALLS.with(Cell::get))
            })
            .await;
        let outcome = outcome_name(&result);
        observer.refresh_finished(&platform, outcome);
        observer.refresh_event(&RefreshEvent {
            account_id,
            platform,
            at: clock.now(),
            outcome: outcome.to_owned(),
            duration: started.elapsed(),
            lock_layer,
            attempts,
        });
        result
    }

    /// The snapshot's claim, then re-read → due check → claim, in rounds;
    /// see [`MAX_ROUNDS`].
    ///
    /// The account the run was given (the listed row, the caller's read)
    /// drives the first due check and claim, without a read: a claim won on
    /// it leads to a request only once the re-read after the claim (step 5)
    /// finds the account still holding the claimed token and due, and
    /// whatever else the snapshot meets (not due, not eligible, someone
    /// else's claim) is decided by the rounds, which start from a re-read.
    /// A stale snapshot therefore costs a claim taken and removed, or one
    /// found and ignored, never a request: the re-read after the claim is
    /// the safety mechanism (model: `reread_after_claim`), and the first
    /// read before it only spared that claim.
    async fn run_locked(
        self: &Arc<Self>,
        key: &RefreshKey,
        snapshot: &Account,
        executor: &Arc<dyn RefreshExecutor>,
        window: Duration,
        lease: &mut Option<LeaseGuard>,
    ) -> FlowResult {
        let id = snapshot.id;
        // A run sends at most one request, so it takes at most one cell of
        // the platform's rate limit: before its first claim (the wait then
        // takes nothing from the claim's life or the call's deadline), kept
        // through claims that send nothing.
        let mut slot = false;
        if let Some(token) = self.claimable(snapshot, executor, window) {
            self.rate_limits.until_ready(&executor.platform()).await;
            slot = true;
            let claim_key = ClaimKey::new(executor.platform(), Fingerprint::of(&token));
            match self.try_claim(&claim_key, snapshot).await? {
                Ok(held) => {
                    let (version, claimed) = (Some(snapshot.credentials_version), (held, token));
                    if let Some(result) = self
                        .confirm_and_redeem(key, claimed, id, version, executor, window, lease)
                        .await
                    {
                        return result;
                    }
                }
                Err(_) => debug!("the snapshot's generation is claimed; re-reading"),
            }
        }
        let mut recovered = false;
        for _ in 0..MAX_ROUNDS {
            let fresh = self.reread(id).await?;
            if !executor.can_refresh(&fresh) {
                return Err(FlowError::NotEligible {
                    id,
                    platform: executor.platform(),
                });
            }
            if !executor.needs_refresh(&fresh, window, self.clock.now()) {
                debug!("not due after re-read");
                return Ok(if recovered {
                    RefreshOutcome::Refreshed {
                        account: fresh,
                        recovered: true,
                    }
                } else {
                    RefreshOutcome::StillFresh { account: fresh }
                });
            }
            let Some(token) = fresh.credentials.refresh_token() else {
                return Err(FlowError::Upstream {
                    id,
                    version: fresh.credentials_version,
                    source: ProviderError::MissingRefreshToken,
                });
            };
            if !slot {
                self.rate_limits.until_ready(&executor.platform()).await;
                slot = true;
            }
            let claim_key = ClaimKey::new(executor.platform(), Fingerprint::of(&token));
            match self.claim(key, &claim_key, &fresh, executor).await? {
                Claimed::Won(held) => {
                    if let Some(result) = self
                        .confirm_and_redeem(key, (held, token), id, None, executor, window, lease)
                        .await
                    {
                        return result;
                    }
                }
                Claimed::Applied => recovered = true,
                Claimed::Retry => {}
                Claimed::Outcome(result) => return result,
            }
        }
        debug!("the account kept changing under the run; leaving it to the next one");
        Ok(RefreshOutcome::HeldElsewhere)
    }

    /// The refresh token to claim on `account` as read: eligible, due
    /// and holding one (else the rounds decide from a re-read).
    fn claimable(
        &self,
        account: &Account,
        executor: &Arc<dyn RefreshExecutor>,
        window: Duration,
    ) -> Option<Secret> {
        let due = executor.can_refresh(account)
            && executor.needs_refresh(account, window, self.clock.now());
        due.then(|| account.credentials.refresh_token()).flatten()
    }

    /// Step 5, with the claim on `token` won: a new statement after the
    /// insert was acknowledged. When the account still holds `token`, is
    /// eligible and due (and, for a claim taken on a snapshot, still at the
    /// snapshot's `version`, so the claim's base version is the row's), the
    /// token is presented; otherwise (a rotation elsewhere, an operator's
    /// re-login, a stale snapshot) the claim is removed and `None` says
    /// start over from a re-read.
    #[allow(clippy::too_many_arguments)]
    async fn confirm_and_redeem(
        self: &Arc<Self>,
        key: &RefreshKey,
        (held, token): (HeldClaim, Secret),
        id: AccountId,
        version: Option<u64>,
        executor: &Arc<dyn RefreshExecutor>,
        window: Duration,
        lease: &mut Option<LeaseGuard>,
    ) -> Option<FlowResult> {
        let still_due = |c: &Account| {
            c.credentials.refresh_token().as_ref() == Some(&token)
                && version.is_none_or(|v| v == c.credentials_version)
                && executor.can_refresh(c)
                && executor.needs_refresh(c, window, self.clock.now())
        };
        match self.reread(id).await {
            Ok(confirmed) if still_due(&confirmed) => Some(
                self.redeem(key, held, confirmed, executor, token, lease)
                    .await,
            ),
            changed => {
                self.claim_remove(&held).await;
                if let Err(error) = changed {
                    return Some(Err(error));
                }
                debug!("account changed after claiming; starting over");
                None
            }
        }
    }

    /// One bounded account read.
    pub(super) async fn get_account(&self, id: AccountId) -> Result<Option<Account>, StorageError> {
        bounded(self.config.storage_timeout, "get", self.repo.get(id)).await
    }

    pub(super) async fn reread(&self, id: AccountId) -> Result<Account, FlowError> {
        match self.get_account(id).await {
            Ok(Some(account)) => Ok(account),
            Ok(None) => Err(FlowError::AccountNotFound { id }),
            Err(source) => {
                warn!(kind = %source.kind(), "re-read failed; not refreshing from a snapshot");
                Err(FlowError::Reread { id, source })
            }
        }
    }

    /// After `invalid_grant`: if the account now holds another refresh
    /// token, another worker (or an operator) replaced it while this request
    /// was out, and the stored credentials stand (invariant 6). A version
    /// bump alone (a `project_id` backfill) is not success: the refusal is
    /// reported.
    pub(super) async fn race_recovery(
        &self,
        presented: &Account,
        error: ProviderError,
    ) -> FlowResult {
        let id = presented.id;
        if let Ok(Some(stored)) = self.get_account(id).await
            && stored.credentials.refresh_token() != presented.credentials.refresh_token()
        {
            info!(
                stored_version = stored.credentials_version,
                "refresh token already replaced by another writer; using its credentials"
            );
            return Ok(RefreshOutcome::StillFresh { account: stored });
        }
        warn!(
            kind = error.kind_name(),
            "refresh token rejected by upstream"
        );
        Err(FlowError::Upstream {
            id,
            version: presented.credentials_version,
            source: error,
        })
    }

    pub(super) async fn notify(&self, key: &RefreshKey, version: u64) {
        let Some(notifier) = &self.notifier else {
            return;
        };
        let publish = notifier.publish_refreshed(key, version);
        if let Err(error) = bounded(self.config.release_timeout, "publish_refreshed", publish).await
        {
            warn!(kind = %error.kind(), "refreshed notification failed; waiters fall back to polling");
        }
    }
}

/// The observer's name of a run's result.
fn outcome_name(result: &FlowResult) -> &'static str {
    match result {
        Ok(RefreshOutcome::Refreshed {
            recovered: false, ..
        }) => "refreshed",
        Ok(RefreshOutcome::Refreshed {
            recovered: true, ..
        }) => "recovered",
        Ok(RefreshOutcome::StillFresh { .. }) => "still_fresh",
        Ok(RefreshOutcome::HeldElsewhere) => "held_elsewhere",
        Err(error) => error.stage().as_str(),
    }
}
