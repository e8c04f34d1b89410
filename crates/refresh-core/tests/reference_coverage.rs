//! Tests for the REFERENCE.md §12 behaviours and DESIGN.md invariants that
//! the other suites of this crate did not cover, or covered only in passing
//! (see `TESTING.md` for the full map):
//!
//! - Parsing and keys: lock and cache keys depend only on the account id; a
//!   backfilled `project_id` changes neither (Gemini, Antigravity).
//! - Background loop: a missing invalidator (no token cache) is fine.
//! - Classification: `invalid_grant` inside a longer message and in upper
//!   case; a network timeout is not non-retryable (a read timeout after
//!   sending quarantines the generation instead of replaying it).
//! - Not tested in Go: cancellation releasing the lock; lock TTL expiry
//!   during a slow refresh (the generation claim, not the lease, keeps a
//!   second sender out; a call past the hard deadline is aborted and its
//!   generation quarantined); a proxy lookup failure failing the refresh.
//!
//! Everything runs on the in-memory backends, the fault-injecting
//! [`Faulty`] wrappers and the rotating [`FakeUpstream`] (see
//! `common::Backends`). Synchronisation uses the fake upstream's gate and
//! call counter, the wrappers' call counts (`FaultPlan::wait_for_calls`),
//! `Notify` and paused tokio time, never real sleeps.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use common::{
    Backends, PLATFORMS, WINDOW, access_token_of, key, oauth_account, refresh_token_of, settle,
    short_upstream_timeout, t0,
};
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use refresh_core::error::OAuthErrorCode;
use refresh_core::memory::InMemoryAccountRepository;
use refresh_core::ports::{CasExpectation, CasOutcome, ManualClock};
use refresh_core::testing::RotatingExecutor;
use refresh_core::{
    Account, AccountId, AccountRepository, AccountStatus, BackgroundConfig, BackgroundRefresher,
    ClaimState, Clock, Credentials, CycleReport, ExecutorRegistry, FlowConfig, FlowError,
    FlowStage, LockStrategy, Platform, ProviderError, RefreshContext, RefreshExecutor, RefreshFlow,
    RefreshKey, RefreshLock, RefreshOutcome, TokenCache, TokenError, TokenProvider,
};

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

/// One account store, one lock, one token cache, one claim store and one
/// fake upstream, shared by every flow built from it (each flow is a
/// separate "process": its own single flight).
type Stack = Backends;

impl Stack {
    /// A process whose lease lives in the shared lock, with default
    /// settings.
    fn flow(&self) -> RefreshFlow {
        self.process(
            LockStrategy::single(self.lock.clone()),
            FlowConfig::default(),
        )
    }

    /// How many claims of account `id` are in `state`.
    fn claims_in(&self, id: i64, state: ClaimState) -> usize {
        self.claims.inner().claims_of(AccountId(id), state).len()
    }
}

/// An executor that keeps every provided method of [`RefreshExecutor`]
/// (the default `key`, `can_refresh`, `needs_refresh`) and is never called.
struct DefaultKeyExecutor(Platform);

#[async_trait]
impl RefreshExecutor for DefaultKeyExecutor {
    fn platform(&self) -> Platform {
        self.0.clone()
    }

    async fn refresh(
        &self,
        _account: &Account,
        _ctx: &RefreshContext,
    ) -> Result<Credentials, ProviderError> {
        Err(ProviderError::Configuration {
            reason: "not called by these tests".into(),
        })
    }
}

/// An executor whose account references a proxy record that cannot be
/// loaded: it fails closed with a configuration error before sending
/// anything (REFERENCE.md defect 16), and never goes direct.
struct ProxyLookupFails {
    platform: Platform,
    attempts: AtomicUsize,
}

impl ProxyLookupFails {
    fn new(platform: Platform) -> Self {
        Self {
            platform,
            attempts: AtomicUsize::new(0),
        }
    }
}

#[async_trait]
impl RefreshExecutor for ProxyLookupFails {
    fn platform(&self) -> Platform {
        self.platform.clone()
    }

    async fn refresh(
        &self,
        account: &Account,
        _ctx: &RefreshContext,
    ) -> Result<Credentials, ProviderError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        let proxy = account
            .proxy
            .as_ref()
            .map(|p| p.host().to_owned())
            .unwrap_or_default();
        Err(ProviderError::Configuration {
            reason: format!("proxy {proxy} could not be loaded"),
        })
    }
}

/// A rotating executor whose first upstream answer is slow: the upstream
/// rotates when the request arrives, then the answer waits for `answer`.
/// Later calls answer at once. It records whether the slow answer ever
/// reached the flow, and whether the call was dropped while it waited (the
/// flow aborting it at its hard deadline).
struct SlowFirstAnswer {
    inner: RotatingExecutor,
    first: AtomicBool,
    answer: Notify,
    delivered: AtomicBool,
    aborted: AtomicBool,
}

