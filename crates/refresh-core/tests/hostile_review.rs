//! Hostile review of refresh-core v2 (generation claims): scenarios that try
//! to break invariants 1, 2, 3, 6, 7, 8, 9 and 10 with faults the design may
//! not have anticipated. The `h*` tests reproduced defects the review found
//! (each fixed since); the `p*` tests passed from the start. All are kept as
//! regression tests.
//!
//! Time is tokio's paused clock; synchronisation uses the fake upstream's
//! `hold_responses` / `wait_for_calls` / `release`, `FaultPlan::wait_for_calls`
//! and joins, never a sleep. `let_time_pass` only moves virtual time where
//! the behaviour under test is time-dependent (claim expiry, quarantine).

mod common;

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use common::{
    Backends, ClaimStoreHooks, EXPIRED, HookedClaimStore, OffsetClock, WINDOW, access_token_of,
    expired_account, in_secs, key, let_time_pass, oauth_account, offset_clock, refresh_token_of,
    settle, spawn_access_token, spawn_refresh, t0, tokio_clock,
};
use refresh_core::memory::{InMemoryAccountRepository, InMemoryRefreshLock};
use refresh_core::ports::{CasExpectation, CasOutcome, DueCursor};
use refresh_core::testing::FakeUpstream;
use refresh_core::{
    Account, AccountId, AccountRepository, AccountStatus, BackgroundConfig, BackgroundRefresher,
    ClaimState, ClaimStore, Credentials, ExecutorRegistry, FlowConfig, FlowError, LockStrategy,
    Platform, ProviderError, RefreshContext, RefreshExecutor, RefreshOutcome, StorageError,
    StorageErrorKind, TokenError, TokenProvider,
};

const ID: i64 = 1;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Claim store hooks that let an operation APPLY and then report an error
/// (a database that committed but whose answer was lost), for the ops
/// listed.
#[derive(Default)]
struct AppliedThenFailed {
    pending: Mutex<Vec<(&'static str, usize, StorageErrorKind)>>,
}

impl AppliedThenFailed {
    fn over(inner: Arc<dyn ClaimStore>) -> Arc<HookedClaimStore<Self>> {
        HookedClaimStore::new(inner, Self::default())
    }
    fn next(&self, op: &'static str, times: usize, kind: StorageErrorKind) {
        self.pending.lock().unwrap().push((op, times, kind));
    }
    fn take(&self, op: &'static str) -> Option<StorageErrorKind> {
        let mut p = self.pending.lock().unwrap();
        for e in p.iter_mut() {
            if e.0 == op && e.1 > 0 {
                e.1 -= 1;
                return Some(e.2);
            }
        }
        None
    }
}

impl ClaimStoreHooks for AppliedThenFailed {
    fn name(&self) -> &'static str {
        "applied-then-failed"
    }
    fn after(&self, op: &'static str) -> Result<(), StorageError> {
        match self.take(op) {
            Some(kind) => Err(StorageError::new(kind, op, "applied, answer lost")),
            None => Ok(()),
        }
    }
}

/// A repository that can delete accounts, apply a CAS and then report an
/// error, or panic inside a CAS.
#[derive(Default)]
struct HostileRepo {
    inner: Mutex<Arc<InMemoryAccountRepository>>,
    cas_applied_then: Mutex<VecDeque<StorageErrorKind>>,
    cas_panics: AtomicUsize,
    cas_calls: AtomicU64,
    /// Fail the get call with this 1-based number (0 = never).
    get_fail_on: AtomicU64,
    get_calls: AtomicU64,
}

