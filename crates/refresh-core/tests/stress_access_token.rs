//! Stress test of the request path (DESIGN.md invariants 1, 2 and 8), over
//! every lock strategy.
//!
//! 64 tasks × 8 rounds call [`TokenProvider::access_token`] on 4 accounts
//! whose tokens expire during the test. The callers are spread over 3
//! independent "processes": each has its own `RefreshFlow` and
//! `TokenProvider` (own in-process caches and single flights) and its own
//! clock, a few seconds off the others; all share one account repository,
//! one token cache, the lock stores of the strategy and ONE generation-claim
//! store on the store's own clock, against a [`FakeUpstream`] that rotates
//! refresh tokens and counts every presentation of a consumed one.
//!
//! Each test runs one [`LockStrategy`]: `process_local` (no cross-process
//! lock at all), `single`, `layered` and `stacked`. The lock stores lose
//! every lease on every [`FLUSH_EVERY`]-th acquisition (a Redis `FLUSHALL`,
//! a lease table truncated), so leases are flushed while refreshes are in
//! flight and a second process gets in: under every strategy it is the
//! generation claim that keeps the token from being presented twice.
//!
//! Tokens live 10 minutes. Between rounds the clock moves 8 minutes, so every
//! account's token crosses the 3-minute refresh skew exactly once per round
//! while it is still valid, by every process's clock: the expected number of
//! upstream refreshes is accounts × rounds.
//!
//! Two variants: paused tokio time with a [`TokioClock`] on the
//! current-thread runtime (deterministic; tasks interleave at every await),
//! and a real two-worker runtime whose [`ManualClock`] is advanced between
//! rounds (true parallelism, no sleeps).

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use common::{OffsetClock, anthropic_executor, oauth_account, refresh_token_of, t0};
use refresh_core::memory::{
    InMemoryAccountRepository, InMemoryClaimStore, InMemoryRefreshLock, InMemoryTokenCache,
};
use refresh_core::ports::{Lease, ManualClock, TokioClock};
use refresh_core::provider::REFRESH_SKEW;
use refresh_core::testing::FakeUpstream;
use refresh_core::{
    AccessToken, Account, AccountId, AccountRepository, AccountStatus, ClaimState, Clock,
    ExecutorRegistry, LockStrategy, Platform, RefreshFlow, RefreshKey, RefreshLock, StorageError,
    TokenError, TokenProvider,
};
use tokio::sync::Barrier;

const TASKS: usize = 64;
const ROUNDS: usize = 8;
const ACCOUNTS: i64 = 4;
/// Clock offset of each process from the claim store's clock, in seconds:
/// small enough that a token stamped by one process is due but valid for
/// every other one at each round start.
const OFFSETS: [i64; 3] = [0, 7, -4];
/// Every this many lease acquisitions, a lock store first loses all its
/// leases.
const FLUSH_EVERY: u64 = 5;
/// Lifetime of every access token the fake upstream issues.
const LIFETIME: Duration = Duration::from_secs(10 * 60);
/// Clock movement between rounds: afterwards each token has
/// `REFRESH_SKEW − 1 min` (= 2 min) left, minus the time the previous round
/// took, give or take the process offsets: due, but still valid.
const ROUND_GAP: Duration = Duration::from_secs(LIFETIME.as_secs() - REFRESH_SKEW.as_secs() + 60);

/// An in-memory lease store that loses every lease on each
/// [`FLUSH_EVERY`]-th acquisition.
struct FlushingLock {
    clock: Arc<dyn Clock>,
    current: RwLock<Arc<InMemoryRefreshLock>>,
    acquisitions: AtomicU64,
}

impl FlushingLock {
    fn new(clock: &Arc<dyn Clock>) -> Self {
        Self {
            clock: Arc::clone(clock),
            current: RwLock::new(Arc::new(InMemoryRefreshLock::new(Arc::clone(clock)))),
            acquisitions: AtomicU64::new(0),
        }
    }

    fn current(&self) -> Arc<InMemoryRefreshLock> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }
}

