//! The fenced write of an [`Answer`] (invariants 2 and 3), and the rescue of
//! an answer that neither the account nor the claim could take.

use std::sync::Arc;
use std::time::Duration;

use tracing::{Instrument, debug, info, warn};

use super::claim::HeldClaim;
use super::lease_guard::LeaseGuard;
use super::{FlowInner, FlowResult, RefreshOutcome};
use crate::domain::{Account, Credentials, RefreshKey, keys};
use crate::error::{FlowError, StorageError};
use crate::ports::{CasExpectation, CasOutcome};

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
}

impl Answer {
    /// `issued` (an executor's answer or a claim's stored one) over `base`.
    /// Blank token values never win the merge; an unreadable `expires_at`
    /// is stored as unknown. A rotation is always re-applied over an
    /// unrelated write; otherwise only when `reapply` says so: a live answer
    /// is, a stored answer of a non-rotating account is not (it applies only
    /// at its base version, step 12).
    pub(super) fn new(base: Account, issued: Credentials, reapply: bool) -> Self {
        let mut merged = issued.merged_over(&base.credentials);
        if let Err(error) = merged.canonicalize() {
            warn!(%error, "answer has an unreadable expires_at; storing the expiry as unknown");
            merged.remove(keys::EXPIRES_AT);
        }
        let delta = merged.changed_since(&base.credentials);
        let rotated = delta
            .refresh_token()
            .is_some_and(|rt| Some(rt) != base.credentials.refresh_token());
        Self {
            base,
            merged,
            delta,
            rotated,
            reapply: reapply || rotated,
        }
    }

    /// `NotPersisted` carrying the merged credentials, or `AccountNotFound`.
    pub(super) fn failed(self, error: PersistError, answer_saved: bool) -> FlowError {
        let id = self.base.id;
        match error {
            PersistError::NotFound => FlowError::AccountNotFound { id },
            PersistError::Storage(source) => {
                warn!(answer_saved, "refreshed upstream but not persisted");
                FlowError::NotPersisted {
                    id,
                    credentials: Box::new(self.merged),
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
        let usable = issued.access_token().is_some();
        let mut answer = Answer::new(fresh, issued, true);
        if !usable && !answer.rotated {
            // Nothing worth keeping, but the request was processed.
            if rotating {
                self.claim_quarantine(&held).await;
            } else {
                self.claim_remove(&held).await;
            }
            return Err(FlowError::EmptyCredentials { id });
        }
        let answer_saved = self.claim_save_answer(&held, &answer.delta).await;
        let outcome = match self.persist(&mut answer).await {
            Ok(Persisted::Applied(account)) => {
                self.finish_claim(&held, answer.rotated).await;
                info!(
                    version = account.credentials_version,
                    "credentials refreshed and persisted"
                );
                self.notify(key, account.credentials_version).await;
                RefreshOutcome::Refreshed {
                    account,
                    recovered: false,
                }
            }
            Ok(Persisted::Superseded(account)) => {
                self.finish_claim(&held, answer.rotated).await;
                RefreshOutcome::StillFresh { account }
            }
            Err(PersistError::Storage(source)) if !answer_saved => {
                let error = FlowError::NotPersisted {
                    id,
                    credentials: Box::new(answer.merged.clone()),
                    answer_saved,
                    source,
                };
                self.spawn_rescue(key, held, answer, lease.take());
                return Err(error);
            }
            Err(error) => return Err(answer.failed(error, answer_saved)),
        };
        if !usable {
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
        Err(PersistError::Storage(last_error))
    }

    /// One fenced write. On a mismatch it re-reads: our own timed-out write
    /// that landed is success; a row with another refresh token (or, for a
    /// non-rotating answer, any newer row) stands; a row that still holds the
    /// presented token had an unrelated credential write, and the answer's
    /// changed keys are re-applied over it for the next attempt.
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
        let tokens = |c: &Credentials| (c.access_token(), c.refresh_token());
        if tokens(&current.credentials) == tokens(&answer.merged) {
            return Ok(Persisted::Applied(current));
        }
        if !answer.reapply
            || current.credentials.refresh_token() != answer.base.credentials.refresh_token()
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
                match this.write_once(&mut answer).await {
                    Ok(persisted) => {
                        this.finish_claim(&held, answer.rotated).await;
                        if let Persisted::Applied(account) = persisted {
                            info!("rescued answer persisted");
                            this.notify(&key, account.credentials_version).await;
                        }
                        break;
                    }
                    Err(PersistError::NotFound | PersistError::Storage(_)) => {}
                }
                if this.claim_save_answer(&held, &answer.delta).await {
                    info!("rescued answer saved into the claim");
                    break;
                }
                this.claim_extend(&held).await;
            }
            if let Some(lease) = lease {
                lease.release(this.config.release_timeout).await;
            }
        };
        tokio::spawn(rescue.in_current_span());
    }
}
