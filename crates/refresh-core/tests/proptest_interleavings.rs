//! Property test: random interleavings keep DESIGN.md invariants 1 and 2.
//!
//! Two "processes" (independent `RefreshFlow` + `TokenProvider` stacks with
//! their own single flights and local caches) share one account repository,
//! one recovery store, one token cache and two lease stores: a "Redis" lock
//! that can lose all its state and a "database" lock, held together with
//! [`LockStrategy::stacked`] (the strategy documented to keep invariant 1
//! when Redis fails or loses its state; `layered` holds only Redis when
//! Redis answers, so a flush lets a second process in, and this test fails
//! with it). Each process reaches the lock stores and the repository through
//! its own [`Faulty`] wrappers (its own connections).
//!
//! A schedule is a random sequence of steps: a caller on process `p` calls
//! `refresh_if_needed` (due window or forced) or `access_token` for account
//! `a`; held upstream responses are released; time passes (past the lease
//! TTL too); lease extension starts failing; a dead process leaves a lease
//! behind (it lapses after the TTL); Redis is down for one process, both lock
//! stores are down for one process, or Redis is flushed; the next N fenced
//! writes or re-reads fail with a retryable kind; the upstream answers one
//! request with a transient error; a caller gives up (its task is aborted);
//! another component writes a non-token credential key (the `project_id`
//! backfill of REFERENCE.md §7.3: a fenced partial update that never touches
//! the tokens, which the flow's persist step explicitly tolerates).
//! Everything runs on a current-thread runtime with paused time built inside
//! the case, and only the schedule moves time, so each case is
//! deterministic.
//!
//! After the schedule every fault is healed, all work drains, and each
//! account gets one more refresh. Checked:
//! - invariant 1: the fake upstream never saw a refresh token twice
//!   (`reuses() == 0`);
//! - invariant 2: the refresh token the upstream issued last is stored, or
//!   waits in a recovery record that the next flow persists without calling
//!   the upstream; the extra refresh then presents it successfully;
//! - in passing, invariant 8: `access_token` never returns a token that had
//!   expired before the call started.
//!
//! What the model does not do, and why: the fake upstream rotates when a
//! request arrives. A response held past the flow's `upstream_timeout` is
//! dropped (`Ambiguous`) although the upstream rotated, and nothing can
//! redeem that rotation; so time advances only after held responses that
//! would otherwise time out are released. For the same reason the schedule
//! never stalls a flow between its upstream call and its persist for longer
//! than the lease (the design keeps the lease through `lease_ttl >
//! upstream_timeout + persist budget` and the lease keeper, not against
//! stalls): time moves in ticks shorter than a third of the TTL, so the lease
//! keeper runs, and a live flow always ends (or times out) within the TTL even
//! when extension fails.

mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use common::{anthropic_executor, oauth_account, refresh_token_of, tokio_clock};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use refresh_core::memory::{
    InMemoryAccountRepository, InMemoryRecoveryStore, InMemoryRefreshLock, InMemoryTokenCache,
};
use refresh_core::ports::{CasOutcome, Lease};
use refresh_core::provider::REFRESH_SKEW;
use refresh_core::testing::{FakeUpstream, Faulty};
use refresh_core::{
    Account, AccountId, AccountRepository, Clock, ExecutorRegistry, FlowConfig, FlowError,
    LockStrategy, Platform, ProviderError, RecoveryStore, RefreshExecutor, RefreshFlow, RefreshKey,
    RefreshLock, RefreshOutcome, StorageError, StorageErrorKind, TokenProvider,
};
use tokio::task::JoinHandle;
use tokio::time::Instant;

const ACCOUNTS: [i64; 2] = [1, 2];
/// Seconds until the seeded tokens expire: one due at once (within the
/// 3-minute skew), one due after two minutes.
const SEEDED_EXPIRY: [i64; 2] = [60, 300];
const STACKS: usize = 2;
const LEASE_TTL: Duration = Duration::from_secs(30);
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(20);
/// Time moves in ticks well below `LEASE_TTL / 3` (the keeper's period).
const TICK: Duration = Duration::from_secs(2);
/// Short enough that advancing time makes refreshed tokens due again.
const TOKEN_LIFETIME: Duration = Duration::from_secs(200);
/// A window that makes every account due: a forced refresh.
const FORCE: Duration = Duration::from_secs(24 * 3600);
/// Scheduler turns granted to spawned work after each step.
const SETTLE_YIELDS: usize = 64;

