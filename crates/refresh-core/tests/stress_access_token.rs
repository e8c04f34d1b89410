//! Stress test of the request path (DESIGN.md invariants 1, 2 and 8).
//!
//! 64 tasks × 8 rounds call [`TokenProvider::access_token`] on 4 accounts
//! whose tokens expire during the test. The callers are spread over 3
//! independent "processes": each has its own `RefreshFlow` and
//! `TokenProvider` (own in-process caches and single flights) and all share
//! one account repository, one refresh lock, one token cache and one
//! recovery store, against a [`FakeUpstream`] that rotates refresh tokens
//! and answers `refresh_token_reused` on reuse.
//!
//! Tokens live 10 minutes. Between rounds the clock moves 8 minutes, so every
//! account's token crosses the 3-minute refresh skew exactly once per round
//! while it is still valid: the expected number of upstream refreshes is
//! accounts × rounds.
//!
//! Two variants: paused tokio time with a [`TokioClock`] on the
//! current-thread runtime (deterministic; tasks interleave at every await),
//! and a real two-worker runtime whose [`ManualClock`] is advanced between
//! rounds (true parallelism, no sleeps).

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{anthropic_executor, oauth_account, t0};
use refresh_core::memory::{
    InMemoryAccountRepository, InMemoryRecoveryStore, InMemoryRefreshLock, InMemoryTokenCache,
};
use refresh_core::ports::{ManualClock, TokioClock};
use refresh_core::provider::REFRESH_SKEW;
use refresh_core::testing::FakeUpstream;
use refresh_core::{
    AccessToken, Account, AccountId, AccountRepository, AccountStatus, Clock, ExecutorRegistry,
    LockStrategy, Platform, RecoveryStore, RefreshFlow, TokenError, TokenProvider,
};
use tokio::sync::Barrier;

const TASKS: usize = 64;
const ROUNDS: usize = 8;
const ACCOUNTS: i64 = 4;
const STACKS: usize = 3;
/// Lifetime of every access token the fake upstream issues.
const LIFETIME: Duration = Duration::from_secs(10 * 60);
/// Clock movement between rounds: afterwards each token has
/// `REFRESH_SKEW − 1 min` (= 2 min) left, minus the time the previous round
/// took: due, but still valid.
const ROUND_GAP: Duration = Duration::from_secs(LIFETIME.as_secs() - REFRESH_SKEW.as_secs() + 60);

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
    /// The clock when the call returned.
    returned_at: DateTime<Utc>,
}

struct World {
    clock: Arc<dyn Clock>,
    upstream: Arc<FakeUpstream>,
    repo: Arc<InMemoryAccountRepository>,
    recovery: Arc<InMemoryRecoveryStore>,
    providers: Vec<TokenProvider>,
}

