//! The acceptance run of the Redis backends, shared by `flow_over_redis`
//! (no fault, or Redis killed halfway) and `hostile_flow_redis` (other
//! faults halfway): four "processes" over one Redis key prefix, 64 callers,
//! 4 accounts, [`ROUNDS`] rounds in which every token expires once. The
//! test files' docs say what is checked.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use refresh_core::memory::{InMemoryAccountRepository, InMemoryClaimStore, InMemoryRefreshLock};
use refresh_core::testing::{FakeUpstream, RotatingExecutor};
use refresh_core::{
    AccessToken, Account, AccountId, AccountRepository, ClaimState, Clock, Credentials,
    ExecutorRegistry, LockStrategy, Platform, RefreshExecutor, RefreshFlow, RefreshLock,
    SystemClock, TokenCache, TokenError, TokenProvider,
};
use refresh_redis::{RedisBackend, RedisConfig};
use tokio::sync::{Barrier, Notify};

use super::{OwnServer, exec, raw, timed_config};

const PROCESSES: usize = 4;
const ACCOUNTS: i64 = 4;
const CALLERS: usize = 64;
const ROUNDS: usize = 3;
/// The round in which Redis suffers the run's [`Fault`].
const FAULT_ROUND: usize = 1;
/// Lifetime of the tokens the upstream issues.
const LIFETIME: Duration = Duration::from_secs(10);
/// The providers' refresh skew: a token is due this long before it expires.
const SKEW: Duration = Duration::from_secs(5);
/// The seeded tokens expire this long after the start: due, still valid.
const SEEDED_LEFT_SECS: i64 = 4;
/// A round starts this long after the last token became due (Redis expires
/// keys with millisecond precision; expiries are whole seconds).
const DUE_MARGIN_MS: i64 = 300;
/// How long the upstream takes to answer.
const UPSTREAM_LATENCY: Duration = Duration::from_millis(50);
const COMMAND_TIMEOUT: Duration = Duration::from_millis(300);

/// What one caller got in one round.
pub struct Served {
    task: usize,
    round: usize,
    account: AccountId,
    /// The stored `credentials_version` just before the call.
    stored_before: u64,
    /// The stored `credentials_version` just after it returned.
    stored_after: u64,
    result: Result<AccessToken, TokenError>,
    /// The system clock (ms) when the call returned.
    returned_at_ms: i64,
}

pub struct World {
    upstream: Arc<FakeUpstream>,
    repo: Arc<InMemoryAccountRepository>,
    claims: Arc<InMemoryClaimStore>,
    providers: Vec<TokenProvider>,
}

fn now_ms() -> i64 {
    SystemClock.now().timestamp_millis()
}

fn seeded_account(id: i64) -> Account {
    let expires_at = SystemClock.now().timestamp() + SEEDED_LEFT_SECS;
    let credentials = Credentials::new()
        .with("access_token", format!("at-{id}-0"))
        .with("refresh_token", format!("rt-{id}-0"))
        .with("expires_at", expires_at.to_string());
    Account::oauth(id, Platform::Anthropic, credentials)
}

/// The four processes over `config` (one `RedisBackend` each, all on the
/// same key prefix).
pub async fn world(config: &RedisConfig) -> World {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let upstream = FakeUpstream::new();
    // A response in flight for a while, as a real token endpoint's: peers
    // find the lease held and wait, woken by the Redis notification.
    upstream.set_latency(UPSTREAM_LATENCY);
    let executor: Arc<dyn RefreshExecutor> = Arc::new(RotatingExecutor::new(
        Platform::Anthropic,
        Arc::clone(&upstream),
        LIFETIME,
    ));
    let repo = Arc::new(InMemoryAccountRepository::with_accounts(
        (1..=ACCOUNTS).map(seeded_account),
    ));
    let claims = Arc::new(InMemoryClaimStore::new(Arc::clone(&clock)));
    let durable: Arc<dyn RefreshLock> = Arc::new(InMemoryRefreshLock::new(Arc::clone(&clock)));
    let mut providers = Vec::with_capacity(PROCESSES);
    for _ in 0..PROCESSES {
        let redis = RedisBackend::connect(config.clone())
            .await
            .expect("a single server connects lazily");
        let lock: Arc<dyn RefreshLock> = Arc::new(redis.lock());
        let cache: Arc<dyn TokenCache> = Arc::new(redis.token_cache());
        let flow = RefreshFlow::builder(
            Arc::clone(&repo) as _,
            LockStrategy::layered(lock, Arc::clone(&durable)),
            Arc::clone(&claims) as _,
        )
        .notifier(Arc::clone(&cache))
        .clock(Arc::clone(&clock))
        .build()
        .expect("valid flow configuration");
        let provider =
            TokenProvider::builder(flow, ExecutorRegistry::new().with(Arc::clone(&executor)))
                .shared_cache(cache)
                .skew(SKEW)
                .build();
        providers.push(provider);
    }
    World {
        upstream,
        repo,
        claims,
        providers,
    }
}

