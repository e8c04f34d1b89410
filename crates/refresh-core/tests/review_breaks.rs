//! Regression tests for the 19 breaks of issue 5 (and its `error_message`
//! item), one test (or a few) per break, named after the behaviour it pins.
//!
//! "Processes" are separate [`RefreshFlow`] instances over the shared
//! [`Backends`] of one scenario, each with its own configuration, clock,
//! locks and fault wrappers where a break needs it. Time is tokio's paused
//! clock: [`let_time_pass`] sleeps in virtual time, so every timer of every
//! task (lease keepers, rescue loops, hard deadlines) fires in order, and
//! nothing waits on real time. Synchronisation uses the fake upstream's
//! `hold_responses` / `wait_for_calls` / `release` and joins of the flows'
//! tasks, never a sleep.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::{
    Backends, ConcurrencyProbe, HookedRepository, ISSUED_LIFETIME, Outcome, RESCUE_ROUND,
    RepositoryHooks, WINDOW, access_token, calls_reach, expired_account, finish, is_held_elsewhere,
    let_time_pass, oauth_account, refresh_stored, refresh_token, refreshed_account, spawn_refresh,
    t0, within,
};
use refresh_core::error::OAuthErrorCode;
use refresh_core::flow::{MAX_CONSUMED_HORIZON, MAX_DURATION};
use refresh_core::memory::{InMemoryAccountRepository, InMemoryRefreshLock};
use refresh_core::ports::{CasExpectation, CasOutcome, Lease, LeaseOwner};
use refresh_core::testing::{FaultPlan, Faulty};
use refresh_core::{
    Account, AccountId, AccountRepository, AccountStatus, BackgroundConfig, BackgroundRefresher,
    ClaimId, ClaimState, Clock, ConfigError, Credentials, ExecutorRegistry, FlowConfig, FlowError,
    LockStrategy, Platform, ProviderError, RefreshContext, RefreshExecutor, RefreshFlow,
    RefreshKey, RefreshLock, RefreshOutcome, Secret, StorageError, StorageErrorKind, TokenProvider,
    TokioClock,
};
use serde_json::{Value, json};

/// The account most scenarios refresh.
const ID: i64 = 1;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A process whose lease lives in the scenario's shared lock.
fn locked_process<R: AccountRepository + 'static>(b: &Backends<R>) -> RefreshFlow {
    b.process(LockStrategy::single(b.lock.clone()), FlowConfig::default())
}

/// A lock of its own, as if the shared lock store had been flushed.
fn fresh_lock<R: ?Sized>(b: &Backends<R>) -> Arc<InMemoryRefreshLock> {
    Arc::new(InMemoryRefreshLock::new(Arc::clone(&b.clock)))
}

fn anthropic_refresher(b: &Backends, flow: &RefreshFlow) -> BackgroundRefresher {
    BackgroundRefresher::builder(flow.clone(), b.registry(&[Platform::Anthropic]))
        .build()
        .expect("valid background configuration")
}

/// A [`RefreshLock`] whose whole state can be flushed (Redis restarted or
/// `FLUSHALL`): after [`flush`](Self::flush) every lease is gone and its
/// holder's extensions report it lost.
struct FlushableLock {
    clock: Arc<dyn Clock>,
    current: Mutex<Arc<InMemoryRefreshLock>>,
}

impl FlushableLock {
    fn new(clock: &Arc<dyn Clock>) -> Arc<Self> {
        Arc::new(Self {
            clock: Arc::clone(clock),
            current: Mutex::new(Arc::new(InMemoryRefreshLock::new(Arc::clone(clock)))),
        })
    }

    fn flush(&self) {
        *self.current.lock().unwrap() = Arc::new(InMemoryRefreshLock::new(Arc::clone(&self.clock)));
    }

    fn now(&self) -> Arc<InMemoryRefreshLock> {
        Arc::clone(&self.current.lock().unwrap())
    }
}

#[async_trait]
impl RefreshLock for FlushableLock {
    fn name(&self) -> &'static str {
        "flushable"
    }

    async fn try_acquire(
        &self,
        key: &RefreshKey,
        ttl: Duration,
    ) -> Result<Option<Lease>, StorageError> {
        self.now().try_acquire(key, ttl).await
    }

    async fn extend(&self, lease: &Lease, ttl: Duration) -> Result<bool, StorageError> {
        self.now().extend(lease, ttl).await
    }

    async fn release(&self, lease: &Lease) -> Result<bool, StorageError> {
        self.now().release(lease).await
    }
}

