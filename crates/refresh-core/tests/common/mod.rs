//! Helpers shared by the integration tests of this crate: fixtures on the
//! fixed instant [`T0`], clocks at an offset, lease probes, virtual time and
//! a bounded settle loop, repository and claim store wrappers with hooks, an
//! executor wrapper that gauges concurrency, and [`Backends`], the in-memory
//! backends of one scenario wrapped in call-counting [`Faulty`] wrappers.
//!
//! Each test binary compiles this module on its own and uses a part of it.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use refresh_core::flow::RefreshFlowBuilder;
use refresh_core::memory::{
    InMemoryAccountRepository, InMemoryClaimStore, InMemoryRefreshLock, InMemoryTokenCache,
};
use refresh_core::ports::{CasExpectation, CasOutcome, DueCursor, Lease, TokioClock};
use refresh_core::testing::conformance::{T0, account_expiring};
use refresh_core::testing::{FakeUpstream, Faulty, RotatingExecutor};
use refresh_core::{
    AccessToken, Account, AccountId, AccountRepository, CachedToken, Claim, ClaimAcquire, ClaimId,
    ClaimKey, ClaimState, ClaimStore, Clock, Credentials, ExecutorRegistry, Fingerprint,
    FlowConfig, FlowError, LockStrategy, Platform, ProviderError, RefreshContext, RefreshExecutor,
    RefreshFlow, RefreshKey, RefreshLock, RefreshOutcome, Secret, StorageError, StorageErrorKind,
    TokenCache, TokenError, TokenProvider,
};
use tokio::task::JoinHandle;

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

/// Seconds from [`T0`] to the expiry of [`expired_account`]'s access token:
/// it expired 10 s before [`t0`], so it is due for everyone.
pub(crate) const EXPIRED: i64 = -10;
/// Lifetime of the tokens the fake upstream issues in [`Backends`].
pub(crate) const ISSUED_LIFETIME: Duration = Duration::from_secs(3600);
/// The window getters use (REFERENCE.md §3.2).
pub(crate) const WINDOW: Duration = Duration::from_secs(180);
/// TTL of the leases probes take.
pub(crate) const PROBE_TTL: Duration = Duration::from_secs(60);
/// TTL of a lease "another process" holds: longer than any test.
pub(crate) const HELD_ELSEWHERE_TTL: Duration = Duration::from_secs(3600);

pub(crate) const PLATFORMS: [Platform; 4] = [
    Platform::Anthropic,
    Platform::OpenAi,
    Platform::Gemini,
    Platform::Antigravity,
];

/// [`T0`] as an instant: where every test clock starts.
pub(crate) fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(T0, 0).expect("T0 is a valid instant")
}

pub(crate) fn in_secs(secs: i64) -> DateTime<Utc> {
    t0() + chrono::Duration::seconds(secs)
}

/// Settings whose upstream deadline is short (1 s), so a slow answer
/// outlives it.
pub(crate) fn short_upstream_timeout() -> FlowConfig {
    FlowConfig {
        upstream_timeout: Duration::from_secs(1),
        ..FlowConfig::default()
    }
}

/// A clock that follows tokio time (paused in most tests) from [`T0`].
pub(crate) fn tokio_clock() -> Arc<dyn Clock> {
    Arc::new(TokioClock::starting_at(t0()))
}

/// Tokens `at-<id>-0` / `rt-<id>-0` expiring `expires_in` seconds after
/// [`T0`] (negative: already expired).
pub(crate) fn credentials(id: i64, expires_in: i64) -> Credentials {
    account_expiring(id, Some(expires_in)).credentials
}

/// An active OAuth account holding [`credentials`].
pub(crate) fn oauth_account(id: i64, platform: Platform, expires_in: i64) -> Account {
    Account::oauth(id, platform, credentials(id, expires_in))
}