impl SlowFirstAnswer {
    fn new(inner: RotatingExecutor) -> Self {
        Self {
            inner,
            first: AtomicBool::new(true),
            answer: Notify::new(),
            delivered: AtomicBool::new(false),
            aborted: AtomicBool::new(false),
        }
    }
}

/// Sets its flag when dropped before [`disarm`](Self::disarm).
struct DroppedWhileWaiting<'a>(Option<&'a AtomicBool>);

impl DroppedWhileWaiting<'_> {
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for DroppedWhileWaiting<'_> {
    fn drop(&mut self) {
        if let Some(flag) = self.0 {
            flag.store(true, Ordering::SeqCst);
        }
    }
}

#[async_trait]
impl RefreshExecutor for SlowFirstAnswer {
    fn platform(&self) -> Platform {
        self.inner.platform()
    }

    async fn refresh(
        &self,
        account: &Account,
        ctx: &RefreshContext,
    ) -> Result<Credentials, ProviderError> {
        let result = self.inner.refresh(account, ctx).await;
        if self.first.swap(false, Ordering::SeqCst) {
            let mut waiting = DroppedWhileWaiting(Some(&self.aborted));
            self.answer.notified().await;
            waiting.disarm();
            self.delivered.store(true, Ordering::SeqCst);
        }
        result
    }
}

// ---------------------------------------------------------------------------
// Parsing and keys
// ---------------------------------------------------------------------------

/// REFERENCE §12 Parsing and keys: "lock and cache keys depend only on the
/// account id; a backfilled `project_id` does not change them" (defect 8),
/// through the default [`RefreshExecutor::key`] and
/// [`RefreshKey::for_account`].
#[test]
fn keys_depend_only_on_account_id_not_project_id() {
    for (platform, prefix) in [
        (Platform::Gemini, "gemini"),
        (Platform::Antigravity, "ag"),
        (Platform::Anthropic, "claude"),
        (Platform::OpenAi, "openai"),
    ] {
        let executor = DefaultKeyExecutor(platform.clone());
        let before = oauth_account(7, platform.clone(), 3600);
        let mut backfilled = before.clone();
        backfilled.credentials.insert("project_id", "proj-shared");
        backfilled.credentials.insert("tier_id", "standard-tier");
        backfilled.credentials.insert("oauth_type", "code_assist");
        backfilled.credentials_version = 1;

        let expected = format!("{prefix}:account:7");
        assert_eq!(executor.key(&before).as_str(), expected, "{platform}");
        assert_eq!(
            executor.key(&backfilled),
            executor.key(&before),
            "{platform}: the backfill changes no key"
        );
        assert_eq!(
            RefreshKey::for_account(&platform, AccountId(7)).as_str(),
            expected,
            "{platform}"
        );
        assert!(
            !executor.key(&backfilled).as_str().contains("proj"),
            "{platform}: the key never embeds the project"
        );

        // Go keyed Gemini/Antigravity by project: two accounts of one project
        // shared a lock and a cached token. Here each account has its own.
        let mut neighbour = backfilled.clone();
        neighbour.id = AccountId(8);
        assert_eq!(
            executor.key(&neighbour).as_str(),
            format!("{prefix}:account:8"),
            "{platform}"
        );
        assert_ne!(
            executor.key(&neighbour),
            executor.key(&backfilled),
            "{platform}"
        );
    }
}

