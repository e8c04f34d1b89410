//! Second hostile review: attacks on the fixes of the first review (claim
//! ids chosen by the flow and the acquire retry, the rescue of an unsaved
//! answer, the regressed-row overwrite, the expiry of the answer's access
//! token, waiters applying a claim's answer, the final re-read, the ending
//! retries, the non-rotating rules). `d*` tests reproduce defects; `r*`
//! tests passed and are kept as regressions.
//!
//! Paused tokio time; synchronisation through the fake upstream's gate,
//! `wait_for_calls`, `Notify` and joins. Time is only moved where the
//! behaviour is time-dependent (claim expiry, lease lapse, token expiry).

mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use common::{
    Backends, WINDOW, access_token_of, claim_key, expired_account, let_time_pass, refresh_token_of,
    spawn_refresh, t0,
};
use refresh_core::memory::InMemoryAccountRepository;
use refresh_core::ports::{CasExpectation, CasOutcome, DueCursor};
use refresh_core::{
    Account, AccountId, AccountRepository, Claim, ClaimAcquire, ClaimId, ClaimKey, ClaimState,
    ClaimStore, Credentials, ExecutorRegistry, FlowConfig, FlowError, LockStrategy, Platform,
    ProviderError, RefreshContext, RefreshExecutor, RefreshOutcome, StorageError, StorageErrorKind,
    TokenProvider,
};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

const ID: i64 = 1;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// An executor wrapper that rewrites the inner executor's answer.
struct Rewrite<F> {
    inner: Arc<dyn RefreshExecutor>,
    rotates: bool,
    rewrite: F,
}

#[async_trait]
impl<F> RefreshExecutor for Rewrite<F>
where
    F: Fn(&Account, Credentials) -> Credentials + Send + Sync,
{
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
        let out = self.inner.refresh(account, ctx).await?;
        Ok((self.rewrite)(account, out))
    }
}

/// What the next `acquire` of a [`LateAcquire`] does.
enum AcquireMode {
    /// Report a timeout now; the statement commits when the notify fires
    /// (a statement the client gave up on, still queued in the database).
    CommitsLate(Arc<Notify>),
    /// Report a timeout; nothing reaches the store.
    Fails,
}

/// A claim store whose acquires can commit after the caller gave up.
struct LateAcquire {
    inner: Arc<dyn ClaimStore>,
    plan: Mutex<VecDeque<AcquireMode>>,
    late: Mutex<Vec<JoinHandle<Result<ClaimAcquire, StorageError>>>>,
}

impl LateAcquire {
    fn new(inner: Arc<dyn ClaimStore>, plan: Vec<AcquireMode>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            plan: Mutex::new(plan.into()),
            late: Mutex::new(Vec::new()),
        })
    }

    /// Waits for every late statement to have landed; returns what they
    /// answered.
    async fn landed(&self) -> Vec<ClaimAcquire> {
        let handles: Vec<_> = self.late.lock().unwrap().drain(..).collect();
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.unwrap().unwrap());
        }
        out
    }
}

#[async_trait]
impl ClaimStore for LateAcquire {
    fn name(&self) -> &'static str {
        "late-acquire"
    }
    async fn acquire(
        &self,
        key: &ClaimKey,
        id: &ClaimId,
        account: AccountId,
        base_version: u64,
        ttl: Duration,
    ) -> Result<ClaimAcquire, StorageError> {
        let mode = self.plan.lock().unwrap().pop_front();
        match mode {
            None => {
                self.inner
                    .acquire(key, id, account, base_version, ttl)
                    .await
            }
            Some(AcquireMode::Fails) => Err(StorageError::new(
                StorageErrorKind::Timeout,
                "acquire",
                "no answer",
            )),
            Some(AcquireMode::CommitsLate(go)) => {
                let (inner, key, id) = (Arc::clone(&self.inner), key.clone(), id.clone());
                self.late.lock().unwrap().push(tokio::spawn(async move {
                    go.notified().await;
                    inner.acquire(&key, &id, account, base_version, ttl).await
                }));
                Err(StorageError::new(
                    StorageErrorKind::Timeout,
                    "acquire",
                    "no answer (the statement is still queued)",
                ))
            }
        }
    }
    async fn get(&self, key: &ClaimKey) -> Result<Option<Claim>, StorageError> {
        self.inner.get(key).await
    }
    async fn extend(&self, k: &ClaimKey, id: &ClaimId, t: Duration) -> Result<bool, StorageError> {
        self.inner.extend(k, id, t).await
    }
    async fn quarantine(
        &self,
        k: &ClaimKey,
        id: &ClaimId,
        t: Duration,
    ) -> Result<bool, StorageError> {
        self.inner.quarantine(k, id, t).await
    }
    async fn save_answer(
        &self,
        k: &ClaimKey,
        id: &ClaimId,
        a: &Credentials,
    ) -> Result<bool, StorageError> {
        self.inner.save_answer(k, id, a).await
    }
    async fn mark_consumed(
        &self,
        k: &ClaimKey,
        id: &ClaimId,
        t: Duration,
    ) -> Result<bool, StorageError> {
        self.inner.mark_consumed(k, id, t).await
    }
    async fn remove(&self, k: &ClaimKey, id: &ClaimId) -> Result<bool, StorageError> {
        self.inner.remove(k, id).await
    }
    async fn purge(&self, limit: usize) -> Result<u64, StorageError> {
        self.inner.purge(limit).await
    }
}