/// An active Anthropic OAuth account whose access token expired at
/// [`EXPIRED`]: due for every caller.
pub(crate) fn expired_account(id: i64) -> Account {
    oauth_account(id, Platform::Anthropic, EXPIRED)
}

/// The generation-claim key of refresh token `token` on the Anthropic token
/// endpoint.
pub(crate) fn claim_key(token: &str) -> ClaimKey {
    ClaimKey::new(Platform::Anthropic, Fingerprint::of(&Secret::from(token)))
}

pub(crate) fn key(platform: &Platform, id: i64) -> RefreshKey {
    RefreshKey::for_account(platform, AccountId(id))
}

pub(crate) fn access_token_of(account: &Account) -> Option<String> {
    account
        .credentials
        .access_token()
        .map(|t| t.expose().to_owned())
}

pub(crate) fn refresh_token_of(account: &Account) -> Option<String> {
    account
        .credentials
        .refresh_token()
        .map(|t| t.expose().to_owned())
}

/// The access token of `account`; panics when it has none.
pub(crate) fn access_token(account: &Account) -> String {
    access_token_of(account).expect("access token")
}

/// The refresh token of `account`; panics when it has none.
pub(crate) fn refresh_token(account: &Account) -> String {
    refresh_token_of(account).expect("refresh token")
}

/// The refresh token of the answer a generation claim holds, if any.
pub(crate) fn answer_refresh_token(claim: &Claim) -> Option<String> {
    claim
        .answer
        .as_ref()
        .and_then(Credentials::refresh_token)
        .map(|t| t.expose().to_owned())
}

/// An Anthropic executor over `upstream` whose tokens live `lifetime`.
pub(crate) fn anthropic_executor(
    upstream: &Arc<FakeUpstream>,
    lifetime: Duration,
) -> Arc<dyn RefreshExecutor> {
    Arc::new(RotatingExecutor::new(
        Platform::Anthropic,
        Arc::clone(upstream),
        lifetime,
    ))
}

/// A call-counting in-memory lock whose leases lapse on `clock`.
pub(crate) fn memory_lock(clock: &Arc<dyn Clock>) -> Arc<Faulty<InMemoryRefreshLock>> {
    Arc::new(Faulty::new(Arc::new(InMemoryRefreshLock::new(Arc::clone(
        clock,
    )))))
}

/// A call-counting in-memory claim store whose claims expire on `clock`
/// (the store's clock).
pub(crate) fn memory_claims(clock: &Arc<dyn Clock>) -> Arc<Faulty<InMemoryClaimStore>> {
    Arc::new(Faulty::new(Arc::new(InMemoryClaimStore::new(Arc::clone(
        clock,
    )))))
}

/// A call-counting in-memory token cache whose entries lapse on `clock`.
pub(crate) fn memory_cache(clock: &Arc<dyn Clock>) -> Arc<Faulty<InMemoryTokenCache>> {
    Arc::new(Faulty::new(Arc::new(InMemoryTokenCache::new(Arc::clone(
        clock,
    )))))
}

// ---------------------------------------------------------------------------
// Clocks
// ---------------------------------------------------------------------------

/// A clock at an adjustable offset from a base clock: a process whose clock
/// is off, a clock that jumps, or a lock store whose keys can be made to
/// expire early.
#[derive(Debug)]
pub(crate) struct OffsetClock {
    base: Arc<dyn Clock>,
    offset: Mutex<chrono::Duration>,
}

impl OffsetClock {
    /// `base` plus `offset_secs` seconds (negative: behind).
    pub(crate) fn new(base: &Arc<dyn Clock>, offset_secs: i64) -> Arc<Self> {
        Arc::new(Self {
            base: Arc::clone(base),
            offset: Mutex::new(chrono::Duration::seconds(offset_secs)),
        })
    }

