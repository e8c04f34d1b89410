//! Scenario tests of [`RefreshFlow::refresh_if_needed`]: the "Refresh
//! operation" behaviours of REFERENCE.md §12 (`ref_op_*`) and the DESIGN.md
//! invariants (`invariant_N_*`), run against the in-memory backends, the
//! fault-injecting [`Faulty`] wrappers, `mockall` mocks of the ports and the
//! rotating [`FakeUpstream`].
//!
//! Synchronisation never relies on sleeping: tests use paused tokio time
//! (`tokio::time::advance`), `Notify`, watch channels, the wrappers' call
//! counts (`FaultPlan::wait_for_calls`) and the fake upstream's
//! `hold_responses` / `wait_for_calls` / `release`.

mod common;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use async_trait::async_trait;
use common::{
    Backends, HookedRepository, ISSUED_LIFETIME, PROBE_TTL, RepositoryHooks, WINDOW, access_token,
    hold_lease, lease_is_free, memory_lock, refresh_token, refresh_token_of, settle,
    short_upstream_timeout, t0, tokio_clock,
};
use futures_util::FutureExt;
use serde_json::json;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use refresh_core::domain::keys;
use refresh_core::error::OAuthErrorCode;
use refresh_core::memory::{InMemoryRecoveryStore, InMemoryRefreshLock};
use refresh_core::policy::needs_refresh;
use refresh_core::ports::{
    CasOutcome, Lease, LeaseOwner, ManualClock, MockAccountRepository, MockRefreshExecutor,
    MockRefreshLock,
};
use refresh_core::testing::conformance::{T0, account_expiring};
use refresh_core::testing::{FakeUpstream, Faulty, RotatingExecutor};
use refresh_core::{
    Account, AccountId, AccountRepository, AccountStatus, AccountType, Clock, ConfigError,
    Credentials, CredentialsError, FlowConfig, FlowError, FlowStage, LockStrategy, Platform,
    ProviderError, RecoveryStore, RefreshExecutor, RefreshFlow, RefreshKey, RefreshLock,
    RefreshOutcome, StorageErrorKind, TokenCache,
};

type FlowResult = Result<RefreshOutcome, FlowError>;

/// The account every scenario refreshes.
const ID: i64 = 1;

// ---------------------------------------------------------------------------
// Fixtures and helpers
// ---------------------------------------------------------------------------

fn id() -> AccountId {
    AccountId(ID)
}

fn key() -> RefreshKey {
    common::key(&Platform::Anthropic, ID)
}

/// The account as the caller saw it: tokens `at-1-0` / `rt-1-0`, expired a
/// minute before T0.
fn expired_account() -> Account {
    account_expiring(ID, Some(-60))
}

/// The same account with a token valid for another hour.
fn fresh_account() -> Account {
    account_expiring(ID, Some(3600))
}

fn grant_error(code: &str) -> ProviderError {
    ProviderError::InvalidGrant {
        code: OAuthErrorCode::new(code),
        description: None,
    }
}

/// Unwraps a `Refreshed` outcome.
fn refreshed(outcome: RefreshOutcome) -> (Account, bool) {
    match outcome {
        RefreshOutcome::Refreshed { account, recovered } => (account, recovered),
        other => panic!("expected Refreshed, got {other:?}"),
    }
}

/// Unwraps a `StillFresh` outcome.
fn still_fresh(outcome: RefreshOutcome) -> Account {
    match outcome {
        RefreshOutcome::StillFresh { account } => account,
        other => panic!("expected StillFresh, got {other:?}"),
    }
}

/// Calls `refresh_if_needed` and reports, through `joined`, once the call
/// has joined (or started) the in-process flight: the first poll of
/// `refresh_if_needed` registers with the single flight synchronously, so
/// the counter moves only after that registration.
async fn refresh_counting_join(
    flow: RefreshFlow,
    snapshot: Account,
    executor: Arc<dyn RefreshExecutor>,
    joined: Arc<watch::Sender<usize>>,
) -> FlowResult {
    let mut call = std::pin::pin!(flow.refresh_if_needed(&snapshot, &executor, WINDOW));
    let first = std::future::poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await;
    joined.send_modify(|n| *n += 1);
    match first {
        Poll::Ready(result) => result,
        Poll::Pending => call.await,
    }
}

/// The shared backends (one account store, one lock, one fake upstream, one
/// recovery store), an Anthropic executor over them, and the caller's
/// snapshot of the account.
struct Harness {
    backends: Backends,
    executor: Arc<dyn RefreshExecutor>,
    snapshot: Account,
}

impl std::ops::Deref for Harness {
    type Target = Backends;

    fn deref(&self) -> &Backends {
        &self.backends
    }
}

impl Harness {
    /// `stored` in the repository, a manual clock at T0, and the caller's
    /// snapshot of the expired account.
    fn new(stored: Account) -> Self {
        Self::build(vec![stored], Arc::new(ManualClock::new(t0())))
    }

    fn build(accounts: Vec<Account>, clock: Arc<dyn Clock>) -> Self {
        let backends = Backends::on_clock(accounts, clock);
        Self {
            executor: backends.executor(Platform::Anthropic),
            snapshot: expired_account(),
            backends,
        }
    }

    fn flow(&self, locks: LockStrategy, config: FlowConfig) -> RefreshFlow {
        self.flow_over(
            Arc::clone(&self.repo) as Arc<dyn AccountRepository>,
            locks,
            config,
        )
    }

    fn flow_over(
        &self,
        repo: Arc<dyn AccountRepository>,
        locks: LockStrategy,
        config: FlowConfig,
    ) -> RefreshFlow {
        RefreshFlow::builder(repo, locks)
            .recovery(Arc::clone(&self.recovery) as Arc<dyn RecoveryStore>)
            .clock(Arc::clone(&self.clock))
            .config(config)
            .build()
            .expect("valid flow configuration")
    }

    /// A second in-memory lock (the primary, fast layer) and a flow with
    /// default settings over `layers(primary, harness lock)`.
    fn two_layer_flow(
        &self,
        layers: fn(Arc<dyn RefreshLock>, Arc<dyn RefreshLock>) -> LockStrategy,
    ) -> (Arc<Faulty<InMemoryRefreshLock>>, RefreshFlow) {
        let primary = memory_lock(&self.clock);
        let flow = self.flow(
            layers(primary.clone(), self.lock.clone()),
            FlowConfig::default(),
        );
        (primary, flow)
    }

    /// A flow with the harness lock as its only lock and default settings.
    fn single_flow(&self) -> RefreshFlow {
        self.flow(
            LockStrategy::single(self.lock.clone()),
            FlowConfig::default(),
        )
    }

    async fn refresh(&self, flow: &RefreshFlow) -> FlowResult {
        self.refresh_with(flow, &self.executor).await
    }

    async fn refresh_with(
        &self,
        flow: &RefreshFlow,
        executor: &Arc<dyn RefreshExecutor>,
    ) -> FlowResult {
        flow.refresh_if_needed(&self.snapshot, executor, WINDOW)
            .await
    }

    /// Runs `refresh_if_needed` as its own task (a caller that can be
    /// aborted or joined later).
    fn spawn_refresh(&self, flow: &RefreshFlow) -> JoinHandle<FlowResult> {
        let (flow, snapshot, executor) = (
            flow.clone(),
            self.snapshot.clone(),
            Arc::clone(&self.executor),
        );
        tokio::spawn(async move { flow.refresh_if_needed(&snapshot, &executor, WINDOW).await })
    }

    /// Holds the upstream's responses, then runs [`Self::spawn_refresh`]
    /// until its request has reached the upstream.
    async fn spawn_held_refresh(&self, flow: &RefreshFlow) -> JoinHandle<FlowResult> {
        self.upstream.hold_responses();
        let task = self.spawn_refresh(flow);
        self.upstream.wait_for_calls(1).await;
        task
    }

    /// The account as stored now (read past the fault wrapper).
    async fn stored(&self) -> Account {
        self.backends.stored(ID).await
    }

    fn cas_calls(&self) -> u64 {
        self.repo_calls("compare_and_set_credentials")
    }

    /// Another writer stores `credentials` with a fenced write at version 0
    /// (the version the flows start from).
    async fn write_elsewhere(&self, credentials: &Credentials) {
        let written = self
            .repo
            .inner()
            .compare_and_set_credentials(id(), 0, credentials)
            .await
            .expect("write");
        assert!(matches!(written, CasOutcome::Applied(_)), "{written:?}");
    }