#[async_trait]
impl RefreshLock for FlushingLock {
    fn name(&self) -> &'static str {
        "flushing-memory"
    }

    async fn try_acquire(
        &self,
        key: &RefreshKey,
        ttl: Duration,
    ) -> Result<Option<Lease>, StorageError> {
        if self.acquisitions.fetch_add(1, Ordering::SeqCst) % FLUSH_EVERY == FLUSH_EVERY - 1 {
            let fresh = Arc::new(InMemoryRefreshLock::new(Arc::clone(&self.clock)));
            *self.current.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        }
        self.current().try_acquire(key, ttl).await
    }

    async fn extend(&self, lease: &Lease, ttl: Duration) -> Result<bool, StorageError> {
        self.current().extend(lease, ttl).await
    }

    async fn release(&self, lease: &Lease) -> Result<bool, StorageError> {
        self.current().release(lease).await
    }
}

/// The lock stores each process reaches.
#[derive(Debug, Clone, Copy)]
enum Strategy {
    ProcessLocal,
    Single,
    Layered,
    Stacked,
}

/// How the test moves time between rounds.
enum Time {
    /// Paused tokio time read through a `TokioClock`.
    Paused,
    /// A manual clock on a real-time runtime.
    Manual(Arc<ManualClock>),
}

impl Time {
    async fn advance(&self, by: Duration) {
        match self {
            Self::Paused => tokio::time::advance(by).await,
            Self::Manual(clock) => clock.advance(by),
        }
    }
}

/// What one caller got in one round.
struct Served {
    task: usize,
    round: usize,
    account: AccountId,
    result: Result<AccessToken, TokenError>,
    /// The caller's process clock when the call returned.
    returned_at: DateTime<Utc>,
    /// The shared (store) clock when the call returned.
    returned_at_store: DateTime<Utc>,
}

struct Process {
    clock: Arc<dyn Clock>,
    provider: TokenProvider,
}

struct World {
    /// The claim store's (and the repository's, lock's, cache's) clock.
    clock: Arc<dyn Clock>,
    upstream: Arc<FakeUpstream>,
    repo: Arc<InMemoryAccountRepository>,
    claims: Arc<InMemoryClaimStore>,
    processes: Vec<Process>,
}

fn locks(
    strategy: Strategy,
    primary: &Arc<FlushingLock>,
    secondary: &Arc<FlushingLock>,
) -> LockStrategy {
    let (primary, secondary) = (Arc::clone(primary) as _, Arc::clone(secondary) as _);
    match strategy {
        Strategy::ProcessLocal => LockStrategy::process_local(),
        Strategy::Single => LockStrategy::single(primary),
        Strategy::Layered => LockStrategy::layered(primary, secondary),
        Strategy::Stacked => LockStrategy::stacked(primary, secondary),
    }
}

fn world(clock: Arc<dyn Clock>, strategy: Strategy) -> World {
    let upstream = FakeUpstream::new();
    let executor = anthropic_executor(&upstream, LIFETIME);
    // Every clock starts at T0: the seeded tokens live `LIFETIME` from now.
    assert_eq!(clock.now(), t0());
    let expires_in = i64::try_from(LIFETIME.as_secs()).expect("small duration");
    let accounts = (1..=ACCOUNTS).map(|id| oauth_account(id, Platform::Anthropic, expires_in));
    let repo = Arc::new(InMemoryAccountRepository::with_accounts(accounts));
    let primary = Arc::new(FlushingLock::new(&clock));
    let secondary = Arc::new(FlushingLock::new(&clock));
    let cache = Arc::new(InMemoryTokenCache::new(Arc::clone(&clock)));
    let claims = Arc::new(InMemoryClaimStore::new(Arc::clone(&clock)));
    let processes = OFFSETS
        .iter()
        .map(|&offset| {
            let own: Arc<dyn Clock> = OffsetClock::new(&clock, offset);
            let flow = RefreshFlow::builder(
                Arc::clone(&repo) as _,
                locks(strategy, &primary, &secondary),
                Arc::clone(&claims) as _,
            )
            .notifier(Arc::clone(&cache) as _)
            .clock(Arc::clone(&own))
            .build()
            .expect("valid flow configuration");
            let provider =
                TokenProvider::builder(flow, ExecutorRegistry::new().with(Arc::clone(&executor)))
                    .shared_cache(Arc::clone(&cache) as _)
                    .build();
            Process {
                clock: own,
                provider,
            }
        })
        .collect();
    World {
        clock,
        upstream,
        repo,
        claims,
        processes,
    }
}

async fn stored(repo: &InMemoryAccountRepository, id: AccountId) -> Account {
    repo.get(id)
        .await
        .expect("in-memory read")
        .expect("account exists")
}