    /// Moves this clock (only) forward.
    pub(crate) fn jump(&self, by: Duration) {
        *self.offset.lock().unwrap_or_else(|e| e.into_inner()) +=
            chrono::Duration::from_std(by).expect("small duration");
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> DateTime<Utc> {
        self.base.now() + *self.offset.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A [`tokio_clock`] `secs` seconds ahead (negative: behind).
pub(crate) fn offset_clock(secs: i64) -> Arc<dyn Clock> {
    OffsetClock::new(&tokio_clock(), secs)
}

// ---------------------------------------------------------------------------
// Leases, time and settling
// ---------------------------------------------------------------------------

/// Whether a third party could take the lease of `key` on `lock` now.
/// Probes non-destructively: a lease taken by the probe is released at once.
pub(crate) async fn lease_is_free(lock: &dyn RefreshLock, key: &RefreshKey) -> bool {
    match lock
        .try_acquire(key, PROBE_TTL)
        .await
        .expect("probe acquire")
    {
        Some(lease) => {
            assert!(lock.release(&lease).await.expect("probe release"));
            true
        }
        None => false,
    }
}

/// Takes the lease of `key` on `lock` "from another process", for
/// [`HELD_ELSEWHERE_TTL`].
pub(crate) async fn hold_lease(lock: &dyn RefreshLock, key: &RefreshKey) -> Lease {
    lock.try_acquire(key, HELD_ELSEWHERE_TTL)
        .await
        .expect("the lock answers")
        .expect("the lease is free")
}

/// Runs `provider.access_token(account)` as its own task (a caller that can
/// be joined later).
pub(crate) fn spawn_access_token(
    provider: &TokenProvider,
    account: &Account,
) -> JoinHandle<Result<AccessToken, TokenError>> {
    let (provider, account) = (provider.clone(), account.clone());
    tokio::spawn(async move { provider.access_token(&account).await })
}

/// Runs `flow.refresh_if_needed(account)` with `executor` and the getters'
/// [`WINDOW`] as its own task (a caller that can be joined later).
pub(crate) fn spawn_refresh(
    flow: &RefreshFlow,
    account: &Account,
    executor: &Arc<dyn RefreshExecutor>,
) -> JoinHandle<Result<RefreshOutcome, FlowError>> {
    let (flow, account, executor) = (flow.clone(), account.clone(), Arc::clone(executor));
    tokio::spawn(async move { flow.refresh_if_needed(&account, &executor, WINDOW).await })
}

/// Lets `d` of virtual (paused) time pass: every timer due meanwhile fires
/// in order. For behaviour that depends on time (claim expiry, quarantine
/// end, lease lapse); not a synchronisation device.
pub(crate) async fn let_time_pass(d: Duration) {
    tokio::time::sleep(d).await;
}

/// Lets paused tokio time pass in `step`s (woken tasks run after each) until
/// `done` holds, for at most `limit`. Callers assert `done` afterwards.
pub(crate) async fn advance_until(
    mut done: impl AsyncFnMut() -> bool,
    step: Duration,
    limit: Duration,
) {
    let mut elapsed = Duration::ZERO;
    while !done().await && elapsed < limit {
        tokio::time::advance(step).await;
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
        elapsed += step;
    }
}

/// Lets detached tasks run until `done` holds (bounded; paused time does not
/// move while tasks are runnable). Callers assert `done` afterwards.
pub(crate) async fn settle(mut done: impl AsyncFnMut() -> bool) {
    for _ in 0..200 {
        if done().await {
            return;
        }
        tokio::task::yield_now().await;
    }
}

// ---------------------------------------------------------------------------
// Bounded steps
// ---------------------------------------------------------------------------

/// What a refresh run answers.
pub(crate) type Outcome = Result<RefreshOutcome, FlowError>;

/// The longest pause of a rescue loop between attempts (flow/persist.rs),
/// plus a second: after this much virtual time a healed store has been
/// retried.
pub(crate) const RESCUE_ROUND: Duration = Duration::from_secs(11);

/// The longest any awaited step of a scenario may take, in virtual time: a
/// broken flow that never finishes a step fails the test here instead of
/// hanging it.
pub(crate) const STEP_BOUND: Duration = Duration::from_secs(2 * 3600);

/// Awaits `step`, failing the test (naming `what`) if it takes longer than
/// [`STEP_BOUND`] of virtual time.
pub(crate) async fn within<T>(what: &str, step: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(STEP_BOUND, step)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {STEP_BOUND:?} of virtual time"))
}

/// Waits (bounded) until the fake upstream received `n` requests.
pub(crate) async fn calls_reach(upstream: &FakeUpstream, n: u64) {
    within("the upstream request", upstream.wait_for_calls(n)).await;
}

/// Joins a spawned refresh (bounded).
pub(crate) async fn finish(run: JoinHandle<Outcome>) -> Outcome {
    within("the refresh run", run)
        .await
        .expect("the refresh task does not panic")
}

/// [`Backends::refresh_stored`], bounded by [`within`].
pub(crate) async fn refresh_stored<R: AccountRepository + 'static>(
    flow: &RefreshFlow,
    b: &Backends<R>,
    id: i64,
    executor: &Arc<dyn RefreshExecutor>,
) -> Outcome {
    within("the refresh", b.refresh_stored(flow, id, executor)).await
}

pub(crate) fn is_held_elsewhere(outcome: &Outcome) -> bool {
    matches!(outcome, Ok(RefreshOutcome::HeldElsewhere))
}

/// The account a refresh run wrote; panics unless it answered `Refreshed`.
pub(crate) fn refreshed_account(outcome: Outcome) -> Account {
    match outcome {
        Ok(RefreshOutcome::Refreshed { account, .. }) => account,
        other => panic!("expected Refreshed, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// A repository with hooks
// ---------------------------------------------------------------------------

/// What a [`HookedRepository`] does around the calls it forwards.
#[async_trait]
pub(crate) trait RepositoryHooks: Send + Sync {
    /// Runs before `get` reaches the wrapped repository.
    async fn before_get(&self) {}

    /// Runs in place of forwarding `compare_and_set_credentials` to
    /// `inner`; the default forwards it.
    async fn around_compare_and_set(
        &self,
        inner: &dyn AccountRepository,
        id: AccountId,
        expected: CasExpectation,
        credentials: &Credentials,
    ) -> Result<CasOutcome, StorageError> {
        inner
            .compare_and_set_credentials(id, expected, credentials)
            .await
    }

    /// Runs after `list_due` answered, before its page is returned.
    async fn after_list_due(&self, _inner: &dyn AccountRepository) -> Result<(), StorageError> {
        Ok(())
    }

    /// Runs before `set_error` of account `id` reaches the wrapped
    /// repository; an error is returned in its place.
    async fn before_set_error(
        &self,
        _inner: &dyn AccountRepository,
        _id: AccountId,
    ) -> Result<(), StorageError> {
        Ok(())
    }
}

/// An [`AccountRepository`] that forwards every call to `inner`, running
/// `hooks` around `get`, `compare_and_set_credentials`, `list_due` and
/// `set_error`.
pub(crate) struct HookedRepository<H> {
    pub(crate) inner: Arc<dyn AccountRepository>,
    pub(crate) hooks: H,
}

#[async_trait]
impl<H: RepositoryHooks> AccountRepository for HookedRepository<H> {
    async fn get(&self, id: AccountId) -> Result<Option<Account>, StorageError> {
        self.hooks.before_get().await;
        self.inner.get(id).await
    }

    async fn insert(&self, account: Account) -> Result<Account, StorageError> {
        self.inner.insert(account).await
    }

    async fn compare_and_set_credentials(
        &self,
        id: AccountId,
        expected: CasExpectation,
        credentials: &Credentials,
    ) -> Result<CasOutcome, StorageError> {
        self.hooks
            .around_compare_and_set(self.inner.as_ref(), id, expected, credentials)
            .await
    }

    async fn list_due(
        &self,
        before: DateTime<Utc>,
        after: Option<DueCursor>,
        limit: usize,
    ) -> Result<refresh_core::ports::DuePage, StorageError> {
        let page = self.inner.list_due(before, after, limit).await?;
        self.hooks.after_list_due(self.inner.as_ref()).await?;
        Ok(page)
    }

    async fn set_error(
        &self,
        id: AccountId,
        observed_version: u64,
        message: &str,
    ) -> Result<bool, StorageError> {
        self.hooks.before_set_error(self.inner.as_ref(), id).await?;
        self.inner.set_error(id, observed_version, message).await
    }

    async fn clear_error(&self, id: AccountId) -> Result<(), StorageError> {
        self.inner.clear_error(id).await
    }

    async fn clear_temp_unschedulable(&self, id: AccountId) -> Result<(), StorageError> {
        self.inner.clear_temp_unschedulable(id).await
    }
}

// ---------------------------------------------------------------------------
// A claim store with hooks
// ---------------------------------------------------------------------------

/// What a [`HookedClaimStore`] does around the calls it forwards. `op` is
/// the name of the [`ClaimStore`] method (`"acquire"`, `"save_answer"`, ...).
#[async_trait]
pub(crate) trait ClaimStoreHooks: Send + Sync {
    /// The wrapper's [`ClaimStore::name`].
    fn name(&self) -> &'static str {
        "hooked"
    }

    /// Runs before `op` reaches the wrapped store.
    async fn before(&self, _op: &'static str) {}

    /// Runs after `op` was applied and answered `Ok`; an error is reported
    /// in place of the answer (a store that committed, but whose answer was
    /// lost).
    fn after(&self, _op: &'static str) -> Result<(), StorageError> {
        Ok(())
    }
}

/// A [`ClaimStore`] that forwards every call to `inner`, running `hooks`
/// before and after each.
pub(crate) struct HookedClaimStore<H> {
    pub(crate) inner: Arc<dyn ClaimStore>,
    pub(crate) hooks: H,
}

impl<H: ClaimStoreHooks> HookedClaimStore<H> {
    pub(crate) fn new(inner: Arc<dyn ClaimStore>, hooks: H) -> Arc<Self> {
        Arc::new(Self { inner, hooks })
    }
}

#[async_trait]
impl<H: ClaimStoreHooks> ClaimStore for HookedClaimStore<H> {
    fn name(&self) -> &'static str {
        self.hooks.name()
    }

    async fn acquire(
        &self,
        key: &ClaimKey,
        id: &ClaimId,
        account: AccountId,
        base_version: u64,
        ttl: Duration,
    ) -> Result<ClaimAcquire, StorageError> {
        self.hooks.before("acquire").await;
        let answer = self
            .inner
            .acquire(key, id, account, base_version, ttl)
            .await?;
        self.hooks.after("acquire")?;
        Ok(answer)
    }

    async fn get(&self, key: &ClaimKey) -> Result<Option<Claim>, StorageError> {
        self.hooks.before("get").await;
        let answer = self.inner.get(key).await?;
        self.hooks.after("get")?;
        Ok(answer)
    }

    async fn extend(
        &self,
        key: &ClaimKey,
        id: &ClaimId,
        ttl: Duration,
    ) -> Result<bool, StorageError> {
        self.hooks.before("extend").await;
        let answer = self.inner.extend(key, id, ttl).await?;
        self.hooks.after("extend")?;
        Ok(answer)
    }

    async fn quarantine(
        &self,
        key: &ClaimKey,
        id: &ClaimId,
        ttl: Duration,
    ) -> Result<bool, StorageError> {
        self.hooks.before("quarantine").await;
        let answer = self.inner.quarantine(key, id, ttl).await?;
        self.hooks.after("quarantine")?;
        Ok(answer)
    }

    async fn save_answer(
        &self,
        key: &ClaimKey,
        id: &ClaimId,
        answer: &Credentials,
    ) -> Result<bool, StorageError> {
        self.hooks.before("save_answer").await;
        let saved = self.inner.save_answer(key, id, answer).await?;
        self.hooks.after("save_answer")?;
        Ok(saved)
    }

    async fn mark_consumed(
        &self,
        key: &ClaimKey,
        id: &ClaimId,
        keep: Duration,
    ) -> Result<bool, StorageError> {
        self.hooks.before("mark_consumed").await;
        let answer = self.inner.mark_consumed(key, id, keep).await?;
        self.hooks.after("mark_consumed")?;
        Ok(answer)
    }

    async fn remove(&self, key: &ClaimKey, id: &ClaimId) -> Result<bool, StorageError> {
        self.hooks.before("remove").await;
        let answer = self.inner.remove(key, id).await?;
        self.hooks.after("remove")?;
        Ok(answer)
    }

    async fn purge(&self, limit: usize) -> Result<u64, StorageError> {
        self.hooks.before("purge").await;
        let answer = self.inner.purge(limit).await?;
        self.hooks.after("purge")?;
        Ok(answer)
    }
}

// ---------------------------------------------------------------------------
// An executor that gauges concurrency
// ---------------------------------------------------------------------------

/// An executor wrapper that measures how many upstream calls are in flight
/// at once (a high-water mark). A call leaves the count when its future
/// ends or is dropped, so a call the flow aborts at its hard deadline
/// counts until the abort.
pub(crate) struct ConcurrencyProbe {
    inner: Arc<dyn RefreshExecutor>,
    /// Calls in flight now.
    pub(crate) in_flight: AtomicUsize,
    /// The most calls in flight at once so far.
    pub(crate) peak: AtomicUsize,
}

impl ConcurrencyProbe {
    pub(crate) fn new(inner: Arc<dyn RefreshExecutor>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            in_flight: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        })
    }
}

/// Takes a call out of [`ConcurrencyProbe::in_flight`] when dropped.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl RefreshExecutor for ConcurrencyProbe {
    fn platform(&self) -> Platform {
        self.inner.platform()
    }

    fn rotates_refresh_token(&self) -> bool {
        self.inner.rotates_refresh_token()
    }

    async fn refresh(
        &self,
        account: &Account,
        ctx: &RefreshContext,
    ) -> Result<Credentials, ProviderError> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        let _in_flight = InFlight(&self.in_flight);
        self.inner.refresh(account, ctx).await
    }
}

