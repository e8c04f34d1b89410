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
    advance_until, answer_refresh_token, hold_lease, lease_is_free, memory_lock, refresh_token,
    settle, short_upstream_timeout, t0, tokio_clock,
};
use futures_util::FutureExt;
use serde_json::json;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use refresh_core::domain::keys;
use refresh_core::error::OAuthErrorCode;
use refresh_core::memory::InMemoryRefreshLock;
use refresh_core::policy::needs_refresh;
use refresh_core::ports::{
    CasExpectation, CasOutcome, Claim, ClaimAcquire, ClaimId, ClaimState, Lease, LeaseOwner,
    ManualClock, MockAccountRepository, MockClaimStore, MockRefreshExecutor, MockRefreshLock,
    RefreshContext,
};
use refresh_core::testing::conformance::{T0, account_expiring};
use refresh_core::testing::{FakeUpstream, Faulty, RotatingExecutor};
use refresh_core::{
    Account, AccountId, AccountRepository, AccountStatus, AccountType, ClaimStore, Clock,
    ConfigError, Credentials, CredentialsError, Fingerprint, FlowConfig, FlowError, FlowStage,
    LockStrategy, Platform, ProviderError, RefreshExecutor, RefreshFlow, RefreshKey, RefreshLock,
    RefreshOutcome, Secret, StorageErrorKind, TokenCache,
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
/// generation-claim store), an Anthropic executor over them, and the
/// caller's snapshot of the account.
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

    fn flow_over(
        &self,
        repo: Arc<dyn AccountRepository>,
        locks: LockStrategy,
        config: FlowConfig,
    ) -> RefreshFlow {
        RefreshFlow::builder(repo, locks, Arc::clone(&self.claims) as Arc<dyn ClaimStore>)
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
        let flow = self.process(
            layers(primary.clone(), self.lock.clone()),
            FlowConfig::default(),
        );
        (primary, flow)
    }

    /// A flow with the harness lock as its only lock and default settings.
    fn single_flow(&self) -> RefreshFlow {
        self.process(
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
    /// (the version the flows start from) over the stored refresh token.
    async fn write_elsewhere(&self, credentials: &Credentials) {
        let current = self.stored().await;
        assert_eq!(current.credentials_version, 0, "written over version 0");
        self.overwrite(ID, credentials).await;
    }

    /// The claims of the account in `state`, as the claim store holds them.
    fn claims_in(&self, state: ClaimState) -> Vec<Claim> {
        self.claims.inner().claims_of(id(), state)
    }

    /// Runs `flow` while every write fails: the rotation goes into the
    /// generation claim (`NotPersisted { answer_saved: true }`). The
    /// repository is healed afterwards.
    async fn refresh_into_claim(&self, flow: &RefreshFlow) {
        self.fail_writes();
        let error = self.refresh(flow).await.expect_err("the write fails");
        assert!(
            matches!(
                error,
                FlowError::NotPersisted {
                    answer_saved: true,
                    ..
                }
            ),
            "{error:?}"
        );
        let answered = self.claims_in(ClaimState::Answered);
        assert_eq!(answered.len(), 1, "{answered:?}");
        assert_eq!(
            answer_refresh_token(&answered[0]).as_deref(),
            Some("rt-1-1"),
            "the claim holds the rotated refresh token"
        );
        assert_eq!(
            answered[0].remaining, None,
            "an answered claim never expires"
        );
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

    async fn refresh(
        &self,
        account: &Account,
        ctx: &RefreshContext,
    ) -> Result<Credentials, ProviderError> {
        let rotated = self.rival.refresh(account, ctx).await?;
        let written = self
            .repo
            .compare_and_set_credentials(account.id, CasExpectation::of(account), &rotated)
            .await
            .expect("the rival's write reaches the store");
        assert!(
            matches!(written, CasOutcome::Applied(_)),
            "rival write: {written:?}"
        );
        if let Some(answer) = &self.answer {
            self.upstream.fail_next(answer.clone());
        }
        self.own.refresh(account, ctx).await
    }
}

/// An executor with a bug: it panics inside `refresh`.
struct PanickingExecutor;

#[async_trait]
impl RefreshExecutor for PanickingExecutor {
    fn platform(&self) -> Platform {
        Platform::Anthropic
    }

    async fn refresh(
        &self,
        _account: &Account,
        _ctx: &RefreshContext,
    ) -> Result<Credentials, ProviderError> {
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

/// Before the `n`-th `get` (the re-read after claiming, for `n = 2`) an
/// operator stores a fresh login: new tokens, valid for an hour.
struct ReloginBeforeRead {
    repo: Arc<dyn AccountRepository>,
    n: usize,
    gets: AtomicUsize,
}

impl ReloginBeforeRead {
    fn over(h: &Harness, n: usize) -> Arc<HookedRepository<Self>> {
        Arc::new(HookedRepository {
            inner: Arc::clone(&h.repo) as Arc<dyn AccountRepository>,
            hooks: Self {
                repo: Arc::clone(h.repo.inner()) as Arc<dyn AccountRepository>,
                n,
                gets: AtomicUsize::new(0),
            },
        })
    }
}

#[async_trait]
impl RepositoryHooks for ReloginBeforeRead {
    async fn before_get(&self) {
        if self.gets.fetch_add(1, Ordering::SeqCst) + 1 != self.n {
            return;
        }
        let current = self.repo.get(id()).await.expect("read").expect("account");
        let relogin = current
            .credentials
            .clone()
            .with(keys::ACCESS_TOKEN, "at-relogin")
            .with(keys::REFRESH_TOKEN, "rt-relogin")
            .with(keys::EXPIRES_AT, (T0 + 3600).to_string());
        let written = self
            .repo
            .compare_and_set_credentials(id(), CasExpectation::of(&current), &relogin)
            .await
            .expect("write");
        assert!(matches!(written, CasOutcome::Applied(_)), "{written:?}");
    }
}

/// A mocked rotating Anthropic executor using the real due predicate;
/// `refresh` answers with `answer` and counts its calls. It checks that the
/// flow hands it the refresh token the account holds (the claimed one).
fn mock_executor(
    answer: impl Fn(&Account) -> Result<Credentials, ProviderError> + Send + 'static,
) -> (Arc<dyn RefreshExecutor>, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let mut executor = MockRefreshExecutor::new();
    executor.expect_platform().return_const(Platform::Anthropic);
    executor.expect_rotates_refresh_token().return_const(true);
    executor
        .expect_key()
        .returning(|account| RefreshKey::for_account(&Platform::Anthropic, account.id));
    executor.expect_can_refresh().returning(|account| {
        account.platform == Platform::Anthropic && account.account_type == AccountType::OAuth
    });
    executor.expect_needs_refresh().returning(needs_refresh);
    executor.expect_refresh().returning(move |account, ctx| {
        counter.fetch_add(1, Ordering::SeqCst);
        assert_eq!(
            Some(&ctx.refresh_token),
            account.credentials.refresh_token().as_ref(),
            "the context carries the refresh token the account holds"
        );
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
    assert_eq!(h.claim_calls("acquire"), 1, "one generation claim");
    assert_eq!(
        h.claim_calls("save_answer"),
        1,
        "the answer went into the claim first"
    );
    let claim = h.only_claim();
    assert_eq!(
        claim.state,
        ClaimState::Consumed,
        "the presented generation is marked consumed"
    );
    assert_eq!(
        claim.key.fingerprint,
        Fingerprint::of(&Secret::from("rt-1-0")),
        "the claim is on the presented refresh token"
    );
    assert_eq!(claim.key.platform, Platform::Anthropic);
    assert_eq!(claim.base_version, 0);
    assert_eq!(claim.answer, None, "a consumed claim keeps no answer");
    assert_eq!(
        claim.remaining,
        Some(FlowConfig::default().consumed_horizon),
        "kept for the consumed horizon"
    );
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
    // The re-read after claiming on the snapshot (step 5): the only one.
    repo.expect_get().times(1).returning(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
        Ok(Some(stored.clone()))
    });
    let (stored, counter) = (snapshot.clone(), Arc::clone(&writes));
    repo.expect_compare_and_set_credentials()
        .withf(|account_id, expected, credentials| {
            *account_id == AccountId(ID)
                && *expected
                    == CasExpectation {
                        version: 0,
                        refresh_token: Some(Fingerprint::of(&Secret::from("rt-1-0"))),
                    }
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
    // The lease only reduces contention: no confirmation before the call
    // (the claim guards the token), and the keeper's first extension is due
    // only after a third of the lease TTL.
    lock.expect_extend().never();

    // The flow chooses the claim id; every later claim call must use the
    // one it acquired with.
    let chosen: Arc<std::sync::Mutex<Option<ClaimId>>> = Arc::default();
    let is_chosen = |chosen: &Arc<std::sync::Mutex<Option<ClaimId>>>| {
        let chosen = Arc::clone(chosen);
        move |id: &ClaimId| chosen.lock().unwrap().as_ref() == Some(id)
    };
    let mut claims = MockClaimStore::new();
    claims.expect_name().return_const("mock");
    let record = Arc::clone(&chosen);
    claims
        .expect_acquire()
        .withf(|key, _id, account, base_version, ttl| {
            key.platform == Platform::Anthropic
                && key.fingerprint == Fingerprint::of(&Secret::from("rt-1-0"))
                && *account == AccountId(ID)
                && *base_version == 0
                && *ttl == FlowConfig::default().claim_ttl
        })
        .times(1)
        .returning(move |_, id, _, _, _| {
            *record.lock().unwrap() = Some(id.clone());
            Ok(ClaimAcquire::Won(id.clone()))
        });
    let held = is_chosen(&chosen);
    claims
        .expect_save_answer()
        .withf(move |_, id, answer| {
            held(id)
                && answer
                    .refresh_token()
                    .is_some_and(|t| t.expose() == "rt-new")
                && answer
                    .access_token()
                    .is_some_and(|t| t.expose() == "at-new")
        })
        .times(1)
        .returning(|_, _, _| Ok(true));
    let held = is_chosen(&chosen);
    claims
        .expect_mark_consumed()
        .withf(move |_, id, keep| held(id) && *keep == FlowConfig::default().consumed_horizon)
        .times(1)
        .returning(|_, _, _| Ok(true));

    let (executor, upstream_calls) = mock_executor(|account| {
        Ok(Credentials::new()
            .with(keys::ACCESS_TOKEN, "at-new")
            .with(keys::REFRESH_TOKEN, "rt-new")
            .with(keys::EXPIRES_AT, (T0 + 3600).to_string())
            .merged_over(&account.credentials))
    });
    let flow = RefreshFlow::builder(
        Arc::new(repo),
        LockStrategy::single(Arc::new(lock)),
        Arc::new(claims),
    )
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
    assert_eq!(
        gets.load(Ordering::SeqCst),
        1,
        "one re-read, after claiming on the snapshot"
    );
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
    assert_eq!(h.claim_calls("acquire"), 0, "no claim without the lease");
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
    assert_eq!(h.claim_calls("acquire"), 0);
    assert_eq!(h.stored().await, expired_account());
}

#[tokio::test]
async fn ref_op_no_lock_store_only_in_explicit_single_process_mode() {
    // Explicit single-process mode: the in-process single flight only.
    let h = Harness::new(expired_account());
    let flow = h.process(LockStrategy::process_local(), FlowConfig::default());
    let (account, _) = refreshed(h.refresh(&flow).await.expect("process-local refresh"));
    assert_eq!(refresh_token(&account), "rt-1-1");
    assert_eq!(h.stored().await.credentials_version, 1);
    assert_eq!(h.upstream.calls(), 1);
    assert_eq!(
        h.lock.faults.calls("try_acquire"),
        0,
        "no lock store is consulted"
    );
    assert_eq!(
        h.claim_calls("acquire"),
        1,
        "the generation claim is taken without any lock too"
    );
    assert_eq!(h.only_claim().state, ClaimState::Consumed);

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
    assert_eq!(
        h.claim_calls("acquire"),
        1,
        "the stale snapshot's claim, removed once the re-read after it found the account fresh"
    );
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
    let claim = h.only_claim();
    assert_eq!(
        claim.state,
        ClaimState::Consumed,
        "invalid_grant marks the generation dead"
    );
    assert_eq!(
        claim.key.fingerprint,
        Fingerprint::of(&Secret::from("rt-1-0"))
    );
}

#[tokio::test(start_paused = true)]
async fn ref_op_persist_fails() {
    let h = Harness::new(expired_account());
    h.fail_writes();
    let flow = h.single_flow();
    let started = tokio::time::Instant::now();

    let error = h
        .refresh(&flow)
        .await
        .expect_err("the write never succeeds");

    let FlowError::NotPersisted {
        id: failed,
        credentials,
        answer_saved,
        source,
    } = &error
    else {
        panic!("expected NotPersisted, got {error:?}");
    };
    assert_eq!(*failed, id());
    assert!(*answer_saved, "the rotation waits in the generation claim");
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
    let claim = h.only_claim();
    assert_eq!(claim.state, ClaimState::Answered);
    assert_eq!(
        answer_refresh_token(&claim).as_deref(),
        Some("rt-1-1"),
        "the claim holds the token the upstream accepts now"
    );
    assert_eq!(
        h.claim_calls("save_answer"),
        1,
        "saved before the first write attempt"
    );
    assert_eq!(
        h.lock.faults.calls("release"),
        1,
        "the lease is released: the answer is durable in the claim"
    );
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
    assert_eq!(
        h.claim_calls("acquire"),
        1,
        "the snapshot's claim, removed after the failed re-read"
    );
    assert!(h.claims.inner().is_empty());
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
    assert_eq!(
        h.claim_calls("acquire"),
        1,
        "the snapshot's claim, removed once the re-read found no row"
    );
    assert!(h.claims.inner().is_empty());
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
    assert_eq!(
        h.claim_calls("acquire"),
        1,
        "the (eligible) snapshot's claim, removed once the re-read found the account not eligible"
    );
    assert!(h.claims.inner().is_empty());
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
    let claim = h.only_claim();
    assert_eq!(
        claim.state,
        ClaimState::Quarantined,
        "the upstream processed the request: the token may be consumed"
    );
    assert_eq!(claim.remaining, Some(FlowConfig::default().quarantine));
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
async fn invariant_2_answer_in_the_claim_is_applied_by_another_process_without_an_upstream_call() {
    let h = Harness::new(expired_account());
    let flow = h.single_flow();
    h.refresh_into_claim(&flow).await;
    let answered = h.only_claim();

    // Another "process" over the same backends finds the answer in the claim.
    let other = h.single_flow();
    let (account, recovered) = refreshed(
        h.refresh(&other)
            .await
            .expect("the answer in the claim is persisted"),
    );

    assert!(recovered, "the credentials come from the claim");
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
    let claim = h.only_claim();
    assert_eq!(claim.id, answered.id, "the answering holder's claim");
    assert_eq!(
        claim.state,
        ClaimState::Consumed,
        "the applied claim is marked consumed"
    );
    assert_eq!(claim.answer, None);

    // The account is fresh now: nothing more happens upstream.
    let again = still_fresh(h.refresh(&flow).await.expect("fresh"));
    assert_eq!(again.credentials_version, 1);
    assert_eq!(h.upstream.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn invariant_2_answer_in_the_claim_survives_a_non_token_write() {
    let h = Harness::new(expired_account());
    let flow = h.single_flow();
    h.refresh_into_claim(&flow).await;

    // Before the next flow runs, another writer backfills a non-token key
    // (REFERENCE.md §7.3), keeping the old tokens: nobody rotated, so the
    // answer in the claim is still the only copy of the valid refresh token.
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
    let (account, recovered) = refreshed(outcome.expect("the answer in the claim is persisted"));
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
    assert_eq!(account.credentials_version, 2, "applied over the backfill");
    assert_eq!(h.stored().await, account);
    assert_eq!(h.only_claim().state, ClaimState::Consumed);
}

#[tokio::test(start_paused = true)]
async fn invariant_2_answer_applied_after_its_access_token_expired_is_refreshed_again() {
    let clock = Arc::new(ManualClock::new(t0()));
    let h = Harness::build(
        vec![expired_account()],
        Arc::clone(&clock) as Arc<dyn Clock>,
    );
    let flow = h.single_flow();
    h.refresh_into_claim(&flow).await;

    // Nobody applies the answer until its access token (one hour) expired.
    clock.advance(ISSUED_LIFETIME * 2);
    let (account, recovered) = refreshed(
        h.refresh(&flow)
            .await
            .expect("the answer is applied, then refreshed"),
    );

    assert!(
        !recovered,
        "the caller gets a new access token, not the expired one from the claim"
    );
    assert_eq!(access_token(&account), "at-1-2");
    assert_eq!(refresh_token(&account), "rt-1-2");
    assert!(
        !needs_refresh(&account, WINDOW, clock.now()),
        "the returned access token is usable"
    );
    assert_eq!(
        account.credentials_version, 2,
        "the answer was applied first (1), then the refresh (2)"
    );
    assert_eq!(h.stored().await, account);
    assert_eq!(
        h.upstream.calls(),
        2,
        "one call for each generation, none repeated"
    );
    assert_eq!(h.upstream.reuses(), 0);
    let consumed = h.claims_in(ClaimState::Consumed);
    assert_eq!(
        consumed.len(),
        2,
        "both generations are consumed: {consumed:?}"
    );
    assert_eq!(h.claims.inner().len(), 2);
}

#[tokio::test]
async fn invariant_2_blank_refresh_token_in_an_answer_never_wipes_the_stored_one() {
    for blank in [json!(""), json!("   "), json!(null)] {
        let h = Harness::new(expired_account());
        let flow = h.single_flow();
        let issued = blank.clone();
        let (executor, calls) = mock_executor(move |account| {
            Ok(Credentials::new()
                .with(keys::ACCESS_TOKEN, "at-new")
                .with(keys::REFRESH_TOKEN, issued.clone())
                .with(keys::EXPIRES_AT, (T0 + 3600).to_string())
                .merged_over(&account.credentials))
        });

        let (account, _) = refreshed(
            h.refresh_with(&flow, &executor)
                .await
                .expect("refresh succeeds"),
        );

        assert_eq!(calls.load(Ordering::SeqCst), 1, "{blank}");
        assert_eq!(access_token(&account), "at-new", "{blank}");
        assert_eq!(
            refresh_token(&account),
            "rt-1-0",
            "{blank}: the stored refresh token stays"
        );
        assert_eq!(h.stored().await, account, "{blank}");
        assert!(
            h.claims.inner().is_empty(),
            "{blank}: the token was not rotated away, so its claim is removed, not consumed"
        );
    }
}

#[tokio::test]
async fn invariant_1_account_changed_between_claim_and_reread_sends_nothing() {
    let h = Harness::new(expired_account());
    // The first read is the one after the claim was acknowledged (step 5):
    // the snapshot drove the due check and the claim.
    let relogin = ReloginBeforeRead::over(&h, 1);
    let flow = h.flow_over(
        Arc::clone(&relogin) as Arc<dyn AccountRepository>,
        LockStrategy::single(h.lock.clone()),
        FlowConfig::default(),
    );

    let account = still_fresh(
        h.refresh(&flow)
            .await
            .expect("the operator's fresh login stands"),
    );

    assert_eq!(refresh_token(&account), "rt-relogin");
    assert_eq!(access_token(&account), "at-relogin");
    assert_eq!(h.stored().await, account);
    assert_eq!(
        h.upstream.calls(),
        0,
        "the claimed token is no longer the account's: nothing is sent"
    );
    assert_eq!(h.cas_calls(), 0);
    assert_eq!(h.claim_calls("acquire"), 1);
    assert!(
        h.claims.inner().is_empty(),
        "the claim on the replaced token is dropped"
    );
    assert_eq!(
        relogin.hooks.gets.load(Ordering::SeqCst),
        2,
        "the re-read after claiming, then the due check again"
    );
}

// A run's first due check and claim come from the snapshot it was given
// (the listed row, the caller's read), not from a read: only the re-read
// after a won claim decides what is sent.

#[tokio::test]
async fn a_current_snapshot_costs_one_read_the_one_after_the_claim() {
    let h = Harness::new(expired_account());
    let flow = h.single_flow();

    refreshed(h.refresh(&flow).await.expect("refresh succeeds"));

    assert_eq!(
        h.repo_calls("get"),
        1,
        "the snapshot drove the due check and the claim; the one read confirms it after the claim"
    );
    assert_eq!(h.claim_calls("acquire"), 1);
    assert_eq!(h.upstream.calls(), 1);
}

#[tokio::test]
async fn invariant_1_a_stale_snapshot_whose_token_was_rotated_and_consumed_is_never_presented() {
    let clock = Arc::new(ManualClock::new(t0()));
    let h = Harness::build(
        vec![expired_account()],
        Arc::clone(&clock) as Arc<dyn Clock>,
    );
    let flow = h.single_flow();
    // Another run rotates rt-1-0 → rt-1-1 and marks rt-1-0 consumed; an
    // hour later rt-1-1 is due in turn.
    refreshed(h.refresh(&flow).await.expect("first refresh"));
    assert_eq!(h.claim_state("rt-1-0").await, Some(ClaimState::Consumed));
    clock.advance(ISSUED_LIFETIME);

    // A caller still holding the first snapshot (rt-1-0).
    let (account, _) = refreshed(h.refresh(&flow).await.expect("refreshes the stored token"));

    assert_eq!(
        h.upstream.reuses(),
        0,
        "the snapshot's consumed token was never presented"
    );
    assert_eq!(h.upstream.calls(), 2, "one request per generation");
    assert_eq!(refresh_token(&account), "rt-1-2", "rt-1-1 was redeemed");
    assert_eq!(h.stored().await, account);
    assert_eq!(h.claim_state("rt-1-1").await, Some(ClaimState::Consumed));
    assert_eq!(
        h.claim_calls("acquire"),
        3,
        "the first run's claim, the snapshot's (found consumed, ignored), then the re-read's"
    );
}

#[tokio::test]
async fn invariant_1_a_stale_snapshot_whose_token_was_replaced_sends_nothing() {
    let h = Harness::new(expired_account());
    // An operator's fresh login replaced rt-1-0 (never redeemed: no claim)
    // after the caller read the account.
    let relogin = expired_account()
        .credentials
        .with(keys::ACCESS_TOKEN, "at-relogin")
        .with(keys::REFRESH_TOKEN, "rt-relogin")
        .with(keys::EXPIRES_AT, (T0 + 3600).to_string());
    h.overwrite(ID, &relogin).await;
    let flow = h.single_flow();

    let account = still_fresh(h.refresh(&flow).await.expect("the stored login stands"));

    assert_eq!(refresh_token(&account), "rt-relogin");
    assert_eq!(h.upstream.calls(), 0, "nothing is sent");
    assert_eq!(
        h.claim_calls("acquire"),
        1,
        "the snapshot's claim was won, the re-read after it found another token"
    );
    assert!(
        h.claims.inner().is_empty(),
        "the snapshot's claim is removed again"
    );
}

#[tokio::test]
async fn a_snapshot_not_due_is_checked_against_a_read() {
    // The caller's snapshot is fresh, the stored row expired (a caller with
    // an old copy, a listing racing a clock): the run reads and refreshes.
    let h = Harness::new(expired_account());
    let flow = h.single_flow();
    let fresh_snapshot = fresh_account();

    let (account, _) = refreshed(
        flow.refresh_if_needed(&fresh_snapshot, &h.executor, WINDOW)
            .await
            .expect("refreshes the stored row"),
    );

    assert_eq!(refresh_token(&account), "rt-1-1");
    assert_eq!(h.upstream.calls(), 1);
}

#[tokio::test]
async fn invariant_1_unreachable_claim_store_sends_nothing_under_any_lock_strategy() {
    for strategy in ["single", "process_local", "allow_lock_free"] {
        let h = Harness::new(expired_account());
        let locks = match strategy {
            "single" => LockStrategy::single(h.lock.clone()),
            "process_local" => LockStrategy::process_local(),
            _ => {
                h.lock
                    .faults
                    .fail_always("try_acquire", StorageErrorKind::Unavailable);
                LockStrategy::single(h.lock.clone()).allow_lock_free()
            }
        };
        h.claims
            .faults
            .fail_always("acquire", StorageErrorKind::Unavailable);
        let flow = h.process(locks, FlowConfig::default());

        let error = h
            .refresh(&flow)
            .await
            .expect_err("no claim, no upstream call");

        let FlowError::Claim { id: failed, source } = &error else {
            panic!("{strategy}: expected Claim, got {error:?}");
        };
        assert_eq!(*failed, id(), "{strategy}");
        assert_eq!(source.kind(), StorageErrorKind::Unavailable, "{strategy}");
        assert_eq!(error.stage(), FlowStage::Claim, "{strategy}");
        assert!(error.is_retryable(), "{strategy}");
        // One retry with the same id (acquire is idempotent per id).
        assert_eq!(h.claim_calls("acquire"), 2, "{strategy}");
        assert_eq!(
            h.upstream.calls(),
            0,
            "{strategy}: nothing is sent without a claim"
        );
        assert_eq!(h.cas_calls(), 0, "{strategy}");
        assert!(h.claims.inner().is_empty(), "{strategy}");
        assert_eq!(h.stored().await, expired_account(), "{strategy}");
        let released = u64::from(strategy == "single");
        assert_eq!(h.lock.faults.calls("release"), released, "{strategy}");
        assert!(h.lease_is_free(&key()).await, "{strategy}");
    }
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
    assert_eq!(
        h.only_claim().state,
        ClaimState::Consumed,
        "the presented generation is done either way"
    );
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
    assert_eq!(h.only_claim().state, ClaimState::Consumed);
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
async fn invariant_3_non_rotating_refresh_racing_a_non_token_write_keeps_a_usable_access_token() {
    let h = Harness::new(expired_account());
    h.upstream.keep_refresh_tokens();
    let flow = h.single_flow();
    let task = h.spawn_held_refresh(&flow).await;

    // Another writer backfills a key while the (non-rotating) refresh is
    // out, keeping the same, expired, tokens.
    let backfilled = expired_account()
        .credentials
        .with("project_id", "proj-backfilled");
    h.write_elsewhere(&backfilled).await;
    h.upstream.release(1);

    let outcome = task.await.expect("flow task").expect("refresh succeeds");
    let account = outcome.account().expect("an account").clone();
    assert!(
        !needs_refresh(&account, WINDOW, h.clock.now()),
        "the caller gets a usable access token, not the expired one: {outcome:?}"
    );
    let stored = h.stored().await;
    assert_eq!(stored, account);
    assert!(
        !needs_refresh(&stored, WINDOW, h.clock.now()),
        "a usable access token is stored"
    );
    assert_eq!(
        stored.credentials.get("project_id"),
        Some(&json!("proj-backfilled")),
        "the other writer's key stays"
    );
    assert_eq!(refresh_token(&stored), "rt-1-0", "the kept refresh token");
    assert_eq!(h.upstream.reuses(), 0);
}

#[tokio::test]
async fn invariant_3_credential_write_leaves_status_extra_and_scheduling_alone() {
    let mut stored = expired_account();
    stored
        .extra
        .insert("organization_uuid".into(), json!("org-1"));
    stored.temp_unschedulable_until = Some(t0() + chrono::Duration::minutes(30));
    stored.temp_unschedulable_reason = Some("overloaded".into());
    stored.proxy = Some("http://10.0.0.9:3128".parse().unwrap());
    stored.priority = 5;
    let h = Harness::new(stored.clone());
    let flow = h.single_flow();
    let task = h.spawn_held_refresh(&flow).await;

    // Someone else owns the status columns and writes them meanwhile.
    let marked = h
        .repo
        .inner()
        .set_error(id(), 0, "operator note")
        .await
        .expect("set_error");
    assert!(marked, "the mark is observed on the stored version");
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
    assert_eq!(now.proxy, stored.proxy);
    assert_eq!(now.priority, 5);
    assert_eq!(h.repo.faults.calls("clear_error"), 0);
    assert_eq!(h.repo.faults.calls("clear_temp_unschedulable"), 0);
}

// ---------------------------------------------------------------------------
// Invariant 4: owner-checked leases, extended while the refresh runs
// ---------------------------------------------------------------------------

/// Short lease settings that pass validation: 2 s hard deadline + 2 × 0.2 s
/// storage < 3 s lease; the keeper extends every second. Claims keep their
/// default lives (judged on the claim store's clock).
fn short_lease_config() -> FlowConfig {
    FlowConfig {
        lease_ttl: Duration::from_secs(3),
        upstream_timeout: Duration::from_secs(2),
        persist_attempts: 1,
        persist_attempt_timeout: Duration::from_millis(500),
        persist_backoff: Duration::from_millis(100),
        release_timeout: Duration::from_millis(500),
        storage_timeout: Duration::from_millis(200),
        ..FlowConfig::default()
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
    let flow = h.process(LockStrategy::single(h.lock.clone()), config);

    let task = h.spawn_held_refresh(&flow).await;
    // The upstream answers just before the hard deadline.
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
async fn invariant_4_rescue_keeps_the_lease_for_several_ttls_until_the_write_lands() {
    let h = Harness::build(vec![expired_account()], tokio_clock());
    let config = short_lease_config();
    let flow = h.process(LockStrategy::single(h.lock.clone()), config.clone());
    h.fail_writes();
    h.claims
        .faults
        .fail_always("save_answer", StorageErrorKind::Unavailable);

    let error = h
        .refresh(&flow)
        .await
        .expect_err("neither the account nor the claim takes the answer");
    let FlowError::NotPersisted {
        answer_saved,
        credentials,
        ..
    } = &error
    else {
        panic!("expected NotPersisted, got {error:?}");
    };
    assert!(!*answer_saved, "the claim store refused the answer too");
    assert_eq!(
        credentials.refresh_token().expect("rotated token").expose(),
        "rt-1-1"
    );
    assert!(
        !h.lease_is_free(&key()).await,
        "the only copy of the rotation is in memory: the lease is kept"
    );

    // The outage lasts several lease TTLs: the rescue keeps the lease (and
    // the claim) alive the whole time.
    let outage = config.lease_ttl * 4;
    advance_checking_lease_held(h.lock.inner().as_ref(), outage, Duration::from_millis(500)).await;
    assert!(
        h.lock.faults.calls("extend") >= 8,
        "extended about every ttl/3, got {}",
        h.lock.faults.calls("extend")
    );
    assert_eq!(h.lock.faults.calls("release"), 0);
    assert!(
        h.claim_calls("extend") >= 1,
        "the rescue extends the claim too"
    );
    let claim = h.only_claim();
    assert_eq!(
        claim.state,
        ClaimState::Open,
        "the holder's claim: neither answered nor quarantined"
    );
    assert_eq!(claim.answer, None);

    // Other processes meanwhile: the lease and, without any lock, the open
    // claim keep them from presenting the consumed token.
    assert_eq!(
        h.refresh(&h.single_flow()).await.expect("held"),
        RefreshOutcome::HeldElsewhere
    );
    let lock_free = h.process(LockStrategy::process_local(), FlowConfig::default());
    assert_eq!(
        h.refresh(&lock_free).await.expect("held"),
        RefreshOutcome::HeldElsewhere,
        "the live claim excludes a lock-free process"
    );
    assert_eq!(h.upstream.calls(), 1);

    // The repository heals (the claim store does not): the rescue's next
    // write lands, and only then is the lease given back.
    h.repo.faults.heal();
    advance_until(
        async || h.lease_is_free(&key()).await,
        Duration::from_millis(500),
        Duration::from_secs(30),
    )
    .await;
    let stored = h.stored().await;
    assert_eq!(
        stored.credentials_version, 1,
        "the rescue persisted the answer"
    );
    assert_eq!(
        Some(refresh_token(&stored)),
        h.upstream.current_refresh_token(id())
    );
    assert!(h.lease_is_free(&key()).await, "released after the write");
    assert_eq!(h.lock.faults.calls("release"), 1);
    assert_eq!(h.only_claim().state, ClaimState::Consumed);
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
    assert_eq!(
        h.claim_calls("acquire"),
        1,
        "the snapshot's claim; the hung read was the one after it"
    );
    assert!(h.claims.inner().is_empty(), "the claim is removed again");
    slow.hooks.gate.notify_one();
}

#[tokio::test]
async fn invariant_4_lease_shorter_than_upstream_timeout_plus_two_storage_calls_is_rejected() {
    let h = Harness::new(expired_account());
    let short = FlowConfig {
        lease_ttl: Duration::from_secs(10),
        upstream_timeout: Duration::from_secs(10),
        ..FlowConfig::default()
    };
    let required = short.upstream_timeout + short.storage_timeout * 2;

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

#[tokio::test]
async fn invariant_1_claim_life_shorter_than_the_hard_deadline_plus_grace_is_rejected() {
    let h = Harness::new(expired_account());
    let defaults = FlowConfig::default();
    let floor = defaults.upstream_timeout + defaults.upstream_grace + defaults.storage_timeout * 2;
    assert_eq!(
        defaults.send_margin(),
        defaults.upstream_timeout + defaults.upstream_grace
    );

    let short = FlowConfig {
        claim_ttl: floor - Duration::from_millis(1),
        ..defaults.clone()
    };
    let error = h
        .flow_builder(LockStrategy::single(h.lock.clone()))
        .config(short)
        .build()
        .expect_err("a claim that can expire while its request is out is rejected");
    assert!(
        matches!(
            error,
            ConfigError::Invalid {
                field: "claim_ttl",
                ..
            }
        ),
        "{error:?}"
    );

    let enough = FlowConfig {
        claim_ttl: floor,
        ..defaults
    };
    h.flow_builder(LockStrategy::single(h.lock.clone()))
        .config(enough)
        .build()
        .expect("a claim covering H + S and two storage calls is accepted");
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
    let claim = h.only_claim();
    assert_eq!(
        claim.state,
        ClaimState::Consumed,
        "the refused generation is dead"
    );
    assert_eq!(
        claim.key.fingerprint,
        Fingerprint::of(&Secret::from("rt-1-0"))
    );
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
        assert_eq!(error.observed_version(), Some(0), "{code}");
        assert_eq!(h.only_claim().state, ClaimState::Consumed, "{code}");

        // The account still holds the refused token: it is never presented
        // again.
        let again = h
            .refresh(&h.single_flow())
            .await
            .expect_err("a consumed generation");
        assert!(
            matches!(again, FlowError::CredentialsRegressed { id: failed, version: 0 } if failed == id()),
            "{code}: {again:?}"
        );
        assert_eq!(h.upstream.calls(), 1, "{code}: no second presentation");
    }
}

#[tokio::test]
async fn invariant_6_revocation_with_an_unrelated_write_mid_call_stays_an_error() {
    let h = Harness::new(expired_account());
    let flow = h.single_flow();
    h.upstream.fail_next(grant_error("invalid_grant"));
    let task = h.spawn_held_refresh(&flow).await;

    // While the refused request is out, another writer backfills a
    // non-token key: the version moves, the refresh token does not.
    let backfilled = expired_account()
        .credentials
        .with("project_id", "proj-backfilled");
    h.write_elsewhere(&backfilled).await;
    h.upstream.release(1);

    let error = task
        .await
        .expect("flow task")
        .expect_err("a version bump alone is not another worker's rotation");
    assert!(
        matches!(&error, FlowError::Upstream { source: ProviderError::InvalidGrant { code, .. }, .. } if code.as_str() == "invalid_grant"),
        "{error:?}"
    );
    assert_eq!(error.observed_version(), Some(0));
    let stored = h.stored().await;
    assert_eq!(
        stored.credentials_version, 1,
        "only the backfill was written"
    );
    assert_eq!(refresh_token(&stored), "rt-1-0");
    assert_eq!(h.cas_calls(), 0);
    assert_eq!(h.only_claim().state, ClaimState::Consumed);
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
    assert_eq!(h.only_claim().state, ClaimState::Consumed);
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
    // is ambiguous, and the claim, kept as a quarantine, blocks a second
    // presentation.
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
    let quarantine = FlowConfig::default().quarantine;
    let claim = h.only_claim();
    assert_eq!(claim.state, ClaimState::Quarantined);
    assert_eq!(claim.remaining, Some(quarantine));

    let blocked = h
        .refresh(&flow)
        .await
        .expect_err("the quarantine fails fast");
    assert!(
        matches!(blocked, FlowError::Quarantined { id: failed, until } if failed == id() && until == h.clock.now() + quarantine),
        "{blocked:?}"
    );
    assert_eq!(blocked.stage(), FlowStage::Claim);
    assert!(!blocked.is_retryable(), "waiters do not wait it out");
    assert_eq!(h.upstream.calls(), 0);

    // Once the quarantine has ended by the claim store's clock, refreshing
    // resumes: the expired claim is taken over.
    tokio::time::advance(quarantine + Duration::from_secs(1)).await;
    let (account, _) = refreshed(h.refresh(&flow).await.expect("next refresh works"));
    assert_eq!(account.credentials_version, 1);
    assert_eq!(h.upstream.calls(), 1);
    let taken_over = h.only_claim();
    assert_eq!(taken_over.state, ClaimState::Consumed);
    assert_ne!(
        taken_over.id, claim.id,
        "a new holding of the same generation"
    );
    assert_eq!(taken_over.key, claim.key);
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
    let assumed = chrono::Duration::from_std(refresh_core::flow::ASSUMED_TOKEN_LIFETIME)
        .expect("an hour fits");
    assert_eq!(
        account
            .credentials
            .expires_at()
            .expect("the stored credentials parse"),
        Some(h.clock.now() + assumed),
        "no millisecond value is written back: the new token gets the assumed lifetime"
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
async fn invariant_1_upstream_silent_past_the_hard_deadline_is_aborted_and_quarantined() {
    let h = Harness::new(expired_account());
    let config = short_upstream_timeout();
    let flow = h.process(LockStrategy::single(h.lock.clone()), config.clone());
    h.upstream.hold_responses();
    let started = tokio::time::Instant::now();

    let err = h
        .refresh(&flow)
        .await
        .expect_err("no answer by the hard deadline");
    assert!(
        matches!(err.provider_error(), Some(ProviderError::Ambiguous { .. })),
        "{err:?}"
    );
    let waited = started.elapsed();
    assert!(
        waited >= config.upstream_timeout && waited < config.upstream_timeout * 2,
        "the call is cut at the hard deadline, waited {waited:?}"
    );
    assert_eq!(h.upstream.calls(), 1);
    assert!(
        h.lease_is_free(&key()).await,
        "nothing is outstanding any more: the lease is released at once"
    );
    let claim = h.only_claim();
    assert_eq!(
        claim.state,
        ClaimState::Quarantined,
        "the request may have consumed the token"
    );
    assert_eq!(claim.remaining, Some(config.quarantine));
    assert_eq!(claim.answer, None);

    // Another "process" over the same backends fails fast and sends nothing.
    let other = h.process(LockStrategy::single(h.lock.clone()), config.clone());
    let blocked = h.refresh(&other).await.expect_err("quarantined");
    assert!(
        matches!(blocked, FlowError::Quarantined { id: failed, until } if failed == id() && until == h.clock.now() + config.quarantine),
        "{blocked:?}"
    );
    assert_eq!(h.upstream.calls(), 1, "the upstream sees no second request");

    // The held response is let go: the aborted call cannot deliver it.
    h.upstream.release(1);
    settle(async || h.cas_calls() > 0).await;
    assert_eq!(h.cas_calls(), 0, "no late answer is persisted");
    assert_eq!(h.claim_calls("save_answer"), 0);
    assert_eq!(h.stored().await, expired_account());
    assert_eq!(h.only_claim().state, ClaimState::Quarantined);
    assert_eq!(h.upstream.reuses(), 0);
}

#[tokio::test(start_paused = true)]
async fn invariant_1_answer_after_the_hard_deadline_is_lost_and_the_token_is_presented_again_only_after_the_quarantine()
 {
    let clock = Arc::new(ManualClock::new(t0()));
    let h = Harness::build(
        vec![expired_account()],
        Arc::clone(&clock) as Arc<dyn Clock>,
    );
    let config = short_upstream_timeout();
    let flow = h.process(LockStrategy::single(h.lock.clone()), config.clone());
    h.upstream.hold_responses();
    h.refresh(&flow)
        .await
        .expect_err("no answer by the hard deadline");

    // The upstream rotated when the request arrived; its answer is let go
    // after the flow stopped waiting, and nobody receives it.
    h.upstream.release(1);
    settle(async || h.cas_calls() > 0).await;
    assert_eq!(h.cas_calls(), 0, "no late answer is persisted");
    assert_eq!(h.stored().await, expired_account());
    assert_eq!(
        h.upstream.current_refresh_token(id()).as_deref(),
        Some("rt-1-1"),
        "the rotation nobody received"
    );
    assert_eq!(h.only_claim().state, ClaimState::Quarantined);

    // Up to the end of the quarantine, by the claim store's clock, every
    // process fails fast.
    clock.advance(config.quarantine - Duration::from_secs(1));
    let other = h.process(LockStrategy::single(h.lock.clone()), config.clone());
    let blocked = h.refresh(&other).await.expect_err("still quarantined");
    assert!(
        matches!(blocked, FlowError::Quarantined { until, .. } if until == clock.now() + Duration::from_secs(1)),
        "{blocked:?}"
    );
    assert_eq!(h.upstream.calls(), 1);

    // After it, one flow presents the token once more: the lost answer had
    // consumed it (a residual risk of the design, see the README), so the
    // upstream refuses it, the generation is marked dead and the refusal
    // surfaces; it is never presented again.
    clock.advance(Duration::from_secs(2));
    h.upstream.open();
    let refused = h
        .refresh(&other)
        .await
        .expect_err("the token was consumed by the lost answer");
    assert!(
        matches!(&refused, FlowError::Upstream { source: ProviderError::InvalidGrant { code, .. }, .. } if code.as_str() == "refresh_token_reused"),
        "{refused:?}"
    );
    assert_eq!(h.upstream.calls(), 2);
    assert_eq!(h.upstream.reuses(), 1, "exactly one presentation after H");
    assert_eq!(h.only_claim().state, ClaimState::Consumed);
    let again = h.refresh(&flow).await.expect_err("a dead generation");
    assert!(
        matches!(again, FlowError::CredentialsRegressed { id: failed, .. } if failed == id()),
        "{again:?}"
    );
    assert_eq!(h.upstream.calls(), 2, "never presented a third time");
}

#[tokio::test(start_paused = true)]
async fn invariant_1_server_error_quarantines_the_token_until_the_store_clock_ends_it() {
    let clock = Arc::new(ManualClock::new(t0()));
    let h = Harness::build(
        vec![expired_account()],
        Arc::clone(&clock) as Arc<dyn Clock>,
    );
    let flow = h.single_flow();
    let quarantine = flow.config().quarantine;
    // A 5xx answered before the upstream rotated; the flow cannot know that.
    h.upstream.fail_next(ProviderError::ServerError {
        status: Some(503),
        reason: "unavailable".into(),
    });

    let err = h.refresh(&flow).await.expect_err("5xx");
    assert!(
        matches!(
            err.provider_error(),
            Some(ProviderError::ServerError {
                status: Some(503),
                ..
            })
        ),
        "{err:?}"
    );
    assert!(err.is_retryable());
    let claim = h.only_claim();
    assert_eq!(
        claim.state,
        ClaimState::Quarantined,
        "a 5xx may have consumed the token"
    );
    assert_eq!(claim.remaining, Some(quarantine));

    clock.advance(quarantine - Duration::from_secs(1));
    let other = h.single_flow();
    let blocked = h.refresh(&other).await.expect_err("quarantined");
    assert!(
        matches!(blocked, FlowError::Quarantined { .. }),
        "{blocked:?}"
    );
    assert_eq!(h.upstream.calls(), 1);

    clock.advance(Duration::from_secs(1));
    let (account, recovered) = refreshed(
        h.refresh(&other)
            .await
            .expect("the quarantine is over: refreshed"),
    );
    assert!(!recovered);
    assert_eq!(refresh_token(&account), "rt-1-1");
    assert_eq!(h.stored().await, account);
    assert_eq!(h.upstream.calls(), 2);
    assert_eq!(h.upstream.reuses(), 0);
    let taken_over = h.only_claim();
    assert_eq!(taken_over.state, ClaimState::Consumed);
    assert_ne!(taken_over.id, claim.id);
}

#[tokio::test]
async fn invariant_1_request_not_sent_releases_the_claim_at_once() {
    let h = Harness::new(expired_account());
    let flow = h.single_flow();
    h.upstream.fail_next(ProviderError::NotSent {
        reason: "connection refused".into(),
    });

    let err = h.refresh(&flow).await.expect_err("not sent");
    assert!(
        matches!(err.provider_error(), Some(ProviderError::NotSent { .. })),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert!(
        h.claims.inner().is_empty(),
        "the token was provably not presented: no claim is kept"
    );
    assert_eq!(h.claim_calls("remove"), 1);

    let (account, _) = refreshed(
        h.refresh(&h.single_flow())
            .await
            .expect("another process refreshes at once"),
    );
    assert_eq!(refresh_token(&account), "rt-1-1");
    assert_eq!(h.upstream.calls(), 2);
    assert_eq!(h.upstream.reuses(), 0);
    assert_eq!(h.only_claim().state, ClaimState::Consumed);
}

/// A lock that grants every request (a flushed or split-brain lock store):
/// every flow holds "the" lease, and extensions report it lost.
fn granting_lock(extends: Arc<AtomicUsize>) -> Arc<dyn RefreshLock> {
    let mut lock = MockRefreshLock::new();
    lock.expect_name().return_const("mock");
    lock.expect_try_acquire().times(2).returning(|key, ttl| {
        Ok(Some(Lease {
            key: key.clone(),
            owner: LeaseOwner::random(),
            fence: 1,
            ttl,
        }))
    });
    lock.expect_extend().returning(move |_, _| {
        extends.fetch_add(1, Ordering::SeqCst);
        Ok(false)
    });
    lock.expect_release().returning(|_| Ok(false));
    Arc::new(lock)
}

#[tokio::test(start_paused = true)]
async fn invariant_1_lease_lost_before_the_call_changes_nothing_and_the_claim_keeps_a_second_sender_out()
 {
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
    let extends = Arc::new(AtomicUsize::new(0));
    let lock = granting_lock(Arc::clone(&extends));
    let slow = SlowFirstRead::over(&h);
    let flow = h.flow_over(
        Arc::clone(&slow) as Arc<dyn AccountRepository>,
        LockStrategy::single(Arc::clone(&lock)),
        config.clone(),
    );
    h.upstream.hold_responses();

    let task = h.spawn_refresh(&flow);
    slow.hooks.entered.notified().await;
    tokio::time::advance(Duration::from_secs(22)).await;
    slow.hooks.gate.notify_one();
    h.upstream.wait_for_calls(1).await;
    assert!(
        extends.load(Ordering::SeqCst) >= 1,
        "the keeper learned the lease was lost before the call"
    );

    // Another "process" also gets a lease from the broken lock: the claim,
    // not the lease, keeps it from presenting the same token.
    let other = h.process(LockStrategy::single(lock), config);
    let outcome = h.refresh(&other).await.expect("held by the claim");
    assert_eq!(outcome, RefreshOutcome::HeldElsewhere);
    assert_eq!(h.upstream.calls(), 1, "nothing else is sent");

    h.upstream.release(1);
    let (account, _) = refreshed(
        task.await
            .expect("flow task")
            .expect("a lost lease does not stop the claim holder"),
    );
    assert_eq!(refresh_token(&account), "rt-1-1");
    assert_eq!(h.stored().await, account);
    assert_eq!(h.upstream.calls(), 1);
    assert_eq!(h.upstream.reuses(), 0);
    assert_eq!(h.only_claim().state, ClaimState::Consumed);
}