    /// Runs `flow` while every write fails: the rotation goes to the
    /// recovery store (`NotPersisted`). The repository is healed afterwards.
    async fn refresh_into_recovery(&self, flow: &RefreshFlow) {
        self.repo
            .faults
            .fail_always("compare_and_set_credentials", StorageErrorKind::Unavailable);
        let error = self.refresh(flow).await.expect_err("the write fails");
        assert!(
            matches!(
                error,
                FlowError::NotPersisted {
                    recovery_saved: true,
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(self.recovery.len(), 1);
        self.repo.faults.heal();
    }
}

/// Plays another worker that redeems the same refresh token and stores its
/// rotation while this worker's request is on its way: the rival's request
/// reaches the upstream first, then ours. `answer` scripts the upstream's
/// reply to our request; without it the upstream's own reuse detection
/// answers `refresh_token_reused`.
struct RacingExecutor {
    rival: RotatingExecutor,
    own: RotatingExecutor,
    upstream: Arc<FakeUpstream>,
    repo: Arc<dyn AccountRepository>,
    answer: Option<ProviderError>,
}

#[async_trait]
impl RefreshExecutor for RacingExecutor {
    fn platform(&self) -> Platform {
        Platform::Anthropic
    }

    async fn refresh(&self, account: &Account) -> Result<Credentials, ProviderError> {
        let rotated = self.rival.refresh(account).await?;
        let written = self
            .repo
            .compare_and_set_credentials(account.id, account.credentials_version, &rotated)
            .await
            .expect("the rival's write reaches the store");
        assert!(
            matches!(written, CasOutcome::Applied(_)),
            "rival write: {written:?}"
        );
        if let Some(answer) = &self.answer {
            self.upstream.fail_next(answer.clone());
        }
        self.own.refresh(account).await
    }
}

/// An executor with a bug: it panics inside `refresh`.
struct PanickingExecutor;

#[async_trait]
impl RefreshExecutor for PanickingExecutor {
    fn platform(&self) -> Platform {
        Platform::Anthropic
    }

    async fn refresh(&self, _account: &Account) -> Result<Credentials, ProviderError> {
        panic!("executor bug");
    }
}

/// Makes the first `get` stall until `gate` is notified (a slow database
/// under the lease). `entered` fires when that read starts.
struct SlowFirstRead {
    armed: AtomicBool,
    entered: Notify,
    gate: Notify,
}

impl SlowFirstRead {
    /// The harness repository behind a slow first read.
    fn over(h: &Harness) -> Arc<HookedRepository<Self>> {
        Arc::new(HookedRepository {
            inner: Arc::clone(&h.repo) as Arc<dyn AccountRepository>,
            hooks: Self {
                armed: AtomicBool::new(true),
                entered: Notify::new(),
                gate: Notify::new(),
            },
        })
    }
}

#[async_trait]
impl RepositoryHooks for SlowFirstRead {
    async fn before_get(&self) {
        if self.armed.swap(false, Ordering::SeqCst) {
            self.entered.notify_one();
            self.gate.notified().await;
        }
    }
}

/// A mocked Anthropic executor using the real due predicate; `refresh`
/// answers with `answer` and counts its calls.
fn mock_executor(
    answer: impl Fn(&Account) -> Result<Credentials, ProviderError> + Send + 'static,
) -> (Arc<dyn RefreshExecutor>, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let mut executor = MockRefreshExecutor::new();
    executor.expect_platform().return_const(Platform::Anthropic);
    executor
        .expect_key()
        .returning(|account| RefreshKey::for_account(&Platform::Anthropic, account.id));
    executor.expect_can_refresh().returning(|account| {
        account.platform == Platform::Anthropic && account.account_type == AccountType::OAuth
    });
    executor.expect_needs_refresh().returning(needs_refresh);
    executor.expect_refresh().returning(move |account| {
        counter.fetch_add(1, Ordering::SeqCst);
        answer(account)
    });
    (Arc::new(executor), calls)
}

// ---------------------------------------------------------------------------
// REFERENCE.md §12, "Refresh operation"
// ---------------------------------------------------------------------------

#[tokio::test]
async fn ref_op_due_lock_acquired() {
    let h = Harness::new(expired_account());
    let flow = h.single_flow();

    let (account, recovered) = refreshed(h.refresh(&flow).await.expect("refresh succeeds"));

    assert!(!recovered);
    assert_eq!(
        account.credentials_version, 1,
        "the version is bumped by the fenced write"
    );
    assert_eq!(access_token(&account), "at-1-1");
    assert_eq!(refresh_token(&account), "rt-1-1");
    assert_eq!(
        account.credentials.get(keys::EXPIRES_AT),
        Some(&json!((T0 + 3600).to_string())),
        "expires_at is written as canonical unix seconds"
    );
    assert_eq!(account.expires_at, Some(t0() + chrono::Duration::hours(1)));
    assert_eq!(
        h.stored().await,
        account,
        "the returned account is the stored one"
    );
    assert_eq!(h.cas_calls(), 1, "exactly one persist");
    assert_eq!(h.lock.faults.calls("try_acquire"), 1);
    assert_eq!(h.lock.faults.calls("release"), 1, "exactly one release");
    assert_eq!(h.upstream.calls(), 1, "exactly one executor call");
    assert_eq!(
        h.upstream.current_refresh_token(id()).as_deref(),
        Some("rt-1-1")
    );
    assert!(h.lease_is_free(&key()).await);
}

#[tokio::test]
async fn ref_op_due_lock_acquired_with_mocks() {
    let snapshot = expired_account();
    let owner = LeaseOwner::random();
    let (gets, writes, releases) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );

    let mut repo = MockAccountRepository::new();
    let (stored, counter) = (snapshot.clone(), Arc::clone(&gets));
    repo.expect_get().times(1).returning(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
        Ok(Some(stored.clone()))
    });
    let (stored, counter) = (snapshot.clone(), Arc::clone(&writes));
    repo.expect_compare_and_set_credentials()
        .withf(|account_id, expected, credentials| {
            *account_id == AccountId(ID)
                && *expected == 0
                && credentials
                    .access_token()
                    .is_some_and(|t| t.expose() == "at-new")
                && credentials
                    .refresh_token()
                    .is_some_and(|t| t.expose() == "rt-new")
        })
        .times(1)
        .returning(move |_, _, credentials| {
            counter.fetch_add(1, Ordering::SeqCst);
            let mut account = stored.clone();
            account.set_credentials(credentials.clone());
            account.credentials_version = 1;
            Ok(CasOutcome::Applied(account))
        });

    let mut lock = MockRefreshLock::new();
    lock.expect_name().return_const("mock");
    let held_by = owner.clone();
    lock.expect_try_acquire()
        .times(1)
        .returning(move |key, ttl| {
            Ok(Some(Lease {
                key: key.clone(),
                owner: held_by.clone(),
                fence: 7,
                ttl,
            }))
        });
    let (held_by, counter) = (owner.clone(), Arc::clone(&releases));
    lock.expect_release()
        .withf(move |lease| lease.owner == held_by && lease.fence == 7 && lease.key == key())
        .times(1)
        .returning(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(true)
        });
    // One owner-checked confirmation right before the upstream call.
    let held_by = owner.clone();
    lock.expect_extend()
        .withf(move |lease, _| lease.owner == held_by && lease.fence == 7)
        .times(1)
        .returning(|_, _| Ok(true));

    let (executor, upstream_calls) = mock_executor(|account| {
        Ok(Credentials::new()
            .with(keys::ACCESS_TOKEN, "at-new")
            .with(keys::REFRESH_TOKEN, "rt-new")
            .with(keys::EXPIRES_AT, (T0 + 3600).to_string())
            .merged_over(&account.credentials))
    });
    let flow = RefreshFlow::builder(Arc::new(repo), LockStrategy::single(Arc::new(lock)))
        .clock(Arc::new(ManualClock::new(t0())))
        .build()
        .expect("valid flow");

    let (account, recovered) = refreshed(
        flow.refresh_if_needed(&snapshot, &executor, WINDOW)
            .await
            .expect("refresh succeeds"),
    );

    assert!(!recovered);
    assert_eq!(account.credentials_version, 1);
    assert_eq!(access_token(&account), "at-new");
    assert_eq!(gets.load(Ordering::SeqCst), 1, "one re-read");
    assert_eq!(writes.load(Ordering::SeqCst), 1, "one persist");
    assert_eq!(
        releases.load(Ordering::SeqCst),
        1,
        "one release of our own lease"
    );
    assert_eq!(
        upstream_calls.load(Ordering::SeqCst),
        1,
        "one executor call"
    );
}

