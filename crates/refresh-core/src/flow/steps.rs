//! The steps of one refresh run, executed on the flow's detached task.

use std::sync::Arc;
use std::time::Duration;

use tracing::{Instrument, debug, info, info_span, warn};

use super::lease_keeper::{LeaseGuard, LeaseKeeper};
use super::lock_strategy::Acquired;
use super::persist::Persisted;
use super::{FlowInner, FlowResult, RefreshOutcome, bounded};
use crate::domain::{Account, AccountId, Credentials, RefreshKey, keys};
use crate::error::{FlowError, ProviderError, StorageError};
use crate::ports::RefreshExecutor;

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
        async move {
            let held = match self.locks.acquire(&key, &self.config).await? {
                Acquired::Held(held) => held,
                Acquired::HeldElsewhere => {
                    debug!("refresh lease held elsewhere");
                    return Ok(RefreshOutcome::HeldElsewhere);
                }
            };
            debug!(fence = held.fence(), "refresh lease acquired");
            let keeper = LeaseKeeper::start(&held, &self.config);
            let mut lease = Some(LeaseGuard { held, keeper });
            let result = self
                .run_locked(&key, snapshot.id, &executor, window, &mut lease)
                .await;
            if let Some(lease) = lease {
                lease.release(self.config.release_timeout).await;
            }
            result
        }
        .instrument(span)
        .await
    }

    async fn run_locked(
        self: &Arc<Self>,
        key: &RefreshKey,
        id: AccountId,
        executor: &Arc<dyn RefreshExecutor>,
        window: Duration,
        lease: &mut Option<LeaseGuard>,
    ) -> FlowResult {
        let mut fresh = self.reread(id).await?;
        if let Some(outcome) = self.consume_recovery(key, &mut fresh).await? {
            return Ok(outcome);
        }
        if !executor.can_refresh(&fresh) {
            return Err(FlowError::NotEligible {
                id,
                platform: executor.platform(),
            });
        }
        if !executor.needs_refresh(&fresh, window, self.clock.now()) {
            debug!("not due after re-read");
            return Ok(RefreshOutcome::StillFresh { account: fresh });
        }

        if let Some(guard) = lease.as_ref()
            && !guard.confirm(&self.config).await
        {
            return Err(FlowError::LeaseLost { key: key.clone() });
        }
        let issued = match self.call_upstream(key, executor, &fresh, lease).await {
            Ok(credentials) => credentials,
            Err(error) if error.is_grant_rejected() => {
                return self.race_recovery(key, &fresh, error).await;
            }
            Err(error) => {
                warn!(kind = error.kind_name(), "upstream refresh failed");
                return Err(FlowError::Upstream {
                    id,
                    version: fresh.credentials_version,
                    source: error,
                });
            }
        };
        if lease.as_ref().is_some_and(|l| l.keeper.lost()) {
            warn!("lease lost before persist; the fenced write decides");
        }
        self.complete(key, fresh, issued).await
    }

    /// Merges the issued credentials over the re-read ones, persists them
    /// (fenced), and notifies waiters.
    pub(super) async fn complete(
        &self,
        key: &RefreshKey,
        fresh: Account,
        issued: Credentials,
    ) -> FlowResult {
        if issued.access_token().is_none() {
            let id = fresh.id;
            if issued.refresh_token().is_some()
                && issued.refresh_token() != fresh.credentials.refresh_token()
            {
                // Unusable answer, but it rotated the refresh token: keep the
                // new one (a failed write leaves a recovery record).
                warn!("answer without an access token rotated the refresh token; storing it");
                let merged = issued.merged_over(&fresh.credentials);
                if let Ok(Persisted::Applied(account)) = self.persist(fresh, merged).await {
                    self.notify(key, account.credentials_version).await;
                }
            }
            return Err(FlowError::EmptyCredentials { id });
        }
        let mut merged = issued.merged_over(&fresh.credentials);
        if let Err(error) = merged.canonicalize() {
            warn!(%error, "executor wrote an unreadable expires_at; storing the expiry as unknown");
            merged.remove(keys::EXPIRES_AT);
        }
        match self.persist(fresh, merged).await? {
            Persisted::Applied(account) => {
                info!(
                    version = account.credentials_version,
                    "credentials refreshed and persisted"
                );
                self.notify(key, account.credentials_version).await;
                Ok(RefreshOutcome::Refreshed {
                    account,
                    recovered: false,
                })
            }
            Persisted::Superseded(account) => Ok(RefreshOutcome::StillFresh { account }),
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

    /// After `invalid_grant`: if the stored refresh token or version moved,
    /// another worker won the race and its credentials stand (invariant 6).
    /// Also checks the recovery store: a late answer to an earlier,
    /// ambiguous call may have landed there meanwhile.
    async fn race_recovery(
        &self,
        key: &RefreshKey,
        presented: &Account,
        error: ProviderError,
    ) -> FlowResult {
        let id = presented.id;
        match self.get_account(id).await {
            Ok(Some(stored))
                if stored.credentials_version != presented.credentials_version
                    || stored.credentials.refresh_token()
                        != presented.credentials.refresh_token() =>
            {
                info!(
                    stored_version = stored.credentials_version,
                    "refresh token already rotated by another worker; using its credentials"
                );
                return Ok(RefreshOutcome::StillFresh { account: stored });
            }
            Ok(Some(mut stored)) => {
                if let Some(outcome) = self.consume_recovery(key, &mut stored).await? {
                    return Ok(outcome);
                }
            }
            Ok(None) | Err(_) => {}
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
        match tokio::time::timeout(
            self.config.release_timeout,
            notifier.publish_refreshed(key, version),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                warn!(kind = %error.kind(), "refreshed notification failed; waiters fall back to polling")
            }
            Err(_) => warn!("refreshed notification timed out; waiters fall back to polling"),
        }
    }
}