/// A repository whose accounts can be deleted.
struct DeletableRepo {
    inner: Mutex<Arc<InMemoryAccountRepository>>,
}

impl DeletableRepo {
    fn with(accounts: Vec<Account>) -> Self {
        Self {
            inner: Mutex::new(Arc::new(InMemoryAccountRepository::with_accounts(accounts))),
        }
    }
    fn repo(&self) -> Arc<InMemoryAccountRepository> {
        Arc::clone(&self.inner.lock().unwrap())
    }
    fn delete(&self, id: i64) {
        let keep: Vec<Account> = self
            .repo()
            .snapshot()
            .into_iter()
            .filter(|a| a.id != AccountId(id))
            .collect();
        *self.inner.lock().unwrap() = Arc::new(InMemoryAccountRepository::with_accounts(keep));
    }
}

#[async_trait]
impl AccountRepository for DeletableRepo {
    async fn get(&self, id: AccountId) -> Result<Option<Account>, StorageError> {
        self.repo().get(id).await
    }
    async fn insert(&self, account: Account) -> Result<Account, StorageError> {
        self.repo().insert(account).await
    }
    async fn compare_and_set_credentials(
        &self,
        id: AccountId,
        expected: CasExpectation,
        credentials: &Credentials,
    ) -> Result<CasOutcome, StorageError> {
        self.repo()
            .compare_and_set_credentials(id, expected, credentials)
            .await
    }
    async fn list_due(
        &self,
        before: DateTime<Utc>,
        after: Option<DueCursor>,
        limit: usize,
    ) -> Result<refresh_core::ports::DuePage, StorageError> {
        self.repo().list_due(before, after, limit).await
    }
    async fn set_error(&self, id: AccountId, v: u64, m: &str) -> Result<bool, StorageError> {
        self.repo().set_error(id, v, m).await
    }
    async fn clear_error(&self, id: AccountId) -> Result<(), StorageError> {
        self.repo().clear_error(id).await
    }
    async fn clear_temp_unschedulable(&self, id: AccountId) -> Result<(), StorageError> {
        self.repo().clear_temp_unschedulable(id).await
    }
}

fn deletable_backends(accounts: Vec<Account>) -> Backends<DeletableRepo> {
    Backends::over(DeletableRepo::with(accounts))
}

// ---------------------------------------------------------------------------
// Fix 1: caller-chosen claim ids, idempotent acquire, retry, remove by id
// ---------------------------------------------------------------------------

/// The first acquire gives up (timeout) but its statement is still queued;
/// the retry fails too; the flow removes by id (nothing there yet); THEN
/// the first statement commits. The open claim left behind blocks the
/// account until it expires by the store's clock (a residual liveness risk
/// the README names: nothing is sent twice), and not longer.
#[tokio::test(start_paused = true)]
async fn d1_an_acquire_committing_after_its_failed_retry_blocks_the_account_at_most_claim_ttl() {
    let b = Backends::new([expired_account(ID)]);
    let go = Arc::new(Notify::new());
    let claims = LateAcquire::new(
        b.claims.clone(),
        vec![
            AcquireMode::CommitsLate(Arc::clone(&go)),
            AcquireMode::Fails,
        ],
    );
    let flow = b.process_over(
        claims.clone(),
        LockStrategy::process_local(),
        Arc::clone(&b.clock),
        FlowConfig::default(),
    );
    let exec = b.executor(Platform::Anthropic);
    let first = flow
        .refresh_if_needed(&b.stored(ID).await, &exec, WINDOW)
        .await;
    assert!(matches!(first, Err(FlowError::Claim { .. })), "{first:?}");
    go.notify_one();
    let landed = claims.landed().await;
    assert!(matches!(landed[..], [ClaimAcquire::Won(_)]), "{landed:?}");
    let_time_pass(Duration::from_secs(60)).await;
    let blocked = flow
        .refresh_if_needed(&b.stored(ID).await, &exec, WINDOW)
        .await;
    assert!(
        matches!(blocked, Ok(RefreshOutcome::HeldElsewhere)),
        "{blocked:?}"
    );
    let_time_pass(FlowConfig::default().claim_ttl).await;
    let second = flow
        .refresh_if_needed(&b.stored(ID).await, &exec, WINDOW)
        .await;
    assert!(
        matches!(second, Ok(RefreshOutcome::Refreshed { .. })),
        "the orphan claim expired: {second:?}; claims {:?}",
        b.claims.inner().snapshot()
    );
    assert_eq!(b.upstream.calls(), 1);
    assert_eq!(b.upstream.reuses(), 0);
}

