//! Claims and leases across pools (processes' worth of connections) on a
//! shared SQLite file and on PostgreSQL: one winner among 200, one
//! taker-over of an expired claim among 200, expiry judged by the
//! database's clock whatever the clients' clocks say, takeover of a lease
//! only after it lapsed.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::{PgDatabase, SqliteFile, sealed};
use refresh_core::memory::InMemoryRefreshLock;
use refresh_core::testing::{FakeUpstream, RotatingExecutor};
use refresh_core::{
    Account, AccountId, AccountRepository, ClaimAcquire, ClaimId, ClaimKey, ClaimState, ClaimStore,
    Clock, Credentials, Fingerprint, FlowConfig, LockStrategy, ManualClock, Platform,
    RefreshExecutor, RefreshFlow, RefreshKey, RefreshLock, RefreshOutcome, SystemClock,
};
use refresh_seaorm::SeaOrmBackend;
use tokio::sync::Barrier;

const CONTENDERS: usize = 200;
const POOLS: usize = 4;

fn key(n: u32) -> ClaimKey {
    ClaimKey::new(
        Platform::Anthropic,
        Fingerprint::of_bytes(format!("rt-contended-{n}").as_bytes()),
    )
}

/// 200 acquirers of one key, spread over the pools, released together.
async fn contend(
    pools: &[SeaOrmBackend],
    key: &ClaimKey,
    ttl: Duration,
) -> (Vec<ClaimId>, HashSet<ClaimId>) {
    let barrier = Arc::new(Barrier::new(CONTENDERS));
    let tasks: Vec<_> = (0..CONTENDERS)
        .map(|i| {
            let store = pools[i % pools.len()].claim_store();
            let (key, barrier) = (key.clone(), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                let id = ClaimId::random();
                let account = AccountId(i64::try_from(i).expect("small"));
                store.acquire(&key, &id, account, 0, ttl).await
            })
        })
        .collect();
    let (mut winners, mut seen) = (Vec::new(), HashSet::new());
    for task in tasks {
        match task
            .await
            .expect("join")
            .expect("acquire never fails under contention")
        {
            ClaimAcquire::Won(id) => winners.push(id),
            ClaimAcquire::Existing(claim) => {
                seen.insert(claim.id);
            }
        }
    }
    (winners, seen)
}

async fn two_hundred_claimants_one_winner_and_one_taker_over(pools: Vec<SeaOrmBackend>) {
    let store = pools[0].claim_store();
    let fresh = key(1);
    let (winners, seen) = contend(&pools, &fresh, Duration::from_secs(60)).await;
    assert_eq!(
        winners.len(),
        1,
        "200 concurrent claims of a free generation: winners"
    );
    assert!(
        seen.iter().all(|id| *id == winners[0]),
        "the losers saw the winner's claim"
    );
    assert_eq!(
        store.get(&fresh).await.expect("get").expect("claim").id,
        winners[0]
    );

    // An expired empty claim: exactly one of 200 takes it over.
    let expired = key(2);
    let old = ClaimId::random();
    store
        .acquire(&expired, &old, AccountId(0), 0, Duration::from_millis(1))
        .await
        .expect("acquire");
    wait_until_expired(&store, &expired).await;
    let (winners, seen) = contend(&pools, &expired, Duration::from_secs(60)).await;
    assert_eq!(
        winners.len(),
        1,
        "200 contenders for an expired claim: takers-over"
    );
    assert_ne!(winners[0], old, "a fresh holding");
    assert!(
        seen.iter().all(|id| *id == winners[0]),
        "the losers saw the new holding"
    );

    // An expired claim with an answer is never taken over.
    let answered = key(3);
    let id = ClaimId::random();
    store
        .acquire(&answered, &id, AccountId(0), 0, Duration::from_millis(1))
        .await
        .expect("acquire");
    assert!(
        store
            .save_answer(
                &answered,
                &id,
                &Credentials::new().with("refresh_token", "rt-next")
            )
            .await
            .expect("save_answer")
    );
    let (winners, _) = contend(&pools, &answered, Duration::from_secs(60)).await;
    assert!(winners.is_empty(), "an answered claim is never taken over");
    let claim = store.get(&answered).await.expect("get").expect("claim");
    assert_eq!((claim.state, claim.id), (ClaimState::Answered, id));
}

