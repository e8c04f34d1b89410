//! Helpers shared by the integration tests of this crate: fixtures on the
//! fixed instant [`T0`], lease probes, a bounded settle loop, a repository
//! wrapper with hooks, and [`Backends`], the in-memory backends of one
//! scenario wrapped in call-counting [`Faulty`] wrappers.
//!
//! Each test binary compiles this module on its own and uses a part of it.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use refresh_core::flow::RefreshFlowBuilder;
use refresh_core::memory::{
    InMemoryAccountRepository, InMemoryClaimStore, InMemoryRefreshLock, InMemoryTokenCache,
};
use refresh_core::ports::{CasExpectation, CasOutcome, DueCursor, Lease, TokioClock};
use refresh_core::testing::conformance::{T0, account_expiring};
use refresh_core::testing::{FakeUpstream, Faulty, RotatingExecutor};
use refresh_core::{
    AccessToken, Account, AccountId, AccountRepository, CachedToken, Clock, Credentials,
    ExecutorRegistry, FlowConfig, LockStrategy, Platform, RefreshExecutor, RefreshFlow, RefreshKey,
    RefreshLock, StorageError, TokenCache, TokenError, TokenProvider,
};
use tokio::task::JoinHandle;

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

/// Lifetime of the tokens the fake upstream issues in [`Backends`].
pub(crate) const ISSUED_LIFETIME: Duration = Duration::from_secs(3600);
/// The window getters use (REFERENCE.md §3.2).
pub(crate) const WINDOW: Duration = Duration::from_secs(180);
/// TTL of the leases probes take.
pub(crate) const PROBE_TTL: Duration = Duration::from_secs(60);
/// TTL of a lease "another process" holds: longer than any test.
pub(crate) const HELD_ELSEWHERE_TTL: Duration = Duration::from_secs(3600);

pub(crate) const PLATFORMS: [Platform; 4] = [
    Platform::Anthropic,
    Platform::OpenAi,
    Platform::Gemini,
    Platform::Antigravity,
];

/// [`T0`] as an instant: where every test clock starts.
pub(crate) fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(T0, 0).expect("T0 is a valid instant")
}

pub(crate) fn in_secs(secs: i64) -> DateTime<Utc> {
    t0() + chrono::Duration::seconds(secs)
}

/// Settings whose upstream deadline is short (1 s), so a slow answer
/// outlives it.
pub(crate) fn short_upstream_timeout() -> FlowConfig {
    FlowConfig {
        upstream_timeout: Duration::from_secs(1),
        ..FlowConfig::default()
    }
}

/// A clock that follows tokio time (paused in most tests) from [`T0`].
pub(crate) fn tokio_clock() -> Arc<dyn Clock> {
    Arc::new(TokioClock::starting_at(t0()))
}

/// Tokens `at-<id>-0` / `rt-<id>-0` expiring `expires_in` seconds after
/// [`T0`] (negative: already expired).
pub(crate) fn credentials(id: i64, expires_in: i64) -> Credentials {
    account_expiring(id, Some(expires_in)).credentials
}

/// An active OAuth account holding [`credentials`].
pub(crate) fn oauth_account(id: i64, platform: Platform, expires_in: i64) -> Account {
    Account::oauth(id, platform, credentials(id, expires_in))
}

pub(crate) fn key(platform: &Platform, id: i64) -> RefreshKey {
    RefreshKey::for_account(platform, AccountId(id))
}

pub(crate) fn access_token_of(account: &Account) -> Option<String> {
    account
        .credentials
        .access_token()
        .map(|t| t.expose().to_owned())
}

pub(crate) fn refresh_token_of(account: &Account) -> Option<String> {
    account
        .credentials
        .refresh_token()
        .map(|t| t.expose().to_owned())
}

/// The access token of `account`; panics when it has none.
pub(crate) fn access_token(account: &Account) -> String {
    access_token_of(account).expect("access token")
}

/// The refresh token of `account`; panics when it has none.
pub(crate) fn refresh_token(account: &Account) -> String {
    refresh_token_of(account).expect("refresh token")
}

/// An Anthropic executor over `upstream` whose tokens live `lifetime`.
pub(crate) fn anthropic_executor(
    upstream: &Arc<FakeUpstream>,
    lifetime: Duration,
) -> Arc<dyn RefreshExecutor> {
    Arc::new(RotatingExecutor::new(
        Platform::Anthropic,
        Arc::clone(upstream),
        lifetime,
    ))
}

/// A call-counting in-memory lock whose leases lapse on `clock`.
pub(crate) fn memory_lock(clock: &Arc<dyn Clock>) -> Arc<Faulty<InMemoryRefreshLock>> {
    Arc::new(Faulty::new(Arc::new(InMemoryRefreshLock::new(Arc::clone(
        clock,
    )))))
}

