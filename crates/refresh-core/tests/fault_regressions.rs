//! Regression tests from the second fault review: several processes
//! (separate `RefreshFlow`s sharing one repository, lock and recovery store)
//! against a rotating upstream, each around an outstanding or failed call.
//! Every test failed before its fix in `src/flow/`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use refresh_core::memory::{InMemoryAccountRepository, InMemoryRecoveryStore, InMemoryRefreshLock};
use refresh_core::ports::ManualClock;
use refresh_core::testing::conformance::{T0, account_expiring};
use refresh_core::testing::{FakeUpstream, Faulty, RotatingExecutor};
use refresh_core::{
    Account, AccountRepository, Clock, Credentials, FlowConfig, LockStrategy, Platform,
    ProviderError, RecoveryStore, RefreshExecutor, RefreshFlow, RefreshLock, RefreshOutcome,
    StorageErrorKind,
};

const WINDOW: Duration = Duration::from_secs(180);

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(T0, 0).unwrap()
}

struct World {
    clock: Arc<ManualClock>,
    repo: Arc<Faulty<InMemoryAccountRepository>>,
    lock: Arc<InMemoryRefreshLock>,
    durable: Arc<Faulty<InMemoryRecoveryStore>>,
    upstream: Arc<FakeUpstream>,
    executor: Arc<dyn RefreshExecutor>,
}

impl World {
    fn new() -> Self {
        let clock = Arc::new(ManualClock::new(t0()));
        let dclock: Arc<dyn Clock> = clock.clone();
        let upstream = FakeUpstream::new();
        Self {
            repo: Arc::new(Faulty::new(Arc::new(
                InMemoryAccountRepository::with_accounts(vec![account_expiring(1, Some(-60))]),
            ))),
            lock: Arc::new(InMemoryRefreshLock::new(dclock.clone())),
            durable: Arc::new(Faulty::new(Arc::new(InMemoryRecoveryStore::new()))),
            executor: Arc::new(RotatingExecutor::new(
                Platform::Anthropic,
                upstream.clone(),
                dclock,
                Duration::from_secs(3600),
            )),
            upstream,
            clock,
        }
    }

    /// One "process": its own flow (own single flight, own in-process
    /// recovery copy) over the shared repo, lock and recovery store.
    fn process(&self) -> RefreshFlow {
        RefreshFlow::builder(
            self.repo.clone() as Arc<dyn AccountRepository>,
            LockStrategy::single(self.lock.clone() as Arc<dyn RefreshLock>),
        )
        .recovery(self.durable.clone() as Arc<dyn RecoveryStore>)
        .clock(self.clock.clone() as Arc<dyn Clock>)
        .config(FlowConfig {
            upstream_timeout: Duration::from_secs(1),
            persist_attempts: 1,
            ..FlowConfig::default()
        })
        .build()
        .unwrap()
    }

    async fn refresh(&self, flow: &RefreshFlow) -> Result<RefreshOutcome, refresh_core::FlowError> {
        let snap = self
            .repo
            .inner()
            .get(refresh_core::AccountId(1))
            .await
            .unwrap()
            .unwrap();
        flow.refresh_if_needed(&snap, &self.executor, WINDOW).await
    }

    async fn stored(&self) -> Account {
        self.repo
            .inner()
            .get(refresh_core::AccountId(1))
            .await
            .unwrap()
            .unwrap()
    }
}

async fn settle() {
    for _ in 0..200 {
        tokio::task::yield_now().await;
    }
}