/// Process A's acquire is queued past its timeout and its retry fails;
/// process B claims and sends; A's statement then lands on B's live claim.
/// B's claim is untouched and no token is presented twice.
#[tokio::test(start_paused = true)]
async fn r1_a_late_committing_acquire_never_makes_a_second_holder() {
    let b = Backends::new([expired_account(ID)]);
    let go = Arc::new(Notify::new());
    let late = LateAcquire::new(
        b.claims.clone(),
        vec![
            AcquireMode::CommitsLate(Arc::clone(&go)),
            AcquireMode::Fails,
        ],
    );
    let fa = b.process_over(
        late.clone(),
        LockStrategy::process_local(),
        Arc::clone(&b.clock),
        FlowConfig::default(),
    );
    let fb = b.local_process();
    let exec = b.executor(Platform::Anthropic);
    let account = b.stored(ID).await;
    let a = fa.refresh_if_needed(&account, &exec, WINDOW).await;
    assert!(matches!(a, Err(FlowError::Claim { .. })), "{a:?}");
    b.upstream.hold_responses();
    let rb = spawn_refresh(&fb, &account, &exec);
    b.upstream.wait_for_calls(1).await;
    let b_claim = b.claim_of("rt-1-0").await.expect("B holds the claim");
    go.notify_one();
    let landed = late.landed().await;
    assert!(
        matches!(&landed[..], [ClaimAcquire::Existing(c)] if c.id == b_claim.id),
        "{landed:?}"
    );
    // A tries again while B's call is out: held elsewhere, nothing sent.
    let a2 = fa.refresh_if_needed(&account, &exec, WINDOW).await;
    assert!(matches!(a2, Ok(RefreshOutcome::HeldElsewhere)), "{a2:?}");
    b.upstream.release(1);
    let out = rb.await.unwrap();
    assert!(
        matches!(out, Ok(RefreshOutcome::Refreshed { .. })),
        "{out:?}"
    );
    assert_eq!(b.upstream.calls(), 1);
    assert_eq!(b.upstream.reuses(), 0);
    assert_eq!(
        refresh_token_of(&b.stored(ID).await).as_deref(),
        Some("rt-1-1")
    );
}

// ---------------------------------------------------------------------------
// Fix 3: a row regressed to a consumed token gets the live answer
// ---------------------------------------------------------------------------

/// h10 with one failed claim read: a backup holding the consumed rt-1-0 is
/// restored while rt-1-1 is being redeemed, and the claim store's `get` in
/// `holds_consumed_token` blinks once. "Unknown reads as no": the live
/// answer is discarded as superseded, the claim (which held the answer) is
/// marked consumed, and the only live token of the grant exists nowhere.
#[tokio::test(start_paused = true)]
async fn d2_a_failed_consumed_check_does_not_discard_the_live_rotation_over_a_restored_backup() {
    let b = Backends::new([expired_account(ID)]);
    let flow = b.local_process();
    let exec = b.executor(Platform::Anthropic);
    let backup = b.stored(ID).await; // rt-1-0
    let first = flow.refresh_if_needed(&backup, &exec, WINDOW).await;
    assert!(matches!(first, Ok(RefreshOutcome::Refreshed { .. })));
    let_time_pass(Duration::from_secs(3600)).await; // due again
    b.upstream.hold_responses();
    let run = spawn_refresh(&flow, &b.stored(ID).await, &exec);
    b.upstream.wait_for_calls(2).await;
    b.overwrite(ID, &backup.credentials).await;
    b.claims
        .faults
        .fail_next("get", 1, StorageErrorKind::Unavailable);
    b.upstream.release(1);
    let out = run.await.unwrap();
    let stored = b.stored(ID).await;
    let live = b.upstream.current_refresh_token(AccountId(ID));
    let kept = b.claim_of("rt-1-1").await;
    assert!(
        refresh_token_of(&stored) == live || kept.as_ref().is_some_and(|c| c.answer.is_some()),
        "live token {live:?} exists nowhere: stored {:?}, claim {:?}, outcome {out:?}",
        refresh_token_of(&stored),
        kept.map(|c| c.state)
    );
}

