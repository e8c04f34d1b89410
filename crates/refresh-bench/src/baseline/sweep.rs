//! Go's background cycle (REFERENCE.md §8.2-8.4): every active account,
//! one after another.

use std::time::Duration;

use super::Baseline;
use super::refresh::Refresh;
use super::store::RedisStore;
use super::table;

/// `refresh_before_expiry_hours` 0.5.
pub(crate) const WINDOW: Duration = Duration::from_secs(30 * 60);
const MAX_RETRIES: u32 = 3;
const BACKOFF: Duration = Duration::from_secs(2);

/// The counters of Go's summary log, plus the queries it issued.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub(crate) struct SweepReport {
    pub(crate) total: u64,
    pub(crate) needs_refresh: u64,
    pub(crate) refreshed: u64,
    pub(crate) skipped: u64,
    pub(crate) failed: u64,
    /// Database statements: the listing, then per refresh attempt a
    /// re-read and a full-row update.
    pub(crate) queries: u64,
}

impl Baseline {
    /// One cycle.
    pub(crate) async fn sweep(&self) -> anyhow::Result<SweepReport> {
        let mut report = SweepReport::default();
        let accounts = table::list_active(&self.db).await?;
        report.queries += 1;
        for account in accounts {
            report.total += 1;
            if !Self::needs_refresh(&account, WINDOW) {
                continue;
            }
            report.needs_refresh += 1;
            let mut outcome = None;
            for attempt in 1..=MAX_RETRIES {
                match self.refresh_if_needed(&account, WINDOW).await {
                    Ok(result) => {
                        outcome = Some(result);
                        break;
                    }
                    Err(_) if attempt < MAX_RETRIES => {
                        tokio::time::sleep(BACKOFF * 2u32.pow(attempt - 1)).await;
                    }
                    Err(_) => {}
                }
            }
            match outcome {
                Some(Refresh::Refreshed(_)) => {
                    report.queries += 2;
                    report.refreshed += 1;
                    // §8.4 step 3: delete the cached token.
                    let _ = self.store.delete_token(&RedisStore::key(account.id)).await;
                }
                Some(Refresh::NotRefreshed(_)) => {
                    report.queries += 1;
                    report.skipped += 1;
                }
                Some(Refresh::LockHeld) => report.skipped += 1,
                None => report.failed += 1,
            }
        }
        Ok(report)
    }
}
