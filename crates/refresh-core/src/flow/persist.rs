//! The fenced write of an [`Answer`] (invariants 2 and 3), and the rescue of
//! an answer that neither the account nor the claim could take.

use std::sync::Arc;
use std::time::Duration;

use tracing::{Instrument, debug, info, warn};

use super::claim::HeldClaim;
use super::lease_guard::LeaseGuard;
use super::{FlowInner, FlowResult, RefreshOutcome};
use chrono::{DateTime, Utc};

use crate::concurrency::bounded;
use crate::domain::{Account, CredentialChange, Credentials, Platform, RefreshKey, Secret, keys};
use crate::error::{FlowError, StorageError};
use crate::ports::{CasExpectation, CasOutcome, Claim, ClaimState};

/// The token pair of a credential map: how a write recognises itself.
fn tokens(c: &Credentials) -> (Option<Secret>, Option<Secret>) {
    (c.access_token(), c.refresh_token())
}

/// What a refresh produced, relative to the account it started from.
pub(super) struct Answer {
    /// The account the write is fenced on (moves forward on re-applies).
    base: Account,
    /// The credentials to write: the answer merged over `base`'s.
    merged: Credentials,
    /// The keys the refresh changed: what the claim stores and what is
    /// re-applied over a newer row.
    pub(super) delta: Credentials,
    /// The answer replaces the refresh token `base` holds.
    pub(super) rotated: bool,
    /// On a mismatch, re-apply `delta` over a row that still holds the
    /// presented token; otherwise the newer row stands.
    reapply: bool,
    /// The platform of the claim key (to look up the generation a newer
    /// row holds).
    platform: Platform,
    /// The answer carries an access token.
    usable: bool,
    /// The refresh token the answer redeemed (`base` may move on to rows
    /// holding others).
    presented: Option<Secret>,
}

impl Answer {
    /// `issued` (an executor's answer or a claim's stored one) over `base`,
    /// by the rules of [`CredentialChange::of`]. A rotation is always
    /// re-applied over an unrelated write; otherwise only when `reapply`
    /// says so: a live answer is, a stored answer of a non-rotating account
    /// is not (it applies only at its base version, step 12). `platform` is
    /// the claim key's.
    pub(super) fn new(
        base: Account,
        issued: Credentials,
        reapply: bool,
        platform: &Platform,
        now: DateTime<Utc>,
    ) -> Self {
        let change = CredentialChange::of(issued, &base.credentials, now);
        Self {
            merged: change.delta.clone().merged_over(&base.credentials),
            presented: base.credentials.refresh_token(),
            base,
            delta: change.delta,
            rotated: change.rotated,
            reapply: reapply || change.rotated,
            platform: platform.clone(),
            usable: change.usable,
        }
    }

    /// Whether the answer carries an access token (new, or the same one
    /// reissued with a new expiry).
    pub(super) fn usable(&self) -> bool {
        self.usable
    }

    /// `NotPersisted` carrying the merged credentials, or `AccountNotFound`.
    pub(super) fn failed(&self, error: PersistError, answer_saved: bool) -> FlowError {
        let id = self.base.id;
        match error {
            PersistError::NotFound => FlowError::AccountNotFound { id },
            PersistError::Storage(source) => {
                warn!(answer_saved, "refreshed upstream but not persisted");
                FlowError::NotPersisted {
                    id,
                    credentials: Box::new(self.merged.clone()),
                    answer_saved,
                    source,
                }
            }
        }
    }
}

/// How a fenced write ended when it did not fail.
pub(super) enum Persisted {
    /// Our credentials are stored.
    Applied(Account),
    /// The account no longer holds the presented token (or, non-rotating,
    /// was written since): the stored credentials stand.
    Superseded(Account),
}

/// Why a fenced write did not land.
pub(super) enum PersistError {
    /// The account was deleted.
    NotFound,
    /// The store failed every attempt.
    Storage(StorageError),
}

/// Longest pause between rescue attempts.
const RESCUE_MAX_PAUSE: Duration = Duration::from_secs(10);