/// An operator re-logs in (a new, never-consumed grant) while a refresh
/// of the old grant is out: the flow's answer never overwrites it, with
/// the claim store healthy or failing its reads.
#[tokio::test(start_paused = true)]
async fn r2_an_operator_relogin_during_the_call_is_never_overwritten() {
    for claim_reads_fail in [false, true] {
        let b = Backends::new([expired_account(ID)]);
        let flow = b.local_process();
        let exec = b.executor(Platform::Anthropic);
        b.upstream.hold_responses();
        let run = spawn_refresh(&flow, &b.stored(ID).await, &exec);
        b.upstream.wait_for_calls(1).await;
        let mut relogin = Credentials::new()
            .with("access_token", "op-at")
            .with("refresh_token", "op-rt");
        relogin.set_expires_at(t0() + chrono::Duration::hours(8));
        b.overwrite(ID, &relogin).await;
        if claim_reads_fail {
            b.claims
                .faults
                .fail_always("get", StorageErrorKind::Unavailable);
        }
        b.upstream.release(1);
        let out = run.await.unwrap();
        let stored = b.stored(ID).await;
        assert_eq!(
            refresh_token_of(&stored).as_deref(),
            Some("op-rt"),
            "{out:?}"
        );
        assert_eq!(
            access_token_of(&stored).as_deref(),
            Some("op-at"),
            "{out:?}"
        );
        let presented = b.claim_of("rt-1-0").await.map(|c| c.state);
        if claim_reads_fail {
            // Whether the re-login holds a consumed token cannot be read:
            // the live answer is neither written over it nor dropped.
            assert!(
                matches!(
                    out,
                    Err(FlowError::NotPersisted {
                        answer_saved: true,
                        ..
                    })
                ),
                "{out:?}"
            );
            assert_eq!(presented, Some(ClaimState::Answered));
        } else {
            assert!(
                matches!(out, Ok(RefreshOutcome::StillFresh { .. })),
                "{out:?}"
            );
            // The presented generation is remembered as consumed.
            assert_eq!(presented, Some(ClaimState::Consumed));
        }
    }
}

/// A token endpoint keyed by the refresh token (a re-login is a new grant
/// the endpoint knows); each executor over it can hold its responses.
#[derive(Default)]
struct TokenUpstream {
    state: Mutex<(std::collections::HashSet<String>, u64)>,
    reuses: std::sync::atomic::AtomicU64,
    calls: std::sync::atomic::AtomicU64,
}

impl TokenUpstream {
    fn grant(&self, token: &str) {
        self.state.lock().unwrap().0.insert(token.to_owned());
    }
    fn reuses(&self) -> u64 {
        self.reuses.load(std::sync::atomic::Ordering::SeqCst)
    }
}

struct TokenExecutor {
    upstream: Arc<TokenUpstream>,
    gate: Option<Arc<tokio::sync::Semaphore>>,
}

#[async_trait]
impl RefreshExecutor for TokenExecutor {
    fn platform(&self) -> Platform {
        Platform::Anthropic
    }
    async fn refresh(
        &self,
        account: &Account,
        ctx: &RefreshContext,
    ) -> Result<Credentials, ProviderError> {
        use std::sync::atomic::Ordering::SeqCst;
        self.upstream.calls.fetch_add(1, SeqCst);
        let presented = ctx.refresh_token.expose().to_owned();
        let n = {
            let mut st = self.upstream.state.lock().unwrap();
            if !st.0.remove(&presented) {
                self.upstream.reuses.fetch_add(1, SeqCst);
                return Err(ProviderError::InvalidGrant {
                    code: refresh_core::error::OAuthErrorCode::new("refresh_token_reused"),
                    description: None,
                });
            }
            st.1 += 1;
            let n = st.1;
            st.0.insert(format!("g-{n}"));
            n
        };
        if let Some(gate) = &self.gate {
            gate.acquire().await.unwrap().forget();
        }
        let mut c = account.credentials.clone();
        c.insert("access_token", format!("gat-{n}"));
        c.insert("refresh_token", format!("g-{n}"));
        c.set_expires_at(ctx.now() + chrono::Duration::seconds(3600));
        Ok(c)
    }
}

/// An operator re-login (a new grant, its access token already expired)
/// while a refresh of the old grant is out; another process refreshes the
/// new grant (its first token consumed, the row on its second) before the
/// old grant's answer arrives. The late answer never goes over the row:
/// the consumed token is the re-login's, and the row no longer holds it.
#[tokio::test(start_paused = true)]
async fn r3_a_relogin_refreshed_elsewhere_is_not_mistaken_for_a_regressed_row() {
    let b = Backends::new([expired_account(ID)]);
    let up = Arc::new(TokenUpstream::default());
    up.grant("rt-1-0");
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let slow: Arc<dyn RefreshExecutor> = Arc::new(TokenExecutor {
        upstream: Arc::clone(&up),
        gate: Some(Arc::clone(&gate)),
    });
    let fast: Arc<dyn RefreshExecutor> = Arc::new(TokenExecutor {
        upstream: Arc::clone(&up),
        gate: None,
    });
    let f1 = b.local_process();
    let f2 = b.local_process();
    let run = spawn_refresh(&f1, &b.stored(ID).await, &slow);
    common::settle(async || up.calls.load(std::sync::atomic::Ordering::SeqCst) == 1).await;
    let relogin = Credentials::new()
        .with("access_token", "op-at")
        .with("refresh_token", "op-rt")
        .with("expires_at", (t0().timestamp() - 5).to_string());
    up.grant("op-rt");
    b.overwrite(ID, &relogin).await;
    let o2 = f2
        .refresh_if_needed(&b.stored(ID).await, &fast, WINDOW)
        .await;
    assert!(matches!(o2, Ok(RefreshOutcome::Refreshed { .. })), "{o2:?}");
    assert_eq!(
        b.claim_of("op-rt").await.map(|c| c.state),
        Some(ClaimState::Consumed)
    );
    gate.add_permits(1);
    let o1 = run.await.unwrap();
    let stored = b.stored(ID).await;
    assert_eq!(refresh_token_of(&stored).as_deref(), Some("g-2"), "{o1:?}");
    assert!(
        matches!(o1, Ok(RefreshOutcome::StillFresh { .. })),
        "{o1:?}"
    );
    assert_eq!(up.reuses(), 0);
}

