//! [`EventRecorder`]: keeps the history of refresh runs in a
//! [`RefreshEventLog`] (the database's `refresh_events`, shared by every
//! process) from the flow's [`FlowObserver::refresh_event`] reports,
//! without ever making the flow wait for the database; and [`Observers`],
//! which hands the flow's events to several observers (metrics and the
//! recorder).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use refresh_core::ports::{RefreshEvent, RefreshEventLog};
use refresh_core::{CycleReport, FlowObserver, Platform};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Events waiting for the writer at most; more are dropped (and counted).
const QUEUE: usize = 4096;
/// Rows one purge statement deletes at most.
const PURGE_BATCH: usize = 1000;
/// How often the writer purges events older than the retention.
const PURGE_EVERY: Duration = Duration::from_secs(600);

/// How long, and how much of, the history the writer keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Events older than this are purged.
    pub max_age: Duration,
    /// Only the newest this many events of each account are kept (at
    /// least 1).
    pub per_account: usize,
}

/// Sends each run the flow reports to a writer task that appends it to a
/// [`RefreshEventLog`] and purges what is older than the retention or
/// beyond each account's newest [`Retention::per_account`].
///
/// Build it before the stack (its [`observer`](Self::observer) goes to the
/// stack's builder), then [`start`](Self::start) the writer once the log
/// exists. Events reported before are kept (up to the queue bound).
#[derive(Clone)]
pub struct EventRecorder {
    inner: Arc<Inner>,
}

struct Inner {
    sender: mpsc::Sender<RefreshEvent>,
    receiver: std::sync::Mutex<Option<mpsc::Receiver<RefreshEvent>>>,
    queued: AtomicU64,
    written: AtomicU64,
    dropped: AtomicU64,
    lock_fallbacks: AtomicU64,
    progress: Notify,
}