/// Makes every call of `ops` on `plan` fail as unavailable.
fn cut(plan: &FaultPlan, ops: &[&'static str]) {
    for op in ops {
        plan.fail_always(op, StorageErrorKind::Unavailable);
    }
}

const REPO_OPS: [&str; 2] = ["get", "compare_and_set_credentials"];
const CLAIM_OPS: [&str; 7] = [
    "acquire",
    "get",
    "extend",
    "quarantine",
    "save_answer",
    "mark_consumed",
    "remove",
];
const LOCK_OPS: [&str; 3] = ["try_acquire", "extend", "release"];

// ---------------------------------------------------------------------------
// Breaks 1 and 2: outcomes after which the token may be consumed
// ---------------------------------------------------------------------------

/// The upstream consumes the token and answers `error`; the background
/// refresher (which retries retryable failures) and another process must
/// never present the token again, and the account is not marked error.
async fn a_maybe_consumed_outcome_is_never_retried(error: ProviderError) {
    let b = Backends::new([expired_account(ID)]);
    let executor = b.executor(Platform::Anthropic);
    let flow = locked_process(&b);
    let refresher = anthropic_refresher(&b, &flow);
    b.upstream.fail_after_rotation_next(error.clone());

    let report = within("the background cycle", refresher.run_once()).await;

    assert_eq!(
        b.upstream.calls(),
        1,
        "{error:?}: the token was presented once"
    );
    assert_eq!(b.upstream.reuses(), 0, "{error:?}: never presented again");
    assert_eq!(
        (report.due, report.failed, report.marked_error),
        (1, 1, 0),
        "{error:?}: failed, not marked"
    );
    let stored = b.stored(ID).await;
    assert_eq!(stored.status, AccountStatus::Active, "{error:?}");
    assert_eq!(stored.error_message, None, "{error:?}");
    assert_eq!(
        b.claim_state("rt-1-0").await,
        Some(ClaimState::Quarantined),
        "{error:?}: the claim is kept as a quarantine"
    );

    let other = b.process(LockStrategy::single(fresh_lock(&b)), FlowConfig::default());
    let outcome = refresh_stored(&other, &b, ID, &executor).await;
    assert!(
        matches!(outcome, Err(FlowError::Quarantined { .. })),
        "{error:?}: another process fails fast, got {outcome:?}"
    );
    let report = within("the background cycle", refresher.run_once()).await;
    assert_eq!(report.failed, 1, "{error:?}: the next cycle fails fast too");
    assert_eq!(b.upstream.calls(), 1, "{error:?}: and sends nothing");
    assert_eq!(b.upstream.reuses(), 0, "{error:?}");
}

#[tokio::test(start_paused = true)]
async fn break_01_executor_reported_ambiguity_is_never_retried_with_the_consumed_token() {
    a_maybe_consumed_outcome_is_never_retried(ProviderError::Ambiguous {
        reason: "connection reset after the request was written".into(),
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn break_02_a_2xx_with_an_unusable_body_is_never_retried_with_the_consumed_token() {
    a_maybe_consumed_outcome_is_never_retried(ProviderError::InvalidResponse {
        reason: "200 with a non-JSON body".into(),
    })
    .await;
}

// ---------------------------------------------------------------------------
// Breaks 3 and 4: a claim's life is the store's business
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn break_03_a_process_with_a_short_deadline_does_not_judge_a_longer_holders_claim_expired() {
    let b = Backends::new([expired_account(ID)]);
    let executor = b.executor(Platform::Anthropic);
    // A: H = 60 s, default claim life (15 min).
    let a = b.process(LockStrategy::process_local(), FlowConfig::default());
    // B: H = 1 s and the shortest claim life that configuration allows.
    let short = FlowConfig {
        upstream_timeout: Duration::from_secs(1),
        upstream_grace: Duration::from_secs(30),
        claim_ttl: Duration::from_secs(45),
        quarantine: Duration::from_secs(30),
        lease_ttl: Duration::from_secs(20),
        ..FlowConfig::default()
    };
    let b_flow = b.process(LockStrategy::process_local(), short);
    b.upstream.hold_responses();
    let a_run = spawn_refresh(&a, &b.stored(ID).await, &executor);
    calls_reach(&b.upstream, 1).await;

    // Past everything B's configuration would allow a call, well within A's.
    tokio::time::advance(Duration::from_secs(50)).await;
    let outcome = refresh_stored(&b_flow, &b, ID, &executor).await;
    assert!(is_held_elsewhere(&outcome), "got {outcome:?}");
    assert_eq!(b.upstream.calls(), 1, "B did not present the token");

    b.upstream.release(1);
    let stored = refreshed_account(finish(a_run).await);
    assert_eq!(refresh_token(&stored), "rt-1-1");
    assert!(matches!(
        refresh_stored(&b_flow, &b, ID, &executor).await,
        Ok(RefreshOutcome::StillFresh { .. })
    ));
    assert_eq!(b.upstream.reuses(), 0);
}

#[tokio::test(start_paused = true)]
async fn break_04_a_process_whose_clock_runs_100_s_ahead_waits_out_the_quarantine_by_the_store_clock()
 {
    let b = Backends::new([expired_account(ID)]);
    let executor = b.executor(Platform::Anthropic);
    let a = b.process(LockStrategy::process_local(), FlowConfig::default());
    let ahead: Arc<dyn Clock> = Arc::new(TokioClock::starting_at(
        t0() + chrono::Duration::seconds(100),
    ));
    let b_flow = b
        .flow_builder(LockStrategy::process_local())
        .clock(Arc::clone(&ahead))
        .build()
        .unwrap();
    let quarantine = FlowConfig::default().quarantine;

    // A 5xx: the claim is quarantined for 10 min by the store's clock.
    b.upstream.fail_next(ProviderError::ServerError {
        status: Some(503),
        reason: "upstream status 503".into(),
    });
    let outcome = refresh_stored(&a, &b, ID, &executor).await;
    assert!(
        matches!(outcome, Err(FlowError::Upstream { .. })),
        "{outcome:?}"
    );

    // 50 s before the end by the store's clock; 50 s past it by B's.
    tokio::time::advance(quarantine - Duration::from_secs(50)).await;
    match refresh_stored(&b_flow, &b, ID, &executor).await {
        Err(FlowError::Quarantined { until, .. }) => {
            assert_eq!(
                until,
                ahead.now() + chrono::Duration::seconds(50),
                "the remaining life comes from the store, reported on B's clock"
            );
        }
        other => panic!("expected Quarantined, got {other:?}"),
    }
    assert_eq!(b.upstream.calls(), 1, "B did not present the token");

    tokio::time::advance(Duration::from_secs(51)).await;
    let stored = refreshed_account(refresh_stored(&b_flow, &b, ID, &executor).await);
    assert_eq!(refresh_token(&stored), "rt-1-1");
    assert_eq!(b.upstream.calls(), 2);
    assert_eq!(b.upstream.reuses(), 0);
}

// ---------------------------------------------------------------------------
// Break 5: no marker written after the fact, no late answer
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn break_05_a_claim_that_cannot_be_written_means_the_token_is_never_sent() {
    let b = Backends::new([expired_account(ID)]);
    let executor = b.executor(Platform::Anthropic);
    let flow = locked_process(&b);
    // The first attempt and its retry with the same id both fail.
    b.claims
        .faults
        .fail_next("acquire", 2, StorageErrorKind::Unavailable);

    let outcome = refresh_stored(&flow, &b, ID, &executor).await;

    assert!(
        matches!(outcome, Err(FlowError::Claim { .. })),
        "{outcome:?}"
    );
    assert_eq!(b.upstream.calls(), 0, "nothing was sent without a claim");
    assert!(
        b.lease_is_free(&common::key(&Platform::Anthropic, ID))
            .await,
        "nothing is outstanding, so the lease is back"
    );
    let stored = refreshed_account(refresh_stored(&flow, &b, ID, &executor).await);
    assert_eq!(refresh_token(&stored), "rt-1-1");
    assert_eq!(b.upstream.reuses(), 0);
}

#[tokio::test(start_paused = true)]
async fn break_05_a_call_still_out_at_the_hard_deadline_is_aborted_and_can_never_land_late() {
    let b = Backends::new([expired_account(ID)]);
    let executor = b.executor(Platform::Anthropic);
    let a = locked_process(&b);
    b.upstream.hold_responses();
    let a_run = spawn_refresh(&a, &b.stored(ID).await, &executor);
    calls_reach(&b.upstream, 1).await;

    let outcome = finish(a_run).await;
    assert!(
        matches!(
            &outcome,
            Err(FlowError::Upstream {
                source: ProviderError::Ambiguous { .. },
                ..
            })
        ),
        "{outcome:?}"
    );
    assert!(
        b.lease_is_free(&common::key(&Platform::Anthropic, ID))
            .await,
        "the call is over: A gave its lease back"
    );
    let other = locked_process(&b);
    let outcome = refresh_stored(&other, &b, ID, &executor).await;
    assert!(
        matches!(outcome, Err(FlowError::Quarantined { .. })),
        "the next process finds the quarantine, not a free token: {outcome:?}"
    );

    // The held answer is let go: nobody is there to persist it.
    b.upstream.open();
    let_time_pass(Duration::from_secs(60)).await;
    let stored = b.stored(ID).await;
    assert_eq!(stored.credentials_version, 0, "no late write");
    assert_eq!(refresh_token(&stored), "rt-1-0");
    assert_eq!(b.upstream.calls(), 1);
    assert_eq!(b.upstream.reuses(), 0);
}

// ---------------------------------------------------------------------------
// Breaks 6, 7, 8: the lease flushed or split while the call is out
// ---------------------------------------------------------------------------

/// A's call is out under `a_locks`; `disturb` breaks the lease; B refreshes
/// under `b_locks` and must not present the token; A's answer then lands.
async fn a_broken_lease_does_not_let_a_second_process_present_the_token(
    b: &Backends,
    a_locks: LockStrategy,
    b_locks: LockStrategy,
    disturb: impl FnOnce(),
) {
    let executor = b.executor(Platform::Anthropic);
    let a = b.process(a_locks, FlowConfig::default());
    let second = b.process(b_locks, FlowConfig::default());
    b.upstream.hold_responses();
    let a_run = spawn_refresh(&a, &b.stored(ID).await, &executor);
    calls_reach(&b.upstream, 1).await;

    disturb();
    let outcome = refresh_stored(&second, b, ID, &executor).await;
    assert!(is_held_elsewhere(&outcome), "got {outcome:?}");
    assert_eq!(b.upstream.calls(), 1, "the second process did not present");

    b.upstream.release(1);
    let stored = refreshed_account(finish(a_run).await);
    assert_eq!(refresh_token(&stored), "rt-1-1");
    let outcome = refresh_stored(&second, b, ID, &executor).await;
    assert!(
        matches!(outcome, Ok(RefreshOutcome::StillFresh { .. })),
        "{outcome:?}"
    );
    assert_eq!(b.upstream.reuses(), 0);
    assert_eq!(b.claim_state("rt-1-0").await, Some(ClaimState::Consumed));
}

#[tokio::test(start_paused = true)]
async fn break_06_a_single_lock_flushed_mid_call_does_not_let_a_second_process_present_the_token() {
    let b = Backends::new([expired_account(ID)]);
    let redis = FlushableLock::new(&b.clock);
    let flushed = Arc::clone(&redis);
    a_broken_lease_does_not_let_a_second_process_present_the_token(
        &b,
        LockStrategy::single(redis.clone()),
        LockStrategy::single(redis.clone()),
        move || flushed.flush(),
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn break_07_a_layered_primary_flushed_mid_call_does_not_let_a_second_process_present_the_token()
 {
    let b = Backends::new([expired_account(ID)]);
    let redis = FlushableLock::new(&b.clock);
    let flushed = Arc::clone(&redis);
    a_broken_lease_does_not_let_a_second_process_present_the_token(
        &b,
        LockStrategy::layered(redis.clone(), b.lock.clone()),
        LockStrategy::layered(redis.clone(), b.lock.clone()),
        move || flushed.flush(),
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn break_08_a_layered_split_brain_does_not_let_a_second_process_present_the_token() {
    let b = Backends::new([expired_account(ID)]);
    let redis = Arc::new(InMemoryRefreshLock::new(Arc::clone(&b.clock)));
    // The primary is unreachable from B only: B falls back to the database
    // lease, which A (holding the primary) does not hold.
    let redis_seen_by_b = Arc::new(Faulty::new(Arc::clone(&redis)));
    redis_seen_by_b
        .faults
        .fail_always("try_acquire", StorageErrorKind::Unavailable);
    a_broken_lease_does_not_let_a_second_process_present_the_token(
        &b,
        LockStrategy::layered(redis.clone(), b.lock.clone()),
        LockStrategy::layered(redis_seen_by_b.clone(), b.lock.clone()),
        || {},
    )
    .await;
    assert!(
        redis_seen_by_b.faults.calls("try_acquire") >= 1,
        "B did try its primary"
    );
}

// ---------------------------------------------------------------------------
// Breaks 9 and 10: an answer only the holder has
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn break_09_an_answer_held_only_in_memory_keeps_its_lease_and_claim_past_the_lease_ttl() {
    let b = Backends::new([expired_account(ID)]);
    let executor = b.executor(Platform::Anthropic);
    let lease_key = common::key(&Platform::Anthropic, ID);
    let a = locked_process(&b);
    b.fail_writes();
    b.claims
        .faults
        .fail_always("save_answer", StorageErrorKind::Unavailable);

    let outcome = refresh_stored(&a, &b, ID, &executor).await;
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

    // Ten minutes: over three lease TTLs.
    let same_lock = locked_process(&b);
    let flushed_lock = b.process(LockStrategy::single(fresh_lock(&b)), FlowConfig::default());
    for _ in 0..10 {
        let_time_pass(Duration::from_secs(60)).await;
        assert!(
            !b.lease_is_free(&lease_key).await,
            "the rescue keeps the lease"
        );
        let outcome = refresh_stored(&same_lock, &b, ID, &executor).await;
        assert!(is_held_elsewhere(&outcome), "same lock: {outcome:?}");
        let outcome = refresh_stored(&flushed_lock, &b, ID, &executor).await;
        assert!(is_held_elsewhere(&outcome), "claim still open: {outcome:?}");
    }
    assert_eq!(b.upstream.calls(), 1);
    assert!(b.claim_calls("extend") > 0, "the rescue extends its claim");

    b.repo.faults.heal();
    b.claims.faults.heal();
    let_time_pass(RESCUE_ROUND).await;
    let stored = b.stored(ID).await;
    assert_eq!(
        refresh_token(&stored),
        "rt-1-1",
        "the rescued answer landed"
    );
    assert_eq!(stored.credentials_version, 1);
    assert_eq!(b.claim_state("rt-1-0").await, Some(ClaimState::Consumed));
    assert!(
        b.lease_is_free(&lease_key).await,
        "then the lease is released"
    );
    assert_eq!(b.upstream.reuses(), 0);
}

/// The holder A of the claim gets its answer and is at once cut off from
/// its lock, the repository and the claim store for `partition`; B, healthy,
/// tries once a minute. Returns B's outcomes by minute.
async fn holder_partitioned_after_the_answer(
    b: &Backends,
    partition: Duration,
) -> Vec<(u64, Outcome)> {
    let executor = b.executor(Platform::Anthropic);
    let a_repo = Arc::new(Faulty::new(b.repo.clone()));
    let a_claims = Arc::new(Faulty::new(b.claims.clone()));
    let a_lock = Arc::new(Faulty::new(b.lock.clone()));
    let a = RefreshFlow::builder(
        a_repo.clone(),
        LockStrategy::single(a_lock.clone()),
        a_claims.clone(),
    )
    .clock(Arc::clone(&b.clock))
    .build()
    .unwrap();
    let second = locked_process(b);

    b.upstream.hold_responses();
    let a_run = spawn_refresh(&a, &b.stored(ID).await, &executor);
    calls_reach(&b.upstream, 1).await;
    cut(&a_repo.faults, &REPO_OPS);
    cut(&a_claims.faults, &CLAIM_OPS);
    cut(&a_lock.faults, &LOCK_OPS);
    b.upstream.open();
    let outcome = finish(a_run).await;
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

    let mut seen = Vec::new();
    let minutes = partition.as_secs() / 60;
    for minute in 1..=minutes {
        let_time_pass(Duration::from_secs(60)).await;
        seen.push((minute, refresh_stored(&second, b, ID, &executor).await));
    }
    a_repo.faults.heal();
    a_claims.faults.heal();
    a_lock.faults.heal();
    let_time_pass(RESCUE_ROUND).await;
    seen
}

fn defaults_under_test() {
    let config = FlowConfig::default();
    assert_eq!(config.claim_ttl, Duration::from_secs(15 * 60));
    assert_eq!(config.upstream_timeout, Duration::from_secs(60));
}

#[tokio::test(start_paused = true)]
async fn break_10_a_holder_cut_off_from_every_store_for_10_min_after_the_answer_persists_with_no_reuse()
 {
    defaults_under_test();
    let b = Backends::new([expired_account(ID)]);
    let executor = b.executor(Platform::Anthropic);

    let seen = holder_partitioned_after_the_answer(&b, Duration::from_secs(10 * 60)).await;

    for (minute, outcome) in &seen {
        assert!(is_held_elsewhere(outcome), "minute {minute}: {outcome:?}");
    }
    assert_eq!(b.upstream.calls(), 1, "nobody else presented the token");
    assert_eq!(b.upstream.reuses(), 0);
    let stored = b.stored(ID).await;
    assert_eq!(refresh_token(&stored), "rt-1-1", "the fenced write landed");
    assert_eq!(b.claim_state("rt-1-0").await, Some(ClaimState::Consumed));
    let outcome = refresh_stored(&locked_process(&b), &b, ID, &executor).await;
    assert!(
        matches!(outcome, Ok(RefreshOutcome::StillFresh { .. })),
        "{outcome:?}"
    );
}

/// The documented residual risk (README, "Partitions after an answer"): a
/// holder cut off from every store longer than its claim's life (15 min)
/// loses the protection. Another process takes the expired claim over and
/// presents the consumed token again, which the upstream counts as a reuse.
/// The holder's fenced write still lands when the partition heals.
#[tokio::test(start_paused = true)]
async fn break_10_a_holder_cut_off_for_20_min_loses_its_claim_and_the_token_is_presented_again() {
    defaults_under_test();
    let b = Backends::new([expired_account(ID)]);

    let seen = holder_partitioned_after_the_answer(&b, Duration::from_secs(20 * 60)).await;

    let taken_over = seen
        .iter()
        .find(|(_, outcome)| !is_held_elsewhere(outcome))
        .expect("another process takes the claim over during the partition");
    let (minute, outcome) = taken_over;
    assert!(
        (15..=16).contains(minute),
        "the takeover waits for the claim's life by the store's clock: minute {minute}"
    );
    assert!(
        matches!(
            outcome,
            Err(FlowError::Upstream {
                source: ProviderError::InvalidGrant { .. },
                ..
            })
        ),
        "the re-presented token is refused as reused: {outcome:?}"
    );
    assert_eq!(b.upstream.calls(), 2);
    assert_eq!(b.upstream.reuses(), 1, "the documented residual risk");
    let stored = b.stored(ID).await;
    assert_eq!(
        Some(refresh_token(&stored)),
        b.upstream.current_refresh_token(AccountId(ID)),
        "the holder's fenced write landed once the partition healed"
    );
}

// ---------------------------------------------------------------------------
// Breaks 11 and 12: applying an answer found in a claim
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn break_11_an_answer_applied_after_its_access_token_expired_is_refreshed_again_not_served_expired()
 {
    let b = Backends::new([expired_account(ID)]);
    let executor = b.executor(Platform::Anthropic);
    let flow = locked_process(&b);
    let attempts = FlowConfig::default().persist_attempts as usize;
    b.repo.faults.fail_next(
        "compare_and_set_credentials",
        attempts,
        StorageErrorKind::Unavailable,
    );
    let outcome = refresh_stored(&flow, &b, ID, &executor).await;
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

    // The answer's access token (1 h) has expired by the time it is applied.
    let_time_pass(ISSUED_LIFETIME * 2).await;
    let provider = TokenProvider::builder(flow, b.registry(&[Platform::Anthropic])).build();
    let account = b.stored(ID).await;
    let token = within("the token request", provider.access_token(&account))
        .await
        .expect("a usable refresh token is stored: the caller gets a token");

    assert_eq!(token.token.expose(), "at-1-2", "refreshed after applying");
    assert!(token.expires_at.is_some_and(|at| at > b.clock.now()));
    assert_eq!(token.version, 2);
    assert_eq!(b.upstream.successes(), 2);
    assert_eq!(b.upstream.reuses(), 0);
}

#[tokio::test(start_paused = true)]
async fn break_12_a_stale_answer_of_a_non_rotating_account_never_overwrites_a_newer_token() {
    let b = Backends::new([expired_account(ID)]);
    b.upstream.keep_refresh_tokens();
    let executor = b.executor(Platform::Anthropic);
    assert!(!executor.rotates_refresh_token());
    let a = locked_process(&b);
    let attempts = FlowConfig::default().persist_attempts as usize;
    b.repo.faults.fail_next(
        "compare_and_set_credentials",
        attempts,
        StorageErrorKind::Unavailable,
    );
    let outcome = refresh_stored(&a, &b, ID, &executor).await;
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
    // The stale answer (at-1-1) lives an hour.
    let stale = b.claim_of("rt-1-0").await.expect("answered claim");
    assert_eq!(stale.state, ClaimState::Answered);

    // Another writer stores a newer, short-lived access token (version 1).
    let stored = b.stored(ID).await;
    let mut newer = stored.credentials.clone();
    newer.insert("access_token", "at-newer");
    newer.set_expires_at(b.clock.now() + chrono::Duration::minutes(10));
    b.overwrite(ID, &newer).await;

    // Long after: the newer token is due, the stale answer would still be
    // valid. Removing the stale claim fails at first: it stays inapplicable.
    let_time_pass(Duration::from_secs(20 * 60)).await;
    b.claims
        .faults
        .fail_always("remove", StorageErrorKind::Unavailable);
    let other = b.process(LockStrategy::process_local(), FlowConfig::default());
    let outcome = refresh_stored(&other, &b, ID, &executor).await;
    assert!(outcome.is_ok(), "{outcome:?}");
    let stored = b.stored(ID).await;
    assert_eq!(
        access_token(&stored),
        "at-newer",
        "the stale answer was not applied"
    );
    assert_eq!(stored.credentials_version, 1);
    assert_eq!(b.upstream.calls(), 1);

    b.claims.faults.heal();
    let stored = refreshed_account(refresh_stored(&other, &b, ID, &executor).await);
    assert_eq!(
        access_token(&stored),
        "at-1-2",
        "a new refresh, not the stale answer"
    );
    assert_eq!(stored.credentials_version, 2);
    assert_eq!(refresh_token(&stored), "rt-1-0");
    assert_eq!(b.upstream.calls(), 2);
}

// ---------------------------------------------------------------------------
// Break 13: race recovery needs another refresh token
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn break_13_a_revocation_during_an_unrelated_credential_write_is_reported_not_counted_as_won()
{
    let b = Backends::new([expired_account(ID)]);
    let executor = b.executor(Platform::Anthropic);
    let flow = locked_process(&b);
    b.upstream.hold_responses();
    b.upstream.fail_next(ProviderError::InvalidGrant {
        code: OAuthErrorCode::new("invalid_grant"),
        description: Some("Token has been revoked".into()),
    });
    let run = spawn_refresh(&flow, &b.stored(ID).await, &executor);
    calls_reach(&b.upstream, 1).await;

    // A project_id backfill bumps the version while the request is out.
    let stored = b.stored(ID).await;
    let backfilled = stored
        .credentials
        .clone()
        .with("project_id", "p-backfilled");
    b.overwrite(ID, &backfilled).await;
    b.upstream.release(1);

    let outcome = finish(run).await;
    assert!(
        matches!(
            outcome,
            Err(FlowError::Upstream {
                source: ProviderError::InvalidGrant { .. },
                version: 0,
                ..
            })
        ),
        "the revocation is reported: {outcome:?}"
    );
    assert_eq!(b.claim_state("rt-1-0").await, Some(ClaimState::Consumed));

    // The background refresher does not count it as refreshed or skipped,
    // and the dead account ends marked error without another call.
    let report = within(
        "the background cycle",
        anthropic_refresher(&b, &flow).run_once(),
    )
    .await;
    assert_eq!((report.refreshed, report.skipped, report.failed), (0, 0, 1));
    let stored = b.stored(ID).await;
    assert_eq!(stored.status, AccountStatus::Error);
    assert_eq!(b.upstream.calls(), 1);
    assert_eq!(b.upstream.reuses(), 0);
}

// ---------------------------------------------------------------------------
// Break 14: blank token values never win the merge
// ---------------------------------------------------------------------------

/// An executor whose answer carries `refresh_token: <blank>` and a new
/// access token.
struct BlankRefreshToken(Value);

#[async_trait]
impl RefreshExecutor for BlankRefreshToken {
    fn platform(&self) -> Platform {
        Platform::Anthropic
    }

    async fn refresh(
        &self,
        account: &Account,
        ctx: &RefreshContext,
    ) -> Result<Credentials, ProviderError> {
        let mut creds = account
            .credentials
            .clone()
            .with("access_token", "at-new")
            .with("refresh_token", self.0.clone());
        creds.set_expires_at(ctx.now() + chrono::Duration::hours(1));
        Ok(creds)
    }
}

#[tokio::test(start_paused = true)]
async fn break_14_an_answer_with_a_blank_refresh_token_never_wipes_the_stored_one() {
    for blank in [json!(""), json!("   "), json!("\t\n"), Value::Null] {
        let b = Backends::new([expired_account(ID)]);
        let executor: Arc<dyn RefreshExecutor> = Arc::new(BlankRefreshToken(blank.clone()));
        let flow = locked_process(&b);
        let stored = refreshed_account(refresh_stored(&flow, &b, ID, &executor).await);
        assert_eq!(access_token(&stored), "at-new", "{blank}");
        assert_eq!(refresh_token(&stored), "rt-1-0", "{blank}: kept");
        assert_eq!(
            b.stored(ID).await.credentials.get("refresh_token"),
            Some(&json!("rt-1-0")),
            "{blank}: stored as it was"
        );
    }
}

// ---------------------------------------------------------------------------
// Breaks 15 and 16: the background refresher's bounds
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn break_15_background_concurrency_bounds_every_upstream_call_with_a_hanging_upstream() {
    let accounts = (1..=8).map(expired_account);
    let b = Backends::new(accounts);
    let gauge = ConcurrencyProbe::new(b.executor(Platform::Anthropic));
    let refresher = BackgroundRefresher::builder(
        locked_process(&b),
        ExecutorRegistry::new().with(gauge.clone()),
    )
    .config(BackgroundConfig {
        concurrency: 2,
        ..BackgroundConfig::default()
    })
    .build()
    .unwrap();
    b.upstream.hold_responses();

    let report = within("the background cycle", refresher.run_once()).await;

    assert_eq!(
        gauge.peak.load(Ordering::SeqCst),
        2,
        "never more upstream calls at once than the concurrency"
    );
    assert_eq!(
        gauge.in_flight.load(Ordering::SeqCst),
        0,
        "all aborted by H"
    );
    assert_eq!(b.upstream.calls(), 8, "each account presented once");
    assert_eq!(report.failed, 8);
    assert_eq!(b.upstream.reuses(), 0);
}

#[tokio::test(start_paused = true)]
async fn break_16_a_cycle_whose_window_exceeds_the_token_lifetime_refreshes_each_account_once() {
    let accounts = (1..=4).map(|id| oauth_account(id, Platform::Anthropic, -10 * (5 - id)));
    let b = Backends::new(accounts);
    let flow = locked_process(&b);
    let refresher = BackgroundRefresher::builder(flow, b.registry(&[Platform::Anthropic]))
        .config(BackgroundConfig {
            window: ISSUED_LIFETIME * 2,
            // One page and one refresh at a time: each refresh lands before
            // the listing moves on, so the refreshed account (now expiring
            // in 1 h, inside the 2 h window) sorts again after the cursor.
            page_size: 1,
            concurrency: 1,
            ..BackgroundConfig::default()
        })
        .build()
        .unwrap();

    let report = within("the background cycle", refresher.run_once()).await;

    assert_eq!(b.upstream.calls(), 4, "one refresh per account");
    assert_eq!(b.upstream.successes(), 4);
    assert_eq!((report.total, report.refreshed), (4, 4));
    for id in 1..=4 {
        assert_eq!(refresh_token(&b.stored(id).await), format!("rt-{id}-1"));
    }
}

// ---------------------------------------------------------------------------
// Break 17: the error mark is fenced on the observed version
// ---------------------------------------------------------------------------

/// Repository hooks where an operator re-imports fresh credentials just
/// before the first `set_error` reaches the repository.
struct ReimportBeforeErrorMark {
    reimported: AtomicBool,
}

fn fresh_import() -> Credentials {
    let mut creds = Credentials::new()
        .with("access_token", "at-imported")
        .with("refresh_token", "rt-imported");
    creds.set_expires_at(t0() + chrono::Duration::hours(1));
    creds
}

#[async_trait]
impl RepositoryHooks for ReimportBeforeErrorMark {
    async fn before_set_error(
        &self,
        inner: &dyn AccountRepository,
        id: AccountId,
    ) -> Result<(), StorageError> {
        if !self.reimported.swap(true, Ordering::SeqCst) {
            let current = inner.get(id).await?.expect("account exists");
            let applied = inner
                .compare_and_set_credentials(id, CasExpectation::of(&current), &fresh_import())
                .await?;
            assert!(matches!(applied, CasOutcome::Applied(_)));
        }
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn break_17_an_error_mark_racing_a_reimport_never_marks_the_fresh_credentials() {
    let repo = HookedRepository {
        inner: Arc::new(InMemoryAccountRepository::with_accounts([expired_account(
            ID,
        )])),
        hooks: ReimportBeforeErrorMark {
            reimported: AtomicBool::new(false),
        },
    };
    let b = Backends::over(repo);
    let flow = locked_process(&b);
    let refresher = BackgroundRefresher::builder(flow, b.registry(&[Platform::Anthropic]))
        .build()
        .unwrap();
    b.upstream.fail_next(ProviderError::InvalidGrant {
        code: OAuthErrorCode::new("invalid_grant"),
        description: None,
    });

    let report = within("the background cycle", refresher.run_once()).await;

    assert_eq!((report.failed, report.marked_error), (1, 0));
    assert!(
        b.repo.inner().hooks.reimported.load(Ordering::SeqCst),
        "the race happened"
    );
    let stored = b.stored(ID).await;
    assert_eq!(
        stored.status,
        AccountStatus::Active,
        "the fresh import stands"
    );
    assert_eq!(stored.error_message, None);
    assert_eq!(refresh_token(&stored), "rt-imported");

    // The fence, directly: a mark on the observed version lands.
    let repo = b.repo.inner();
    assert!(!repo.set_error(AccountId(ID), 0, "stale").await.unwrap());
    assert!(
        repo.set_error(AccountId(ID), stored.credentials_version, "now")
            .await
            .unwrap()
    );
    assert_eq!(b.stored(ID).await.status, AccountStatus::Error);
}

// ---------------------------------------------------------------------------
// Break 18: no byte slicing of text
// ---------------------------------------------------------------------------

#[test]
fn break_18_debug_of_values_read_back_from_a_backend_never_slices_multi_byte_text() {
    for raw in [
        "ééééééééé-owner",
        "日本語の所有者トークン",
        "🔒🔒🔒🔒🔒🔒🔒🔒🔒",
        "é",
        "",
    ] {
        let owner = LeaseOwner::from_raw(raw);
        let shown = format!("{owner:?}");
        let expected: String = raw.chars().take(8).collect();
        assert!(shown.contains(&expected), "{raw}: {shown}");
        let lease = Lease {
            key: RefreshKey::from_raw(format!("claude:account:{raw}")),
            owner,
            fence: 1,
            ttl: Duration::from_secs(1),
        };
        assert!(format!("{lease:?}").contains("fence: 1"), "{raw}");
        let _ = format!("{:?}", ClaimId::from_raw(raw));
        let secret = Secret::from(raw);
        assert!(!format!("{secret:?}").contains(raw) || raw.is_empty());
        let creds = Credentials::new()
            .with("access_token", raw)
            .with("refresh_token", raw);
        let mut account = Account::oauth(7, Platform::Anthropic, creds);
        account.name = raw.to_owned();
        let _ = format!("{account:?}");
    }
}

// ---------------------------------------------------------------------------
// Break 19: every duration knob is bounded
// ---------------------------------------------------------------------------

#[test]
fn break_19_every_unbounded_duration_knob_is_refused_when_the_flow_is_built() {
    type Knob = (&'static str, fn(&mut FlowConfig));
    let knobs: [Knob; 10] = [
        ("lease_ttl", |c| c.lease_ttl = Duration::MAX),
        ("upstream_timeout", |c| c.upstream_timeout = Duration::MAX),
        ("upstream_grace", |c| c.upstream_grace = Duration::MAX),
        ("claim_ttl", |c| c.claim_ttl = Duration::MAX),
        ("quarantine", |c| c.quarantine = Duration::MAX),
        ("consumed_horizon", |c| c.consumed_horizon = Duration::MAX),
        ("persist_attempt_timeout", |c| {
            c.persist_attempt_timeout = Duration::MAX
        }),
        ("persist_backoff", |c| c.persist_backoff = Duration::MAX),
        ("release_timeout", |c| c.release_timeout = Duration::MAX),
        ("storage_timeout", |c| c.storage_timeout = Duration::MAX),
    ];
    let b = Backends::on_clock([], Arc::new(refresh_core::SystemClock));
    for (name, set) in knobs {
        let mut config = FlowConfig::default();
        set(&mut config);
        let built = b
            .flow_builder(LockStrategy::single(b.lock.clone()))
            .config(config)
            .build();
        match built {
            Err(ConfigError::Invalid { field, .. }) => assert_eq!(field, name),
            Err(other) => panic!("{name}: unexpected {other:?}"),
            Ok(_) => panic!("{name} = Duration::MAX was accepted"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn break_19_the_longest_allowed_durations_survive_a_failing_write_and_claim_store() {
    let b = Backends::new([expired_account(ID)]);
    let executor = b.executor(Platform::Anthropic);
    let config = FlowConfig {
        lease_ttl: MAX_DURATION,
        claim_ttl: MAX_DURATION,
        quarantine: MAX_DURATION,
        consumed_horizon: MAX_CONSUMED_HORIZON,
        persist_attempt_timeout: MAX_DURATION,
        persist_backoff: MAX_DURATION,
        release_timeout: MAX_DURATION,
        ..FlowConfig::default()
    };
    let flow = b.process(LockStrategy::single(b.lock.clone()), config);
    b.fail_writes();
    b.claims
        .faults
        .fail_always("save_answer", StorageErrorKind::Unavailable);

    // Four write backoffs of up to 8 × 7 days: far past STEP_BOUND, within
    // the consumed horizon.
    let account = b.stored(ID).await;
    let outcome = tokio::time::timeout(
        MAX_CONSUMED_HORIZON,
        flow.refresh_if_needed(&account, &executor, WINDOW),
    )
    .await
    .expect("the refresh ends");
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

    b.repo.faults.heal();
    b.claims.faults.heal();
    let_time_pass(MAX_DURATION + RESCUE_ROUND).await;
    let stored = b.stored(ID).await;
    assert_eq!(
        refresh_token(&stored),
        "rt-1-1",
        "rescued, no overflow panic"
    );
    assert_eq!(b.upstream.reuses(), 0);
}

// ---------------------------------------------------------------------------
// error_message: executor-supplied reasons are scrubbed
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn error_message_scrubs_token_like_words_of_an_executor_supplied_reason() {
    const PROXY_PASSWORD: &str = "Sup3rS3cretPassw0rd";
    const TOKEN: &str = "sk-ant-ort01-AbCdEfGhIjKlMnOpQrStUv";
    let b = Backends::new([expired_account(ID)]);
    let refresher = anthropic_refresher(&b, &locked_process(&b));
    b.upstream.fail_next(ProviderError::Configuration {
        reason: format!(
            "proxy http://user:{PROXY_PASSWORD}@proxy.internal:8080 refused; refresh_token={TOKEN}"
        ),
    });

    let report = within("the background cycle", refresher.run_once()).await;

    assert_eq!(
        report.marked_error, 1,
        "a configuration error needs a human"
    );
    let stored = b.stored(ID).await;
    assert_eq!(stored.status, AccountStatus::Error);
    let message = stored.error_message.expect("an error message");
    assert!(
        message.contains("invalid provider configuration"),
        "{message}"
    );
    assert!(message.contains("[redacted]"), "{message}");
    for secret in [PROXY_PASSWORD, TOKEN, "AbCdEfGhIjKlMnOp"] {
        assert!(!message.contains(secret), "{secret} leaked: {message}");
    }
}