/// Runs the rounds and checks every invariant. `latencies` are the upstream
/// latencies used in even and odd rounds. With `deterministic`, the test also
/// checks that the processes contended (for the lease, or for the claim
/// under `process_local`; the schedule is fixed under paused time, so this
/// cannot flake).
async fn stress(
    clock: Arc<dyn Clock>,
    time: Time,
    strategy: Strategy,
    latencies: [Duration; 2],
    deterministic: bool,
) {
    let w = world(clock, strategy);
    let ids: Vec<AccountId> = (1..=ACCOUNTS).map(AccountId).collect();
    let barrier = Arc::new(Barrier::new(TASKS + 1));

    let mut handles = Vec::with_capacity(TASKS);
    for task in 0..TASKS {
        let id = ids[task % ids.len()];
        let process = &w.processes[(task / ids.len()) % w.processes.len()];
        let provider = process.provider.clone();
        let (repo, clock, store_clock, barrier) = (
            Arc::clone(&w.repo),
            Arc::clone(&process.clock),
            Arc::clone(&w.clock),
            Arc::clone(&barrier),
        );
        let initial = stored(&w.repo, id).await;
        handles.push(tokio::spawn(async move {
            let mut served = Vec::with_capacity(ROUNDS);
            for round in 0..ROUNDS {
                barrier.wait().await;
                // Half the callers pass the row as just read, half a stale
                // snapshot from the start (version 0).
                let account = if task % 2 == 0 {
                    repo.get(id)
                        .await
                        .ok()
                        .flatten()
                        .unwrap_or_else(|| initial.clone())
                } else {
                    initial.clone()
                };
                let result = provider.access_token(&account).await;
                served.push(Served {
                    task,
                    round,
                    account: id,
                    result,
                    returned_at: clock.now(),
                    returned_at_store: store_clock.now(),
                });
                barrier.wait().await;
            }
            served
        }));
    }

    for round in 0..ROUNDS {
        w.upstream.set_latency(latencies[round % 2]);
        time.advance(ROUND_GAP).await;
        for &id in &ids {
            let expires_at = stored(&w.repo, id).await.expires_at.expect("known expiry");
            for (index, process) in w.processes.iter().enumerate() {
                let left = (expires_at - process.clock.now())
                    .to_std()
                    .expect("token still valid at round start");
                assert!(
                    !left.is_zero() && left <= REFRESH_SKEW,
                    "round {round}: account {id} should be due but valid for process {index}, {left:?} left"
                );
            }
        }
        barrier.wait().await; // round starts
        barrier.wait().await; // every caller of the round is served
        let expected = u64::try_from(ids.len() * (round + 1)).expect("small");
        assert_eq!(
            w.upstream.successes(),
            expected,
            "{strategy:?} round {round}: one refresh per expiry"
        );
        for &id in &ids {
            assert_eq!(
                w.upstream.current_refresh_token(id),
                Some(format!("rt-{id}-{}", round + 1)),
                "{strategy:?} round {round}: account {id} rotated exactly once per round"
            );
        }
    }

    let mut served = Vec::with_capacity(TASKS * ROUNDS);
    for handle in handles {
        served.extend(handle.await.expect("caller task"));
    }
    assert_eq!(served.len(), TASKS * ROUNDS);
    let mut fresh_per_round_and_account = vec![0usize; ROUNDS * ids.len()];
    for s in &served {
        let token = match &s.result {
            Ok(token) => token,
            Err(error) => panic!(
                "{strategy:?} task {} round {} account {}: no token: {error}",
                s.task, s.round, s.account
            ),
        };
        assert_eq!(token.account_id, s.account);
        let expires_at = token.expires_at.expect("issued tokens have an expiry");
        assert!(
            expires_at > s.returned_at && expires_at > s.returned_at_store,
            "{strategy:?} task {} round {}: an expired token was handed out",
            s.task,
            s.round
        );
        assert_eq!(
            token.token.expose(),
            format!("at-{}-{}", s.account, token.version),
            "{strategy:?} task {} round {}: the token does not belong to the version it claims",
            s.task,
            s.round
        );
        // The token issued in this round, or the previous one while it is
        // still valid: never an older one.
        let round = u64::try_from(s.round).expect("small");
        assert!(
            token.version == round + 1 || token.version == round,
            "{strategy:?} task {} round {}: got version {}",
            s.task,
            s.round,
            token.version
        );
        if token.version == round + 1 {
            let index = usize::try_from(s.account.get() - 1).expect("small id");
            fresh_per_round_and_account[s.round * ids.len() + index] += 1;
        }
    }
    assert!(
        fresh_per_round_and_account.iter().all(|&n| n > 0),
        "{strategy:?}: every round, some caller of every account got the newly issued token: {fresh_per_round_and_account:?}"
    );

    if deterministic {
        let contended: u64 = w
            .processes
            .iter()
            .flat_map(|p| p.provider.metrics().snapshot())
            .map(|(_, m)| m.lock_contention)
            .sum();
        assert!(
            contended > 0,
            "{strategy:?}: the processes never contended for a lease or a claim: the test exercises nothing"
        );
    }

    let expiries = u64::try_from(ids.len() * ROUNDS).expect("small");
    assert_eq!(
        w.upstream.reuses(),
        0,
        "{strategy:?}: invariant 1: no refresh token presented twice"
    );
    assert_eq!(
        w.upstream.calls(),
        expiries,
        "{strategy:?}: one upstream call per expiry"
    );
    assert_eq!(
        w.upstream.successes(),
        expiries,
        "{strategy:?}: one rotation per expiry"
    );
    for &id in &ids {
        let account = stored(&w.repo, id).await;
        assert_ne!(
            account.status,
            AccountStatus::Error,
            "{strategy:?}: account {id} marked error"
        );
        assert_eq!(
            account.credentials_version,
            u64::try_from(ROUNDS).expect("small")
        );
        assert_eq!(
            refresh_token_of(&account),
            w.upstream.current_refresh_token(id),
            "{strategy:?}: invariant 2: account {id} stores the last rotation"
        );
        // Every redeemed generation is remembered as consumed, and nothing
        // is left open, quarantined or unapplied.
        let consumed = w.claims.claims_of(id, ClaimState::Consumed).len();
        assert_eq!(
            consumed, ROUNDS,
            "{strategy:?}: account {id}: one consumed claim per rotated generation"
        );
    }
    assert_eq!(
        w.claims.len(),
        usize::try_from(expiries).expect("small"),
        "{strategy:?}: claims other than the consumed generations are left: {:?}",
        w.claims.snapshot()
    );
}