/// F1: the pending marker could not be saved durably, yet the late-answer
/// task gives the lease up after the grace period; another process then
/// presents the refresh token the outstanding call already consumed.
#[tokio::test(start_paused = true)]
async fn invariant_1_marker_save_failure_keeps_the_lease_while_the_call_is_out() {
    let w = World::new();
    let (a, b) = (w.process(), w.process());
    w.durable
        .faults
        .fail_always("save", StorageErrorKind::Unavailable);
    w.upstream.hold_responses();

    let err = w.refresh(&a).await.expect_err("ambiguous");
    assert!(matches!(
        err.provider_error(),
        Some(ProviderError::Ambiguous { .. })
    ));
    // Past the grace: the late task releases the lease (the call is still out).
    tokio::time::advance(Duration::from_millis(1500)).await;
    settle().await;

    let b_task = {
        let (b, snap, exec) = (b.clone(), w.stored().await, w.executor.clone());
        tokio::spawn(async move { b.refresh_if_needed(&snap, &exec, WINDOW).await })
    };
    settle().await;
    assert_eq!(
        w.upstream.reuses(),
        0,
        "process B presented rt-1-0 while A's call (which consumed it) was outstanding"
    );
    b_task.abort();
}

/// F2: a stale in-process record masks an unreadable recovery store. The
/// flow calls the upstream "without knowing", and presents a token that
/// another process's outstanding call (recorded only in the durable store)
/// consumed.
#[tokio::test(start_paused = true)]
async fn invariant_1_stale_local_record_does_not_mask_an_unreadable_store() {
    let w = World::new();
    let (a, b, c) = (w.process(), w.process(), w.process());

    // A: upstream rotates rt-1-0 -> rt-1-1, the write fails: record in A's
    // memory and in the durable store.
    w.repo
        .faults
        .fail_always("compare_and_set_credentials", StorageErrorKind::Unavailable);
    w.refresh(&a).await.expect_err("not persisted");
    w.repo.faults.heal();
    // B consumes the durable record (A's in-memory copy stays).
    let out = w.refresh(&b).await.expect("recovered");
    assert!(matches!(
        out,
        RefreshOutcome::Refreshed {
            recovered: true,
            ..
        }
    ));

    // Two hours later C refreshes rt-1-1; its answer is late: a durable
    // pending marker protects rt-1-1, and C's lease goes after the grace.
    w.clock.advance(Duration::from_secs(7200));
    w.upstream.hold_responses();
    w.refresh(&c).await.expect_err("ambiguous");
    tokio::time::advance(Duration::from_millis(1500)).await;
    settle().await;
    assert!(
        w.durable
            .inner()
            .load(refresh_core::AccountId(1))
            .await
            .unwrap()
            .unwrap()
            .pending
    );

    // The recovery store becomes unreadable for A.
    w.durable
        .faults
        .fail_always("load", StorageErrorKind::Unavailable);
    let a_task = {
        let (a, snap, exec) = (a.clone(), w.stored().await, w.executor.clone());
        tokio::spawn(async move { a.refresh_if_needed(&snap, &exec, WINDOW).await })
    };
    settle().await;
    assert_eq!(w.upstream.reuses(), 0, "rt-1-1 presented twice");
    assert_eq!(
        w.upstream.calls(),
        2,
        "A called the upstream although the recovery store was unreadable"
    );
    a_task.abort();
}

/// A non-rotating (Google-like) executor: new access token, same refresh
/// token.
struct NonRotating {
    clock: Arc<dyn Clock>,
    n: AtomicU64,
}

#[async_trait]
impl RefreshExecutor for NonRotating {
    fn platform(&self) -> Platform {
        Platform::Anthropic
    }
    async fn refresh(&self, account: &Account) -> Result<Credentials, ProviderError> {
        let n = self.n.fetch_add(1, Ordering::SeqCst) + 1;
        let exp = self.clock.now().timestamp() + 3600;
        Ok(Credentials::new()
            .with("access_token", format!("g-at-{n}"))
            .with("expires_at", exp.to_string())
            .merged_over(&account.credentials))
    }
}