// ---------------------------------------------------------------------------
// Fix 2: rescue of an unsaved answer
// ---------------------------------------------------------------------------

/// Non-rotating account: process 1 sends; an unrelated write bumps the
/// version; process 2 clears process 1's claim as stale and sends too; the
/// account is deleted; both answers arrive. Process 1 cannot save its
/// answer (its claim id is gone) nor write it (no account), so it starts a
/// rescue. Neither target can ever take the answer again, yet the rescue
/// never ends: it keeps the leases of the account key extended and loops
/// every 10 s forever.
#[tokio::test(start_paused = true)]
async fn d3_a_rescue_with_no_account_and_no_claim_of_its_own_ends() {
    let b = deletable_backends(vec![expired_account(ID)]);
    b.upstream.keep_refresh_tokens();
    let exec = b.executor(Platform::Anthropic);
    assert!(!exec.rotates_refresh_token());
    let f1 = b.process(LockStrategy::single(b.lock.clone()), FlowConfig::default());
    let f2 = b.local_process();
    b.upstream.hold_responses();
    let r1 = spawn_refresh(&f1, &b.stored(ID).await, &exec);
    b.upstream.wait_for_calls(1).await;
    let acct = b.stored(ID).await;
    let bumped = acct.credentials.clone().with("project_id", "p-1");
    b.overwrite(ID, &bumped).await;
    let r2 = spawn_refresh(&f2, &b.stored(ID).await, &exec);
    b.upstream.wait_for_calls(2).await;
    b.repo.inner().delete(ID);
    b.upstream.release(2);
    let (o1, o2) = (r1.await.unwrap(), r2.await.unwrap());
    assert!(
        matches!(o1, Err(FlowError::AccountNotFound { .. })),
        "{o1:?}"
    );
    assert!(
        matches!(o2, Err(FlowError::AccountNotFound { .. })),
        "{o2:?}"
    );
    let key = common::key(&Platform::Anthropic, ID);
    let_time_pass(Duration::from_secs(3600)).await;
    let saves = b.claim_calls("save_answer");
    let_time_pass(Duration::from_secs(3600)).await;
    assert_eq!(
        b.claim_calls("save_answer"),
        saves,
        "the rescue still loops after two hours"
    );
    assert!(
        b.lease_is_free(&key).await,
        "the rescue holds the account's lease forever"
    );
}

/// Rotating account deleted during the call with the claim store blinking
/// at the save: the rescue saves the answer into the claim once the store
/// is back, ends (lease released), and a re-import of the old export gets
/// the answer applied without presenting the consumed token.
#[tokio::test(start_paused = true)]
async fn r4_a_rescued_answer_of_a_deleted_account_reaches_the_reimport_and_the_rescue_ends() {
    let b = deletable_backends(vec![expired_account(ID)]);
    let exec = b.executor(Platform::Anthropic);
    let flow = b.process(LockStrategy::single(b.lock.clone()), FlowConfig::default());
    b.upstream.hold_responses();
    let run = spawn_refresh(&flow, &b.stored(ID).await, &exec);
    b.upstream.wait_for_calls(1).await;
    let export = b.stored(ID).await;
    b.repo.inner().delete(ID);
    b.claims
        .faults
        .fail_next("save_answer", 3, StorageErrorKind::Unavailable);
    b.upstream.release(1);
    let out = run.await.unwrap();
    assert!(
        matches!(out, Err(FlowError::AccountNotFound { .. })),
        "{out:?}"
    );
    b.claims.faults.wait_for_calls("save_answer", 4).await;
    let key = common::key(&Platform::Anthropic, ID);
    common::settle(async || b.lease_is_free(&key).await).await;
    assert!(b.lease_is_free(&key).await, "the rescue ended");
    assert_eq!(
        b.claim_of("rt-1-0").await.map(|c| c.state),
        Some(ClaimState::Answered)
    );
    b.repo.inner().insert(export).await.unwrap();
    let again = flow
        .refresh_if_needed(&b.stored(ID).await, &exec, WINDOW)
        .await;
    assert!(
        matches!(
            again,
            Ok(RefreshOutcome::Refreshed {
                recovered: true,
                ..
            })
        ),
        "{again:?}"
    );
    assert_eq!(
        refresh_token_of(&b.stored(ID).await).as_deref(),
        Some("rt-1-1")
    );
    assert_eq!(b.upstream.calls(), 1);
    assert_eq!(b.upstream.reuses(), 0);
}

