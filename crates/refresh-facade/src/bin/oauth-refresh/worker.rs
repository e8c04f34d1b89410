//! `run`: the background refresher, with each cycle's report logged and
//! a graceful shutdown.

use std::time::Instant;

use refresh_facade::RefreshStack;
use refresh_facade::metrics::Metrics;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Loaded;
use crate::error::CliError;
use crate::keys::Missing;
use crate::output;

/// Runs cycles until `shutdown`; each cycle's report is logged (and
/// recorded by the stack's metrics observer).
pub(crate) fn spawn(
    stack: RefreshStack,
    shutdown: CancellationToken,
    interval: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let started = Instant::now();
            let report = stack.background().run_cycle(&shutdown).await;
            let elapsed = started.elapsed();
            info!(
                listed = report.total,
                due = report.due,
                refreshed = report.refreshed,
                skipped = report.skipped,
                failed = report.failed,
                marked_error = report.marked_error,
                corrupt = report.corrupt,
                list_errors = report.list_errors,
                cancelled = report.cancelled,
                elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
                "background cycle"
            );
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(interval) => {}
            }
        }
    })
}

/// `run [--once]`.
pub(crate) async fn run(loaded: &Loaded, once: bool) -> Result<(), CliError> {
    let metrics = Metrics::new();
    let (stack, _) =
        crate::stack::build(loaded, false, Missing::Fail, Some(metrics.observer())).await?;
    metrics.set_layered(stack.has_redis());
    if once {
        let report = stack.background().run_once().await;
        output::print_line(&format!(
            "listed {}, due {}, refreshed {}, skipped {}, failed {} (marked error {}), corrupt {}, list errors {}",
            report.total,
            report.due,
            report.refreshed,
            report.skipped,
            report.failed,
            report.marked_error,
            report.corrupt,
            report.list_errors
        ));
        return Ok(());
    }
    let shutdown = crate::shutdown::on_signal();
    info!(interval = ?loaded.config.background.interval, window = ?loaded.config.background.window, "background refresher started");
    let worker = spawn(
        stack.clone(),
        shutdown.clone(),
        loaded.config.background.interval,
    );
    shutdown.cancelled().await;
    let _ = worker.await;
    finish(&stack, loaded.config.shutdown_grace()).await
}

/// Waits (bounded by `shutdown_grace`) for refreshes in flight to persist.
pub(crate) async fn finish(
    stack: &RefreshStack,
    grace: std::time::Duration,
) -> Result<(), CliError> {
    let running = stack.flow().in_flight();
    if stack.drain(grace).await {
        info!(
            waited_for = running,
            "refreshes in flight persisted; stopped"
        );
        Ok(())
    } else {
        let left = stack.flow().in_flight();
        warn!(
            left,
            "shutdown grace period over with refreshes still running"
        );
        Err(CliError::new(format!(
            "{left} refreshes were still running when the shutdown grace period ({:?}) ended",
            grace
        )))
    }
}
