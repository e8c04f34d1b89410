//! Scenario tests of the background refresher ([`BackgroundRefresher`]):
//! success and post-refresh actions, retries, non-retryable failures on each
//! platform, fenced error marks, quarantined and regressed generations,
//! temp-unschedulable clearing, skips, persist failures and the answer kept
//! in the generation claim, the `missing_project_id` error, paging with
//! bounded concurrency (hanging upstreams included), one refresh per account
//! per cycle, listeners, shutdown, and concurrent getters plus the
//! background on one account (REFERENCE.md §8 and §12).
//!
//! Every test runs on paused tokio time with a [`TokioClock`], the in-memory
//! backends wrapped in call-counting [`Faulty`] wrappers, and the rotating
//! [`FakeUpstream`] (see `common::Backends`). Synchronization uses the fake
//! upstream's gate and call counter and the wrappers' call counts
//! (`FaultPlan::wait_for_calls`), never real sleeps.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::{
    Backends, ConcurrencyProbe, HookedRepository, PLATFORMS, RepositoryHooks, access_token,
    credentials, in_secs, key, oauth_account, refresh_token_of, spawn_access_token,
};
use refresh_core::background::{BackgroundRefresherBuilder, MockRefreshListener};
use refresh_core::error::{OAuthErrorCode, StorageErrorKind};
use refresh_core::memory::{InMemoryAccountRepository, InMemoryTokenCache};
use refresh_core::ports::{CasExpectation, CasOutcome};
use refresh_core::testing::conformance::T0;
use refresh_core::testing::{Faulty, RotatingExecutor};
use refresh_core::{
    Account, AccountId, AccountRepository, AccountStatus, AccountType, BackgroundConfig,
    BackgroundRefreshPolicy, BackgroundRefresher, CachedToken, ClaimState, Credentials,
    CycleReport, ExecutorRegistry, Platform, ProviderError, RefreshExecutor, RefreshKey,
    RefreshListener, Secret, StorageError, TokenCache,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

/// An OAuth account due within the 30-min window (expires in 60 s).
fn due_account(id: i64, platform: Platform) -> Account {
    oauth_account(id, platform, 60)
}

fn temp_unsched_key(id: i64) -> RefreshKey {
    RefreshKey::from_raw(format!("temp_unsched:account:{id}"))
}

fn config() -> BackgroundConfig {
    BackgroundConfig {
        interval: Duration::from_secs(3600),
        ..BackgroundConfig::default()
    }
}

fn report(
    total: u64,
    due: u64,
    refreshed: u64,
    skipped: u64,
    failed: u64,
    marked_error: u64,
) -> CycleReport {
    CycleReport {
        total,
        due,
        refreshed,
        skipped,
        failed,
        marked_error,
        ..CycleReport::default()
    }
}

/// What happens to the store right after a page is listed, before the
/// background refreshes it: another worker or an operator acts in between.
enum AfterList {
    /// Another worker rotates the account's tokens.
    RefreshedElsewhere(AccountId),
    /// Someone marks the account `error` with this message.
    SetError(AccountId, &'static str),
}

/// Actions run once, after the first `list_due`.
struct AfterListActions(Mutex<Vec<AfterList>>);

#[async_trait]
impl RepositoryHooks for AfterListActions {
    async fn after_list_due(&self, inner: &dyn AccountRepository) -> Result<(), StorageError> {
        let actions = std::mem::take(&mut *self.0.lock().expect("not poisoned"));
        for action in actions {
            match action {
                AfterList::RefreshedElsewhere(id) => {
                    let current = inner.get(id).await?.expect("hooked account exists");
                    let rotated = Credentials::new()
                        .with("access_token", "at-elsewhere")
                        .with("refresh_token", "rt-elsewhere")
                        .with("expires_at", (T0 + 3600).to_string());
                    let outcome = inner
                        .compare_and_set_credentials(id, CasExpectation::of(&current), &rotated)
                        .await?;
                    assert!(matches!(outcome, CasOutcome::Applied(_)), "{outcome:?}");
                }
                AfterList::SetError(id, message) => {
                    let current = inner.get(id).await?.expect("hooked account exists");
                    let marked = inner
                        .set_error(id, current.credentials_version, message)
                        .await?;
                    assert!(marked, "the hook marks the version it read");
                }
            }
        }
        Ok(())
    }
}

/// Shared backends of one scenario, over the in-memory repository with
/// [`AfterList`] actions. Every flow built from it is a separate "process"
/// over the same repository, lock, cache, claim store and upstream.
type Harness = Backends<HookedRepository<AfterListActions>>;

/// The credentials "an operator" re-imports: a fresh grant, valid for an
/// hour (outside the 30-min window).
fn reimported() -> Credentials {
    Credentials::new()
        .with("access_token", "at-reimported")
        .with("refresh_token", "rt-reimported")
        .with("expires_at", (T0 + 3600).to_string())
}

/// Repository hooks with which an operator re-imports fresh credentials
/// for an account at the worst moment: after the refresh failed and before
/// the background's error mark reaches the row.
struct ReimportBeforeMark;

#[async_trait]
impl RepositoryHooks for ReimportBeforeMark {
    async fn before_set_error(
        &self,
        inner: &dyn AccountRepository,
        id: AccountId,
    ) -> Result<(), StorageError> {
        let current = inner.get(id).await?.expect("marked account exists");
        let outcome = inner
            .compare_and_set_credentials(id, CasExpectation::of(&current), &reimported())
            .await?;
        assert!(matches!(outcome, CasOutcome::Applied(_)), "{outcome:?}");
        Ok(())
    }
}

fn reimport_harness(
    accounts: impl IntoIterator<Item = Account>,
) -> Backends<HookedRepository<ReimportBeforeMark>> {
    Backends::over(HookedRepository {
        inner: Arc::new(InMemoryAccountRepository::with_accounts(accounts)),
        hooks: ReimportBeforeMark,
    })
}

/// A 5xx answer: the upstream processed the request, so the token may be
/// consumed and the flow quarantines the claim.
fn server_error() -> ProviderError {
    ProviderError::ServerError {
        status: Some(503),
        reason: "upstream status 503".into(),
    }
}

/// A connect failure: the request provably never left, so the claim is
/// released and the token may be presented again at once.
fn not_sent() -> ProviderError {
    ProviderError::NotSent {
        reason: "connect refused".into(),
    }
}

impl Harness {
    fn new(accounts: impl IntoIterator<Item = Account>) -> Self {
        Self::with_hooks(accounts, Vec::new())
    }

    fn with_hooks(accounts: impl IntoIterator<Item = Account>, after_list: Vec<AfterList>) -> Self {
        Self::over(HookedRepository {
            inner: Arc::new(InMemoryAccountRepository::with_accounts(accounts)),
            hooks: AfterListActions(Mutex::new(after_list)),
        })
    }

    /// A refresher (own flow) with no cache; add one with `.cache(...)`.
    fn refresher(
        &self,
        platforms: &[Platform],
        config: BackgroundConfig,
    ) -> BackgroundRefresherBuilder {
        BackgroundRefresher::builder(self.notifying_process(), self.registry(platforms))
            .config(config)
    }

    /// A refresher with the shared cache and the default test config.
    fn cached_refresher(&self, platforms: &[Platform]) -> BackgroundRefresher {
        self.refresher(platforms, config())
            .cache(self.cache.clone())
            .build()
            .expect("valid config")
    }

    async fn seed_cache(&self, key: &RefreshKey) {
        let token = CachedToken {
            access_token: Secret::from("at-cached"),
            version: 0,
            expires_at: Some(in_secs(3600)),
        };
        self.cache
            .inner()
            .put(key, &token, Duration::from_secs(3600))
            .await
            .expect("in-memory cache answers");
    }
}

// ---------------------------------------------------------------------------
// Background loop
// ---------------------------------------------------------------------------

/// REFERENCE §12 Background loop: "Success".
#[tokio::test(start_paused = true)]
async fn background_success() {
    // One persist, one invalidation, the new token stored.
    let h = Harness::new([due_account(1, Platform::Anthropic)]);
    h.seed_cache(&key(&Platform::Anthropic, 1)).await;
    let result = h.cached_refresher(&[Platform::Anthropic]).run_once().await;
    assert_eq!(result, report(1, 1, 1, 0, 0, 0));
    assert_eq!(
        h.repo_calls("compare_and_set_credentials"),
        1,
        "one persist"
    );
    assert_eq!(h.cache_calls("invalidate"), 1, "one invalidation");
    assert!(
        h.cached(&key(&Platform::Anthropic, 1)).await.is_none(),
        "the account key is invalidated"
    );
    let stored = h.stored(1).await;
    assert_eq!(access_token(&stored), "at-1-1");
    assert_eq!(stored.credentials_version, 1);
    assert_eq!(
        refresh_token_of(&stored),
        h.upstream.current_refresh_token(AccountId(1))
    );
    assert_eq!(stored.status, AccountStatus::Active);

    // An invalidator error does not fail the refresh.
    let h = Harness::new([due_account(1, Platform::OpenAi)]);
    h.cache
        .faults
        .fail_next("invalidate", 1, StorageErrorKind::Unavailable);
    let result = h.cached_refresher(&[Platform::OpenAi]).run_once().await;
    assert_eq!(result, report(1, 1, 1, 0, 0, 0));
    assert_eq!(h.cache_calls("invalidate"), 1);
    assert_eq!(access_token(&h.stored(1).await), "at-1-1");

    // No cache configured is fine.
    let h = Harness::new([due_account(1, Platform::Gemini)]);
    let refresher = h
        .refresher(&[Platform::Gemini], config())
        .build()
        .expect("valid config");
    assert_eq!(refresher.run_once().await, report(1, 1, 1, 0, 0, 0));
    assert_eq!(h.cache_calls("invalidate"), 0);
    assert_eq!(access_token(&h.stored(1).await), "at-1-1");

    // Invalidation for oauth accounts on every platform; non-oauth accounts
    // are listed but neither refreshed nor invalidated.
    let oauth: Vec<Account> = PLATFORMS
        .iter()
        .zip(1..)
        .map(|(platform, id)| due_account(id, platform.clone()))
        .collect();
    let static_ones = [
        (11, Platform::Anthropic, AccountType::SetupToken),
        (12, Platform::OpenAi, AccountType::ApiKey),
        (13, Platform::Gemini, AccountType::ApiKey),
        (14, Platform::Antigravity, AccountType::Upstream),
    ]
    .map(|(id, platform, account_type)| {
        Account::new(id, platform, account_type, credentials(id, 60))
    });
    let h = Harness::new(oauth.iter().cloned().chain(static_ones.iter().cloned()));
    for account in oauth.iter().chain(&static_ones) {
        h.seed_cache(&key(&account.platform, account.id.get()))
            .await;
    }
    let result = h.cached_refresher(&PLATFORMS).run_once().await;
    assert_eq!(result, report(8, 4, 4, 0, 0, 0));
    assert_eq!(
        h.cache_calls("invalidate"),
        4,
        "one invalidation per oauth account"
    );
    assert_eq!(h.repo_calls("compare_and_set_credentials"), 4);
    assert_eq!(h.upstream.calls(), 4);
    for account in &oauth {
        let id = account.id.get();
        assert!(
            h.cached(&key(&account.platform, id)).await.is_none(),
            "{}",
            account.platform
        );
        assert_eq!(
            access_token(&h.stored(id).await),
            format!("at-{id}-1"),
            "{}",
            account.platform
        );
    }
    for account in &static_ones {
        let id = account.id.get();
        assert!(
            h.cached(&key(&account.platform, id)).await.is_some(),
            "{}",
            account.account_type
        );
        assert_eq!(
            h.stored(id).await,
            *account,
            "non-oauth accounts are untouched"
        );
    }
}

/// REFERENCE §8.3 / §12 Background loop: "Retryable error, retries
/// exhausted". The error is one the token provably survived (the request
/// never left), so every attempt may present it again; a 5xx instead
/// quarantines it (`background_server_error_quarantines_the_generation_until_it_ends`).
#[tokio::test(start_paused = true)]
async fn background_retryable_error_exhausts_retries() {
    let account = due_account(1, Platform::OpenAi);
    let h = Harness::new([account.clone()]);
    let cfg = config();
    for _ in 0..cfg.max_retries {
        h.upstream.fail_next(not_sent());
    }
    let refresher = h.cached_refresher(&[Platform::OpenAi]);

    let started = Instant::now();
    let result = refresher.run_once().await;
    let elapsed = started.elapsed();

    assert_eq!(result, report(1, 1, 0, 0, 1, 0));
    assert_eq!(
        h.upstream.calls(),
        u64::from(cfg.max_retries),
        "one upstream call per attempt"
    );
    assert_eq!(h.repo_calls("compare_and_set_credentials"), 0, "no persist");
    assert_eq!(h.cache_calls("invalidate"), 0, "no invalidation");
    assert_eq!(h.repo_calls("set_error"), 0, "no error status");
    let stored = h.stored(1).await;
    assert_eq!(stored.status, AccountStatus::Active);
    assert_eq!(stored.error_message, None);
    assert_eq!(stored.credentials, account.credentials, "state unchanged");
    assert!(
        h.claims.inner().is_empty(),
        "a request that never left releases its claim"
    );
    // Jittered exponential backoff: [1, 2] s, then [2, 4] s (instant under
    // paused time).
    assert!(
        elapsed >= Duration::from_secs(3) && elapsed <= Duration::from_secs(6),
        "backoffs between attempts: {elapsed:?}"
    );

    // The next cycle retries.
    assert_eq!(refresher.run_once().await, report(1, 1, 1, 0, 0, 0));
    assert_eq!(access_token(&h.stored(1).await), "at-1-1");
}

/// REFERENCE §12 Background loop: "invalid_grant on each of the four
/// platforms".
#[tokio::test(start_paused = true)]
async fn background_invalid_grant_marks_error_on_each_platform() {
    for platform in PLATFORMS {
        let account = Account::oauth(
            1,
            platform.clone(),
            Credentials::new()
                .with("access_token", "secret-access-token-1")
                .with("refresh_token", "secret-refresh-token-1")
                .with("expires_at", (T0 + 60).to_string()),
        );
        let h = Harness::new([account]);
        h.upstream.fail_next(ProviderError::InvalidGrant {
            code: OAuthErrorCode::new("invalid_grant"),
            description: Some("refresh token secret-refresh-token-1 was revoked".into()),
        });
        let refresher = h.cached_refresher(&PLATFORMS);

        let result = refresher.run_once().await;
        assert_eq!(result, report(1, 1, 0, 0, 1, 1), "{platform}");
        assert_eq!(
            h.upstream.calls(),
            1,
            "{platform}: non-retryable, no second attempt"
        );
        assert_eq!(h.repo_calls("set_error"), 1, "{platform}: marked once");
        assert_eq!(
            h.repo_calls("compare_and_set_credentials"),
            0,
            "{platform}: no persist"
        );
        assert_eq!(
            h.cache_calls("invalidate"),
            0,
            "{platform}: no invalidation"
        );
        let stored = h.stored(1).await;
        assert_eq!(stored.status, AccountStatus::Error, "{platform}");
        let message = stored.error_message.clone().unwrap_or_default();
        assert!(
            message.starts_with("Token refresh failed (non-retryable)"),
            "{platform}: {message}"
        );
        assert!(
            message.contains("invalid_grant"),
            "{platform}: the typed code: {message}"
        );
        assert!(
            !message.contains("secret-"),
            "{platform}: no token text: {message}"
        );
        assert_eq!(stored.credentials_version, 0, "{platform}");
        assert_eq!(
            refresh_token_of(&stored).as_deref(),
            Some("secret-refresh-token-1"),
            "{platform}: credentials kept"
        );

        // An `error` account is no longer listed: marked exactly once.
        assert_eq!(
            refresher.run_once().await,
            CycleReport::default(),
            "{platform}"
        );
        assert_eq!(h.repo_calls("set_error"), 1, "{platform}");
        assert_eq!(h.upstream.calls(), 1, "{platform}");
    }
}

/// Issue 5, break 17: the error mark is fenced on the `credentials_version`
/// the failure was observed on. An operator's re-import of fresh
/// credentials that lands between the upstream's refusal and the mark is
/// not marked `error`.
#[tokio::test(start_paused = true)]
async fn background_error_mark_is_fenced_against_a_reimport() {
    let h = reimport_harness([due_account(1, Platform::Anthropic)]);
    h.upstream.fail_next(ProviderError::InvalidGrant {
        code: OAuthErrorCode::new("invalid_grant"),
        description: None,
    });
    let refresher =
        BackgroundRefresher::builder(h.notifying_process(), h.registry(&[Platform::Anthropic]))
            .config(config())
            .build()
            .expect("valid config");

    let result = refresher.run_once().await;
    assert_eq!(
        result,
        report(1, 1, 0, 0, 1, 0),
        "failed, but the mark lost the race"
    );
    assert_eq!(h.upstream.calls(), 1);
    assert_eq!(h.repo_calls("set_error"), 1, "the mark was attempted");
    let stored = h.stored(1).await;
    assert_eq!(stored.status, AccountStatus::Active, "the re-import stands");
    assert_eq!(stored.error_message, None);
    assert_eq!(stored.credentials_version, 1);
    assert_eq!(stored.credentials, reimported());

    // The re-imported account is fresh: the next cycle has nothing to do.
    assert_eq!(refresher.run_once().await, CycleReport::default());
    assert_eq!(h.upstream.calls(), 1);
}

/// Issue 5, step 8: an old export re-imported puts a consumed refresh token
/// back. The background does not present it (no upstream call, no reuse)
/// and marks the account `error` as "credentials regressed", fenced on the
/// version that holds the consumed token.
#[tokio::test(start_paused = true)]
async fn background_regressed_credentials_are_marked_error_without_a_call() {
    let h = Harness::new([due_account(1, Platform::Anthropic)]);
    let refresher = h.cached_refresher(&[Platform::Anthropic]);
    assert_eq!(refresher.run_once().await, report(1, 1, 1, 0, 0, 0));
    let refreshed = h.stored(1).await;
    assert_eq!(refresh_token_of(&refreshed).as_deref(), Some("rt-1-1"));

    // The export taken before the refresh comes back.
    h.overwrite(1, &credentials(1, 60)).await;

    let result = refresher.run_once().await;
    assert_eq!(result, report(1, 1, 0, 0, 1, 1));
    assert_eq!(
        (h.upstream.calls(), h.upstream.reuses()),
        (1, 0),
        "the consumed token was not presented"
    );
    assert_eq!(h.repo_calls("set_error"), 1, "marked once, no retry");
    let stored = h.stored(1).await;
    assert_eq!(stored.status, AccountStatus::Error);
    assert_eq!(stored.credentials_version, 2);
    let message = stored.error_message.unwrap_or_default();
    assert!(
        message.starts_with("Token refresh failed (non-retryable)"),
        "{message}"
    );
    assert!(message.contains("credentials regressed"), "{message}");
    assert!(!message.contains("rt-1-0"), "{message}");
}

/// The "credentials regressed" mark is fenced too: a re-import of fresh
/// credentials between the regression and the mark is not marked.
#[tokio::test(start_paused = true)]
async fn background_regressed_credentials_mark_is_fenced_against_a_reimport() {
    let h = reimport_harness([due_account(1, Platform::Anthropic)]);
    let refresher =
        BackgroundRefresher::builder(h.notifying_process(), h.registry(&[Platform::Anthropic]))
            .config(config())
            .build()
            .expect("valid config");
    assert_eq!(refresher.run_once().await, report(1, 1, 1, 0, 0, 0));
    h.overwrite(1, &credentials(1, 60)).await;

    let result = refresher.run_once().await;
    assert_eq!(result, report(1, 1, 0, 0, 1, 0));
    assert_eq!((h.upstream.calls(), h.upstream.reuses()), (1, 0));
    assert_eq!(h.repo_calls("set_error"), 1);
    let stored = h.stored(1).await;
    assert_eq!(stored.status, AccountStatus::Active);
    assert_eq!(stored.error_message, None);
    assert_eq!(stored.credentials_version, 3);
    assert_eq!(stored.credentials, reimported());
}

/// Issue 5, step 7 and break 1: a 5xx after the upstream rotated may have
/// consumed the token. The claim is quarantined: the cycle's retry finds
/// the quarantine instead of presenting the token again, and the account is
/// not marked. The next cycle, still within the quarantine, makes a single
/// attempt (`Quarantined` is not retried, no backoff) and marks nothing.
#[tokio::test(start_paused = true)]
async fn background_quarantined_account_is_neither_retried_nor_marked() {
    let h = Harness::new([due_account(1, Platform::OpenAi)]);
    h.upstream.fail_after_rotation_next(server_error());
    let refresher = h.cached_refresher(&[Platform::OpenAi]);

    let result = refresher.run_once().await;
    assert_eq!(result, report(1, 1, 0, 0, 1, 0));
    assert_eq!(
        (h.upstream.calls(), h.upstream.reuses()),
        (1, 0),
        "the retry met the quarantine, not the upstream"
    );
    assert_eq!(
        h.claim_calls("acquire"),
        3,
        "the second attempt's claim on its snapshot found the quarantine (a claim found on a \
         snapshot is not acted on), and its claim after the re-read found it again"
    );
    assert_eq!(
        h.repo_calls("set_error"),
        0,
        "a quarantine is not the account's fault"
    );
    assert_eq!(
        h.claims
            .inner()
            .claims_of(AccountId(1), ClaimState::Quarantined)
            .len(),
        1
    );

    let acquires = h.claim_calls("acquire");
    let started = Instant::now();
    let result = refresher.run_once().await;
    assert_eq!(result, report(1, 1, 0, 0, 1, 0));
    assert_eq!(started.elapsed(), Duration::ZERO, "no backoff, no wait");
    assert_eq!(
        h.claim_calls("acquire"),
        acquires + 2,
        "one attempt (its snapshot's claim and the re-read's both meet the quarantine): a \
         quarantine is not retried within the cycle"
    );
    assert_eq!((h.upstream.calls(), h.upstream.reuses()), (1, 0));
    assert_eq!(h.repo_calls("set_error"), 0);
    let stored = h.stored(1).await;
    assert_eq!(stored.status, AccountStatus::Active);
    assert_eq!(stored.error_message, None);
    assert_eq!(stored.credentials_version, 0);
}

/// Issue 5, step 7: a 5xx is never on the "not consumed" allowlist, even
/// when (as here) the upstream answered it before rotating: the flow cannot
/// tell. The quarantine ends by the claim store's clock; the first cycle
/// after it takes the claim over and refreshes with one call.
#[tokio::test(start_paused = true)]
async fn background_server_error_quarantines_the_generation_until_it_ends() {
    let h = Harness::new([due_account(1, Platform::Gemini)]);
    h.upstream.fail_next(server_error());
    let refresher = h.cached_refresher(&[Platform::Gemini]);

    assert_eq!(refresher.run_once().await, report(1, 1, 0, 0, 1, 0));
    assert_eq!(h.upstream.calls(), 1);
    let quarantine = h.notifying_process().config().quarantine;

    // Just before the quarantine ends: still no call.
    tokio::time::advance(quarantine - Duration::from_secs(10)).await;
    assert_eq!(refresher.run_once().await, report(1, 1, 0, 0, 1, 0));
    assert_eq!(h.upstream.calls(), 1);

    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(refresher.run_once().await, report(1, 1, 1, 0, 0, 0));
    assert_eq!((h.upstream.calls(), h.upstream.reuses()), (2, 0));
    let stored = h.stored(1).await;
    assert_eq!(
        (access_token(&stored), stored.credentials_version),
        ("at-1-1".to_owned(), 1)
    );
    assert_eq!(stored.status, AccountStatus::Active);
    assert_eq!(h.repo_calls("set_error"), 0);
}

/// Issue 5, break 15: with `concurrency = 2` and an upstream that never
/// answers, never more than two upstream calls are in flight at once. A
/// running attempt is not cut by `account_deadline` (here shorter than the
/// flow's hard deadline): each hung call ends when the flow aborts it at the
/// hard deadline, and only then does the next account start.
#[tokio::test(start_paused = true)]
async fn background_concurrency_bounds_hanging_upstream_calls() {
    let accounts: Vec<Account> = (1..=6)
        .map(|id| oauth_account(id, Platform::Anthropic, 60 + id))
        .collect();
    let h = Harness::new(accounts);
    h.upstream.hold_responses();
    let probe = ConcurrencyProbe::new(h.executor(Platform::Anthropic));
    let refresher = BackgroundRefresher::builder(
        h.notifying_process(),
        ExecutorRegistry::new().with(probe.clone()),
    )
    .config(BackgroundConfig {
        concurrency: 2,
        account_deadline: Duration::from_secs(5),
        ..config()
    })
    .build()
    .expect("valid config");
    let hard_deadline = h.notifying_process().config().upstream_timeout;

    let started = Instant::now();
    let result = refresher.run_once().await;
    let elapsed = started.elapsed();

    assert_eq!(
        probe.peak.load(Ordering::SeqCst),
        2,
        "never more than 2 upstream calls in flight, and 2 used"
    );
    assert_eq!(
        probe.in_flight.load(Ordering::SeqCst),
        0,
        "every hung call was aborted by the end of the cycle"
    );
    assert_eq!(result, report(6, 6, 0, 0, 6, 0));
    assert_eq!(h.upstream.calls(), 6, "one call per account");
    assert_eq!(h.upstream.reuses(), 0);
    // Three rounds of two hung calls, each ended at the hard deadline.
    assert!(
        elapsed >= hard_deadline * 3 && elapsed < hard_deadline * 3 + Duration::from_secs(1),
        "{elapsed:?}"
    );
    for id in 1..=6 {
        assert_eq!(
            h.claims
                .inner()
                .claims_of(AccountId(id), ClaimState::Quarantined)
                .len(),
            1,
            "account {id}: an aborted call may have consumed the token"
        );
        assert_eq!(h.stored(id).await.status, AccountStatus::Active);
    }
    assert_eq!(h.repo_calls("set_error"), 0);
}

/// Issue 5, break 16: a window longer than the tokens' lifetime makes every
/// refreshed account due again at once, and it sorts after the cursor. A
/// cycle still refreshes each due account at most once: 4 accounts, tokens
/// living 60 s, a 30-min window → exactly 4 refreshes.
#[tokio::test(start_paused = true)]
async fn background_cycle_refreshes_each_account_at_most_once() {
    let accounts: Vec<Account> = (1..=4)
        .map(|id| oauth_account(id, Platform::Anthropic, 10 * id))
        .collect();
    let h = Harness::new(accounts);
    let short_lived: Arc<dyn RefreshExecutor> = Arc::new(RotatingExecutor::new(
        Platform::Anthropic,
        Arc::clone(&h.upstream),
        Duration::from_secs(60),
    ));
    let refresher = BackgroundRefresher::builder(
        h.notifying_process(),
        ExecutorRegistry::new().with(short_lived),
    )
    .config(BackgroundConfig {
        window: Duration::from_secs(30 * 60),
        page_size: 2,
        concurrency: 1,
        ..config()
    })
    .build()
    .expect("valid config");

    let result = refresher.run_once().await;

    assert_eq!(result, report(4, 4, 4, 0, 0, 0));
    assert_eq!(h.upstream.calls(), 4, "exactly one refresh per account");
    assert_eq!(h.upstream.successes(), 4);
    assert!(
        h.repo_calls("list_due") > 2,
        "the sweep re-listed refreshed accounts (the case under test): {} pages",
        h.repo_calls("list_due")
    );
    for id in 1..=4 {
        let stored = h.stored(id).await;
        assert_eq!(
            (access_token(&stored), stored.credentials_version),
            (format!("at-{id}-1"), 1)
        );
    }
}

/// REFERENCE §8.4.2 / §12 Background loop: "Temp-unschedulable until in the
/// future".
#[tokio::test(start_paused = true)]
async fn background_temp_unschedulable_cleared() {
    let mut future = due_account(1, Platform::Anthropic);
    future.temp_unschedulable_until = Some(in_secs(600));
    future.temp_unschedulable_reason = Some("rate limited".into());
    let mut past = due_account(2, Platform::Anthropic);
    past.temp_unschedulable_until = Some(in_secs(-600));
    past.temp_unschedulable_reason = Some("rate limited".into());
    let h = Harness::new([future, past]);
    h.seed_cache(&temp_unsched_key(1)).await;
    h.seed_cache(&temp_unsched_key(2)).await;

    let result = h.cached_refresher(&[Platform::Anthropic]).run_once().await;
    assert_eq!(result, report(2, 2, 2, 0, 0, 0));
    assert_eq!(h.repo_calls("clear_temp_unschedulable"), 1, "one DB clear");
    assert!(
        h.cached(&temp_unsched_key(1)).await.is_none(),
        "the temp-unschedulable key is deleted"
    );
    assert!(
        h.cached(&temp_unsched_key(2)).await.is_some(),
        "an elapsed until is left alone"
    );
    assert_eq!(
        h.cache_calls("invalidate"),
        3,
        "two account keys and one temp-unschedulable key"
    );
    let one = h.stored(1).await;
    assert_eq!(
        (one.temp_unschedulable_until, one.temp_unschedulable_reason),
        (None, None)
    );
    assert_eq!(
        h.stored(2).await.temp_unschedulable_until,
        Some(in_secs(-600))
    );
}

/// REFERENCE §4 / §12 Background loop: "Lock held, or already refreshed
/// elsewhere".
#[tokio::test(start_paused = true)]
async fn background_lock_held_or_already_refreshed_is_skipped() {
    // Lock held by another instance.
    let h = Harness::new([due_account(1, Platform::Anthropic)]);
    let _lease = h.hold(&key(&Platform::Anthropic, 1)).await;
    let result = h.cached_refresher(&[Platform::Anthropic]).run_once().await;
    assert_eq!(result, report(1, 1, 0, 1, 0, 0), "skipped by default");
    let overriding = h
        .refresher(
            &[Platform::Anthropic],
            BackgroundConfig {
                policy: BackgroundRefreshPolicy::success_override(),
                ..config()
            },
        )
        .cache(h.cache.clone())
        .build()
        .expect("valid config");
    assert_eq!(
        overriding.run_once().await,
        report(1, 1, 1, 0, 0, 0),
        "success override"
    );
    assert_eq!(h.upstream.calls(), 0);
    assert_eq!(h.repo_calls("compare_and_set_credentials"), 0, "no persist");
    assert_eq!(h.cache_calls("invalidate"), 0, "no invalidation");

    // Already refreshed elsewhere between the listing and the lease.
    for (policy, expected) in [
        (BackgroundRefreshPolicy::default(), report(1, 1, 0, 1, 0, 0)),
        (
            BackgroundRefreshPolicy::success_override(),
            report(1, 1, 1, 0, 0, 0),
        ),
    ] {
        let h = Harness::with_hooks(
            [due_account(1, Platform::OpenAi)],
            vec![AfterList::RefreshedElsewhere(AccountId(1))],
        );
        let refresher = h
            .refresher(&[Platform::OpenAi], BackgroundConfig { policy, ..config() })
            .cache(h.cache.clone())
            .build()
            .expect("valid config");
        assert_eq!(refresher.run_once().await, expected, "{policy:?}");
        assert_eq!(h.upstream.calls(), 0, "{policy:?}: no upstream call");
        assert_eq!(
            h.repo_calls("compare_and_set_credentials"),
            0,
            "{policy:?}: no persist"
        );
        assert_eq!(
            access_token(&h.stored(1).await),
            "at-elsewhere",
            "{policy:?}: theirs stand"
        );
        // `SkipAction::Success` runs the post-refresh actions; `Skip` does not.
        let invalidations = u64::from(policy == BackgroundRefreshPolicy::success_override());
        assert_eq!(h.cache_calls("invalidate"), invalidations, "{policy:?}");
    }
}

/// REFERENCE §12 Background loop: "Persist failure", and invariant 2: the
/// answer goes into the generation claim before the write, so the retries
/// of the cycle, and the next cycle, apply it from the claim instead of
/// calling the upstream again.
#[tokio::test(start_paused = true)]
async fn background_persist_failure() {
    let h = Harness::new([due_account(1, Platform::OpenAi)]);
    h.fail_writes();
    let refresher = h.cached_refresher(&[Platform::OpenAi]);

    let result = refresher.run_once().await;
    assert_eq!(
        result,
        report(1, 1, 0, 0, 1, 0),
        "not persisted → failed, not marked"
    );
    assert_eq!(
        h.upstream.calls(),
        1,
        "the retries apply the answer from the claim, never re-call the upstream"
    );
    let writes = h.repo_calls("compare_and_set_credentials");
    let per_attempt = u64::from(h.notifying_process().config().persist_attempts);
    assert_eq!(
        writes,
        per_attempt * u64::from(config().max_retries),
        "bounded write retries in each of the cycle's attempts"
    );
    assert_eq!(h.claim_calls("save_answer"), 1, "the answer saved once");
    assert_eq!(h.cache_calls("invalidate"), 0, "no invalidation");
    assert_eq!(h.repo_calls("set_error"), 0);
    let answered = h
        .claims
        .inner()
        .claims_of(AccountId(1), ClaimState::Answered);
    assert_eq!(answered.len(), 1, "the claim holds the rotated credentials");
    let answer = answered[0].answer.as_ref().expect("answered claim");
    assert_eq!(
        answer.access_token().map(|t| t.expose().to_owned()),
        Some("at-1-1".to_owned())
    );
    let stored = h.stored(1).await;
    assert_eq!(stored.credentials_version, 0);
    assert_eq!(stored.status, AccountStatus::Active);

    h.repo.faults.heal();
    let result = refresher.run_once().await;
    assert_eq!(result, report(1, 1, 1, 0, 0, 0));
    assert_eq!(
        h.upstream.calls(),
        1,
        "the claim's answer was persisted, no new upstream call"
    );
    assert_eq!(h.upstream.reuses(), 0);
    assert!(
        h.claims
            .inner()
            .claims_of(AccountId(1), ClaimState::Answered)
            .is_empty(),
        "the answer is applied once"
    );
    assert_eq!(
        h.claims
            .inner()
            .claims_of(AccountId(1), ClaimState::Consumed)
            .len(),
        1,
        "the presented generation is remembered as consumed"
    );
    let stored = h.stored(1).await;
    assert_eq!(access_token(&stored), "at-1-1");
    assert_eq!(stored.credentials_version, 1);
    assert_eq!(
        refresh_token_of(&stored),
        h.upstream.current_refresh_token(AccountId(1))
    );
    assert_eq!(h.cache_calls("invalidate"), 1);
}

/// REFERENCE §12 Background loop: "Persist failure" when the claim store
/// cannot take the answer either (issue 5, step 10): the holder keeps the
/// lease while it rescues the answer, so the cycle's retry skips the
/// account instead of presenting the consumed token; once the repository
/// heals, the rescue stores the rotation and lets the lease go.
#[tokio::test(start_paused = true)]
async fn background_persist_and_claim_failure_keeps_the_lease_until_rescued() {
    let h = Harness::new([due_account(1, Platform::OpenAi)]);
    h.fail_writes();
    h.claims
        .faults
        .fail_always("save_answer", StorageErrorKind::Unavailable);
    let refresher = h.cached_refresher(&[Platform::OpenAi]);

    let result = refresher.run_once().await;
    assert_eq!(
        result,
        report(1, 1, 0, 1, 0, 0),
        "the retry finds the rescue holding the lease"
    );
    assert_eq!(h.upstream.calls(), 1);
    assert!(
        !h.lease_is_free(&key(&Platform::OpenAi, 1)).await,
        "the lease is kept while the only copy of the answer is in memory"
    );
    assert_eq!(h.stored(1).await.credentials_version, 0);

    h.repo.faults.heal();
    let releases = h.lock_calls("release");
    h.lock.faults.wait_for_calls("release", releases + 1).await;
    assert!(h.lease_is_free(&key(&Platform::OpenAi, 1)).await);
    let stored = h.stored(1).await;
    assert_eq!(
        (access_token(&stored), stored.credentials_version),
        ("at-1-1".to_owned(), 1),
        "the rescue stored the rotation"
    );
    assert_eq!(
        refresh_token_of(&stored),
        h.upstream.current_refresh_token(AccountId(1))
    );
    assert_eq!(
        h.claims
            .inner()
            .claims_of(AccountId(1), ClaimState::Consumed)
            .len(),
        1
    );
    assert_eq!(
        (h.upstream.calls(), h.upstream.reuses()),
        (1, 0),
        "one upstream call, the token never presented twice"
    );
    assert_eq!(h.repo_calls("set_error"), 0);
}

/// REFERENCE §8.4.1: an Antigravity account whose re-read shows status
/// `error` with a `missing_project_id:` message is set active again after a
/// successful refresh. `list_due` only lists active accounts, so the error is
/// set between the listing and the refresh (reachable only through the
/// re-read account, as the reference says).
#[tokio::test(start_paused = true)]
async fn background_missing_project_id_error_cleared_after_success() {
    let h = Harness::with_hooks(
        [
            due_account(1, Platform::Antigravity),
            due_account(2, Platform::Antigravity),
        ],
        vec![
            AfterList::SetError(
                AccountId(1),
                "missing_project_id: project discovery pending",
            ),
            AfterList::SetError(AccountId(2), "Token refresh failed (non-retryable): other"),
        ],
    );
    let result = h
        .cached_refresher(&[Platform::Antigravity])
        .run_once()
        .await;
    assert_eq!(result, report(2, 2, 2, 0, 0, 0));
    assert_eq!(
        h.repo_calls("clear_error"),
        1,
        "only the missing_project_id error is cleared"
    );

    let one = h.stored(1).await;
    assert_eq!(one.status, AccountStatus::Active);
    assert_eq!(one.error_message, None);
    assert_eq!(access_token(&one), "at-1-1");
    let two = h.stored(2).await;
    assert_eq!(
        two.status,
        AccountStatus::Error,
        "other errors are left for a human"
    );
    assert_eq!(access_token(&two), "at-2-1");
}

/// DESIGN "BackgroundRefresher" and defect 15: pages through the due index
/// and refreshes with bounded concurrency.
#[tokio::test(start_paused = true)]
async fn background_pages_and_bounded_concurrency() {
    let accounts: Vec<Account> = (1..=50)
        .map(|id| oauth_account(id, Platform::Anthropic, 60 + id))
        .collect();
    let h = Harness::new(accounts);
    h.upstream.set_latency(Duration::from_secs(1));
    let probe = ConcurrencyProbe::new(h.executor(Platform::Anthropic));
    let refresher = BackgroundRefresher::builder(
        h.notifying_process(),
        ExecutorRegistry::new().with(probe.clone()),
    )
    .config(BackgroundConfig {
        page_size: 7,
        concurrency: 4,
        ..config()
    })
    .cache(h.cache.clone())
    .build()
    .expect("valid config");

    let started = Instant::now();
    let result = refresher.run_once().await;
    let elapsed = started.elapsed();

    assert_eq!(result, report(50, 50, 50, 0, 0, 0));
    assert_eq!(h.upstream.successes(), 50);
    assert_eq!(
        probe.peak.load(Ordering::SeqCst),
        4,
        "never more than 4 upstream calls at once, and 4 used"
    );
    assert_eq!(h.repo_calls("list_due"), 8, "50 accounts in pages of 7");
    // 50 calls of 1 s, 4 at a time: 13 rounds.
    assert!(
        elapsed >= Duration::from_secs(13) && elapsed < Duration::from_secs(14),
        "bounded concurrency, not sequential: {elapsed:?}"
    );
    for id in 1..=50 {
        let stored = h.stored(id).await;
        assert_eq!(
            (access_token(&stored), stored.credentials_version),
            (format!("at-{id}-1"), 1)
        );
    }
}

/// A listener that records what it saw, to check it runs after the
/// built-in post-refresh actions.
struct RecordingListener {
    cache: Arc<Faulty<InMemoryTokenCache>>,
    calls: AtomicU64,
    saw_invalidated_cache: AtomicU64,
}

impl RecordingListener {
    fn new(cache: &Arc<Faulty<InMemoryTokenCache>>) -> Arc<Self> {
        Arc::new(Self {
            cache: Arc::clone(cache),
            calls: AtomicU64::new(0),
            saw_invalidated_cache: AtomicU64::new(0),
        })
    }
}

#[async_trait]
impl RefreshListener for RecordingListener {
    async fn on_refreshed(&self, account: &Account) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let key = RefreshKey::for_account(&account.platform, account.id);
        if self
            .cache
            .inner()
            .get(&key)
            .await
            .is_ok_and(|cached| cached.is_none())
        {
            self.saw_invalidated_cache.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// REFERENCE §8.4.5: listeners run after each successful refresh, after the
/// built-in actions; a token provider registered as a listener drops its
/// in-process copy of the old token.
#[tokio::test(start_paused = true)]
async fn background_listener_runs_after_success() {
    // Account 1 is due within the 30-min window but not within the 3-min
    // request skew; account 2 has no refresh token and fails.
    let one = oauth_account(1, Platform::Anthropic, 20 * 60);
    let mut two = due_account(2, Platform::Anthropic);
    two.credentials.remove("refresh_token");
    let h = Harness::new([one.clone(), two]);
    let listening = h.provider(&[Platform::Anthropic]);
    let not_listening = h.provider(&[Platform::Anthropic]);
    for provider in [&listening, &not_listening] {
        let token = provider.access_token(&one).await.expect("token");
        assert_eq!(token.token.expose(), "at-1-0");
    }

    let mut mock = MockRefreshListener::new();
    mock.expect_on_refreshed()
        .times(1)
        .withf(|account: &Account| {
            account.id == AccountId(1)
                && account.credentials_version == 1
                && account
                    .credentials
                    .access_token()
                    .is_some_and(|t| t.expose() == "at-1-1")
        })
        .return_const(());
    let recording = RecordingListener::new(&h.cache);
    let refresher = h
        .refresher(&[Platform::Anthropic], config())
        .cache(h.cache.clone())
        .listener(Arc::new(mock))
        .listener(recording.clone())
        .listener(Arc::new(listening.clone()))
        .build()
        .expect("valid config");

    let result = refresher.run_once().await;
    assert_eq!(result, report(2, 2, 1, 0, 1, 1));
    assert_eq!(
        recording.calls.load(Ordering::SeqCst),
        1,
        "only after the success"
    );
    assert_eq!(
        recording.saw_invalidated_cache.load(Ordering::SeqCst),
        1,
        "listeners run after the cache invalidation"
    );
    let token = listening.access_token(&one).await.expect("token");
    assert_eq!(
        (token.token.expose(), token.version),
        ("at-1-1", 1),
        "the listening provider dropped its old copy"
    );
    let token = not_listening.access_token(&one).await.expect("token");
    assert_eq!(
        token.token.expose(),
        "at-1-0",
        "a provider that did not listen still serves its copy"
    );
    // Dropping the refresher drops the mock, which verifies `times(1)`.
    drop(refresher);
}

/// A listener with a bug.
struct PanickingListener;

#[async_trait]
impl RefreshListener for PanickingListener {
    async fn on_refreshed(&self, _account: &Account) {
        panic!("listener bug");
    }
}

/// REFERENCE §8.4.5 and the `RefreshListener` contract: "best effort, never
/// affecting the result". A listener that panics must not turn a persisted
/// refresh into a failure, nor keep later listeners from running.
#[tokio::test(start_paused = true)]
async fn background_listener_never_affects_the_result() {
    let h = Harness::new([due_account(1, Platform::Anthropic)]);
    let recording = RecordingListener::new(&h.cache);
    let refresher = h
        .refresher(&[Platform::Anthropic], config())
        .cache(h.cache.clone())
        .listener(Arc::new(PanickingListener))
        .listener(recording.clone())
        .build()
        .expect("valid config");

    let result = refresher.run_once().await;
    let stored = h.stored(1).await;
    assert_eq!(
        (access_token(&stored), stored.credentials_version),
        ("at-1-1".to_owned(), 1)
    );
    assert_eq!(
        result,
        report(1, 1, 1, 0, 0, 0),
        "a listener cannot fail the refresh"
    );
    assert_eq!(
        recording.calls.load(Ordering::SeqCst),
        1,
        "later listeners still run"
    );
}

/// DESIGN "stops promptly on shutdown" and defect 14: cancelling the token
/// ends the spawned loop at once, between cycles and mid-backoff, and cuts a
/// running cycle short.
#[tokio::test(start_paused = true)]
async fn background_shutdown_stops_promptly() {
    let long_backoff = BackgroundConfig {
        interval: Duration::from_secs(3600),
        retry_backoff: Duration::from_secs(600),
        max_backoff: Duration::from_secs(3600),
        ..BackgroundConfig::default()
    };

    // Between cycles (in the 1 h interval).
    let h = Harness::new([]);
    let shutdown = CancellationToken::new();
    let handle = h
        .cached_refresher(&[Platform::Anthropic])
        .spawn(shutdown.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(h.repo_calls("list_due"), 1, "the first cycle ran at once");
    let cancelled_at = Instant::now();
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(1), handle)
        .await
        .expect("the loop stops")
        .expect("the loop does not panic");
    assert_eq!(
        cancelled_at.elapsed(),
        Duration::ZERO,
        "stops without waiting"
    );
    assert_eq!(h.repo_calls("list_due"), 1);

    // Mid-backoff (the first attempt failed; the next is 5-10 min away).
    let h = Harness::new([due_account(1, Platform::Anthropic)]);
    for _ in 0..3 {
        h.upstream.fail_next(not_sent());
    }
    let refresher = h
        .refresher(&[Platform::Anthropic], long_backoff.clone())
        .build()
        .expect("valid config");
    let shutdown = CancellationToken::new();
    let handle = refresher.spawn(shutdown.clone());
    h.upstream.wait_for_calls(1).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(h.upstream.calls(), 1, "in the backoff");
    let cancelled_at = Instant::now();
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(1), handle)
        .await
        .expect("the loop stops mid-backoff")
        .expect("the loop does not panic");
    assert_eq!(
        cancelled_at.elapsed(),
        Duration::ZERO,
        "stops without waiting out the backoff"
    );
    assert_eq!(h.upstream.calls(), 1, "no attempt after shutdown");
    assert_eq!(h.stored(1).await.status, AccountStatus::Active);

    // A running cycle is cut short and says so.
    let h = Harness::new([due_account(1, Platform::Anthropic)]);
    for _ in 0..3 {
        h.upstream.fail_next(not_sent());
    }
    let refresher = h
        .refresher(&[Platform::Anthropic], long_backoff)
        .build()
        .expect("valid config");
    let shutdown = CancellationToken::new();
    let cycle = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { refresher.run_cycle(&shutdown).await }
    });
    h.upstream.wait_for_calls(1).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cancelled_at = Instant::now();
    shutdown.cancel();
    let cut = tokio::time::timeout(Duration::from_secs(1), cycle)
        .await
        .expect("the cycle stops")
        .expect("the cycle does not panic");
    assert_eq!(cancelled_at.elapsed(), Duration::ZERO);
    assert!(cut.cancelled, "{cut:?}");
    assert_eq!(cut.refreshed, 0, "{cut:?}");
    assert_eq!(h.upstream.calls(), 1);
}

/// REFERENCE §12 "Not tested in Go": concurrent getters (two processes)
/// plus the background service on one expiring account against the rotating
/// upstream: exactly one upstream refresh, no error status, and the
/// last-issued refresh token stored.
#[tokio::test(start_paused = true)]
async fn background_concurrent_getters_and_background_one_refresh() {
    let account = due_account(1, Platform::Anthropic);
    let h = Harness::new([account.clone()]);
    h.upstream.hold_responses();
    let a = h.provider(&[Platform::Anthropic]);
    let b = h.provider(&[Platform::Anthropic]);
    let refresher = h.cached_refresher(&[Platform::Anthropic]);

    let background = tokio::spawn(async move { refresher.run_once().await });
    let mut callers = Vec::new();
    for provider in [&a, &b] {
        for _ in 0..8 {
            callers.push(spawn_access_token(provider, &account));
        }
    }
    // Three flows (background, process A, process B) contend for the lease
    // while the winner's upstream answer is held.
    h.upstream.wait_for_calls(1).await;
    h.lock.faults.wait_for_calls("try_acquire", 3).await;
    assert_eq!(
        h.upstream.calls(),
        1,
        "only the lease holder reached the upstream"
    );
    h.upstream.open();

    let result = background.await.expect("background task");
    for caller in callers {
        let token = caller
            .await
            .expect("caller task")
            .expect("every caller gets a token");
        assert_eq!(
            (token.token.expose(), token.version),
            ("at-1-1", 1),
            "the new token"
        );
    }
    assert_eq!(result.due, 1);
    assert_eq!(result.refreshed + result.skipped, 1, "{result:?}");
    assert_eq!((result.failed, result.marked_error), (0, 0), "{result:?}");
    assert_eq!(h.upstream.calls(), 1);
    assert_eq!(h.upstream.successes(), 1, "exactly one upstream refresh");
    assert_eq!(h.upstream.reuses(), 0, "no refresh token presented twice");
    let stored = h.stored(1).await;
    assert_eq!(stored.status, AccountStatus::Active);
    assert_eq!(stored.error_message, None);
    assert_eq!(stored.credentials_version, 1);
    assert_eq!(
        refresh_token_of(&stored),
        h.upstream.current_refresh_token(AccountId(1))
    );
    assert_eq!(h.repo_calls("set_error"), 0);
}

/// A repository whose listing reports some due rows as unreadable, as a
/// database does for a row with corrupt credentials or an unknown platform.
struct CorruptRows {
    inner: InMemoryAccountRepository,
    corrupt: Vec<AccountId>,
}

#[async_trait]
impl AccountRepository for CorruptRows {
    async fn get(&self, id: AccountId) -> Result<Option<Account>, StorageError> {
        if self.corrupt.contains(&id) {
            return Err(StorageError::invalid_data("get", "corrupt row"));
        }
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
        before: chrono::DateTime<chrono::Utc>,
        after: Option<refresh_core::DueCursor>,
        limit: usize,
    ) -> Result<refresh_core::DuePage, StorageError> {
        let mut page = self.inner.list_due(before, after, limit).await?;
        let (corrupt, readable): (Vec<Account>, Vec<Account>) = page
            .accounts
            .into_iter()
            .partition(|a| self.corrupt.contains(&a.id));
        page.accounts = readable;
        page.corrupt = corrupt
            .into_iter()
            .map(|a| refresh_core::CorruptAccount {
                id: a.id,
                error: StorageError::invalid_data("list_due", "corrupt row"),
            })
            .collect();
        Ok(page)
    }
    async fn set_error(&self, id: AccountId, v: u64, m: &str) -> Result<bool, StorageError> {
        self.inner.set_error(id, v, m).await
    }
    async fn clear_error(&self, id: AccountId) -> Result<(), StorageError> {
        self.inner.clear_error(id).await
    }
    async fn clear_temp_unschedulable(&self, id: AccountId) -> Result<(), StorageError> {
        self.inner.clear_temp_unschedulable(id).await
    }
}

/// Corrupt rows in a due listing are counted and passed over; the pages go
/// on past them (the cursor moves beyond a page whose last row is corrupt)
/// and every readable due account is refreshed.
#[tokio::test(start_paused = true)]
async fn background_corrupt_rows_are_counted_and_the_sweep_goes_on() {
    let accounts: Vec<Account> = (1..=7)
        .map(|id| due_account(id, Platform::Anthropic))
        .collect();
    let repo = CorruptRows {
        inner: InMemoryAccountRepository::with_accounts(accounts),
        // 2 ends the first page of 2; 3 and 4 fill the second page alone.
        corrupt: vec![AccountId(2), AccountId(3), AccountId(4)],
    };
    let b = common::Backends::with_repo(repo, common::tokio_clock(), common::tokio_clock());
    let flow = b.process(
        refresh_core::LockStrategy::single(b.lock.clone()),
        refresh_core::FlowConfig::default(),
    );
    let executor: Arc<dyn RefreshExecutor> = Arc::new(RotatingExecutor::new(
        Platform::Anthropic,
        Arc::clone(&b.upstream),
        Duration::from_secs(3600),
    ));
    let refresher = BackgroundRefresher::builder(flow, ExecutorRegistry::new().with(executor))
        .config(BackgroundConfig {
            page_size: 2,
            ..config()
        })
        .build()
        .expect("valid config");

    let result = refresher.run_once().await;

    assert_eq!(result.corrupt, 3, "{result:?}");
    assert_eq!(
        (result.total, result.refreshed, result.failed),
        (4, 4, 0),
        "{result:?}"
    );
    assert_eq!(
        b.upstream.successes(),
        4,
        "every readable account refreshed"
    );
    for id in [1, 5, 6, 7] {
        let stored = b.repo.get(AccountId(id)).await.expect("get").expect("row");
        assert_eq!(stored.credentials_version, 1, "account {id}");
    }
}

/// A repository whose listing ignores its cursor, as a backend that cannot
/// hold a row's sort key in a cursor would: every page is the first one.
struct CursorIgnored {
    inner: InMemoryAccountRepository,
    first_page: refresh_core::DuePage,
    listings: AtomicU64,
}

#[async_trait]
impl AccountRepository for CursorIgnored {
    async fn get(&self, id: AccountId) -> Result<Option<Account>, StorageError> {
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
        _before: chrono::DateTime<chrono::Utc>,
        _after: Option<refresh_core::DueCursor>,
        _limit: usize,
    ) -> Result<refresh_core::DuePage, StorageError> {
        let n = self.listings.fetch_add(1, Ordering::SeqCst);
        assert!(n < 100, "the same page was listed {n} times");
        Ok(self.first_page.clone())
    }
    async fn set_error(&self, id: AccountId, v: u64, m: &str) -> Result<bool, StorageError> {
        self.inner.set_error(id, v, m).await
    }
    async fn clear_error(&self, id: AccountId) -> Result<(), StorageError> {
        self.inner.clear_error(id).await
    }
    async fn clear_temp_unschedulable(&self, id: AccountId) -> Result<(), StorageError> {
        self.inner.clear_temp_unschedulable(id).await
    }
}

/// A listing whose cursor does not advance ends the cycle (counted as a
/// listing error) instead of listing the same page forever; what the page
/// held is refreshed once.
#[tokio::test(start_paused = true)]
async fn background_a_listing_whose_cursor_does_not_advance_ends_the_cycle() {
    let accounts: Vec<Account> = (1..=5)
        .map(|id| due_account(id, Platform::Anthropic))
        .collect();
    let first_page = refresh_core::DuePage::of(accounts[..2].to_vec(), 2);
    let repo = CursorIgnored {
        inner: InMemoryAccountRepository::with_accounts(accounts),
        first_page,
        listings: AtomicU64::new(0),
    };
    let b = common::Backends::with_repo(repo, common::tokio_clock(), common::tokio_clock());
    let flow = b.process(
        refresh_core::LockStrategy::single(b.lock.clone()),
        refresh_core::FlowConfig::default(),
    );
    let executor: Arc<dyn RefreshExecutor> = Arc::new(RotatingExecutor::new(
        Platform::Anthropic,
        Arc::clone(&b.upstream),
        Duration::from_secs(3600),
    ));
    let refresher = BackgroundRefresher::builder(flow, ExecutorRegistry::new().with(executor))
        .config(BackgroundConfig {
            page_size: 2,
            ..config()
        })
        .build()
        .expect("valid config");

    let result = refresher.run_once().await;

    assert_eq!(result.list_errors, 1, "{result:?}");
    assert_eq!((result.total, result.refreshed), (2, 2), "{result:?}");
    assert_eq!(b.upstream.successes(), 2);
}