/// REFERENCE §12 Parsing and keys, end to end for Gemini and Antigravity: the
/// flow's lease and the getter's cache entry of an account are the same
/// before and after a `project_id` backfill, and an account sharing the
/// project is not serialized with it.
#[tokio::test]
async fn keys_backfilled_project_id_keeps_the_lock_and_cache_key() {
    for platform in [Platform::Gemini, Platform::Antigravity] {
        let seven = oauth_account(7, platform.clone(), -60);
        let mut eight = oauth_account(8, platform.clone(), -60);
        eight.credentials.insert("project_id", "proj-shared");
        let s = Stack::on_clock(
            [seven.clone(), eight.clone()],
            Arc::new(ManualClock::new(t0())),
        );
        let executor = s.executor(platform.clone());
        let flow = s.flow();

        // Another process holds account 7's lease.
        let theirs = s.hold(&key(&platform, 7)).await;

        // The project backfill: a fenced partial write of project_id.
        let with_project = seven
            .credentials
            .clone()
            .with("project_id", "proj-shared")
            .with("tier_id", "standard-tier");
        let CasOutcome::Applied(backfilled) = s
            .repo
            .inner()
            .compare_and_set_credentials(AccountId(7), CasExpectation::of(&seven), &with_project)
            .await
            .expect("write")
        else {
            panic!("{platform}: the backfill applies");
        };
        assert_eq!(backfilled.credentials_version, 1);

        for snapshot in [&seven, &backfilled] {
            let outcome = flow
                .refresh_if_needed(snapshot, &executor, WINDOW)
                .await
                .expect("held elsewhere is not an error");
            assert_eq!(
                outcome,
                RefreshOutcome::HeldElsewhere,
                "{platform}: the same lease before and after the backfill"
            );
        }
        assert_eq!(s.upstream.calls(), 0, "{platform}");

        // Account 8 shares the project but not the lease.
        let outcome = flow
            .refresh_if_needed(&eight, &executor, WINDOW)
            .await
            .expect("refresh");
        assert!(
            matches!(outcome, RefreshOutcome::Refreshed { .. }),
            "{platform}: {outcome:?}"
        );
        assert_eq!(s.upstream.calls(), 1, "{platform}");
        assert!(s.lock.inner().release(&theirs).await.expect("release"));

        // Cache: a getter with the pre-backfill snapshot refreshes and caches
        // under the account-id key; another process holding the backfilled
        // snapshot is served from that same entry.
        let provider = |flow: RefreshFlow| {
            TokenProvider::builder(flow, s.registry(std::slice::from_ref(&platform)))
                .shared_cache(Arc::clone(&s.cache) as Arc<dyn TokenCache>)
                .build()
        };
        let token = provider(s.flow())
            .access_token(&seven)
            .await
            .expect("refreshed token");
        assert_eq!(
            (token.token.expose(), token.version),
            ("at-7-1", 2),
            "{platform}"
        );
        let cached = s
            .cached(&key(&platform, 7))
            .await
            .expect("cached under the account-id key");
        assert_eq!(cached.version, 2, "{platform}");
        let stored = s.stored(7).await;
        assert_eq!(
            stored.credentials.get("project_id"),
            Some(&json!("proj-shared")),
            "{platform}: the refresh keeps the backfilled project"
        );

        let (acquires, gets) = (s.lock.faults.calls("try_acquire"), s.repo_calls("get"));
        let token = provider(s.flow())
            .access_token(&backfilled)
            .await
            .expect("shared-cache hit");
        assert_eq!(
            (token.token.expose(), token.version),
            ("at-7-1", 2),
            "{platform}"
        );
        assert_eq!(
            s.lock.faults.calls("try_acquire"),
            acquires,
            "{platform}: no lock"
        );
        assert_eq!(s.repo_calls("get"), gets, "{platform}: no account read");
        assert_eq!(s.upstream.calls(), 2, "{platform}");
    }
}

// ---------------------------------------------------------------------------
// Background loop
// ---------------------------------------------------------------------------

/// REFERENCE §12 Background loop: "A missing invalidator is fine". With no
/// token cache configured, oauth accounts of every platform are refreshed
/// and persisted, and the temp-unschedulable state is still cleared in the
/// database (only the cache delete is skipped).
#[tokio::test(start_paused = true)]
async fn background_missing_invalidator_is_fine() {
    let accounts: Vec<Account> = PLATFORMS
        .iter()
        .zip(1..)
        .map(|(platform, id)| {
            let mut a = oauth_account(id, platform.clone(), 60);
            a.temp_unschedulable_until = Some(t0() + chrono::Duration::minutes(10));
            a.temp_unschedulable_reason = Some("rate limited".into());
            a
        })
        .collect();
    let s = Stack::new(accounts.clone());
    let refresher = BackgroundRefresher::builder(s.flow(), s.registry(&PLATFORMS))
        .config(BackgroundConfig {
            interval: Duration::from_secs(3600),
            ..BackgroundConfig::default()
        })
        .build()
        .expect("valid config");

    let report = refresher.run_once().await;

    assert_eq!(
        report,
        CycleReport {
            total: 4,
            due: 4,
            refreshed: 4,
            ..CycleReport::default()
        }
    );
    assert_eq!(s.repo_calls("compare_and_set_credentials"), 4);
    assert_eq!(s.repo_calls("clear_temp_unschedulable"), 4);
    assert_eq!(s.repo_calls("set_error"), 0);
    for original in &accounts {
        let id = original.id.get();
        let stored = s.stored(id).await;
        assert_eq!(
            access_token_of(&stored),
            Some(format!("at-{id}-1")),
            "{}",
            original.platform
        );
        assert_eq!(stored.status, AccountStatus::Active);
        assert_eq!(stored.temp_unschedulable_until, None);
        assert_eq!(stored.temp_unschedulable_reason, None);
    }
}

// ---------------------------------------------------------------------------
// Classification
// ---------------------------------------------------------------------------

