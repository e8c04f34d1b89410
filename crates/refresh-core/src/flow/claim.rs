//! The generation claim in the flow: taking it, reading someone else's
//! (an answer to apply, a quarantine, a consumed generation), and the
//! compare-and-act operations of a holder (invariants 1 and 2).

use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::persist::Persisted;
use super::{FlowInner, FlowResult, RefreshOutcome, bounded};
use crate::domain::{Account, Credentials, RefreshKey, add_duration};
use crate::error::FlowError;
use crate::ports::{Claim, ClaimAcquire, ClaimId, ClaimKey, ClaimState, RefreshExecutor};

/// A claim this flow holds.
pub(super) struct HeldClaim {
    pub(super) key: ClaimKey,
    pub(super) id: ClaimId,
    /// Local monotonic time taken BEFORE the insert: the holder judges its
    /// own remaining life from here, never from a stored instant.
    pub(super) started: Instant,
}

/// What claiming found.
pub(super) enum Claimed {
    /// This flow holds the claim; it may present the token after the
    /// re-read.
    Won(HeldClaim),
    /// Someone else's answer was applied to the account; check due-ness
    /// again.
    Applied,
    /// A stale claim was cleared, or the answer belonged to tokens the
    /// account no longer holds; go round again.
    Retry,
    /// The run ends here.
    Outcome(FlowResult),
}

impl FlowInner {
    /// Takes the claim of `claim_key` for `fresh`, or acts on the one that
    /// exists (step 9).
    pub(super) async fn claim(
        &self,
        key: &RefreshKey,
        claim_key: &ClaimKey,
        fresh: &Account,
        executor: &std::sync::Arc<dyn RefreshExecutor>,
    ) -> Result<Claimed, FlowError> {
        let started = Instant::now();
        let acquire = self.claims.acquire(
            claim_key,
            fresh.id,
            fresh.credentials_version,
            self.config.claim_ttl,
        );
        let acquired = bounded(self.config.storage_timeout, "claim_acquire", acquire)
            .await
            .map_err(|source| {
                warn!(kind = %source.kind(), store = self.claims.name(), "generation claim failed; not sending");
                FlowError::Claim {
                    id: fresh.id,
                    source,
                }
            })?;
        let existing = match acquired {
            ClaimAcquire::Won(id) => {
                debug!(claim = %claim_key, "generation claimed");
                return Ok(Claimed::Won(HeldClaim {
                    key: claim_key.clone(),
                    id,
                    started,
                }));
            }
            ClaimAcquire::Existing(existing) => existing,
        };
        // Non-rotating executors (step 12): re-sending the token is
        // harmless, and a claim taken on an older version is stale.
        if !executor.rotates_refresh_token()
            && fresh.credentials_version > existing.base_version
            && existing.state != ClaimState::Consumed
        {
            debug!(claim = %claim_key, state = %existing.state, "clearing a stale claim of a non-rotating account");
            self.remove_claim(&existing.key, &existing.id).await;
            return Ok(Claimed::Retry);
        }
        Ok(match existing.state {
            ClaimState::Answered => {
                let rotating = executor.rotates_refresh_token();
                self.apply_answer(key, fresh, existing, rotating).await
            }
            ClaimState::Consumed => {
                warn!(claim = %claim_key, "the account holds a consumed refresh token; not sending it");
                Claimed::Outcome(Err(FlowError::CredentialsRegressed {
                    id: fresh.id,
                    version: fresh.credentials_version,
                }))
            }
            ClaimState::Quarantined => {
                let remaining = existing.remaining.unwrap_or_default();
                debug!(claim = %claim_key, remaining_ms = remaining.as_millis() as u64, "generation quarantined");
                Claimed::Outcome(Err(FlowError::Quarantined {
                    id: fresh.id,
                    until: add_duration(self.clock.now(), remaining),
                }))
            }
            _ => {
                debug!(claim = %claim_key, "generation claimed by a live flow elsewhere");
                Claimed::Outcome(Ok(RefreshOutcome::HeldElsewhere))
            }
        })
    }

