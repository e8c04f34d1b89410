//! The fenced write of new credentials (invariants 2 and 3), and the rescue
//! of an answer that neither the account nor the claim could take.

use std::sync::Arc;
use std::time::Duration;

use tracing::{Instrument, debug, info, warn};

use super::claim::{HeldClaim, rotates};
use super::lease_guard::LeaseGuard;
use super::{FlowInner, FlowResult, RefreshOutcome};
use crate::domain::{Account, AccountId, Credentials, RefreshKey, keys};
use crate::error::{FlowError, StorageError, StorageErrorKind};
use crate::ports::{CasExpectation, CasOutcome};

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

impl PersistError {
    pub(super) fn into_flow_error(
        self,
        id: AccountId,
        credentials: Credentials,
        answer_saved: bool,
    ) -> FlowError {
        match self {
            Self::NotFound => FlowError::AccountNotFound { id },
            Self::Storage(source) => {
                warn!(answer_saved, "refreshed upstream but not persisted");
                FlowError::NotPersisted {
                    id,
                    credentials: Box::new(credentials),
                    answer_saved,
                    source,
                }
            }
        }
    }
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
        let issued = without_blank_tokens(issued);
        let usable = issued.access_token().is_some();
        let mut merged = issued.merged_over(&fresh.credentials);
        if let Err(error) = merged.canonicalize() {
            warn!(%error, "executor wrote an unreadable expires_at; storing the expiry as unknown");
            merged.remove(keys::EXPIRES_AT);
        }
        let delta = changes(&merged, &fresh.credentials);
        let rotated = rotates(&delta, &fresh.credentials);
        if !usable && !rotated {
            // Nothing worth keeping; the request was processed, so the
            // token may be consumed.
            if rotating {
                self.claim_quarantine(&held).await;
            } else {
                self.claim_remove(&held).await;
            }
            return Err(FlowError::EmptyCredentials { id });
        }
        let answer_saved = self.claim_save_answer(&held, &delta).await;
        let reapply = rotating || rotated;
        let outcome = match self
            .persist(fresh.clone(), merged.clone(), &delta, reapply)
            .await
        {
            Ok(Persisted::Applied(account)) => {
                self.finish_claim(&held.key, &held.id, rotated).await;
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
                self.finish_claim(&held.key, &held.id, rotated).await;
                RefreshOutcome::StillFresh { account }
            }
            Err(error) => {
                if !answer_saved && matches!(error, PersistError::Storage(_)) {
                    let rescue = Rescue {
                        base: fresh,
                        merged: merged.clone(),
                        delta,
                        rotated,
                        reapply,
                    };
                    self.spawn_rescue(key, held, rescue, lease.take());
                }
                return Err(error.into_flow_error(id, merged, answer_saved));
            }
        };
        if usable {
            Ok(outcome)
        } else {
            warn!("answer without an access token rotated the refresh token; stored it");
            Err(FlowError::EmptyCredentials { id })
        }
    }

    /// The fenced write with bounded retries. On a mismatch it re-reads: a
    /// row that still holds the presented refresh token had an unrelated
    /// credential write (rotating: the refresh's changed keys are re-applied
    /// over it; non-rotating: the newer row stands); our own timed-out write
    /// that landed is success; a row with another refresh token stands.
    pub(super) async fn persist(
        &self,
        mut base: Account,
        mut merged: Credentials,
        delta: &Credentials,
        rotating: bool,
    ) -> Result<Persisted, PersistError> {
        let mut last_error = StorageError::new(
            StorageErrorKind::Other,
            "compare_and_set_credentials",
            "no attempt made",
        );
        for attempt in 1..=self.config.persist_attempts {
            if attempt > 1 {
                tokio::time::sleep(self.config.persist_backoff_before(attempt)).await;
            }
            match self
                .write_once(&mut base, &mut merged, delta, rotating)
                .await
            {
                Ok(persisted) => return Ok(persisted),
                Err(PersistError::NotFound) => return Err(PersistError::NotFound),
                Err(PersistError::Storage(error)) => {
                    warn!(attempt, kind = %error.kind(), "fenced write failed");
                    let retryable = error.is_retryable();
                    last_error = error;
                    if !retryable {
                        break;
                    }
                }
            }
        }
        Err(PersistError::Storage(last_error))
    }

    /// One fenced write (and, on a mismatch, the re-read that decides).
    async fn write_once(
        &self,
        base: &mut Account,
        merged: &mut Credentials,
        delta: &Credentials,
        rotating: bool,
    ) -> Result<Persisted, PersistError> {
        let id = base.id;
        let write = self
            .repo
            .compare_and_set_credentials(id, CasExpectation::of(base), merged);
        let result = match tokio::time::timeout(self.config.persist_attempt_timeout, write).await {
            Ok(result) => result,
            Err(_) => Err(StorageError::new(
                StorageErrorKind::Timeout,
                "compare_and_set_credentials",
                "write attempt timed out",
            )),
        };
        match result {
            Ok(CasOutcome::Applied(account)) => return Ok(Persisted::Applied(account)),
            Ok(CasOutcome::NotFound) => return Err(PersistError::NotFound),
            Ok(CasOutcome::VersionMismatch { current_version }) => {
                debug!(current_version, "fenced write found a newer row");
            }
            Err(error) => return Err(PersistError::Storage(error)),
        }
        let current = match self.get_account(id).await {
            Ok(Some(current)) => current,
            Ok(None) => return Err(PersistError::NotFound),
            Err(error) => return Err(PersistError::Storage(error)),
        };
        if current.credentials.access_token() == merged.access_token()
            && current.credentials.refresh_token() == merged.refresh_token()
        {
            return Ok(Persisted::Applied(current));
        }
        if !rotating || current.credentials.refresh_token() != base.credentials.refresh_token() {
            warn!(
                stored_version = current.credentials_version,
                "credentials replaced by another writer during persist; keeping the stored ones"
            );
            return Ok(Persisted::Superseded(current));
        }
        *merged = delta.clone().merged_over(&current.credentials);
        *base = current;
        Err(PersistError::Storage(StorageError::new(
            StorageErrorKind::Busy,
            "compare_and_set_credentials",
            "another writer changed the credentials; re-applied the refresh on top",
        )))
    }

    /// Step 10: the answer is only in this process. A detached task keeps
    /// the leases (their keeper goes on extending them), keeps the claim
    /// alive, and retries the fenced write and the claim with no deadline,
    /// until one of them holds the answer. The write is fenced, so retrying
    /// it late is safe.
    fn spawn_rescue(
        self: &Arc<Self>,
        key: &RefreshKey,
        held: HeldClaim,
        rescue: Rescue,
        lease: Option<LeaseGuard>,
    ) {
        let Rescue {
            mut base,
            mut merged,
            delta,
            rotated,
            reapply,
        } = rescue;
        warn!("write and claim store both failed; rescuing the answer under the leases");
        let (this, key) = (Arc::clone(self), key.clone());
        tokio::spawn(
            async move {
                let mut pause = this.config.persist_backoff.max(Duration::from_millis(100));
                loop {
                    tokio::time::sleep(pause).await;
                    pause = pause.saturating_mul(2).min(RESCUE_MAX_PAUSE);
                    match this
                        .write_once(&mut base, &mut merged, &delta, reapply)
                        .await
                    {
                        Ok(Persisted::Applied(account)) => {
                            this.finish_claim(&held.key, &held.id, rotated).await;
                            this.notify(&key, account.credentials_version).await;
                            info!("rescued answer persisted");
                            break;
                        }
                        Ok(Persisted::Superseded(_)) => {
                            this.finish_claim(&held.key, &held.id, rotated).await;
                            break;
                        }
                        Err(PersistError::NotFound) | Err(PersistError::Storage(_)) => {}
                    }
                    if this.claim_save_answer(&held, &delta).await {
                        info!("rescued answer saved into the claim");
                        break;
                    }
                    this.claim_extend(&held).await;
                }
                if let Some(lease) = lease {
                    lease.release(this.config.release_timeout).await;
                }
            }
            .in_current_span(),
        );
    }
}

