//! Scenario tests of the request path ([`TokenProvider`]): cache hits, the
//! lock-contention waits of each platform policy, cancellation, static
//! tokens, refresh-error policies, the version guard on the shared cache,
//! cache TTLs, and invariant 8 (a waiter gets the new token, never an
//! expired one).
//!
//! Every test runs on paused tokio time with a [`TokioClock`], the in-memory
//! backends wrapped in call-counting [`Faulty`] wrappers, and the rotating
//! [`FakeUpstream`] (see `common::Backends`). Synchronization uses the fake
//! upstream's gate and call counter and the wrappers' call counts
//! (`FaultPlan::wait_for_calls`), never real sleeps.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use common::{
    Backends, in_secs, key, oauth_account, refresh_token_of, short_upstream_timeout,
    spawn_access_token,
};
use refresh_core::error::StorageErrorKind;
use refresh_core::memory::InMemoryTokenCache;
use refresh_core::ports::{PutOutcome, RefreshNotice};
use refresh_core::provider::MetricsSnapshot;
use refresh_core::testing::conformance::T0;
use refresh_core::{
    Account, AccountId, AccountType, CachedToken, ClaimState, Credentials, ExecutorRegistry,
    FlowConfig, FlowError, LockStrategy, Platform, ProviderError, ProviderRefreshPolicy,
    RefreshContext, RefreshExecutor, RefreshKey, Secret, StorageError, TokenCache, TokenError,
    TokenProvider,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

/// Shared backends of one scenario: every provider built from it is a
/// separate "process" (own flow, own in-process cache, own single flight)
/// over the same repository, lock, shared cache and upstream.
type Harness = Backends;

impl Harness {
    /// A provider with the shared cache whose flow runs with `config`.
    fn provider_with(&self, platforms: &[Platform], config: FlowConfig) -> TokenProvider {
        let flow = self
            .flow_builder(LockStrategy::single(self.lock.clone()))
            .notifier(self.cache.clone())
            .config(config)
            .build()
            .expect("valid flow config");
        TokenProvider::builder(flow, self.registry(platforms))
            .shared_cache(self.cache.clone())
            .build()
    }

    /// A provider in a process with no shared cache: no notifications, so
    /// waiters rely on re-reading the repository.
    fn provider_without_shared_cache(&self, platforms: &[Platform]) -> TokenProvider {
        TokenProvider::builder(
            self.process(
                LockStrategy::single(self.lock.clone()),
                FlowConfig::default(),
            ),
            self.registry(platforms),
        )
        .build()
    }

    fn repo_gets(&self) -> u64 {
        self.repo_calls("get")
    }

    /// Puts `token` (version `version`, expiring an hour after T0) into the
    /// shared cache for `ttl`, through its wrapper.
    async fn put_shared(
        &self,
        key: &RefreshKey,
        token: &str,
        version: u64,
        ttl: Duration,
    ) -> PutOutcome {
        let token = CachedToken {
            access_token: Secret::from(token),
            version,
            expires_at: Some(in_secs(3600)),
        };
        self.cache.put(key, &token, ttl).await.expect("put")
    }
}

fn metrics(provider: &TokenProvider, platform: &Platform) -> MetricsSnapshot {
    provider.metrics().platform(platform).snapshot()
}

// ---------------------------------------------------------------------------
// Getters
// ---------------------------------------------------------------------------

/// REFERENCE §12 Getters: "A cache hit returns without locking".
#[tokio::test(start_paused = true)]
async fn getter_cache_hit_returns_without_locking() {
    // In-process cache: the first call refreshes the due token; the second
    // call, with the same (now outdated, due) snapshot, is served from the
    // in-process cache without any lock, repository or shared-cache access.
    let snapshot = oauth_account(1, Platform::Anthropic, 60);
    let h = Harness::new([snapshot.clone()]);
    let provider = h.provider(&[Platform::Anthropic]);

    let first = provider
        .access_token(&snapshot)
        .await
        .expect("refreshed token");
    assert_eq!(first.token.expose(), "at-1-1");
    assert_eq!(first.version, 1);
    assert_eq!(
        h.lock_calls("try_acquire"),
        1,
        "the due token was refreshed under the lease"
    );
    let (repo_gets, cache_gets) = (h.repo_gets(), h.cache_calls("get"));

    let second = provider
        .access_token(&snapshot)
        .await
        .expect("cached token");
    assert_eq!(second, first);
    assert_eq!(h.lock_calls("try_acquire"), 1, "a cache hit takes no lock");
    assert_eq!(h.repo_gets(), repo_gets, "a cache hit reads no account");
    assert_eq!(
        h.cache_calls("get"),
        cache_gets,
        "an in-process hit does not reach the shared cache"
    );
    assert_eq!(h.upstream.calls(), 1);

    // Shared cache, same version as the snapshot: a fresh process is served
    // from it (the repository holds a different token, so the source shows).
    let mut two = oauth_account(2, Platform::Anthropic, 3600);
    two.credentials_version = 2;
    let mut three = oauth_account(3, Platform::Anthropic, 3600);
    three.credentials_version = 2;
    let h = Harness::new([two.clone(), three.clone()]);
    let k2 = key(&Platform::Anthropic, 2);
    h.put_shared(&k2, "at-2-shared", 2, Duration::from_secs(600))
        .await;
    let token = h
        .provider(&[Platform::Anthropic])
        .access_token(&two)
        .await
        .expect("shared hit");
    assert_eq!((token.token.expose(), token.version), ("at-2-shared", 2));
    assert_eq!(h.lock_calls("try_acquire"), 0);
    assert_eq!(h.repo_gets(), 0, "a shared-cache hit reads no account");

    // Shared cache newer than the snapshot: served as well.
    h.put_shared(&k2, "at-2-newer", 3, Duration::from_secs(600))
        .await;
    let token = h
        .provider(&[Platform::Anthropic])
        .access_token(&two)
        .await
        .expect("shared hit");
    assert_eq!((token.token.expose(), token.version), ("at-2-newer", 3));
    assert_eq!(h.lock_calls("try_acquire"), 0);
    assert_eq!(h.repo_gets(), 0);

    // Shared cache older than the snapshot: not trusted, the account is read.
    h.put_shared(
        &key(&Platform::Anthropic, 3),
        "at-3-older",
        1,
        Duration::from_secs(600),
    )
    .await;
    let token = h
        .provider(&[Platform::Anthropic])
        .access_token(&three)
        .await
        .expect("stored token");
    assert_eq!((token.token.expose(), token.version), ("at-3-0", 2));
    assert_eq!(
        h.repo_gets(),
        1,
        "an older shared entry falls through to the repository"
    );
    assert_eq!(
        h.lock_calls("try_acquire"),
        0,
        "a fresh token needs no lock"
    );
}

/// The sidecar's read by id: the first read resolves through the store (and
/// refreshes a due token); every later read is served from process memory,
/// touching neither the repository, the shared cache, the lock nor the
/// upstream, until the token enters the skew; an unknown id is a typed
/// error; a refresh elsewhere in this process invalidates the entry.
#[tokio::test(start_paused = true)]
async fn getter_by_id_warm_reads_touch_no_storage() {
    let due = oauth_account(1, Platform::Anthropic, 60);
    let h = Harness::new([due.clone()]);
    let provider = h.provider(&[Platform::Anthropic]);

    let first = provider
        .access_token_by_id(AccountId(1))
        .await
        .expect("refreshed on the first read");
    assert_eq!((first.token.expose(), first.version), ("at-1-1", 1));
    let counts = |h: &Harness| {
        (
            h.repo_gets(),
            h.cache_calls("get"),
            h.lock_calls("try_acquire"),
            h.upstream.calls(),
        )
    };
    let before = counts(&h);
    for _ in 0..100 {
        let warm = provider
            .access_token_by_id(AccountId(1))
            .await
            .expect("warm");
        assert_eq!(warm, first);
    }
    assert_eq!(counts(&h), before, "warm reads touch nothing but memory");

    // The token enters the 3-minute skew: the entry lapses, the next read
    // goes to the store and refreshes.
    let left = first.expires_at.expect("an expiry") - in_secs(0);
    tokio::time::advance(left.to_std().unwrap() - Duration::from_secs(170)).await;
    let refreshed = provider
        .access_token_by_id(AccountId(1))
        .await
        .expect("refreshed");
    assert_eq!(refreshed.version, 2);
    assert_eq!(h.upstream.calls(), 2);

    let error = provider
        .access_token_by_id(AccountId(404))
        .await
        .expect_err("no such account");
    assert!(
        matches!(error, TokenError::UnknownAccount { id } if id == AccountId(404)),
        "{error:?}"
    );
    assert!(!error.is_retryable());

    // A failing read is a storage error naming the account, not a panic.
    h.repo
        .faults
        .fail_next("get", 1, StorageErrorKind::Unavailable);
    let error = provider
        .access_token_by_id(AccountId(405))
        .await
        .expect_err("unreadable");
    assert!(
        matches!(error, TokenError::Storage { id, .. } if id == AccountId(405)),
        "{error:?}"
    );
}

/// An account that is not active is neither served nor refreshed: a read
/// by id of a disabled or error account (due, so the old code refreshed
/// it) is the typed `Inactive` naming its status, the upstream is never
/// called; a caller holding an active snapshot of an account disabled
/// since gets the same answer from the stored account.
#[tokio::test(start_paused = true)]
async fn inactive_accounts_are_refused_typed_and_never_refreshed() {
    let mut disabled = oauth_account(1, Platform::Anthropic, 60);
    disabled.status = refresh_core::AccountStatus::Disabled;
    let mut failed = oauth_account(2, Platform::Anthropic, 60);
    failed.status = refresh_core::AccountStatus::Error;
    let h = Harness::new([disabled.clone(), failed]);
    let provider = h.provider(&[Platform::Anthropic]);
    for (id, status) in [
        (1, refresh_core::AccountStatus::Disabled),
        (2, refresh_core::AccountStatus::Error),
    ] {
        let error = provider
            .access_token_by_id(AccountId(id))
            .await
            .expect_err("an inactive account");
        assert!(
            matches!(error, TokenError::Inactive { id: i, status: s } if i == AccountId(id) && s == status),
            "{error:?}"
        );
        assert!(!error.is_retryable());
        assert!(error.to_string().contains(status.as_str()), "{error}");
    }
    let snapshot = refresh_core::Account {
        status: refresh_core::AccountStatus::Active,
        ..disabled
    };
    let error = provider
        .access_token(&snapshot)
        .await
        .expect_err("disabled in the store since the snapshot");
    assert!(matches!(error, TokenError::Inactive { .. }), "{error:?}");
    assert_eq!(h.upstream.calls(), 0, "nothing was refreshed");
    assert_eq!(h.lock_calls("try_acquire"), 0, "no lease was taken");
}

/// A stampede of cold reads by id on one account costs one read of the
/// account (plus the resolution's own), not one per caller: N callers
/// reading the database each would starve the pool the refresh needs.
#[tokio::test(start_paused = true)]
async fn getter_by_id_cold_stampede_reads_the_account_once() {
    let due = oauth_account(1, Platform::Anthropic, 60);
    let h = Harness::new([due]);
    h.upstream.hold_responses();
    let provider = h.provider(&[Platform::Anthropic]);
    let callers: Vec<_> = (0..100)
        .map(|_| {
            let provider = provider.clone();
            tokio::spawn(async move { provider.access_token_by_id(AccountId(1)).await })
        })
        .collect();
    h.upstream.wait_for_calls(1).await;
    h.upstream.release(1);
    for caller in callers {
        let token = caller.await.expect("task").expect("a token");
        assert_eq!(token.version, 1, "every caller gets the new token");
    }
    assert!(
        h.repo_gets() <= 4,
        "one read for the stampede, plus the flow's own: {}",
        h.repo_gets()
    );
    assert_eq!(h.upstream.calls(), 1);
}

/// REFERENCE §12 Getters: "A blank or missing token is an error".
#[tokio::test(start_paused = true)]
async fn getter_blank_or_missing_token_is_an_error() {
    // A future expiry: the shared predicate treats an unknown expiry as due,
    // and these accounts must not be refreshed.
    let missing = Account::oauth(
        1,
        Platform::Anthropic,
        Credentials::new()
            .with("refresh_token", "rt-1-0")
            .with("expires_at", (T0 + 3600).to_string()),
    );
    let blank = Account::oauth(
        2,
        Platform::OpenAi,
        Credentials::new()
            .with("access_token", "   ")
            .with("refresh_token", "rt-2-0")
            .with("expires_at", (T0 + 3600).to_string()),
    );
    let h = Harness::new([missing.clone(), blank.clone()]);
    let provider = h.provider(&[Platform::Anthropic, Platform::OpenAi]);

    let err = provider
        .access_token(&missing)
        .await
        .expect_err("no access token");
    assert!(
        matches!(err, TokenError::MissingAccessToken { id } if id == AccountId(1)),
        "{err:?}"
    );
    let err = provider
        .access_token(&blank)
        .await
        .expect_err("blank access token");
    assert!(
        matches!(err, TokenError::MissingAccessToken { id } if id == AccountId(2)),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert_eq!(
        h.upstream.calls(),
        0,
        "a token that is not due is never refreshed"
    );
    assert_eq!(h.lock_calls("try_acquire"), 0);
    assert_eq!(h.cache_calls("put"), 0, "nothing is cached");
}

/// What a caller saw while the lease was held elsewhere.
struct WaitObservation {
    token: Result<refresh_core::AccessToken, TokenError>,
    elapsed: Duration,
    shared_gets_while_waiting: u64,
    metrics: MetricsSnapshot,
    upstream_calls: u64,
}

/// The lease is held by another process and the token expires within the
/// 3-minute skew but is still valid: the caller waits per its policy.
async fn wait_while_lease_held(platform: Platform) -> WaitObservation {
    let snapshot = oauth_account(7, platform.clone(), 120);
    let h = Harness::new([snapshot.clone()]);
    let provider = h.provider(std::slice::from_ref(&platform));
    let _lease = h.hold(&key(&platform, 7)).await;

    let started = Instant::now();
    let token = provider.access_token(&snapshot).await;
    let elapsed = started.elapsed();
    WaitObservation {
        token,
        elapsed,
        // One shared-cache read precedes the refresh attempt; the rest are
        // the wait's polls.
        shared_gets_while_waiting: h.cache_calls("get") - 1,
        metrics: metrics(&provider, &platform),
        upstream_calls: h.upstream.calls(),
    }
}

fn assert_waited_then_served_stored_token(seen: &WaitObservation) {
    let token = seen.token.as_ref().expect("the still-valid stored token");
    assert_eq!(token.token.expose(), "at-7-0");
    assert_eq!(token.version, 0);
    assert!(
        token.expires_at.is_some_and(|at| at > in_secs(0)),
        "never an expired token"
    );
    assert_eq!(
        seen.upstream_calls, 0,
        "the holder elsewhere refreshes, not this caller"
    );
    assert_eq!(seen.metrics.lock_contention, 1);
    assert_eq!(seen.metrics.lock_wait_samples, 1);
    assert_eq!(seen.metrics.lock_wait_misses, 1, "no newer token appeared");
    assert_eq!(seen.metrics.lock_wait_hits, 0);
    assert_eq!(seen.metrics.refresh_requests, 1);
}

/// REFERENCE §5.3 / §12 Getters: "Claude waits once".
#[tokio::test(start_paused = true)]
async fn getter_claude_waits_once() {
    let seen = wait_while_lease_held(Platform::Anthropic).await;
    assert_eq!(
        seen.shared_gets_while_waiting, 1,
        "Claude polls the cache exactly once"
    );
    assert!(
        seen.elapsed >= Duration::from_millis(200) && seen.elapsed < Duration::from_millis(210),
        "one 200 ms wait without jitter, then a re-read: {:?}",
        seen.elapsed
    );
    assert_waited_then_served_stored_token(&seen);
}

/// REFERENCE §5.3 / §12 Getters: "OpenAI polls with backoff".
#[tokio::test(start_paused = true)]
async fn getter_openai_polls_with_backoff() {
    let seen = wait_while_lease_held(Platform::OpenAi).await;
    assert_eq!(
        seen.shared_gets_while_waiting, 5,
        "OpenAI polls the cache five times"
    );
    // 20 + 40 + 80 + 120 + 120 = 380 ms, each wait jittered by ±20 %.
    assert!(
        seen.elapsed >= Duration::from_millis(300) && seen.elapsed <= Duration::from_millis(470),
        "backoff schedule of about 380 ms: {:?}",
        seen.elapsed
    );
    assert!(seen.metrics.lock_wait_total_ms >= 300, "{:?}", seen.metrics);
    assert_waited_then_served_stored_token(&seen);
}

/// REFERENCE §12 Getters: "Cancellation during the wait returns the
/// cancellation error, and the metrics are counted".
#[tokio::test(start_paused = true)]
async fn getter_cancellation_during_wait_returns_cancelled_and_counts_metrics() {
    let snapshot = oauth_account(3, Platform::OpenAi, 120);
    let h = Harness::new([snapshot.clone()]);
    let provider = h.provider(&[Platform::OpenAi]);
    let _lease = h.hold(&key(&Platform::OpenAi, 3)).await;

    let cancel = CancellationToken::new();
    let started = Instant::now();
    let caller = tokio::spawn({
        let (provider, cancel) = (provider.clone(), cancel.clone());
        async move { provider.access_token_with_cancel(&snapshot, &cancel).await }
    });
    // The caller subscribes to the notification when it starts waiting.
    h.cache
        .faults
        .wait_for_calls("subscribe_refreshed", 1)
        .await;
    cancel.cancel();
    let result = caller.await.expect("caller task");

    assert!(
        matches!(result, Err(TokenError::Cancelled { id }) if id == AccountId(3)),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(20),
        "cancellation is prompt"
    );
    let seen = metrics(&provider, &Platform::OpenAi);
    assert_eq!(seen.cancellations, 1, "{seen:?}");
    assert!(seen.lock_contention >= 1, "{seen:?}");
    assert!(seen.last_observation_unix_ms > 0);
    assert_eq!(h.upstream.calls(), 0);
}

/// An Antigravity executor that serves `upstream` accounts their static
/// `api_key`, as a plugin would.
#[derive(Default)]
struct AntigravityStaticKeys {
    refreshes: AtomicU64,
}

#[async_trait]
impl RefreshExecutor for AntigravityStaticKeys {
    fn platform(&self) -> Platform {
        Platform::Antigravity
    }

    fn static_token(&self, account: &Account) -> Option<Secret> {
        (account.account_type == AccountType::Upstream)
            .then(|| Secret::new(account.credentials.string_view("api_key")))
    }

    async fn refresh(
        &self,
        _account: &Account,
        _ctx: &RefreshContext,
    ) -> Result<Credentials, ProviderError> {
        self.refreshes.fetch_add(1, Ordering::SeqCst);
        Err(ProviderError::Configuration {
            reason: "not used by these tests".into(),
        })
    }
}

/// REFERENCE §5.1 / §12 Getters: "An Antigravity upstream account returns
/// its api_key".
#[tokio::test(start_paused = true)]
async fn getter_antigravity_upstream_account_returns_api_key() {
    let upstream_account = |id: i64, credentials: Credentials| {
        let mut account = Account::new(
            id,
            Platform::Antigravity,
            AccountType::Upstream,
            credentials,
        );
        account.credentials_version = 4;
        account
    };
    let with_key = upstream_account(1, Credentials::new().with("api_key", "sk-ag-upstream-1"));
    let blank_key = upstream_account(2, Credentials::new().with("api_key", "  "));
    let no_key = upstream_account(3, Credentials::new());
    let api_key_type = Account::new(
        4,
        Platform::Antigravity,
        AccountType::ApiKey,
        Credentials::new().with("api_key", "sk-4"),
    );
    let h = Harness::new([]);
    let executor = Arc::new(AntigravityStaticKeys::default());
    let provider = TokenProvider::builder(
        h.notifying_process(),
        ExecutorRegistry::new().with(executor.clone()),
    )
    .shared_cache(h.cache.clone())
    .build();

    let token = provider.access_token(&with_key).await.expect("the api_key");
    assert_eq!(token.token.expose(), "sk-ag-upstream-1");
    assert_eq!(token.account_id, AccountId(1));
    assert_eq!(token.expires_at, None);
    assert_eq!(token.version, 4);

    for account in [&blank_key, &no_key] {
        let err = provider
            .access_token(account)
            .await
            .expect_err("blank api_key");
        assert!(
            matches!(err, TokenError::MissingAccessToken { id } if id == account.id),
            "{err:?}"
        );
    }
    let err = provider
        .access_token(&api_key_type)
        .await
        .expect_err("other Antigravity type");
    assert!(
        matches!(
            err,
            TokenError::NotEligible {
                account_type: AccountType::ApiKey,
                ..
            }
        ),
        "{err:?}"
    );

    assert_eq!(
        executor.refreshes.load(Ordering::SeqCst),
        0,
        "static tokens are never refreshed"
    );
    assert_eq!(h.repo_gets(), 0, "no account read");
    assert_eq!(h.lock_calls("try_acquire"), 0, "no lock");
    assert_eq!(h.cache_calls("get") + h.cache_calls("put"), 0, "no cache");
}

/// REFERENCE §5.1 / §12 Getters: "A wrong platform or type is rejected".
#[tokio::test(start_paused = true)]
async fn getter_wrong_platform_or_type_is_rejected() {
    let openai = oauth_account(1, Platform::OpenAi, 3600);
    let plugin = oauth_account(2, Platform::Other("acme".into()), 3600);
    let bedrock = Account::new(
        3,
        Platform::Anthropic,
        AccountType::Bedrock,
        Credentials::new().with("access_token", "at-3-0"),
    );
    let setup_token = Account::new(
        4,
        Platform::Anthropic,
        AccountType::SetupToken,
        Credentials::new().with("access_token", "at-4-0"),
    );
    let h = Harness::new([
        openai.clone(),
        plugin.clone(),
        bedrock.clone(),
        setup_token.clone(),
    ]);
    let provider = h.provider(&[Platform::Anthropic]);

    let err = provider
        .access_token(&openai)
        .await
        .expect_err("no OpenAI executor");
    assert!(
        matches!(&err, TokenError::UnsupportedPlatform { platform } if *platform == Platform::OpenAi),
        "{err:?}"
    );
    let err = provider
        .access_token(&plugin)
        .await
        .expect_err("no plugin executor");
    assert!(
        matches!(err, TokenError::UnsupportedPlatform { .. }),
        "{err:?}"
    );
    let err = provider
        .access_token(&bedrock)
        .await
        .expect_err("wrong type");
    assert!(
        matches!(
            &err,
            TokenError::NotEligible { id, platform, account_type: AccountType::Bedrock }
                if *id == AccountId(3) && *platform == Platform::Anthropic
        ),
        "{err:?}"
    );
    // The executor serves no static token for setup-token accounts.
    let err = provider
        .access_token(&setup_token)
        .await
        .expect_err("no static token");
    assert!(
        matches!(
            err,
            TokenError::NotEligible {
                account_type: AccountType::SetupToken,
                ..
            }
        ),
        "{err:?}"
    );

    assert_eq!(h.upstream.calls(), 0);
    assert_eq!(h.repo_gets(), 0);
    assert_eq!(h.lock_calls("try_acquire"), 0);
}

/// REFERENCE §4 and defect 12: "use existing token" only while it is still
/// valid; "return error" fails the request. The failure is one that left
/// the refresh token usable (the request never left), so the refresh is
/// tried again once the failure TTL lapses.
#[tokio::test(start_paused = true)]
async fn getter_refresh_error_policy() {
    let not_sent = || ProviderError::NotSent {
        reason: "connect refused".into(),
    };

    // Claude and OpenAI (UseExistingToken) serve the still-valid token;
    // Gemini and Antigravity (ReturnError) fail.
    for (platform, uses_existing) in [
        (Platform::Anthropic, true),
        (Platform::OpenAi, true),
        (Platform::Gemini, false),
        (Platform::Antigravity, false),
    ] {
        let snapshot = oauth_account(1, platform.clone(), 120);
        let h = Harness::new([snapshot.clone()]);
        let provider = h.provider(std::slice::from_ref(&platform));
        h.upstream.fail_next(not_sent());

        let result = provider.access_token(&snapshot).await;
        assert_eq!(h.upstream.calls(), 1, "{platform}: one refresh attempt");
        assert_eq!(
            metrics(&provider, &platform).refresh_failures,
            1,
            "{platform}"
        );
        if uses_existing {
            let token =
                result.unwrap_or_else(|e| panic!("{platform}: existing token expected, got {e:?}"));
            assert_eq!(
                (token.token.expose(), token.version),
                ("at-1-0", 0),
                "{platform}"
            );
        } else {
            let err = result.expect_err("ReturnError policy");
            assert!(
                matches!(
                    &err,
                    TokenError::Refresh {
                        source: FlowError::Upstream { .. },
                        ..
                    }
                ),
                "{platform}: {err:?}"
            );
        }
        let stored = h.stored(1).await;
        assert_eq!(
            stored.credentials_version, 0,
            "{platform}: nothing persisted"
        );
    }

    // The existing token served after a failure is cached for the failure
    // TTL (1 min) only; then the refresh is tried again.
    let snapshot = oauth_account(2, Platform::Anthropic, 120);
    let h = Harness::new([snapshot.clone()]);
    let provider = h.provider(&[Platform::Anthropic]);
    h.upstream.fail_next(not_sent());
    assert_eq!(
        provider
            .access_token(&snapshot)
            .await
            .expect("existing")
            .token
            .expose(),
        "at-2-0"
    );
    tokio::time::advance(Duration::from_secs(59)).await;
    assert_eq!(
        provider
            .access_token(&snapshot)
            .await
            .expect("cached")
            .token
            .expose(),
        "at-2-0"
    );
    assert_eq!(h.upstream.calls(), 1, "served from the failure-TTL cache");
    tokio::time::advance(Duration::from_secs(2)).await;
    let token = provider.access_token(&snapshot).await.expect("refreshed");
    assert_eq!((token.token.expose(), token.version), ("at-2-1", 1));
    assert_eq!(h.upstream.calls(), 2);

    // Defect 12: once the existing token has expired, even Claude fails.
    let expired = oauth_account(3, Platform::Anthropic, -10);
    let h = Harness::new([expired.clone()]);
    let provider = h.provider(&[Platform::Anthropic]);
    h.upstream.fail_next(not_sent());
    let err = provider
        .access_token(&expired)
        .await
        .expect_err("no valid token left");
    assert!(
        matches!(
            &err,
            TokenError::Refresh {
                source: FlowError::Upstream { .. },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        h.cached(&key(&Platform::Anthropic, 3)).await.is_none(),
        "the expired token is not cached"
    );
}

/// Issue 5, step 7: a generation quarantined by another process (its 5xx
/// after the upstream rotated may have consumed the token) makes the getter
/// fail fast with `Quarantined { until }` instead of waiting out its wait
/// timeout: no subscription, no poll, no upstream call. The platform policy
/// still applies: Claude serves a still-valid existing token, Gemini
/// returns the error.
#[tokio::test(start_paused = true)]
async fn getter_quarantined_refresh_fails_fast_without_waiting() {
    let expired = oauth_account(1, Platform::Anthropic, -60);
    let valid = oauth_account(2, Platform::Anthropic, 120);
    let gemini = oauth_account(3, Platform::Gemini, 120);
    let accounts = [expired.clone(), valid.clone(), gemini.clone()];
    let platforms = [Platform::Anthropic, Platform::Gemini];
    let h = Harness::new(accounts.clone());
    let quarantine = h.notifying_process().config().quarantine;

    // Process A: each refresh meets a 5xx after the upstream rotated.
    let a = h.provider(&platforms);
    for account in &accounts {
        h.upstream
            .fail_after_rotation_next(ProviderError::ServerError {
                status: Some(502),
                reason: "upstream status 502".into(),
            });
        let result = a.access_token(account).await;
        if account.id == AccountId(2) {
            assert_eq!(result.expect("existing token").token.expose(), "at-2-0");
        } else {
            let err = result.expect_err("no token for A");
            assert!(
                matches!(
                    &err,
                    TokenError::Refresh {
                        source: FlowError::Upstream {
                            source: ProviderError::ServerError { .. },
                            ..
                        },
                        ..
                    }
                ),
                "{err:?}"
            );
        }
    }
    assert_eq!(h.upstream.calls(), 3);
    for account in &accounts {
        assert_eq!(
            h.claims
                .inner()
                .claims_of(account.id, ClaimState::Quarantined)
                .len(),
            1,
            "account {}",
            account.id
        );
    }

    // Process B: fails fast on each.
    let b = h.provider(&platforms);
    let subscriptions = h.cache_calls("subscribe_refreshed");
    for account in [&expired, &gemini] {
        let started = Instant::now();
        let err = b.access_token(account).await.expect_err("quarantined");
        assert_eq!(started.elapsed(), Duration::ZERO, "no wait: {err:?}");
        let TokenError::Refresh {
            id,
            source: FlowError::Quarantined { until, .. },
        } = &err
        else {
            panic!("expected Refresh(Quarantined), got {err:?}");
        };
        assert_eq!(*id, account.id);
        assert_eq!(
            *until,
            in_secs(i64::try_from(quarantine.as_secs()).expect("small")),
            "the quarantine ends one quarantine after the 5xx"
        );
        assert!(!err.is_retryable(), "{err:?}");
    }
    let started = Instant::now();
    let token = b.access_token(&valid).await.expect("existing token");
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!((token.token.expose(), token.version), ("at-2-0", 0));
    assert_eq!(
        h.cache_calls("subscribe_refreshed"),
        subscriptions,
        "nobody waited for a refresh held elsewhere"
    );
    let seen = metrics(&b, &Platform::Anthropic);
    assert_eq!(
        (
            seen.refresh_failures,
            seen.lock_contention,
            seen.lock_wait_samples
        ),
        (2, 0, 0),
        "{seen:?}"
    );
    assert_eq!(
        (h.upstream.calls(), h.upstream.reuses()),
        (3, 0),
        "no token presented again"
    );
}

/// Issue 5, step 7, for a caller already waiting: the holder's call hangs
/// past its hard deadline, is aborted and quarantines the generation. The
/// waiter in another process notices the quarantine at its next poll and
/// fails fast with `Quarantined` instead of waiting out `max_wait` for a
/// refresh that cannot come; the token is never presented twice.
#[tokio::test(start_paused = true)]
async fn getter_waiter_fails_fast_when_the_holder_quarantines() {
    let platform = Platform::Anthropic;
    let expired = oauth_account(1, platform.clone(), -60);
    let h = Harness::new([expired.clone()]);
    h.upstream.hold_responses();
    let config = short_upstream_timeout();
    let a = h.provider_with(std::slice::from_ref(&platform), config.clone());
    let b = h.provider_with(std::slice::from_ref(&platform), config.clone());

    let started = Instant::now();
    let a_caller = spawn_access_token(&a, &expired);
    h.upstream.wait_for_calls(1).await;
    let b_caller = spawn_access_token(&b, &expired);
    h.cache
        .faults
        .wait_for_calls("subscribe_refreshed", 1)
        .await;

    let a_err = a_caller
        .await
        .expect("a task")
        .expect_err("A's call was aborted");
    assert!(
        matches!(
            &a_err,
            TokenError::Refresh {
                source: FlowError::Upstream {
                    source: ProviderError::Ambiguous { .. },
                    ..
                },
                ..
            }
        ),
        "{a_err:?}"
    );
    let b_err = b_caller.await.expect("b task").expect_err("B fails fast");
    let b_elapsed = started.elapsed();
    assert!(
        matches!(
            &b_err,
            TokenError::Refresh {
                source: FlowError::Quarantined { .. },
                ..
            }
        ),
        "{b_err:?}"
    );
    let max_wait = ProviderRefreshPolicy::for_platform(&platform).wait.max_wait;
    assert!(
        b_elapsed >= config.upstream_timeout
            && b_elapsed < config.upstream_timeout + Duration::from_secs(1),
        "B stopped at its first poll after the quarantine, not after {max_wait:?}: {b_elapsed:?}"
    );
    assert_eq!((h.upstream.calls(), h.upstream.reuses()), (1, 0));
    assert_eq!(
        h.claims
            .inner()
            .claims_of(AccountId(1), ClaimState::Quarantined)
            .len(),
        1
    );
    assert_eq!(metrics(&b, &platform).lock_wait_misses, 1);
}

/// REFERENCE §12 Refresh operation "Persist fails", on the request path
/// (issue 5, step 8): the upstream issued a token that could not be stored.
/// It is the newest token there is, so the getter serves it (in-process
/// only, never in the shared cache) while the answer waits in the
/// generation claim; another process applies the claim's answer rather
/// than calling the upstream; once the repository heals the answer is
/// stored, still with a single upstream call.
#[tokio::test(start_paused = true)]
async fn getter_serves_the_issued_token_when_it_is_not_persisted() {
    let expired = oauth_account(1, Platform::Anthropic, -60);
    let h = Harness::new([expired.clone()]);
    h.fail_writes();

    let a = h.provider(&[Platform::Anthropic]);
    let token = a.access_token(&expired).await.expect("the issued token");
    assert_eq!(token.token.expose(), "at-1-1");
    assert_eq!(h.upstream.calls(), 1);
    assert_eq!(h.cache_calls("put"), 0, "an unstored token is not shared");
    assert_eq!(
        h.claims
            .inner()
            .claims_of(AccountId(1), ClaimState::Answered)
            .len(),
        1,
        "the answer waits in the claim"
    );
    let again = a.access_token(&expired).await.expect("in-process copy");
    assert_eq!(again.token.expose(), "at-1-1");

    // Another process, while the writes still fail: the claim's answer.
    let b = h.provider(&[Platform::Anthropic]);
    let token = b.access_token(&expired).await.expect("the claim's answer");
    assert_eq!(token.token.expose(), "at-1-1");
    assert_eq!(h.upstream.calls(), 1, "applied from the claim, no new call");
    assert_eq!(h.stored(1).await.credentials_version, 0);

    // The repository heals: a third process stores the answer.
    h.repo.faults.heal();
    let c = h.provider(&[Platform::Anthropic]);
    let token = c.access_token(&expired).await.expect("stored token");
    assert_eq!((token.token.expose(), token.version), ("at-1-1", 1));
    let stored = h.stored(1).await;
    assert_eq!(stored.credentials_version, 1);
    assert_eq!(
        refresh_token_of(&stored),
        h.upstream.current_refresh_token(AccountId(1))
    );
    assert_eq!(
        (h.upstream.calls(), h.upstream.reuses()),
        (1, 0),
        "one upstream call in all"
    );
    assert_eq!(
        h.claims
            .inner()
            .claims_of(AccountId(1), ClaimState::Consumed)
            .len(),
        1
    );
}

/// As above when the claim store cannot take the answer either
/// (`NotPersisted { answer_saved: false }`): the getter still serves the
/// issued token; the holder keeps the lease while it rescues the answer, so
/// a getter in another process waits (it does not present the consumed
/// token) and gets the new token once the rescue lands.
#[tokio::test(start_paused = true)]
async fn getter_serves_the_issued_token_when_neither_store_takes_it() {
    let expired = oauth_account(1, Platform::Anthropic, -60);
    let h = Harness::new([expired.clone()]);
    h.fail_writes();
    h.claims
        .faults
        .fail_always("save_answer", StorageErrorKind::Unavailable);

    let a = h.provider(&[Platform::Anthropic]);
    let token = a.access_token(&expired).await.expect("the issued token");
    assert_eq!(token.token.expose(), "at-1-1");
    assert_eq!(h.upstream.calls(), 1);
    assert!(
        !h.lease_is_free(&key(&Platform::Anthropic, 1)).await,
        "the rescue keeps the lease"
    );

    let b = h.provider(&[Platform::Anthropic]);
    let waiter = spawn_access_token(&b, &expired);
    h.cache
        .faults
        .wait_for_calls("subscribe_refreshed", 1)
        .await;
    assert!(!waiter.is_finished());
    h.repo.faults.heal();
    let token = waiter
        .await
        .expect("waiter task")
        .expect("the rescued token");
    assert_eq!((token.token.expose(), token.version), ("at-1-1", 1));
    assert_eq!(h.stored(1).await.credentials_version, 1);
    assert_eq!((h.upstream.calls(), h.upstream.reuses()), (1, 0));
}

/// REFERENCE §3.7 and defect 11: a stale snapshot never replaces a newer
/// token, neither in the answer nor in the shared cache.
#[tokio::test(start_paused = true)]
async fn getter_stale_snapshot_never_overwrites_newer_cached_token() {
    let mut stored = oauth_account(1, Platform::OpenAi, 3600);
    stored.credentials.insert("access_token", "at-1-v3");
    stored.credentials_version = 3;
    let mut snapshot = oauth_account(1, Platform::OpenAi, 3000);
    snapshot.credentials.insert("access_token", "at-1-v1");
    snapshot.credentials_version = 1;
    let h = Harness::new([stored]);
    let k = key(&Platform::OpenAi, 1);

    // The caller's old snapshot: the repository's newer version wins.
    let provider = h.provider(&[Platform::OpenAi]);
    let token = provider.access_token(&snapshot).await.expect("token");
    assert_eq!((token.token.expose(), token.version), ("at-1-v3", 3));
    let cached = h.cached(&k).await.expect("cached");
    assert_eq!(
        (cached.access_token.expose(), cached.version),
        ("at-1-v3", 3)
    );
    assert_eq!(h.lock_calls("try_acquire"), 0);

    // Another process with the same old snapshot whose shared-cache read and
    // account read both fail falls back to the snapshot's still-valid token,
    // which it keeps in its own cache only: it cannot tell it is not the
    // newest, so it never writes it to the shared cache.
    h.cache
        .faults
        .fail_next("get", 1, StorageErrorKind::Unavailable);
    h.repo
        .faults
        .fail_next("get", 1, StorageErrorKind::Unavailable);
    let other = h.provider(&[Platform::OpenAi]);
    let token = other.access_token(&snapshot).await.expect("snapshot token");
    assert_eq!(token.version, 1);
    assert_eq!(
        h.cache_calls("put"),
        1,
        "an unverified token is not written to the shared cache"
    );
    let cached = h.cached(&k).await.expect("still cached");
    assert_eq!(
        (cached.access_token.expose(), cached.version),
        ("at-1-v3", 3),
        "version 3 is not replaced by version 1"
    );

    // The guard itself: an older put is superseded, an equal or newer one is
    // stored.
    let outcome = h
        .put_shared(&k, "at-1-v2", 2, Duration::from_secs(60))
        .await;
    assert_eq!(outcome, PutOutcome::Superseded { cached_version: 3 });
    let outcome = h
        .put_shared(&k, "at-1-v4", 4, Duration::from_secs(60))
        .await;
    assert_eq!(outcome, PutOutcome::Stored);
    // A third process with the old snapshot now gets version 4 from the
    // shared cache.
    let token = h
        .provider(&[Platform::OpenAi])
        .access_token(&snapshot)
        .await
        .expect("token");
    assert_eq!((token.token.expose(), token.version), ("at-1-v4", 4));
}

/// `local_max_age` caps the in-process layer whatever the token's expiry:
/// after it, the next read goes past process memory (here to the shared
/// cache), so a change made by another process is seen within that bound.
#[tokio::test(start_paused = true)]
async fn the_in_process_layer_is_read_again_after_local_max_age() {
    let snapshot = oauth_account(1, Platform::Gemini, 3600);
    let h = Harness::new([snapshot.clone()]);
    let provider = TokenProvider::builder(h.notifying_process(), h.registry(&[Platform::Gemini]))
        .shared_cache(h.cache.clone())
        .local_max_age(Duration::from_secs(30))
        .build();
    provider.access_token(&snapshot).await.expect("token");
    let gets = h.cache_calls("get");
    tokio::time::advance(Duration::from_secs(29)).await;
    provider.access_token(&snapshot).await.expect("hit");
    assert_eq!(
        h.cache_calls("get"),
        gets,
        "within the max age: process memory"
    );
    tokio::time::advance(Duration::from_secs(2)).await;
    provider.access_token(&snapshot).await.expect("re-read");
    assert_eq!(
        h.cache_calls("get"),
        gets + 1,
        "past the max age: read again"
    );
}

/// REFERENCE §5.2: a token with more than 5 min left is cached for the time
/// left minus 5 min.
#[tokio::test(start_paused = true)]
async fn getter_cache_ttl_follows_reference() {
    let snapshot = oauth_account(1, Platform::Gemini, 3600);
    let h = Harness::new([snapshot.clone()]);
    let provider = h.provider(&[Platform::Gemini]);

    let token = provider.access_token(&snapshot).await.expect("token");
    assert_eq!(token.token.expose(), "at-1-0");
    assert_eq!(h.repo_gets(), 1);
    let shared_gets = h.cache_calls("get");

    // TTL = 60 min − 5 min = 55 min.
    tokio::time::advance(Duration::from_secs(55 * 60 - 1)).await;
    assert_eq!(
        provider
            .access_token(&snapshot)
            .await
            .expect("hit")
            .token
            .expose(),
        "at-1-0"
    );
    assert_eq!(h.repo_gets(), 1, "still within the TTL: in-process hit");
    assert_eq!(h.cache_calls("get"), shared_gets);

    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(
        provider
            .access_token(&snapshot)
            .await
            .expect("miss")
            .token
            .expose(),
        "at-1-0"
    );
    assert_eq!(h.repo_gets(), 2, "past the TTL: the account is read again");
    assert_eq!(
        h.cache_calls("get"),
        shared_gets + 1,
        "the shared entry expired with the same TTL"
    );
    assert_eq!(
        h.upstream.calls(),
        0,
        "4m59s left is outside the 3-min skew"
    );
}

// ---------------------------------------------------------------------------
// Invariant 8: waiters get the new token
// ---------------------------------------------------------------------------

/// DESIGN invariant 8: a caller that finds the refresh held by another
/// process waits for it and returns the new token: through the "refreshed"
/// notification before any poll, through re-reads when there is no
/// notification, and never an expired token when the holder never finishes.
#[tokio::test(start_paused = true)]
async fn invariant_8_waiter_gets_new_token_via_notification() {
    let platform = Platform::Anthropic;
    let expired = oauth_account(1, platform.clone(), -60);

    // 1. Notification path.
    let h = Harness::new([expired.clone()]);
    h.upstream.hold_responses();
    let a = h.provider(std::slice::from_ref(&platform));
    let b = h.provider(std::slice::from_ref(&platform));
    let a_caller = spawn_access_token(&a, &expired);
    h.upstream.wait_for_calls(1).await;
    let b_started = Instant::now();
    let b_caller = spawn_access_token(&b, &expired);
    h.cache
        .faults
        .wait_for_calls("subscribe_refreshed", 1)
        .await;
    let gets_when_waiting = h.cache_calls("get");
    h.upstream.release(1);

    let b_token = b_caller.await.expect("b task").expect("B gets a token");
    let b_elapsed = b_started.elapsed();
    let a_token = a_caller.await.expect("a task").expect("A gets a token");
    assert_eq!((a_token.token.expose(), a_token.version), ("at-1-1", 1));
    assert_eq!(
        (b_token.token.expose(), b_token.version),
        ("at-1-1", 1),
        "the waiter gets the NEW token"
    );
    assert!(
        b_elapsed < Duration::from_millis(200),
        "woken before the 200 ms poll: {b_elapsed:?}"
    );
    assert_eq!(
        h.cache_calls("get"),
        gets_when_waiting + 1,
        "one lookup on the notification (the holder cached its token before \
         publishing), no cache poll"
    );
    assert_eq!(h.upstream.successes(), 1);
    assert_eq!(h.upstream.reuses(), 0);
    let seen = metrics(&b, &platform);
    assert_eq!(
        (
            seen.lock_contention,
            seen.lock_wait_hits,
            seen.lock_wait_misses
        ),
        (1, 1, 0)
    );

    // 2. No notification (B has no shared cache): B keeps re-reading within
    //    LockWait::max_wait and gets the new token once A has persisted it.
    let h = Harness::new([expired.clone()]);
    h.upstream.hold_responses();
    let a = h.provider(std::slice::from_ref(&platform));
    let b = h.provider_without_shared_cache(std::slice::from_ref(&platform));
    let a_caller = spawn_access_token(&a, &expired);
    h.upstream.wait_for_calls(1).await;
    let b_started = Instant::now();
    let b_caller = spawn_access_token(&b, &expired);
    h.lock.faults.wait_for_calls("try_acquire", 2).await;
    // Paused time: B's polls run while A's upstream answer is held.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !b_caller.is_finished(),
        "B must not return the expired token"
    );
    assert!(h.repo_gets() >= 4, "B re-read the account while waiting");
    h.upstream.release(1);

    let b_token = b_caller.await.expect("b task").expect("B gets a token");
    let b_elapsed = b_started.elapsed();
    assert_eq!((b_token.token.expose(), b_token.version), ("at-1-1", 1));
    assert!(
        b_elapsed >= Duration::from_secs(2) && b_elapsed < Duration::from_millis(2300),
        "the next re-read after the release finds it: {b_elapsed:?}"
    );
    let max_wait = refresh_core::ProviderRefreshPolicy::for_platform(&platform)
        .wait
        .max_wait;
    assert!(b_elapsed < max_wait);
    let a_token = a_caller.await.expect("a task").expect("A gets a token");
    assert_eq!(a_token.version, 1);
    assert_eq!(h.upstream.successes(), 1);

    // 3. The holder never finishes: B gives up after max_wait with a typed
    //    error instead of handing out the expired token.
    let h = Harness::new([expired.clone()]);
    h.upstream.hold_responses();
    let a = h.provider(std::slice::from_ref(&platform));
    let b = h.provider(std::slice::from_ref(&platform));
    let _a_caller = spawn_access_token(&a, &expired);
    h.upstream.wait_for_calls(1).await;
    let b_started = Instant::now();
    let err = b.access_token(&expired).await.expect_err("no valid token");
    let b_elapsed = b_started.elapsed();
    assert!(
        matches!(err, TokenError::WaitTimedOut { id, .. } if id == AccountId(1)),
        "{err:?}"
    );
    assert!(
        b_elapsed >= max_wait && b_elapsed < max_wait + Duration::from_secs(1),
        "bounded by max_wait: {b_elapsed:?}"
    );
    assert_eq!(metrics(&b, &platform).lock_wait_misses, 1);
    assert_eq!(
        h.stored(1).await.credentials_version,
        0,
        "the holder never finished"
    );
}

#[tokio::test(start_paused = true)]
async fn getter_cached_token_lapses_when_it_enters_the_refresh_skew() {
    // 4 min left: §5.2 alone would cache it for all 4 min, past the 3-min
    // skew; the provider caches it only until the skew starts (1 min).
    let snapshot = oauth_account(1, Platform::Gemini, 4 * 60);
    let h = Harness::new([snapshot.clone()]);
    let provider = h.provider(&[Platform::Gemini]);

    let first = provider.access_token(&snapshot).await.expect("token");
    assert_eq!(first.token.expose(), "at-1-0");
    assert_eq!(h.upstream.calls(), 0, "4 min left is not due yet");

    tokio::time::advance(Duration::from_secs(59)).await;
    provider.access_token(&snapshot).await.expect("hit");
    assert_eq!(
        h.upstream.calls(),
        0,
        "still before the skew: in-process hit"
    );

    tokio::time::advance(Duration::from_secs(2)).await;
    let refreshed = provider.access_token(&snapshot).await.expect("refreshed");
    assert_eq!(
        h.upstream.calls(),
        1,
        "the entry lapsed at the skew and the miss refreshed"
    );
    assert_eq!(refreshed.token.expose(), "at-1-1");
}

/// A shared cache whose "refreshed" channel is closed: every notice resolves
/// `None` at once.
struct ClosedChannelCache(InMemoryTokenCache);

#[async_trait]
impl TokenCache for ClosedChannelCache {
    async fn get(&self, key: &RefreshKey) -> Result<Option<CachedToken>, StorageError> {
        self.0.get(key).await
    }
    async fn put(
        &self,
        key: &RefreshKey,
        token: &CachedToken,
        ttl: Duration,
    ) -> Result<PutOutcome, StorageError> {
        self.0.put(key, token, ttl).await
    }
    async fn invalidate(&self, key: &RefreshKey) -> Result<(), StorageError> {
        self.0.invalidate(key).await
    }
    async fn publish_refreshed(&self, key: &RefreshKey, version: u64) -> Result<(), StorageError> {
        self.0.publish_refreshed(key, version).await
    }
    async fn subscribe_refreshed(&self, _key: &RefreshKey) -> Result<RefreshNotice, StorageError> {
        Ok(RefreshNotice::new(async { None }))
    }
}

#[tokio::test(start_paused = true)]
async fn invariant_8_closed_notification_channel_falls_back_to_bounded_polling() {
    // Expired token, lease held elsewhere for good: the caller waits the
    // policy's max_wait, polling, and never spins on the closed channel.
    let snapshot = oauth_account(1, Platform::OpenAi, -10);
    let h = Harness::new([snapshot.clone()]);
    let theirs = h.hold(&key(&Platform::OpenAi, 1)).await;
    let cache = Arc::new(ClosedChannelCache(InMemoryTokenCache::new(Arc::clone(
        &h.clock,
    ))));
    let provider = TokenProvider::builder(
        h.process(LockStrategy::single(h.lock.clone()), FlowConfig::default()),
        h.registry(&[Platform::OpenAi]),
    )
    .shared_cache(cache)
    .build();

    let err = provider
        .access_token(&snapshot)
        .await
        .expect_err("never refreshed");
    assert!(matches!(err, TokenError::WaitTimedOut { .. }), "{err:?}");
    let policy = ProviderRefreshPolicy::for_platform(&Platform::OpenAi);
    let polls = policy.wait.max_wait.as_millis() / policy.wait.poll_interval.as_millis();
    assert!(
        u128::from(h.repo_gets()) <= polls + 10,
        "bounded polling, not a spin: {} reads",
        h.repo_gets()
    );
    drop(theirs);
}

/// A view of the shared cache whose subscriptions wait for `open` before
/// they reach the cache: the holder's publish can be made to land between
/// the waiter's "held elsewhere" and its subscription.
struct LateSubscription {
    inner: Arc<dyn TokenCache>,
    open: Arc<tokio::sync::Notify>,
}

#[async_trait]
impl TokenCache for LateSubscription {
    async fn get(&self, key: &RefreshKey) -> Result<Option<CachedToken>, StorageError> {
        self.inner.get(key).await
    }
    async fn put(
        &self,
        key: &RefreshKey,
        token: &CachedToken,
        ttl: Duration,
    ) -> Result<PutOutcome, StorageError> {
        self.inner.put(key, token, ttl).await
    }
    async fn invalidate(&self, key: &RefreshKey) -> Result<(), StorageError> {
        self.inner.invalidate(key).await
    }
    async fn publish_refreshed(&self, key: &RefreshKey, version: u64) -> Result<(), StorageError> {
        self.inner.publish_refreshed(key, version).await
    }
    async fn subscribe_refreshed(&self, key: &RefreshKey) -> Result<RefreshNotice, StorageError> {
        self.open.notified().await;
        self.inner.subscribe_refreshed(key).await
    }
}

/// Invariant 8, latency: the holder elsewhere persists and publishes after
/// this caller found the refresh held but before its subscription reached
/// the channel. The notice it waits on will never come; it must still get
/// the new token at once (one re-read after subscribing), not after the
/// platform's first poll delay.
#[tokio::test(start_paused = true)]
async fn invariant_8_a_publish_before_the_waiter_subscribed_is_not_waited_for() {
    let platform = Platform::Anthropic;
    let expired = oauth_account(1, platform.clone(), -60);
    let h = Harness::new([expired.clone()]);
    h.upstream.hold_responses();
    let a = h.provider(std::slice::from_ref(&platform));
    let open = Arc::new(tokio::sync::Notify::new());
    let late: Arc<dyn TokenCache> = Arc::new(LateSubscription {
        inner: h.cache.clone(),
        open: Arc::clone(&open),
    });
    let b = TokenProvider::builder(
        h.flow_builder(LockStrategy::single(h.lock.clone()))
            .notifier(Arc::clone(&late))
            .build()
            .expect("valid flow config"),
        h.registry(std::slice::from_ref(&platform)),
    )
    .shared_cache(late)
    .build();

    let a_caller = spawn_access_token(&a, &expired);
    h.upstream.wait_for_calls(1).await;
    let b_caller = spawn_access_token(&b, &expired);
    // B found the lease held and is on its way to subscribe.
    h.lock.faults.wait_for_calls("try_acquire", 2).await;
    h.upstream.release(1);
    h.cache.faults.wait_for_calls("publish_refreshed", 1).await;
    let a_token = a_caller.await.expect("a task").expect("A gets a token");
    assert_eq!(a_token.version, 1);

    let subscribed = Instant::now();
    open.notify_one();
    let b_token = b_caller.await.expect("b task").expect("B gets a token");
    assert_eq!((b_token.token.expose(), b_token.version), ("at-1-1", 1));
    assert!(
        subscribed.elapsed() < Duration::from_millis(200),
        "served right after subscribing, not after Claude's 200 ms poll: {:?}",
        subscribed.elapsed()
    );
    assert_eq!(h.upstream.successes(), 1);
    assert_eq!(h.upstream.reuses(), 0);
}

#[tokio::test(start_paused = true)]
async fn invariant_8_a_waiter_without_notifications_sees_the_new_token_at_its_next_poll() {
    // No shared cache (no notifications): the holder elsewhere persists a
    // new token while this caller waits. The caller's next poll reads the
    // stored account and returns the new token at once, instead of
    // sleeping through the rest of its schedule and settling for the old,
    // still-valid one.
    use refresh_core::AccountRepository;
    use refresh_core::ports::CasExpectation;
    let snapshot = oauth_account(3, Platform::OpenAi, 120);
    let h = Harness::new([snapshot.clone()]);
    let _theirs = h.hold(&key(&Platform::OpenAi, 3)).await;
    let policy = ProviderRefreshPolicy {
        wait: refresh_core::policy::LockWait {
            schedule: vec![Duration::from_millis(100); 20],
            jitter: 0.0,
            ..refresh_core::policy::LockWait::backoff()
        },
        ..ProviderRefreshPolicy::for_platform(&Platform::OpenAi)
    };
    let provider = TokenProvider::builder(
        h.process(LockStrategy::single(h.lock.clone()), FlowConfig::default()),
        h.registry(&[Platform::OpenAi]),
    )
    .policy(Platform::OpenAi, policy)
    .build();
    let started = Instant::now();
    let waiter = {
        let (provider, snapshot) = (provider.clone(), snapshot.clone());
        tokio::spawn(async move { provider.access_token(&snapshot).await })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    let rotated = Credentials::new()
        .with("access_token", "at-3-new")
        .with("refresh_token", "rt-3-new")
        .with("expires_at", in_secs(3600).timestamp().to_string());
    let written = h
        .repo
        .compare_and_set_credentials(AccountId(3), CasExpectation::of(&snapshot), &rotated)
        .await
        .expect("write");
    assert!(
        matches!(written, refresh_core::CasOutcome::Applied(_)),
        "{written:?}"
    );
    let token = waiter.await.expect("task").expect("a token");
    assert_eq!(token.token.expose(), "at-3-new");
    assert_eq!(token.version, 1);
    assert!(
        started.elapsed() <= Duration::from_millis(200),
        "served at the next poll, not after the 2 s schedule: {:?}",
        started.elapsed()
    );
    assert_eq!(h.upstream.calls(), 0);
}

/// A claim store whose `mark_consumed` waits at a gate until the test opens
/// it (a slow database commit of the consumed mark).
struct GatedConsumedMark {
    gate: tokio::sync::Semaphore,
    reached: tokio::sync::Notify,
}

impl GatedConsumedMark {
    fn new() -> Self {
        Self {
            gate: tokio::sync::Semaphore::new(0),
            reached: tokio::sync::Notify::new(),
        }
    }
}

#[async_trait]
impl common::ClaimStoreHooks for GatedConsumedMark {
    async fn before(&self, op: &'static str) {
        if op == "mark_consumed" {
            self.reached.notify_one();
            let _permit = self.gate.acquire().await.expect("gate open");
        }
    }
}

/// The stampede's critical path: once the fenced write committed, the
/// holder's own callers are served and waiters elsewhere are notified. The
/// consumed mark (a claim-store commit) finishes after, on the flow's task,
/// and is awaited by `drained`.
#[tokio::test(start_paused = true)]
async fn the_holders_callers_and_waiters_are_served_before_the_consumed_mark() {
    use refresh_core::ClaimStore;
    let platform = Platform::Anthropic;
    let expired = oauth_account(1, platform.clone(), -60);
    let h = Harness::new([expired.clone()]);
    let hooks = common::HookedClaimStore::new(h.claims.clone(), GatedConsumedMark::new());
    let flow = refresh_core::RefreshFlow::builder(
        h.repo.clone(),
        LockStrategy::single(h.lock.clone()),
        hooks.clone(),
    )
    .clock(Arc::clone(&h.clock))
    .notifier(h.cache.clone())
    .build()
    .expect("valid flow config");
    let a = TokenProvider::builder(flow.clone(), h.registry(std::slice::from_ref(&platform)))
        .shared_cache(h.cache.clone())
        .build();
    let b = h.provider(std::slice::from_ref(&platform));

    h.upstream.hold_responses();
    let a_caller = spawn_access_token(&a, &expired);
    h.upstream.wait_for_calls(1).await;
    let b_caller = spawn_access_token(&b, &expired);
    h.cache
        .faults
        .wait_for_calls("subscribe_refreshed", 1)
        .await;
    let answered = Instant::now();
    let reads_before = h.repo_gets();
    h.upstream.release(1);

    // The gate never opens while they are served: awaiting the consumed
    // mark, each would return only after the claim store's timeout (5 s of
    // virtual time) and its retries.
    let bound = FlowConfig::default().storage_timeout;
    let b_token = common::within("the waiter", b_caller)
        .await
        .expect("b task")
        .expect("B gets a token");
    assert_eq!((b_token.token.expose(), b_token.version), ("at-1-1", 1));
    assert!(
        answered.elapsed() < bound.min(Duration::from_millis(200)),
        "the waiter was woken by the publish, before the consumed mark and Claude's 200 ms poll: {:?}",
        answered.elapsed()
    );
    let a_token = common::within("the holder's caller", a_caller)
        .await
        .expect("a task")
        .expect("A gets a token");
    assert_eq!((a_token.token.expose(), a_token.version), ("at-1-1", 1));
    assert!(
        answered.elapsed() < bound,
        "the holder's caller was served before the consumed mark: {:?}",
        answered.elapsed()
    );
    // The holder cached its token before the publish: the woken waiter took
    // it from the shared cache, without reading the account.
    assert_eq!(
        h.repo_gets(),
        reads_before,
        "no account read after the answer"
    );
    // Both were served while the consumed mark is still held at its gate.
    hooks.hooks.reached.notified().await;
    let claim = h
        .claims
        .inner()
        .get(&common::claim_key("rt-1-0"))
        .await
        .expect("claim store answers")
        .expect("the generation's claim");
    assert_eq!(claim.state, ClaimState::Answered, "not consumed yet");
    assert_eq!(flow.in_flight(), 1, "the consumed mark is still running");

    hooks.hooks.gate.add_permits(1);
    common::within("the consumed mark", flow.drained()).await;
    let claim = h
        .claims
        .inner()
        .get(&common::claim_key("rt-1-0"))
        .await
        .expect("claim store answers")
        .expect("the generation's claim");
    assert_eq!(claim.state, ClaimState::Consumed);
    assert_eq!(h.upstream.successes(), 1);
    assert_eq!(h.upstream.reuses(), 0);
}

/// A repository whose `get` number `stuck` (counting from 1) never answers
/// (a read sent just before the holder's write committed, on a database
/// too loaded to answer it soon).
struct StuckRead {
    gets: AtomicU64,
    stuck: u64,
    reached: tokio::sync::Notify,
}

#[async_trait]
impl common::RepositoryHooks for StuckRead {
    async fn before_get(&self) {
        if self.gets.fetch_add(1, Ordering::SeqCst) + 1 == self.stuck {
            self.reached.notify_one();
            std::future::pending::<()>().await;
        }
    }
}

/// Invariant 8, latency: a "refreshed" notification that arrives while a
/// waiter's poll is still reading is acted on at once; the waiter does not
/// wait for the poll's reads first.
#[tokio::test(start_paused = true)]
async fn invariant_8_a_notification_during_a_poll_is_not_held_back_by_the_polls_reads() {
    use refresh_core::memory::InMemoryAccountRepository;
    use refresh_core::ports::CasExpectation;
    let platform = Platform::Anthropic;
    let expired = oauth_account(1, platform.clone(), -60);
    // Reads: 1 the resolution's, 2 the waiter's after subscribing, 3 its
    // first poll's (stuck).
    let h = common::Backends::over(common::HookedRepository {
        inner: Arc::new(InMemoryAccountRepository::with_accounts([expired.clone()])),
        hooks: StuckRead {
            gets: AtomicU64::new(0),
            stuck: 3,
            reached: tokio::sync::Notify::new(),
        },
    });
    let refresh_key = key(&platform, 1);
    let _theirs = h.hold(&refresh_key).await;
    let waiter = spawn_access_token(&h.provider(std::slice::from_ref(&platform)), &expired);
    h.repo.inner().hooks.reached.notified().await;

    // The holder elsewhere writes and publishes while the poll's read is out.
    let rotated = Credentials::new()
        .with("access_token", "at-1-new")
        .with("refresh_token", "rt-1-new")
        .with("expires_at", in_secs(3600).timestamp().to_string());
    let written = h
        .repo
        .inner()
        .inner
        .compare_and_set_credentials(AccountId(1), CasExpectation::of(&expired), &rotated)
        .await
        .expect("write");
    assert!(matches!(written, refresh_core::CasOutcome::Applied(_)));
    h.cache
        .publish_refreshed(&refresh_key, 1)
        .await
        .expect("publish");
    let published = Instant::now();

    let token = common::within("the notified waiter", waiter)
        .await
        .expect("task")
        .expect("a token");
    assert_eq!((token.token.expose(), token.version), ("at-1-new", 1));
    // Waiting for the stuck read, the waiter would be served only after its
    // bound (the storage timeout, 5 s of virtual time) and the next read.
    assert!(
        published.elapsed() < FlowConfig::default().storage_timeout,
        "served on the notification: {:?}",
        published.elapsed()
    );
    assert_eq!(h.upstream.calls(), 0);
}
