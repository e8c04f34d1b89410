//! Core's flow with the database as its only lock, claim store and
//! repository: the acceptance run of this crate.
//!
//! Four flows (each with its own pool, as four processes would have) and
//! 64 callers per flow (256 in all) refresh 4 expiring accounts against one
//! rotating [`FakeUpstream`], under `LockStrategy::single(DbLeaseLock)`.
//! Expiries come from a shared manual clock, so each round makes every
//! account due exactly once: refreshes must equal expiries and no refresh
//! token may be presented twice.
//!
//! Then the fenced write fails after every upstream answer (a `Faulty`
//! repository), the flows are dropped and rebuilt over new pools, as a
//! restarted process would be: every rotated credential is found in the
//! claims table (`refresh_claims`, the recovery records), applied before
//! any new upstream call, and none is lost.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{PgDatabase, SqliteFile, sealed};
use refresh_core::testing::{FakeUpstream, Faulty, RotatingExecutor};
use refresh_core::{
    Account, AccountId, AccountRepository, ClaimKey, ClaimState, ClaimStore, Clock, Credentials,
    Fingerprint, FlowConfig, FlowError, LockStrategy, ManualClock, Platform, RefreshExecutor,
    RefreshFlow, RefreshLock, RefreshOutcome, StorageErrorKind, SystemClock,
};
use refresh_seaorm::SeaOrmBackend;
use tokio::sync::Barrier;

const FLOWS: usize = 4;
const CALLERS: usize = 256;
const ACCOUNTS: i64 = 4;
const LIFETIME: Duration = Duration::from_secs(3600);
const WINDOW: Duration = Duration::from_secs(180);

struct World {
    clock: Arc<ManualClock>,
    upstream: Arc<FakeUpstream>,
    executor: Arc<dyn RefreshExecutor>,
}

fn config() -> FlowConfig {
    FlowConfig {
        persist_attempts: 2,
        persist_backoff: Duration::from_millis(10),
        ..FlowConfig::default()
    }
}

/// A flow over `backend` (its repository wrapped by `wrap`).
fn flow(world: &World, backend: &SeaOrmBackend, repo: Arc<dyn AccountRepository>) -> RefreshFlow {
    RefreshFlow::builder(
        repo,
        LockStrategy::single(Arc::new(backend.lease_lock()) as Arc<dyn RefreshLock>),
        Arc::new(backend.claim_store()),
    )
    .clock(Arc::clone(&world.clock) as Arc<dyn Clock>)
    .config(config())
    .build()
    .expect("flow")
}

/// One round: every caller asks for a refresh of its account at once.
async fn round(
    world: &World,
    flows: &[RefreshFlow],
    repo: &dyn AccountRepository,
) -> Vec<Result<RefreshOutcome, FlowError>> {
    let barrier = Arc::new(Barrier::new(CALLERS));
    let mut tasks = Vec::new();
    for caller in 0..CALLERS {
        let id = AccountId(i64::try_from(caller).expect("small") % ACCOUNTS + 1);
        let account = repo.get(id).await.expect("get").expect("row");
        let flow = flows[caller / (CALLERS / FLOWS)].clone();
        let (barrier, executor) = (Arc::clone(&barrier), Arc::clone(&world.executor));
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            flow.refresh_if_needed(&account, &executor, WINDOW).await
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("caller"));
    }
    results
}

/// Moves the clock to just inside the refresh window of the stored tokens.
fn make_due(world: &World) {
    world.clock.advance(LIFETIME - Duration::from_secs(60));
}

