//! The conformance suites catch real backend bugs. Each test wraps an
//! in-memory backend, delegates everything and breaks one thing, runs the
//! suite in its own task, and asserts that it failed, and failed in the
//! check that pins the broken clause, instead of hanging or passing. The
//! control test runs the same wrappers with no bug: they pass, so every
//! failure below comes from its bug alone. (`conformance_memory.rs` runs the
//! suites against the plain in-memory backends.)
//!
//! The runtime is paused: nothing in the suites sleeps, so a check that
//! hangs on a backend call reaches its timeout at once.

mod common;

use std::collections::HashMap;
use std::future::{Future, ready};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use common::t0;
use refresh_core::memory::{InMemoryAccountRepository, InMemoryClaimStore, InMemoryRefreshLock};
use refresh_core::ports::{
    AccountRepository, CasExpectation, CasOutcome, Claim, ClaimAcquire, ClaimId, ClaimKey,
    ClaimState, ClaimStore, Clock, DueCursor, Lease, LeaseOwner, ManualClock, RefreshLock,
};
use refresh_core::testing::conformance::{
    account_repository_suite, claim_store_suite, refresh_lock_suite,
};
use refresh_core::{Account, AccountId, AccountStatus, Credentials, RefreshKey, StorageError};

// ---------------------------------------------------------------------------
// Running a suite
// ---------------------------------------------------------------------------

/// Runs `suite` in its own task and returns its panic message.
///
/// # Panics
/// When the suite passes.
async fn failure_of(suite: impl Future<Output = ()> + Send + 'static) -> String {
    let err = tokio::spawn(suite)
        .await
        .expect_err("the suite must fail on a broken backend");
    let payload = err.into_panic();
    match payload.downcast::<String>() {
        Ok(message) => *message,
        Err(payload) => payload
            .downcast_ref::<&str>()
            .map_or_else(|| "(no message)".to_owned(), |s| (*s).to_owned()),
    }
}

/// Asserts that `message` is a failure of `check` of `suite`.
fn assert_fails_in(message: &str, suite: &str, check: &str) {
    assert!(
        message.starts_with(&format!("{suite}: {check}")),
        "expected a failure of {suite}: {check}, got: {message}"
    );
}

fn manual_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(t0()))
}

// ---------------------------------------------------------------------------
// A broken account repository
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum RepoBug {
    None,
    /// `list_due` re-returns the cursor row at the head of the next page.
    InclusiveCursor,
    /// `insert` stores the given `expires_at` field instead of deriving it.
    StoresTheGivenExpiresAt,
    /// `get` never answers.
    GetNeverAnswers,
    /// `compare_and_set_credentials` compares the version only.
    CasIgnoresTheFingerprint,
    /// `set_error` marks whatever version is stored.
    SetErrorUnfenced,
    /// `list_due` lists an account expiring exactly at `before`.
    InclusiveBefore,
}

struct BrokenRepo {
    inner: InMemoryAccountRepository,
    bug: RepoBug,
    /// `expires_at` as given to `insert`, shown by reads until the next
    /// credential write (bug `StoresTheGivenExpiresAt`).
    given_expiry: Mutex<HashMap<AccountId, Option<DateTime<Utc>>>>,
}

impl BrokenRepo {
    fn make(bug: RepoBug) -> impl Fn() -> std::future::Ready<Arc<dyn AccountRepository>> {
        move || {
            ready(Arc::new(Self {
                inner: InMemoryAccountRepository::new(),
                bug,
                given_expiry: Mutex::new(HashMap::new()),
            }) as Arc<dyn AccountRepository>)
        }
    }

    fn given_expiry(&self) -> std::sync::MutexGuard<'_, HashMap<AccountId, Option<DateTime<Utc>>>> {
        self.given_expiry.lock().expect("not poisoned")
    }

    fn as_given(&self, mut account: Account) -> Account {
        if let Some(given) = self.given_expiry().get(&account.id) {
            account.expires_at = *given;
        }
        account
    }
}

#[async_trait]
impl AccountRepository for BrokenRepo {
    async fn get(&self, id: AccountId) -> Result<Option<Account>, StorageError> {
        if let RepoBug::GetNeverAnswers = self.bug {
            std::future::pending::<()>().await;
        }
        Ok(self.inner.get(id).await?.map(|a| self.as_given(a)))
    }