fn flow_config() -> FlowConfig {
    FlowConfig {
        lease_ttl: LEASE_TTL,
        upstream_timeout: UPSTREAM_TIMEOUT,
        persist_attempts: 3,
        persist_attempt_timeout: Duration::from_secs(1),
        persist_backoff: Duration::from_millis(200),
        release_timeout: Duration::from_secs(1),
        storage_timeout: Duration::from_secs(1),
    }
}

/// A lease store that can lose all its state at once, like Redis after a
/// `FLUSHALL` or a restart without persistence.
struct FlushableLock {
    clock: Arc<dyn Clock>,
    current: RwLock<Arc<InMemoryRefreshLock>>,
}

impl FlushableLock {
    fn new(clock: Arc<dyn Clock>) -> Self {
        let current = RwLock::new(Arc::new(InMemoryRefreshLock::new(Arc::clone(&clock))));
        Self { clock, current }
    }

    fn flush(&self) {
        let fresh = Arc::new(InMemoryRefreshLock::new(Arc::clone(&self.clock)));
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = fresh;
    }

    fn current(&self) -> Arc<InMemoryRefreshLock> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }
}

#[async_trait]
impl RefreshLock for FlushableLock {
    fn name(&self) -> &'static str {
        "redis-model"
    }

    async fn try_acquire(
        &self,
        key: &RefreshKey,
        ttl: Duration,
    ) -> Result<Option<Lease>, StorageError> {
        self.current().try_acquire(key, ttl).await
    }

    async fn extend(&self, lease: &Lease, ttl: Duration) -> Result<bool, StorageError> {
        self.current().extend(lease, ttl).await
    }

    async fn release(&self, lease: &Lease) -> Result<bool, StorageError> {
        self.current().release(lease).await
    }
}

#[derive(Debug, Clone, Copy)]
enum Op {
    /// `refresh_if_needed` with the 3-minute window.
    RefreshIfDue,
    /// `refresh_if_needed` with a window that makes the account due.
    ForceRefresh,
    /// `TokenProvider::access_token`.
    AccessToken,
}

#[derive(Debug, Clone, Copy)]
enum Layer {
    Redis,
    Database,
    Both,
}

#[derive(Debug, Clone)]
enum Step {
    Call {
        stack: usize,
        account: usize,
        op: Op,
    },
    /// Lets `n` held upstream responses go (surplus lets later ones through).
    Release(usize),
    /// Time passes, in ticks.
    Advance { secs: u64 },
    /// Lease extension fails from now on for one process.
    ExtendFails { stack: usize, layer: Layer },
    /// A dead process holds the lease of an account until it lapses.
    GhostLease { account: usize, layer: Layer },
    /// The next `n` Redis acquisitions of one process fail.
    RedisDown { stack: usize, n: usize },
    /// The next acquisition of one process fails on both lock stores.
    LocksDown { stack: usize },
    /// The next lease release on Redis of one process fails (the lease
    /// lingers until it lapses).
    ReleaseFails { stack: usize },
    /// Redis loses every lease.
    RedisFlush,
    /// The next `n` fenced writes fail with a retryable kind.
    PersistFails { n: usize, kind: StorageErrorKind },
    /// The next `n` account reads fail.
    ReadsFail { n: usize },
    /// The upstream answers the next request with a 503 (before rotating).
    UpstreamFails,
    /// A running caller gives up.
    Abort { pick: usize },
    /// A fenced write of a non-token credential key (`project_id`
    /// backfill), bumping `credentials_version` without rotating anything.
    BackfillWrite { account: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        Just(Op::RefreshIfDue),
        Just(Op::ForceRefresh),
        Just(Op::AccessToken)
    ]
}