/// The rescue's pause never drops below 100 ms nor grows past 10 s: with
/// both stores down for an hour it makes a bounded number of attempts (no
/// hot loop), and lands the answer once the repository heals.
#[tokio::test(start_paused = true)]
async fn r5_a_rescue_under_a_long_outage_is_not_a_hot_loop_and_lands_when_healed() {
    let b = Backends::new([expired_account(ID)]);
    let exec = b.executor(Platform::Anthropic);
    let flow = b.local_process();
    b.fail_writes();
    b.claims
        .faults
        .fail_always("save_answer", StorageErrorKind::Unavailable);
    b.claims
        .faults
        .fail_always("extend", StorageErrorKind::Unavailable);
    let out = flow
        .refresh_if_needed(&b.stored(ID).await, &exec, WINDOW)
        .await;
    assert!(
        matches!(
            out,
            Err(FlowError::NotPersisted {
                answer_saved: false,
                ..
            })
        ),
        "{out:?}"
    );
    let before = b.repo_calls("compare_and_set_credentials");
    let_time_pass(Duration::from_secs(3600)).await;
    let attempts = b.repo_calls("compare_and_set_credentials") - before;
    assert!(
        (300..=400).contains(&attempts),
        "{attempts} write attempts in an hour"
    );
    b.repo.faults.heal();
    let_time_pass(Duration::from_secs(11)).await;
    assert_eq!(
        refresh_token_of(&b.stored(ID).await).as_deref(),
        Some("rt-1-1")
    );
    b.claims.faults.heal();
    let_time_pass(Duration::from_secs(11)).await;
    assert_eq!(
        b.claim_of("rt-1-0").await.map(|c| c.state),
        Some(ClaimState::Consumed),
        "mark_consumed is retried by the ending call"
    );
    assert_eq!(b.upstream.reuses(), 0);
}

// ---------------------------------------------------------------------------
// Fix 5: waiters apply an answer left in a claim
// ---------------------------------------------------------------------------

/// The holder crashed after saving its answer into the claim, before the
/// write, with its lease still live (it lapses after `lease_ttl`, 180 s).
/// A waiter sees the answered claim but applies it through the whole flow,
/// which stops at the lease: `HeldElsewhere` at every poll, and the waiter
/// times out after `max_wait` (30 s) although the answer is in the claim.
#[tokio::test(start_paused = true)]
async fn d4_a_waiter_applies_the_answer_of_a_crashed_holder_whose_lease_is_still_live() {
    let b = Backends::new([expired_account(ID)]);
    let exec = b.executor(Platform::Anthropic);
    let flow = b.process(LockStrategy::single(b.lock.clone()), FlowConfig::default());
    let provider =
        TokenProvider::builder(flow, ExecutorRegistry::new().with(Arc::clone(&exec))).build();
    // The crashed holder: its lease, its claim, its redemption, its answer.
    let _lease = b.hold(&common::key(&Platform::Anthropic, ID)).await;
    let account = b.stored(ID).await;
    let ck = claim_key("rt-1-0");
    let id = ClaimId::random();
    let won = b
        .claims
        .inner()
        .acquire(
            &ck,
            &id,
            AccountId(ID),
            account.credentials_version,
            Duration::from_secs(900),
        )
        .await
        .unwrap();
    assert!(matches!(won, ClaimAcquire::Won(_)));
    let (n, rt) = b.upstream.redeem(AccountId(ID), "rt-1-0").await.unwrap();
    let mut answer = Credentials::new()
        .with("access_token", format!("at-1-{n}"))
        .with("refresh_token", rt);
    answer.set_expires_at(t0() + chrono::Duration::hours(1));
    assert!(
        b.claims
            .inner()
            .save_answer(&ck, &id, &answer)
            .await
            .unwrap()
    );
    let token = provider.access_token(&account).await;
    assert!(
        token.as_ref().is_ok_and(|t| t.token.expose() == "at-1-1"),
        "the answer waits in the claim: {token:?}"
    );
    assert_eq!(b.upstream.reuses(), 0);
}

