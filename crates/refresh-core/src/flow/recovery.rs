//! Recovery records in the flow: consuming them before any upstream call,
//! pending-call markers, and where records are kept (invariant 2).

use tracing::{debug, info, warn};

use super::persist::Persisted;
use super::{FlowInner, RefreshOutcome, bounded};
use crate::domain::{Account, AccountId, Credentials, RefreshKey};
use crate::error::{FlowError, StorageError};
use crate::ports::{RecoveryRecord, RecoveryStore};

/// How many upstream timeouts a pending-call marker blocks new calls for; a
/// call still silent by then is presumed dead.
pub(super) const PENDING_MARKER_TTL: u32 = 10;

/// What the recovery stores say about one account.
struct RecoveryView {
    record: Option<RecoveryRecord>,
    /// Set when the configured store could not be read; `record` then comes
    /// from the in-process copy, if any.
    store_error: Option<StorageError>,
}

impl FlowInner {
    /// Persists a pending recovery record before anything could call the
    /// upstream with the consumed refresh token; reports "held elsewhere"
    /// while a pending-call marker names the stored token. When the
    /// configured store cannot be read, only a record known to apply lets
    /// the flow go on; otherwise the flow stops (it must not call the
    /// upstream without knowing).
    pub(super) async fn consume_recovery(
        &self,
        key: &RefreshKey,
        fresh: &mut Account,
    ) -> Result<Option<RefreshOutcome>, FlowError> {
        let id = fresh.id;
        let RecoveryView {
            record,
            store_error,
        } = self.load_record(id).await;
        let unknown = |store_error: Option<StorageError>| match store_error {
            Some(source) => Err(FlowError::Recovery { id, source }),
            None => Ok(None),
        };
        let Some(record) = record else {
            return unknown(store_error);
        };
        if record.pending {
            if let Some(held) = self.outstanding_call(fresh, &record).await {
                return Ok(Some(held));
            }
            return unknown(store_error);
        }
        if record
            .credentials
            .as_map()
            .iter()
            .all(|(k, v)| fresh.credentials.get(k) == Some(v))
        {
            debug!("recovery record already applied; removing it");
            self.remove_recovery(id, record.base_version).await;
            return unknown(store_error);
        }
        if fresh.credentials.refresh_token() != record.consumed_refresh_token {
            warn!(
                base_version = record.base_version,
                stored_version = fresh.credentials_version,
                "discarding a recovery record: the tokens were rotated or replaced since"
            );
            self.remove_recovery(id, record.base_version).await;
            return unknown(store_error);
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

    /// Saves the pending-call marker of a call presenting `base`'s token.
    pub(super) async fn save_marker(&self, base: &Account) -> bool {
        let marker = RecoveryRecord {
            pending: true,
            ..recovery_record(base, Credentials::new(), self.clock.now())
        };
        match self.save_record(&marker).await {
            Ok(()) => true,
            Err(error) => {
                warn!(kind = %error.kind(), "could not record the outstanding call");
                false
            }
        }
    }

    /// Removes the pending marker of `base` if it is still there (a real
    /// record that replaced it stays).
    pub(super) async fn clear_marker(&self, base: &Account) {
        if let Some(record) = self.load_record(base.id).await.record
            && record.pending
            && record.base_version == base.credentials_version
        {
            self.remove_recovery(base.id, record.base_version).await;
        }
    }

    pub(super) async fn remove_recovery(&self, id: AccountId, base_version: u64) {
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

    /// Saves a record in the configured store. When the store refuses it,
    /// the record is kept in process memory instead, so it still protects
    /// this process (invariant 2); once the store accepts a record, the
    /// in-process copy is dropped, so it can never resurface stale.
    pub(super) async fn save_record(&self, record: &RecoveryRecord) -> Result<(), StorageError> {
        let saved = bounded(
            self.config.storage_timeout,
            "recovery_save",
            self.recovery.save(record),
        )
        .await;
        match &saved {
            Ok(()) => self.local_recovery.forget(record.account_id),
            Err(_) => {
                let _ = self.local_recovery.save(record).await;
            }
        }
        saved
    }

    /// The account's record: the in-process copy (a record the store
    /// refused, so newer than the store's) or else the store's.
    async fn load_record(&self, id: AccountId) -> RecoveryView {
        let local = self.local_recovery.load(id).await.unwrap_or_default();
        let stored = bounded(
            self.config.storage_timeout,
            "recovery_load",
            self.recovery.load(id),
        )
        .await;
        match stored {
            Ok(stored) => RecoveryView {
                record: local.or(stored),
                store_error: None,
            },
            Err(error) => RecoveryView {
                record: local,
                store_error: Some(error),
            },
        }
    }
}

/// A recovery record of `delta`, computed against `base`.
pub(super) fn recovery_record(
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
}
