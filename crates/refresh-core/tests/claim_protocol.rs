//! The twelve steps of the generation-claim protocol (issue 5), each pinned
//! by one or more tests that fail when the step is removed from the flow or
//! the in-memory claim store (the closing note of the issue lists which
//! mutation each test catches).
//!
//! "Processes" are separate [`RefreshFlow`] instances over the shared
//! [`Backends`] of one scenario; most run with
//! [`LockStrategy::process_local`], so the claim alone stands between two
//! presentations of a refresh token. Time is tokio's paused clock:
//! [`let_time_pass`] sleeps in virtual time so every timer due meanwhile
//! fires in order; a process stall inside a storage call is modelled by
//! [`Stall`], which parks the call and lets the test advance the clock
//! before releasing it. Nothing waits on real time.

mod common;

use std::future::pending;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use common::{
    Backends, EXPIRED, HookedRepository, ISSUED_LIFETIME, Outcome, RESCUE_ROUND, RepositoryHooks,
    WINDOW, access_token, calls_reach, claim_key, credentials, expired_account, finish,
    is_held_elsewhere, let_time_pass, memory_claims, refresh_stored, refresh_token,
    refreshed_account, spawn_refresh, t0, within,
};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use refresh_core::error::OAuthErrorCode;
use refresh_core::memory::{InMemoryAccountRepository, InMemoryClaimStore};
use refresh_core::ports::{CasExpectation, CasOutcome, DueCursor, ManualClock};
use refresh_core::testing::conformance::{
    account_expiring, refresh_executor_suite, token_endpoint_mapping_suite,
};
use refresh_core::testing::{FakeUpstream, RotatingExecutor};
use refresh_core::{
    Account, AccountId, AccountRepository, AccountStatus, BackgroundRefresher, Claim, ClaimAcquire,
    ClaimId, ClaimKey, ClaimState, ClaimStore, Clock, ConfigError, Credentials, ExpiryRule,
    Fingerprint, FlowConfig, FlowError, GrantFields, LockStrategy, Platform, ProviderError,
    RefreshContext, RefreshExecutor, RefreshFlow, RefreshOutcome, Secret, StorageError,
    StorageErrorKind, TokenError, TokenGrant, TokenProvider,
};
use tokio::sync::{Barrier, Notify};
use tokio::time::Instant;

/// The account most scenarios refresh.
const ID: i64 = 1;
/// SHA-256 of the bytes `rt-1-0` (`printf rt-1-0 | sha256sum`).
const SHA256_OF_RT_1_0: &str = "466f71a0cb033655c0b03db94af5d062b15981c3d2be43423213d2c63bd727ff";

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A process over a claim store of its own choosing (a wrapper of the
/// shared one).
fn process_with_claims<R: AccountRepository + 'static>(
    b: &Backends<R>,
    claims: Arc<dyn ClaimStore>,
    config: FlowConfig,
) -> RefreshFlow {
    b.process_over(
        claims,
        LockStrategy::process_local(),
        Arc::clone(&b.clock),
        config,
    )
}

/// Writes `credentials` over account `id` as another writer would (an
/// operator's re-login, a restored backup, another process's refresh).
async fn overwrite(repo: &dyn AccountRepository, id: i64, credentials: &Credentials) -> Account {
    let current = repo.get(AccountId(id)).await.unwrap().expect("account");
    match repo
        .compare_and_set_credentials(AccountId(id), CasExpectation::of(&current), credentials)
        .await
        .unwrap()
    {
        CasOutcome::Applied(account) => account,
        other => panic!("overwrite did not apply: {other:?}"),
    }
}

/// Credentials `at`/`rt` expiring `expires_in` seconds after the clock's
/// now.
fn tokens(at: &str, rt: &str, now: DateTime<Utc>, expires_in: i64) -> Credentials {
    let mut creds = Credentials::new()
        .with("access_token", at)
        .with("refresh_token", rt);
    creds.set_expires_at(now + chrono::Duration::seconds(expires_in));
    creds
}

/// A point in a storage call where a test can stall the caller (a process
/// pause, a slow acknowledgement): once armed, the next call to
/// [`point`](Self::point) (after skipping `skip` of them) parks until the
/// test lets it go.
#[derive(Default)]
struct Stall {
    armed: AtomicBool,
    skip: AtomicUsize,
    forever: AtomicBool,
    arrived: Notify,
    resume: Notify,
}

impl Stall {
    /// Stalls the call after the next `skip` ones.
    fn arm(&self, skip: usize) {
        self.skip.store(skip, Ordering::SeqCst);
        self.armed.store(true, Ordering::SeqCst);
    }

    /// Stalls the next call forever (a store that never answers).
    fn arm_forever(&self) {
        self.forever.store(true, Ordering::SeqCst);
        self.arm(0);
    }

    async fn point(&self) {
        if !self.armed.load(Ordering::SeqCst) {
            return;
        }
        if self.skip.load(Ordering::SeqCst) > 0 {
            self.skip.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        self.armed.store(false, Ordering::SeqCst);
        self.arrived.notify_one();
        if self.forever.load(Ordering::SeqCst) {
            pending::<()>().await;
        }
        self.resume.notified().await;
    }

    /// Waits for the stalled call, lets it go, and moves the clock `pause`
    /// ahead before the caller runs again: to the caller, the call took
    /// `pause` (the call itself finished in time, so no storage deadline
    /// fires).
    async fn release_after(&self, pause: Duration) {
        within("the stalled call", self.arrived.notified()).await;
        self.resume.notify_one();
        tokio::time::advance(pause).await;
    }
}

#[async_trait]
impl RepositoryHooks for Arc<Stall> {
    async fn before_get(&self) {
        self.point().await;
    }
}

/// A claim store wrapper: an optional one-shot action before the next
/// `acquire` reaches the store, and a [`Stall`] after it answered.
struct HookedClaims {
    inner: Arc<dyn ClaimStore>,
    before_acquire: Mutex<Option<BoxFuture<'static, ()>>>,
    after_acquire: Stall,
}

impl HookedClaims {
    fn new(inner: Arc<dyn ClaimStore>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            before_acquire: Mutex::new(None),
            after_acquire: Stall::default(),
        })
    }

    fn before_next_acquire(&self, action: BoxFuture<'static, ()>) {
        *self.before_acquire.lock().unwrap() = Some(action);
    }
}

#[async_trait]
impl ClaimStore for HookedClaims {
    fn name(&self) -> &'static str {
        "hooked"
    }

    async fn acquire(
        &self,
        key: &ClaimKey,
        id: &ClaimId,
        account: AccountId,
        base_version: u64,
        ttl: Duration,
    ) -> Result<ClaimAcquire, StorageError> {
        let before = self.before_acquire.lock().unwrap().take();
        if let Some(action) = before {
            action.await;
        }
        let acquired = self
            .inner
            .acquire(key, id, account, base_version, ttl)
            .await;
        self.after_acquire.point().await;
        acquired
    }

    async fn get(&self, key: &ClaimKey) -> Result<Option<Claim>, StorageError> {
        self.inner.get(key).await
    }

    async fn extend(
        &self,
        key: &ClaimKey,
        id: &ClaimId,
        ttl: Duration,
    ) -> Result<bool, StorageError> {
        self.inner.extend(key, id, ttl).await
    }

    async fn quarantine(
        &self,
        key: &ClaimKey,
        id: &ClaimId,
        ttl: Duration,
    ) -> Result<bool, StorageError> {
        self.inner.quarantine(key, id, ttl).await
    }

    async fn save_answer(
        &self,
        key: &ClaimKey,
        id: &ClaimId,
        answer: &Credentials,
    ) -> Result<bool, StorageError> {
        self.inner.save_answer(key, id, answer).await
    }

    async fn mark_consumed(
        &self,
        key: &ClaimKey,
        id: &ClaimId,
        keep: Duration,
    ) -> Result<bool, StorageError> {
        self.inner.mark_consumed(key, id, keep).await
    }

    async fn remove(&self, key: &ClaimKey, id: &ClaimId) -> Result<bool, StorageError> {
        self.inner.remove(key, id).await
    }

    async fn purge(&self, limit: usize) -> Result<u64, StorageError> {
        self.inner.purge(limit).await
    }
}

/// An executor wrapper recording the refresh token of every request and
/// counting the calls in flight (a call aborted at the hard deadline is
/// dropped and leaves the count).
struct Recording {
    inner: Arc<dyn RefreshExecutor>,
    rotates: bool,
    presented: Mutex<Vec<String>>,
    in_flight: AtomicUsize,
}

struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Recording {
    fn new(inner: Arc<dyn RefreshExecutor>) -> Arc<Self> {
        let rotates = inner.rotates_refresh_token();
        Self::claiming(inner, rotates)
    }

    /// A wrapper whose `rotates_refresh_token()` says `rotates`, whatever
    /// the upstream does.
    fn claiming(inner: Arc<dyn RefreshExecutor>, rotates: bool) -> Arc<Self> {
        Arc::new(Self {
            inner,
            rotates,
            presented: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
        })
    }

    fn presented(&self) -> Vec<String> {
        self.presented.lock().unwrap().clone()
    }
}

#[async_trait]
impl RefreshExecutor for Recording {
    fn platform(&self) -> Platform {
        self.inner.platform()
    }

    fn rotates_refresh_token(&self) -> bool {
        self.rotates
    }

    async fn refresh(
        &self,
        account: &Account,
        ctx: &RefreshContext,
    ) -> Result<Credentials, ProviderError> {
        self.presented
            .lock()
            .unwrap()
            .push(ctx.refresh_token.expose().to_owned());
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let _in_flight = InFlight(&self.in_flight);
        self.inner.refresh(account, ctx).await
    }
}

/// An account repository whose whole content can be replaced at once (a
/// row deleted and re-created, an account deleted).
struct SwappableRepo {
    current: Mutex<Arc<InMemoryAccountRepository>>,
}

impl SwappableRepo {
    fn new(accounts: Vec<Account>) -> Self {
        Self {
            current: Mutex::new(Arc::new(InMemoryAccountRepository::with_accounts(accounts))),
        }
    }

    fn swap(&self, accounts: Vec<Account>) {
        *self.current.lock().unwrap() =
            Arc::new(InMemoryAccountRepository::with_accounts(accounts));
    }

    fn now(&self) -> Arc<InMemoryAccountRepository> {
        Arc::clone(&self.current.lock().unwrap())
    }
}

#[async_trait]
impl AccountRepository for SwappableRepo {
    async fn get(&self, id: AccountId) -> Result<Option<Account>, StorageError> {
        self.now().get(id).await
    }

    async fn insert(&self, account: Account) -> Result<Account, StorageError> {
        self.now().insert(account).await
    }

    async fn compare_and_set_credentials(
        &self,
        id: AccountId,
        expected: CasExpectation,
        credentials: &Credentials,
    ) -> Result<CasOutcome, StorageError> {
        self.now()
            .compare_and_set_credentials(id, expected, credentials)
            .await
    }

    async fn list_due(
        &self,
        before: DateTime<Utc>,
        after: Option<DueCursor>,
        limit: usize,
    ) -> Result<refresh_core::ports::DuePage, StorageError> {
        self.now().list_due(before, after, limit).await
    }

    async fn set_error(
        &self,
        id: AccountId,
        observed_version: u64,
        message: &str,
    ) -> Result<bool, StorageError> {
        self.now().set_error(id, observed_version, message).await
    }

    async fn clear_error(&self, id: AccountId) -> Result<(), StorageError> {
        self.now().clear_error(id).await
    }

    async fn clear_temp_unschedulable(&self, id: AccountId) -> Result<(), StorageError> {
        self.now().clear_temp_unschedulable(id).await
    }
}

fn swappable_backends(accounts: Vec<Account>) -> Backends<SwappableRepo> {
    Backends::over(SwappableRepo::new(accounts))
}

// ---------------------------------------------------------------------------
// Step 1: the claim store is required; no claim, no request
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn step_01_a_failed_claim_insert_means_nothing_is_sent_even_lock_free() {
    let b = Backends::new([expired_account(ID)]);
    let executor = b.executor(Platform::Anthropic);
    b.lock
        .faults
        .fail_always("try_acquire", StorageErrorKind::Unavailable);
    b.claims
        .faults
        .fail_always("acquire", StorageErrorKind::Unavailable);
    let lock_free = b.process(
        LockStrategy::single(b.lock.clone()).allow_lock_free(),
        FlowConfig::default(),
    );

    for flow in [lock_free, b.local_process()] {
        let outcome = refresh_stored(&flow, &b, ID, &executor).await;
        assert!(
            matches!(outcome, Err(FlowError::Claim { .. })),
            "{outcome:?}"
        );
    }
    assert_eq!(b.upstream.calls(), 0, "no claim, no request");
    // Each flow retries once with the same id (acquire is idempotent).
    assert_eq!(b.claim_calls("acquire"), 4);
    assert!(b.claims.inner().is_empty());
}

#[tokio::test(start_paused = true)]
async fn step_01_a_claim_insert_that_never_answers_is_retried_before_anything_is_sent() {
    let b = Backends::new([expired_account(ID)]);
    let executor = b.executor(Platform::Anthropic);
    let claims = HookedClaims::new(b.claims.clone());
    // The insert commits, then its answer never comes.
    claims.after_acquire.arm_forever();
    let config = FlowConfig::default();
    let flow = process_with_claims(&b, claims.clone(), config.clone());

    let started = Instant::now();
    let outcome = tokio::time::timeout(
        Duration::from_secs(600),
        refresh_stored(&flow, &b, ID, &executor),
    )
    .await
    .expect("the flow gives up on a silent claim store");

    // Nothing is sent on the unacknowledged insert: the flow waits out the
    // storage deadline, retries with the same claim id, and only the
    // acknowledged retry (the store finds the holding its own) sends.
    assert!(
        matches!(outcome, Ok(RefreshOutcome::Refreshed { .. })),
        "{outcome:?}"
    );
    assert!(
        started.elapsed() >= config.storage_timeout,
        "the silent insert is bounded by the storage deadline"
    );
    assert_eq!(b.claim_calls("acquire"), 2);
    assert_eq!(
        b.upstream.calls(),
        1,
        "one request, after the acknowledged retry"
    );
    assert_eq!(b.upstream.reuses(), 0);
}

#[tokio::test(start_paused = true)]
async fn step_01_flows_sharing_one_claim_store_present_the_token_once() {
    let b = Backends::new([expired_account(ID)]);
    let executor = b.executor(Platform::Anthropic);
    let flows: Vec<RefreshFlow> = (0..4).map(|_| b.local_process()).collect();
    b.upstream.hold_responses();
    let first = spawn_refresh(&flows[0], &b.stored(ID).await, &executor);
    calls_reach(&b.upstream, 1).await;

    for flow in &flows[1..] {
        let outcome = refresh_stored(flow, &b, ID, &executor).await;
        assert!(is_held_elsewhere(&outcome), "{outcome:?}");
    }
    b.upstream.release(1);
    let stored = refreshed_account(finish(first).await);
    assert_eq!(refresh_token(&stored), "rt-1-1");
    assert_eq!(b.upstream.calls(), 1);
    assert_eq!(b.upstream.reuses(), 0);
}

// ---------------------------------------------------------------------------
// Step 2: the key is the generation (platform, SHA-256 of the token)
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn step_02_one_grant_imported_into_two_accounts_holds_one_claim() {
    let shared = credentials(ID, EXPIRED);
    let b = Backends::new([
        Account::oauth(1, Platform::Anthropic, shared.clone()),
        Account::oauth(2, Platform::Anthropic, shared),
    ]);
    let executor = b.executor(Platform::Anthropic);
    let (a, other) = (b.local_process(), b.local_process());
    b.upstream.hold_responses();
    let a_run = spawn_refresh(&a, &b.stored(1).await, &executor);
    calls_reach(&b.upstream, 1).await;

    let outcome = refresh_stored(&other, &b, 2, &executor).await;

    assert!(
        is_held_elsewhere(&outcome),
        "account 2 holds the same refresh token: {outcome:?}"
    );
    assert_eq!(b.upstream.calls(), 1, "the grant was presented once");
    let claims = b.claims.inner().snapshot();
    assert_eq!(claims.len(), 1, "one claim for the generation");
    assert_eq!(claims[0].account_id, AccountId(1));
    b.upstream.release(1);
    refreshed_account(finish(a_run).await);
}

#[tokio::test(start_paused = true)]
async fn step_02_the_claim_key_is_the_platform_and_the_sha256_of_the_exact_token_bytes() {
    let b = Backends::new([
        expired_account(ID),
        // The same token text on another platform is another generation.
        Account::oauth(2, Platform::OpenAi, credentials(ID, EXPIRED)),
    ]);
    let claude = b.executor(Platform::Anthropic);
    let openai = b.executor(Platform::OpenAi);
    b.upstream.hold_responses();
    let a_run = spawn_refresh(&b.local_process(), &b.stored(ID).await, &claude);
    calls_reach(&b.upstream, 1).await;

    let claims = b.claims.inner().snapshot();
    assert_eq!(claims.len(), 1);
    assert_eq!(
        claims[0].key,
        ClaimKey::new(Platform::Anthropic, Fingerprint::of_bytes(b"rt-1-0"))
    );
    assert_eq!(claims[0].key.fingerprint.to_hex(), SHA256_OF_RT_1_0);

    let other = spawn_refresh(&b.local_process(), &b.stored(2).await, &openai);
    calls_reach(&b.upstream, 2).await;
    assert_eq!(
        b.claims.inner().len(),
        2,
        "a claim per (platform, fingerprint)"
    );
    b.upstream.open();
    refreshed_account(finish(a_run).await);
    refreshed_account(finish(other).await);
}

