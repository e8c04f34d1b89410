//! The fenced write of new credentials (invariants 2 and 3).

use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, warn};

use super::FlowInner;
use super::recovery::{changes, recovery_record};
use crate::domain::{Account, Credentials};
use crate::error::{FlowError, StorageError, StorageErrorKind};
use crate::ports::CasOutcome;

/// How a fenced write ended when it did not fail.
pub(super) enum Persisted {
    /// Our credentials are stored.
    Applied(Account),
    /// Someone else rotated the tokens meanwhile; theirs stand.
    Superseded(Account),
}

/// Longest pause between rescue attempts.
const RESCUE_MAX_PAUSE: Duration = Duration::from_secs(10);

impl FlowInner {
    /// The fenced write with bounded retries. On a version mismatch it
    /// re-reads: if nobody rotated the tokens (another writer changed some
    /// other credential key), the keys the refresh changed are re-applied
    /// over the stored ones and written again; if our own timed-out write
    /// landed, that is success; if someone rotated, theirs stand.
    ///
    /// When every attempt fails, the credentials go to the recovery store.
    /// If the store refuses them too, the only copy is in this process: the
    /// flow keeps the lease (the keeper extends it) and keeps trying the
    /// write and the store for up to half a lease TTL, so no other process
    /// takes over and presents the consumed token meanwhile.
    pub(super) async fn persist(
        &self,
        mut base: Account,
        mut merged: Credentials,
    ) -> Result<Persisted, FlowError> {
        let delta = changes(&merged, &base.credentials);
        let mut last_error = StorageError::new(
            StorageErrorKind::Other,
            "compare_and_set_credentials",
            "no attempt made",
        );
        for attempt in 1..=self.config.persist_attempts {
            if attempt > 1 {
                tokio::time::sleep(self.config.persist_backoff_before(attempt)).await;
            }
            match self.write_once(&mut base, &mut merged, &delta).await? {
                Ok(persisted) => return Ok(persisted),
                Err(error) => {
                    warn!(attempt, kind = %error.kind(), "fenced write failed");
                    let retryable = error.is_retryable();
                    last_error = error;
                    if !retryable {
                        break;
                    }
                }
            }
        }
        let record = recovery_record(&base, delta.clone(), self.clock.now());
        let mut recovery_saved = self.save_record(&record).await.is_ok();
        if !recovery_saved {
            warn!("write and recovery store both failed; retrying under the lease");
            let deadline = Instant::now() + self.config.lease_ttl / 2;
            let mut pause = self.config.persist_backoff.max(Duration::from_millis(100));
            while !recovery_saved && Instant::now() < deadline {
                tokio::time::sleep(pause).await;
                pause = pause.saturating_mul(2).min(RESCUE_MAX_PAUSE);
                match self.write_once(&mut base, &mut merged, &delta).await? {
                    Ok(persisted) => return Ok(persisted),
                    Err(error) => last_error = error,
                }
                let record = recovery_record(&base, delta.clone(), self.clock.now());
                recovery_saved = self.save_record(&record).await.is_ok();
            }
        }
        warn!(recovery_saved, "refreshed upstream but not persisted");
        Err(FlowError::NotPersisted {
            id: base.id,
            credentials: Box::new(merged),
            recovery_saved,
            source: last_error,
        })
    }

    /// One fenced write. The outer error ends the flow; the inner one is a
    /// storage failure worth another attempt.
    async fn write_once(
        &self,
        base: &mut Account,
        merged: &mut Credentials,
        delta: &Credentials,
    ) -> Result<Result<Persisted, StorageError>, FlowError> {
        let id = base.id;
        let write = self
            .repo
            .compare_and_set_credentials(id, base.credentials_version, merged);
        let result = match tokio::time::timeout(self.config.persist_attempt_timeout, write).await {
            Ok(result) => result,
            Err(_) => Err(StorageError::new(
                StorageErrorKind::Timeout,
                "compare_and_set_credentials",
                "write attempt timed out",
            )),
        };
        let current_version = match result {
            Ok(CasOutcome::Applied(account)) => return Ok(Ok(Persisted::Applied(account))),
            Ok(CasOutcome::NotFound) => return Err(FlowError::AccountNotFound { id }),
            Ok(CasOutcome::VersionMismatch { current_version }) => current_version,
            Err(error) => return Ok(Err(error)),
        };
        debug!(current_version, "fenced write found a newer version");
        let current = match self.get_account(id).await {
            Ok(Some(current)) => current,
            Ok(None) => return Err(FlowError::AccountNotFound { id }),
            Err(error) => return Ok(Err(error)),
        };
        if current.credentials.access_token() == merged.access_token()
            && current.credentials.refresh_token() == merged.refresh_token()
        {
            return Ok(Ok(Persisted::Applied(current)));
        }
        if current.credentials.refresh_token() != base.credentials.refresh_token() {
            warn!(
                stored_version = current.credentials_version,
                "tokens rotated by another writer during persist; keeping the stored ones"
            );
            return Ok(Ok(Persisted::Superseded(current)));
        }
        *merged = delta.clone().merged_over(&current.credentials);
        *base = current;
        Ok(Err(StorageError::new(
            StorageErrorKind::Busy,
            "compare_and_set_credentials",
            "another writer changed the credentials; re-applied the refresh on top",
        )))
    }
}