async fn stored(repo: &InMemoryAccountRepository, id: AccountId) -> Account {
    repo.get(id)
        .await
        .expect("in-memory read")
        .expect("account exists")
}

/// Waits (real time: that the tokens expire is what is tested) until every
/// stored token is due, plus [`DUE_MARGIN_MS`], and checks each is due but
/// still valid.
async fn until_every_token_is_due(repo: &InMemoryAccountRepository, round: usize) {
    let skew_ms = i64::try_from(SKEW.as_millis()).expect("small");
    let mut latest = i64::MIN;
    for id in 1..=ACCOUNTS {
        let at = stored(repo, AccountId(id))
            .await
            .expires_at
            .expect("known expiry");
        latest = latest.max(at.timestamp_millis());
    }
    let start = latest - skew_ms + DUE_MARGIN_MS;
    if let Ok(wait) = u64::try_from(start - now_ms()) {
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
    let now = now_ms();
    for id in 1..=ACCOUNTS {
        let at = stored(repo, AccountId(id))
            .await
            .expires_at
            .expect("known expiry")
            .timestamp_millis();
        assert!(
            at > now && at <= now + skew_ms,
            "round {round}: account {id} should be due but valid, {} ms left",
            at - now
        );
    }
}

/// What happens to Redis once half the callers of [`FAULT_ROUND`] started.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// SIGKILL: the server is gone for the rest of the run.
    Kill,
    /// FLUSHALL, SCRIPT FLUSH and CLIENT KILL TYPE pubsub.
    Flush,
    /// SIGSTOP for longer than the command timeout, then SIGCONT.
    Stop,
    /// A restart on the same port (no persistence).
    Restart,
}

async fn inject(server: &mut OwnServer, fault: Fault) {
    match fault {
        Fault::Kill => server.kill(),
        Fault::Flush => {
            let mut c = raw(&server.url()).await;
            let _: () = exec(&mut c, "FLUSHALL").await;
            let _: () = exec(&mut c, ("SCRIPT", "FLUSH")).await;
            let _: i64 = exec(&mut c, ("CLIENT", "KILL", "TYPE", "pubsub")).await;
        }
        Fault::Stop => {
            server.signal("-STOP");
            tokio::time::sleep(Duration::from_millis(1500)).await;
            server.signal("-CONT");
        }
        Fault::Restart => server.restart().await,
    }
}

/// `(lease key, PTTL ms)` of every lease on the server.
async fn held_leases(url: Option<String>) -> Vec<(String, i64)> {
    let Some(url) = url else { return Vec::new() };
    let Ok(client) = redis::Client::open(url.as_str()) else {
        return Vec::new();
    };
    let Ok(mut c) = client.get_multiplexed_async_connection().await else {
        return Vec::new();
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*:lease:*")
        .query_async(&mut c)
        .await
        .unwrap_or_default();
    let mut out = Vec::new();
    for k in keys {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&k)
            .query_async(&mut c)
            .await
            .unwrap_or(-3);
        out.push((k, ttl));
    }
    out
}

/// Runs the rounds; with `server`, injects its fault once half the callers
/// of [`FAULT_ROUND`] started. Returns what every caller got.
pub async fn run(w: &World, mut server: Option<(OwnServer, Fault)>) -> Vec<Served> {
    let barrier = Arc::new(Barrier::new(CALLERS + 1));
    let started = Arc::new(AtomicUsize::new(0));
    let half = Arc::new(Notify::new());
    let fault_at = FAULT_ROUND * CALLERS + CALLERS / 2;

    let mut handles = Vec::with_capacity(CALLERS);
    for task in 0..CALLERS {
        let id = AccountId(i64::try_from(task).expect("small") % ACCOUNTS + 1);
        let provider = w.providers[(task / PROCESSES) % PROCESSES].clone();
        let (repo, barrier, started, half) = (
            Arc::clone(&w.repo),
            Arc::clone(&barrier),
            Arc::clone(&started),
            Arc::clone(&half),
        );
        let initial = stored(&w.repo, id).await;
        handles.push(tokio::spawn(async move {
            let mut served = Vec::with_capacity(ROUNDS);
            for round in 0..ROUNDS {
                barrier.wait().await;
                let current = stored(&repo, id).await;
                // Half the callers pass the row as just read, half the stale
                // snapshot from the start (version 0).
                let account = if task % 2 == 0 {
                    current.clone()
                } else {
                    initial.clone()
                };
                if started.fetch_add(1, Ordering::SeqCst) + 1 == fault_at {
                    half.notify_one();
                }
                let result = provider.access_token(&account).await;
                let returned_at_ms = now_ms();
                served.push(Served {
                    task,
                    round,
                    account: id,
                    stored_before: current.credentials_version,
                    stored_after: stored(&repo, id).await.credentials_version,
                    result,
                    returned_at_ms,
                });
                barrier.wait().await;
            }
            served
        }));
    }

    for round in 0..ROUNDS {
        if round > 0 {
            until_every_token_is_due(&w.repo, round).await;
        }
        barrier.wait().await; // the round starts
        if round == FAULT_ROUND
            && let Some((server, fault)) = server.as_mut()
        {
            // `notify_one` keeps the permit if the callers got there first.
            half.notified().await;
            inject(server, *fault).await;
        }
        barrier.wait().await; // every caller of the round was served
        // A stall delays the timed-out cache puts, which Redis then runs
        // with their relative TTL: entries outlive the due time by up to the
        // stall, so the round after a stall may be served from the cache
        // (valid tokens) instead of refreshing. Counts are exact otherwise.
        if matches!(server, Some((_, Fault::Stop))) {
            continue;
        }
        let expected = u64::try_from(ACCOUNTS).expect("small") * (round as u64 + 1);
        assert_eq!(
            w.upstream.successes(),
            expected,
            "round {round}: one refresh per account per expiry (reuses so far: {}; \
             redis leases still held: {:?})",
            w.upstream.reuses(),
            held_leases(server.as_ref().map(|(s, _)| s.url())).await
        );
        for id in (1..=ACCOUNTS).map(AccountId) {
            assert_eq!(
                w.upstream.current_refresh_token(id),
                Some(format!("rt-{id}-{}", round + 1)),
                "round {round}: account {id} rotated exactly once"
            );
        }
    }

    let mut served = Vec::with_capacity(CALLERS * ROUNDS);
    for handle in handles {
        served.extend(handle.await.expect("caller task"));
    }
    served
}