// ---------------------------------------------------------------------------
// Step 3: acquire is atomic, with the store's clock
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn step_03_concurrent_acquires_of_a_free_generation_have_exactly_one_winner() {
    let store = Arc::new(InMemoryClaimStore::single_process());
    let key = claim_key("rt-race");
    let barrier = Arc::new(Barrier::new(64));
    let attempts: Vec<_> = (0..64)
        .map(|n| {
            let (store, key, barrier) = (Arc::clone(&store), key.clone(), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                store
                    .acquire(
                        &key,
                        &ClaimId::random(),
                        AccountId(n),
                        0,
                        Duration::from_secs(900),
                    )
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut winners = Vec::new();
    for attempt in attempts {
        if let ClaimAcquire::Won(id) = attempt.await.unwrap() {
            winners.push(id);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one winner");
    let held = store.get(&key).await.unwrap().unwrap();
    assert_eq!(held.id, winners[0]);
}

#[tokio::test(start_paused = true)]
async fn step_03_a_live_claim_is_never_taken_over() {
    let b = Backends::new([expired_account(ID)]);
    let executor = b.executor(Platform::Anthropic);
    b.upstream.hold_responses();
    let a_run = spawn_refresh(&b.local_process(), &b.stored(ID).await, &executor);
    calls_reach(&b.upstream, 1).await;
    let held = b.claim_of("rt-1-0").await.expect("A's claim");

    // Near the end of its life, but live.
    tokio::time::advance(Duration::from_secs(50)).await;
    let outcome = refresh_stored(&b.local_process(), &b, ID, &executor).await;
    assert!(is_held_elsewhere(&outcome), "{outcome:?}");
    match b
        .claims
        .inner()
        .acquire(
            &claim_key("rt-1-0"),
            &ClaimId::random(),
            AccountId(9),
            0,
            Duration::from_secs(900),
        )
        .await
        .unwrap()
    {
        ClaimAcquire::Existing(existing) => assert_eq!(existing.id, held.id),
        ClaimAcquire::Won(_) => panic!("a live claim was taken over"),
    }
    assert_eq!(b.upstream.calls(), 1);

    b.upstream.release(1);
    refreshed_account(finish(a_run).await);
    assert_eq!(b.upstream.reuses(), 0);
}

#[tokio::test(start_paused = true)]
async fn step_03_claim_expiry_is_judged_by_the_store_clock_alone() {
    let mut b = Backends::new([expired_account(ID)]);
    let store_clock = Arc::new(ManualClock::new(t0()));
    b.claims = memory_claims(&(Arc::clone(&store_clock) as Arc<dyn Clock>));
    let executor = b.executor(Platform::Anthropic);
    let quarantine = FlowConfig::default().quarantine;
    b.upstream.fail_next(ProviderError::ServerError {
        status: Some(503),
        reason: "upstream status 503".into(),
    });
    let outcome = refresh_stored(&b.local_process(), &b, ID, &executor).await;
    assert!(
        matches!(outcome, Err(FlowError::Upstream { .. })),
        "{outcome:?}"
    );

    // An hour passes for the flows and the lock; none for the store.
    tokio::time::advance(Duration::from_secs(3600)).await;
    let outcome = refresh_stored(&b.local_process(), &b, ID, &executor).await;
    assert!(
        matches!(outcome, Err(FlowError::Quarantined { .. })),
        "the flows' clocks do not end the quarantine: {outcome:?}"
    );
    assert_eq!(b.upstream.calls(), 1);

    store_clock.advance(quarantine);
    let stored = refreshed_account(refresh_stored(&b.local_process(), &b, ID, &executor).await);
    assert_eq!(refresh_token(&stored), "rt-1-1");
    assert_eq!(b.upstream.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn step_03_a_holder_counts_its_claim_life_from_before_its_insert() {
    let b = Backends::new([expired_account(ID)]);
    let executor = b.executor(Platform::Anthropic);
    // The shortest claim life allowed: H + S + two storage calls = 100 s,
    // so a claim is sent on only while 90 s of it are left.
    let config = FlowConfig {
        claim_ttl: Duration::from_secs(100),
        ..FlowConfig::default()
    };
    let claims = HookedClaims::new(b.claims.clone());
    let flow = process_with_claims(&b, claims.clone(), config);
    claims.after_acquire.arm(0);
    let run = spawn_refresh(&flow, &b.stored(ID).await, &executor);

    // The insert is acknowledged 20 s after the store took it.
    claims
        .after_acquire
        .release_after(Duration::from_secs(20))
        .await;
    let outcome = finish(run).await;

    assert!(
        matches!(outcome, Err(FlowError::Claim { .. })),
        "{outcome:?}"
    );
    assert_eq!(b.upstream.calls(), 0, "80 s left < H + S: not sent");
    assert!(b.claims.inner().is_empty(), "the unused claim was removed");
}

// ---------------------------------------------------------------------------
// Step 4: every later operation is compare-and-act on the claim id
// ---------------------------------------------------------------------------

/// A's call is out; its claim is taken over by C (expired and re-won, as
/// after a long stall); then A's answer (or failure) comes back. Returns
/// A's outcome, C's claim id and the backends.
async fn a_holder_overtaken_mid_call(
    script: impl FnOnce(&FakeUpstream),
) -> (Outcome, ClaimId, Backends) {
    let b = Backends::new([expired_account(ID)]);
    let executor = b.executor(Platform::Anthropic);
    script(&b.upstream);
    b.upstream.hold_responses();
    let a_run = spawn_refresh(&b.local_process(), &b.stored(ID).await, &executor);
    calls_reach(&b.upstream, 1).await;
    let key = claim_key("rt-1-0");
    let a_claim = b.claim_of("rt-1-0").await.expect("A's claim");
    assert!(b.claims.inner().remove(&key, &a_claim.id).await.unwrap());
    let ClaimAcquire::Won(c_id) = b
        .claims
        .inner()
        .acquire(
            &key,
            &ClaimId::random(),
            AccountId(ID),
            0,
            Duration::from_secs(900),
        )
        .await
        .unwrap()
    else {
        panic!("C takes the free claim");
    };
    b.upstream.release(1);
    let outcome = finish(a_run).await;
    (outcome, c_id, b)
}

#[tokio::test(start_paused = true)]
async fn step_04_an_overtaken_holder_with_an_answer_is_left_with_the_fenced_write_only() {
    let (outcome, c_id, b) = a_holder_overtaken_mid_call(|_| {}).await;

    let stored = refreshed_account(outcome);
    assert_eq!(
        refresh_token(&stored),
        "rt-1-1",
        "the fenced write still lands"
    );
    let claim = b.claim_of("rt-1-0").await.expect("C's claim");
    assert_eq!(claim.id, c_id);
    assert_eq!(
        claim.state,
        ClaimState::Open,
        "A neither saved its answer into nor consumed C's holding"
    );
    assert_eq!(claim.answer, None);
}

#[tokio::test(start_paused = true)]
async fn step_04_an_overtaken_holder_cannot_quarantine_or_remove_the_new_holding() {
    for (error, what) in [
        (
            ProviderError::ServerError {
                status: Some(500),
                reason: "upstream status 500".into(),
            },
            "quarantine",
        ),
        (
            ProviderError::NotSent {
                reason: "connect refused".into(),
            },
            "remove",
        ),
    ] {
        let (outcome, c_id, b) = a_holder_overtaken_mid_call(|u| u.fail_next(error)).await;
        assert!(
            matches!(outcome, Err(FlowError::Upstream { .. })),
            "{what}: {outcome:?}"
        );
        let claim = b.claim_of("rt-1-0").await;
        let claim = claim.unwrap_or_else(|| panic!("{what}: A removed C's claim"));
        assert_eq!(claim.id, c_id, "{what}");
        assert_eq!(claim.state, ClaimState::Open, "{what}");
        assert_eq!(
            claim.remaining,
            Some(Duration::from_secs(900)),
            "{what}: C's expiry untouched"
        );
    }
}

#[tokio::test]
async fn step_04_claim_operations_with_another_id_change_nothing() {
    let store = InMemoryClaimStore::single_process();
    let key = claim_key("rt-x");
    let ClaimAcquire::Won(id) = store
        .acquire(
            &key,
            &ClaimId::random(),
            AccountId(1),
            0,
            Duration::from_secs(900),
        )
        .await
        .unwrap()
    else {
        panic!("free key");
    };
    let other = ClaimId::random();
    let answer = Credentials::new().with("access_token", "at-x");
    let day = Duration::from_secs(86_400);
    assert!(!store.extend(&key, &other, day).await.unwrap());
    assert!(!store.quarantine(&key, &other, day).await.unwrap());
    assert!(!store.save_answer(&key, &other, &answer).await.unwrap());
    assert!(!store.mark_consumed(&key, &other, day).await.unwrap());
    assert!(!store.remove(&key, &other).await.unwrap());
    let claim = store.get(&key).await.unwrap().unwrap();
    assert_eq!(
        (claim.id, claim.state, claim.answer),
        (id, ClaimState::Open, None)
    );
}

// ---------------------------------------------------------------------------
// Step 5: re-read after claiming
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn step_05_a_rotation_landing_between_the_read_and_the_claim_is_seen_by_the_reread() {
    let b = Backends::new([expired_account(ID)]);
    let executor = b.executor(Platform::Anthropic);
    let claims = HookedClaims::new(b.claims.clone());
    let (repo, now) = (b.repo.clone(), b.clock.now());
    claims.before_next_acquire(
        async move {
            overwrite(
                repo.inner().as_ref(),
                ID,
                &tokens("at-other", "rt-other", now, 3600),
            )
            .await;
        }
        .boxed(),
    );
    let flow = process_with_claims(&b, claims, FlowConfig::default());

    let outcome = refresh_stored(&flow, &b, ID, &executor).await;

    match outcome {
        Ok(RefreshOutcome::StillFresh { account }) => {
            assert_eq!(refresh_token(&account), "rt-other")
        }
        other => panic!("expected StillFresh, got {other:?}"),
    }
    assert_eq!(b.upstream.calls(), 0, "rt-1-0 was not presented");
    assert!(
        b.claims.inner().is_empty(),
        "the claim on rt-1-0 was dropped"
    );
}

#[tokio::test(start_paused = true)]
async fn step_05_after_a_relogin_between_the_read_and_the_claim_the_run_starts_over_with_the_new_token()
 {
    let b = Backends::new([expired_account(ID)]);
    let executor = Recording::new(b.executor(Platform::Anthropic));
    let claims = HookedClaims::new(b.claims.clone());
    let (repo, now) = (b.repo.clone(), b.clock.now());
    // The operator's re-login brings a token that is due already.
    claims.before_next_acquire(
        async move {
            overwrite(
                repo.inner().as_ref(),
                ID,
                &tokens("at-relogin", "rt-relogin", now, -1),
            )
            .await;
        }
        .boxed(),
    );
    let flow = process_with_claims(&b, claims, FlowConfig::default());
    let dyn_executor: Arc<dyn RefreshExecutor> = executor.clone();

    let stored = refreshed_account(refresh_stored(&flow, &b, ID, &dyn_executor).await);

    assert_eq!(executor.presented(), ["rt-relogin"]);
    assert_eq!(refresh_token(&stored), "rt-1-1");
    assert_eq!(
        b.claim_of("rt-1-0").await,
        None,
        "the old claim was dropped"
    );
    assert_eq!(
        b.claim_state("rt-relogin").await,
        Some(ClaimState::Consumed)
    );
}

// ---------------------------------------------------------------------------
// Step 6: a hard deadline H, and a claim life of at least H + S
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn step_06_the_token_request_is_aborted_at_the_hard_deadline() {
    let b = Backends::new([expired_account(ID)]);
    let executor = Recording::new(b.executor(Platform::Anthropic));
    let dyn_executor: Arc<dyn RefreshExecutor> = executor.clone();
    let config = FlowConfig::default();
    let flow = b.local_process();
    b.upstream.hold_responses();

    let started = Instant::now();
    let run = spawn_refresh(&flow, &b.stored(ID).await, &dyn_executor);
    let outcome = tokio::time::timeout(config.upstream_timeout * 2, run)
        .await
        .expect("the flow stops waiting at H")
        .unwrap();

    assert!(
        matches!(
            outcome,
            Err(FlowError::Upstream {
                source: ProviderError::Ambiguous { .. },
                ..
            })
        ),
        "{outcome:?}"
    );
    assert_eq!(started.elapsed(), config.upstream_timeout);
    assert_eq!(
        executor.in_flight.load(Ordering::SeqCst),
        0,
        "the call's task was aborted, not left running"
    );
    assert_eq!(b.claim_state("rt-1-0").await, Some(ClaimState::Quarantined));
    b.upstream.open();
    let_time_pass(config.upstream_timeout).await;
    assert_eq!(b.stored(ID).await.credentials_version, 0, "no late answer");
}

#[tokio::test(start_paused = true)]
async fn step_06_a_pause_after_claiming_that_eats_the_send_margin_means_nothing_is_sent() {
    let stall = Arc::new(Stall::default());
    let repo = HookedRepository {
        inner: Arc::new(InMemoryAccountRepository::with_accounts([expired_account(
            ID,
        )])),
        hooks: Arc::clone(&stall),
    };
    let b = Backends::over(repo);
    let executor = b.executor(Platform::Anthropic);
    let flow = b.process(
        LockStrategy::process_local(),
        FlowConfig {
            claim_ttl: Duration::from_secs(100),
            ..FlowConfig::default()
        },
    );
    let snapshot = b.stored(ID).await;
    // The snapshot drives the claim; the process then stalls 20 s on the
    // re-read after claiming (the run's first read).
    stall.arm(0);
    let run = spawn_refresh(&flow, &snapshot, &executor);
    stall.release_after(Duration::from_secs(20)).await;
    let outcome = finish(run).await;

    assert!(
        matches!(outcome, Err(FlowError::Claim { .. })),
        "{outcome:?}"
    );
    assert_eq!(b.upstream.calls(), 0, "80 s of claim left < H + S = 90 s");
    assert!(b.claims.inner().is_empty());
}

#[test]
fn step_06_a_claim_life_shorter_than_the_deadline_plus_grace_is_refused_when_built() {
    let b = Backends::on_clock([], Arc::new(refresh_core::SystemClock));
    let defaults = FlowConfig::default();
    let config = FlowConfig {
        claim_ttl: defaults.upstream_timeout + defaults.upstream_grace - Duration::from_secs(1),
        ..defaults
    };
    let built = b
        .flow_builder(LockStrategy::process_local())
        .config(config)
        .build();
    assert!(
        matches!(
            built,
            Err(ConfigError::Invalid {
                field: "claim_ttl",
                ..
            })
        ),
        "{:?}",
        built.err()
    );
}

// ---------------------------------------------------------------------------
// Step 7: the default outcome is "maybe consumed, keep"
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn step_07_a_5xx_after_the_rotation_keeps_the_claim_and_nobody_presents_the_token_again() {
    let b = Backends::new([expired_account(ID)]);
    let executor = b.executor(Platform::Anthropic);
    b.upstream
        .fail_after_rotation_next(ProviderError::ServerError {
            status: Some(502),
            reason: "upstream status 502".into(),
        });
    let outcome = refresh_stored(&b.local_process(), &b, ID, &executor).await;
    assert!(
        matches!(outcome, Err(FlowError::Upstream { .. })),
        "{outcome:?}"
    );
    assert_eq!(b.claim_state("rt-1-0").await, Some(ClaimState::Quarantined));

    for _ in 0..3 {
        let outcome = refresh_stored(&b.local_process(), &b, ID, &executor).await;
        assert!(
            matches!(outcome, Err(FlowError::Quarantined { .. })),
            "{outcome:?}"
        );
    }
    assert_eq!(b.upstream.calls(), 1);
    assert_eq!(b.upstream.reuses(), 0, "the consumed token was not re-sent");
}

fn server_error(status: u16) -> ProviderError {
    ProviderError::ServerError {
        status: Some(status),
        reason: format!("upstream status {status}"),
    }
}

#[tokio::test(start_paused = true)]
async fn step_07_outcomes_that_may_have_consumed_the_token_quarantine_its_claim() {
    let quarantine = FlowConfig::default().quarantine;
    for error in [
        ProviderError::Ambiguous {
            reason: "reset after sending".into(),
        },
        server_error(500),
        server_error(503),
        ProviderError::ServerError {
            status: Some(400),
            reason: "upstream temporarily_unavailable".into(),
        },
        ProviderError::UnexpectedStatus {
            status: 418,
            code: None,
        },
        ProviderError::InvalidResponse {
            reason: "200 with an HTML body".into(),
        },
        ProviderError::ProjectDiscovery {
            reason: "no project".into(),
        },
    ] {
        let b = Backends::new([expired_account(ID)]);
        let executor = b.executor(Platform::Anthropic);
        b.upstream.fail_next(error.clone());
        let outcome = refresh_stored(&b.local_process(), &b, ID, &executor).await;
        assert!(
            matches!(outcome, Err(FlowError::Upstream { .. })),
            "{error:?}: {outcome:?}"
        );
        let claim = b.claim_of("rt-1-0").await;
        let claim = claim.unwrap_or_else(|| panic!("{error:?}: the claim was dropped"));
        assert_eq!(claim.state, ClaimState::Quarantined, "{error:?}");
        assert_eq!(claim.remaining, Some(quarantine), "{error:?}");
        let outcome = refresh_stored(&b.local_process(), &b, ID, &executor).await;
        assert!(
            matches!(outcome, Err(FlowError::Quarantined { .. })),
            "{error:?}: {outcome:?}"
        );
        assert_eq!(b.upstream.calls(), 1, "{error:?}");
    }
}

/// A 429 with `Retry-After` holds the generation until then (by the
/// claim store's clock, at most `quarantine`): no process, this one or
/// another, sends the token before the upstream said it may.
#[tokio::test(start_paused = true)]
async fn step_07_a_429_with_retry_after_holds_the_generation_until_then() {
    let mut b = Backends::new([expired_account(ID)]);
    let store_clock = Arc::new(ManualClock::new(t0()));
    b.claims = memory_claims(&(Arc::clone(&store_clock) as Arc<dyn Clock>));
    let executor = b.executor(Platform::Anthropic);
    let after = Duration::from_secs(30);
    b.upstream.fail_next(ProviderError::RateLimited {
        retry_after: Some(after),
    });
    let outcome = refresh_stored(&b.local_process(), &b, ID, &executor).await;
    assert!(
        matches!(outcome, Err(FlowError::Upstream { .. })),
        "{outcome:?}"
    );
    let claim = b.claim_of("rt-1-0").await.expect("the claim is kept");
    assert_eq!(claim.state, ClaimState::Quarantined);
    assert_eq!(claim.remaining, Some(after));
    let outcome = refresh_stored(&b.local_process(), &b, ID, &executor).await;
    assert!(
        matches!(outcome, Err(FlowError::Quarantined { .. })),
        "another process waits for Retry-After: {outcome:?}"
    );
    assert_eq!(b.upstream.calls(), 1);

    store_clock.advance(after);
    let stored = refreshed_account(refresh_stored(&b.local_process(), &b, ID, &executor).await);
    assert_eq!(refresh_token(&stored), "rt-1-1");
    assert_eq!(b.upstream.calls(), 2);
}

/// A `Retry-After` longer than `quarantine` holds the generation for
/// `quarantine` only (a hostile or broken upstream cannot park an account
/// for days).
#[tokio::test(start_paused = true)]
async fn step_07_a_retry_after_is_held_at_most_for_the_quarantine() {
    let b = Backends::new([expired_account(ID)]);
    let executor = b.executor(Platform::Anthropic);
    let quarantine = FlowConfig::default().quarantine;
    b.upstream.fail_next(ProviderError::RateLimited {
        retry_after: Some(quarantine * 100),
    });
    let _ = refresh_stored(&b.local_process(), &b, ID, &executor).await;
    let claim = b.claim_of("rt-1-0").await.expect("the claim is kept");
    assert_eq!(claim.remaining, Some(quarantine));
}

#[tokio::test(start_paused = true)]
async fn step_07_outcomes_that_provably_did_not_consume_the_token_release_its_claim() {
    for error in [
        ProviderError::NotSent {
            reason: "connect refused".into(),
        },
        ProviderError::RateLimited { retry_after: None },
        ProviderError::MissingRefreshToken,
        ProviderError::Configuration {
            reason: "no OAuth client configured".into(),
        },
        ProviderError::InvalidClient {
            code: OAuthErrorCode::new("invalid_client"),
            description: None,
        },
        ProviderError::AccessDenied { description: None },
        ProviderError::UnexpectedStatus {
            status: 400,
            code: Some(OAuthErrorCode::new("invalid_request")),
        },
    ] {
        let b = Backends::new([expired_account(ID)]);
        let executor = b.executor(Platform::Anthropic);
        b.upstream.fail_next(error.clone());
        let outcome = refresh_stored(&b.local_process(), &b, ID, &executor).await;
        assert!(
            matches!(outcome, Err(FlowError::Upstream { .. })),
            "{error:?}: {outcome:?}"
        );
        assert_eq!(
            b.claim_of("rt-1-0").await,
            None,
            "{error:?}: claim released"
        );
        let stored = refreshed_account(refresh_stored(&b.local_process(), &b, ID, &executor).await);
        assert_eq!(
            refresh_token(&stored),
            "rt-1-1",
            "{error:?}: the next flow sends at once"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn step_07_invalid_grant_marks_the_generation_dead() {
    let b = Backends::new([expired_account(ID)]);
    let executor = b.executor(Platform::Anthropic);
    b.upstream.fail_next(ProviderError::InvalidGrant {
        code: OAuthErrorCode::new("invalid_grant"),
        description: None,
    });
    let outcome = refresh_stored(&b.local_process(), &b, ID, &executor).await;
    assert!(
        matches!(
            outcome,
            Err(FlowError::Upstream {
                source: ProviderError::InvalidGrant { .. },
                ..
            })
        ),
        "{outcome:?}"
    );
    assert_eq!(b.claim_state("rt-1-0").await, Some(ClaimState::Consumed));
    let outcome = refresh_stored(&b.local_process(), &b, ID, &executor).await;
    assert!(
        matches!(outcome, Err(FlowError::CredentialsRegressed { .. })),
        "{outcome:?}"
    );
    assert_eq!(b.upstream.calls(), 1);
}

/// An executor whose request reaches the upstream, then panics on the
/// answer (a plugin bug).
struct PanicsAfterSending(Arc<FakeUpstream>);

#[async_trait]
impl RefreshExecutor for PanicsAfterSending {
    fn platform(&self) -> Platform {
        Platform::Anthropic
    }

    async fn refresh(
        &self,
        account: &Account,
        ctx: &RefreshContext,
    ) -> Result<Credentials, ProviderError> {
        let _ = self.0.redeem(account.id, ctx.refresh_token.expose()).await;
        panic!("plugin bug while reading the answer");
    }
}

#[tokio::test(start_paused = true)]
async fn step_07_an_executor_panic_after_sending_quarantines_the_claim() {
    let b = Backends::new([expired_account(ID)]);
    let panicking: Arc<dyn RefreshExecutor> = Arc::new(PanicsAfterSending(b.upstream.clone()));
    let executor = b.executor(Platform::Anthropic);
    let outcome = refresh_stored(&b.local_process(), &b, ID, &panicking).await;
    assert!(
        matches!(
            outcome,
            Err(FlowError::Upstream {
                source: ProviderError::Ambiguous { .. },
                ..
            })
        ),
        "{outcome:?}"
    );
    assert_eq!(b.claim_state("rt-1-0").await, Some(ClaimState::Quarantined));
    let outcome = refresh_stored(&b.local_process(), &b, ID, &executor).await;
    assert!(
        matches!(outcome, Err(FlowError::Quarantined { .. })),
        "{outcome:?}"
    );
    assert_eq!(b.upstream.reuses(), 0);
}

#[tokio::test(start_paused = true)]
async fn step_07_callers_of_a_quarantined_generation_fail_fast_with_its_end() {
    let b = Backends::new([expired_account(ID)]);
    let executor = b.executor(Platform::Anthropic);
    let flow = b.local_process();
    b.upstream.fail_next(server_error(503));
    let _ = refresh_stored(&flow, &b, ID, &executor).await;
    let ends =
        b.clock.now() + chrono::Duration::from_std(FlowConfig::default().quarantine).unwrap();

    let provider = TokenProvider::builder(flow, b.registry(&[Platform::Anthropic])).build();
    let started = Instant::now();
    let account = b.stored(ID).await;
    let result = within("the token request", provider.access_token(&account)).await;

    assert_eq!(started.elapsed(), Duration::ZERO, "no waiting");
    match result {
        Err(TokenError::Refresh {
            source: FlowError::Quarantined { until, .. },
            ..
        }) => assert_eq!(until, ends),
        other => panic!("expected a quarantine, got {other:?}"),
    }
    assert_eq!(b.upstream.calls(), 1);
}

// ---------------------------------------------------------------------------
// Step 8: the answer into the claim first; fenced write; consumed, not gone
// ---------------------------------------------------------------------------

/// Repository hooks that note the state of one claim whenever a credential
/// write reaches the repository.
struct ClaimWatch {
    claims: OnceLock<Arc<InMemoryClaimStore>>,
    seen: Mutex<Vec<Option<ClaimState>>>,
}

#[async_trait]
impl RepositoryHooks for ClaimWatch {
    async fn around_compare_and_set(
        &self,
        inner: &dyn AccountRepository,
        id: AccountId,
        expected: CasExpectation,
        credentials: &Credentials,
    ) -> Result<CasOutcome, StorageError> {
        let claims = self.claims.get().expect("claims wired");
        let state = claims.get(&claim_key("rt-1-0")).await?.map(|c| c.state);
        self.seen.lock().unwrap().push(state);
        inner
            .compare_and_set_credentials(id, expected, credentials)
            .await
    }
}

#[tokio::test(start_paused = true)]
async fn step_08_the_answer_is_in_the_claim_before_the_account_is_written() {
    let repo = HookedRepository {
        inner: Arc::new(InMemoryAccountRepository::with_accounts([expired_account(
            ID,
        )])),
        hooks: ClaimWatch {
            claims: OnceLock::new(),
            seen: Mutex::new(Vec::new()),
        },
    };
    let b = Backends::over(repo);
    assert!(
        b.repo
            .inner()
            .hooks
            .claims
            .set(Arc::clone(b.claims.inner()))
            .is_ok()
    );
    let executor = b.executor(Platform::Anthropic);

    refreshed_account(refresh_stored(&b.local_process(), &b, ID, &executor).await);

    let seen = b.repo.inner().hooks.seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [Some(ClaimState::Answered)],
        "answer saved, then the write"
    );
    assert_eq!(b.claim_state("rt-1-0").await, Some(ClaimState::Consumed));
}

/// A's write fails every attempt after the answer was saved into the claim.
async fn an_answer_left_in_the_claim(b: &Backends) {
    let executor = b.executor(Platform::Anthropic);
    let attempts = FlowConfig::default().persist_attempts as usize;
    b.repo.faults.fail_next(
        "compare_and_set_credentials",
        attempts,
        StorageErrorKind::Unavailable,
    );
    let outcome = refresh_stored(&b.local_process(), b, ID, &executor).await;
    assert!(
        matches!(
            outcome,
            Err(FlowError::NotPersisted {
                answer_saved: true,
                ..
            })
        ),
        "{outcome:?}"
    );
    assert_eq!(b.claim_state("rt-1-0").await, Some(ClaimState::Answered));
}

#[tokio::test(start_paused = true)]
async fn step_08_an_answered_claim_never_expires_is_never_purged_and_is_applied_not_taken_over() {
    let b = Backends::new([expired_account(ID)]);
    let executor = b.executor(Platform::Anthropic);
    an_answer_left_in_the_claim(&b).await;

    // Twice the claim's life; the answer's access token (1 h) still valid.
    let_time_pass(FlowConfig::default().claim_ttl * 2).await;
    assert_eq!(b.claims.inner().purge(1000).await.unwrap(), 0);
    let claim = b.claim_of("rt-1-0").await.expect("still there");
    assert_eq!((claim.state, claim.remaining), (ClaimState::Answered, None));

    let outcome = refresh_stored(&b.local_process(), &b, ID, &executor).await;
    match outcome {
        Ok(RefreshOutcome::Refreshed {
            account,
            recovered: true,
        }) => assert_eq!(access_token(&account), "at-1-1"),
        other => panic!("expected the answer applied, got {other:?}"),
    }
    assert_eq!(b.upstream.calls(), 1, "applied, not presented again");
    assert_eq!(b.upstream.reuses(), 0);
}

#[tokio::test(start_paused = true)]
async fn step_08_the_write_is_fenced_on_the_fingerprint_of_the_token_it_replaces() {
    let b = swappable_backends(vec![expired_account(ID)]);
    let executor = b.executor(Platform::Anthropic);
    b.upstream.hold_responses();
    let run = spawn_refresh(&b.local_process(), &b.stored(ID).await, &executor);
    calls_reach(&b.upstream, 1).await;

    // The row is deleted and re-created at the same id and version 0 with
    // another grant.
    let reimported = Account::oauth(
        ID,
        Platform::Anthropic,
        tokens("at-reimported", "rt-reimported", b.clock.now(), 3600),
    );
    b.repo.inner().swap(vec![reimported]);
    b.upstream.release(1);
    let outcome = finish(run).await;

    assert!(
        matches!(outcome, Ok(RefreshOutcome::StillFresh { .. })),
        "{outcome:?}"
    );
    let stored = b.stored(ID).await;
    assert_eq!(refresh_token(&stored), "rt-reimported", "not overwritten");
    assert_eq!(stored.credentials_version, 0);
}

#[tokio::test(start_paused = true)]
async fn step_08_a_consumed_token_written_back_is_refused_as_regressed_and_marks_the_account() {
    let b = Backends::new([expired_account(ID)]);
    let executor = b.executor(Platform::Anthropic);
    let flow = b.local_process();
    refreshed_account(refresh_stored(&flow, &b, ID, &executor).await);
    assert_eq!(b.claim_state("rt-1-0").await, Some(ClaimState::Consumed));

    // A backup from before the refresh is restored.
    b.overwrite(ID, &credentials(ID, EXPIRED)).await;
    let outcome = refresh_stored(&flow, &b, ID, &executor).await;
    assert!(
        matches!(outcome, Err(FlowError::CredentialsRegressed { .. })),
        "{outcome:?}"
    );
    let refresher = BackgroundRefresher::builder(flow, b.registry(&[Platform::Anthropic]))
        .build()
        .unwrap();
    let report = within("the background cycle", refresher.run_once()).await;
    assert_eq!(report.marked_error, 1);
    assert_eq!(b.stored(ID).await.status, AccountStatus::Error);
    assert_eq!(b.upstream.calls(), 1, "the consumed token was never sent");
    assert_eq!(b.upstream.reuses(), 0);
}

#[tokio::test(start_paused = true)]
async fn step_08_a_consumed_generation_is_kept_for_the_configured_horizon() {
    let b = Backends::new([expired_account(ID)]);
    let executor = b.executor(Platform::Anthropic);
    let horizon = Duration::from_secs(30 * 86_400);
    assert_eq!(FlowConfig::default().consumed_horizon, horizon);
    refreshed_account(refresh_stored(&b.local_process(), &b, ID, &executor).await);
    let claim = b.claim_of("rt-1-0").await.expect("consumed claim");
    assert_eq!(
        (claim.state, claim.remaining),
        (ClaimState::Consumed, Some(horizon))
    );

    let_time_pass(horizon - Duration::from_secs(86_400)).await;
    assert_eq!(b.claims.inner().purge(1000).await.unwrap(), 0);
    assert_eq!(b.claim_state("rt-1-0").await, Some(ClaimState::Consumed));
    let_time_pass(Duration::from_secs(2 * 86_400)).await;
    assert_eq!(
        b.claims.inner().purge(1000).await.unwrap(),
        1,
        "then purged"
    );
}

#[tokio::test(start_paused = true)]
async fn step_08_an_answer_for_a_deleted_account_stays_in_the_claim() {
    let b = swappable_backends(vec![expired_account(ID)]);
    let executor = b.executor(Platform::Anthropic);
    b.upstream.hold_responses();
    let run = spawn_refresh(&b.local_process(), &b.stored(ID).await, &executor);
    calls_reach(&b.upstream, 1).await;
    b.repo.inner().swap(Vec::new());
    b.upstream.release(1);

    let outcome = finish(run).await;

    assert!(
        matches!(outcome, Err(FlowError::AccountNotFound { .. })),
        "{outcome:?}"
    );
    let claim = b.claim_of("rt-1-0").await.expect("the claim stays");
    assert_eq!(claim.state, ClaimState::Answered);
    let answer = claim.answer.expect("with the answer");
    assert_eq!(answer.access_token().unwrap().expose(), "at-1-1");
    assert_eq!(answer.refresh_token().unwrap().expose(), "rt-1-1");
}

// ---------------------------------------------------------------------------
// Step 9: a flow whose insert fails reads the existing claim
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn step_09_an_answer_found_in_the_claim_is_applied_by_the_fenced_write_then_consumed() {
    let b = Backends::new([expired_account(ID)]);
    let executor = b.executor(Platform::Anthropic);
    an_answer_left_in_the_claim(&b).await;

    let outcome = refresh_stored(&b.local_process(), &b, ID, &executor).await;

    let stored = refreshed_account(outcome);
    assert_eq!(
        (access_token(&stored), refresh_token(&stored)),
        ("at-1-1".to_owned(), "rt-1-1".to_owned())
    );
    assert_eq!(stored.credentials_version, 1);
    assert_eq!(b.claim_state("rt-1-0").await, Some(ClaimState::Consumed));
    assert_eq!(b.upstream.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn step_09_an_abandoned_empty_claim_is_held_elsewhere_until_it_expires_then_taken_over() {
    let b = Backends::new([expired_account(ID)]);
    let executor = b.executor(Platform::Anthropic);
    let claim_ttl = FlowConfig::default().claim_ttl;
    // A holder crashed right after claiming.
    let won = b
        .claims
        .inner()
        .acquire(
            &claim_key("rt-1-0"),
            &ClaimId::random(),
            AccountId(ID),
            0,
            claim_ttl,
        )
        .await
        .unwrap();
    assert!(matches!(won, ClaimAcquire::Won(_)));

    let_time_pass(claim_ttl - Duration::from_secs(1)).await;
    let outcome = refresh_stored(&b.local_process(), &b, ID, &executor).await;
    assert!(is_held_elsewhere(&outcome), "{outcome:?}");
    assert_eq!(b.upstream.calls(), 0);

    let_time_pass(Duration::from_secs(1)).await;
    let stored = refreshed_account(refresh_stored(&b.local_process(), &b, ID, &executor).await);
    assert_eq!(refresh_token(&stored), "rt-1-1");
    assert_eq!(b.upstream.calls(), 1);
}

// ---------------------------------------------------------------------------
// Step 10: a holder with an unsaved answer never gives up
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn step_10_a_holder_with_an_unsaved_answer_keeps_claim_and_lease_until_the_write_lands() {
    let b = Backends::new([expired_account(ID)]);
    let executor = b.executor(Platform::Anthropic);
    let lease_key = common::key(&Platform::Anthropic, ID);
    let locked = || b.process(LockStrategy::single(b.lock.clone()), FlowConfig::default());
    b.fail_writes();
    b.claims
        .faults
        .fail_always("save_answer", StorageErrorKind::Unavailable);
    let outcome = refresh_stored(&locked(), &b, ID, &executor).await;
    assert!(
        matches!(
            outcome,
            Err(FlowError::NotPersisted {
                answer_saved: false,
                ..
            })
        ),
        "{outcome:?}"
    );

    // An hour: four claim lives, twenty lease TTLs.
    for _ in 0..12 {
        let_time_pass(Duration::from_secs(5 * 60)).await;
        assert!(!b.lease_is_free(&lease_key).await, "the lease is kept");
        let outcome = refresh_stored(&locked(), &b, ID, &executor).await;
        assert!(is_held_elsewhere(&outcome), "lease: {outcome:?}");
        let outcome = refresh_stored(&b.local_process(), &b, ID, &executor).await;
        assert!(is_held_elsewhere(&outcome), "claim: {outcome:?}");
    }
    assert_eq!(b.upstream.calls(), 1);

    b.repo.faults.heal();
    b.claims.faults.heal();
    let_time_pass(RESCUE_ROUND).await;
    let stored = b.stored(ID).await;
    assert_eq!(refresh_token(&stored), "rt-1-1", "the answer landed");
    assert_eq!(b.claim_state("rt-1-0").await, Some(ClaimState::Consumed));
    assert!(
        b.lease_is_free(&lease_key).await,
        "and only then the lease went"
    );
    assert_eq!(b.upstream.reuses(), 0);
}

#[tokio::test(start_paused = true)]
async fn step_10_a_claim_known_to_hold_no_answer_is_shortened_to_the_quarantine() {
    let b = Backends::new([expired_account(ID)]);
    let executor = b.executor(Platform::Anthropic);
    let config = FlowConfig {
        quarantine: Duration::from_secs(120),
        ..FlowConfig::default()
    };
    let flow = b.process(LockStrategy::process_local(), config.clone());
    b.upstream.fail_next(server_error(503));
    let _ = refresh_stored(&flow, &b, ID, &executor).await;
    let claim = b.claim_of("rt-1-0").await.expect("quarantined claim");
    assert_eq!(
        (claim.state, claim.remaining),
        (ClaimState::Quarantined, Some(config.quarantine)),
        "not the initial {:?}",
        config.claim_ttl
    );

    let_time_pass(config.quarantine).await;
    let stored = refreshed_account(refresh_stored(&flow, &b, ID, &executor).await);
    assert_eq!(refresh_token(&stored), "rt-1-1");
}

// ---------------------------------------------------------------------------
// Step 11: the executor contract
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn step_11_the_executor_is_handed_the_claimed_token_not_the_callers_snapshot() {
    let b = Backends::new([expired_account(ID)]);
    let executor = Recording::new(b.executor(Platform::Anthropic));
    let dyn_executor: Arc<dyn RefreshExecutor> = executor.clone();
    let mut snapshot = b.stored(ID).await;
    snapshot
        .credentials
        .insert("refresh_token", "rt-stale-snapshot");

    let flow = b.local_process();
    let outcome = within(
        "the refresh",
        flow.refresh_if_needed(&snapshot, &dyn_executor, WINDOW),
    )
    .await;

    refreshed_account(outcome);
    assert_eq!(executor.presented(), ["rt-1-0"]);
    assert_eq!(b.claim_state("rt-1-0").await, Some(ClaimState::Consumed));
    assert_eq!(b.upstream.reuses(), 0);
}

/// The smallest HTTP/1.1 executor for the suite's loopback
/// [`TokenEndpoint`](refresh_core::testing::TokenEndpoint): one token
/// request per connection, classified by the shared parser, then (when
/// `follow_up`) a profile lookup whose failure is recorded in the
/// credentials. `retries_after_sending` plants the bug step 11 forbids: a
/// second token request after a 5xx.
struct TinyHttpExecutor {
    addr: String,
    follow_up: bool,
    retries_after_sending: bool,
    follow_up_failure_is_the_error: bool,
}

/// Status, `Retry-After` and body of one response read to EOF.
type RawAnswer = (u16, Option<String>, Vec<u8>);

fn parse_raw_answer(raw: &[u8]) -> Option<RawAnswer> {
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let retry_after = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("retry-after"))
        .map(|(_, value)| value.trim().to_owned());
    Some((status, retry_after, raw[head_end + 4..].to_vec()))
}

impl TinyHttpExecutor {
    async fn exchange(
        &self,
        head: &str,
        body: &str,
        deadline: Instant,
    ) -> Result<RawAnswer, ProviderError> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let io = async {
            let mut stream = tokio::net::TcpStream::connect(&self.addr)
                .await
                .map_err(|e| ProviderError::transport(false, format!("connect: {}", e.kind())))?;
            let request = format!(
                "{head} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                self.addr,
                body.len()
            );
            stream
                .write_all(request.as_bytes())
                .await
                .map_err(|e| ProviderError::transport(true, format!("write: {}", e.kind())))?;
            let mut raw = Vec::new();
            stream
                .read_to_end(&mut raw)
                .await
                .map_err(|e| ProviderError::transport(true, format!("read: {}", e.kind())))?;
            parse_raw_answer(&raw)
                .ok_or_else(|| ProviderError::transport(true, "no complete response"))
        };
        tokio::time::timeout_at(deadline, io)
            .await
            .unwrap_or_else(|_| Err(ProviderError::transport(true, "no answer by the deadline")))
    }

    async fn token_request(
        &self,
        token: &Secret,
        deadline: Instant,
    ) -> Result<TokenGrant, ProviderError> {
        let body =
            serde_json::json!({"grant_type": "refresh_token", "refresh_token": token.expose()});
        let (status, retry_after, body) = self
            .exchange("POST /oauth/token", &body.to_string(), deadline)
            .await?;
        TokenGrant::from_token_response(status, retry_after.as_deref(), &body)
    }
}

#[async_trait]
impl RefreshExecutor for TinyHttpExecutor {
    fn platform(&self) -> Platform {
        Platform::Anthropic
    }

    async fn refresh(
        &self,
        account: &Account,
        ctx: &RefreshContext,
    ) -> Result<Credentials, ProviderError> {
        if ctx.refresh_token.is_blank() {
            return Err(ProviderError::MissingRefreshToken);
        }
        let grant = match self.token_request(&ctx.refresh_token, ctx.deadline).await {
            Err(ProviderError::ServerError { .. }) if self.retries_after_sending => {
                self.token_request(&ctx.refresh_token, ctx.deadline).await?
            }
            other => other?,
        };
        let mut creds = grant.to_credentials(
            ctx.now(),
            ExpiryRule::EXACT,
            GrantFields {
                write_expires_in: false,
                write_type_and_scope: true,
            },
        );
        if self.follow_up || self.follow_up_failure_is_the_error {
            let profile = self.exchange("GET /v1/profile", "", ctx.deadline).await;
            let failed = !matches!(profile, Ok((200..=299, _, _)));
            if failed && self.follow_up_failure_is_the_error {
                return Err(ProviderError::ServerError {
                    status: None,
                    reason: "profile lookup failed".into(),
                });
            }
            creds.insert("profile_lookup_failed", failed);
        }
        Ok(creds.merged_over(&account.credentials))
    }
}

/// Runs the endpoint suite over [`TinyHttpExecutor`]s built by `tune`; the
/// panic message when it fails.
async fn endpoint_suite_failure(tune: fn(&mut TinyHttpExecutor)) -> Option<String> {
    let suite = token_endpoint_mapping_suite(
        move |base: &str| -> Arc<dyn RefreshExecutor> {
            let mut executor = TinyHttpExecutor {
                addr: base.trim_start_matches("http://").to_owned(),
                follow_up: false,
                retries_after_sending: false,
                follow_up_failure_is_the_error: false,
            };
            tune(&mut executor);
            Arc::new(executor)
        },
        |id: AccountId| std::future::ready(account_expiring(id.get(), Some(60))),
        t0(),
    );
    panic_message(tokio::spawn(suite).await)
}

fn panic_message(joined: Result<(), tokio::task::JoinError>) -> Option<String> {
    let payload = joined.err()?.into_panic();
    Some(
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default(),
    )
}

#[tokio::test]
async fn step_11_the_endpoint_suite_passes_an_executor_that_keeps_the_contract() {
    assert_eq!(endpoint_suite_failure(|_| {}).await, None);
    assert_eq!(endpoint_suite_failure(|e| e.follow_up = true).await, None);
}

#[tokio::test]
async fn step_11_the_endpoint_suite_fails_an_executor_that_retries_after_sending() {
    let message = endpoint_suite_failure(|e| e.retries_after_sending = true)
        .await
        .expect("the suite must fail a retry after sending");
    assert!(
        message.contains("server_error_is_reported_once_not_retried"),
        "{message}"
    );
}

#[tokio::test]
async fn step_11_the_endpoint_suite_fails_an_executor_whose_follow_up_failure_is_the_refresh_error()
{
    let message = endpoint_suite_failure(|e| e.follow_up_failure_is_the_error = true)
        .await
        .expect("the suite must fail a follow-up failure reported as the refresh's");
    assert!(
        message.contains("success_answer_is_returned_merged_over_the_account"),
        "{message}"
    );
}

/// A [`RotatingExecutor`] that presents the refresh token stored in the
/// account instead of the claimed `ctx.refresh_token`.
struct PresentsTheStoredToken(RotatingExecutor);

#[async_trait]
impl RefreshExecutor for PresentsTheStoredToken {
    fn platform(&self) -> Platform {
        self.0.platform()
    }

    async fn refresh(
        &self,
        account: &Account,
        ctx: &RefreshContext,
    ) -> Result<Credentials, ProviderError> {
        let stored = account
            .credentials
            .refresh_token()
            .unwrap_or_else(|| ctx.refresh_token.clone());
        let ctx = RefreshContext::new(stored, Arc::clone(&ctx.clock), ctx.deadline);
        self.0.refresh(account, &ctx).await
    }
}

#[tokio::test]
async fn step_11_the_executor_suite_fails_an_executor_that_presents_another_token_than_the_claimed_one()
 {
    // A fresh upstream per run: the suite's fixture ids repeat.
    let rotating =
        || RotatingExecutor::new(Platform::Anthropic, FakeUpstream::new(), ISSUED_LIFETIME);
    let fixture = |id: AccountId| std::future::ready(account_expiring(id.get(), Some(60)));
    let good: Arc<dyn RefreshExecutor> = Arc::new(rotating());
    assert_eq!(
        panic_message(tokio::spawn(refresh_executor_suite(good, fixture, t0())).await),
        None
    );
    let bad: Arc<dyn RefreshExecutor> = Arc::new(PresentsTheStoredToken(rotating()));
    let message = panic_message(tokio::spawn(refresh_executor_suite(bad, fixture, t0())).await)
        .expect("the suite must fail an executor that ignores ctx.refresh_token");
    assert!(
        message.contains("refresh_presents_the_ctx_refresh_token"),
        "{message}"
    );
}

// ---------------------------------------------------------------------------
// Step 12: non-rotating providers
// ---------------------------------------------------------------------------

fn non_rotating_backends() -> Backends {
    let b = Backends::new([expired_account(ID)]);
    b.upstream.keep_refresh_tokens();
    b
}

#[tokio::test(start_paused = true)]
async fn step_12_a_maybe_consumed_outcome_of_a_non_rotating_account_is_not_quarantined() {
    let b = non_rotating_backends();
    let executor = b.executor(Platform::Anthropic);
    assert!(!executor.rotates_refresh_token());
    b.upstream.fail_next(server_error(503));
    let outcome = refresh_stored(&b.local_process(), &b, ID, &executor).await;
    assert!(
        matches!(outcome, Err(FlowError::Upstream { .. })),
        "{outcome:?}"
    );
    assert_eq!(b.claim_of("rt-1-0").await, None, "no quarantine");

    let stored = refreshed_account(refresh_stored(&b.local_process(), &b, ID, &executor).await);
    assert_eq!(access_token(&stored), "at-1-1");
    assert_eq!(refresh_token(&stored), "rt-1-0", "kept by the upstream");
}

#[tokio::test(start_paused = true)]
async fn step_12_an_answer_of_a_non_rotating_account_applies_only_at_its_base_version() {
    let b = non_rotating_backends();
    let executor = b.executor(Platform::Anthropic);
    an_answer_left_in_the_claim(&b).await;
    // Another writer stores a newer access token (version 1) that expires
    // long before the claim's answer would.
    b.overwrite(ID, &tokens("at-newer", "rt-1-0", b.clock.now(), 600))
        .await;
    let_time_pass(Duration::from_secs(20 * 60)).await;

    let stored = refreshed_account(refresh_stored(&b.local_process(), &b, ID, &executor).await);

    assert_eq!(
        access_token(&stored),
        "at-1-2",
        "refreshed, the stale answer dropped"
    );
    assert_eq!(stored.credentials_version, 2);
    assert_eq!(b.claims.inner().len(), 0);
}

#[tokio::test(start_paused = true)]
async fn step_12_a_stale_claim_of_a_non_rotating_account_does_not_block_a_newer_version() {
    let b = non_rotating_backends();
    let executor = b.executor(Platform::Anthropic);
    // A claim taken at version 0 by a holder that vanished.
    b.claims
        .inner()
        .acquire(
            &claim_key("rt-1-0"),
            &ClaimId::random(),
            AccountId(ID),
            0,
            Duration::from_secs(900),
        )
        .await
        .unwrap();
    b.overwrite(ID, &tokens("at-newer", "rt-1-0", b.clock.now(), -1))
        .await;

    let stored = refreshed_account(refresh_stored(&b.local_process(), &b, ID, &executor).await);

    assert_eq!(stored.credentials_version, 2);
    assert_eq!(
        b.upstream.calls(),
        1,
        "no wait for the stale claim's expiry"
    );
}

#[tokio::test(start_paused = true)]
async fn step_12_due_ness_is_checked_again_on_the_reread_after_claiming() {
    let b = non_rotating_backends();
    let executor = b.executor(Platform::Anthropic);
    let claims = HookedClaims::new(b.claims.clone());
    let (repo, now) = (b.repo.clone(), b.clock.now());
    // Another process's refresh lands between our read and our claim: same
    // refresh token (non-rotating), a fresh access token.
    claims.before_next_acquire(
        async move {
            overwrite(
                repo.inner().as_ref(),
                ID,
                &tokens("at-other", "rt-1-0", now, 3600),
            )
            .await;
        }
        .boxed(),
    );
    let flow = process_with_claims(&b, claims, FlowConfig::default());

    let outcome = refresh_stored(&flow, &b, ID, &executor).await;

    match outcome {
        Ok(RefreshOutcome::StillFresh { account }) => {
            assert_eq!(access_token(&account), "at-other")
        }
        other => panic!("expected StillFresh, got {other:?}"),
    }
    assert_eq!(b.upstream.calls(), 0, "not refreshed twice");
    assert!(b.claims.inner().is_empty());
}

#[tokio::test(start_paused = true)]
async fn step_12_an_answer_that_does_rotate_is_handled_as_rotating() {
    let b = Backends::new([expired_account(ID)]);
    // The executor says "non-rotating"; the upstream rotates anyway.
    let inner: Arc<dyn RefreshExecutor> = Arc::new(RotatingExecutor::new(
        Platform::Anthropic,
        b.upstream.clone(),
        ISSUED_LIFETIME,
    ));
    let executor: Arc<dyn RefreshExecutor> = Recording::claiming(inner, false);
    let flow = b.local_process();
    let stored = refreshed_account(refresh_stored(&flow, &b, ID, &executor).await);
    assert_eq!(refresh_token(&stored), "rt-1-1");
    assert_eq!(b.claim_state("rt-1-0").await, Some(ClaimState::Consumed));

    b.overwrite(ID, &credentials(ID, EXPIRED)).await;
    let outcome = refresh_stored(&flow, &b, ID, &executor).await;
    assert!(
        matches!(outcome, Err(FlowError::CredentialsRegressed { .. })),
        "{outcome:?}"
    );
    assert_eq!(b.upstream.reuses(), 0);
}
