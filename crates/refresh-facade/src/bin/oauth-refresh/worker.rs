//! `run`: the background refresher, with each cycle's report logged, each
//! refresh recorded in the event log (as under `serve`, so the status
//! page's history covers a separate worker), and a graceful shutdown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use refresh_facade::RefreshStack;
use refresh_facade::events::{EventRecorder, Observers};
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
    let recorder = EventRecorder::new();
    let observer = Observers(vec![metrics.observer(), recorder.observer()]);
    let (stack, _) =
        crate::stack::build(loaded, false, Missing::Fail, Some(Arc::new(observer))).await?;
    metrics.set_layered(stack.has_redis());
    // The writer has its own token, cancelled only after the refreshes in
    // flight have persisted, so their events are written too.
    let stop_recorder = CancellationToken::new();
    let writer = recorder.start(
        Arc::new(stack.database().event_log()),
        loaded.config.serve.ui.retention(),
        stop_recorder.clone(),
    );
    let result = refresh(loaded, once, &stack).await;
    stop_recorder.cancel();
    if let Some(writer) = writer
        && tokio::time::timeout(EVENT_FLUSH, writer).await.is_err()
    {
        warn!("refresh events still queued when the flush bound ended; dropped");
    }
    result
}

/// How long `run` waits, at exit, for queued refresh events to be written.
const EVENT_FLUSH: Duration = Duration::from_secs(5);

async fn refresh(loaded: &Loaded, once: bool, stack: &RefreshStack) -> Result<(), CliError> {
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
    finish(stack, loaded.config.shutdown_grace()).await
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