/// Polls the store until its clock passed the claim's expiry (bounded).
async fn wait_until_expired(store: &impl ClaimStore, key: &ClaimKey) {
    for _ in 0..500 {
        let claim = store.get(key).await.expect("get").expect("claim");
        if claim.remaining == Some(Duration::ZERO) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the claim never expired by the database clock");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_file_200_claimants_one_winner_and_one_taker_over() {
    let file = SqliteFile::new("claims200");
    let mut pools = Vec::new();
    for _ in 0..POOLS {
        pools.push(file.open(sealed()).await);
    }
    two_hundred_claimants_one_winner_and_one_taker_over(pools).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs services: cargo xtask test"]
async fn postgres_200_claimants_one_winner_and_one_taker_over() {
    let db = PgDatabase::create("claims200").await;
    let mut pools = Vec::new();
    for _ in 0..POOLS {
        pools.push(db.open(sealed()).await);
    }
    two_hundred_claimants_one_winner_and_one_taker_over(pools).await;
}

// ---------------------------------------------------------------------
// Client clocks offset by ±5 minutes
// ---------------------------------------------------------------------

fn offset_clock(offset_secs: i64) -> Arc<ManualClock> {
    Arc::new(ManualClock::new(
        SystemClock.now() + chrono::Duration::seconds(offset_secs),
    ))
}

/// Two flows whose clocks are 5 minutes behind and 5 minutes ahead, each
/// with its own process-local lease (so only the claim stands between
/// them), share the database. Claims live 2 minutes: by the ahead flow's
/// clock the behind flow's claim expired 3 minutes before it was taken. The
/// database's clock says it is live, and the ahead flow does not present
/// the token.
async fn claim_expiry_is_judged_by_the_database_clock(a: SeaOrmBackend, b: SeaOrmBackend) {
    let upstream = FakeUpstream::new();
    upstream.hold_responses();
    let executor: Arc<dyn RefreshExecutor> = Arc::new(RotatingExecutor::new(
        Platform::Anthropic,
        Arc::clone(&upstream),
        Duration::from_secs(3600),
    ));
    let expired = SystemClock.now().timestamp() - 600;
    let account = Account::oauth(
        1,
        Platform::Anthropic,
        Credentials::new()
            .with("access_token", "at-1-0")
            .with("refresh_token", "rt-1-0")
            .with("expires_at", expired.to_string()),
    );
    a.repository()
        .insert(account.clone())
        .await
        .expect("insert");
    let config = FlowConfig {
        claim_ttl: Duration::from_secs(120),
        quarantine: Duration::from_secs(60),
        ..FlowConfig::default()
    };
    let flow = |backend: &SeaOrmBackend, clock: Arc<ManualClock>| {
        RefreshFlow::builder(
            Arc::new(backend.repository()),
            LockStrategy::single(
                Arc::new(InMemoryRefreshLock::new(clock.clone())) as Arc<dyn RefreshLock>
            ),
            Arc::new(backend.claim_store()),
        )
        .clock(clock)
        .config(config.clone())
        .build()
        .expect("flow")
    };
    let behind = flow(&a, offset_clock(-300));
    let ahead = flow(&b, offset_clock(300));
    let window = Duration::from_secs(180);

    let first = {
        let (flow, account, executor) = (behind.clone(), account.clone(), Arc::clone(&executor));
        tokio::spawn(async move { flow.refresh_if_needed(&account, &executor, window).await })
    };
    upstream.wait_for_calls(1).await;
    let claim_key = ClaimKey::new(Platform::Anthropic, Fingerprint::of(&"rt-1-0".into()));
    let claim = b
        .claim_store()
        .get(&claim_key)
        .await
        .expect("get")
        .expect("the claim");
    let left = claim.remaining.expect("an open claim has a life");
    assert!(
        left > Duration::from_secs(100) && left <= Duration::from_secs(120),
        "the claim's life by the database clock: {left:?}"
    );
    let second = ahead
        .refresh_if_needed(&account, &executor, window)
        .await
        .expect("the ahead flow");
    assert!(
        matches!(second, RefreshOutcome::HeldElsewhere),
        "the ahead flow finds the claim live: {second:?}"
    );
    upstream.open();
    let first = first
        .await
        .expect("join")
        .expect("the behind flow refreshes");
    assert!(
        matches!(first, RefreshOutcome::Refreshed { .. }),
        "{first:?}"
    );
    assert_eq!(upstream.calls(), 1, "one request for the generation");
    assert_eq!(upstream.reuses(), 0, "no reuse");
    let stored = b
        .repository()
        .get(AccountId(1))
        .await
        .expect("get")
        .expect("row");
    assert_eq!(
        stored
            .credentials
            .refresh_token()
            .map(|t| t.expose().to_owned()),
        Some("rt-1-1".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_claim_expiry_is_judged_by_the_database_clock_not_the_clients() {
    let file = SqliteFile::new("db_clock");
    claim_expiry_is_judged_by_the_database_clock(
        file.open(sealed()).await,
        file.open(sealed()).await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn postgres_claim_expiry_is_judged_by_the_database_clock_not_the_clients() {
    let db = PgDatabase::create("db_clock").await;
    claim_expiry_is_judged_by_the_database_clock(db.open(sealed()).await, db.open(sealed()).await)
        .await;
}

// ---------------------------------------------------------------------
// Leases: takeover only after expiry
// ---------------------------------------------------------------------

async fn lease_takeover_only_after_expiry(pools: Vec<SeaOrmBackend>) {
    let key = RefreshKey::from_raw("claude:account:42");
    let holder = pools[0].lease_lock();
    let ttl = Duration::from_millis(800);
    // Local monotonic time from BEFORE the acquire: the database's expiry
    // is at least `ttl` after it, so nobody may win before `ttl` elapsed.
    let started = tokio::time::Instant::now();
    let held = holder
        .try_acquire(&key, ttl)
        .await
        .expect("acquire")
        .expect("free");
    let mut bursts = 0;
    loop {
        bursts += 1;
        assert!(bursts < 2_000, "the lapsed lease was never taken over");
        let mut wins = Vec::new();
        for pool in &pools {
            if let Some(lease) = pool
                .lease_lock()
                .try_acquire(&key, ttl)
                .await
                .expect("acquire")
            {
                wins.push(lease);
            }
        }
        if let Some(lease) = wins.first() {
            assert!(
                started.elapsed() >= ttl,
                "taken over {:?} after the acquire, before its ttl {ttl:?}",
                started.elapsed()
            );
            assert_eq!(wins.len(), 1, "one taker-over per lapse");
            assert!(lease.fence > held.fence, "a larger fence");
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        bursts > 1,
        "the first burst, right after the acquire, found the lease held"
    );
    assert!(
        !holder.extend(&held, ttl).await.expect("extend"),
        "the lapsed holder cannot extend"
    );
    assert!(
        !holder.release(&held).await.expect("release"),
        "nor release"
    );
    let next = pools[1]
        .lease_lock()
        .try_acquire(&key, ttl)
        .await
        .expect("acquire");
    assert!(next.is_none(), "the new holder's lease is live");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_lease_is_taken_over_only_after_it_lapsed() {
    let file = SqliteFile::new("lease_lapse");
    let pools = vec![file.open(sealed()).await, file.open(sealed()).await];
    lease_takeover_only_after_expiry(pools).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn postgres_lease_is_taken_over_only_after_it_lapsed() {
    let db = PgDatabase::create("lease_lapse").await;
    let pools = vec![db.open(sealed()).await, db.open(sealed()).await];
    lease_takeover_only_after_expiry(pools).await;
}