    async fn insert(&self, account: Account) -> Result<Account, StorageError> {
        let given = account.expires_at;
        let stored = self.inner.insert(account).await?;
        if let RepoBug::StoresTheGivenExpiresAt = self.bug {
            self.given_expiry().insert(stored.id, given);
        }
        Ok(self.as_given(stored))
    }

    async fn compare_and_set_credentials(
        &self,
        id: AccountId,
        expected: CasExpectation,
        credentials: &Credentials,
    ) -> Result<CasOutcome, StorageError> {
        let mut expected = expected;
        if let (RepoBug::CasIgnoresTheFingerprint, Some(current)) =
            (self.bug, self.inner.get(id).await?)
        {
            expected.refresh_token = CasExpectation::of(&current).refresh_token;
        }
        let outcome = self
            .inner
            .compare_and_set_credentials(id, expected, credentials)
            .await?;
        if let CasOutcome::Applied(_) = outcome {
            self.given_expiry().remove(&id);
        }
        Ok(outcome)
    }

    async fn list_due(
        &self,
        before: DateTime<Utc>,
        after: Option<DueCursor>,
        limit: usize,
    ) -> Result<refresh_core::ports::DuePage, StorageError> {
        let until = match self.bug {
            RepoBug::InclusiveBefore => before + chrono::Duration::nanoseconds(1),
            _ => before,
        };
        let mut page = self.inner.list_due(until, after, limit).await?;
        if let (RepoBug::InclusiveCursor, Some(cursor)) = (self.bug, after)
            && let Some(row) = self.inner.get(cursor.id).await?
            && row.status == AccountStatus::Active
            && row.expires_at.is_none_or(|at| at < before)
        {
            page.accounts.insert(0, row);
            page.accounts.truncate(limit);
            page = refresh_core::ports::DuePage::of(page.accounts, limit);
        }
        Ok(page)
    }

    async fn set_error(
        &self,
        id: AccountId,
        observed_version: u64,
        message: &str,
    ) -> Result<bool, StorageError> {
        let mut observed_version = observed_version;
        if let (RepoBug::SetErrorUnfenced, Some(current)) = (self.bug, self.inner.get(id).await?) {
            observed_version = current.credentials_version;
        }
        self.inner.set_error(id, observed_version, message).await
    }

    async fn clear_error(&self, id: AccountId) -> Result<(), StorageError> {
        self.inner.clear_error(id).await
    }

    async fn clear_temp_unschedulable(&self, id: AccountId) -> Result<(), StorageError> {
        self.inner.clear_temp_unschedulable(id).await
    }
}

async fn repository_suite_failure(bug: RepoBug) -> String {
    failure_of(account_repository_suite(BrokenRepo::make(bug))).await
}

// ---------------------------------------------------------------------------
// A broken lock
// ---------------------------------------------------------------------------

/// A lock whose `extend` of a lapsed lease takes the key again for the old
/// owner (behind its back: the inner lease it maps the owner to changes),
/// when `revives` is set.
struct RevivingLock {
    inner: InMemoryRefreshLock,
    revives: bool,
    /// The inner lease each handed-out owner stands for.
    leases: Mutex<HashMap<LeaseOwner, Lease>>,
}

impl RevivingLock {
    fn make(
        clock: &Arc<ManualClock>,
        revives: bool,
    ) -> impl Fn() -> std::future::Ready<Arc<dyn RefreshLock>> + Send + 'static {
        let clock = Arc::clone(clock);
        move || {
            ready(Arc::new(Self {
                inner: InMemoryRefreshLock::new(Arc::clone(&clock) as Arc<dyn Clock>),
                revives,
                leases: Mutex::new(HashMap::new()),
            }) as Arc<dyn RefreshLock>)
        }
    }

    fn inner_lease(&self, lease: &Lease) -> Lease {
        let leases = self.leases.lock().expect("not poisoned");
        leases
            .get(&lease.owner)
            .cloned()
            .unwrap_or_else(|| lease.clone())
    }
}