/// A call-counting in-memory claim store whose claims expire on `clock`
/// (the store's clock).
pub(crate) fn memory_claims(clock: &Arc<dyn Clock>) -> Arc<Faulty<InMemoryClaimStore>> {
    Arc::new(Faulty::new(Arc::new(InMemoryClaimStore::new(Arc::clone(
        clock,
    )))))
}

/// A call-counting in-memory token cache whose entries lapse on `clock`.
pub(crate) fn memory_cache(clock: &Arc<dyn Clock>) -> Arc<Faulty<InMemoryTokenCache>> {
    Arc::new(Faulty::new(Arc::new(InMemoryTokenCache::new(Arc::clone(
        clock,
    )))))
}

// ---------------------------------------------------------------------------
// Leases and settling
// ---------------------------------------------------------------------------

/// Whether a third party could take the lease of `key` on `lock` now.
/// Probes non-destructively: a lease taken by the probe is released at once.
pub(crate) async fn lease_is_free(lock: &dyn RefreshLock, key: &RefreshKey) -> bool {
    match lock
        .try_acquire(key, PROBE_TTL)
        .await
        .expect("probe acquire")
    {
        Some(lease) => {
            assert!(lock.release(&lease).await.expect("probe release"));
            true
        }
        None => false,
    }
}

/// Takes the lease of `key` on `lock` "from another process", for
/// [`HELD_ELSEWHERE_TTL`].
pub(crate) async fn hold_lease(lock: &dyn RefreshLock, key: &RefreshKey) -> Lease {
    lock.try_acquire(key, HELD_ELSEWHERE_TTL)
        .await
        .expect("the lock answers")
        .expect("the lease is free")
}

/// Runs `provider.access_token(account)` as its own task (a caller that can
/// be joined later).
pub(crate) fn spawn_access_token(
    provider: &TokenProvider,
    account: &Account,
) -> JoinHandle<Result<AccessToken, TokenError>> {
    let (provider, account) = (provider.clone(), account.clone());
    tokio::spawn(async move { provider.access_token(&account).await })
}

/// Lets detached tasks run until `done` holds (bounded; paused time does not
/// move while tasks are runnable). Callers assert `done` afterwards.
pub(crate) async fn settle(mut done: impl AsyncFnMut() -> bool) {
    for _ in 0..200 {
        if done().await {
            return;
        }
        tokio::task::yield_now().await;
    }
}

// ---------------------------------------------------------------------------
// A repository with hooks
// ---------------------------------------------------------------------------

/// What a [`HookedRepository`] does around the calls it forwards.
#[async_trait]
pub(crate) trait RepositoryHooks: Send + Sync {
    /// Runs before `get` reaches the wrapped repository.
    async fn before_get(&self) {}

    /// Runs after `list_due` answered, before its page is returned.
    async fn after_list_due(&self, _inner: &dyn AccountRepository) -> Result<(), StorageError> {
        Ok(())
    }
}

/// An [`AccountRepository`] that forwards every call to `inner`, running
/// `hooks` around `get` and `list_due`.
pub(crate) struct HookedRepository<H> {
    pub(crate) inner: Arc<dyn AccountRepository>,
    pub(crate) hooks: H,
}

#[async_trait]
impl<H: RepositoryHooks> AccountRepository for HookedRepository<H> {
    async fn get(&self, id: AccountId) -> Result<Option<Account>, StorageError> {
        self.hooks.before_get().await;
        self.inner.get(id).await
    }

    async fn insert(&self, account: Account) -> Result<Account, StorageError> {
        self.inner.insert(account).await
    }

    async fn compare_and_set_credentials(
        &self,
        id: AccountId,
        expected: CasExpectation,
        credentials: &Credentials,
    ) -> Result<CasOutcome, StorageError> {
        self.inner
            .compare_and_set_credentials(id, expected, credentials)
            .await
    }

    async fn list_due(
        &self,
        before: DateTime<Utc>,
        after: Option<DueCursor>,
        limit: usize,
    ) -> Result<Vec<Account>, StorageError> {
        let page = self.inner.list_due(before, after, limit).await?;
        self.hooks.after_list_due(self.inner.as_ref()).await?;
        Ok(page)
    }

    async fn set_error(
        &self,
        id: AccountId,
        observed_version: u64,
        message: &str,
    ) -> Result<bool, StorageError> {
        self.inner.set_error(id, observed_version, message).await
    }

    async fn clear_error(&self, id: AccountId) -> Result<(), StorageError> {
        self.inner.clear_error(id).await
    }

    async fn clear_temp_unschedulable(&self, id: AccountId) -> Result<(), StorageError> {
        self.inner.clear_temp_unschedulable(id).await
    }
}