async fn flows_over_the_database(open: impl AsyncFn() -> SeaOrmBackend) {
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let upstream = FakeUpstream::new();
    upstream.set_latency(Duration::from_millis(20));
    let world = World {
        executor: Arc::new(RotatingExecutor::new(
            Platform::Anthropic,
            Arc::clone(&upstream),
            LIFETIME,
        )),
        clock,
        upstream,
    };
    let first = open().await;
    let repo = first.repository();
    let expiry = world.clock.now().timestamp() + 60;
    for id in 1..=ACCOUNTS {
        let credentials = Credentials::new()
            .with("access_token", format!("at-{id}-0"))
            .with("refresh_token", format!("rt-{id}-0"))
            .with("expires_at", expiry.to_string());
        repo.insert(Account::oauth(id, Platform::Anthropic, credentials))
            .await
            .expect("seed");
    }

    // Rounds over healthy flows.
    let mut backends = Vec::new();
    for _ in 0..FLOWS {
        backends.push(open().await);
    }
    let flows: Vec<RefreshFlow> = backends
        .iter()
        .map(|b| flow(&world, b, Arc::new(b.repository())))
        .collect();
    let rounds = 3_u64;
    for r in 0..rounds {
        if r > 0 {
            make_due(&world);
        }
        let mut held_elsewhere = 0;
        for result in round(&world, &flows, &repo).await {
            let outcome = result.unwrap_or_else(|e| panic!("round {r}: {e}"));
            assert!(
                !matches!(
                    outcome,
                    RefreshOutcome::Refreshed {
                        recovered: true,
                        ..
                    }
                ),
                "round {r}"
            );
            held_elsewhere += usize::from(matches!(outcome, RefreshOutcome::HeldElsewhere));
        }
        assert!(
            held_elsewhere > 0,
            "round {r}: the flows never met a held lease or claim"
        );
        let expected = u64::try_from(ACCOUNTS).expect("small") * (r + 1);
        assert_eq!(
            world.upstream.successes(),
            expected,
            "round {r}: refreshes = expiries"
        );
        assert_eq!(
            world.upstream.calls(),
            expected,
            "round {r}: one request per expiry"
        );
        assert_eq!(world.upstream.reuses(), 0, "round {r}: zero reuse");
        for id in (1..=ACCOUNTS).map(AccountId) {
            let stored = repo.get(id).await.expect("get").expect("row");
            assert_eq!(stored.credentials_version, r + 1, "round {r}: account {id}");
            assert_eq!(
                stored
                    .credentials
                    .refresh_token()
                    .map(|t| t.expose().to_owned()),
                world.upstream.current_refresh_token(id),
                "round {r}: account {id} holds the live token"
            );
        }
    }

    // Persist failures after every upstream answer.
    make_due(&world);
    let faulty: Vec<RefreshFlow> = backends
        .iter()
        .map(|b| {
            let repo = Arc::new(Faulty::new(
                Arc::new(b.repository()) as Arc<dyn AccountRepository>
            ));
            repo.faults
                .fail_always("compare_and_set_credentials", StorageErrorKind::Unavailable);
            flow(&world, b, repo)
        })
        .collect();
    let calls_before = world.upstream.calls();
    let results = round(&world, &faulty, &repo).await;
    let not_persisted = results
        .iter()
        .filter(|r| {
            matches!(
                r,
                Err(FlowError::NotPersisted {
                    answer_saved: true,
                    ..
                })
            )
        })
        .count();
    assert!(
        not_persisted >= usize::try_from(ACCOUNTS).expect("small"),
        "every refresh failed to persist"
    );
    for result in &results {
        assert!(
            matches!(
                result,
                Err(FlowError::NotPersisted { .. }) | Ok(RefreshOutcome::HeldElsewhere)
            ),
            "{result:?}"
        );
    }
    let rotated = world.upstream.calls() - calls_before;
    assert_eq!(
        rotated,
        u64::try_from(ACCOUNTS).expect("small"),
        "one rotation per account"
    );
    drop(faulty);
    drop(flows);
    drop(backends);

    // "Restart": new pools, new flows. Before anything runs, every rotated
    // credential is in the claims table, answered and sealed.
    let restarted: Vec<SeaOrmBackend> = {
        let mut v = Vec::new();
        for _ in 0..FLOWS {
            v.push(open().await);
        }
        v
    };
    let claims = restarted[0].claim_store();
    for id in (1..=ACCOUNTS).map(AccountId) {
        let stored = repo.get(id).await.expect("get").expect("row");
        let presented = stored.credentials.refresh_token().expect("token");
        let key = ClaimKey::new(Platform::Anthropic, Fingerprint::of(&presented));
        let claim = claims
            .get(&key)
            .await
            .expect("get")
            .expect("a recovery record");
        assert_eq!(claim.state, ClaimState::Answered, "account {id}");
        assert_eq!(
            claim
                .answer
                .and_then(|a| a.refresh_token())
                .map(|t| t.expose().to_owned()),
            world.upstream.current_refresh_token(id),
            "account {id}: the rotated token is in the record"
        );
    }
    let flows: Vec<RefreshFlow> = restarted
        .iter()
        .map(|b| flow(&world, b, Arc::new(b.repository())))
        .collect();
    let calls = world.upstream.calls();
    for result in round(&world, &flows, &repo).await {
        result.expect("the recovered round");
    }
    assert_eq!(
        world.upstream.calls(),
        calls,
        "the records were applied without a new upstream call"
    );
    for id in (1..=ACCOUNTS).map(AccountId) {
        let stored = repo.get(id).await.expect("get").expect("row");
        assert_eq!(
            stored
                .credentials
                .refresh_token()
                .map(|t| t.expose().to_owned()),
            world.upstream.current_refresh_token(id),
            "account {id}: the rotation is not lost"
        );
        assert_eq!(stored.credentials_version, rounds + 1, "account {id}");
    }
    // And life goes on: one more expiry, one more refresh each.
    make_due(&world);
    for result in round(&world, &flows, &repo).await {
        result.expect("the next round");
    }
    assert_eq!(world.upstream.reuses(), 0, "zero reuse over the whole run");
    assert_eq!(
        world.upstream.successes(),
        u64::try_from(ACCOUNTS).expect("small") * (rounds + 2),
        "refreshes = expiries over the whole run (the faulted round included)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs services: cargo xtask test"]
async fn postgres_four_flows_x_64_callers_db_lease_only_zero_reuse_and_recovery_after_restart() {
    let db = PgDatabase::create("flow").await;
    flows_over_the_database(async || db.open(sealed()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_four_pools_x_64_callers_db_lease_only_zero_reuse_and_recovery_after_restart() {
    let file = SqliteFile::new("flow");
    flows_over_the_database(async || file.open(sealed()).await).await;
}