fn world(clock: Arc<dyn Clock>) -> World {
    let upstream = FakeUpstream::new();
    let executor = anthropic_executor(&upstream, LIFETIME);
    // Every clock starts at T0: the seeded tokens live `LIFETIME` from now.
    assert_eq!(clock.now(), t0());
    let expires_in = i64::try_from(LIFETIME.as_secs()).expect("small duration");
    let accounts = (1..=ACCOUNTS).map(|id| oauth_account(id, Platform::Anthropic, expires_in));
    let repo = Arc::new(InMemoryAccountRepository::with_accounts(accounts));
    let lock = Arc::new(InMemoryRefreshLock::new(Arc::clone(&clock)));
    let cache = Arc::new(InMemoryTokenCache::new(Arc::clone(&clock)));
    let recovery = Arc::new(InMemoryRecoveryStore::new());
    let providers = (0..STACKS)
        .map(|_| {
            let flow = RefreshFlow::builder(
                Arc::clone(&repo) as _,
                LockStrategy::single(Arc::clone(&lock) as _),
            )
            .recovery(Arc::clone(&recovery) as _)
            .notifier(Arc::clone(&cache) as _)
            .clock(Arc::clone(&clock))
            .build()
            .expect("valid flow configuration");
            TokenProvider::builder(flow, ExecutorRegistry::new().with(Arc::clone(&executor)))
                .shared_cache(Arc::clone(&cache) as _)
                .build()
        })
        .collect();
    World {
        clock,
        upstream,
        repo,
        recovery,
        providers,
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
/// checks that the processes contended for the lease (the schedule is fixed
/// under paused time, so this cannot flake).
async fn stress(clock: Arc<dyn Clock>, time: Time, latencies: [Duration; 2], deterministic: bool) {
    let w = world(clock);
    let ids: Vec<AccountId> = (1..=ACCOUNTS).map(AccountId).collect();
    let barrier = Arc::new(Barrier::new(TASKS + 1));

    let mut handles = Vec::with_capacity(TASKS);
    for task in 0..TASKS {
        let id = ids[task % ids.len()];
        let provider = w.providers[(task / ids.len()) % STACKS].clone();
        let (repo, clock, barrier) = (
            Arc::clone(&w.repo),
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
                });
                barrier.wait().await;
            }
            served
        }));
    }

    for round in 0..ROUNDS {
        w.upstream.set_latency(latencies[round % 2]);
        time.advance(ROUND_GAP).await;
        let now = w.clock.now();
        for &id in &ids {
            let expires_at = stored(&w.repo, id).await.expires_at.expect("known expiry");
            let left = (expires_at - now)
                .to_std()
                .expect("token still valid at round start");
            assert!(
                !left.is_zero() && left <= REFRESH_SKEW,
                "round {round}: account {id} should be due but valid, {left:?} left"
            );
        }
        barrier.wait().await; // round starts
        barrier.wait().await; // every caller of the round is served
        let expected = u64::try_from(ids.len() * (round + 1)).expect("small");
        assert_eq!(
            w.upstream.successes(),
            expected,
            "round {round}: one refresh per expiry"
        );
        for &id in &ids {
            assert_eq!(
                w.upstream.current_refresh_token(id),
                Some(format!("rt-{id}-{}", round + 1)),
                "round {round}: account {id} rotated exactly once per round"
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
                "task {} round {} account {}: no token: {error}",
                s.task, s.round, s.account
            ),
        };
        assert_eq!(token.account_id, s.account);
        let expires_at = token.expires_at.expect("issued tokens have an expiry");
        assert!(
            expires_at > s.returned_at,
            "task {} round {}: an expired token was handed out",
            s.task,
            s.round
        );
        assert_eq!(
            token.token.expose(),
            format!("at-{}-{}", s.account, token.version),
            "task {} round {}: the token does not belong to the version it claims",
            s.task,
            s.round
        );
        // The token issued in this round, or the previous one while it is
        // still valid: never an older one.
        let round = u64::try_from(s.round).expect("small");
        assert!(
            token.version == round + 1 || token.version == round,
            "task {} round {}: got version {}",
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
        "every round, some caller of every account got the newly issued token: {fresh_per_round_and_account:?}"
    );

    if deterministic {
        let contended: u64 = w
            .providers
            .iter()
            .flat_map(|p| p.metrics().snapshot())
            .map(|(_, m)| m.lock_contention)
            .sum();
        assert!(
            contended > 0,
            "the processes never contended for a lease: the test exercises nothing"
        );
    }

    let expiries = u64::try_from(ids.len() * ROUNDS).expect("small");
    assert_eq!(
        w.upstream.reuses(),
        0,
        "invariant 1: no refresh token presented twice"
    );
    assert_eq!(w.upstream.calls(), expiries, "one upstream call per expiry");
    assert_eq!(w.upstream.successes(), expiries, "one rotation per expiry");
    for &id in &ids {
        let account = stored(&w.repo, id).await;
        assert_ne!(
            account.status,
            AccountStatus::Error,
            "account {id} marked error"
        );
        assert_eq!(
            account.credentials_version,
            u64::try_from(ROUNDS).expect("small")
        );
        assert_eq!(
            account
                .credentials
                .refresh_token()
                .map(|t| t.expose().to_owned()),
            w.upstream.current_refresh_token(id),
            "invariant 2: account {id} stores the last rotation"
        );
        assert!(w.recovery.load(id).await.expect("in-memory read").is_none());
    }
}

#[tokio::test(start_paused = true)]
async fn stress_64_tasks_by_8_rounds_zero_reuse() {
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::starting_at(t0()));
    // Upstream latency below, then above, the 200 ms Claude lock wait: waiters
    // in the other processes are served by the "refreshed" notification in
    // even rounds and by the still-valid stored token in odd rounds.
    stress(
        clock,
        Time::Paused,
        [Duration::from_millis(100), Duration::from_millis(400)],
        true,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stress_64_tasks_by_8_rounds_zero_reuse_multi_thread() {
    let manual = Arc::new(ManualClock::new(t0()));
    let clock: Arc<dyn Clock> = Arc::clone(&manual) as _;
    stress(
        clock,
        Time::Manual(manual),
        [Duration::from_millis(2), Duration::from_millis(20)],
        false,
    )
    .await;
}