fn layer() -> impl Strategy<Value = Layer> {
    prop_oneof![Just(Layer::Redis), Just(Layer::Database), Just(Layer::Both)]
}

fn retryable_kind() -> impl Strategy<Value = StorageErrorKind> {
    prop_oneof![
        Just(StorageErrorKind::Unavailable),
        Just(StorageErrorKind::Timeout),
        Just(StorageErrorKind::Busy)
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let account = 0..ACCOUNTS.len();
    let stack = 0..STACKS;
    prop_oneof![
        10 => (stack.clone(), account.clone(), op()).prop_map(|(stack, account, op)| Step::Call { stack, account, op }),
        5 => (1usize..=4).prop_map(Step::Release),
        3 => (1u64..=45).prop_map(|secs| Step::Advance { secs }),
        1 => (stack.clone(), layer()).prop_map(|(stack, layer)| Step::ExtendFails { stack, layer }),
        1 => (account, layer()).prop_map(|(account, layer)| Step::GhostLease { account, layer }),
        1 => (stack.clone(), 1usize..=2).prop_map(|(stack, n)| Step::RedisDown { stack, n }),
        1 => stack.clone().prop_map(|stack| Step::LocksDown { stack }),
        1 => stack.prop_map(|stack| Step::ReleaseFails { stack }),
        1 => Just(Step::RedisFlush),
        2 => (1usize..=4, retryable_kind()).prop_map(|(n, kind)| Step::PersistFails { n, kind }),
        1 => (1usize..=2).prop_map(|n| Step::ReadsFail { n }),
        1 => Just(Step::UpstreamFails),
        1 => (0usize..16).prop_map(|pick| Step::Abort { pick }),
        1 => (0..ACCOUNTS.len()).prop_map(|account| Step::BackfillWrite { account }),
    ]
}

struct Stack {
    flow: RefreshFlow,
    provider: TokenProvider,
    redis: Arc<Faulty<FlushableLock>>,
    database: Arc<Faulty<InMemoryRefreshLock>>,
}

struct World {
    clock: Arc<dyn Clock>,
    upstream: Arc<FakeUpstream>,
    executor: Arc<dyn RefreshExecutor>,
    accounts: Arc<InMemoryAccountRepository>,
    repo: Arc<Faulty<InMemoryAccountRepository>>,
    recovery: Arc<InMemoryRecoveryStore>,
    redis: Arc<FlushableLock>,
    database: Arc<InMemoryRefreshLock>,
    stacks: Vec<Stack>,
    tasks: Vec<JoinHandle<()>>,
    /// Tokens handed out that had expired before the call started.
    expired_handouts: Arc<Mutex<Vec<String>>>,
    /// Upstream requests seen so far.
    seen_calls: u64,
    /// Released permits no response has used yet.
    credit: usize,
    /// Arrival instants of the responses the gate holds, oldest first.
    held: VecDeque<Instant>,
    /// Transient failures scripted on the upstream.
    upstream_failures: usize,
}

impl World {
    fn new() -> Self {
        let clock = tokio_clock();
        let upstream = FakeUpstream::new();
        upstream.hold_responses();
        let executor = anthropic_executor(&upstream, TOKEN_LIFETIME);
        let seeded = ACCOUNTS
            .iter()
            .zip(SEEDED_EXPIRY)
            .map(|(&id, expires_in)| oauth_account(id, Platform::Anthropic, expires_in));
        let accounts = Arc::new(InMemoryAccountRepository::with_accounts(seeded));
        let repo = Arc::new(Faulty::new(Arc::clone(&accounts)));
        let recovery = Arc::new(InMemoryRecoveryStore::new());
        let cache = Arc::new(InMemoryTokenCache::new(Arc::clone(&clock)));
        let redis = Arc::new(FlushableLock::new(Arc::clone(&clock)));
        let database = Arc::new(InMemoryRefreshLock::new(Arc::clone(&clock)));
        let stacks = (0..STACKS)
            .map(|_| {
                let redis_conn = Arc::new(Faulty::new(Arc::clone(&redis)));
                let database_conn = Arc::new(Faulty::new(Arc::clone(&database)));
                let locks = LockStrategy::stacked(
                    Arc::clone(&redis_conn) as _,
                    Arc::clone(&database_conn) as _,
                );
                let flow = RefreshFlow::builder(Arc::clone(&repo) as _, locks)
                    .recovery(Arc::clone(&recovery) as _)
                    .notifier(Arc::clone(&cache) as _)
                    .clock(Arc::clone(&clock))
                    .config(flow_config())
                    .build()
                    .expect("valid flow configuration");
                let provider = TokenProvider::builder(
                    flow.clone(),
                    ExecutorRegistry::new().with(Arc::clone(&executor)),
                )
                .shared_cache(Arc::clone(&cache) as _)
                .build();
                Stack {
                    flow,
                    provider,
                    redis: redis_conn,
                    database: database_conn,
                }
            })
            .collect();
        Self {
            clock,
            upstream,
            executor,
            accounts,
            repo,
            recovery,
            redis,
            database,
            stacks,
            tasks: Vec::new(),
            expired_handouts: Arc::default(),
            seen_calls: 0,
            credit: 0,
            held: VecDeque::new(),
            upstream_failures: 0,
        }
    }

    fn key(index: usize) -> RefreshKey {
        common::key(&Platform::Anthropic, ACCOUNTS[index])
    }

    /// The stored row, read past the fault wrapper.
    fn stored(&self, id: AccountId) -> Account {
        self.accounts
            .snapshot()
            .into_iter()
            .find(|a| a.id == id)
            .expect("account exists")
    }

    /// Lets spawned work run, then books the upstream requests that arrived.
    async fn settle(&mut self) {
        for _ in 0..SETTLE_YIELDS {
            tokio::task::yield_now().await;
        }
        let calls = self.upstream.calls();
        while self.seen_calls < calls {
            self.seen_calls += 1;
            if self.credit > 0 {
                self.credit -= 1;
            } else {
                self.held.push_back(Instant::now());
            }
        }
    }

    fn release(&mut self, n: usize) {
        self.upstream.release(n);
        for _ in 0..n {
            if self.held.pop_front().is_none() {
                self.credit += 1;
            }
        }
    }

    async fn advance(&mut self, total: Duration) {
        let mut left = total;
        while !left.is_zero() {
            let tick = left.min(TICK);
            // A held response must reach its flow before the flow's upstream
            // timeout: the upstream has already rotated.
            if self
                .held
                .front()
                .is_some_and(|oldest| Instant::now() + tick + TICK >= *oldest + UPSTREAM_TIMEOUT)
            {
                let n = self.held.len();
                self.release(n);
                self.settle().await;
            }
            tokio::time::advance(tick).await;
            self.settle().await;
            left -= tick;
        }
    }

    fn spawn_call(&mut self, stack: usize, account: usize, op: Op) {
        let snapshot = self.stored(AccountId(ACCOUNTS[account]));
        let s = &self.stacks[stack];
        let task = match op {
            Op::RefreshIfDue | Op::ForceRefresh => {
                let (flow, executor) = (s.flow.clone(), Arc::clone(&self.executor));
                let window = if matches!(op, Op::ForceRefresh) {
                    FORCE
                } else {
                    REFRESH_SKEW
                };
                tokio::spawn(async move {
                    let _ = flow.refresh_if_needed(&snapshot, &executor, window).await;
                })
            }
            Op::AccessToken => {
                let (provider, clock, expired) = (
                    s.provider.clone(),
                    Arc::clone(&self.clock),
                    Arc::clone(&self.expired_handouts),
                );
                tokio::spawn(async move {
                    let started = clock.now();
                    if let Ok(token) = provider.access_token(&snapshot).await
                        && token.expires_at.is_some_and(|at| at <= started)
                    {
                        expired
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(format!(
                                "account {} version {}",
                                token.account_id, token.version
                            ));
                    }
                })
            }
        };
        self.tasks.push(task);
    }

    fn lock_faults(&self, stack: usize, layer: Layer) -> Vec<&refresh_core::testing::FaultPlan> {
        let s = &self.stacks[stack];
        match layer {
            Layer::Redis => vec![&s.redis.faults],
            Layer::Database => vec![&s.database.faults],
            Layer::Both => vec![&s.redis.faults, &s.database.faults],
        }
    }

    async fn apply(&mut self, step: &Step) {
        match *step {
            Step::Call { stack, account, op } => self.spawn_call(stack, account, op),
            Step::Release(n) => self.release(n),
            Step::Advance { secs } => {
                self.advance(Duration::from_secs(secs)).await;
                return;
            }
            Step::ExtendFails { stack, layer } => {
                for faults in self.lock_faults(stack, layer) {
                    faults.fail_always("extend", StorageErrorKind::Unavailable);
                }
            }
            Step::GhostLease { account, layer } => {
                let key = Self::key(account);
                // A dead process took both leases, or only one of them (its
                // other acquisition timed out).
                let redis = matches!(layer, Layer::Redis | Layer::Both);
                let database = matches!(layer, Layer::Database | Layer::Both);
                let mut taken = true;
                if redis {
                    taken = matches!(self.redis.try_acquire(&key, LEASE_TTL).await, Ok(Some(_)));
                }
                if database && taken {
                    let _ = self.database.try_acquire(&key, LEASE_TTL).await;
                }
            }
            Step::RedisDown { stack, n } => {
                self.stacks[stack].redis.faults.fail_next(
                    "try_acquire",
                    n,
                    StorageErrorKind::Unavailable,
                );
            }
            Step::LocksDown { stack } => {
                // Both failures are consumed by the same acquisition, so a
                // process never ends up holding the Redis lease alone.
                for faults in self.lock_faults(stack, Layer::Both) {
                    faults.fail_next("try_acquire", 1, StorageErrorKind::Unavailable);
                }
            }
            Step::ReleaseFails { stack } => {
                self.stacks[stack]
                    .redis
                    .faults
                    .fail_next("release", 1, StorageErrorKind::Timeout);
            }
            Step::RedisFlush => self.redis.flush(),
            Step::PersistFails { n, kind } => {
                self.repo
                    .faults
                    .fail_next("compare_and_set_credentials", n, kind)
            }
            Step::ReadsFail { n } => {
                self.repo
                    .faults
                    .fail_next("get", n, StorageErrorKind::Unavailable)
            }
            Step::UpstreamFails => {
                self.upstream.fail_next(ProviderError::Transient {
                    status: Some(503),
                    reason: "injected".into(),
                });
                self.upstream_failures += 1;
            }
            Step::BackfillWrite { account } => {
                let stored = self.stored(AccountId(ACCOUNTS[account]));
                let credentials = stored.credentials.clone().with(
                    "project_id",
                    format!("project-{}", stored.credentials_version),
                );
                let _ = self
                    .accounts
                    .compare_and_set_credentials(
                        stored.id,
                        stored.credentials_version,
                        &credentials,
                    )
                    .await;
            }
            Step::Abort { pick } => {
                let running: Vec<&JoinHandle<()>> =
                    self.tasks.iter().filter(|t| !t.is_finished()).collect();
                if !running.is_empty() {
                    running[pick % running.len()].abort();
                }
            }
        }
        self.settle().await;
    }

    /// Heals every fault, lets every held response go, and lets time run
    /// until all work (detached flows included) has ended and every
    /// abandoned lease has lapsed.
    async fn heal_and_drain(&mut self) -> Result<(), String> {
        self.repo.faults.heal();
        for s in &self.stacks {
            s.redis.faults.heal();
            s.database.faults.heal();
        }
        self.upstream.open();
        let metrics = tokio::runtime::Handle::current().metrics();
        let mut waited = Duration::ZERO;
        loop {
            self.settle().await;
            if metrics.num_alive_tasks() == 0 && waited > LEASE_TTL {
                break;
            }
            if waited > Duration::from_secs(300) {
                return Err(format!(
                    "{} tasks still alive five minutes after healing: a flow or a waiter hangs",
                    metrics.num_alive_tasks()
                ));
            }
            tokio::time::advance(TICK).await;
            waited += TICK;
        }
        for task in self.tasks.drain(..) {
            if let Err(error) = task.await
                && !error.is_cancelled()
            {
                return Err(format!("a caller panicked: {error}"));
            }
        }
        Ok(())
    }

    fn stored_refresh_token(&self, id: AccountId) -> Option<String> {
        refresh_token_of(&self.stored(id))
    }

    /// The refresh token the upstream accepts now (the seeded one until the
    /// first rotation).
    fn issued_refresh_token(&self, id: AccountId) -> String {
        self.upstream
            .current_refresh_token(id)
            .unwrap_or_else(|| format!("rt-{id}-0"))
    }

    async fn check_invariants(&self) -> Result<(), String> {
        let expired = self
            .expired_handouts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if !expired.is_empty() {
            return Err(format!(
                "invariant 8: tokens handed out after they expired: {expired:?}"
            ));
        }
        if self.upstream.reuses() != 0 {
            return Err(format!(
                "invariant 1: {} refresh token(s) presented twice during the schedule",
                self.upstream.reuses()
            ));
        }
        let flow = &self.stacks[0].flow;
        for &raw in &ACCOUNTS {
            let id = AccountId(raw);
            let issued = self.issued_refresh_token(id);
            if self.stored_refresh_token(id).as_deref() != Some(issued.as_str()) {
                // The second branch of invariant 2: a recovery record holds
                // the rotation, and the next flow persists it without an
                // upstream call.
                let stored = self.stored(id);
                let record = self
                    .recovery
                    .load(id)
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| {
                        format!("invariant 2: account {id}: the upstream's last rotation is lost")
                    })?;
                // It applies while the account still holds the refresh token
                // the rotation consumed.
                let record_token = record.credentials.refresh_token();
                if record_token.as_ref().map(|t| t.expose()) != Some(issued.as_str())
                    || record.consumed_refresh_token != stored.credentials.refresh_token()
                {
                    return Err(format!(
                        "invariant 2: account {id}: the last rotation is neither stored nor in an applicable \
                         recovery record (record base version {}, stored version {})",
                        record.base_version, stored.credentials_version
                    ));
                }
                let calls = self.upstream.calls();
                let outcome = flow.refresh_if_needed(&stored, &self.executor, FORCE).await;
                if !matches!(
                    outcome,
                    Ok(RefreshOutcome::Refreshed {
                        recovered: true,
                        ..
                    })
                ) {
                    return Err(format!(
                        "invariant 2: account {id}: the recovery record was not persisted: {outcome:?}"
                    ));
                }
                if self.upstream.calls() != calls {
                    return Err(format!(
                        "invariant 2: account {id}: the upstream was called before the recovery record was persisted"
                    ));
                }
                if self.stored_refresh_token(id).as_deref() != Some(issued.as_str()) {
                    return Err(format!(
                        "invariant 2: account {id}: the recovered credentials are not the last rotation"
                    ));
                }
            }
            // One more refresh presents the stored (= last issued) token.
            let mut transient_left = self.upstream_failures;
            loop {
                let calls = self.upstream.calls();
                let outcome = flow
                    .refresh_if_needed(&self.stored(id), &self.executor, FORCE)
                    .await;
                match outcome {
                    Ok(RefreshOutcome::Refreshed {
                        recovered: false, ..
                    }) if self.upstream.calls() == calls + 1 => break,
                    Err(FlowError::Upstream {
                        source: ProviderError::Transient { .. },
                        ..
                    }) if transient_left > 0 => transient_left -= 1,
                    other => {
                        return Err(format!(
                            "account {id}: the final refresh did not present the stored token once: {other:?} \
                             ({} upstream calls)",
                            self.upstream.calls() - calls
                        ));
                    }
                }
            }
            let issued = self.issued_refresh_token(id);
            if self.stored_refresh_token(id).as_deref() != Some(issued.as_str()) {
                return Err(format!(
                    "invariant 2: account {id}: the final rotation is not stored"
                ));
            }
        }
        if self.upstream.reuses() != 0 {
            return Err(format!(
                "invariant 1: {} refresh token(s) presented twice by the final refreshes",
                self.upstream.reuses()
            ));
        }
        Ok(())
    }
}

