//! [`BackgroundRefresher`]: the periodic sweep that refreshes accounts before
//! they expire.

mod account;
mod backoff;
mod builder;
mod config;
mod report;

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

#[cfg(any(test, feature = "mock"))]
pub use crate::ports::MockRefreshListener;
pub use crate::ports::RefreshListener;
pub use builder::BackgroundRefresherBuilder;
pub use config::BackgroundConfig;
pub use report::CycleReport;

use self::report::AccountResult;
use crate::concurrency::bounded;
use crate::flow::RefreshFlow;
use crate::ports::ExecutorRegistry;
use crate::ports::{DueCursor, TokenCache};

/// Claims purged at most per cycle.
const PURGE_BATCH: usize = 1000;

/// Pages through accounts due within the window (from the repository's
/// index, never a full scan), refreshes them through the [`RefreshFlow`]
/// with bounded concurrency and jittered exponential backoff, marks
/// non-retryable failures on the account, and runs post-refresh actions.
/// Cheap to clone.
#[derive(Clone)]
pub struct BackgroundRefresher {
    inner: Arc<Inner>,
}

struct Inner {
    flow: RefreshFlow,
    executors: ExecutorRegistry,
    cache: Option<Arc<dyn TokenCache>>,
    listeners: Vec<Arc<dyn RefreshListener>>,
    config: BackgroundConfig,
}

impl std::fmt::Debug for BackgroundRefresher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackgroundRefresher")
            .field("config", &self.inner.config)
            .field("executors", &self.inner.executors)
            .finish_non_exhaustive()
    }
}

impl BackgroundRefresher {
    /// Starts a builder.
    pub fn builder(flow: RefreshFlow, executors: ExecutorRegistry) -> BackgroundRefresherBuilder {
        BackgroundRefresherBuilder {
            flow,
            executors,
            cache: None,
            listeners: Vec::new(),
            config: BackgroundConfig::default(),
        }
    }

    /// Runs one cycle to completion.
    pub async fn run_once(&self) -> CycleReport {
        self.run_cycle(&CancellationToken::new()).await
    }

    /// Runs one cycle; `shutdown` cuts it short (no new accounts start,
    /// backoffs end, running accounts are abandoned; their upstream calls
    /// still finish detached).
    pub async fn run_cycle(&self, shutdown: &CancellationToken) -> CycleReport {
        let inner = &self.inner;
        let started = tokio::time::Instant::now();
        let cfg = &inner.config;
        let window = cfg.window.max(inner.executors.max_min_window());
        let before = crate::domain::add_duration(inner.flow.clock().now(), window);
        let permits = Arc::new(Semaphore::new(cfg.concurrency));
        let mut tasks = JoinSet::new();
        let mut report = CycleReport::default();
        let mut cursor: Option<DueCursor> = None;
        // A refreshed account can sort again after the cursor when the
        // window exceeds the tokens' lifetime: each is taken once a cycle.
        let mut seen = HashSet::new();

        'pages: loop {
            let page = tokio::select! {
                () = shutdown.cancelled() => break 'pages,
                page = bounded(
                    inner.flow.config().storage_timeout,
                    "list_due",
                    inner.flow.repository().list_due(before, cursor, cfg.page_size),
                ) => page,
            };
            let page = match page {
                Ok(page) => page,
                Err(error) => {
                    warn!(kind = %error.kind(), "listing due accounts failed; ending the cycle early");
                    report.list_errors += 1;
                    break;
                }
            };
            for corrupt in &page.corrupt {
                report.corrupt += 1;
                warn!(account_id = %corrupt.id, kind = %corrupt.error.kind(), error = %corrupt.error, "a due account cannot be read; passed over");
            }
            let next = page.next;
            for account in page.accounts {
                if !seen.insert(account.id) {
                    continue;
                }
                report.total += 1;
                let permit = tokio::select! {
                    () = shutdown.cancelled() => break 'pages,
                    permit = Arc::clone(&permits).acquire_owned() => permit.expect("semaphore is never closed"),
                };
                let (this, shutdown) = (self.clone(), shutdown.clone());
                tasks.spawn(async move {
                    let _permit = permit;
                    this.refresh_account(account, &shutdown).await
                });
                while let Some(done) = tasks.try_join_next() {
                    report += done.unwrap_or(AccountResult::Failed { marked: false });
                }
            }
            match next {
                // A listing whose cursor does not move on would list the
                // same pages forever (a backend bug, a sort key it cannot
                // hold): the cycle ends instead, counted as a listing error.
                Some(next) if cursor.is_some_and(|c| !next.is_past(&c)) => {
                    warn!(
                        account_id = %next.id,
                        "the due listing's cursor did not advance; ending the cycle early"
                    );
                    report.list_errors += 1;
                    break;
                }
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        loop {
            tokio::select! {
                () = shutdown.cancelled() => {
                    tasks.abort_all();
                    break;
                }
                done = tasks.join_next() => match done {
                    Some(Ok(result)) => report += result,
                    Some(Err(_)) => report += AccountResult::Failed { marked: false },
                    None => break,
                },
            }
        }
        report.cancelled = shutdown.is_cancelled();
        if !report.cancelled {
            self.purge_claims().await;
        }
        inner
            .flow
            .observer()
            .background_cycle(&report, started.elapsed());
        if report.is_eventful() {
            info!(?report, "background refresh cycle");
        } else {
            debug!(?report, "background refresh cycle");
        }
        report
    }

    /// Deletes generation claims that are over (consumed past their
    /// horizon, expired empty ones), a bounded batch per cycle.
    async fn purge_claims(&self) {
        let flow = &self.inner.flow;
        let purge = flow.claims().purge(PURGE_BATCH);
        match bounded(flow.config().storage_timeout, "claim_purge", purge).await {
            Ok(0) => {}
            Ok(purged) => debug!(purged, "expired generation claims purged"),
            Err(error) => debug!(kind = %error.kind(), "claim purge failed; next cycle"),
        }
    }

    /// Runs a cycle now and then every `interval` until `shutdown` fires;
    /// shutdown also cuts the running cycle short.
    pub fn spawn(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                this.run_cycle(&shutdown).await;
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(this.inner.config.interval) => {}
                }
            }
            info!("background refresher stopped");
        })
    }
}