impl FlowInner {
    /// An answer arrived for the claim `held`: into the claim first (one
    /// round trip), then the fenced write, then the claim is marked
    /// consumed (or removed, when the token was not rotated).
    pub(super) async fn complete(
        self: &Arc<Self>,
        key: &RefreshKey,
        held: HeldClaim,
        fresh: Account,
        issued: Credentials,
        rotating: bool,
        lease: &mut Option<LeaseGuard>,
    ) -> FlowResult {
        let id = fresh.id;
        let now = self.clock.now();
        let mut answer = Answer::new(fresh, issued, true, &held.key.platform, now);
        if !answer.usable() && !answer.rotated {
            // Nothing worth keeping, but the request was processed.
            self.claim_unanswered(&held, rotating).await;
            return Err(FlowError::EmptyCredentials { id });
        }
        let answer_saved = self.claim_save_answer(&held, &answer.delta).await;
        let outcome = match self.persist(&mut answer).await {
            Ok(Persisted::Applied(account)) => {
                info!(
                    version = account.credentials_version,
                    "credentials refreshed and persisted"
                );
                // The stored credentials are final: the request path's
                // callers and the waiters elsewhere need nothing more. The
                // consumed mark only refuses a later re-import of the old
                // token, which the claim (answered) already does meanwhile.
                if answer.usable()
                    && let Some(window) = super::early::hand_out(&account)
                {
                    self.share(key, &account, window).await;
                }
                self.notify(key, account.credentials_version).await;
                self.finish_claim(&held, answer.rotated).await;
                RefreshOutcome::Refreshed {
                    account,
                    recovered: false,
                }
            }
            Ok(Persisted::Superseded(account)) => {
                self.finish_claim(&held, answer.rotated).await;
                RefreshOutcome::StillFresh { account }
            }
            Err(error) => {
                let error = answer.failed(error, answer_saved);
                if !answer_saved {
                    // The answer proves the token consumed and exists only
                    // here (also when the account was deleted: a re-import
                    // of the old token must find it).
                    self.spawn_rescue(key, held, answer, lease.take());
                }
                return Err(error);
            }
        };
        if !answer.usable() {
            warn!("answer without an access token rotated the refresh token; stored it");
            return Err(FlowError::EmptyCredentials { id });
        }
        Ok(outcome)
    }

    /// The fenced write with bounded retries and backoff.
    pub(super) async fn persist(&self, answer: &mut Answer) -> Result<Persisted, PersistError> {
        let mut last_error = StorageError::other("compare_and_set_credentials", "no attempt made");
        for attempt in 1..=self.config.persist_attempts {
            if attempt > 1 {
                tokio::time::sleep(self.config.persist_backoff_before(attempt)).await;
            }
            match self.write_once(answer).await {
                Err(PersistError::Storage(error)) => {
                    warn!(attempt, kind = %error.kind(), "fenced write failed");
                    let retryable = error.is_retryable();
                    last_error = error;
                    if !retryable {
                        break;
                    }
                }
                done => return done,
            }
        }
        // A write reported failed may have committed (a lost answer, a
        // misreported error): one last read recognises our own write.
        if let Ok(Some(current)) = self.get_account(answer.base.id).await
            && tokens(&current.credentials) == tokens(&answer.merged)
        {
            return Ok(Persisted::Applied(current));
        }
        Err(PersistError::Storage(last_error))
    }

    /// One fenced write. On a mismatch it re-reads: our own timed-out write
    /// that landed is success; a row holding a consumed token (a restored
    /// backup) gets the live answer; a row with another refresh token, or
    /// (no rotation) another access token, stands; a row that only had an
    /// unrelated credential write gets the answer's changed keys re-applied
    /// for the next attempt, unless the answer may apply only at its base
    /// version.
    async fn write_once(&self, answer: &mut Answer) -> Result<Persisted, PersistError> {
        let id = answer.base.id;
        let expected = CasExpectation::of(&answer.base);
        let write = self
            .repo
            .compare_and_set_credentials(id, expected, &answer.merged);
        let timed_out =
            || StorageError::timeout("compare_and_set_credentials", "write attempt timed out");
        match tokio::time::timeout(self.config.persist_attempt_timeout, write).await {
            Ok(Ok(CasOutcome::Applied(account))) => return Ok(Persisted::Applied(account)),
            Ok(Ok(CasOutcome::NotFound)) => return Err(PersistError::NotFound),
            Ok(Ok(CasOutcome::VersionMismatch { current_version })) => {
                debug!(current_version, "fenced write found a newer row");
            }
            Ok(Err(error)) => return Err(PersistError::Storage(error)),
            Err(_) => return Err(PersistError::Storage(timed_out())),
        }
        let current = match self.get_account(id).await {
            Ok(Some(current)) => current,
            Ok(None) => return Err(PersistError::NotFound),
            Err(error) => return Err(PersistError::Storage(error)),
        };
        if tokens(&current.credentials) == tokens(&answer.merged) {
            return Ok(Persisted::Applied(current));
        }
        // Our rotated token has a claim: someone read it from the row (or
        // applied it from our claim) and is redeeming it or has, so this
        // answer already landed and the row has moved on.
        if answer.rotated
            && let Some(issued) = answer.merged.refresh_token()
            && self
                .claim_of(&answer.platform, &issued)
                .await
                .map_err(PersistError::Storage)?
                .is_some()
        {
            debug!("the answer's own token is claimed; this answer already landed");
            return Ok(Persisted::Superseded(current));
        }
        let replaced = current.credentials.refresh_token() != answer.presented;
        let claim = self
            .stored_token_claim(&answer.platform, &current)
            .await
            .map_err(PersistError::Storage)?;
        let state = claim.as_ref().map(|c| c.state);
        if !replaced && !answer.rotated && state == Some(ClaimState::Consumed) {
            // A kept token whose generation was declared dead since.
            warn!("the presented token's generation is consumed; keeping the stored credentials");
            return Ok(Persisted::Superseded(current));
        }
        // A rotated answer whose own token nobody claimed is the live
        // generation (the check above): a row holding the presented token
        // again, consumed or not, gets it re-applied.
        let redeemed = replaced
            && match state {
                // Consumed, or maybe consumed: our answer is certainly live.
                Some(ClaimState::Consumed | ClaimState::Quarantined) => true,
                // Answered: dead only if that answer landed and is being
                // redeemed in turn (its own token is claimed). Otherwise it
                // is another grant's refresh still writing (a fresh login),
                // or a non-rotating account's token that stays valid.
                Some(ClaimState::Answered) => {
                    answer.rotated
                        && self
                            .answer_is_claimed(&answer.platform, claim.as_ref())
                            .await?
                }
                _ => false,
            };
        if redeemed {
            // A restored backup or an old export put a redeemed token back
            // while the call was out: the live answer is the only valid
            // generation, so it goes over the regressed row, with the
            // presented token when the answer kept it (non-rotating).
            warn!("the row holds a redeemed refresh token; applying the live answer over it");
            if answer.delta.get(keys::REFRESH_TOKEN).is_none()
                && let Some(presented) = &answer.presented
            {
                answer.delta.insert(keys::REFRESH_TOKEN, presented.expose());
            }
        } else if replaced
            || !answer.reapply
            || !answer.rotated
                && current.credentials.access_token() != answer.base.credentials.access_token()
        {
            warn!(
                stored_version = current.credentials_version,
                "credentials replaced by another writer; keeping the stored ones"
            );
            return Ok(Persisted::Superseded(current));
        }
        answer.merged = answer.delta.clone().merged_over(&current.credentials);
        answer.base = current;
        Err(PersistError::Storage(StorageError::busy(
            "compare_and_set_credentials",
            "another writer changed the credentials; re-applied the refresh on top",
        )))
    }