/// Every invariant of the run; without `strict`, only that every caller got
/// a valid token of a stored version and that no refresh token was reused.
pub async fn check(w: &World, served: &[Served], variant: &str, strict: bool) {
    assert_eq!(served.len(), CALLERS * ROUNDS);
    for s in served {
        let what = format!(
            "{variant}: task {} round {} account {}",
            s.task, s.round, s.account
        );
        let token = match &s.result {
            Ok(token) => token,
            Err(error) => panic!("{what}: no token: {error}"),
        };
        assert_eq!(token.account_id, s.account, "{what}");
        let expires_ms = token
            .expires_at
            .expect("issued tokens have an expiry")
            .timestamp_millis();
        assert!(
            expires_ms > s.returned_at_ms,
            "{what}: the token had expired when it was handed out"
        );
        assert_eq!(
            token.token.expose(),
            format!("at-{}-{}", s.account, token.version),
            "{what}: the token is not the one of the version it claims"
        );
        assert!(
            token.version >= s.stored_before,
            "{what}: got version {}, older than the stored {} when it asked",
            token.version,
            s.stored_before
        );
        assert!(
            token.version <= s.stored_after,
            "{what}: got version {}, never stored (stored: {})",
            token.version,
            s.stored_after
        );
        let round = s.round as u64;
        assert!(
            !strict || token.version == round + 1 || token.version == round,
            "{what}: got version {}",
            token.version
        );
    }

    let expiries = u64::try_from(ACCOUNTS).expect("small") * ROUNDS as u64;
    assert_eq!(
        w.upstream.reuses(),
        0,
        "{variant}: a refresh token was presented twice"
    );
    if !strict {
        return;
    }
    assert_eq!(
        w.upstream.successes(),
        expiries,
        "{variant}: one refresh per account per expiry"
    );
    assert_eq!(
        w.upstream.calls(),
        expiries,
        "{variant}: one upstream call per expiry"
    );
    for id in (1..=ACCOUNTS).map(AccountId) {
        let account = stored(&w.repo, id).await;
        assert_eq!(account.credentials_version, ROUNDS as u64, "{variant}");
        assert_eq!(
            account
                .credentials
                .refresh_token()
                .map(|t| t.expose().to_owned()),
            w.upstream.current_refresh_token(id),
            "{variant}: account {id} stores the last rotation"
        );
        assert_eq!(
            w.claims.claims_of(id, ClaimState::Consumed).len(),
            ROUNDS,
            "{variant}: account {id}: one consumed claim per rotated generation"
        );
    }
    // 16 callers per account in 4 processes start together and a refresh
    // takes UPSTREAM_LATENCY: processes find the lease held elsewhere.
    let contended: u64 = w
        .providers
        .iter()
        .flat_map(|p| p.metrics().snapshot())
        .map(|(_, m)| m.lock_contention)
        .sum();
    assert!(
        contended > 0,
        "{variant}: the processes never contended for a lease: the run exercises nothing"
    );
}

/// A config for `url` under `prefix`, with the run's command timeout.
pub fn config(url: String, prefix: &str) -> RedisConfig {
    timed_config(url, prefix, COMMAND_TIMEOUT)
}
