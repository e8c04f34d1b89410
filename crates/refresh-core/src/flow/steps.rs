//! The steps of one refresh run, executed on the flow's detached task.

use std::sync::Arc;
use std::time::Duration;

use tracing::{Instrument, debug, info, info_span, warn};

use super::lock_strategy::HeldLeases;

use super::lease_keeper::LeaseKeeper;
use super::lock_strategy::Acquired;
use super::{FlowInner, FlowResult, RefreshOutcome, bounded};
use crate::domain::{Account, AccountId, Credentials, RefreshKey, keys};
use crate::error::{FlowError, ProviderError, StorageError, StorageErrorKind};
use crate::ports::{CasOutcome, RecoveryRecord, RecoveryStore, RefreshExecutor};

/// The leases of one run and the task that extends them. Dropping it stops
/// the extension; [`HeldLeases`]'s own drop still releases.
struct LeaseGuard {
    held: HeldLeases,
    keeper: LeaseKeeper,
}

impl LeaseGuard {
    async fn release(self, timeout: Duration) {
        let Self { mut held, keeper } = self;
        drop(keeper);
        held.release(timeout).await;
    }
}

/// How a fenced write ended when it did not fail.
enum Persisted {
    /// Our credentials are stored.
    Applied(Account),
    /// Someone else rotated the tokens meanwhile; theirs stand.
    Superseded(Account),
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