// ---------------------------------------------------------------------------
// The backends of one scenario
// ---------------------------------------------------------------------------

/// The shared backends of one scenario, each behind a call-counting
/// [`Faulty`] wrapper: every flow built over them is a separate "process"
/// (own single flight, own in-process cache) over the same repository,
/// lock, token cache, claim store and fake upstream.
///
/// Wait for a backend call with `faults.wait_for_calls`. A wrapper counts a
/// call before forwarding it, but the in-memory backends answer without
/// yielding: on the current-thread runtime the call has completed by the
/// time the waiting test resumes.
pub(crate) struct Backends<R: ?Sized = InMemoryAccountRepository> {
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) repo: Arc<Faulty<R>>,
    pub(crate) lock: Arc<Faulty<InMemoryRefreshLock>>,
    pub(crate) cache: Arc<Faulty<InMemoryTokenCache>>,
    pub(crate) claims: Arc<Faulty<InMemoryClaimStore>>,
    pub(crate) upstream: Arc<FakeUpstream>,
}

impl Backends {
    /// `accounts` on a [`tokio_clock`].
    pub(crate) fn new(accounts: impl IntoIterator<Item = Account>) -> Self {
        Self::on_clock(accounts, tokio_clock())
    }

    /// `accounts` on `clock`.
    pub(crate) fn on_clock(
        accounts: impl IntoIterator<Item = Account>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let repo = InMemoryAccountRepository::with_accounts(accounts);
        Self::with_repo(repo, Arc::clone(&clock), clock)
    }
}

