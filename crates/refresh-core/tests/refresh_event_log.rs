//! [`RefreshEventLog`]: the in-memory log passes the conformance suite, the
//! suite fails a log that breaks its contract, and the flow reports one
//! [`RefreshEvent`] per run with the account, lock layers and upstream
//! requests.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use common::{Backends, WINDOW, expired_account, key, oauth_account};
use refresh_core::memory::InMemoryRefreshEventLog;
use refresh_core::ports::{HourlyCount, RefreshEvent, RefreshEventLog};
use refresh_core::testing::conformance::refresh_event_log_suite;
use refresh_core::{AccountId, FlowObserver, LockStrategy, Platform, ProviderError, StorageError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_refresh_event_log_conforms() {
    refresh_event_log_suite(|| async {
        Arc::new(InMemoryRefreshEventLog::default()) as Arc<dyn RefreshEventLog>
    })
    .await;
}

#[tokio::test]
async fn the_in_memory_log_keeps_at_most_its_capacity() {
    let log = InMemoryRefreshEventLog::with_capacity(3);
    for n in 0..5 {
        log.append(&RefreshEvent {
            account_id: AccountId(1),
            platform: Platform::Gemini,
            at: DateTime::from_timestamp(1_000 + n, 0).unwrap(),
            outcome: "refreshed".into(),
            duration: Duration::ZERO,
            lock_layer: None,
            attempts: 1,
        })
        .await
        .unwrap();
    }
    assert_eq!(log.len(), 3);
    let oldest = log.recent(AccountId(1), 10).await.unwrap().pop().unwrap();
    assert_eq!(oldest.at.timestamp(), 1_002, "the oldest were dropped");
}

/// A log whose purge ignores its time bound (deletes the newest too).
struct PurgesEverything(InMemoryRefreshEventLog);

#[async_trait]
impl RefreshEventLog for PurgesEverything {
    async fn append(&self, event: &RefreshEvent) -> Result<(), StorageError> {
        self.0.append(event).await
    }
    async fn recent(
        &self,
        account: AccountId,
        limit: usize,
    ) -> Result<Vec<RefreshEvent>, StorageError> {
        self.0.recent(account, limit).await
    }
    async fn latest(&self, accounts: &[AccountId]) -> Result<Vec<RefreshEvent>, StorageError> {
        self.0.latest(accounts).await
    }
    async fn hourly(&self, since: DateTime<Utc>) -> Result<Vec<HourlyCount>, StorageError> {
        self.0.hourly(since).await
    }
    async fn purge(&self, _before: DateTime<Utc>, limit: usize) -> Result<u64, StorageError> {
        self.0.purge(DateTime::<Utc>::MAX_UTC, limit).await
    }
    async fn purge_excess(&self, keep: usize, limit: usize) -> Result<u64, StorageError> {
        self.0.purge_excess(keep, limit).await
    }
}

/// A log whose per-account purge counts from the oldest (keeps the oldest
/// `keep` of each account instead of the newest).
struct KeepsTheOldest(InMemoryRefreshEventLog, Mutex<Vec<RefreshEvent>>);

#[async_trait]
impl RefreshEventLog for KeepsTheOldest {
    async fn append(&self, event: &RefreshEvent) -> Result<(), StorageError> {
        self.1.lock().unwrap().push(event.clone());
        self.0.append(event).await
    }
    async fn recent(
        &self,
        account: AccountId,
        limit: usize,
    ) -> Result<Vec<RefreshEvent>, StorageError> {
        self.0.recent(account, limit).await
    }
    async fn latest(&self, accounts: &[AccountId]) -> Result<Vec<RefreshEvent>, StorageError> {
        self.0.latest(accounts).await
    }
    async fn hourly(&self, since: DateTime<Utc>) -> Result<Vec<HourlyCount>, StorageError> {
        self.0.hourly(since).await
    }
    async fn purge(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, StorageError> {
        self.0.purge(before, limit).await
    }
    async fn purge_excess(&self, keep: usize, limit: usize) -> Result<u64, StorageError> {
        // Rebuild the log from the oldest `keep` per account (by time).
        let mut all = self.1.lock().unwrap().clone();
        all.sort_by_key(|e| e.at);
        let mut seen = std::collections::HashMap::<AccountId, usize>::new();
        let kept: Vec<_> = all
            .into_iter()
            .filter(|e| {
                let n = seen.entry(e.account_id).or_default();
                *n += 1;
                *n <= keep
            })
            .collect();
        let before = self.0.len();
        let _ = self.0.purge(DateTime::<Utc>::MAX_UTC, usize::MAX).await;
        for e in &kept {
            self.0.append(e).await?;
        }
        *self.1.lock().unwrap() = kept;
        Ok(((before - self.0.len()) as u64).min(limit as u64))
    }
}

#[tokio::test]
#[should_panic(expected = "refresh_event_log_suite: purge_excess_keeps_the_newest")]
async fn the_suite_fails_a_per_account_purge_that_keeps_the_oldest() {
    refresh_event_log_suite(|| async {
        Arc::new(KeepsTheOldest(
            InMemoryRefreshEventLog::default(),
            Mutex::default(),
        )) as Arc<dyn RefreshEventLog>
    })
    .await;
}

#[tokio::test]
#[should_panic(expected = "refresh_event_log_suite: purge_deletes_only_older_events")]
async fn the_suite_fails_a_purge_that_deletes_newer_events() {
    refresh_event_log_suite(|| async {
        Arc::new(PurgesEverything(InMemoryRefreshEventLog::default())) as Arc<dyn RefreshEventLog>
    })
    .await;
}

#[derive(Default)]
struct Events(Mutex<Vec<RefreshEvent>>);

impl FlowObserver for Events {
    fn refresh_event(&self, event: &RefreshEvent) {
        self.0.lock().unwrap().push(event.clone());
    }
}

impl Events {
    fn take(&self) -> Vec<RefreshEvent> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

#[tokio::test(start_paused = true)]
async fn the_flow_reports_one_event_per_run() {
    let account = expired_account(1);
    let due = oauth_account(2, Platform::Anthropic, -60);
    let other = oauth_account(3, Platform::Anthropic, -60);
    let h = Backends::new([account.clone(), due.clone(), other.clone()]);
    let events = Arc::new(Events::default());
    let flow = h
        .flow_builder(LockStrategy::single(h.lock.clone()))
        .observer(events.clone())
        .build()
        .unwrap();
    let executor = h.executor(Platform::Anthropic);
    let brief = |e: &RefreshEvent| {
        (
            e.account_id.get(),
            e.outcome.clone(),
            e.lock_layer.clone(),
            e.attempts,
        )
    };

    flow.refresh_if_needed(&account, &executor, WINDOW)
        .await
        .expect("refreshed");
    let fresh = h.stored(1).await;
    flow.refresh_if_needed(&fresh, &executor, WINDOW)
        .await
        .unwrap();
    let _theirs = h.hold(&key(&Platform::Anthropic, 2)).await;
    flow.refresh_if_needed(&due, &executor, WINDOW)
        .await
        .unwrap();
    h.upstream.fail_next(ProviderError::NotSent {
        reason: "connection refused".into(),
    });
    flow.refresh_if_needed(&other, &executor, WINDOW)
        .await
        .expect_err("upstream failure");

    let got = events.take();
    assert_eq!(
        got.iter().map(brief).collect::<Vec<_>>(),
        [
            (1, "refreshed".to_owned(), Some("memory".to_owned()), 1),
            (1, "still_fresh".to_owned(), Some("memory".to_owned()), 0),
            (2, "held_elsewhere".to_owned(), None, 0),
            (3, "upstream".to_owned(), Some("memory".to_owned()), 1),
        ]
    );
    assert!(got.iter().all(|e| e.platform == Platform::Anthropic));
    assert!(got[3].is_failure() && !got[0].is_failure());
    assert_eq!(
        got[0].at,
        flow.clock().now(),
        "stamped by the flow's clock (a manual one here, not moved)"
    );
}