        if lease.as_ref().is_some_and(|l| l.keeper.lost()) {
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
    async fn complete(&self, key: &RefreshKey, fresh: Account, issued: Credentials) -> FlowResult {
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

    async fn reread(&self, id: AccountId) -> Result<Account, FlowError> {
        match self.get_account(id).await {
            Ok(Some(account)) => Ok(account),
            Ok(None) => Err(FlowError::AccountNotFound { id }),
            Err(source) => {
                warn!(kind = %source.kind(), "re-read failed; not refreshing from a snapshot");
                Err(FlowError::Reread { id, source })
            }
        }
    }

    /// Persists a pending recovery record before anything could call the
    /// upstream with the consumed refresh token (invariant 2).
    async fn consume_recovery(
        &self,
        key: &RefreshKey,
        fresh: &mut Account,
    ) -> Result<Option<RefreshOutcome>, FlowError> {
        let id = fresh.id;
        let record = self
            .load_record(id)
            .await
            .map_err(|source| FlowError::Recovery { id, source })?;
        let Some(record) = record else {
            return Ok(None);
        };
        if record.pending {
            return Ok(self.outstanding_call(fresh, &record).await);
        }
        if record
            .credentials
            .as_map()
            .iter()
            .all(|(k, v)| fresh.credentials.get(k) == Some(v))
        {
            debug!("recovery record already applied; removing it");
            self.remove_recovery(id, record.base_version).await;
            return Ok(None);
        }
        if fresh.credentials.refresh_token() != record.consumed_refresh_token {
            warn!(
                base_version = record.base_version,
                stored_version = fresh.credentials_version,
                "discarding a recovery record: the tokens were rotated or replaced since"
            );
            self.remove_recovery(id, record.base_version).await;
            return Ok(None);
        }
        info!(
            base_version = record.base_version,
            stored_version = fresh.credentials_version,
            "persisting credentials from a recovery record"
        );
        let merged = record.credentials.clone().merged_over(&fresh.credentials);
        let outcome = self.persist(fresh.clone(), merged).await?;
        self.remove_recovery(id, record.base_version).await;
        Ok(Some(match outcome {
            Persisted::Applied(account) => {
                self.notify(key, account.credentials_version).await;
                RefreshOutcome::Refreshed {
                    account,
                    recovered: true,
                }
            }
            Persisted::Superseded(account) => {
                *fresh = account.clone();
                RefreshOutcome::StillFresh { account }
            }
        }))
    }

    /// A pending marker: while the token it names is still stored and the
    /// marker is younger than [`PENDING_MARKER_TTL`] upstream timeouts, the
    /// earlier call may still rotate it, so nobody presents it again.
    async fn outstanding_call(
        &self,
        fresh: &Account,
        marker: &RecoveryRecord,
    ) -> Option<RefreshOutcome> {
        let age = (self.clock.now() - marker.created_at)
            .to_std()
            .unwrap_or_default();
        let expired = age
            > self
                .config
                .upstream_timeout
                .saturating_mul(PENDING_MARKER_TTL);
        if fresh.credentials.refresh_token() == marker.consumed_refresh_token && !expired {
            debug!("an earlier upstream call is still outstanding");
            return Some(RefreshOutcome::HeldElsewhere);
        }
        warn!(expired, "discarding a pending-call marker");
        self.remove_recovery(fresh.id, marker.base_version).await;
        None
    }

    /// Removes the pending marker of `base` if it is still there (a real
    /// record that replaced it stays).
    async fn clear_marker(&self, base: &Account) {
        if let Ok(Some(record)) = self.load_record(base.id).await
            && record.pending
            && record.base_version == base.credentials_version
        {
            self.remove_recovery(base.id, record.base_version).await;
        }
    }

    async fn remove_recovery(&self, id: AccountId, base_version: u64) {
        let _ = self.local_recovery.remove(id, base_version).await;
        let removal = bounded(
            self.config.storage_timeout,
            "recovery_remove",
            self.recovery.remove(id, base_version),
        );
        if let Err(error) = removal.await {
            warn!(kind = %error.kind(), "could not remove a consumed recovery record; it is stale and will be discarded");
        }
    }

    /// Saves a record in process memory (always) and in the configured
    /// store, so a record the store refused still protects this process
    /// (invariant 2). The result is the configured store's.
    async fn save_record(&self, record: &RecoveryRecord) -> Result<(), StorageError> {
        let _ = self.local_recovery.save(record).await;
        bounded(
            self.config.storage_timeout,
            "recovery_save",
            self.recovery.save(record),
        )
        .await
    }

    /// The newest record of the configured store and process memory. An
    /// unreadable store with nothing in memory is an error: the flow must
    /// not call the upstream without knowing.
    async fn load_record(&self, id: AccountId) -> Result<Option<RecoveryRecord>, StorageError> {
        let local = self.local_recovery.load(id).await.unwrap_or_default();
        let stored = bounded(
            self.config.storage_timeout,
            "recovery_load",
            self.recovery.load(id),
        )
        .await;
        match (stored, local) {
            (Ok(Some(a)), Some(b)) => Ok(Some(if b.created_at > a.created_at { b } else { a })),
            (Ok(a), b) => Ok(a.or(b)),
            (Err(_), Some(b)) => Ok(Some(b)),
            (Err(error), None) => Err(error),
        }
    }

    /// One bounded account read.
    async fn get_account(&self, id: AccountId) -> Result<Option<Account>, StorageError> {
        bounded(self.config.storage_timeout, "get", self.repo.get(id)).await
    }

    /// Runs the executor on its own task. If it has not answered within
    /// `upstream_timeout`, the caller gets an ambiguous error (the upstream
    /// may have rotated already) but the call is not dropped:
    /// - a pending-call marker goes to the recovery store, so no flow
    ///   presents the possibly consumed token while the call is outstanding
    ///   (they report "held elsewhere");
    /// - the lease moves to a task that waits another `upstream_timeout` for
    ///   the answer and persists it like an in-time one;
    /// - an answer later still replaces the marker with a recovery record,
    ///   which the next flow persists; a failed call removes the marker.
    async fn call_upstream(
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
            Ok(Err(join)) => std::panic::resume_unwind(join.into_panic()),
            Err(_) => {
                warn!(
                    timeout_ms = timeout.as_millis() as u64,
                    "upstream refresh did not answer in time; waiting for a late answer under the lease"
                );
                let marker = RecoveryRecord {
                    pending: true,
                    ..recovery_record(fresh, Credentials::new(), self.clock.now())
                };
                if let Err(error) = self.save_record(&marker).await {
                    warn!(kind = %error.kind(), "could not record the outstanding call; relying on the lease");
                }
                let (this, key, base, lease) =
                    (Arc::clone(self), key.clone(), fresh.clone(), lease.take());
                tokio::spawn(
                    async move {
                        let late = tokio::time::timeout(timeout, &mut call).await;
                        let within_grace = late.is_ok();
                        if let Ok(Ok(Ok(issued))) = late {
                            let _ = this.complete(&key, base.clone(), issued).await;
                        }
                        if let Some(lease) = lease {
                            lease.release(this.config.release_timeout).await;
                        }
                        if !within_grace {
                            let cap = timeout.saturating_mul(PENDING_MARKER_TTL - 2);
                            match tokio::time::timeout(cap, &mut call).await {
                                Ok(Ok(Ok(issued))) => {
                                    this.keep_late_answer(&base, issued).await;
                                    return;
                                }
                                Ok(_) => {}
                                Err(_) => {
                                    call.abort();
                                    warn!("upstream call never answered; presumed dead");
                                }
                            }
                        }
                        this.clear_marker(&base).await;
                    }
                    .in_current_span(),
                );
                Err(ProviderError::Ambiguous {
                    reason: format!("no answer within {timeout:?}"),
                })
            }
        }
    }

    /// Stores an answer that arrived after the lease was given up.
    async fn keep_late_answer(&self, base: &Account, issued: Credentials) {
        let merged = issued.merged_over(&base.credentials);
        let record = recovery_record(base, changes(&merged, &base.credentials), self.clock.now());
        match self.save_record(&record).await {
            Ok(()) => {
                warn!(account_id = %base.id, "late upstream answer kept in a recovery record")
            }
            Err(error) => {
                warn!(account_id = %base.id, kind = %error.kind(), "late upstream answer lost: recovery store failed");
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

    /// The fenced write with bounded retries. On a version mismatch it
    /// re-reads: if nobody rotated the tokens (another writer changed some
    /// other credential key), the issued credentials are merged over the
    /// stored ones and written again; if our own timed-out write landed, that
    /// is success; if someone rotated, theirs stand. When every attempt
    /// fails, the credentials go to the recovery store.
    async fn persist(
        &self,
        mut base: Account,
        mut merged: Credentials,
    ) -> Result<Persisted, FlowError> {
        let id = base.id;
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
            let write =
                self.repo
                    .compare_and_set_credentials(id, base.credentials_version, &merged);
            let result =
                match tokio::time::timeout(self.config.persist_attempt_timeout, write).await {
                    Ok(result) => result,
                    Err(_) => Err(StorageError::new(
                        StorageErrorKind::Timeout,
                        "compare_and_set_credentials",
                        "write attempt timed out",
                    )),
                };
            match result {
                Ok(CasOutcome::Applied(account)) => return Ok(Persisted::Applied(account)),
                Ok(CasOutcome::NotFound) => return Err(FlowError::AccountNotFound { id }),
                Ok(CasOutcome::VersionMismatch { current_version }) => {
                    debug!(
                        attempt,
                        current_version, "fenced write found a newer version"
                    );
                    let current = match self.get_account(id).await {
                        Ok(Some(current)) => current,
                        Ok(None) => return Err(FlowError::AccountNotFound { id }),
                        Err(error) => {
                            last_error = error;
                            continue;
                        }
                    };
                    if current.credentials.access_token() == merged.access_token()
                        && current.credentials.refresh_token() == merged.refresh_token()
                    {
                        return Ok(Persisted::Applied(current));
                    }
                    if current.credentials.refresh_token() != base.credentials.refresh_token() {
                        warn!(
                            stored_version = current.credentials_version,
                            "tokens rotated by another writer during persist; keeping the stored ones"
                        );
                        return Ok(Persisted::Superseded(current));
                    }
                    merged = delta.clone().merged_over(&current.credentials);
                    base = current;
                }
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
        let record = recovery_record(&base, delta, self.clock.now());
        let recovery_saved = match self.save_record(&record).await {
            Ok(()) => true,
            Err(error) => {
                warn!(kind = %error.kind(), "recovery store refused the record; kept in process memory and in the error");
                false
            }
        };
        warn!(recovery_saved, "refreshed upstream but not persisted");
        Err(FlowError::NotPersisted {
            id,
            credentials: Box::new(merged),
            recovery_saved,
            source: last_error,
        })
    }

    async fn notify(&self, key: &RefreshKey, version: u64) {
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

/// How many upstream timeouts a pending-call marker blocks new calls for; a
/// call still silent by then is presumed dead.
const PENDING_MARKER_TTL: u32 = 10;

/// A recovery record of `delta`, computed against `base`.
fn recovery_record(
    base: &Account,
    delta: Credentials,
    now: chrono::DateTime<chrono::Utc>,
) -> RecoveryRecord {
    RecoveryRecord {
        account_id: base.id,
        base_version: base.credentials_version,
        consumed_refresh_token: base.credentials.refresh_token(),
        credentials: delta,
        created_at: now,
        pending: false,
    }
}

/// The keys whose values `issued` changed relative to `base`: what the
/// refresh contributed, to be re-applied over a newer stored map without
/// reverting another writer's keys.
fn changes(issued: &Credentials, base: &Credentials) -> Credentials {
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

    #[test]
    fn changes_keep_only_what_the_refresh_altered() {
        let base = Credentials::from_map(
            json!({"access_token": "a1", "refresh_token": "r1", "project_id": ""})
                .as_object()
                .unwrap()
                .clone(),
        );
        let issued = Credentials::from_map(
            json!({"access_token": "a2", "refresh_token": "r2", "project_id": ""})
                .as_object()
                .unwrap()
                .clone(),
        );
        let delta = changes(&issued, &base);
        assert_eq!(delta.as_map().len(), 2);
        let stored = Credentials::from_map(
            json!({"access_token": "a1", "refresh_token": "r1", "project_id": "p-9"})
                .as_object()
                .unwrap()
                .clone(),
        );
        let merged = delta.merged_over(&stored);
        assert_eq!(merged.get("project_id"), Some(&json!("p-9")));
        assert_eq!(merged.refresh_token().unwrap().expose(), "r2");
    }
}