impl<R: AccountRepository + 'static> Backends<R> {
    /// Backends over `repo` on a [`tokio_clock`] (the lock's too).
    pub(crate) fn over(repo: R) -> Self {
        let clock = tokio_clock();
        Self::with_repo(repo, Arc::clone(&clock), clock)
    }

    /// Backends over `repo`. The lock measures its leases on `lock_clock`
    /// (the flow's clock, or one a test moves independently, like Redis
    /// expiring a key).
    pub(crate) fn with_repo(repo: R, clock: Arc<dyn Clock>, lock_clock: Arc<dyn Clock>) -> Self {
        Self {
            repo: Arc::new(Faulty::new(Arc::new(repo))),
            lock: memory_lock(&lock_clock),
            cache: memory_cache(&clock),
            claims: memory_claims(&clock),
            upstream: FakeUpstream::new(),
            clock,
        }
    }

    /// A flow builder over the repository and `locks`, on the clock.
    pub(crate) fn flow_builder(&self, locks: LockStrategy) -> RefreshFlowBuilder {
        RefreshFlow::builder(self.repo.clone(), locks, self.claims.clone())
            .clock(Arc::clone(&self.clock))
    }

    /// A "process": a flow of its own (own single flight) over the
    /// repository and claim store, on the clock, with `locks` and `config`.
    pub(crate) fn process(&self, locks: LockStrategy, config: FlowConfig) -> RefreshFlow {
        self.flow_builder(locks)
            .config(config)
            .build()
            .expect("valid flow configuration")
    }

    /// A process with no cross-process lock (only the claim protects) and
    /// default settings.
    pub(crate) fn local_process(&self) -> RefreshFlow {
        self.process(LockStrategy::process_local(), FlowConfig::default())
    }

    /// A process over the repository that reaches the claim store through
    /// `claims` (a view of the shared store with faults of its own) and
    /// reads the time from `clock`.
    pub(crate) fn process_over(
        &self,
        claims: Arc<dyn ClaimStore>,
        locks: LockStrategy,
        clock: Arc<dyn Clock>,
        config: FlowConfig,
    ) -> RefreshFlow {
        RefreshFlow::builder(self.repo.clone(), locks, claims)
            .clock(clock)
            .config(config)
            .build()
            .expect("valid flow configuration")
    }

    /// A process whose lease lives in the shared lock and that publishes
    /// its refreshes on the shared cache, with default settings.
    pub(crate) fn notifying_process(&self) -> RefreshFlow {
        self.flow_builder(LockStrategy::single(self.lock.clone()))
            .notifier(self.cache.clone())
            .build()
            .expect("default flow config is valid")
    }

    /// A token provider over a [`Self::notifying_process`] with executors
    /// for `platforms`, reading and filling the shared cache.
    pub(crate) fn provider(&self, platforms: &[Platform]) -> TokenProvider {
        TokenProvider::builder(self.notifying_process(), self.registry(platforms))
            .shared_cache(self.cache.clone())
            // The REFERENCE getter's TTLs, uncapped by the in-process max age
            // (its own test sets it).
            .local_max_age(Duration::from_secs(24 * 3600))
            .build()
    }

    /// Refreshes account `id` as stored now (read past the fault wrapper)
    /// through `flow` with `executor`, in the getters' [`WINDOW`].
    pub(crate) async fn refresh_stored(
        &self,
        flow: &RefreshFlow,
        id: i64,
        executor: &Arc<dyn RefreshExecutor>,
    ) -> Result<RefreshOutcome, FlowError> {
        let account = self.stored(id).await;
        flow.refresh_if_needed(&account, executor, WINDOW).await
    }

    /// Makes every credential write (`compare_and_set_credentials`) fail as
    /// unavailable until the repository's faults are healed.
    pub(crate) fn fail_writes(&self) {
        self.repo
            .faults
            .fail_always("compare_and_set_credentials", StorageErrorKind::Unavailable);
    }

    /// An executor for `platform` whose tokens live [`ISSUED_LIFETIME`].
    pub(crate) fn rotating(&self, platform: Platform) -> RotatingExecutor {
        RotatingExecutor::new(platform, Arc::clone(&self.upstream), ISSUED_LIFETIME)
    }

    pub(crate) fn executor(&self, platform: Platform) -> Arc<dyn RefreshExecutor> {
        Arc::new(self.rotating(platform))
    }

    pub(crate) fn registry(&self, platforms: &[Platform]) -> ExecutorRegistry {
        platforms
            .iter()
            .fold(ExecutorRegistry::new(), |registry, platform| {
                registry.with(self.executor(platform.clone()))
            })
    }

    /// The account as stored now (read past the fault wrapper).
    pub(crate) async fn stored(&self, id: i64) -> Account {
        self.repo
            .inner()
            .get(AccountId(id))
            .await
            .expect("in-memory repository answers")
            .expect("account exists")
    }

    /// Writes `credentials` over account `id` as another writer would (an
    /// operator's backfill or restored backup, another process's refresh):
    /// a fenced write over the row as stored now, past the fault wrapper.
    /// Panics unless it applies; returns the row written.
    pub(crate) async fn overwrite(&self, id: i64, credentials: &Credentials) -> Account {
        let current = self.stored(id).await;
        let outcome = self
            .repo
            .inner()
            .compare_and_set_credentials(AccountId(id), CasExpectation::of(&current), credentials)
            .await
            .expect("in-memory write");
        match outcome {
            CasOutcome::Applied(account) => account,
            other => panic!("the overwrite did not apply: {other:?}"),
        }
    }

    /// The shared cache's entry (read past the fault wrapper).
    pub(crate) async fn cached(&self, key: &RefreshKey) -> Option<CachedToken> {
        self.cache
            .inner()
            .get(key)
            .await
            .expect("in-memory cache answers")
    }

    /// The claim of refresh token `token` (Anthropic) as the shared claim
    /// store holds it now (read past the fault wrapper).
    pub(crate) async fn claim_of(&self, token: &str) -> Option<Claim> {
        self.claims
            .inner()
            .get(&claim_key(token))
            .await
            .expect("the in-memory claim store answers")
    }

    /// The state of the claim of refresh token `token` (Anthropic) as the
    /// shared claim store holds it now (read past the fault wrapper).
    pub(crate) async fn claim_state(&self, token: &str) -> Option<ClaimState> {
        self.claim_of(token).await.map(|c| c.state)
    }

    /// The only claim the store holds (any account, any state).
    pub(crate) fn only_claim(&self) -> Claim {
        let mut all = self.claims.inner().snapshot();
        assert_eq!(all.len(), 1, "exactly one claim: {all:?}");
        all.remove(0)
    }

    /// Whether a third party could take the lease of `key` now.
    pub(crate) async fn lease_is_free(&self, key: &RefreshKey) -> bool {
        lease_is_free(self.lock.inner().as_ref(), key).await
    }

    /// Takes the lease of `key` "from another process".
    pub(crate) async fn hold(&self, key: &RefreshKey) -> Lease {
        hold_lease(self.lock.inner().as_ref(), key).await
    }

    pub(crate) fn repo_calls(&self, op: &'static str) -> u64 {
        self.repo.faults.calls(op)
    }

    pub(crate) fn lock_calls(&self, op: &'static str) -> u64 {
        self.lock.faults.calls(op)
    }

    pub(crate) fn cache_calls(&self, op: &'static str) -> u64 {
        self.cache.faults.calls(op)
    }

    pub(crate) fn claim_calls(&self, op: &'static str) -> u64 {
        self.claims.faults.calls(op)
    }
}