/// An answer only this process holds.
struct Rescue {
    base: Account,
    merged: Credentials,
    delta: Credentials,
    rotated: bool,
    reapply: bool,
}

/// The issued map without blank token values: a `refresh_token` (or
/// `access_token`) of `""`, whitespace or `null` never wins the merge, so it
/// cannot wipe the stored one, whatever the executor returned.
fn without_blank_tokens(mut issued: Credentials) -> Credentials {
    for key in [keys::REFRESH_TOKEN, keys::ACCESS_TOKEN] {
        if issued.get(key).is_some() && issued.secret(key).is_none() {
            issued.remove(key);
        }
    }
    issued
}

/// The keys whose values `issued` changed relative to `base`: what the
/// refresh contributed, to be re-applied over a newer stored map without
/// reverting another writer's keys.
pub(super) fn changes(issued: &Credentials, base: &Credentials) -> Credentials {
    Credentials::from_map(
        issued
            .as_map()
            .iter()
            .filter(|(k, v)| base.get(k) != Some(*v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn creds(v: serde_json::Value) -> Credentials {
        Credentials::try_from(v).unwrap()
    }

    #[test]
    fn changes_keep_only_what_the_refresh_altered() {
        let base = creds(json!({"access_token": "a1", "refresh_token": "r1", "project_id": ""}));
        let issued = creds(json!({"access_token": "a2", "refresh_token": "r2", "project_id": ""}));
        let delta = changes(&issued, &base);
        assert_eq!(delta.as_map().len(), 2);
        let stored =
            creds(json!({"access_token": "a1", "refresh_token": "r1", "project_id": "p-9"}));
        let merged = delta.merged_over(&stored);
        assert_eq!(merged.get("project_id"), Some(&json!("p-9")));
        assert_eq!(merged.refresh_token().unwrap().expose(), "r2");
    }

    #[test]
    fn blank_refresh_tokens_never_win_the_merge() {
        let stored = creds(json!({"access_token": "a1", "refresh_token": "r1"}));
        for blank in [json!(""), json!("   "), json!(null), json!(5)] {
            let issued = creds(json!({"access_token": "a2", "refresh_token": blank}));
            let merged = without_blank_tokens(issued).merged_over(&stored);
            assert_eq!(merged.refresh_token().unwrap().expose(), "r1", "{blank}");
        }
    }
}