/// F3: a stale in-process record is resurrected after another process
/// applied and removed the durable copy: for a non-rotating provider it
/// overwrites a newer access token with an older, expired one and reports
/// `Refreshed`.
#[tokio::test(start_paused = true)]
async fn invariant_3_stale_local_record_never_overwrites_a_newer_token() {
    let w = World::new();
    let (a, b) = (w.process(), w.process());
    let exec: Arc<dyn RefreshExecutor> = Arc::new(NonRotating {
        clock: w.clock.clone() as Arc<dyn Clock>,
        n: AtomicU64::new(0),
    });
    let run = |flow: RefreshFlow, snap: Account, exec: Arc<dyn RefreshExecutor>| async move {
        flow.refresh_if_needed(&snap, &exec, WINDOW).await
    };

    w.repo
        .faults
        .fail_always("compare_and_set_credentials", StorageErrorKind::Unavailable);
    run(a.clone(), w.stored().await, exec.clone())
        .await
        .expect_err("not persisted"); // g-at-1
    w.repo.faults.heal();
    run(b.clone(), w.stored().await, exec.clone())
        .await
        .expect("B applies g-at-1");
    w.clock.advance(Duration::from_secs(7200));
    run(b.clone(), w.stored().await, exec.clone())
        .await
        .expect("B refreshes: g-at-2");
    assert_eq!(
        w.stored()
            .await
            .credentials
            .access_token()
            .unwrap()
            .expose(),
        "g-at-2"
    );

    let out = run(a.clone(), w.stored().await, exec.clone())
        .await
        .expect("A's flow");
    let stored = w.stored().await;
    assert_eq!(
        stored.credentials.access_token().unwrap().expose(),
        "g-at-2",
        "A resurrected its stale record over a newer token (outcome {out:?})"
    );
}

/// F4: an answer arriving after the grace is kept only in process memory
/// when the recovery store refuses it, although the account row could
/// have been written (fenced). The durable pending marker expires and
/// another process presents the consumed token.
#[tokio::test(start_paused = true)]
async fn invariant_2_late_answer_is_persisted_even_when_the_recovery_store_fails() {
    let w = World::new();
    let (a, b) = (w.process(), w.process());
    w.upstream.hold_responses();
    w.refresh(&a).await.expect_err("ambiguous");
    tokio::time::advance(Duration::from_millis(1500)).await;
    settle().await;
    // The recovery store fails from now on; the late answer arrives.
    w.durable
        .faults
        .fail_always("save", StorageErrorKind::Unavailable);
    w.upstream.release(1);
    settle().await;
    // Some time later (marker TTL: 10 upstream timeouts) B runs.
    w.clock.advance(Duration::from_secs(30));
    w.upstream.open();
    let _ = w.refresh(&b).await;
    assert_eq!(w.upstream.reuses(), 0, "B re-presented the consumed rt-1-0");
}

/// An executor whose request reaches the upstream (which rotates), then
/// panics while handling the answer (a plugin bug on a bad body).
struct PanicsAfterSend(Arc<FakeUpstream>);

#[async_trait]
impl RefreshExecutor for PanicsAfterSend {
    fn platform(&self) -> Platform {
        Platform::Anthropic
    }
    async fn refresh(&self, account: &Account) -> Result<Credentials, ProviderError> {
        let rt = account.credentials.refresh_token().unwrap();
        let _ = self.0.redeem(account.id, rt.expose()).await;
        panic!("parser bug after the answer arrived");
    }
}

/// F5: a panic in the executor is treated as "nothing was sent": no marker,
/// lease released at once; the next attempt re-presents the token.
#[tokio::test(start_paused = true)]
async fn invariant_1_executor_panic_after_send_blocks_a_second_presentation() {
    let w = World::new();
    let a = w.process();
    let bad: Arc<dyn RefreshExecutor> = Arc::new(PanicsAfterSend(w.upstream.clone()));
    let snap = w.stored().await;
    let err = a
        .refresh_if_needed(&snap, &bad, WINDOW)
        .await
        .expect_err("task failed");
    assert!(err.is_retryable(), "background retries it");
    let _ = w.refresh(&a).await;
    assert_eq!(
        w.upstream.reuses(),
        0,
        "rt-1-0 presented twice after a panic"
    );
}