impl HostileRepo {
    fn with(accounts: Vec<Account>) -> Self {
        Self {
            inner: Mutex::new(Arc::new(InMemoryAccountRepository::with_accounts(accounts))),
            ..Self::default()
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
impl AccountRepository for HostileRepo {
    async fn get(&self, id: AccountId) -> Result<Option<Account>, StorageError> {
        let n = self.get_calls.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.get_fail_on.load(Ordering::SeqCst) {
            return Err(StorageError::new(
                StorageErrorKind::Unavailable,
                "get",
                "injected",
            ));
        }
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
        self.cas_calls.fetch_add(1, Ordering::SeqCst);
        if self
            .cas_panics
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            panic!("repository driver panicked inside compare_and_set");
        }
        let out = self
            .repo()
            .compare_and_set_credentials(id, expected, credentials)
            .await?;
        if let Some(kind) = self.cas_applied_then.lock().unwrap().pop_front() {
            return Err(StorageError::new(
                kind,
                "compare_and_set_credentials",
                "committed, answer lost",
            ));
        }
        Ok(out)
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

fn hostile_backends(accounts: Vec<Account>) -> Backends<HostileRepo> {
    Backends::over(HostileRepo::with(accounts))
}

/// An executor wrapper that rewrites the answer of the inner executor.
struct Rewrite<F> {
    inner: Arc<dyn RefreshExecutor>,
    rotates: bool,
    rewrite: F,
}

#[async_trait]
impl<F> RefreshExecutor for Rewrite<F>
where
    F: Fn(Credentials) -> Credentials + Send + Sync,
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
        Ok((self.rewrite)(out))
    }
}

/// A token endpoint keyed by the token (not the account): a grant imported
/// into two accounts is one grant.
#[derive(Default)]
struct GrantUpstream {
    state: Mutex<(HashSet<String>, u64)>,
    reuses: AtomicU64,
    calls: AtomicU64,
}

impl GrantUpstream {
    fn with(tokens: &[&str]) -> Arc<Self> {
        let up = Self::default();
        up.state.lock().unwrap().0 = tokens.iter().map(|t| (*t).to_owned()).collect();
        Arc::new(up)
    }
}

struct GrantExecutor {
    upstream: Arc<GrantUpstream>,
}

#[async_trait]
impl RefreshExecutor for GrantExecutor {
    fn platform(&self) -> Platform {
        Platform::Anthropic
    }
    async fn refresh(
        &self,
        account: &Account,
        ctx: &RefreshContext,
    ) -> Result<Credentials, ProviderError> {
        self.upstream.calls.fetch_add(1, Ordering::SeqCst);
        let presented = ctx.refresh_token.expose().to_owned();
        let n = {
            let mut st = self.upstream.state.lock().unwrap();
            if !st.0.remove(&presented) {
                self.upstream.reuses.fetch_add(1, Ordering::SeqCst);
                return Err(ProviderError::InvalidGrant {
                    code: refresh_core::error::OAuthErrorCode::new("refresh_token_reused"),
                    description: None,
                });
            }
            st.1 += 1;
            let n = st.1;
            st.0.insert(format!("grt-{n}"));
            n
        };
        let mut c = account.credentials.clone();
        c.insert("access_token", format!("gat-{n}"));
        c.insert("refresh_token", format!("grt-{n}"));
        c.set_expires_at(ctx.now() + chrono::Duration::seconds(3600));
        Ok(c)
    }
}

// ---------------------------------------------------------------------------
// H01: acquire applied but reported a timeout
// ---------------------------------------------------------------------------

/// A claim insert that committed but whose answer was lost (a DB timeout
/// after commit) used to leave an orphan open claim that blocked the account
/// for the whole `claim_ttl`. The flow chooses the claim id and acquire is
/// idempotent per id, so the retry finds the claim its own and refreshes.
#[tokio::test(start_paused = true)]
async fn h01_an_acquire_that_committed_but_timed_out_is_retried_with_the_same_id() {
    let b = Backends::new([expired_account(ID)]);
    let claims = AppliedThenFailed::over(b.claims.clone());
    claims.hooks.next("acquire", 1, StorageErrorKind::Timeout);
    let flow = b.process_over(
        claims.clone(),
        LockStrategy::process_local(),
        Arc::clone(&b.clock),
        FlowConfig::default(),
    );
    let exec = b.executor(Platform::Anthropic);
    let first = b.refresh_stored(&flow, ID, &exec).await;
    assert!(
        matches!(first, Ok(RefreshOutcome::Refreshed { .. })),
        "{first:?}"
    );
    assert_eq!(b.upstream.calls(), 1);
    assert_eq!(b.upstream.reuses(), 0);
}

/// Both the acquire and its retry commit and lose their answers: nothing is
/// sent, and the flow removes the claim by its id, so a flow one minute
/// later (stores healthy) refreshes instead of waiting out `claim_ttl`.
#[tokio::test(start_paused = true)]
async fn h01b_an_acquire_lost_twice_is_removed_by_its_id() {
    let b = Backends::new([expired_account(ID)]);
    let claims = AppliedThenFailed::over(b.claims.clone());
    claims.hooks.next("acquire", 2, StorageErrorKind::Timeout);
    let flow = b.process_over(
        claims.clone(),
        LockStrategy::process_local(),
        Arc::clone(&b.clock),
        FlowConfig::default(),
    );
    let exec = b.executor(Platform::Anthropic);
    let first = b.refresh_stored(&flow, ID, &exec).await;
    assert!(matches!(first, Err(FlowError::Claim { .. })), "{first:?}");
    assert_eq!(b.upstream.calls(), 0);
    assert!(b.claims.inner().is_empty(), "the orphan claim was removed");
    let_time_pass(Duration::from_secs(60)).await;
    let second = b.refresh_stored(&flow, ID, &exec).await;
    assert!(
        matches!(second, Ok(RefreshOutcome::Refreshed { .. })),
        "{second:?}"
    );
    assert_eq!(b.upstream.reuses(), 0);
}

// ---------------------------------------------------------------------------
// H02: a claim remove that fails after a provably-not-sent error
// ---------------------------------------------------------------------------

/// `NotSent` (DNS failure) + one failed `remove`: the claim used to stay
/// open with its full 15-min life, so the account was `HeldElsewhere` for
/// 15 min although nothing was ever sent. The removal is retried now.
#[tokio::test(start_paused = true)]
async fn h02_a_failed_remove_after_not_sent_is_retried_and_does_not_block_the_account() {
    let b = Backends::new([expired_account(ID)]);
    b.upstream.fail_next(ProviderError::NotSent {
        reason: "dns".into(),
    });
    b.claims
        .faults
        .fail_next("remove", 1, StorageErrorKind::Unavailable);
    let flow = b.local_process();
    let exec = b.executor(Platform::Anthropic);
    let first = b.refresh_stored(&flow, ID, &exec).await;
    assert!(
        matches!(first, Err(FlowError::Upstream { .. })),
        "{first:?}"
    );
    let_time_pass(Duration::from_secs(60)).await;
    let second = b.refresh_stored(&flow, ID, &exec).await;
    assert!(
        matches!(second, Ok(RefreshOutcome::Refreshed { .. })),
        "one lost remove must not block an account for 15 min: {second:?}"
    );
}

// ---------------------------------------------------------------------------
// H03: CAS committed but reported a non-retryable error
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn h03_a_committed_write_reported_as_a_non_retryable_error_is_recognised_as_persisted() {
    let b = hostile_backends(vec![expired_account(ID)]);
    b.repo
        .inner()
        .cas_applied_then
        .lock()
        .unwrap()
        .push_back(StorageErrorKind::Other);
    let flow = b.local_process();
    let exec = b.executor(Platform::Anthropic);
    let out = b.refresh_stored(&flow, ID, &exec).await;
    let stored = b.stored(ID).await;
    assert_eq!(
        refresh_token_of(&stored).as_deref(),
        Some("rt-1-1"),
        "the write committed"
    );
    let claim = b.claim_of("rt-1-0").await;
    assert!(
        matches!(out, Ok(RefreshOutcome::Refreshed { .. })),
        "the write committed; reported as {out:?}; claim {:?}",
        claim.as_ref().map(|c| c.state)
    );
    assert_eq!(claim.map(|c| c.state), Some(ClaimState::Consumed));
}

/// Same, with a retryable error: the next attempt recognises its own write.
#[tokio::test(start_paused = true)]
async fn h03b_a_committed_write_reported_as_a_timeout_is_recognised_as_persisted() {
    let b = hostile_backends(vec![expired_account(ID)]);
    b.repo
        .inner()
        .cas_applied_then
        .lock()
        .unwrap()
        .push_back(StorageErrorKind::Timeout);
    let flow = b.local_process();
    let exec = b.executor(Platform::Anthropic);
    let out = b.refresh_stored(&flow, ID, &exec).await;
    assert!(
        matches!(out, Ok(RefreshOutcome::Refreshed { .. })),
        "{out:?}"
    );
    assert_eq!(
        refresh_token_of(&b.stored(ID).await).as_deref(),
        Some("rt-1-1")
    );
    assert_eq!(
        b.claim_of("rt-1-0").await.map(|c| c.state),
        Some(ClaimState::Consumed)
    );
    assert_eq!(b.upstream.calls(), 1);
    assert_eq!(b.upstream.reuses(), 0);
}

// ---------------------------------------------------------------------------
// H04: account deleted mid-call + save_answer failed, then re-imported
// ---------------------------------------------------------------------------

/// The flow has proof that R was consumed (it holds the upstream's answer),
/// but when the account is gone and the claim store blinked once, it drops
/// the answer and leaves the claim open. Re-importing the same export (R)
/// later presents R again once the claim expires.
#[tokio::test(start_paused = true)]
async fn h04_a_consumed_token_reimported_after_a_deleted_account_and_a_lost_answer_is_never_presented()
 {
    let b = hostile_backends(vec![expired_account(ID)]);
    let flow = b.local_process();
    let exec = b.executor(Platform::Anthropic);
    b.upstream.hold_responses();
    let run = spawn_refresh(&flow, &b.stored(ID).await, &exec);
    b.upstream.wait_for_calls(1).await;
    let export = b.stored(ID).await;
    b.repo.inner().delete(ID);
    b.claims
        .faults
        .fail_next("save_answer", 1, StorageErrorKind::Unavailable);
    b.upstream.release(1);
    let out = run.await.unwrap();
    assert!(
        matches!(out, Err(FlowError::AccountNotFound { .. })),
        "{out:?}"
    );
    // The operator re-imports the old export.
    b.repo.inner().insert(export).await.unwrap();
    let_time_pass(Duration::from_secs(16 * 60)).await;
    let again = b.refresh_stored(&flow, ID, &exec).await;
    assert_eq!(
        b.upstream.reuses(),
        0,
        "consumed rt-1-0 presented again; outcome {again:?}"
    );
}

/// Control: with the answer saved, the re-import gets the answer applied.
#[tokio::test(start_paused = true)]
async fn h04b_a_reimport_after_a_deleted_account_gets_the_saved_answer_applied() {
    let b = hostile_backends(vec![expired_account(ID)]);
    let flow = b.local_process();
    let exec = b.executor(Platform::Anthropic);
    b.upstream.hold_responses();
    let run = spawn_refresh(&flow, &b.stored(ID).await, &exec);
    b.upstream.wait_for_calls(1).await;
    let export = b.stored(ID).await;
    b.repo.inner().delete(ID);
    b.upstream.release(1);
    let out = run.await.unwrap();
    assert!(
        matches!(out, Err(FlowError::AccountNotFound { .. })),
        "{out:?}"
    );
    b.repo.inner().insert(export).await.unwrap();
    let_time_pass(Duration::from_secs(16 * 60)).await;
    let again = b.refresh_stored(&flow, ID, &exec).await;
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
    assert_eq!(b.upstream.reuses(), 0);
    assert_eq!(b.upstream.calls(), 1);
}

// ---------------------------------------------------------------------------
// H05: blank access token with a rotated refresh token and a new expiry
// ---------------------------------------------------------------------------

/// An answer `{access_token: "", refresh_token: R1, expires_at: now+1h}`:
/// the blank access token does not win the merge, the new expiry does. The
/// stored row pairs the OLD (expired) access token with a fresh expiry, and
/// the token provider then serves the expired token as valid for an hour.
#[tokio::test(start_paused = true)]
async fn h05_an_answer_with_a_blank_access_token_never_makes_the_old_token_look_valid() {
    let b = Backends::new([expired_account(ID)]);
    let exec: Arc<dyn RefreshExecutor> = Arc::new(Rewrite {
        inner: b.executor(Platform::Anthropic),
        rotates: true,
        rewrite: |mut c: Credentials| {
            c.insert("access_token", "");
            c
        },
    });
    let flow = b.local_process();
    let provider = TokenProvider::builder(flow.clone(), ExecutorRegistry::new().with(exec)).build();
    let account = b.stored(ID).await;
    let first = provider.access_token(&account).await;
    assert!(first.is_err(), "no access token was issued: {first:?}");
    let stored = b.stored(ID).await;
    let second = provider.access_token(&stored).await;
    if let Ok(token) = &second {
        assert_ne!(
            token.token.expose(),
            "at-1-0",
            "the expired access token at-1-0 is served as valid until {:?}; stored {:?}",
            token.expires_at,
            stored.credentials
        );
    }
}

// ---------------------------------------------------------------------------
// H06: non-rotating executor whose upstream does rotate, answered claim
// removed as "stale"
// ---------------------------------------------------------------------------

/// Step 8: "a claim holding an answer is never cleaned up". Step 12: "an
/// answer that does rotate is handled as rotating". A non-rotating executor
/// (Google) whose answer rotated, a failed write (answer saved in the
/// claim), then an unrelated credential write (project_id backfill) bumps
/// the version: the next flow deletes the answered claim as stale, presents
/// the consumed token, and the rotation is lost.
#[tokio::test(start_paused = true)]
async fn h06_an_answered_claim_that_rotated_is_never_deleted_as_stale_by_a_non_rotating_executor() {
    let b = Backends::new([expired_account(ID)]);
    let exec: Arc<dyn RefreshExecutor> = Arc::new(Rewrite {
        inner: b.executor(Platform::Anthropic),
        rotates: false,
        rewrite: |c: Credentials| c,
    });
    let flow = b.local_process();
    b.fail_writes();
    let out = b.refresh_stored(&flow, ID, &exec).await;
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
    b.repo.faults.heal();
    // An unrelated credential write (project id backfill), same refresh token.
    let acct = b.stored(ID).await;
    b.overwrite(ID, &acct.credentials.clone().with("project_id", "p-1"))
        .await;
    let again = b.refresh_stored(&flow, ID, &exec).await;
    assert_eq!(
        b.upstream.reuses(),
        0,
        "the consumed token was presented again; outcome {again:?}"
    );
    assert_eq!(
        refresh_token_of(&b.stored(ID).await).as_deref(),
        Some("rt-1-1")
    );
}

// ---------------------------------------------------------------------------
// H07: one grant in two accounts, answer left in the claim
// ---------------------------------------------------------------------------

/// Account 1 refreshes the grant, its write fails (answer saved). A flow of
/// account 2 (same grant) applies account 1's answer to account 2; account
/// 1 then reads as "credentials regressed". No reuse (the claim works), but
/// the answer went to an account other than `claim.account_id`.
#[tokio::test(start_paused = true)]
async fn h07_one_grant_in_two_accounts_with_a_saved_answer_is_presented_once() {
    let shared = oauth_account(1, Platform::Anthropic, EXPIRED).credentials;
    let a1 = Account::oauth(1, Platform::Anthropic, shared.clone());
    let a2 = Account::oauth(2, Platform::Anthropic, shared);
    let b = Backends::new([a1, a2]);
    let up = GrantUpstream::with(&["rt-1-0"]);
    let exec: Arc<dyn RefreshExecutor> = Arc::new(GrantExecutor {
        upstream: Arc::clone(&up),
    });
    let flow = b.local_process();
    b.fail_writes();
    let out1 = b.refresh_stored(&flow, 1, &exec).await;
    assert!(
        matches!(
            out1,
            Err(FlowError::NotPersisted {
                answer_saved: true,
                ..
            })
        ),
        "{out1:?}"
    );
    b.repo.faults.heal();
    let out2 = b.refresh_stored(&flow, 2, &exec).await;
    let out1b = b.refresh_stored(&flow, 1, &exec).await;
    assert_eq!(up.reuses.load(Ordering::SeqCst), 0);
    assert_eq!(up.calls.load(Ordering::SeqCst), 1);
    // One grant, one live generation: the account that found the answer in
    // the claim takes it, and the other is told it holds a consumed token.
    assert!(
        matches!(
            out2,
            Ok(RefreshOutcome::Refreshed {
                recovered: true,
                ..
            })
        ),
        "{out2:?}"
    );
    assert!(
        matches!(out1b, Err(FlowError::CredentialsRegressed { .. })),
        "{out1b:?}"
    );
    assert_eq!(
        refresh_token_of(&b.stored(2).await).as_deref(),
        Some("grt-1")
    );
}

// ---------------------------------------------------------------------------
// H08: waiter in another process when the holder ends NotPersisted
// ---------------------------------------------------------------------------

/// Process 1 refreshes, its write fails (answer in the claim) and it serves
/// the new token; the repository heals at once. Process 2's caller, waiting
/// for the refresh held elsewhere, only re-reads the account and cache: it
/// never applies the answer waiting in the claim and times out.
#[tokio::test(start_paused = true)]
async fn h08_a_waiter_elsewhere_gets_the_new_token_when_the_holder_left_it_in_the_claim() {
    let b = Backends::new([expired_account(ID)]);
    let exec = b.executor(Platform::Anthropic);
    let lock = LockStrategy::single(b.lock.clone());
    let f1 = b.process(lock.clone(), FlowConfig::default());
    let f2 = b.process(lock, FlowConfig::default());
    let reg = || ExecutorRegistry::new().with(Arc::clone(&exec));
    let p1 = TokenProvider::builder(f1, reg()).build();
    let p2 = TokenProvider::builder(f2, reg()).build();
    let account = b.stored(ID).await;
    b.upstream.hold_responses();
    b.fail_writes();
    let c1 = spawn_access_token(&p1, &account);
    b.upstream.wait_for_calls(1).await;
    let c2 = spawn_access_token(&p2, &account);
    tokio::task::yield_now().await;
    b.upstream.release(1);
    let t1 = c1
        .await
        .unwrap()
        .expect("process 1 serves the issued token");
    assert_eq!(t1.token.expose(), "at-1-1");
    b.repo.faults.heal();
    let t2 = c2.await.unwrap();
    assert_eq!(b.upstream.reuses(), 0);
    assert!(
        t2.as_ref().is_ok_and(|t| t.token.expose() == "at-1-1"),
        "waiter in process 2: {t2:?}"
    );
}

// ---------------------------------------------------------------------------
// Breadth: scenarios the library passed (kept as regression tests)
// ---------------------------------------------------------------------------

/// Four "processes" with different configs and clocks (±100 s offsets, one
/// that jumps an hour ahead mid-run), process_local locks, one shared claim
/// store; 40 rounds of concurrent callers under every ProviderError kind
/// answered BEFORE the rotation. Zero reuse; the stored refresh token is
/// always the one the upstream accepts.
#[tokio::test(start_paused = true)]
async fn p01_four_processes_with_different_configs_and_clocks_never_present_a_token_twice() {
    let b = Backends::new([expired_account(1), expired_account(2)]);
    let jump = OffsetClock::new(&tokio_clock(), 0);
    let short = FlowConfig {
        upstream_timeout: Duration::from_secs(2),
        upstream_grace: Duration::from_secs(1),
        lease_ttl: Duration::from_secs(20),
        claim_ttl: Duration::from_secs(20),
        quarantine: Duration::from_secs(5),
        storage_timeout: Duration::from_secs(1),
        ..FlowConfig::default()
    };
    let long = FlowConfig {
        upstream_timeout: Duration::from_secs(120),
        claim_ttl: Duration::from_secs(3600),
        quarantine: Duration::from_secs(1800),
        lease_ttl: Duration::from_secs(300),
        ..FlowConfig::default()
    };
    let flows = [
        b.process(LockStrategy::process_local(), FlowConfig::default()),
        b.process_over(
            b.claims.clone(),
            LockStrategy::process_local(),
            offset_clock(100),
            short,
        ),
        b.process_over(
            b.claims.clone(),
            LockStrategy::process_local(),
            offset_clock(-100),
            long,
        ),
        b.process_over(
            b.claims.clone(),
            LockStrategy::process_local(),
            jump.clone(),
            FlowConfig::default(),
        ),
    ];
    let exec = b.executor(Platform::Anthropic);
    let errors = [
        ProviderError::NotSent {
            reason: "dns".into(),
        },
        ProviderError::ServerError {
            status: Some(503),
            reason: "down".into(),
        },
        ProviderError::Ambiguous {
            reason: "reset".into(),
        },
        ProviderError::InvalidResponse {
            reason: "html".into(),
        },
        ProviderError::RateLimited { retry_after: None },
        ProviderError::UnexpectedStatus {
            status: 418,
            code: None,
        },
        ProviderError::ProjectDiscovery { reason: "x".into() },
        ProviderError::Configuration {
            reason: "proxy".into(),
        },
    ];
    let mut rng = fastrand::Rng::with_seed(7);
    for round in 0..40 {
        if round == 20 {
            jump.jump(Duration::from_secs(3600));
        }
        if rng.bool() {
            b.upstream
                .fail_next(errors[rng.usize(..errors.len())].clone());
        }
        let mut runs = Vec::new();
        for _ in 0..6 {
            let flow = &flows[rng.usize(..flows.len())];
            let id = 1 + rng.i64(0..2);
            runs.push(spawn_refresh(flow, &b.stored(id).await, &exec));
        }
        for r in runs {
            let _ = r.await.unwrap();
        }
        // Past every quarantine and claim life; tokens (1 h) become due.
        let_time_pass(Duration::from_secs(3700)).await;
    }
    assert_eq!(b.upstream.reuses(), 0);
    assert!(b.upstream.successes() >= 20, "{}", b.upstream.successes());
    for id in 1..=2 {
        assert_eq!(
            refresh_token_of(&b.stored(id).await),
            b.upstream.current_refresh_token(AccountId(id)),
            "account {id}: a rotation the upstream answered was lost"
        );
    }
}

/// A repository driver that panics inside the CAS after the answer was
/// saved in the claim: the flight ends as TaskFailed, the next flow applies
/// the answer, nothing is presented twice, and the lease lapses.
#[tokio::test(start_paused = true)]
async fn p02_a_panic_in_the_write_after_the_answer_loses_nothing() {
    let b = hostile_backends(vec![expired_account(ID)]);
    b.repo.inner().cas_panics.store(1, Ordering::SeqCst);
    let flow = b.process(LockStrategy::single(b.lock.clone()), FlowConfig::default());
    let exec = b.executor(Platform::Anthropic);
    let out = b.refresh_stored(&flow, ID, &exec).await;
    assert!(matches!(out, Err(FlowError::TaskFailed { .. })), "{out:?}");
    let_time_pass(Duration::from_secs(181)).await;
    let again = b.refresh_stored(&flow, ID, &exec).await;
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

/// An executor that hangs forever: aborted at H, quarantined, lease
/// released, the flight ends; a second process fails fast as quarantined.
#[tokio::test(start_paused = true)]
async fn p03_an_executor_hanging_forever_is_aborted_and_quarantined() {
    let b = Backends::new([expired_account(ID)]);
    b.upstream.hold_responses();
    let lock = LockStrategy::single(b.lock.clone());
    let f1 = b.process(lock.clone(), FlowConfig::default());
    let f2 = b.process_over(
        b.claims.clone(),
        LockStrategy::process_local(),
        offset_clock(500),
        FlowConfig::default(),
    );
    let exec = b.executor(Platform::Anthropic);
    let started = tokio::time::Instant::now();
    let out = b.refresh_stored(&f1, ID, &exec).await;
    assert!(
        matches!(
            out,
            Err(FlowError::Upstream {
                source: ProviderError::Ambiguous { .. },
                ..
            })
        ),
        "{out:?}"
    );
    assert_eq!(started.elapsed(), Duration::from_secs(60));
    assert!(b.lease_is_free(&key(&Platform::Anthropic, ID)).await);
    let other = b.refresh_stored(&f2, ID, &exec).await;
    assert!(
        matches!(other, Err(FlowError::Quarantined { .. })),
        "{other:?}"
    );
    assert_eq!(b.upstream.calls(), 1);
    assert_eq!(b.upstream.reuses(), 0);
}

/// Every claim operation applied by the store but reported as a timeout
/// (extend, quarantine, save_answer, mark_consumed, remove): no reuse, no
/// lost rotation, over a sequence of refreshes with faults before and
/// after the rotation.
#[tokio::test(start_paused = true)]
async fn p04_claim_operations_applied_but_reported_failed_never_cause_reuse() {
    let b = Backends::new([expired_account(ID)]);
    let claims = AppliedThenFailed::over(b.claims.clone());
    let flow = b.process_over(
        claims.clone(),
        LockStrategy::process_local(),
        Arc::clone(&b.clock),
        FlowConfig::default(),
    );
    let exec = b.executor(Platform::Anthropic);
    for op in [
        "save_answer",
        "mark_consumed",
        "quarantine",
        "remove",
        "save_answer",
    ] {
        claims.hooks.next(op, 1, StorageErrorKind::Timeout);
        match op {
            "quarantine" => b.upstream.fail_next(ProviderError::ServerError {
                status: Some(502),
                reason: "x".into(),
            }),
            "remove" => b.upstream.fail_next(ProviderError::NotSent {
                reason: "dns".into(),
            }),
            _ => {}
        }
        let _ = b.refresh_stored(&flow, ID, &exec).await;
        let_time_pass(Duration::from_secs(3700)).await;
        let _ = b.refresh_stored(&flow, ID, &exec).await;
        let_time_pass(Duration::from_secs(3700)).await;
    }
    assert_eq!(b.upstream.reuses(), 0);
    assert_eq!(
        refresh_token_of(&b.stored(ID).await),
        b.upstream.current_refresh_token(AccountId(ID))
    );
}

/// Claim-store faults (not applied) at every holder operation, one at a
/// time, plus one refresh per fault: zero reuse, nothing lost.
#[tokio::test(start_paused = true)]
async fn p05_claim_store_faults_at_every_operation_never_cause_reuse() {
    let b = Backends::new([expired_account(ID)]);
    let flow = b.local_process();
    let exec = b.executor(Platform::Anthropic);
    let cases: [(&'static str, Option<ProviderError>); 7] = [
        ("acquire", None),
        ("save_answer", None),
        ("mark_consumed", None),
        (
            "quarantine",
            Some(ProviderError::Ambiguous {
                reason: "reset".into(),
            }),
        ),
        (
            "remove",
            Some(ProviderError::RateLimited { retry_after: None }),
        ),
        ("extend", None),
        ("get", None),
    ];
    for (op, err) in cases {
        b.claims
            .faults
            .fail_next(op, 1, StorageErrorKind::Unavailable);
        if let Some(e) = err {
            b.upstream.fail_next(e);
        }
        let _ = b.refresh_stored(&flow, ID, &exec).await;
        let_time_pass(Duration::from_secs(3700)).await;
    }
    let _ = b.refresh_stored(&flow, ID, &exec).await;
    assert_eq!(b.upstream.reuses(), 0);
    assert_eq!(
        refresh_token_of(&b.stored(ID).await),
        b.upstream.current_refresh_token(AccountId(ID))
    );
}

/// Rescue: the write and save_answer fail, extend fails too for a while,
/// then the claim store heals before the claim's 15 min: the answer is
/// saved, the next flow applies it; no reuse.
#[tokio::test(start_paused = true)]
async fn p06_a_rescue_with_failing_extends_still_lands_the_answer() {
    let b = Backends::new([expired_account(ID)]);
    let flow = b.local_process();
    let exec = b.executor(Platform::Anthropic);
    b.fail_writes();
    b.claims
        .faults
        .fail_always("save_answer", StorageErrorKind::Unavailable);
    b.claims
        .faults
        .fail_always("extend", StorageErrorKind::Unavailable);
    let out = b.refresh_stored(&flow, ID, &exec).await;
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
    let_time_pass(Duration::from_secs(5 * 60)).await;
    b.claims.faults.heal();
    let_time_pass(Duration::from_secs(20)).await;
    assert_eq!(
        b.claim_of("rt-1-0").await.map(|c| c.state),
        Some(ClaimState::Answered)
    );
    b.repo.faults.heal();
    let again = b.refresh_stored(&flow, ID, &exec).await;
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
    assert_eq!(b.upstream.calls(), 1);
    assert_eq!(b.upstream.reuses(), 0);
}

/// Caller cancellation: the caller's future is dropped while the upstream
/// holds the response; the refresh finishes detached, is persisted and
/// the lease is released.
#[tokio::test(start_paused = true)]
async fn p07_a_dropped_caller_does_not_lose_the_rotation_or_the_lease() {
    let b = Backends::new([expired_account(ID)]);
    let flow = b.process(LockStrategy::single(b.lock.clone()), FlowConfig::default());
    let provider = TokenProvider::builder(flow, b.registry(&[Platform::Anthropic])).build();
    b.upstream.hold_responses();
    let caller = spawn_access_token(&provider, &b.stored(ID).await);
    b.upstream.wait_for_calls(1).await;
    caller.abort();
    assert!(caller.await.unwrap_err().is_cancelled());
    b.upstream.release(1);
    settle(async || refresh_token_of(&b.stored(ID).await).as_deref() == Some("rt-1-1")).await;
    assert_eq!(
        refresh_token_of(&b.stored(ID).await).as_deref(),
        Some("rt-1-1")
    );
    settle(async || b.lease_is_free(&key(&Platform::Anthropic, ID)).await).await;
    assert!(b.lease_is_free(&key(&Platform::Anthropic, ID)).await);
    assert_eq!(
        b.claim_of("rt-1-0").await.map(|c| c.state),
        Some(ClaimState::Consumed)
    );
}

/// TokenProvider waiters in another process with no shared lock: the
/// claim turns them into waiters, and they get the new token.
#[tokio::test(start_paused = true)]
async fn p08_waiters_in_another_process_under_process_local_get_the_new_token() {
    let b = Backends::new([expired_account(ID)]);
    let reg = || b.registry(&[Platform::Anthropic]);
    let p1 = TokenProvider::builder(b.local_process(), reg()).build();
    let p2 = TokenProvider::builder(b.local_process(), reg()).build();
    let account = b.stored(ID).await;
    b.upstream.hold_responses();
    let c1 = spawn_access_token(&p1, &account);
    b.upstream.wait_for_calls(1).await;
    let waiters: Vec<_> = (0..5).map(|_| spawn_access_token(&p2, &account)).collect();
    b.claims.faults.wait_for_calls("acquire", 2).await;
    b.upstream.release(1);
    assert_eq!(c1.await.unwrap().unwrap().token.expose(), "at-1-1");
    for w in waiters {
        assert_eq!(w.await.unwrap().unwrap().token.expose(), "at-1-1");
    }
    assert_eq!(b.upstream.calls(), 1);
}

/// A waiter in another process whose holder ends quarantined (5xx after
/// the rotation) fails fast, well before its max wait.
#[tokio::test(start_paused = true)]
async fn p09_waiters_of_a_quarantined_holder_fail_fast() {
    let b = Backends::new([expired_account(ID)]);
    let reg = || b.registry(&[Platform::OpenAi, Platform::Anthropic]);
    let p1 = TokenProvider::builder(b.local_process(), reg()).build();
    let p2 = TokenProvider::builder(b.local_process(), reg()).build();
    let account = b.stored(ID).await;
    b.upstream.hold_responses();
    b.upstream
        .fail_after_rotation_next(ProviderError::ServerError {
            status: Some(500),
            reason: "x".into(),
        });
    let c1 = spawn_access_token(&p1, &account);
    b.upstream.wait_for_calls(1).await;
    let started = tokio::time::Instant::now();
    let c2 = spawn_access_token(&p2, &account);
    b.claims.faults.wait_for_calls("acquire", 2).await;
    b.upstream.release(1);
    let _ = c1.await.unwrap();
    let r2 = c2.await.unwrap();
    assert!(
        matches!(
            r2,
            Err(TokenError::Refresh {
                source: FlowError::Quarantined { .. },
                ..
            })
        ),
        "{r2:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(b.upstream.reuses(), 0);
}

/// Background refresher: concurrency 2, six accounts, an upstream that
/// never answers: at most two calls in flight, each aborted at H; a
/// shutdown mid-cycle returns at once; later cycles see quarantines, mark
/// nothing, and present nothing twice.
#[tokio::test(start_paused = true)]
async fn p10_background_with_a_hanging_upstream_bounds_calls_stops_promptly_and_marks_nothing() {
    let b = Backends::new((1..=6).map(expired_account));
    b.upstream.hold_responses();
    let flow = b.local_process();
    let bg = BackgroundRefresher::builder(flow, b.registry(&[Platform::Anthropic]))
        .config(BackgroundConfig {
            concurrency: 2,
            ..BackgroundConfig::default()
        })
        .build()
        .unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let cycle = {
        let (bg, s) = (bg.clone(), shutdown.clone());
        tokio::spawn(async move { bg.run_cycle(&s).await })
    };
    b.upstream.wait_for_calls(2).await;
    let_time_pass(Duration::from_secs(30)).await;
    assert_eq!(b.upstream.calls(), 2, "concurrency bound");
    let stopped = tokio::time::Instant::now();
    shutdown.cancel();
    let report = cycle.await.unwrap();
    assert!(report.cancelled);
    assert!(stopped.elapsed() < Duration::from_secs(1));
    let_time_pass(Duration::from_secs(120)).await;
    let report = bg.run_once().await;
    assert_eq!(b.upstream.reuses(), 0);
    assert!(
        b.upstream.calls() <= 6,
        "{} calls: {report:?}",
        b.upstream.calls()
    );
    for id in 1..=6 {
        assert_eq!(
            b.stored(id).await.status,
            AccountStatus::Active,
            "{report:?}"
        );
    }
}

/// A consumed token re-imported into a DIFFERENT account row (new id) is
/// refused as regressed, without a call.
#[tokio::test(start_paused = true)]
async fn p11_a_consumed_token_imported_into_a_new_account_is_refused_without_a_call() {
    let b = Backends::new([expired_account(1)]);
    let up = GrantUpstream::with(&["rt-1-0"]);
    let exec: Arc<dyn RefreshExecutor> = Arc::new(GrantExecutor {
        upstream: Arc::clone(&up),
    });
    let flow = b.local_process();
    let out = b.refresh_stored(&flow, 1, &exec).await;
    assert!(
        matches!(out, Ok(RefreshOutcome::Refreshed { .. })),
        "{out:?}"
    );
    let copy = Account::oauth(9, Platform::Anthropic, expired_account(1).credentials);
    b.repo.inner().insert(copy.clone()).await.unwrap();
    let out = flow.refresh_if_needed(&copy, &exec, WINDOW).await;
    assert!(
        matches!(out, Err(FlowError::CredentialsRegressed { .. })),
        "{out:?}"
    );
    assert_eq!(up.calls.load(Ordering::SeqCst), 1);
    assert_eq!(up.reuses.load(Ordering::SeqCst), 0);
}

/// Account deleted and re-created at the same id and version with another
/// refresh token while the call is out: the answer never overwrites it.
#[tokio::test(start_paused = true)]
async fn p12_an_account_recreated_at_the_same_id_and_version_is_never_overwritten() {
    let b = hostile_backends(vec![expired_account(ID)]);
    let flow = b.local_process();
    let exec = b.executor(Platform::Anthropic);
    b.upstream.hold_responses();
    let run = spawn_refresh(&flow, &b.stored(ID).await, &exec);
    b.upstream.wait_for_calls(1).await;
    b.repo.inner().delete(ID);
    let relogin = Credentials::new()
        .with("access_token", "at-relogin")
        .with("refresh_token", "rt-relogin")
        .with("expires_at", (in_secs(3600).timestamp()).to_string());
    b.repo
        .inner()
        .insert(Account::oauth(ID, Platform::Anthropic, relogin))
        .await
        .unwrap();
    b.upstream.release(1);
    let out = run.await.unwrap();
    let stored = b.stored(ID).await;
    assert_eq!(
        refresh_token_of(&stored).as_deref(),
        Some("rt-relogin"),
        "{out:?}"
    );
    assert_eq!(access_token_of(&stored).as_deref(), Some("at-relogin"));
    assert_eq!(b.upstream.reuses(), 0);
}

/// Stacked locks with the secondary flushed for the second process (fresh
/// lock object): the claim keeps it from presenting the token.
#[tokio::test(start_paused = true)]
async fn p13_stacked_locks_split_mid_call_do_not_let_a_second_process_present_the_token() {
    let b = Backends::new([expired_account(ID)]);
    let primary = b.lock.clone();
    let secondary = Arc::new(InMemoryRefreshLock::new(Arc::clone(&b.clock)));
    let f1 = b.process(
        LockStrategy::stacked(primary, secondary),
        FlowConfig::default(),
    );
    let f2 = b.process(
        LockStrategy::stacked(
            Arc::new(InMemoryRefreshLock::new(Arc::clone(&b.clock))),
            Arc::new(InMemoryRefreshLock::new(Arc::clone(&b.clock))),
        ),
        FlowConfig::default(),
    );
    let exec = b.executor(Platform::Anthropic);
    b.upstream.hold_responses();
    let run = spawn_refresh(&f1, &b.stored(ID).await, &exec);
    b.upstream.wait_for_calls(1).await;
    let second = b.refresh_stored(&f2, ID, &exec).await;
    assert!(
        matches!(second, Ok(RefreshOutcome::HeldElsewhere)),
        "{second:?}"
    );
    b.upstream.release(1);
    assert!(matches!(
        run.await.unwrap(),
        Ok(RefreshOutcome::Refreshed { .. })
    ));
    assert_eq!(b.upstream.calls(), 1);
    assert_eq!(b.upstream.reuses(), 0);
}

/// Non-rotating executor with a live but stale claim (the version moved by
/// an unrelated write while the call is out): the second process sends
/// again (harmless for Google), no reuse, and the older answer does not
/// overwrite the newer row.
#[tokio::test(start_paused = true)]
async fn p14_non_rotating_stale_live_claim_is_resent_harmlessly_and_the_old_answer_stands_aside() {
    let b = Backends::new([expired_account(ID)]);
    b.upstream.keep_refresh_tokens();
    let f1 = b.local_process();
    let f2 = b.local_process();
    let exec = b.executor(Platform::Anthropic);
    b.upstream.hold_responses();
    let run = spawn_refresh(&f1, &b.stored(ID).await, &exec);
    b.upstream.wait_for_calls(1).await;
    let acct = b.stored(ID).await;
    let creds = acct.credentials.clone().with("project_id", "p-1");
    b.repo
        .inner()
        .compare_and_set_credentials(acct.id, CasExpectation::of(&acct), &creds)
        .await
        .unwrap();
    let second = spawn_refresh(&f2, &b.stored(ID).await, &exec);
    b.upstream.wait_for_calls(2).await;
    b.upstream.open();
    let o1 = run.await.unwrap();
    let o2 = second.await.unwrap();
    assert_eq!(b.upstream.reuses(), 0);
    let stored = b.stored(ID).await;
    assert_eq!(
        stored
            .credentials
            .get("project_id")
            .and_then(|v| v.as_str()),
        Some("p-1"),
        "{o1:?} {o2:?}"
    );
    assert_eq!(
        access_token_of(&stored).as_deref(),
        Some("at-1-2"),
        "{o1:?} {o2:?}"
    );
}

/// Bad stored input: expires_at in milliseconds and a garbage expiry are
/// due, refreshed once, and healed to the canonical encoding.
#[tokio::test(start_paused = true)]
async fn p15_unreadable_stored_expiries_are_refreshed_and_healed() {
    let mut a = expired_account(1);
    a.credentials.insert("expires_at", "1893456000000");
    let mut c = expired_account(2);
    c.credentials
        .insert("expires_at", serde_json::json!({"nested": true}));
    let b = Backends::new([a, c]);
    let flow = b.local_process();
    let exec = b.executor(Platform::Anthropic);
    for id in 1..=2 {
        let out = b.refresh_stored(&flow, id, &exec).await;
        assert!(
            matches!(out, Ok(RefreshOutcome::Refreshed { .. })),
            "{out:?}"
        );
        let s = b.stored(id).await;
        assert_eq!(s.credentials.expires_at().unwrap(), Some(in_secs(3600)));
    }
    assert_eq!(b.upstream.reuses(), 0);
}

/// An answer with `refresh_token: null` and an unreadable `expires_at`:
/// the stored refresh token survives, the new access token gets the assumed
/// lifetime (not the old past expiry, not "unknown" which would refresh on
/// every request), and the next call finds it fresh.
#[tokio::test(start_paused = true)]
async fn p16_null_refresh_token_and_garbage_expiry_in_an_answer_corrupt_nothing() {
    let b = Backends::new([expired_account(ID)]);
    b.upstream.keep_refresh_tokens();
    let exec: Arc<dyn RefreshExecutor> = Arc::new(Rewrite {
        inner: b.executor(Platform::Anthropic),
        rotates: false,
        rewrite: |mut c: Credentials| {
            c.insert("refresh_token", serde_json::Value::Null);
            c.insert("expires_at", "soon");
            c
        },
    });
    let flow = b.local_process();
    let out = b.refresh_stored(&flow, ID, &exec).await;
    assert!(
        matches!(out, Ok(RefreshOutcome::Refreshed { .. })),
        "{out:?}"
    );
    let s = b.stored(ID).await;
    assert_eq!(refresh_token_of(&s).as_deref(), Some("rt-1-0"));
    let assumed = chrono::Duration::from_std(refresh_core::flow::ASSUMED_TOKEN_LIFETIME).unwrap();
    assert_eq!(s.credentials.expires_at().unwrap(), Some(t0() + assumed));
    let again = flow.refresh_if_needed(&s, &exec, WINDOW).await;
    assert!(
        matches!(again, Ok(RefreshOutcome::StillFresh { .. })),
        "{again:?}"
    );
    assert_eq!(b.upstream.calls(), 1);
    assert_eq!(b.upstream.reuses(), 0);
}

/// Secrets never appear in Debug/Display of outcomes, errors, claims,
/// contexts or tokens.
#[tokio::test(start_paused = true)]
async fn p17_no_token_text_in_debug_or_display_of_flow_values() {
    let b = Backends::new([expired_account(ID)]);
    let flow = b.local_process();
    let exec = b.executor(Platform::Anthropic);
    b.fail_writes();
    let np = b.refresh_stored(&flow, ID, &exec).await;
    let claim = b.claim_of("rt-1-0").await;
    b.repo.faults.heal();
    let ok = b.refresh_stored(&flow, ID, &exec).await;
    let ctx = RefreshContext::for_token("rt-1-1", Duration::from_secs(1));
    let provider = TokenProvider::builder(flow.clone(), b.registry(&[Platform::Anthropic])).build();
    let tok = provider.access_token(&b.stored(ID).await).await;
    let texts = [
        format!("{np:?}"),
        np.as_ref()
            .err()
            .map(|e| format!("{e} {}", e.account_error_message()))
            .unwrap_or_default(),
        format!("{claim:?}"),
        format!("{ok:?}"),
        format!("{ctx:?}"),
        format!("{tok:?}"),
        format!("{flow:?}"),
        format!("{:?}", b.stored(ID).await),
    ];
    for t in &texts {
        for secret in ["at-1-0", "rt-1-0", "at-1-1", "rt-1-1"] {
            assert!(!t.contains(secret), "{secret} leaked in {t}");
        }
    }
}

/// An executor reason carrying the presented refresh token reaches the
/// account's error_message only redacted (realistic long token).
#[tokio::test(start_paused = true)]
async fn p18_a_realistic_token_in_an_executor_reason_never_reaches_error_message() {
    struct Leaky;
    #[async_trait]
    impl RefreshExecutor for Leaky {
        fn platform(&self) -> Platform {
            Platform::Anthropic
        }
        async fn refresh(
            &self,
            _: &Account,
            ctx: &RefreshContext,
        ) -> Result<Credentials, ProviderError> {
            Err(ProviderError::Configuration {
                reason: format!(
                    "proxy rejected refresh_token={} (auth)",
                    ctx.refresh_token.expose()
                ),
            })
        }
    }
    let token = "sk-ant-ort01-AbCdEf0123456789_xyz";
    let mut a = expired_account(ID);
    a.credentials.insert("refresh_token", token);
    let b = Backends::new([a]);
    let flow = b.local_process();
    let bg = BackgroundRefresher::builder(flow, ExecutorRegistry::new().with(Arc::new(Leaky)))
        .build()
        .unwrap();
    let report = bg.run_once().await;
    let s = b.stored(ID).await;
    assert_eq!(s.status, AccountStatus::Error, "{report:?}");
    let msg = s.error_message.unwrap_or_default();
    assert!(
        !msg.contains(token) && !msg.contains("AbCdEf0123456789"),
        "{msg}"
    );
}

// ---------------------------------------------------------------------------
// Depth
// ---------------------------------------------------------------------------

/// An answer without `expires_at` (an executor that omits `expires_in`):
/// the merge keeps the OLD, already-past expiry next to the NEW access
/// token. The fresh token is reported expired to the caller and every call
/// rotates the grant again (one upstream redemption per request).
#[tokio::test(start_paused = true)]
async fn h09_an_answer_without_an_expiry_never_inherits_the_old_past_expiry() {
    let b = Backends::new([expired_account(ID)]);
    let exec: Arc<dyn RefreshExecutor> = Arc::new(Rewrite {
        inner: b.executor(Platform::Anthropic),
        rotates: true,
        rewrite: |mut c: Credentials| {
            c.remove("expires_at");
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
    let stored = b.stored(ID).await;
    assert_eq!(
        b.upstream.calls(),
        1,
        "each call rotated the grant again; results {results:?}; stored expiry {:?}",
        stored.credentials.expires_at()
    );
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
}

/// During a refresh an operator restores an old backup: the row now holds
/// an OLDER, consumed generation. The flow's fresh answer (the only live
/// token of the grant) is discarded as "superseded" and the claim's
/// answer dropped; the account is left with a dead token and the live
/// rotation exists nowhere.
#[tokio::test(start_paused = true)]
async fn h10_a_backup_restored_during_the_call_does_not_discard_the_live_rotation() {
    let b = Backends::new([expired_account(ID)]);
    let flow = b.local_process();
    let exec = b.executor(Platform::Anthropic);
    let backup = b.stored(ID).await; // holds rt-1-0
    let first = flow.refresh_if_needed(&backup, &exec, WINDOW).await;
    assert!(matches!(first, Ok(RefreshOutcome::Refreshed { .. })));
    let_time_pass(Duration::from_secs(3600)).await; // due again
    b.upstream.hold_responses();
    let run = spawn_refresh(&flow, &b.stored(ID).await, &exec);
    b.upstream.wait_for_calls(2).await;
    // Restore: write the backup's credentials (rt-1-0, consumed) back.
    b.overwrite(ID, &backup.credentials).await;
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

/// h09 with the shared grant parser: a token response without
/// `expires_in` (RFC 6749 makes it optional) through `TokenGrant`.
#[tokio::test(start_paused = true)]
async fn h09b_a_token_response_without_expires_in_is_not_stored_as_already_expired() {
    struct NoExpiresIn(Arc<FakeUpstream>);
    #[async_trait]
    impl RefreshExecutor for NoExpiresIn {
        fn platform(&self) -> Platform {
            Platform::Anthropic
        }
        async fn refresh(
            &self,
            account: &Account,
            ctx: &RefreshContext,
        ) -> Result<Credentials, ProviderError> {
            let (n, rt) = self
                .0
                .redeem(account.id, ctx.refresh_token.expose())
                .await?;
            let body = format!(
                r#"{{"access_token":"at-{}-{n}","refresh_token":"{rt}","token_type":"Bearer"}}"#,
                account.id
            );
            let grant = refresh_core::TokenGrant::from_json(body.as_bytes())?;
            let issued = grant.to_credentials(
                ctx.now(),
                refresh_core::ExpiryRule::EXACT,
                refresh_core::GrantFields {
                    write_expires_in: false,
                    write_type_and_scope: true,
                },
            );
            Ok(issued.merged_over(&account.credentials))
        }
    }
    let b = Backends::new([expired_account(ID)]);
    let exec: Arc<dyn RefreshExecutor> = Arc::new(NoExpiresIn(Arc::clone(&b.upstream)));
    let flow = b.local_process();
    let out = b.refresh_stored(&flow, ID, &exec).await;
    let stored = b.stored(ID).await;
    assert_eq!(
        access_token_of(&stored).as_deref(),
        Some("at-1-1"),
        "{out:?}"
    );
    let expiry = stored.credentials.expires_at().unwrap();
    assert!(
        expiry.is_none_or(|at| at > t0()),
        "the new access token at-1-1 is stored with the old past expiry {expiry:?}"
    );
}

/// The re-read after claiming fails: the claim is removed, nothing is
/// sent, and the next flow refreshes at once (no orphan claim).
#[tokio::test(start_paused = true)]
async fn p19_a_failed_reread_after_claiming_leaves_no_orphan_claim() {
    let b = hostile_backends(vec![expired_account(ID)]);
    b.repo.inner().get_fail_on.store(2, Ordering::SeqCst);
    let flow = b.local_process();
    let exec = b.executor(Platform::Anthropic);
    let out = b.refresh_stored(&flow, ID, &exec).await;
    assert!(matches!(out, Err(FlowError::Reread { .. })), "{out:?}");
    assert_eq!(b.upstream.calls(), 0);
    assert!(b.claim_of("rt-1-0").await.is_none());
    let again = b.refresh_stored(&flow, ID, &exec).await;
    assert!(
        matches!(again, Ok(RefreshOutcome::Refreshed { .. })),
        "{again:?}"
    );
    assert_eq!(b.upstream.reuses(), 0);
}

/// `invalid_grant` before any rotation: the generation is dead; a second
/// process with a stale snapshot is refused without a call; the background
/// marks the account once, fenced on the version.
#[tokio::test(start_paused = true)]
async fn p20_a_dead_generation_is_never_presented_again_by_another_process() {
    let b = Backends::new([expired_account(ID)]);
    let f1 = b.local_process();
    let f2 = b.local_process();
    let exec = b.executor(Platform::Anthropic);
    b.upstream.fail_next(ProviderError::InvalidGrant {
        code: refresh_core::error::OAuthErrorCode::new("invalid_grant"),
        description: None,
    });
    let bg = BackgroundRefresher::builder(f1, b.registry(&[Platform::Anthropic]))
        .build()
        .unwrap();
    let report = bg.run_once().await;
    assert_eq!(
        b.stored(ID).await.status,
        AccountStatus::Error,
        "{report:?}"
    );
    let other = f2
        .refresh_if_needed(&expired_account(ID), &exec, WINDOW)
        .await;
    assert!(
        matches!(other, Err(FlowError::CredentialsRegressed { .. })),
        "{other:?}"
    );
    assert_eq!(b.upstream.calls(), 1);
    assert_eq!(b.upstream.reuses(), 0);
}

/// A caller cancelled through `access_token_with_cancel` gets `Cancelled`
/// at once; the refresh completes and is persisted.
#[tokio::test(start_paused = true)]
async fn p21_a_cancelled_caller_returns_at_once_and_the_refresh_still_lands() {
    let b = Backends::new([expired_account(ID)]);
    let provider =
        TokenProvider::builder(b.local_process(), b.registry(&[Platform::Anthropic])).build();
    b.upstream.hold_responses();
    let cancel = tokio_util::sync::CancellationToken::new();
    let call = {
        let (p, a, c) = (provider.clone(), b.stored(ID).await, cancel.clone());
        tokio::spawn(async move { p.access_token_with_cancel(&a, &c).await })
    };
    b.upstream.wait_for_calls(1).await;
    cancel.cancel();
    assert!(matches!(
        call.await.unwrap(),
        Err(TokenError::Cancelled { .. })
    ));
    b.upstream.release(1);
    settle(async || refresh_token_of(&b.stored(ID).await).as_deref() == Some("rt-1-1")).await;
    assert_eq!(
        refresh_token_of(&b.stored(ID).await).as_deref(),
        Some("rt-1-1")
    );
    let t = provider.access_token(&b.stored(ID).await).await.unwrap();
    assert_eq!(t.token.expose(), "at-1-1");
}