    /// An answer stored in someone's claim: apply it by the fenced write,
    /// then mark the claim consumed. The answer applies while the account
    /// holds the claimed token (it does: the claim key came from it);
    /// a non-rotating account's answer only at its base version (checked in
    /// `claim`).
    async fn apply_answer(
        &self,
        key: &RefreshKey,
        fresh: &Account,
        claim: Claim,
        rotating: bool,
    ) -> Claimed {
        let answer = claim.answer.clone().unwrap_or_default();
        let rotated = rotates(&answer, &fresh.credentials);
        info!(
            base_version = claim.base_version,
            stored_version = fresh.credentials_version,
            "applying an answer found in a generation claim"
        );
        let merged = merged_of(&answer, fresh);
        match self
            .persist(fresh.clone(), merged, &answer, rotating || rotated)
            .await
        {
            Ok(Persisted::Applied(account)) => {
                self.finish_claim(&claim.key, &claim.id, rotated).await;
                self.notify(key, account.credentials_version).await;
                Claimed::Applied
            }
            Ok(Persisted::Superseded(_)) => Claimed::Retry,
            Err(error) => Claimed::Outcome(Err(error.into_flow_error(
                fresh.id,
                merged_of(&answer, fresh),
                true,
            ))),
        }
    }

    /// Removes a claim whose token provably was not presented (or not
    /// consumed). A failed removal leaves the claim to expire.
    pub(super) async fn claim_remove(&self, held: &HeldClaim) {
        self.remove_claim(&held.key, &held.id).await;
    }

    async fn remove_claim(&self, key: &ClaimKey, id: &ClaimId) {
        let remove = self.claims.remove(key, id);
        if let Err(error) = bounded(self.config.storage_timeout, "claim_remove", remove).await {
            warn!(kind = %error.kind(), "could not remove a generation claim; it will expire");
        }
    }

    /// Keeps the claim for the quarantine: the token may be consumed and no
    /// answer came. A failed call leaves the claim's longer initial life.
    pub(super) async fn claim_quarantine(&self, held: &HeldClaim) {
        let quarantine = self
            .claims
            .quarantine(&held.key, &held.id, self.config.quarantine);
        match bounded(self.config.storage_timeout, "claim_quarantine", quarantine).await {
            Ok(true) => {}
            Ok(false) => warn!("generation claim was no longer ours to quarantine"),
            Err(error) => {
                warn!(kind = %error.kind(), "could not shorten the claim to the quarantine; it keeps its initial life")
            }
        }
    }

    /// Step 8: the answer goes into the claim before anything else.
    pub(super) async fn claim_save_answer(&self, held: &HeldClaim, answer: &Credentials) -> bool {
        let save = self.claims.save_answer(&held.key, &held.id, answer);
        match bounded(self.config.storage_timeout, "claim_save_answer", save).await {
            Ok(saved) => saved,
            Err(error) => {
                warn!(kind = %error.kind(), "could not save the answer into the claim");
                false
            }
        }
    }

    /// Pushes an open claim's expiry out again (a holder with an unsaved
    /// answer).
    pub(super) async fn claim_extend(&self, held: &HeldClaim) -> bool {
        let extend = self
            .claims
            .extend(&held.key, &held.id, self.config.claim_ttl);
        matches!(
            bounded(self.config.storage_timeout, "claim_extend", extend).await,
            Ok(true)
        )
    }

    /// Ends a claim after its answer reached the account: marked consumed
    /// for the horizon when the token was rotated away (so it is refused if
    /// it comes back), removed when the upstream kept it.
    pub(super) async fn finish_claim(&self, key: &ClaimKey, id: &ClaimId, consumed: bool) {
        if !consumed {
            self.remove_claim(key, id).await;
            return;
        }
        let mark = self
            .claims
            .mark_consumed(key, id, self.config.consumed_horizon);
        if let Err(error) = bounded(self.config.storage_timeout, "claim_mark_consumed", mark).await
        {
            warn!(kind = %error.kind(), "could not mark the claim consumed; its answer stays applicable");
        }
    }
}

/// Whether `answer` replaces the refresh token `base` holds.
pub(super) fn rotates(answer: &Credentials, base: &Credentials) -> bool {
    answer
        .refresh_token()
        .is_some_and(|rt| Some(rt) != base.refresh_token())
}

fn merged_of(answer: &Credentials, fresh: &Account) -> Credentials {
    answer.clone().merged_over(&fresh.credentials)
}