/// REFERENCE §12 Classification: "`invalid_grant` is recognized inside a
/// longer message and in upper case". In Rust the code comes from the parsed
/// OAuth `error` field (flat or nested, any case and padding) next to long
/// descriptions, never from substring search; the background marks the
/// account with the normalized code.
#[tokio::test(start_paused = true)]
async fn classification_invalid_grant_inside_a_longer_message_and_in_upper_case() {
    let bodies = [
        r#"{"error":"INVALID_GRANT","error_description":"Token has been expired or revoked. The refresh token presented is no longer valid; please sign in again to continue using this account."}"#,
        r#"{"error":"  Invalid_Grant  ","error_description":"Bad Request"}"#,
        r#"{"error":{"code":"INVALID_GRANT","message":"The provided authorization grant is invalid, expired, revoked, or was issued to another client.","type":"invalid_request_error"}}"#,
        r#"{"error":{"code":400,"status":"INVALID_GRANT","message":"Bad Request: the refresh token is invalid"}}"#,
    ];
    for body in bodies {
        for status in [400, 401] {
            let error = ProviderError::from_response(status, body.as_bytes(), None);
            assert!(
                matches!(&error, ProviderError::InvalidGrant { code, .. } if code.as_str() == "invalid_grant"),
                "{status} {body}: {error:?}"
            );
            assert!(!error.is_retryable(), "{body}");
            assert!(error.is_grant_rejected(), "{body}");
            assert_eq!(error.kind_name(), "invalid_grant");
        }
    }
    assert_eq!(
        OAuthErrorCode::new(" INVALID_GRANT\n").as_str(),
        "invalid_grant"
    );

    // Through the background: the upper-case answer marks the account once,
    // with the normalized code in the stored message.
    let s = Stack::new([oauth_account(1, Platform::Gemini, 60)]);
    s.upstream.fail_next(ProviderError::from_response(
        400,
        bodies[0].as_bytes(),
        None,
    ));
    let refresher = BackgroundRefresher::builder(s.flow(), s.registry(&[Platform::Gemini]))
        .build()
        .expect("valid config");
    let report = refresher.run_once().await;
    assert_eq!((report.failed, report.marked_error), (1, 1), "{report:?}");
    assert_eq!(s.upstream.calls(), 1, "non-retryable: one attempt");
    let stored = s.stored(1).await;
    assert_eq!(stored.status, AccountStatus::Error);
    let message = stored.error_message.unwrap_or_default();
    assert!(message.contains("invalid_grant"), "{message}");
    assert!(!message.contains("rt-1-0"), "{message}");
}

/// REFERENCE §12 Classification: "Not non-retryable: no error; a network
/// timeout". A timeout (before or after sending) is retryable at every
/// layer, and the background never marks the account for it; a successful
/// refresh marks nothing. A connect timeout (the request never left) is
/// retried with the same token; a read timeout after sending may have
/// consumed it (issue 5, break 1): the claim is quarantined, so the retry
/// meets the quarantine instead of presenting the token again.
#[tokio::test(start_paused = true)]
async fn classification_no_error_and_network_timeout_are_not_non_retryable() {
    let connect_timeout = ProviderError::NotSent {
        reason: "connect timeout".into(),
    };
    let read_timeout = ProviderError::Ambiguous {
        reason: "read timeout after sending".into(),
    };
    for error in [&connect_timeout, &read_timeout] {
        assert!(error.is_retryable(), "{error:?}");
        let flow_error = FlowError::Upstream {
            id: AccountId(1),
            version: 0,
            source: error.clone(),
        };
        assert!(flow_error.is_retryable(), "{flow_error:?}");
    }
    assert!(connect_timeout.provably_not_consumed());
    assert!(!read_timeout.provably_not_consumed());

    // Account 1: a connect timeout, then success. Account 2: no error.
    let s = Stack::new([
        oauth_account(1, Platform::OpenAi, 60),
        oauth_account(2, Platform::OpenAi, 120),
    ]);
    s.upstream.fail_next(connect_timeout);
    let refresher = BackgroundRefresher::builder(s.flow(), s.registry(&[Platform::OpenAi]))
        .config(BackgroundConfig {
            concurrency: 1,
            ..BackgroundConfig::default()
        })
        .build()
        .expect("valid config");
    let report = refresher.run_once().await;

    assert_eq!(
        report,
        CycleReport {
            total: 2,
            due: 2,
            refreshed: 2,
            ..CycleReport::default()
        }
    );
    assert_eq!(s.upstream.calls(), 3, "the timed-out attempt was retried");
    assert_eq!(s.upstream.reuses(), 0);
    assert_eq!(s.repo_calls("set_error"), 0, "nothing marked");
    for id in [1, 2] {
        let stored = s.stored(id).await;
        assert_eq!(stored.status, AccountStatus::Active);
        assert_eq!(stored.error_message, None);
        assert_eq!(stored.credentials_version, 1);
    }

    // A read timeout after the upstream rotated: no second presentation,
    // not marked.
    let s = Stack::new([oauth_account(1, Platform::OpenAi, 60)]);
    s.upstream.fail_after_rotation_next(read_timeout);
    let refresher = BackgroundRefresher::builder(s.flow(), s.registry(&[Platform::OpenAi]))
        .build()
        .expect("valid config");
    let report = refresher.run_once().await;
    assert_eq!(
        report,
        CycleReport {
            total: 1,
            due: 1,
            failed: 1,
            ..CycleReport::default()
        }
    );
    assert_eq!(
        (s.upstream.calls(), s.upstream.reuses()),
        (1, 0),
        "the consumed token was not presented again"
    );
    assert_eq!(
        s.claim_calls("acquire"),
        3,
        "the retry met the quarantine on its snapshot, then again after the re-read"
    );
    assert_eq!(s.claims_in(1, ClaimState::Quarantined), 1);
    assert_eq!(s.repo_calls("set_error"), 0, "nothing marked");
    assert_eq!(s.stored(1).await.status, AccountStatus::Active);
}