#[tokio::test]
async fn ref_op_lock_held_elsewhere() {
    let h = Harness::new(expired_account());
    let flow = h.single_flow();
    let theirs = h.hold(&key()).await;

    let outcome = h
        .refresh(&flow)
        .await
        .expect("held elsewhere is not an error");

    assert_eq!(outcome, RefreshOutcome::HeldElsewhere);
    assert_eq!(outcome.account(), None);
    assert_eq!(h.upstream.calls(), 0, "no executor call");
    assert_eq!(h.cas_calls(), 0, "no persist");
    assert_eq!(
        h.repo.faults.calls("get"),
        0,
        "no re-read without the lease"
    );
    assert_eq!(
        h.lock.faults.calls("release"),
        0,
        "another holder's lease is not released"
    );
    assert_eq!(h.stored().await, expired_account());
    assert!(
        !h.lease_is_free(&key()).await,
        "the other holder still holds it"
    );
    assert!(h.lock.inner().release(&theirs).await.expect("release"));
}

#[tokio::test]
async fn ref_op_lock_store_error() {
    let h = Harness::new(expired_account());
    h.lock
        .faults
        .fail_always("try_acquire", StorageErrorKind::Unavailable);
    let flow = h.single_flow();

    let error = h.refresh(&flow).await.expect_err("no lock, no refresh");

    let FlowError::LockUnavailable {
        key: failed_key,
        source,
    } = &error
    else {
        panic!("expected LockUnavailable, got {error:?}");
    };
    assert_eq!(failed_key, &key());
    assert_eq!(source.kind(), StorageErrorKind::Unavailable);
    assert_eq!(error.stage(), FlowStage::Lock);
    assert_eq!(h.upstream.calls(), 0, "no executor call");
    assert_eq!(h.cas_calls(), 0, "no persist");
    assert_eq!(h.repo.faults.calls("get"), 0);
    assert_eq!(h.stored().await, expired_account());
}

#[tokio::test]
async fn ref_op_no_lock_store_only_in_explicit_single_process_mode() {
    // Explicit single-process mode: the in-process single flight only.
    let h = Harness::new(expired_account());
    let flow = h.flow(LockStrategy::process_local(), FlowConfig::default());
    let (account, _) = refreshed(h.refresh(&flow).await.expect("process-local refresh"));
    assert_eq!(refresh_token(&account), "rt-1-1");
    assert_eq!(h.stored().await.credentials_version, 1);
    assert_eq!(h.upstream.calls(), 1);
    assert_eq!(
        h.lock.faults.calls("try_acquire"),
        0,
        "no lock store is consulted"
    );

    // Any other strategy whose store fails does not silently degrade to it.
    let h = Harness::new(expired_account());
    h.lock
        .faults
        .fail_always("try_acquire", StorageErrorKind::Unavailable);
    let flow = h.single_flow();
    let error = h
        .refresh(&flow)
        .await
        .expect_err("no silent lock-free mode");
    assert!(
        matches!(error, FlowError::LockUnavailable { .. }),
        "{error:?}"
    );
    assert_eq!(h.upstream.calls(), 0);
}

#[tokio::test]
async fn ref_op_not_due_after_reread() {
    let mut stored = fresh_account();
    stored.credentials.insert(keys::ACCESS_TOKEN, "at-1-7");
    stored.credentials.insert(keys::REFRESH_TOKEN, "rt-1-7");
    stored.credentials_version = 7;
    let h = Harness::new(stored.clone());
    let flow = h.single_flow();
    assert!(
        needs_refresh(&h.snapshot, WINDOW, t0()),
        "the caller's snapshot is due"
    );

    let account = still_fresh(h.refresh(&flow).await.expect("not due is not an error"));

    assert_eq!(account, stored, "the fresh account is returned");
    assert_eq!(h.upstream.calls(), 0, "no executor call");
    assert_eq!(h.cas_calls(), 0, "no persist");
    assert_eq!(h.lock.faults.calls("release"), 1, "the lease is released");
    assert!(h.lease_is_free(&key()).await, "a later acquire succeeds");
    assert_eq!(h.stored().await, stored);
}

#[tokio::test]
async fn ref_op_executor_invalid_grant() {
    let h = Harness::new(expired_account());
    h.upstream.fail_next(grant_error("invalid_grant"));
    let flow = h.single_flow();

    let error = h.refresh(&flow).await.expect_err("invalid_grant surfaces");

    let FlowError::Upstream {
        id: failed,
        source: ProviderError::InvalidGrant { code, .. },
        ..
    } = &error
    else {
        panic!("expected Upstream(InvalidGrant), got {error:?}");
    };
    assert_eq!(*failed, id());
    assert_eq!(code.as_str(), "invalid_grant");
    assert_eq!(error.stage(), FlowStage::Upstream);
    assert!(!error.is_retryable(), "invalid_grant is final");
    assert!(
        error
            .provider_error()
            .is_some_and(ProviderError::is_grant_rejected)
    );
    assert_eq!(h.upstream.calls(), 1);
    assert_eq!(h.cas_calls(), 0, "no persist");
    assert_eq!(h.lock.faults.calls("release"), 1, "exactly one release");
    let stored = h.stored().await;
    assert_eq!(
        stored,
        expired_account(),
        "nothing is written; the flow does not mark the account"
    );
    assert_eq!(h.repo.faults.calls("set_error"), 0);
}

#[tokio::test(start_paused = true)]
async fn ref_op_persist_fails() {
    let h = Harness::new(expired_account());
    h.repo
        .faults
        .fail_always("compare_and_set_credentials", StorageErrorKind::Unavailable);
    let flow = h.single_flow();
    let started = tokio::time::Instant::now();

    let error = h
        .refresh(&flow)
        .await
        .expect_err("the write never succeeds");

    let FlowError::NotPersisted {
        id: failed,
        credentials,
        recovery_saved,
        source,
    } = &error
    else {
        panic!("expected NotPersisted, got {error:?}");
    };
    assert_eq!(*failed, id());
    assert!(*recovery_saved, "the rotation waits in the recovery store");
    assert_eq!(source.kind(), StorageErrorKind::Unavailable);
    assert_eq!(error.stage(), FlowStage::Persist);
    assert_eq!(
        credentials.refresh_token().expect("rotated token").expose(),
        "rt-1-1"
    );
    assert_eq!(
        h.upstream.current_refresh_token(id()).as_deref(),
        Some("rt-1-1"),
        "the error carries the token the upstream accepts now"
    );
    assert_eq!(
        credentials
            .access_token()
            .expect("new access token")
            .expose(),
        "at-1-1"
    );
    assert_eq!(h.upstream.calls(), 1, "exactly one executor call");
    assert_eq!(
        h.cas_calls(),
        u64::from(flow.config().persist_attempts),
        "bounded write retries"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(100 + 200 + 400 + 800),
        "the retries back off"
    );
    assert_eq!(h.recovery.len(), 1);
    assert_eq!(h.lock.faults.calls("release"), 1);
    assert_eq!(h.stored().await, expired_account(), "nothing half-written");
}

#[tokio::test]
async fn ref_op_reread_fails() {
    let h = Harness::new(expired_account());
    h.repo
        .faults
        .fail_next("get", 1, StorageErrorKind::Unavailable);
    let flow = h.single_flow();

    let error = h
        .refresh(&flow)
        .await
        .expect_err("no refresh from the snapshot");

    let FlowError::Reread { id: failed, source } = &error else {
        panic!("expected Reread, got {error:?}");
    };
    assert_eq!(*failed, id());
    assert_eq!(source.kind(), StorageErrorKind::Unavailable);
    assert_eq!(error.stage(), FlowStage::Reread);
    assert!(error.is_retryable());
    assert_eq!(
        h.upstream.calls(),
        0,
        "never refreshes from the caller's snapshot"
    );
    assert_eq!(h.cas_calls(), 0);
    assert_eq!(h.lock.faults.calls("release"), 1);
}

#[tokio::test]
async fn ref_op_reread_missing_row_is_an_error() {
    let h = Harness::build(Vec::new(), Arc::new(ManualClock::new(t0())));
    let flow = h.single_flow();

    let error = h.refresh(&flow).await.expect_err("the row is gone");

    assert!(
        matches!(error, FlowError::AccountNotFound { id: failed } if failed == id()),
        "{error:?}"
    );
    assert_eq!(error.stage(), FlowStage::Reread);
    assert_eq!(h.upstream.calls(), 0);
    assert_eq!(h.cas_calls(), 0);
}

#[tokio::test]
async fn ref_op_reread_no_longer_eligible() {
    let mut stored = expired_account();
    stored.account_type = AccountType::ApiKey;
    let h = Harness::new(stored.clone());
    let flow = h.single_flow();

    let error = h
        .refresh(&flow)
        .await
        .expect_err("the stored account is not refreshable");

    assert!(
        matches!(error, FlowError::NotEligible { id: failed, .. } if failed == id()),
        "{error:?}"
    );
    assert_eq!(h.upstream.calls(), 0);
    assert_eq!(h.cas_calls(), 0);
    assert_eq!(h.stored().await, stored);
}