// ---------------------------------------------------------------------------
// The backends of one scenario
// ---------------------------------------------------------------------------

/// The shared backends of one scenario, each behind a call-counting
/// [`Faulty`] wrapper: every flow built over them is a separate "process"
/// (own single flight, own in-process cache) over the same repository,
/// lock, token cache, claim store and fake upstream.
///
/// Wait for a backend call with `faults.wait_for_calls`. A wrapper counts a
/// call before forwarding it, but the in-memory backends answer without
/// yielding: on the current-thread runtime the call has completed by the
/// time the waiting test resumes.
pub(crate) struct Backends<R: ?Sized = InMemoryAccountRepository> {
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) repo: Arc<Faulty<R>>,
    pub(crate) lock: Arc<Faulty<InMemoryRefreshLock>>,
    pub(crate) cache: Arc<Faulty<InMemoryTokenCache>>,
    pub(crate) claims: Arc<Faulty<InMemoryClaimStore>>,
    pub(crate) upstream: Arc<FakeUpstream>,
}

impl Backends {
    /// `accounts` on a [`tokio_clock`].
    pub(crate) fn new(accounts: impl IntoIterator<Item = Account>) -> Self {
        Self::on_clock(accounts, tokio_clock())
    }

    /// `accounts` on `clock`.
    pub(crate) fn on_clock(
        accounts: impl IntoIterator<Item = Account>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let repo = InMemoryAccountRepository::with_accounts(accounts);
        Self::with_repo(repo, Arc::clone(&clock), clock)
    }
}

impl<R: AccountRepository + 'static> Backends<R> {
    /// Backends over `repo`. The lock measures its leases on `lock_clock`
    /// (the flow's clock, or one a test moves independently, like Redis
    /// expiring a key).
    pub(crate) fn with_repo(repo: R, clock: Arc<dyn Clock>, lock_clock: Arc<dyn Clock>) -> Self {
        Self {
            repo: Arc::new(Faulty::new(Arc::new(repo))),
            lock: memory_lock(&lock_clock),
            cache: memory_cache(&clock),
            claims: memory_claims(&clock),
            upstream: FakeUpstream::new(),
            clock,
        }
    }

    /// A flow builder over the repository and `locks`, on the clock.
    pub(crate) fn flow_builder(&self, locks: LockStrategy) -> RefreshFlowBuilder {
        RefreshFlow::builder(self.repo.clone(), locks, self.claims.clone())
            .clock(Arc::clone(&self.clock))
    }

    /// An executor for `platform` whose tokens live [`ISSUED_LIFETIME`].
    pub(crate) fn rotating(&self, platform: Platform) -> RotatingExecutor {
        RotatingExecutor::new(platform, Arc::clone(&self.upstream), ISSUED_LIFETIME)
    }

    pub(crate) fn executor(&self, platform: Platform) -> Arc<dyn RefreshExecutor> {
        Arc::new(self.rotating(platform))
    }

    pub(crate) fn registry(&self, platforms: &[Platform]) -> ExecutorRegistry {
        platforms
            .iter()
            .fold(ExecutorRegistry::new(), |registry, platform| {
                registry.with(self.executor(platform.clone()))
            })
    }

    /// The account as stored now (read past the fault wrapper).
    pub(crate) async fn stored(&self, id: i64) -> Account {
        self.repo
            .inner()
            .get(AccountId(id))
            .await
            .expect("in-memory repository answers")
            .expect("account exists")
    }

    /// The shared cache's entry (read past the fault wrapper).
    pub(crate) async fn cached(&self, key: &RefreshKey) -> Option<CachedToken> {
        self.cache
            .inner()
            .get(key)
            .await
            .expect("in-memory cache answers")
    }

    /// Whether a third party could take the lease of `key` now.
    pub(crate) async fn lease_is_free(&self, key: &RefreshKey) -> bool {
        lease_is_free(self.lock.inner().as_ref(), key).await
    }

    /// Takes the lease of `key` "from another process".
    pub(crate) async fn hold(&self, key: &RefreshKey) -> Lease {
        hold_lease(self.lock.inner().as_ref(), key).await
    }

    pub(crate) fn repo_calls(&self, op: &'static str) -> u64 {
        self.repo.faults.calls(op)
    }

    pub(crate) fn lock_calls(&self, op: &'static str) -> u64 {
        self.lock.faults.calls(op)
    }

    pub(crate) fn cache_calls(&self, op: &'static str) -> u64 {
        self.cache.faults.calls(op)
    }

    pub(crate) fn claim_calls(&self, op: &'static str) -> u64 {
        self.claims.faults.calls(op)
    }
}