impl std::fmt::Debug for EventRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventRecorder")
            .field("queued", &self.inner.queued.load(Ordering::Relaxed))
            .field("written", &self.inner.written.load(Ordering::Relaxed))
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl Default for EventRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl EventRecorder {
    /// A recorder whose writer is not started yet.
    pub fn new() -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE);
        Self {
            inner: Arc::new(Inner {
                sender,
                receiver: std::sync::Mutex::new(Some(receiver)),
                queued: AtomicU64::new(0),
                written: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                lock_fallbacks: AtomicU64::new(0),
                progress: Notify::new(),
            }),
        }
    }

    /// The observer to give the stack's builder.
    pub fn observer(&self) -> Arc<dyn FlowObserver> {
        Arc::new(self.clone())
    }

    /// Starts the writer on the current runtime: it appends every event to
    /// `log` (a failed append is logged and dropped: the history is
    /// informational), and every ten minutes deletes events older than
    /// `retention.max_age`, then those beyond each account's newest
    /// `retention.per_account`, at most 1000 rows per statement and 10
    /// statements of each kind per tick. It stops when `shutdown` is
    /// cancelled, after writing what is queued. A second call does nothing.
    pub fn start(
        &self,
        log: Arc<dyn RefreshEventLog>,
        retention: Retention,
        shutdown: CancellationToken,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let mut receiver = self
            .inner
            .receiver
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()?;
        let inner = Arc::clone(&self.inner);
        Some(tokio::spawn(async move {
            let mut purge = tokio::time::interval(PURGE_EVERY);
            loop {
                tokio::select! {
                    biased;
                    event = receiver.recv() => match event {
                        Some(event) => inner.write(log.as_ref(), &event).await,
                        None => break,
                    },
                    _ = purge.tick() => purge_old(log.as_ref(), retention).await,
                    () = shutdown.cancelled() => {
                        receiver.close();
                        while let Some(event) = receiver.recv().await {
                            inner.write(log.as_ref(), &event).await;
                        }
                        break;
                    }
                }
            }
        }))
    }

    /// Waits (at most `timeout`) until every event reported before this
    /// call has been written or dropped; `false` on timeout.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let target = self.inner.queued.load(Ordering::SeqCst);
        let wait = async {
            loop {
                let notified = self.inner.progress.notified();
                if self.inner.written.load(Ordering::SeqCst) >= target {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Lock layers found unavailable by this process's flow since it
    /// started (each one a fallback to the next layer or a failed run).
    pub fn lock_fallbacks(&self) -> u64 {
        self.inner.lock_fallbacks.load(Ordering::Relaxed)
    }
}

impl Inner {
    async fn write(&self, log: &dyn RefreshEventLog, event: &RefreshEvent) {
        if let Err(error) = log.append(event).await {
            warn!(kind = %error.kind(), account_id = %event.account_id, "refresh event not recorded");
        }
        // Counted as done either way: `flush` waits for the attempt.
        self.written.fetch_add(1, Ordering::SeqCst);
        self.progress.notify_waiters();
    }
}

async fn purge_old(log: &dyn RefreshEventLog, retention: Retention) {
    if let Ok(max_age) = chrono::TimeDelta::from_std(retention.max_age) {
        let before = Utc::now() - max_age;
        repeat_purge("by age", || log.purge(before, PURGE_BATCH)).await;
    }
    let keep = retention.per_account.max(1);
    repeat_purge("beyond the per-account bound", || {
        log.purge_excess(keep, PURGE_BATCH)
    })
    .await;
}

/// Runs `purge` while it deletes a full batch, 10 times at most: a backlog
/// is worked off over several ticks.
async fn repeat_purge<F, Fut>(what: &'static str, mut purge: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64, refresh_core::StorageError>>,
{
    for _ in 0..10 {
        match purge().await {
            Ok(n) if n as usize == PURGE_BATCH => {}
            Ok(_) => return,
            Err(error) => {
                warn!(kind = %error.kind(), what, "purging refresh events failed");
                return;
            }
        }
    }
}

impl FlowObserver for EventRecorder {
    fn lock_unavailable(&self, _layer: &'static str) {
        self.inner.lock_fallbacks.fetch_add(1, Ordering::Relaxed);
    }

    fn refresh_event(&self, event: &RefreshEvent) {
        match self.inner.sender.try_send(event.clone()) {
            Ok(()) => {
                self.inner.queued.fetch_add(1, Ordering::SeqCst);
            }
            Err(_) => {
                self.inner.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Hands every event to each of several observers, in order. (Every
/// method of [`FlowObserver`] must be forwarded here: a new one is added
/// to this list too.)
pub struct Observers(pub Vec<Arc<dyn FlowObserver>>);

impl std::fmt::Debug for Observers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Observers").field(&self.0.len()).finish()
    }
}

impl FlowObserver for Observers {
    fn lock_acquired(&self, layer: &'static str) {
        self.0.iter().for_each(|o| o.lock_acquired(layer));
    }
    fn lock_contended(&self, layer: &'static str) {
        self.0.iter().for_each(|o| o.lock_contended(layer));
    }
    fn lock_unavailable(&self, layer: &'static str) {
        self.0.iter().for_each(|o| o.lock_unavailable(layer));
    }
    fn upstream_call(&self, platform: &Platform, elapsed: Duration, outcome: &'static str) {
        self.0
            .iter()
            .for_each(|o| o.upstream_call(platform, elapsed, outcome));
    }
    fn refresh_finished(&self, platform: &Platform, outcome: &'static str) {
        self.0
            .iter()
            .for_each(|o| o.refresh_finished(platform, outcome));
    }
    fn refresh_event(&self, event: &RefreshEvent) {
        self.0.iter().for_each(|o| o.refresh_event(event));
    }
    fn shared_cache_lookup(&self, hit: bool) {
        self.0.iter().for_each(|o| o.shared_cache_lookup(hit));
    }
    fn waited(&self, platform: &Platform, waited: Duration, hit: bool) {
        self.0.iter().for_each(|o| o.waited(platform, waited, hit));
    }
    fn process_cache_miss(&self) {
        self.0.iter().for_each(|o| o.process_cache_miss());
    }
    fn background_cycle(&self, report: &CycleReport, elapsed: Duration) {
        self.0
            .iter()
            .for_each(|o| o.background_cycle(report, elapsed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use refresh_core::AccountId;
    use refresh_core::memory::InMemoryRefreshEventLog;

    fn retention(secs: u64, per_account: usize) -> Retention {
        Retention {
            max_age: Duration::from_secs(secs),
            per_account,
        }
    }

    fn event(n: i64) -> RefreshEvent {
        RefreshEvent {
            account_id: AccountId(n),
            platform: Platform::Gemini,
            at: Utc::now(),
            outcome: "refreshed".into(),
            duration: Duration::from_millis(5),
            lock_layer: Some("database".into()),
            attempts: 1,
        }
    }

    #[tokio::test]
    async fn events_reported_before_the_start_are_written_and_flush_waits_for_them() {
        let recorder = EventRecorder::new();
        let observer = Observers(vec![recorder.observer()]);
        observer.refresh_event(&event(1));
        observer.lock_unavailable("redis");
        let log = Arc::new(InMemoryRefreshEventLog::default());
        let shutdown = CancellationToken::new();
        let writer = recorder
            .start(log.clone(), retention(3600, 100), shutdown.clone())
            .expect("first start");
        assert!(
            recorder
                .start(log.clone(), retention(0, 1), shutdown.clone())
                .is_none()
        );
        observer.refresh_event(&event(2));
        assert!(recorder.flush(Duration::from_secs(10)).await);
        assert_eq!(log.len(), 2);
        assert_eq!(recorder.lock_fallbacks(), 1);
        shutdown.cancel();
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn the_writer_purges_events_older_than_the_retention() {
        let log = Arc::new(InMemoryRefreshEventLog::default());
        let mut old = event(1);
        old.at = Utc::now() - chrono::TimeDelta::days(8);
        log.append(&old).await.unwrap();
        log.append(&event(2)).await.unwrap();
        let recorder = EventRecorder::new();
        let shutdown = CancellationToken::new();
        let writer = recorder
            .start(log.clone(), retention(7 * 24 * 3600, 100), shutdown.clone())
            .unwrap();
        // The first purge runs when the writer starts.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while log.len() != 1 {
            assert!(tokio::time::Instant::now() < deadline, "not purged");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            log.recent(AccountId(2), 5).await.unwrap().len(),
            1,
            "the newer one stays"
        );
        shutdown.cancel();
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn a_purge_keeps_the_newest_events_of_each_account_over_several_batches() {
        let log = InMemoryRefreshEventLog::default();
        let start = Utc::now();
        for n in 0..1_500 {
            let mut e = event(1);
            e.at = start - chrono::TimeDelta::seconds(n);
            log.append(&e).await.unwrap();
        }
        for _ in 0..3 {
            log.append(&event(2)).await.unwrap();
        }
        purge_old(&log, retention(3600, 100)).await;
        let kept = log.recent(AccountId(1), usize::MAX).await.unwrap();
        assert_eq!(kept.len(), 100, "1400 over the bound: two batches");
        assert!(
            kept.iter()
                .all(|e| e.at > start - chrono::TimeDelta::seconds(100)),
            "the newest 100"
        );
        assert_eq!(log.recent(AccountId(2), usize::MAX).await.unwrap().len(), 3);
        // A bound of 0 is read as 1: an account keeps its last event.
        purge_old(&log, retention(3600, 0)).await;
        assert_eq!(log.len(), 2);
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_instead_of_blocking() {
        let recorder = EventRecorder::new();
        for n in 0..(QUEUE as i64 + 5) {
            recorder.refresh_event(&event(n));
        }
        assert_eq!(recorder.dropped(), 5);
    }
}