async fn paused(strategy: Strategy) {
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::starting_at(t0()));
    // Upstream latency below, then above, the 200 ms Claude lock wait: waiters
    // in the other processes are served by the "refreshed" notification in
    // even rounds and by the still-valid stored token in odd rounds.
    stress(
        clock,
        Time::Paused,
        strategy,
        [Duration::from_millis(100), Duration::from_millis(400)],
        true,
    )
    .await;
}

async fn multi_thread(strategy: Strategy) {
    let manual = Arc::new(ManualClock::new(t0()));
    let clock: Arc<dyn Clock> = Arc::clone(&manual) as _;
    stress(
        clock,
        Time::Manual(manual),
        strategy,
        [Duration::from_millis(2), Duration::from_millis(20)],
        false,
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn stress_64_tasks_by_8_rounds_zero_reuse_process_local() {
    paused(Strategy::ProcessLocal).await;
}

#[tokio::test(start_paused = true)]
async fn stress_64_tasks_by_8_rounds_zero_reuse_single() {
    paused(Strategy::Single).await;
}

#[tokio::test(start_paused = true)]
async fn stress_64_tasks_by_8_rounds_zero_reuse_layered() {
    paused(Strategy::Layered).await;
}

#[tokio::test(start_paused = true)]
async fn stress_64_tasks_by_8_rounds_zero_reuse_stacked() {
    paused(Strategy::Stacked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stress_64_tasks_by_8_rounds_zero_reuse_multi_thread_process_local() {
    multi_thread(Strategy::ProcessLocal).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stress_64_tasks_by_8_rounds_zero_reuse_multi_thread_single() {
    multi_thread(Strategy::Single).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stress_64_tasks_by_8_rounds_zero_reuse_multi_thread_layered() {
    multi_thread(Strategy::Layered).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stress_64_tasks_by_8_rounds_zero_reuse_multi_thread_stacked() {
    multi_thread(Strategy::Stacked).await;
}