// ---------------------------------------------------------------------------
// Not tested in Go: cancellation releasing the lock
// ---------------------------------------------------------------------------

/// REFERENCE §12 "Not tested in Go": "Cancellation releasing the lock"
/// (defect 3, invariant 7). A caller of the flow that is aborted, and a
/// getter caller cancelled through its token, both while the upstream call
/// is in flight: nobody else calls again, yet the detached refresh persists
/// and releases the lease by itself.
#[tokio::test]
async fn cancellation_releases_the_lock() {
    // 1. The flow's caller task is aborted.
    let s = Stack::on_clock(
        [oauth_account(1, Platform::Anthropic, -60)],
        Arc::new(ManualClock::new(t0())),
    );
    let flow = s.flow();
    let executor = s.executor(Platform::Anthropic);
    s.upstream.hold_responses();
    let caller = tokio::spawn({
        let (flow, executor, snapshot) = (
            flow.clone(),
            Arc::clone(&executor),
            oauth_account(1, Platform::Anthropic, -60),
        );
        async move { flow.refresh_if_needed(&snapshot, &executor, WINDOW).await }
    });
    s.upstream.wait_for_calls(1).await;
    caller.abort();
    assert!(caller.await.expect_err("aborted").is_cancelled());
    assert!(
        !s.lease_is_free(&key(&Platform::Anthropic, 1)).await,
        "the refresh still runs under the lease"
    );
    s.upstream.release(1);
    assert_detached_refresh_finished(&s, &Platform::Anthropic, 1).await;

    // 2. A getter caller cancels while the refresh it started is in flight.
    let s = Stack::on_clock(
        [oauth_account(2, Platform::OpenAi, -60)],
        Arc::new(ManualClock::new(t0())),
    );
    let provider = TokenProvider::builder(s.flow(), s.registry(&[Platform::OpenAi])).build();
    s.upstream.hold_responses();
    let cancel = CancellationToken::new();
    let caller = tokio::spawn({
        let (provider, cancel) = (provider.clone(), cancel.clone());
        async move {
            provider
                .access_token_with_cancel(&oauth_account(2, Platform::OpenAi, -60), &cancel)
                .await
        }
    });
    s.upstream.wait_for_calls(1).await;
    cancel.cancel();
    let result = caller.await.expect("caller task");
    assert!(
        matches!(result, Err(TokenError::Cancelled { id }) if id == AccountId(2)),
        "{result:?}"
    );
    assert_eq!(
        provider
            .metrics()
            .platform(&Platform::OpenAi)
            .snapshot()
            .cancellations,
        1
    );
    s.upstream.release(1);
    assert_detached_refresh_finished(&s, &Platform::OpenAi, 2).await;
}

/// Waits for the lease release of the detached refresh of account `id`,
/// then checks it persisted the one rotation and freed the lease.
async fn assert_detached_refresh_finished(s: &Stack, platform: &Platform, id: i64) {
    s.lock.faults.wait_for_calls("release", 1).await;
    assert!(s.lease_is_free(&key(platform, id)).await);
    assert_eq!(s.lock.faults.calls("release"), 1);
    let stored = s.stored(id).await;
    assert_eq!(stored.credentials_version, 1, "the rotation is persisted");
    assert_eq!(
        refresh_token_of(&stored),
        s.upstream.current_refresh_token(AccountId(id))
    );
    assert_eq!(s.upstream.calls(), 1);
}

// ---------------------------------------------------------------------------
// Not tested in Go: lock TTL expiry during a slow refresh
// ---------------------------------------------------------------------------