/// Six waiters in three processes while the holder's write fails (answer
/// saved): once the repository heals every waiter gets the new token, the
/// grant is redeemed once, and the waiters' polls apply the answer with a
/// bounded number of writes (no stampede).
#[tokio::test(start_paused = true)]
async fn r6_waiters_in_several_processes_apply_one_answer_without_a_stampede() {
    let b = Backends::new([expired_account(ID)]);
    let exec = b.executor(Platform::Anthropic);
    let lock = LockStrategy::single(b.lock.clone());
    let providers: Vec<TokenProvider> = (0..4)
        .map(|_| {
            let f = b.process(lock.clone(), FlowConfig::default());
            TokenProvider::builder(f, ExecutorRegistry::new().with(Arc::clone(&exec))).build()
        })
        .collect();
    let account = b.stored(ID).await;
    b.upstream.hold_responses();
    b.fail_writes();
    let holder = common::spawn_access_token(&providers[0], &account);
    b.upstream.wait_for_calls(1).await;
    let waiters: Vec<_> = providers[1..]
        .iter()
        .flat_map(|p| [0, 1].map(|_| common::spawn_access_token(p, &account)))
        .collect();
    tokio::task::yield_now().await;
    b.upstream.release(1);
    let t = holder
        .await
        .unwrap()
        .expect("holder serves the issued token");
    assert_eq!(t.token.expose(), "at-1-1");
    let before = b.repo_calls("compare_and_set_credentials");
    b.repo.faults.heal();
    for w in waiters {
        let t = w.await.unwrap();
        assert!(
            t.as_ref().is_ok_and(|t| t.token.expose() == "at-1-1"),
            "{t:?}"
        );
    }
    let writes = b.repo_calls("compare_and_set_credentials") - before;
    assert!(writes <= 3, "{writes} writes to apply one answer");
    assert_eq!(b.upstream.calls(), 1);
    assert_eq!(b.upstream.reuses(), 0);
    assert_eq!(
        b.claim_of("rt-1-0").await.map(|c| c.state),
        Some(ClaimState::Consumed)
    );
}

// ---------------------------------------------------------------------------
// Fix 4: the expiry follows the answer's access token
// ---------------------------------------------------------------------------

/// An upstream that rotates the refresh token and re-issues the SAME
/// access token with a renewed lifetime (the expiry describes that access
/// token). The fix treats "same access token" like "no access token": the
/// new expiry is dropped, the row keeps the old past expiry, every request
/// is told `EmptyCredentials` and redeems the grant again.
#[tokio::test(start_paused = true)]
async fn d5_a_reissued_access_token_with_a_renewed_expiry_is_not_refreshed_on_every_request() {
    let b = Backends::new([expired_account(ID)]);
    let exec: Arc<dyn RefreshExecutor> = Arc::new(Rewrite {
        inner: b.executor(Platform::Anthropic),
        rotates: true,
        rewrite: |account: &Account, mut c: Credentials| {
            c.insert("access_token", access_token_of(account).unwrap());
            c
        },
    });
    let flow = b.local_process();
    let provider = TokenProvider::builder(flow, ExecutorRegistry::new().with(exec)).build();
    let mut results = Vec::new();
    for _ in 0..3 {
        let account = b.stored(ID).await;
        results.push(
            provider
                .access_token(&account)
                .await
                .map(|t| t.token.expose().to_owned()),
        );
    }
    assert_eq!(
        b.upstream.calls(),
        1,
        "every request redeemed the grant; results {results:?}; stored expiry {:?}",
        b.stored(ID).await.credentials.expires_at()
    );
    assert!(results.iter().all(Result::is_ok), "{results:?}");
}

// ---------------------------------------------------------------------------
// Fix 6: the final re-read recognises a misreported committed write
// ---------------------------------------------------------------------------

/// The holder's writes all fail without committing; a waiter in another
/// process applies the holder's saved answer meanwhile. The holder's final
/// re-read finds its tokens and reports `Refreshed`; the claim ends
/// consumed, the grant is redeemed once.
#[tokio::test(start_paused = true)]
async fn r7_the_final_reread_accepts_the_same_answer_applied_by_another_process() {
    let b = Backends::new([expired_account(ID)]);
    let exec = b.executor(Platform::Anthropic);
    let f1 = b.local_process();
    let f2 = b.local_process();
    b.repo.faults.fail_next(
        "compare_and_set_credentials",
        5,
        StorageErrorKind::Unavailable,
    );
    let run = spawn_refresh(&f1, &b.stored(ID).await, &exec);
    b.repo
        .faults
        .wait_for_calls("compare_and_set_credentials", 2)
        .await;
    // The answer is in the claim; another process applies it.
    let applied = f2
        .refresh_if_needed(&b.stored(ID).await, &exec, WINDOW)
        .await;
    assert!(
        matches!(
            applied,
            Ok(RefreshOutcome::Refreshed {
                recovered: true,
                ..
            })
        ),
        "{applied:?}"
    );
    let out = run.await.unwrap();
    assert!(
        matches!(out, Ok(RefreshOutcome::Refreshed { .. })),
        "{out:?}"
    );
    assert_eq!(
        refresh_token_of(&b.stored(ID).await).as_deref(),
        Some("rt-1-1")
    );
    assert_eq!(b.upstream.calls(), 1);
    assert_eq!(
        b.claim_of("rt-1-0").await.map(|c| c.state),
        Some(ClaimState::Consumed)
    );
}

