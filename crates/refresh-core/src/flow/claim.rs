//! The generation claim in the flow: taking it, reading someone else's
//! (an answer to apply, a quarantine, a consumed generation), and the
//! compare-and-act operations of a holder (invariants 1 and 2).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::Instrument;
use tracing::{debug, info, warn};

use super::persist::{Answer, Persisted};
use super::{FlowInner, FlowResult, RefreshOutcome};
use crate::concurrency::bounded;
use crate::domain::{
    Account, AccountId, Credentials, Fingerprint, Platform, RefreshKey, Secret, add_duration,
};
use crate::error::{FlowError, StorageError};
use crate::ports::{Claim, ClaimAcquire, ClaimId, ClaimKey, ClaimState, RefreshExecutor};
use std::future::Future;

/// Attempts of the calls that end a claim (remove, mark consumed): a claim
/// left open blocks the account, or lets a consumed token be taken over once
/// it expires.
const ENDING_ATTEMPTS: u32 = 3;

/// A claim this flow holds.
#[derive(Clone)]
pub(super) struct HeldClaim {
    pub(super) key: ClaimKey,
    pub(super) id: ClaimId,
    /// Local monotonic time taken BEFORE the insert: the holder judges its
    /// own remaining life from here, never from a stored instant.
    pub(super) started: Instant,
}