/// REFERENCE §12 "Not tested in Go": "Lock TTL expiry during a slow
/// refresh", when the lease lapses anyway (the lock store's clock passes the
/// TTL, as when extensions cannot reach it). Then:
/// - a second process takes the lapsed lease but finds the generation
///   claimed by the live first holder, and presents nothing (invariant 1
///   holds without the lease: issue 5);
/// - the first holder's rotation goes through the fenced write
///   (invariant 3), and its release is owner-checked: it does not delete
///   the lease a third process took meanwhile (defect 1, invariant 4);
/// - the second process, once the lease is free, finds the account fresh;
///   the last-issued refresh token is stored.
#[tokio::test]
async fn lock_ttl_expiry_during_slow_refresh_is_fenced_and_owner_checked() {
    let lock_clock = Arc::new(ManualClock::new(t0()));
    let s = Stack::with_repo(
        InMemoryAccountRepository::with_accounts([oauth_account(1, Platform::Anthropic, -60)]),
        Arc::new(ManualClock::new(t0())),
        Arc::clone(&lock_clock) as Arc<dyn Clock>,
    );
    let config = FlowConfig::default();
    let (a, b) = (s.flow(), s.flow());
    let executor = s.executor(Platform::Anthropic);
    let snapshot = oauth_account(1, Platform::Anthropic, -60);
    let k = key(&Platform::Anthropic, 1);
    s.upstream.hold_responses();

    let first = tokio::spawn({
        let (executor, snapshot) = (Arc::clone(&executor), snapshot.clone());
        async move { a.refresh_if_needed(&snapshot, &executor, WINDOW).await }
    });
    s.upstream.wait_for_calls(1).await;
    assert!(!s.lease_is_free(&k).await);

    // The slow answer outlives the lease; the second process takes it.
    lock_clock.advance(config.lease_ttl + Duration::from_secs(1));
    let acquires = s.lock_calls("try_acquire");
    let outcome = b
        .refresh_if_needed(&snapshot, &executor, WINDOW)
        .await
        .expect("a live claim is not an error");
    assert_eq!(outcome, RefreshOutcome::HeldElsewhere);
    assert_eq!(
        s.lock_calls("try_acquire"),
        acquires + 1,
        "the second process got past the lapsed lease"
    );
    assert_eq!(
        (s.upstream.calls(), s.upstream.reuses()),
        (1, 0),
        "the claim, not the lease, kept the token from a second presentation"
    );

    // A third process holds the lease when the first answer arrives.
    let third = s.hold(&k).await;
    s.upstream.release(1);
    let outcome = first.await.expect("first task").expect("first refresh");
    let RefreshOutcome::Refreshed { account: mine, .. } = outcome else {
        panic!("expected Refreshed, got {outcome:?}");
    };
    assert_eq!(mine.credentials_version, 1);
    assert_eq!(refresh_token_of(&mine).as_deref(), Some("rt-1-1"));
    assert!(
        !s.lease_is_free(&k).await,
        "the lapsed holder's release left the third process's lease alone"
    );
    let outcome = b
        .refresh_if_needed(&snapshot, &executor, WINDOW)
        .await
        .expect("lease held");
    assert_eq!(outcome, RefreshOutcome::HeldElsewhere);
    assert!(s.lock.inner().release(&third).await.expect("release"));

    let outcome = b
        .refresh_if_needed(&snapshot, &executor, WINDOW)
        .await
        .expect("fresh after the re-read");
    assert_eq!(
        outcome,
        RefreshOutcome::StillFresh {
            account: mine.clone()
        }
    );
    assert!(s.lease_is_free(&k).await);

    let stored = s.stored(1).await;
    assert_eq!(stored, mine);
    assert_eq!(
        refresh_token_of(&stored),
        s.upstream.current_refresh_token(AccountId(1))
    );
    assert_eq!(stored.status, AccountStatus::Active);
    assert_eq!(s.repo_calls("compare_and_set_credentials"), 1);
    assert_eq!(s.repo_calls("set_error"), 0);
    assert_eq!((s.upstream.calls(), s.upstream.successes()), (1, 1));
    assert_eq!(s.claims_in(1, ClaimState::Consumed), 1);
}