#[async_trait]
impl RefreshLock for RevivingLock {
    fn name(&self) -> &'static str {
        "reviving"
    }

    async fn try_acquire(
        &self,
        key: &RefreshKey,
        ttl: Duration,
    ) -> Result<Option<Lease>, StorageError> {
        let lease = self.inner.try_acquire(key, ttl).await?;
        if let Some(lease) = &lease {
            let mut leases = self.leases.lock().expect("not poisoned");
            leases.insert(lease.owner.clone(), lease.clone());
        }
        Ok(lease)
    }

    async fn extend(&self, lease: &Lease, ttl: Duration) -> Result<bool, StorageError> {
        if self.inner.extend(&self.inner_lease(lease), ttl).await? {
            return Ok(true);
        }
        if !self.revives {
            return Ok(false);
        }
        let Some(revived) = self.inner.try_acquire(&lease.key, ttl).await? else {
            return Ok(false);
        };
        let mut leases = self.leases.lock().expect("not poisoned");
        leases.insert(lease.owner.clone(), revived);
        Ok(true)
    }

    async fn release(&self, lease: &Lease) -> Result<bool, StorageError> {
        self.inner.release(&self.inner_lease(lease)).await
    }
}

// ---------------------------------------------------------------------------
// A broken claim store
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum ClaimBug {
    None,
    /// `acquire` takes over a live open claim.
    TakesOverLiveClaims,
    /// `acquire` reads, then inserts over whatever a racer inserted since.
    AcquireNotAtomic,
    /// The id-fenced operations act on the claim whatever id they get.
    IgnoresTheId,
    /// An answered claim expires `ttl` after its answer and is taken over.
    AnswersExpire,
    /// `acquire` takes over a consumed claim within its horizon.
    TakesOverConsumedClaims,
    /// `purge` deletes answered claims too.
    PurgesAnswers,
}

struct BrokenClaims {
    inner: InMemoryClaimStore,
    bug: ClaimBug,
    clock: Arc<ManualClock>,
    /// The ttl each key was last acquired with (bug `AnswersExpire`).
    ttls: Mutex<HashMap<ClaimKey, Duration>>,
    /// When each answer "expires" (bug `AnswersExpire`).
    answers_expire: Mutex<HashMap<ClaimKey, DateTime<Utc>>>,
}

impl BrokenClaims {
    fn make(
        clock: &Arc<ManualClock>,
        bug: ClaimBug,
    ) -> impl Fn() -> std::future::Ready<Arc<dyn ClaimStore>> + Send + 'static {
        let clock = Arc::clone(clock);
        move || {
            ready(Arc::new(Self {
                inner: InMemoryClaimStore::new(Arc::clone(&clock) as Arc<dyn Clock>),
                bug,
                clock: Arc::clone(&clock),
                ttls: Mutex::new(HashMap::new()),
                answers_expire: Mutex::new(HashMap::new()),
            }) as Arc<dyn ClaimStore>)
        }
    }

    /// The id an operation acts as: the current holder's under
    /// `IgnoresTheId`, else the one given.
    async fn acting_id(&self, key: &ClaimKey, id: &ClaimId) -> Result<ClaimId, StorageError> {
        if let ClaimBug::IgnoresTheId = self.bug
            && let Some(claim) = self.inner.get(key).await?
        {
            return Ok(claim.id);
        }
        Ok(id.clone())
    }

    /// Whether `claim` is one the bug lets an acquirer take over.
    fn overridable(&self, claim: &Claim) -> bool {
        match self.bug {
            ClaimBug::TakesOverLiveClaims => claim.state == ClaimState::Open,
            ClaimBug::TakesOverConsumedClaims => claim.state == ClaimState::Consumed,
            ClaimBug::AnswersExpire => {
                claim.state == ClaimState::Answered
                    && self
                        .answers_expire
                        .lock()
                        .expect("not poisoned")
                        .get(&claim.key)
                        .is_some_and(|at| *at <= self.clock.now())
            }
            _ => false,
        }
    }

    async fn acquire_over(
        &self,
        claim: &Claim,
        account: AccountId,
        base_version: u64,
        ttl: Duration,
    ) -> Result<ClaimAcquire, StorageError> {
        self.inner.remove(&claim.key, &claim.id).await?;
        self.inner
            .acquire(&claim.key, &ClaimId::random(), account, base_version, ttl)
            .await
    }
}

