//! One account in a background cycle: attempts with backoff, error marks and
//! post-refresh actions (REFERENCE.md §8.3, §8.4).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::BackgroundRefresher;
use super::backoff::backoff;
use super::report::AccountResult;
use crate::concurrency::bounded;
use crate::domain::{Account, AccountStatus, AccountType, RefreshKey};
use crate::error::{FlowError, ProviderError};
use crate::flow::RefreshOutcome;
use crate::policy::SkipAction;
use crate::ports::RefreshExecutor;

impl BackgroundRefresher {
    pub(super) async fn refresh_account(
        &self,
        account: Account,
        shutdown: &CancellationToken,
    ) -> AccountResult {
        let inner = &self.inner;
        let Some(executor) = inner
            .executors
            .get(&account.platform)
            .filter(|e| e.can_refresh(&account))
        else {
            return AccountResult::NotDue;
        };
        if !executor.needs_refresh(&account, inner.config.window, inner.flow.clock().now()) {
            return AccountResult::NotDue;
        }
        self.attempts(&account, executor, shutdown).await
    }

    async fn attempts(
        &self,
        account: &Account,
        executor: &Arc<dyn RefreshExecutor>,
        shutdown: &CancellationToken,
    ) -> AccountResult {
        let inner = &self.inner;
        let cfg = &inner.config;
        let give_up_at = tokio::time::Instant::now() + cfg.account_deadline;
        for attempt in 1..=cfg.max_retries {
            let error = match inner
                .flow
                .refresh_if_needed(account, executor, cfg.window)
                .await
            {
                Ok(RefreshOutcome::Refreshed { account, .. }) => {
                    self.after_refresh(&account, executor.as_ref()).await;
                    return AccountResult::Refreshed;
                }
                Ok(RefreshOutcome::StillFresh { account }) => {
                    return match cfg.policy.on_already_refreshed {
                        SkipAction::Skip => AccountResult::Skipped,
                        SkipAction::Success => {
                            self.after_refresh(&account, executor.as_ref()).await;
                            AccountResult::Refreshed
                        }
                    };
                }
                Ok(RefreshOutcome::HeldElsewhere) => {
                    return match cfg.policy.on_lock_held {
                        SkipAction::Skip => AccountResult::Skipped,
                        SkipAction::Success => AccountResult::Refreshed,
                    };
                }
                Err(error) => error,
            };
            if !error.is_retryable() {
                return AccountResult::Failed {
                    marked: self.mark_error(account, &error).await,
                };
            }
            if attempt == cfg.max_retries {
                warn!(account_id = %account.id, stage = %error.stage(), attempts = attempt, "refresh failed; retrying next cycle");
                break;
            }
            let mut pause = backoff(cfg.retry_backoff, cfg.max_backoff, attempt);
            if let Some(ProviderError::RateLimited {
                retry_after: Some(after),
            }) = error.provider_error()
            {
                pause = pause.max(*after);
            }
            if tokio::time::Instant::now() + pause >= give_up_at {
                warn!(account_id = %account.id, "account refresh deadline reached; retrying next cycle");
                break;
            }
            warn!(account_id = %account.id, stage = %error.stage(), attempt, backoff_ms = pause.as_millis() as u64, "refresh failed; backing off");
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(pause) => {}
            }
        }
        AccountResult::Failed { marked: false }
    }

    /// Marks the account `error` when the upstream refused it for good, or
    /// its credentials regressed to a consumed token. The mark is fenced on
    /// the version the failure was observed on, so a re-import of fresh
    /// credentials in between is never marked. Other non-retryable failures
    /// (the account vanished or changed type, a quarantine) are not the
    /// account's fault and leave it alone.
    async fn mark_error(&self, account: &Account, error: &FlowError) -> bool {
        let Some(version) = error.observed_version() else {
            warn!(account_id = %account.id, stage = %error.stage(), "refresh failed for a reason that is not the account's; account left unchanged");
            return false;
        };
        let repo = self.inner.flow.repository();
        let message = error.account_error_message();
        let mark = repo.set_error(account.id, version, &message);
        match bounded(self.timeout(), "set_error", mark).await {
            Ok(true) => {
                warn!(account_id = %account.id, platform = %account.platform, kind = error.provider_error().map_or("flow", ProviderError::kind_name), "non-retryable refresh failure; account marked error");
                true
            }
            Ok(false) => {
                warn!(account_id = %account.id, "credentials changed since the failure; not marking the account");
                false
            }
            Err(store) => {
                warn!(account_id = %account.id, kind = %store.kind(), "could not mark the account error");
                false
            }
        }
    }

    fn timeout(&self) -> std::time::Duration {
        self.inner.flow.config().storage_timeout
    }

    /// Post-refresh actions (REFERENCE.md §8.4), each best effort.
    async fn after_refresh(&self, account: &Account, executor: &dyn RefreshExecutor) {
        let inner = &self.inner;
        let repo = inner.flow.repository();
        let id = account.id;
        if account.status == AccountStatus::Error
            && account
                .error_message
                .as_deref()
                .is_some_and(|m| m.contains("missing_project_id:"))
            && let Err(error) = bounded(self.timeout(), "clear_error", repo.clear_error(id)).await
        {
            warn!(account_id = %id, kind = %error.kind(), "could not clear the missing_project_id error");
        }
        if account
            .temp_unschedulable_until
            .is_some_and(|until| until > inner.flow.clock().now())
        {
            let clear = repo.clear_temp_unschedulable(id);
            if let Err(error) = bounded(self.timeout(), "clear_temp_unschedulable", clear).await {
                warn!(account_id = %id, kind = %error.kind(), "could not clear temp-unschedulable");
            }
            self.invalidate(&RefreshKey::from_raw(format!("temp_unsched:account:{id}")))
                .await;
        }
        if account.account_type == AccountType::OAuth {
            self.invalidate(&executor.key(account)).await;
        }
        for listener in &inner.listeners {
            let call = AssertUnwindSafe(listener.on_refreshed(account)).catch_unwind();
            if call.await.is_err() {
                warn!(account_id = %id, "a refresh listener panicked; the refresh stands");
            }
        }
    }

    async fn invalidate(&self, key: &RefreshKey) {
        if let Some(cache) = &self.inner.cache
            && let Err(error) = bounded(self.timeout(), "invalidate", cache.invalidate(key)).await
        {
            warn!(%key, kind = %error.kind(), "cache invalidation failed");
        }
    }
}