    /// The claim on the refresh token `account` holds, if any.
    ///
    /// # Errors
    /// The claim store's: unknown is not "no" (taking the row for a
    /// legitimate replacement would drop the live answer).
    async fn stored_token_claim(
        &self,
        platform: &Platform,
        account: &Account,
    ) -> Result<Option<Claim>, StorageError> {
        let Some(token) = account.credentials.refresh_token() else {
            return Ok(None);
        };
        self.claim_of(platform, &token).await
    }

    /// Whether the refresh token in `claim`'s answer has a claim itself
    /// (the answer landed and someone is redeeming it).
    ///
    /// # Errors
    /// The claim store's, as [`PersistError::Storage`].
    async fn answer_is_claimed(
        &self,
        platform: &Platform,
        claim: Option<&Claim>,
    ) -> Result<bool, PersistError> {
        let Some(token) = claim
            .and_then(|c| c.answer.as_ref())
            .and_then(Credentials::refresh_token)
        else {
            return Ok(false);
        };
        let claimed = self.claim_of(platform, &token).await;
        Ok(claimed.map_err(PersistError::Storage)?.is_some())
    }

    /// Step 10: the answer is only in this process. A detached task keeps
    /// the leases (their keeper goes on extending them), keeps the claim
    /// alive, and retries the fenced write and the claim with no deadline
    /// until one of them holds the answer. The write is fenced, so a late
    /// retry is safe.
    fn spawn_rescue(
        self: &Arc<Self>,
        key: &RefreshKey,
        held: HeldClaim,
        mut answer: Answer,
        lease: Option<LeaseGuard>,
    ) {
        warn!("write and claim store both failed; rescuing the answer under the leases");
        let (this, key) = (Arc::clone(self), key.clone());
        let rescue = async move {
            let mut pause = this.config.persist_backoff.max(Duration::from_millis(100));
            loop {
                tokio::time::sleep(pause).await;
                pause = pause.saturating_mul(2).min(RESCUE_MAX_PAUSE);
                let account_gone = match this.write_once(&mut answer).await {
                    Ok(persisted) => {
                        this.finish_claim(&held, answer.rotated).await;
                        if let Persisted::Applied(account) = persisted {
                            info!("rescued answer persisted");
                            this.notify(&key, account.credentials_version).await;
                        }
                        break;
                    }
                    Err(PersistError::NotFound) => true,
                    Err(PersistError::Storage(_)) => false,
                };
                let save = this.claims.save_answer(&held.key, &held.id, &answer.delta);
                match bounded(this.config.storage_timeout, "claim_save_answer", save).await {
                    Ok(true) => {
                        info!("rescued answer saved into the claim");
                        break;
                    }
                    Ok(false) if account_gone => {
                        warn!(
                            "the account is gone and the claim is no longer ours; the rescued answer has nowhere to go"
                        );
                        break;
                    }
                    Ok(false) | Err(_) => {}
                }
                this.claim_extend(&held).await;
            }
            if let Some(lease) = lease {
                lease.release(this.config.release_timeout).await;
            }
        };
        self.detached.spawn(rescue.in_current_span());
    }
}