#[async_trait]
impl ClaimStore for BrokenClaims {
    fn name(&self) -> &'static str {
        "broken"
    }

    async fn acquire(
        &self,
        key: &ClaimKey,
        id: &ClaimId,
        account: AccountId,
        base_version: u64,
        ttl: Duration,
    ) -> Result<ClaimAcquire, StorageError> {
        let looked_free = match self.bug {
            ClaimBug::AcquireNotAtomic => {
                let free = self.inner.get(key).await?.is_none();
                tokio::task::yield_now().await;
                free
            }
            _ => false,
        };
        let outcome = match self
            .inner
            .acquire(key, id, account, base_version, ttl)
            .await?
        {
            ClaimAcquire::Existing(claim) if looked_free || self.overridable(&claim) => {
                self.acquire_over(&claim, account, base_version, ttl)
                    .await?
            }
            outcome => outcome,
        };
        if let ClaimAcquire::Won(_) = outcome {
            self.ttls
                .lock()
                .expect("not poisoned")
                .insert(key.clone(), ttl);
        }
        Ok(outcome)
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
        let id = self.acting_id(key, id).await?;
        self.inner.extend(key, &id, ttl).await
    }

    async fn quarantine(
        &self,
        key: &ClaimKey,
        id: &ClaimId,
        ttl: Duration,
    ) -> Result<bool, StorageError> {
        let id = self.acting_id(key, id).await?;
        self.inner.quarantine(key, &id, ttl).await
    }

    async fn save_answer(
        &self,
        key: &ClaimKey,
        id: &ClaimId,
        answer: &Credentials,
    ) -> Result<bool, StorageError> {
        let id = self.acting_id(key, id).await?;
        let saved = self.inner.save_answer(key, &id, answer).await?;
        let ttl = self.ttls.lock().expect("not poisoned").get(key).copied();
        if saved && let Some(ttl) = ttl {
            let expires = self.clock.now() + chrono::Duration::from_std(ttl).expect("short ttl");
            let mut answers = self.answers_expire.lock().expect("not poisoned");
            answers.insert(key.clone(), expires);
        }
        Ok(saved)
    }

    async fn mark_consumed(
        &self,
        key: &ClaimKey,
        id: &ClaimId,
        keep: Duration,
    ) -> Result<bool, StorageError> {
        let id = self.acting_id(key, id).await?;
        self.inner.mark_consumed(key, &id, keep).await
    }

    async fn remove(&self, key: &ClaimKey, id: &ClaimId) -> Result<bool, StorageError> {
        let id = self.acting_id(key, id).await?;
        self.inner.remove(key, &id).await
    }

    async fn purge(&self, limit: usize) -> Result<u64, StorageError> {
        let mut deleted = 0;
        if let ClaimBug::PurgesAnswers = self.bug {
            for claim in self.inner.snapshot() {
                if claim.state == ClaimState::Answered {
                    deleted += u64::from(self.inner.remove(&claim.key, &claim.id).await?);
                }
            }
        }
        Ok(deleted + self.inner.purge(limit).await?)
    }
}

async fn claim_suite_failure(bug: ClaimBug) -> String {
    let clock = manual_clock();
    let make = BrokenClaims::make(&clock, bug);
    failure_of(async move { claim_store_suite(make, &clock).await }).await
}

// ---------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn the_delegating_wrappers_pass_every_suite_without_their_bug() {
    account_repository_suite(BrokenRepo::make(RepoBug::None)).await;
    let clock = manual_clock();
    refresh_lock_suite(RevivingLock::make(&clock, false), &clock).await;
    let clock = manual_clock();
    claim_store_suite(BrokenClaims::make(&clock, ClaimBug::None), &clock).await;
}