/// REFERENCE §12 "Not tested in Go": "Lock TTL expiry during a slow
/// refresh", when the refresh is slower than the flow's hard deadline H.
/// The upstream rotated on arrival; the flow aborts the call at H (the late
/// answer is never delivered: there are no late answers any more) and
/// quarantines the generation claim. Until the quarantine ends, another
/// refresh of the account fails fast with `Quarantined` and does not
/// present the consumed token (invariant 1, defect 2: Go's lock expired
/// while the refresh still ran, and the next worker replayed the token).
///
/// After the quarantine a new holder may present the token again: the
/// upstream already consumed it and says so (`invalid_grant`), the
/// generation is marked dead and the refusal stands. That is the residual
/// risk issue 5 names: the window between the upstream committing a
/// rotation and the first durable write of the answer.
#[tokio::test(start_paused = true)]
async fn lock_ttl_expiry_during_slow_refresh_keeps_a_second_sender_out_until_the_quarantine_ends() {
    let s = Stack::new([oauth_account(1, Platform::OpenAi, -60)]);
    let config = short_upstream_timeout();
    let flow = s.process(LockStrategy::single(s.lock.clone()), config.clone());
    let slow = Arc::new(SlowFirstAnswer::new(s.rotating(Platform::OpenAi)));
    let executor = Arc::clone(&slow) as Arc<dyn RefreshExecutor>;
    let snapshot = oauth_account(1, Platform::OpenAi, -60);

    let started = tokio::time::Instant::now();
    let error = flow
        .refresh_if_needed(&snapshot, &executor, WINDOW)
        .await
        .expect_err("no answer within the hard deadline");
    assert_eq!(started.elapsed(), config.upstream_timeout, "aborted at H");
    assert!(
        matches!(
            error.provider_error(),
            Some(ProviderError::Ambiguous { .. })
        ),
        "{error:?}"
    );
    assert_eq!(s.upstream.calls(), 1);
    assert_eq!(s.upstream.successes(), 1, "the upstream rotated on arrival");
    assert!(slow.aborted.load(Ordering::SeqCst), "the call was aborted");
    assert_eq!(s.claims_in(1, ClaimState::Quarantined), 1);
    assert!(s.lease_is_free(&key(&Platform::OpenAi, 1)).await);

    // The caller (a getter, or the background's next attempt) tries again.
    let again = flow.refresh_if_needed(&snapshot, &executor, WINDOW).await;
    assert!(
        matches!(again, Err(FlowError::Quarantined { .. })),
        "{again:?}"
    );
    assert_eq!(
        (s.upstream.calls(), s.upstream.reuses()),
        (1, 0),
        "the consumed refresh token was not presented again"
    );

    // The late answer can no longer land: the call is gone.
    slow.answer.notify_one();
    settle(async || slow.delivered.load(Ordering::SeqCst)).await;
    assert!(!slow.delivered.load(Ordering::SeqCst));
    assert_eq!(s.stored(1).await.credentials_version, 0);

    // Just before the quarantine ends: still quarantined.
    tokio::time::advance(config.quarantine - Duration::from_secs(1)).await;
    let again = flow.refresh_if_needed(&snapshot, &executor, WINDOW).await;
    assert!(
        matches!(again, Err(FlowError::Quarantined { .. })),
        "{again:?}"
    );
    assert_eq!(s.upstream.calls(), 1);

    // After it: one more presentation, refused, the generation dead.
    tokio::time::advance(Duration::from_secs(2)).await;
    let after = flow.refresh_if_needed(&snapshot, &executor, WINDOW).await;
    assert!(
        matches!(&after, Err(FlowError::Upstream { source, .. }) if source.is_grant_rejected()),
        "{after:?}"
    );
    assert_eq!((s.upstream.calls(), s.upstream.reuses()), (2, 1));
    assert_eq!(s.claims_in(1, ClaimState::Consumed), 1);
    let again = flow.refresh_if_needed(&snapshot, &executor, WINDOW).await;
    assert!(
        matches!(again, Err(FlowError::CredentialsRegressed { .. })),
        "a dead generation is never presented again: {again:?}"
    );
    assert_eq!(s.upstream.calls(), 2);
}

/// The background consequence of the case above (REFERENCE §11, invariant
/// 6): a refresh slower than the hard deadline is retried after the
/// backoff; the retry must not replay the consumed token, be told
/// `refresh_token_reused`, and mark the healthy account `error`. Under
/// claims the retry meets the quarantine, and neither it nor the next cycle
/// marks the account.
#[tokio::test(start_paused = true)]
async fn lock_ttl_expiry_during_slow_refresh_background_does_not_mark_the_account_error() {
    let s = Stack::new([oauth_account(1, Platform::OpenAi, 60)]);
    let flow = s.process(
        LockStrategy::single(s.lock.clone()),
        short_upstream_timeout(),
    );
    let slow = Arc::new(SlowFirstAnswer::new(s.rotating(Platform::OpenAi)));
    let refresher = BackgroundRefresher::builder(
        flow,
        ExecutorRegistry::new().with(Arc::clone(&slow) as Arc<dyn RefreshExecutor>),
    )
    .build()
    .expect("valid config");

    let report = refresher.run_once().await;

    assert_eq!(
        s.upstream.reuses(),
        0,
        "a retry replayed the consumed refresh token: {report:?}"
    );
    assert_eq!(s.upstream.calls(), 1);
    assert_eq!((report.failed, report.marked_error), (1, 0), "{report:?}");
    assert_eq!(
        s.claim_calls("acquire"),
        3,
        "the retry met the quarantine on its snapshot, then again after the re-read"
    );
    assert_eq!(s.repo_calls("set_error"), 0);
    assert_eq!(s.stored(1).await.status, AccountStatus::Active);

    // The next cycle, within the quarantine: no call, no mark.
    let report = refresher.run_once().await;
    assert_eq!((report.failed, report.marked_error), (1, 0), "{report:?}");
    assert_eq!((s.upstream.calls(), s.upstream.reuses()), (1, 0));
    assert_eq!(s.repo_calls("set_error"), 0);
    let stored = s.stored(1).await;
    assert_eq!(stored.status, AccountStatus::Active);
    assert_eq!(stored.error_message, None);
    assert!(!slow.delivered.load(Ordering::SeqCst));
}