#[tokio::test]
async fn ref_op_executor_returns_nothing() {
    let h = Harness::new(expired_account());
    let flow = h.single_flow();
    let (executor, calls) = mock_executor(|_| Ok(Credentials::new()));

    let error = h
        .refresh_with(&flow, &executor)
        .await
        .expect_err("empty credentials are an error");

    assert!(
        matches!(error, FlowError::EmptyCredentials { id: failed } if failed == id()),
        "{error:?}"
    );
    assert_eq!(error.stage(), FlowStage::Upstream);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(h.cas_calls(), 0, "nothing persisted");
    assert_eq!(h.stored().await, expired_account());
    assert_eq!(h.lock.faults.calls("release"), 1);
}

#[tokio::test]
async fn ref_op_refreshed_notifies_waiters() {
    let h = Harness::new(expired_account());
    let flow = h
        .flow_builder(LockStrategy::single(h.lock.clone()))
        .notifier(h.cache.clone())
        .build()
        .expect("valid flow");
    let notice = h
        .cache
        .subscribe_refreshed(&key())
        .await
        .expect("subscribe");

    let (account, _) = refreshed(h.refresh(&flow).await.expect("refresh succeeds"));

    assert_eq!(
        notice.now_or_never(),
        Some(Some(account.credentials_version)),
        "waiters elsewhere hear about the new version"
    );
}