#[tokio::test(start_paused = true)]
async fn an_inclusive_list_due_cursor_fails_the_paging_check_instead_of_hanging() {
    let message = repository_suite_failure(RepoBug::InclusiveCursor).await;
    assert_fails_in(
        &message,
        "account_repository_suite",
        "list_due_filters_orders_and_pages",
    );
    assert!(
        message.contains("twice: the cursor must be exclusive"),
        "the message says what is wrong: {message}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_insert_that_stores_the_given_expires_at_fails_the_derivation_check() {
    let message = repository_suite_failure(RepoBug::StoresTheGivenExpiresAt).await;
    assert_fails_in(
        &message,
        "account_repository_suite",
        "insert_derives_expires_at_from_the_credentials",
    );
}

#[tokio::test(start_paused = true)]
async fn a_cas_that_ignores_the_refresh_token_fingerprint_fails_the_fingerprint_check() {
    let message = repository_suite_failure(RepoBug::CasIgnoresTheFingerprint).await;
    assert_fails_in(
        &message,
        "account_repository_suite",
        "cas_is_fenced_on_the_refresh_token_fingerprint",
    );
}

#[tokio::test(start_paused = true)]
async fn an_unfenced_set_error_fails_the_set_error_fence_check() {
    let message = repository_suite_failure(RepoBug::SetErrorUnfenced).await;
    assert_fails_in(
        &message,
        "account_repository_suite",
        "set_error_is_fenced_on_the_observed_version",
    );
}

#[tokio::test(start_paused = true)]
async fn a_list_due_that_includes_before_fails_the_before_boundary_check() {
    let message = repository_suite_failure(RepoBug::InclusiveBefore).await;
    assert_fails_in(
        &message,
        "account_repository_suite",
        "list_due_before_is_exclusive",
    );
}

#[tokio::test(start_paused = true)]
async fn a_backend_call_that_never_returns_times_out_naming_the_check() {
    let message = repository_suite_failure(RepoBug::GetNeverAnswers).await;
    assert_eq!(
        message.split(" after ").next(),
        Some("account_repository_suite: get_of_missing_account_is_none timed out"),
        "got: {message}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_lock_whose_extend_revives_a_lapsed_lease_fails_the_lapsed_extend_check() {
    let clock = manual_clock();
    let make = RevivingLock::make(&clock, true);
    let message = failure_of(async move { refresh_lock_suite(make, &clock).await }).await;
    assert_fails_in(
        &message,
        "refresh_lock_suite",
        "extend_of_a_lapsed_lease_fails_and_does_not_revive_it",
    );
}

#[tokio::test(start_paused = true)]
async fn a_claim_store_that_takes_over_live_claims_fails_the_second_acquirer_check() {
    let message = claim_suite_failure(ClaimBug::TakesOverLiveClaims).await;
    assert_fails_in(
        &message,
        "claim_store_suite",
        "a_second_acquirer_gets_the_live_claim_unchanged",
    );
}

#[tokio::test(start_paused = true)]
async fn a_claim_store_whose_acquire_is_not_atomic_fails_the_concurrency_check() {
    let message = claim_suite_failure(ClaimBug::AcquireNotAtomic).await;
    assert_fails_in(
        &message,
        "claim_store_suite",
        "concurrent_acquirers_of_a_free_key_have_one_winner",
    );
}

#[tokio::test(start_paused = true)]
async fn a_claim_store_that_ignores_the_claim_id_fails_the_wrong_id_check() {
    let message = claim_suite_failure(ClaimBug::IgnoresTheId).await;
    assert_fails_in(
        &message,
        "claim_store_suite",
        "operations_with_a_wrong_id_change_nothing",
    );
}

#[tokio::test(start_paused = true)]
async fn a_claim_store_that_takes_over_consumed_claims_fails_the_horizon_check() {
    let message = claim_suite_failure(ClaimBug::TakesOverConsumedClaims).await;
    assert_fails_in(
        &message,
        "claim_store_suite",
        "a_consumed_claim_blocks_until_its_horizon_and_drops_the_answer",
    );
}

#[tokio::test(start_paused = true)]
async fn a_claim_store_whose_purge_deletes_answers_fails_the_answered_claim_check() {
    let message = claim_suite_failure(ClaimBug::PurgesAnswers).await;
    assert_fails_in(
        &message,
        "claim_store_suite",
        "an_answered_claim_never_expires_and_is_never_taken_over",
    );
}

#[tokio::test(start_paused = true)]
async fn a_claim_store_whose_answers_expire_fails_the_answered_claim_check() {
    let message = claim_suite_failure(ClaimBug::AnswersExpire).await;
    assert_fails_in(
        &message,
        "claim_store_suite",
        "an_answered_claim_never_expires_and_is_never_taken_over",
    );
}