// ---------------------------------------------------------------------------
// Not tested in Go: a proxy lookup failure failing the refresh
// ---------------------------------------------------------------------------

/// REFERENCE §12 "Not tested in Go": "A proxy lookup failure failing the
/// refresh" (defect 16), at the flow: the executor's configuration error
/// surfaces typed and non-retryable, without race recovery, nothing is
/// persisted, the generation claim is released (a configuration error is
/// raised before sending), and the lease is released.
#[tokio::test]
async fn proxy_lookup_failure_fails_the_refresh() {
    let mut stored = oauth_account(1, Platform::Gemini, -60);
    stored.proxy = Some("http://10.0.0.9:3128".parse().unwrap());
    let s = Stack::on_clock([stored.clone()], Arc::new(ManualClock::new(t0())));
    let failing = Arc::new(ProxyLookupFails::new(Platform::Gemini));
    let executor = Arc::clone(&failing) as Arc<dyn RefreshExecutor>;

    let error = s
        .flow()
        .refresh_if_needed(&stored, &executor, WINDOW)
        .await
        .expect_err("a missing proxy fails the refresh");

    let FlowError::Upstream {
        id,
        source: ProviderError::Configuration { reason },
        ..
    } = &error
    else {
        panic!("expected Upstream(Configuration), got {error:?}");
    };
    assert_eq!(*id, AccountId(1));
    assert!(reason.contains("proxy 10.0.0.9"), "{reason}");
    assert_eq!(error.stage(), FlowStage::Upstream);
    assert!(!error.is_retryable(), "a human must fix the proxy");
    assert_eq!(failing.attempts.load(Ordering::SeqCst), 1);
    assert_eq!(
        s.repo_calls("get"),
        1,
        "the re-read after claiming on the snapshot; no race recovery"
    );
    assert_eq!(
        s.repo_calls("compare_and_set_credentials"),
        0,
        "nothing persisted"
    );
    assert!(
        s.claims.inner().is_empty(),
        "nothing was sent: the claim is released, nothing quarantined"
    );
    assert_eq!(s.lock.faults.calls("release"), 1);
    assert!(s.lease_is_free(&key(&Platform::Gemini, 1)).await);
    assert_eq!(s.stored(1).await, stored);
}

/// REFERENCE §12 "Not tested in Go": "A proxy lookup failure failing the
/// refresh", in the background on every platform: one attempt (no retries),
/// no persist, and the account marked `error` once with a short, sanitized
/// message that names the kind and carries no token.
#[tokio::test(start_paused = true)]
async fn proxy_lookup_failure_marks_the_account_error_in_the_background() {
    for platform in PLATFORMS {
        let mut stored = oauth_account(1, platform.clone(), 60);
        stored.proxy = Some("http://10.0.0.9:3128".parse().unwrap());
        let s = Stack::new([stored.clone()]);
        let failing = Arc::new(ProxyLookupFails::new(platform.clone()));
        let refresher = BackgroundRefresher::builder(
            s.flow(),
            ExecutorRegistry::new().with(Arc::clone(&failing) as Arc<dyn RefreshExecutor>),
        )
        .cache(Arc::clone(&s.cache) as Arc<dyn TokenCache>)
        .build()
        .expect("valid config");

        let report = refresher.run_once().await;

        assert_eq!(
            report,
            CycleReport {
                total: 1,
                due: 1,
                failed: 1,
                marked_error: 1,
                ..CycleReport::default()
            },
            "{platform}"
        );
        assert_eq!(
            failing.attempts.load(Ordering::SeqCst),
            1,
            "{platform}: no retry"
        );
        assert_eq!(s.repo_calls("compare_and_set_credentials"), 0, "{platform}");
        assert_eq!(s.repo_calls("set_error"), 1, "{platform}");
        assert_eq!(s.cache_calls("invalidate"), 0, "{platform}");
        let now = s.stored(1).await;
        assert_eq!(now.status, AccountStatus::Error, "{platform}");
        assert_eq!(
            now.credentials, stored.credentials,
            "{platform}: tokens kept"
        );
        let message = now.error_message.unwrap_or_default();
        assert!(
            message.starts_with("Token refresh failed (non-retryable)"),
            "{platform}: {message}"
        );
        assert!(message.contains("configuration"), "{platform}: {message}");
        assert!(message.contains("proxy 10.0.0.9"), "{platform}: {message}");
        assert!(message.chars().count() <= 500, "{platform}");
        for secret in ["at-1-0", "rt-1-0"] {
            assert!(!message.contains(secret), "{platform}: {message}");
        }
    }
}