/// Writes that fail without committing (non-retryable, straight to the
/// final re-read): the re-read finds the old token pair and does NOT
/// report the write applied; the answer stays in the claim.
#[tokio::test(start_paused = true)]
async fn r8_a_final_reread_never_accepts_a_row_with_other_tokens() {
    let b = Backends::new([expired_account(ID)]);
    let exec = b.executor(Platform::Anthropic);
    let flow = b.local_process();
    b.repo.faults.fail_always(
        "compare_and_set_credentials",
        StorageErrorKind::Other, // not retryable: straight to the re-read
    );
    let out = flow
        .refresh_if_needed(&b.stored(ID).await, &exec, WINDOW)
        .await;
    assert!(
        matches!(
            out,
            Err(FlowError::NotPersisted {
                answer_saved: true,
                ..
            })
        ),
        "{out:?}"
    );
    assert_eq!(
        refresh_token_of(&b.stored(ID).await).as_deref(),
        Some("rt-1-0")
    );
    assert_eq!(
        b.claim_of("rt-1-0").await.map(|c| c.state),
        Some(ClaimState::Answered)
    );
}

// ---------------------------------------------------------------------------
// Fix 8: non-rotating rules
// ---------------------------------------------------------------------------

/// Non-rotating (Google): a backup holding a dead refresh token (its
/// generation consumed by `invalid_grant`) is restored during a refresh of
/// the live one. The "regressed row" rule writes the new access token over
/// the row but keeps the dead refresh token: the live refresh token (never
/// rotated, still valid) is lost and the account is refused as regressed
/// at its next refresh.
#[tokio::test(start_paused = true)]
async fn d7_a_non_rotating_answer_over_a_regressed_row_keeps_the_live_refresh_token() {
    let b = Backends::new([expired_account(ID)]);
    b.upstream.keep_refresh_tokens();
    let exec = b.executor(Platform::Anthropic);
    let flow = b.local_process();
    // A dead token whose generation is marked consumed.
    let dead = claim_key("rt-dead");
    let id = ClaimId::random();
    b.claims
        .inner()
        .acquire(&dead, &id, AccountId(ID), 0, Duration::from_secs(900))
        .await
        .unwrap();
    assert!(
        b.claims
            .inner()
            .mark_consumed(&dead, &id, Duration::from_secs(86_400))
            .await
            .unwrap()
    );
    b.upstream.hold_responses();
    let run = spawn_refresh(&flow, &b.stored(ID).await, &exec);
    b.upstream.wait_for_calls(1).await;
    let restored = b
        .stored(ID)
        .await
        .credentials
        .with("refresh_token", "rt-dead");
    b.overwrite(ID, &restored).await;
    b.upstream.open();
    let out = run.await.unwrap();
    let stored = b.stored(ID).await;
    let_time_pass(Duration::from_secs(3600)).await; // due again
    let next = flow
        .refresh_if_needed(&b.stored(ID).await, &exec, WINDOW)
        .await;
    assert_ne!(
        refresh_token_of(&stored).as_deref(),
        Some("rt-dead"),
        "the new access token was written next to the dead refresh token and rt-1-0 \
         dropped; outcome {out:?}, stored AT {:?}; next refresh {next:?}",
        access_token_of(&stored)
    );
    assert!(
        matches!(next, Ok(RefreshOutcome::Refreshed { .. })),
        "{next:?}"
    );
}

// ---------------------------------------------------------------------------
// Model findings (crates/refresh-model, tests/findings.rs)
// ---------------------------------------------------------------------------

/// F1: the answer could not be saved into the claim, the fenced write
/// landed, and every attempt of the consumed mark failed. The mark is then
/// retried in the background (the claim kept alive meanwhile), so a later
/// re-import of the consumed token is refused instead of presented.
#[tokio::test(start_paused = true)]
async fn f1_a_consumed_mark_that_fails_is_retried_so_a_reimport_is_refused() {
    let b = Backends::new([expired_account(ID)]);
    let flow = b.local_process();
    let exec = b.executor(Platform::Anthropic);
    let backup = b.stored(ID).await.credentials;
    b.claims
        .faults
        .fail_next("save_answer", 1, StorageErrorKind::Unavailable);
    b.claims
        .faults
        .fail_next("mark_consumed", 3, StorageErrorKind::Unavailable);
    let out = b.refresh_stored(&flow, ID, &exec).await;
    assert!(
        matches!(out, Ok(RefreshOutcome::Refreshed { .. })),
        "{out:?}"
    );
    // Past the claim's initial life: without the background retry the open
    // claim would have expired, unmarked.
    let_time_pass(FlowConfig::default().claim_ttl + Duration::from_secs(60)).await;
    assert_eq!(
        b.claim_of("rt-1-0").await.map(|c| c.state),
        Some(ClaimState::Consumed)
    );
    b.overwrite(ID, &backup).await;
    let again = b.refresh_stored(&flow, ID, &exec).await;
    assert!(
        matches!(again, Err(FlowError::CredentialsRegressed { .. })),
        "{again:?}"
    );
    assert_eq!(b.upstream.calls(), 1);
    assert_eq!(b.upstream.reuses(), 0);
}
