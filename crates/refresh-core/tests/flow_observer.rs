//! The [`FlowObserver`] events a metrics exporter relies on: lock
//! acquisitions, contention and fallbacks by layer, upstream calls with
//! their outcome, refresh outcomes, shared-cache lookups and waits, and the
//! warm-read counter that replaces events on the hot path.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::{Backends, WINDOW, expired_account, key, oauth_account};
use refresh_core::ports::{Lease, RefreshLock};
use refresh_core::{
    AccountId, FlowObserver, LockStrategy, Platform, ProviderError, RefreshKey, StorageError,
    StorageErrorKind, TokenProvider,
};

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl Recorder {
    fn push(&self, event: String) {
        self.0.lock().unwrap().push(event);
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl FlowObserver for Recorder {
    fn lock_acquired(&self, layer: &'static str) {
        self.push(format!("acquired {layer}"));
    }
    fn lock_contended(&self, layer: &'static str) {
        self.push(format!("contended {layer}"));
    }
    fn lock_unavailable(&self, layer: &'static str) {
        self.push(format!("unavailable {layer}"));
    }
    fn upstream_call(&self, platform: &Platform, _elapsed: Duration, outcome: &'static str) {
        self.push(format!("upstream {platform} {outcome}"));
    }
    fn refresh_finished(&self, platform: &Platform, outcome: &'static str) {
        self.push(format!("finished {platform} {outcome}"));
    }
    fn shared_cache_lookup(&self, hit: bool) {
        self.push(format!("shared hit={hit}"));
    }
    fn waited(&self, platform: &Platform, _waited: Duration, hit: bool) {
        self.push(format!("waited {platform} hit={hit}"));
    }
    fn process_cache_miss(&self) {
        self.push("process miss".to_owned());
    }
    fn background_cycle(&self, report: &refresh_core::CycleReport, elapsed: Duration) {
        self.push(format!(
            "cycle due={} refreshed={} cancelled={} elapsed={}ms",
            report.due,
            report.refreshed,
            report.cancelled,
            elapsed.as_millis()
        ));
    }
}

/// A lock under another name, so two in-memory layers can be told apart.
struct Named(&'static str, Arc<dyn RefreshLock>);

#[async_trait]
impl RefreshLock for Named {
    fn name(&self) -> &'static str {
        self.0
    }
    async fn try_acquire(
        &self,
        key: &RefreshKey,
        ttl: Duration,
    ) -> Result<Option<Lease>, StorageError> {
        self.1.try_acquire(key, ttl).await
    }
    async fn extend(&self, lease: &Lease, ttl: Duration) -> Result<bool, StorageError> {
        self.1.extend(lease, ttl).await
    }
    async fn release(&self, lease: &Lease) -> Result<bool, StorageError> {
        self.1.release(lease).await
    }
}

#[tokio::test(start_paused = true)]
async fn the_flow_reports_locks_upstream_calls_and_outcomes() {
    let account = expired_account(1);
    let due = oauth_account(2, Platform::Anthropic, -60);
    let other = oauth_account(3, Platform::Anthropic, -60);
    let h = Backends::new([account.clone(), due.clone(), other.clone()]);
    let recorder = Arc::new(Recorder::default());
    let flow = h
        .flow_builder(LockStrategy::single(h.lock.clone()))
        .observer(recorder.clone())
        .build()
        .unwrap();
    let executor = h.executor(Platform::Anthropic);

    flow.refresh_if_needed(&account, &executor, WINDOW)
        .await
        .expect("refreshed");
    assert_eq!(
        recorder.take(),
        [
            "acquired memory",
            "upstream anthropic ok",
            "finished anthropic refreshed"
        ]
    );

    // Fresh now: the lease is taken, nothing is sent.
    let fresh = h.stored(1).await;
    flow.refresh_if_needed(&fresh, &executor, WINDOW)
        .await
        .unwrap();
    assert_eq!(
        recorder.take(),
        ["acquired memory", "finished anthropic still_fresh"]
    );

    // Held elsewhere.
    let _theirs = h.hold(&key(&Platform::Anthropic, 2)).await;
    flow.refresh_if_needed(&due, &executor, WINDOW)
        .await
        .unwrap();
    assert_eq!(
        recorder.take(),
        ["contended memory", "finished anthropic held_elsewhere"]
    );

    // An upstream error: its kind, and the failed stage.
    h.upstream.fail_next(ProviderError::NotSent {
        reason: "connection refused".into(),
    });
    flow.refresh_if_needed(&other, &executor, WINDOW)
        .await
        .expect_err("invalid client");
    let events = recorder.take();
    assert_eq!(
        events,
        [
            "acquired memory".to_owned(),
            format!(
                "upstream anthropic {}",
                ProviderError::NotSent {
                    reason: String::new()
                }
                .kind_name()
            ),
            "finished anthropic upstream".to_owned(),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_lock_fallback_names_both_layers() {
    let account = expired_account(1);
    let h = Backends::new([account.clone()]);
    let recorder = Arc::new(Recorder::default());
    h.lock
        .faults
        .fail_always("try_acquire", StorageErrorKind::Unavailable);
    let primary = Arc::new(Named("redis", h.lock.clone()));
    let secondary = Arc::new(Named(
        "database",
        Arc::new(refresh_core::memory::InMemoryRefreshLock::default()),
    ));
    let flow = h
        .flow_builder(LockStrategy::layered(primary, secondary))
        .observer(recorder.clone())
        .build()
        .unwrap();
    flow.refresh_if_needed(&account, &h.executor(Platform::Anthropic), WINDOW)
        .await
        .expect("refreshed on the fallback layer");
    assert_eq!(
        recorder.take(),
        [
            "unavailable redis",
            "acquired database",
            "upstream anthropic ok",
            "finished anthropic refreshed"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn the_provider_reports_shared_lookups_and_counts_warm_reads() {
    let account = oauth_account(1, Platform::Anthropic, 3600);
    let h = Backends::new([account.clone()]);
    let recorder = Arc::new(Recorder::default());
    let flow = h
        .flow_builder(LockStrategy::single(h.lock.clone()))
        .notifier(h.cache.clone())
        .observer(recorder.clone())
        .build()
        .unwrap();
    let provider = TokenProvider::builder(flow, h.registry(&[Platform::Anthropic]))
        .shared_cache(h.cache.clone())
        .build();

    provider.access_token_by_id(AccountId(1)).await.unwrap();
    assert_eq!(recorder.take(), ["process miss", "shared hit=false"]);
    assert_eq!(provider.local_hits(), 0);
    for _ in 0..5 {
        provider.access_token_by_id(AccountId(1)).await.unwrap();
    }
    assert_eq!(provider.local_hits(), 5);
    assert!(recorder.take().is_empty(), "warm reads report no event");

    // Another process is served by the shared cache the first one filled.
    let flow = h
        .flow_builder(LockStrategy::single(h.lock.clone()))
        .observer(recorder.clone())
        .build()
        .unwrap();
    let other = TokenProvider::builder(flow, h.registry(&[Platform::Anthropic]))
        .shared_cache(h.cache.clone())
        .build();
    other.access_token(&account).await.unwrap();
    assert_eq!(recorder.take(), ["process miss", "shared hit=true"]);
}

/// Every background cycle reports its report and duration, whoever runs
/// it (`run_once`, `spawn`, a cycle cut short by shutdown), so a metrics
/// exporter needs no wrapper around the refresher.
#[tokio::test(start_paused = true)]
async fn background_cycles_report_their_outcome_and_duration() {
    let h = Backends::new([oauth_account(1, Platform::Anthropic, -60)]);
    let recorder = Arc::new(Recorder::default());
    let flow = h
        .flow_builder(LockStrategy::single(h.lock.clone()))
        .observer(recorder.clone())
        .build()
        .unwrap();
    let background =
        refresh_core::BackgroundRefresher::builder(flow, h.registry(&[Platform::Anthropic]))
            .build()
            .unwrap();
    let report = background.run_once().await;
    assert_eq!(report.refreshed, 1);
    let events = recorder.take();
    assert_eq!(
        events.last().map(String::as_str),
        Some("cycle due=1 refreshed=1 cancelled=false elapsed=0ms"),
        "{events:?}"
    );
    let shutdown = tokio_util::sync::CancellationToken::new();
    shutdown.cancel();
    background.run_cycle(&shutdown).await;
    assert_eq!(
        recorder.take(),
        ["cycle due=0 refreshed=0 cancelled=true elapsed=0ms"]
    );
}