async fn run_schedule(steps: &[Step]) -> Result<(), String> {
    let mut world = World::new();
    for step in steps {
        world.apply(step).await;
    }
    world.heal_and_drain().await?;
    world.check_invariants().await
}

/// A schedule the property test found, kept as a plain regression test: the
/// upstream rotates, every write fails (the credentials go to a recovery
/// record), then a `project_id` backfill (REFERENCE.md §7.3) writes a
/// non-token key with a fenced write, bumping the version. The next flow must persist the
/// record before calling the upstream (invariant 2); it must not present the
/// consumed refresh token again (invariant 1).
#[tokio::test(start_paused = true)]
async fn invariant_2_recovery_record_survives_a_non_token_credential_write() {
    let clock = tokio_clock();
    let upstream = FakeUpstream::new();
    let executor = anthropic_executor(&upstream, TOKEN_LIFETIME);
    let id = AccountId(1);
    let accounts = Arc::new(InMemoryAccountRepository::with_accounts([oauth_account(
        id.get(),
        Platform::Anthropic,
        60,
    )]));
    let repo = Arc::new(Faulty::new(Arc::clone(&accounts)));
    let recovery = Arc::new(InMemoryRecoveryStore::new());
    let flow = RefreshFlow::builder(
        Arc::clone(&repo) as _,
        LockStrategy::single(Arc::new(InMemoryRefreshLock::new(Arc::clone(&clock)))),
    )
    .recovery(Arc::clone(&recovery) as _)
    .clock(Arc::clone(&clock))
    .config(flow_config())
    .build()
    .expect("valid flow configuration");

    repo.faults
        .fail_always("compare_and_set_credentials", StorageErrorKind::Unavailable);
    let snapshot = accounts.get(id).await.unwrap().unwrap();
    let outcome = flow
        .refresh_if_needed(&snapshot, &executor, REFRESH_SKEW)
        .await;
    assert!(
        matches!(
            outcome,
            Err(FlowError::NotPersisted {
                recovery_saved: true,
                ..
            })
        ),
        "{outcome:?}"
    );
    assert_eq!(
        upstream.current_refresh_token(id).as_deref(),
        Some("rt-1-1")
    );
    repo.faults.heal();

    // The backfill: a fenced write of a non-token key; tokens untouched.
    let stored = accounts.get(id).await.unwrap().unwrap();
    let backfilled = stored.credentials.clone().with("project_id", "project-1");
    let write = accounts
        .compare_and_set_credentials(id, stored.credentials_version, &backfilled)
        .await
        .expect("in-memory write");
    assert!(matches!(write, CasOutcome::Applied(_)), "{write:?}");

    let calls = upstream.calls();
    let stored = accounts.get(id).await.unwrap().unwrap();
    let outcome = flow
        .refresh_if_needed(&stored, &executor, REFRESH_SKEW)
        .await;
    assert_eq!(
        upstream.reuses(),
        0,
        "invariant 1: the consumed refresh token was presented again ({outcome:?})"
    );
    assert!(
        matches!(
            outcome,
            Ok(RefreshOutcome::Refreshed {
                recovered: true,
                ..
            })
        ),
        "invariant 2: the recovery record was not persisted: {outcome:?}"
    );
    assert_eq!(
        upstream.calls(),
        calls,
        "the upstream was called before the record was persisted"
    );
    let stored = accounts.get(id).await.unwrap().unwrap();
    assert_eq!(
        refresh_token_of(&stored).as_deref(),
        Some("rt-1-1"),
        "invariant 2: the last rotation is not stored"
    );
    assert_eq!(
        stored.credentials.get("project_id"),
        Some(&serde_json::Value::from("project-1")),
        "the backfilled key survives"
    );
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 192,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(0x0a75_2024),
        ..ProptestConfig::default()
    })]

    #[test]
    fn proptest_random_interleavings_keep_invariants_1_and_2(steps in prop::collection::vec(step(), 1..48)) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("runtime");
        let result = runtime.block_on(run_schedule(&steps));
        prop_assert!(result.is_ok(), "{}", result.unwrap_err());
    }
}