impl HeldClaim {
    /// Acts on someone else's claim by its id (an answer applied, a stale
    /// claim cleared): compare-and-act still protects a newer holding.
    fn of(claim: &Claim) -> Self {
        Self {
            key: claim.key.clone(),
            id: claim.id.clone(),
            started: Instant::now(),
        }
    }
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
        let existing = match self.try_claim(claim_key, fresh).await? {
            Ok(held) => return Ok(Claimed::Won(held)),
            Err(existing) => existing,
        };
        // Non-rotating executors (step 12): re-sending the token is
        // harmless, and a claim taken on an older version is stale.
        if existing.state != ClaimState::Consumed
            && stale(&existing, fresh, executor.rotates_refresh_token())
        {
            debug!(claim = %claim_key, state = %existing.state, "clearing a stale claim of a non-rotating account");
            self.claim_remove(&HeldClaim::of(&existing)).await;
            return Ok(Claimed::Retry);
        }
        Ok(match existing.state {
            ClaimState::Answered => {
                let rotating = executor.rotates_refresh_token();
                self.apply_answer(key, fresh, existing, rotating).await
            }
            ClaimState::Consumed => self.consumed(claim_key, fresh).await?,
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

    /// Takes the claim of `claim_key` for `fresh`: the holding won, or the
    /// claim that exists (someone else's).
    ///
    /// # Errors
    /// `Claim` when the store failed twice (the claim is then removed by
    /// its id: the token is not sent).
    pub(super) async fn try_claim(
        &self,
        claim_key: &ClaimKey,
        fresh: &Account,
    ) -> Result<Result<HeldClaim, Claim>, FlowError> {
        let held = HeldClaim {
            key: claim_key.clone(),
            id: ClaimId::random(),
            started: Instant::now(),
        };
        let (version, ttl) = (fresh.credentials_version, self.config.claim_ttl);
        let acquire = || {
            let call = self
                .claims
                .acquire(claim_key, &held.id, fresh.id, version, ttl);
            bounded(self.config.storage_timeout, "claim_acquire", call)
        };
        // An acquire whose answer was lost may have committed: the retry
        // with the same id finds it ours (acquire is idempotent per id), and
        // if the retry fails too the claim is removed by its id.
        let acquired = match acquire().await {
            Ok(acquired) => Ok(acquired),
            Err(first) => {
                warn!(kind = %first.kind(), store = self.claims.name(), "generation claim failed; retrying with the same id");
                acquire().await
            }
        };
        match acquired {
            Ok(ClaimAcquire::Won(_)) => {
                debug!(claim = %claim_key, "generation claimed");
                Ok(Ok(held))
            }
            Ok(ClaimAcquire::Existing(existing)) => Ok(Err(existing)),
            Err(source) => {
                warn!(kind = %source.kind(), "generation claim failed; not sending");
                let remove = || self.claims.remove(&held.key, &held.id);
                self.claim_call("claim_remove", 1, remove).await;
                let id = fresh.id;
                Err(FlowError::Claim { id, source })
            }
        }
    }

    /// The answer a holder left in the claim of `id`'s refresh token (its
    /// write failed, or it crashed after saving it), applied by the fenced
    /// write without taking the leases: the claim and the fence are what
    /// make applying it safe, and a crashed holder's lease may outlive a
    /// waiter's patience. The account as stored after, or `None` when
    /// there is no applicable answer.
    pub(super) async fn apply_left_answer(
        &self,
        id: AccountId,
        executor: &std::sync::Arc<dyn RefreshExecutor>,
    ) -> Option<Account> {
        let fresh = self.get_account(id).await.ok()??;
        let token = fresh.credentials.refresh_token()?;
        let claim = self.claim_of(&executor.platform(), &token).await.ok()??;
        let rotating = executor.rotates_refresh_token();
        if claim.state != ClaimState::Answered || stale(&claim, &fresh, rotating) {
            return None;
        }
        let key = executor.key(&fresh);
        match self.apply_answer(&key, &fresh, claim, rotating).await {
            Claimed::Applied => self.get_account(id).await.ok().flatten(),
            _ => None,
        }
    }

    /// The claim of `token`'s generation on `platform`, bounded.
    ///
    /// # Errors
    /// The claim store's.
    pub(super) async fn claim_of(
        &self,
        platform: &Platform,
        token: &Secret,
    ) -> Result<Option<Claim>, StorageError> {
        let key = ClaimKey::new(platform.clone(), Fingerprint::of(token));
        bounded(
            self.config.storage_timeout,
            "claim_get",
            self.claims.get(&key),
        )
        .await
    }

    /// A consumed generation: either another flow rotated the account
    /// between our re-read and the claim attempt (the account no longer
    /// holds the token: go round again), or the account really holds a
    /// consumed token (an old export, a restored backup).
    async fn consumed(&self, claim_key: &ClaimKey, fresh: &Account) -> Result<Claimed, FlowError> {
        let now = self.reread(fresh.id).await?;
        let token = now.credentials.refresh_token().map(|t| Fingerprint::of(&t));
        if token != Some(claim_key.fingerprint) {
            return Ok(Claimed::Retry);
        }
        warn!(claim = %claim_key, "the account holds a consumed refresh token; not sending it");
        Ok(Claimed::Outcome(Err(FlowError::CredentialsRegressed {
            id: now.id,
            version: now.credentials_version,
        })))
    }

    /// An answer stored in someone's claim: apply it by the fenced write,
    /// then mark the claim consumed. The answer applies while the account
    /// holds the claimed token (it does: the claim key came from it);
    /// a non-rotating account's answer only at its base version (checked in
    /// `claim`).
    pub(super) async fn apply_answer(
        &self,
        key: &RefreshKey,
        fresh: &Account,
        claim: Claim,
        rotating: bool,
    ) -> Claimed {
        info!(
            base_version = claim.base_version,
            stored_version = fresh.credentials_version,
            "applying an answer found in a generation claim"
        );
        let answer = claim.answer.clone().unwrap_or_default();
        let now = self.clock.now();
        let mut answer = Answer::new(fresh.clone(), answer, rotating, &claim.key.platform, now);
        match self.persist(&mut answer).await {
            Ok(Persisted::Applied(account)) => {
                self.finish_claim(&HeldClaim::of(&claim), answer.rotated)
                    .await;
                self.notify(key, account.credentials_version).await;
                Claimed::Applied
            }
            Ok(Persisted::Superseded(_)) => Claimed::Retry,
            Err(error) => Claimed::Outcome(Err(answer.failed(error, true))),
        }
    }

    /// One bounded claim-store call of a holder, made up to `attempts`
    /// times (with the write backoff) while the store fails; a store failure
    /// is logged and reads as `false`, leaving the claim as it was (its
    /// expiry then decides).
    async fn claim_call<F, Fut>(&self, op: &'static str, attempts: u32, call: F) -> bool
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<bool, StorageError>>,
    {
        for attempt in 1..=attempts {
            if attempt > 1 {
                tokio::time::sleep(self.config.persist_backoff_before(attempt)).await;
            }
            match bounded(self.config.storage_timeout, op, call()).await {
                Ok(done) => return done,
                Err(error) => {
                    warn!(op, attempt, kind = %error.kind(), "generation claim call failed")
                }
            }
        }
        false
    }

    /// Removes a claim whose token provably was not consumed. A claim left
    /// behind blocks the account until it expires, so a failed removal is
    /// retried.
    pub(super) async fn claim_remove(&self, held: &HeldClaim) -> bool {
        let remove = || self.claims.remove(&held.key, &held.id);
        self.claim_call("claim_remove", ENDING_ATTEMPTS, remove)
            .await
    }

    /// Ends a claim whose request got no usable answer: kept for the
    /// quarantine when the token may be consumed (`maybe_consumed`; on
    /// failure the claim keeps its longer initial life), removed otherwise.
    pub(super) async fn claim_unanswered(&self, held: &HeldClaim, maybe_consumed: bool) -> bool {
        if !maybe_consumed {
            return self.claim_remove(held).await;
        }
        warn!("the request may have consumed the refresh token; quarantining it");
        let ttl = self.config.quarantine;
        let quarantine = || self.claims.quarantine(&held.key, &held.id, ttl);
        self.claim_call("claim_quarantine", 1, quarantine).await
    }

    /// A 429 with `Retry-After`: the claim is quarantined for that long (at
    /// most `quarantine`), so no instance presents the token before the
    /// upstream said it may; a later flow gets `Quarantined { until }`.
    pub(super) async fn claim_hold(&self, held: &HeldClaim, retry_after: Duration) -> bool {
        debug!(
            retry_after_ms = retry_after.as_millis() as u64,
            "rate limited; holding the generation until Retry-After"
        );
        let ttl = retry_after.min(self.config.quarantine);
        let quarantine = || self.claims.quarantine(&held.key, &held.id, ttl);
        self.claim_call("claim_quarantine", 1, quarantine).await
    }

    /// Step 8: the answer goes into the claim before anything else.
    pub(super) async fn claim_save_answer(&self, held: &HeldClaim, answer: &Credentials) -> bool {
        let save = || self.claims.save_answer(&held.key, &held.id, answer);
        self.claim_call("claim_save_answer", 1, save).await
    }

    /// Pushes an open claim's expiry out again (a holder with an unsaved
    /// answer).
    pub(super) async fn claim_extend(&self, held: &HeldClaim) -> bool {
        let ttl = self.config.claim_ttl;
        let extend = || self.claims.extend(&held.key, &held.id, ttl);
        self.claim_call("claim_extend", 1, extend).await
    }

    /// Ends a claim after its answer reached the account (or the upstream
    /// declared the generation dead): marked consumed for the horizon when
    /// the token is gone (so it is refused if it comes back), removed when
    /// the upstream kept it.
    ///
    /// The consumed mark is what refuses a re-import of the token later: if
    /// its attempts fail, a detached task keeps the claim alive and retries
    /// the mark until it lands or the claim is no longer this holder's.
    pub(super) async fn finish_claim(&self, held: &HeldClaim, consumed: bool) -> bool {
        if !consumed {
            return self.claim_remove(held).await;
        }
        let keep = self.config.consumed_horizon;
        let mark = || self.claims.mark_consumed(&held.key, &held.id, keep);
        if self
            .claim_call("claim_mark_consumed", ENDING_ATTEMPTS, mark)
            .await
        {
            return true;
        }
        let (claims, held) = (Arc::clone(&self.claims), held.clone());
        let (ttl, timeout) = (self.config.claim_ttl, self.config.storage_timeout);
        let ensure = async move {
            let mut pause = Duration::from_secs(1);
            loop {
                tokio::time::sleep(pause).await;
                pause = pause.saturating_mul(2).min(Duration::from_secs(10));
                let mark = claims.mark_consumed(&held.key, &held.id, keep);
                if bounded(timeout, "claim_mark_consumed", mark).await.is_ok() {
                    return;
                }
                let _ = bounded(
                    timeout,
                    "claim_extend",
                    claims.extend(&held.key, &held.id, ttl),
                )
                .await;
            }
        };
        warn!("could not mark the claim consumed; retrying in the background");
        self.detached.spawn(ensure.in_current_span());
        false
    }
}

/// Whether `claim` is stale for `fresh` (step 12): a non-rotating account
/// whose version moved past the claim's base, unless the claim's answer
/// rotates (then it is handled as rotating).
fn stale(claim: &Claim, fresh: &Account, rotating: bool) -> bool {
    let answer_rotates = claim
        .answer
        .as_ref()
        .and_then(Credentials::refresh_token)
        .is_some_and(|rt| Some(rt) != fresh.credentials.refresh_token());
    !rotating && fresh.credentials_version > claim.base_version && !answer_rotates
}