// ---------------------------------------------------------------------------
// Invariant 1: one redemption per generation
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn single_flight_hundred_concurrent_callers_share_one_refresh() {
    const CALLERS: usize = 100;
    let h = Harness::new(expired_account());
    let flow = h.single_flow();
    h.upstream.hold_responses();
    let joined = Arc::new(watch::channel(0_usize).0);
    let mut watcher = joined.subscribe();

    let callers: Vec<_> = (0..CALLERS)
        .map(|_| {
            tokio::spawn(refresh_counting_join(
                flow.clone(),
                h.snapshot.clone(),
                Arc::clone(&h.executor),
                Arc::clone(&joined),
            ))
        })
        .collect();
    watcher
        .wait_for(|n| *n == CALLERS)
        .await
        .expect("callers report");
    h.upstream.wait_for_calls(1).await;
    h.upstream.release(1);

    let mut outcomes = Vec::with_capacity(CALLERS);
    for caller in callers {
        outcomes.push(
            caller
                .await
                .expect("caller task")
                .expect("refresh succeeds"),
        );
    }
    let (account, _) = refreshed(outcomes[0].clone());
    assert_eq!(account.credentials_version, 1);
    assert!(
        outcomes.iter().all(|o| *o == outcomes[0]),
        "every caller gets the same outcome"
    );
    assert_eq!(h.upstream.calls(), 1, "exactly one executor call");
    assert_eq!(
        h.lock.faults.calls("try_acquire"),
        1,
        "one lease for the whole flight"
    );
    assert_eq!(h.cas_calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invariant_1_two_flows_sharing_a_lock_redeem_once() {
    const CALLERS_PER_FLOW: usize = 50;
    let h = Harness::new(expired_account());
    // Two "processes": separate single-flight maps over one store and one lock.
    let flows = [h.single_flow(), h.single_flow()];
    h.upstream.hold_responses();
    let joined = Arc::new(watch::channel(0_usize).0);
    let mut watcher = joined.subscribe();

    let mut callers = Vec::new();
    for _ in 0..CALLERS_PER_FLOW {
        for flow in &flows {
            let call = refresh_counting_join(
                flow.clone(),
                h.snapshot.clone(),
                Arc::clone(&h.executor),
                Arc::clone(&joined),
            );
            callers.push(tokio::spawn(call));
        }
    }
    watcher
        .wait_for(|n| *n == 2 * CALLERS_PER_FLOW)
        .await
        .expect("callers report");
    h.upstream.wait_for_calls(1).await;
    h.upstream.release(1);

    let mut refreshed_count = 0;
    for caller in callers {
        match caller.await.expect("caller task").expect("no caller fails") {
            RefreshOutcome::Refreshed { account, .. } => {
                refreshed_count += 1;
                assert_eq!(account.credentials_version, 1);
                assert_eq!(refresh_token(&account), "rt-1-1");
            }
            RefreshOutcome::StillFresh { account } => assert_eq!(account.credentials_version, 1),
            RefreshOutcome::HeldElsewhere => {}
        }
    }
    assert_eq!(
        refreshed_count, CALLERS_PER_FLOW,
        "exactly the winning flow's callers see the refresh"
    );
    assert_eq!(h.upstream.reuses(), 0, "no refresh token presented twice");
    assert_eq!(h.upstream.successes(), 1);
    assert_eq!(h.upstream.calls(), 1);
    let stored = h.stored().await;
    assert_eq!(stored.credentials_version, 1);
    assert_eq!(
        Some(refresh_token(&stored)),
        h.upstream.current_refresh_token(id()),
        "the last issued refresh token is stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invariant_1_two_flows_free_running_rounds_never_reuse_a_token() {
    const ROUNDS: u64 = 5;
    const CALLERS_PER_FLOW: usize = 25;
    let clock = Arc::new(ManualClock::new(t0()));
    let h = Harness::build(
        vec![expired_account()],
        Arc::clone(&clock) as Arc<dyn Clock>,
    );
    let flows = [h.single_flow(), h.single_flow()];

    for round in 1..=ROUNDS {
        let mut callers = Vec::new();
        for _ in 0..CALLERS_PER_FLOW {
            for flow in &flows {
                let (flow, snapshot, executor) =
                    (flow.clone(), h.snapshot.clone(), Arc::clone(&h.executor));
                callers.push(tokio::spawn(async move {
                    flow.refresh_if_needed(&snapshot, &executor, WINDOW).await
                }));
            }
        }
        let mut refreshed_count = 0;
        for caller in callers {
            if let RefreshOutcome::Refreshed { account, .. } =
                caller.await.expect("caller task").expect("no caller fails")
            {
                refreshed_count += 1;
                assert_eq!(account.credentials_version, round);
            }
        }
        assert!(refreshed_count >= 1, "round {round}: someone refreshed");
        assert_eq!(
            h.upstream.successes(),
            round,
            "round {round}: one rotation per generation"
        );
        assert_eq!(h.upstream.reuses(), 0, "round {round}: no reuse");
        let stored = h.stored().await;
        assert_eq!(stored.credentials_version, round);
        assert_eq!(
            Some(refresh_token(&stored)),
            h.upstream.current_refresh_token(id())
        );
        // Let the new token come due for the next round.
        clock.advance(ISSUED_LIFETIME * 2);
    }
    assert_eq!(h.upstream.calls(), ROUNDS);
}

// ---------------------------------------------------------------------------
// Invariant 2: no lost rotation
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn invariant_2_pending_recovery_is_persisted_without_a_second_upstream_call() {
    let h = Harness::new(expired_account());
    let flow = h.single_flow();
    h.refresh_into_recovery(&flow).await;

    let (account, recovered) = refreshed(
        h.refresh(&flow)
            .await
            .expect("the recovery record is persisted"),
    );

    assert!(recovered, "the credentials come from the recovery record");
    assert_eq!(h.upstream.calls(), 1, "no second upstream call");
    assert_eq!(h.upstream.reuses(), 0);
    let stored = h.stored().await;
    assert_eq!(stored, account);
    assert_eq!(stored.credentials_version, 1);
    assert_eq!(
        Some(refresh_token(&stored)),
        h.upstream.current_refresh_token(id()),
        "the stored refresh token is the one the upstream accepts"
    );
    assert_eq!(access_token(&stored), "at-1-1");
    assert!(h.recovery.is_empty(), "the record is consumed");

    // The account is fresh now: nothing more happens upstream.
    let again = still_fresh(h.refresh(&flow).await.expect("fresh"));
    assert_eq!(again.credentials_version, 1);
    assert_eq!(h.upstream.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn invariant_2_recovery_record_survives_a_non_token_write() {
    let h = Harness::new(expired_account());
    let flow = h.single_flow();
    h.refresh_into_recovery(&flow).await;

    // Before the next flow runs, another writer backfills a non-token key
    // (REFERENCE.md §7.3), keeping the old tokens: nobody rotated, so the
    // pending rotation is still the only copy of the valid refresh token.
    let backfilled = expired_account()
        .credentials
        .with("project_id", "proj-backfilled");
    h.write_elsewhere(&backfilled).await;

    let outcome = h.refresh(&flow).await;

    assert_eq!(
        h.upstream.reuses(),
        0,
        "the consumed refresh token was presented again"
    );
    assert_eq!(h.upstream.calls(), 1, "no second upstream call");
    let (account, recovered) = refreshed(outcome.expect("the pending rotation is persisted"));
    assert!(recovered);
    assert_eq!(
        Some(refresh_token(&account)),
        h.upstream.current_refresh_token(id()),
        "the rotated refresh token reached storage"
    );
    assert_eq!(
        account.credentials.get("project_id"),
        Some(&json!("proj-backfilled"))
    );
    assert_eq!(h.stored().await, account);
    assert!(h.recovery.is_empty());
}

#[tokio::test]
async fn invariant_2_unreadable_recovery_store_blocks_the_upstream_call() {
    let h = Harness::new(expired_account());
    let recovery = Arc::new(Faulty::new(Arc::new(InMemoryRecoveryStore::new())));
    recovery
        .faults
        .fail_always("load", StorageErrorKind::Unavailable);
    let flow = h
        .flow_builder(LockStrategy::single(h.lock.clone()))
        .recovery(Arc::clone(&recovery) as Arc<dyn RecoveryStore>)
        .build()
        .expect("valid flow");

    let error = h
        .refresh(&flow)
        .await
        .expect_err("a pending rotation may be unreadable");

    assert!(
        matches!(error, FlowError::Recovery { id: failed, .. } if failed == id()),
        "{error:?}"
    );
    assert_eq!(error.stage(), FlowStage::Recovery);
    assert_eq!(
        h.upstream.calls(),
        0,
        "no upstream call while a pending record may exist"
    );
    assert_eq!(h.cas_calls(), 0);
    assert_eq!(h.lock.faults.calls("release"), 1);
}

// ---------------------------------------------------------------------------
// Invariant 3: fenced writes
// ---------------------------------------------------------------------------

#[tokio::test]
async fn invariant_3_fenced_write_rejects_older_writer() {
    let h = Harness::new(expired_account());
    let flow = h.single_flow();
    let task = h.spawn_held_refresh(&flow).await;

    // Meanwhile another writer (say, one whose lease lapsed earlier) stores
    // its own rotation at the version this flow started from.
    let theirs = expired_account()
        .credentials
        .with(keys::ACCESS_TOKEN, "at-other")
        .with(keys::REFRESH_TOKEN, "rt-other")
        .with(keys::EXPIRES_AT, (T0 + 7200).to_string());
    h.write_elsewhere(&theirs).await;
    h.upstream.release(1);

    let account = still_fresh(
        task.await
            .expect("flow task")
            .expect("superseded is not an error"),
    );

    assert_eq!(
        refresh_token(&account),
        "rt-other",
        "the newer rotation stands"
    );
    assert_eq!(access_token(&account), "at-other");
    assert_eq!(account.credentials_version, 1);
    let stored = h.stored().await;
    assert_eq!(
        stored, account,
        "the flow did not overwrite the newer rotation"
    );
    assert_eq!(
        h.cas_calls(),
        1,
        "the flow's only write was rejected by the fence"
    );
    assert_eq!(h.upstream.calls(), 1);
}

#[tokio::test]
async fn invariant_3_non_token_conflict_is_merged_and_persisted() {
    let h = Harness::new(expired_account());
    let flow = h.single_flow();
    let task = h.spawn_held_refresh(&flow).await;

    // Another writer backfills a key, keeping the same tokens.
    let backfilled = expired_account()
        .credentials
        .with("project_id", "proj-backfilled");
    h.write_elsewhere(&backfilled).await;
    h.upstream.release(1);

    let (account, _) = refreshed(task.await.expect("flow task").expect("refresh succeeds"));

    assert_eq!(
        account.credentials_version, 2,
        "merged on top of the other write"
    );
    assert_eq!(refresh_token(&account), "rt-1-1", "our rotation is stored");
    assert_eq!(access_token(&account), "at-1-1");
    assert_eq!(
        account.credentials.get("project_id"),
        Some(&json!("proj-backfilled"))
    );
    assert_eq!(h.stored().await, account);
    assert_eq!(h.cas_calls(), 2, "one rejected write, one merged write");
}

#[tokio::test]
async fn invariant_3_non_token_conflict_keeps_the_other_writers_value_of_an_existing_key() {
    let mut stored = expired_account();
    stored.credentials.insert("project_id", "proj-old");
    let h = Harness::new(stored.clone());
    let flow = h.single_flow();
    let task = h.spawn_held_refresh(&flow).await;

    // Another writer changes an existing non-token key, keeping the tokens.
    let updated = stored.credentials.clone().with("project_id", "proj-new");
    h.write_elsewhere(&updated).await;
    h.upstream.release(1);

    let (account, _) = refreshed(task.await.expect("flow task").expect("refresh succeeds"));

    assert_eq!(refresh_token(&account), "rt-1-1", "our rotation is stored");
    assert_eq!(
        account.credentials.get("project_id"),
        Some(&json!("proj-new")),
        "the re-merge must not revert the other writer's change with the value the executor copied from the old snapshot"
    );
    assert_eq!(h.stored().await, account);
}

#[tokio::test]
async fn invariant_3_credential_write_leaves_status_extra_and_scheduling_alone() {
    let mut stored = expired_account();
    stored
        .extra
        .insert("organization_uuid".into(), json!("org-1"));
    stored.temp_unschedulable_until = Some(t0() + chrono::Duration::minutes(30));
    stored.temp_unschedulable_reason = Some("overloaded".into());
    stored.proxy_id = Some(9);
    stored.priority = 5;
    let h = Harness::new(stored.clone());
    let flow = h.single_flow();
    let task = h.spawn_held_refresh(&flow).await;

    // Someone else owns the status columns and writes them meanwhile.
    h.repo
        .inner()
        .set_error(id(), "operator note")
        .await
        .expect("set_error");
    h.upstream.release(1);

    let (account, _) = refreshed(task.await.expect("flow task").expect("refresh succeeds"));

    let now = h.stored().await;
    assert_eq!(now, account);
    assert_eq!(refresh_token(&now), "rt-1-1");
    assert_eq!(
        now.status,
        AccountStatus::Error,
        "status is not the flow's to write"
    );
    assert_eq!(now.error_message.as_deref(), Some("operator note"));
    assert_eq!(now.extra, stored.extra);
    assert_eq!(
        now.temp_unschedulable_until,
        stored.temp_unschedulable_until
    );
    assert_eq!(
        now.temp_unschedulable_reason,
        stored.temp_unschedulable_reason
    );
    assert_eq!(now.proxy_id, Some(9));
    assert_eq!(now.priority, 5);
    assert_eq!(h.repo.faults.calls("clear_error"), 0);
    assert_eq!(h.repo.faults.calls("clear_temp_unschedulable"), 0);
}

// ---------------------------------------------------------------------------
// Invariant 4: owner-checked leases, extended while the refresh runs
// ---------------------------------------------------------------------------

/// Short lease settings that pass validation: 2 s upstream + 2 × 0.2 s
/// storage + 0.5 s persist budget < 3 s lease; the keeper extends every
/// second.
fn short_lease_config() -> FlowConfig {
    FlowConfig {
        lease_ttl: Duration::from_secs(3),
        upstream_timeout: Duration::from_secs(2),
        persist_attempts: 1,
        persist_attempt_timeout: Duration::from_millis(500),
        persist_backoff: Duration::from_millis(100),
        release_timeout: Duration::from_millis(500),
        storage_timeout: Duration::from_millis(200),
    }
}

/// Lets tokio time pass in steps, giving woken tasks a chance to run after
/// each step, and checks after each step that the lease is still held.
async fn advance_checking_lease_held(lock: &dyn RefreshLock, total: Duration, step: Duration) {
    let mut elapsed = Duration::ZERO;
    while elapsed < total {
        tokio::time::advance(step).await;
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
        elapsed += step;
        assert!(
            lock.try_acquire(&key(), PROBE_TTL)
                .await
                .expect("probe")
                .is_none(),
            "a second party took the lease after {elapsed:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn invariant_4_lease_extended_during_slow_refresh() {
    let h = Harness::build(vec![expired_account()], tokio_clock());
    let config = short_lease_config();
    config.validate().expect("valid short-lease configuration");
    let flow = h.flow(LockStrategy::single(h.lock.clone()), config);

    let task = h.spawn_held_refresh(&flow).await;
    // The upstream answers just before the upstream timeout.
    advance_checking_lease_held(
        h.lock.inner().as_ref(),
        Duration::from_millis(1750),
        Duration::from_millis(250),
    )
    .await;
    assert!(
        h.lock.faults.calls("extend") >= 1,
        "the lease was extended while the upstream was slow"
    );
    h.upstream.release(1);

    let (account, _) = refreshed(task.await.expect("flow task").expect("refresh succeeds"));
    assert_eq!(refresh_token(&account), "rt-1-1");
    assert_eq!(h.lock.faults.calls("release"), 1);
    assert!(h.lease_is_free(&key()).await);
}

#[tokio::test(start_paused = true)]
async fn invariant_4_lease_outlives_several_ttls_while_a_slow_refresh_holds_it() {
    let h = Harness::build(vec![expired_account()], tokio_clock());
    let config = short_lease_config();
    let flow = h.flow(LockStrategy::single(h.lock.clone()), config.clone());

    let task = h.spawn_held_refresh(&flow).await;
    // The caller gives up at the upstream timeout (2 s), but the late call
    // keeps the lease through its grace period: more than one lease TTL.
    let stall = config.upstream_timeout + config.upstream_timeout * 3 / 4;
    assert!(stall > config.lease_ttl);
    advance_checking_lease_held(h.lock.inner().as_ref(), stall, Duration::from_millis(500)).await;
    assert!(
        h.lock.faults.calls("extend") >= 3,
        "extended about every ttl/3, got {}",
        h.lock.faults.calls("extend")
    );
    let err = task
        .await
        .expect("flow task")
        .expect_err("the caller got an ambiguous outcome");
    assert!(
        matches!(err.provider_error(), Some(ProviderError::Ambiguous { .. })),
        "{err:?}"
    );

    h.upstream.release(1);
    settle(async || h.lease_is_free(&key()).await).await;
    assert!(
        h.lease_is_free(&key()).await,
        "released after the late answer"
    );
    let stored = h.stored().await;
    assert_eq!(
        stored.credentials_version, 1,
        "the late answer was persisted under the lease"
    );
    assert_eq!(h.upstream.calls(), 1);
    assert_eq!(h.upstream.reuses(), 0);
}

#[tokio::test(start_paused = true)]
async fn invariant_4_hung_storage_fails_the_flow_and_frees_the_lease() {
    let h = Harness::build(vec![expired_account()], tokio_clock());
    let config = short_lease_config();
    let slow = SlowFirstRead::over(&h);
    let flow = h.flow_over(
        Arc::clone(&slow) as Arc<dyn AccountRepository>,
        LockStrategy::single(h.lock.clone()),
        config,
    );

    // The re-read under the lease never answers: the flow must not hold the
    // lease (and the in-process flight) forever.
    let err = h.refresh(&flow).await.expect_err("re-read timed out");
    assert!(
        matches!(&err, FlowError::Reread { source, .. } if source.kind() == StorageErrorKind::Timeout),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert!(h.lease_is_free(&key()).await);
    assert_eq!(h.upstream.calls(), 0);
    slow.hooks.gate.notify_one();
}

#[tokio::test]
async fn invariant_4_lease_shorter_than_upstream_timeout_plus_persist_is_rejected() {
    let h = Harness::new(expired_account());
    let short = FlowConfig {
        lease_ttl: Duration::from_secs(10),
        upstream_timeout: Duration::from_secs(10),
        ..FlowConfig::default()
    };
    let required = short.upstream_timeout + short.storage_timeout * 2 + short.persist_budget();

    let error = h
        .flow_builder(LockStrategy::single(h.lock.clone()))
        .config(short.clone())
        .build()
        .expect_err("a lease that can lapse mid-refresh is rejected");
    assert!(
        matches!(error, ConfigError::LeaseTooShort { lease_ttl, required: r } if lease_ttl == short.lease_ttl && r == required),
        "{error:?}"
    );

    // Exactly the worst case is still too short; just above it is accepted.
    let boundary = FlowConfig {
        lease_ttl: required,
        ..short.clone()
    };
    assert!(matches!(
        boundary.validate(),
        Err(ConfigError::LeaseTooShort { .. })
    ));
    let enough = FlowConfig {
        lease_ttl: required + Duration::from_millis(1),
        ..short
    };
    h.flow_builder(LockStrategy::single(h.lock.clone()))
        .config(enough)
        .build()
        .expect("a long enough lease is accepted");
}

// ---------------------------------------------------------------------------
// Invariant 5: layered locking, never lock-free by accident
// ---------------------------------------------------------------------------

#[tokio::test]
async fn invariant_5_layered_falls_back_to_secondary_when_primary_unavailable() {
    let h = Harness::new(expired_account());
    let (primary, flow) = h.two_layer_flow(LockStrategy::layered);
    primary
        .faults
        .fail_always("try_acquire", StorageErrorKind::Unavailable);

    let (account, _) = refreshed(h.refresh(&flow).await.expect("the secondary serializes"));

    assert_eq!(refresh_token(&account), "rt-1-1");
    assert_eq!(primary.faults.calls("try_acquire"), 1);
    assert_eq!(primary.faults.calls("release"), 0);
    assert_eq!(
        h.lock.faults.calls("try_acquire"),
        1,
        "the secondary lease was taken"
    );
    assert_eq!(h.lock.faults.calls("release"), 1);
    assert_eq!(h.upstream.calls(), 1);
}

#[tokio::test]
async fn invariant_5_layered_primary_held_elsewhere_does_not_fall_back() {
    let h = Harness::new(expired_account());
    let (primary, flow) = h.two_layer_flow(LockStrategy::layered);
    let _theirs = hold_lease(primary.inner().as_ref(), &key()).await;

    let outcome = h.refresh(&flow).await.expect("held elsewhere");

    assert_eq!(outcome, RefreshOutcome::HeldElsewhere);
    assert_eq!(
        h.lock.faults.calls("try_acquire"),
        0,
        "a held primary is not an outage"
    );
    assert_eq!(h.upstream.calls(), 0);
}

#[tokio::test]
async fn invariant_5_every_lock_unavailable_without_opt_in_is_lock_unavailable() {
    let h = Harness::new(expired_account());
    let (primary, flow) = h.two_layer_flow(LockStrategy::layered);
    primary
        .faults
        .fail_always("try_acquire", StorageErrorKind::Unavailable);
    h.lock
        .faults
        .fail_always("try_acquire", StorageErrorKind::Timeout);

    let error = h
        .refresh(&flow)
        .await
        .expect_err("never lock-free by default");

    let FlowError::LockUnavailable { source, .. } = &error else {
        panic!("expected LockUnavailable, got {error:?}");
    };
    assert_eq!(
        source.kind(),
        StorageErrorKind::Timeout,
        "the last layer's error"
    );
    assert_eq!(primary.faults.calls("try_acquire"), 1);
    assert_eq!(h.lock.faults.calls("try_acquire"), 1);
    assert_eq!(h.upstream.calls(), 0);
    assert_eq!(h.cas_calls(), 0);
}

#[tokio::test]
async fn invariant_5_allow_lock_free_proceeds_when_every_lock_fails() {
    let h = Harness::new(expired_account());
    let (primary, flow) = h.two_layer_flow(|a, b| LockStrategy::layered(a, b).allow_lock_free());
    primary
        .faults
        .fail_always("try_acquire", StorageErrorKind::Unavailable);
    h.lock
        .faults
        .fail_always("try_acquire", StorageErrorKind::Unavailable);

    let (account, _) = refreshed(h.refresh(&flow).await.expect("explicit opt-in proceeds"));

    assert_eq!(refresh_token(&account), "rt-1-1");
    assert_eq!(h.upstream.calls(), 1);
    assert_eq!(
        primary.faults.calls("release") + h.lock.faults.calls("release"),
        0,
        "nothing was held"
    );
}

#[tokio::test]
async fn invariant_5_stacked_holds_both_leases_during_refresh() {
    let h = Harness::new(expired_account());
    let (primary, flow) = h.two_layer_flow(LockStrategy::stacked);

    let task = h.spawn_held_refresh(&flow).await;
    assert!(
        !lease_is_free(primary.inner().as_ref(), &key()).await,
        "primary held during the refresh"
    );
    assert!(
        !h.lease_is_free(&key()).await,
        "secondary held during the refresh"
    );
    h.upstream.release(1);

    let (account, _) = refreshed(task.await.expect("flow task").expect("refresh succeeds"));
    assert_eq!(refresh_token(&account), "rt-1-1");
    assert_eq!(primary.faults.calls("release"), 1);
    assert_eq!(h.lock.faults.calls("release"), 1);
    assert!(lease_is_free(primary.inner().as_ref(), &key()).await);
    assert!(h.lease_is_free(&key()).await);
}

#[tokio::test]
async fn invariant_5_stacked_reports_held_elsewhere_when_secondary_is_held() {
    let h = Harness::new(expired_account());
    let (primary, flow) = h.two_layer_flow(LockStrategy::stacked);
    let theirs = h.hold(&key()).await;

    let outcome = h.refresh(&flow).await.expect("held elsewhere");

    assert_eq!(outcome, RefreshOutcome::HeldElsewhere);
    assert_eq!(primary.faults.calls("try_acquire"), 1);
    assert_eq!(
        primary.faults.calls("release"),
        1,
        "the primary lease is given back"
    );
    assert!(lease_is_free(primary.inner().as_ref(), &key()).await);
    assert!(
        !h.lease_is_free(&key()).await,
        "the other holder keeps the secondary"
    );
    assert!(h.lock.inner().release(&theirs).await.expect("release"));
    assert_eq!(h.upstream.calls(), 0);
    assert_eq!(h.cas_calls(), 0);
}

// ---------------------------------------------------------------------------
// Invariant 6: race recovery
// ---------------------------------------------------------------------------

fn racing_executor(h: &Harness, answer: Option<ProviderError>) -> Arc<dyn RefreshExecutor> {
    Arc::new(RacingExecutor {
        rival: h.rotating(Platform::Anthropic),
        own: h.rotating(Platform::Anthropic),
        upstream: Arc::clone(&h.upstream),
        repo: Arc::clone(h.repo.inner()) as Arc<dyn AccountRepository>,
        answer,
    })
}

async fn assert_race_recovered(h: &Harness, outcome: FlowResult) {
    let account = still_fresh(outcome.expect("another worker's win is success"));
    assert_eq!(
        refresh_token(&account),
        "rt-1-1",
        "the stored (rival's) credentials"
    );
    assert_eq!(account.credentials_version, 1);
    assert_eq!(account.status, AccountStatus::Active, "not marked as error");
    assert_eq!(account.error_message, None);
    let stored = h.stored().await;
    assert_eq!(stored, account);
    assert_eq!(
        Some(refresh_token(&stored)),
        h.upstream.current_refresh_token(id())
    );
    assert_eq!(h.cas_calls(), 0, "this flow wrote nothing");
    assert_eq!(h.repo.faults.calls("set_error"), 0);
    assert_eq!(h.upstream.successes(), 1);
}

#[tokio::test]
async fn invariant_6_refresh_token_reused_after_another_worker_rotated_is_success() {
    let h = Harness::new(expired_account());
    let flow = h.single_flow();
    let executor = racing_executor(&h, None);

    let outcome = h.refresh_with(&flow, &executor).await;

    assert_eq!(
        h.upstream.reuses(),
        1,
        "our request presented the consumed token"
    );
    assert_race_recovered(&h, outcome).await;
}

#[tokio::test]
async fn invariant_6_invalid_grant_after_another_worker_rotated_is_success() {
    let h = Harness::new(expired_account());
    let flow = h.single_flow();
    let executor = racing_executor(&h, Some(grant_error("invalid_grant")));

    let outcome = h.refresh_with(&flow, &executor).await;

    assert_eq!(h.upstream.calls(), 2);
    assert_race_recovered(&h, outcome).await;
}

#[tokio::test]
async fn invariant_6_unchanged_refresh_token_keeps_the_error() {
    for code in ["invalid_grant", "refresh_token_reused"] {
        let h = Harness::new(expired_account());
        h.upstream.fail_next(grant_error(code));
        let flow = h.single_flow();

        let error = h
            .refresh(&flow)
            .await
            .expect_err("nobody else rotated: the error stands");

        assert!(
            matches!(&error, FlowError::Upstream { source: ProviderError::InvalidGrant { code: c, .. }, .. } if c.as_str() == code),
            "{code}: {error:?}"
        );
        assert!(!error.is_retryable());
        assert_eq!(
            h.stored().await,
            expired_account(),
            "{code}: nothing written"
        );
        assert_eq!(h.cas_calls(), 0);
    }
}

// ---------------------------------------------------------------------------
// Invariant 7: cancellation-safe
// ---------------------------------------------------------------------------

#[tokio::test]
async fn invariant_7_cancelled_caller_does_not_abort_refresh() {
    let h = Harness::new(expired_account());
    let flow = h.single_flow();
    h.upstream.hold_responses();

    let caller = h.spawn_refresh(&flow);
    h.upstream.wait_for_calls(1).await;
    caller.abort();
    let joined = caller.await.expect_err("the caller was aborted");
    assert!(joined.is_cancelled());
    h.upstream.release(1);

    // Join the flight that is still running detached: same process, same key.
    let (account, recovered) = refreshed(
        h.refresh(&flow)
            .await
            .expect("the detached refresh finishes"),
    );

    assert!(!recovered);
    assert_eq!(h.upstream.calls(), 1, "exactly one upstream call");
    assert_eq!(refresh_token(&account), "rt-1-1");
    assert_eq!(h.stored().await, account, "the rotation is persisted");
    assert_eq!(h.lock.faults.calls("release"), 1, "the lease is released");
    assert!(h.lease_is_free(&key()).await);
}

#[tokio::test(start_paused = true)]
async fn invariant_7_timed_out_caller_does_not_abort_refresh() {
    let h = Harness::new(expired_account());
    let flow = h.single_flow();
    h.upstream.hold_responses();

    let gave_up = tokio::time::timeout(Duration::from_secs(1), h.refresh(&flow)).await;
    assert!(
        gave_up.is_err(),
        "the caller timed out while the upstream was busy"
    );
    assert_eq!(h.upstream.calls(), 1, "the request had been sent");
    h.upstream.release(1);

    let (account, _) = refreshed(
        h.refresh(&flow)
            .await
            .expect("the detached refresh finishes"),
    );
    assert_eq!(h.upstream.calls(), 1);
    assert_eq!(h.stored().await, account);
    assert_eq!(
        Some(refresh_token(&account)),
        h.upstream.current_refresh_token(id())
    );
    assert_eq!(h.lock.faults.calls("release"), 1);
}

#[tokio::test(start_paused = true)]
async fn invariant_7_panicking_executor_is_ambiguous_and_lease_released() {
    let h = Harness::build(vec![expired_account()], tokio_clock());
    let flow = h.single_flow();
    let panicking: Arc<dyn RefreshExecutor> = Arc::new(PanickingExecutor);

    let error = h
        .refresh_with(&flow, &panicking)
        .await
        .expect_err("a panic is an error");

    // The executor may have sent the request before panicking: the outcome
    // is ambiguous, and a pending-call marker blocks a second presentation.
    assert!(
        matches!(
            error.provider_error(),
            Some(ProviderError::Ambiguous { .. })
        ),
        "{error:?}"
    );
    assert_eq!(error.stage(), FlowStage::Upstream);
    let released = h.lock.faults.wait_for_calls("release", 1);
    tokio::time::timeout(Duration::from_secs(10), released)
        .await
        .expect("the lease is released after the panic");
    assert!(h.lease_is_free(&key()).await);
    assert_eq!(h.cas_calls(), 0);
    let blocked = h.refresh(&flow).await.expect("held");
    assert_eq!(
        blocked,
        RefreshOutcome::HeldElsewhere,
        "the marker blocks the token"
    );
    assert_eq!(h.upstream.calls(), 0);

    // Once the marker has expired (ten upstream timeouts), refreshing resumes.
    tokio::time::advance(FlowConfig::default().upstream_timeout * 10 + Duration::from_secs(1))
        .await;
    let (account, _) = refreshed(h.refresh(&flow).await.expect("next refresh works"));
    assert_eq!(account.credentials_version, 1);
}

// ---------------------------------------------------------------------------
// Invariant 10: bad input gets a typed error, nothing is corrupted
// ---------------------------------------------------------------------------

fn account_with_millisecond_expiry() -> Account {
    let credentials = Credentials::new()
        .with(keys::ACCESS_TOKEN, "at-1-0")
        .with(keys::REFRESH_TOKEN, "rt-1-0")
        .with(keys::EXPIRES_AT, (T0 + 3600) * 1000)
        .with("organization_uuid", "org-1")
        .with("project_id", "proj-1");
    Account::oauth(ID, Platform::Anthropic, credentials)
}

#[tokio::test]
async fn invariant_10_unreadable_expiry_is_healed() {
    let stored = account_with_millisecond_expiry();
    assert!(matches!(
        stored.credentials.expires_at(),
        Err(CredentialsError::MillisecondTimestamp { .. })
    ));
    let mut h = Harness::new(stored.clone());
    h.snapshot = stored;
    let flow = h.single_flow();

    let (account, _) = refreshed(h.refresh(&flow).await.expect("an unreadable expiry is due"));

    assert_eq!(h.upstream.calls(), 1);
    assert_eq!(
        account.credentials.get(keys::EXPIRES_AT),
        Some(&json!((T0 + 3600).to_string())),
        "the canonical unix-seconds string replaces the milliseconds"
    );
    assert_eq!(account.expires_at, Some(t0() + chrono::Duration::hours(1)));
    assert_eq!(
        account.credentials.get("organization_uuid"),
        Some(&json!("org-1"))
    );
    assert_eq!(
        account.credentials.get("project_id"),
        Some(&json!("proj-1"))
    );
    assert_eq!(h.stored().await, account);
}

#[tokio::test]
async fn invariant_10_unreadable_expiry_kept_by_the_executor_is_not_stored() {
    let stored = account_with_millisecond_expiry();
    let mut h = Harness::new(stored.clone());
    h.snapshot = stored;
    let flow = h.single_flow();
    // An executor whose grant has no expiry: the merge carries the old,
    // unreadable value forward.
    let (executor, calls) = mock_executor(|account| {
        Ok(Credentials::new()
            .with(keys::ACCESS_TOKEN, "at-1-1")
            .with(keys::REFRESH_TOKEN, "rt-1-1")
            .merged_over(&account.credentials))
    });

    let (account, _) = refreshed(
        h.refresh_with(&flow, &executor)
            .await
            .expect("refresh succeeds"),
    );

    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(refresh_token(&account), "rt-1-1", "the rotation is stored");
    assert_eq!(
        account.credentials.get(keys::EXPIRES_AT),
        None,
        "no millisecond value is written back"
    );
    assert!(
        account.credentials.expires_at().is_ok(),
        "the stored credentials parse"
    );
    assert_eq!(
        account.credentials.get("organization_uuid"),
        Some(&json!("org-1"))
    );
    assert_eq!(h.stored().await, account);
}

#[tokio::test]
async fn invariant_5_stacked_never_proceeds_on_the_fast_layer_alone() {
    // A peer whose fast layer failed may hold only the durable lease; a flow
    // holding only the fast lease must not refresh beside it.
    let h = Harness::new(expired_account());
    let (primary, flow) = h.two_layer_flow(LockStrategy::stacked);
    h.lock
        .faults
        .fail_always("try_acquire", StorageErrorKind::Unavailable);

    let err = h
        .refresh(&flow)
        .await
        .expect_err("durable layer unavailable");

    assert!(matches!(err, FlowError::LockUnavailable { .. }), "{err:?}");
    assert_eq!(
        primary.faults.calls("release"),
        1,
        "the fast lease is given back"
    );
    assert!(lease_is_free(primary.inner().as_ref(), &key()).await);
    assert_eq!(h.upstream.calls(), 0);
    assert_eq!(h.cas_calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn invariant_1_late_upstream_answer_keeps_the_lease_and_is_persisted() {
    let h = Harness::new(expired_account());
    let flow = h.flow(
        LockStrategy::single(h.lock.clone()),
        short_upstream_timeout(),
    );
    h.upstream.hold_responses();

    let err = h.refresh(&flow).await.expect_err("no answer in time");
    assert!(
        matches!(err.provider_error(), Some(ProviderError::Ambiguous { .. })),
        "{err:?}"
    );
    assert_eq!(h.upstream.calls(), 1);

    // The upstream rotated when the request arrived; while its answer is
    // outstanding nobody may present the old token again.
    let again = h.refresh(&flow).await.expect("held");
    assert_eq!(
        again,
        RefreshOutcome::HeldElsewhere,
        "the lease stays with the late call"
    );
    assert_eq!(h.upstream.calls(), 1);

    h.upstream.release(1);
    settle(async || h.stored().await.credentials_version == 1).await;
    let stored = h.stored().await;
    assert_eq!(
        stored.credentials_version, 1,
        "the late answer is persisted"
    );
    assert_eq!(
        refresh_token_of(&stored),
        h.upstream.current_refresh_token(id())
    );
    assert!(
        h.lease_is_free(&key()).await,
        "released after the late answer"
    );
    assert_eq!(h.upstream.reuses(), 0);
    assert!(h.recovery.is_empty());
}

#[tokio::test(start_paused = true)]
async fn invariant_2_answer_after_the_grace_is_persisted_without_reuse() {
    let h = Harness::new(expired_account());
    let flow = h.flow(
        LockStrategy::single(h.lock.clone()),
        short_upstream_timeout(),
    );
    h.upstream.hold_responses();
    h.refresh(&flow).await.expect_err("no answer in time");

    // Past the grace (another upstream_timeout) the lease is given up.
    tokio::time::advance(Duration::from_secs(2)).await;
    settle(async || h.lease_is_free(&key()).await).await;
    assert!(h.lease_is_free(&key()).await);

    // Meanwhile a marker keeps everyone from presenting the old token.
    let pending = h.recovery.load(id()).await.expect("load").expect("marker");
    assert!(pending.pending);
    let blocked = h.refresh(&flow).await.expect("held");
    assert_eq!(
        blocked,
        RefreshOutcome::HeldElsewhere,
        "the outstanding call blocks a second redemption"
    );
    assert_eq!(h.upstream.calls(), 1);

    // The very late answer is persisted with the fenced write (no lease is
    // needed for that) and the marker is cleared.
    h.upstream.release(1);
    let persisted = async || h.stored().await.credentials_version == 1;
    settle(persisted).await;
    assert!(persisted().await, "the very late answer is persisted");
    settle(async || h.recovery.is_empty()).await;
    assert!(h.recovery.is_empty(), "the marker is cleared");
    let stored = h.stored().await;
    assert_eq!(
        refresh_token_of(&stored),
        h.upstream.current_refresh_token(id())
    );

    h.upstream.open();
    let outcome = h.refresh(&flow).await.expect("fresh");
    assert!(
        matches!(outcome, RefreshOutcome::StillFresh { .. }),
        "{outcome:?}"
    );
    assert_eq!(
        h.upstream.calls(),
        1,
        "the consumed token is never presented again"
    );
    assert_eq!(h.upstream.reuses(), 0);
}

#[tokio::test(start_paused = true)]
async fn invariant_1_a_late_failure_clears_the_pending_marker() {
    let h = Harness::new(expired_account());
    let flow = h.flow(
        LockStrategy::single(h.lock.clone()),
        short_upstream_timeout(),
    );
    h.upstream.hold_responses();
    h.upstream.fail_next(ProviderError::Transient {
        status: Some(503),
        reason: "unavailable".into(),
    });
    h.refresh(&flow).await.expect_err("no answer in time");
    assert!(
        !h.recovery.is_empty(),
        "a marker records the outstanding call"
    );

    // The late answer is a definite failure: nothing was rotated.
    h.upstream.release(1);
    settle(async || h.recovery.is_empty()).await;
    assert!(h.recovery.is_empty(), "the marker is cleared");

    h.upstream.open();
    let outcome = h.refresh(&flow).await.expect("refreshed");
    assert!(
        matches!(
            outcome,
            RefreshOutcome::Refreshed {
                recovered: false,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(h.upstream.calls(), 2);
    assert_eq!(h.upstream.reuses(), 0);
}

#[tokio::test(start_paused = true)]
async fn invariant_4_lease_lost_before_the_upstream_call_sends_nothing() {
    let h = Harness::build(vec![expired_account()], tokio_clock());
    // Keeper period ttl/3 = 20 s; the re-read stalls 22 s (within the 25 s
    // storage timeout), long enough for the keeper to learn the lease is gone.
    let config = FlowConfig {
        lease_ttl: Duration::from_secs(60),
        upstream_timeout: Duration::from_secs(5),
        storage_timeout: Duration::from_secs(25),
        persist_attempts: 1,
        persist_attempt_timeout: Duration::from_millis(500),
        ..FlowConfig::default()
    };
    let mut lock = MockRefreshLock::new();
    lock.expect_name().return_const("mock");
    lock.expect_try_acquire().times(1).returning(|key, ttl| {
        Ok(Some(Lease {
            key: key.clone(),
            owner: LeaseOwner::random(),
            fence: 1,
            ttl,
        }))
    });
    lock.expect_extend().returning(|_, _| Ok(false));
    lock.expect_release().returning(|_| Ok(false));
    let slow = SlowFirstRead::over(&h);
    let flow = h.flow_over(
        Arc::clone(&slow) as Arc<dyn AccountRepository>,
        LockStrategy::single(Arc::new(lock)),
        config,
    );

    let task = h.spawn_refresh(&flow);
    slow.hooks.entered.notified().await;
    tokio::time::advance(Duration::from_secs(22)).await;
    slow.hooks.gate.notify_one();

    let err = task.await.expect("flow task").expect_err("lease lost");
    assert!(matches!(err, FlowError::LeaseLost { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(h.upstream.calls(), 0, "nothing is sent without a lease");
    assert_eq!(h.cas_calls(), 0);
}
