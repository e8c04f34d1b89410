//! Conformance suite of [`RefreshExecutor`]: what the flow relies on from
//! every provider plugin.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::domain::{Account, AccountId, AccountType, RefreshKey, keys};
use crate::error::ProviderError;
use crate::ports::{RefreshContext, RefreshExecutor};

/// Deadline of each executor call the suite makes.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs every check against `executor`. `account(id)` must return an
/// account of the executor's platform, type `oauth`, whose refresh token the
/// executor's upstream (an emulator or stub, never a real host) accepts once;
/// it is called with a new id for each check that refreshes. `now` is the
/// instant the executor's clock reads.
///
/// # Panics
/// On the first violated contract clause, naming the check.
pub async fn refresh_executor_suite<F, Fut>(
    executor: Arc<dyn RefreshExecutor>,
    account: F,
    now: DateTime<Utc>,
) where
    F: Fn(AccountId) -> Fut,
    Fut: Future<Output = Account>,
{
    eligibility_follows_platform_and_type(executor.as_ref(), account(AccountId(9_001)).await);
    key_depends_only_on_the_account_id(executor.as_ref(), account(AccountId(9_002)).await);
    missing_refresh_token_fails_before_any_call(executor.as_ref(), account(AccountId(9_003)).await)
        .await;
    refresh_returns_merged_credentials(executor.as_ref(), account(AccountId(9_004)).await, now)
        .await;
    due_predicate_honours_the_window(executor.as_ref(), account(AccountId(9_005)).await, now);
}

fn eligibility_follows_platform_and_type(executor: &dyn RefreshExecutor, account: Account) {
    assert_eq!(
        account.platform,
        executor.platform(),
        "eligibility: fixture platform"
    );
    assert!(
        executor.can_refresh(&account),
        "eligibility: an oauth account of the platform is refreshable"
    );
    let mut other_type = account.clone();
    other_type.account_type = AccountType::ApiKey;
    assert!(
        !executor.can_refresh(&other_type),
        "eligibility: an apikey account is not refreshed"
    );
}

fn key_depends_only_on_the_account_id(executor: &dyn RefreshExecutor, account: Account) {
    let key = executor.key(&account);
    assert_eq!(
        key,
        RefreshKey::for_account(&account.platform, account.id),
        "key: <prefix>:account:<id>"
    );
    let mut backfilled = account.clone();
    backfilled
        .credentials
        .insert("project_id", "backfilled-project");
    backfilled
        .credentials
        .insert(keys::ACCESS_TOKEN, "another-token");
    assert_eq!(
        executor.key(&backfilled),
        key,
        "key: unchanged by credential edits (defect 8)"
    );
}

async fn missing_refresh_token_fails_before_any_call(
    executor: &dyn RefreshExecutor,
    mut account: Account,
) {
    account.credentials.remove(keys::REFRESH_TOKEN);
    let err = executor
        .refresh(&account, &RefreshContext::for_token("", CALL_TIMEOUT))
        .await
        .expect_err("missing refresh token");
    assert_eq!(
        err,
        ProviderError::MissingRefreshToken,
        "missing_refresh_token: typed error"
    );
    account.credentials.insert(keys::REFRESH_TOKEN, "   ");
    let err = executor
        .refresh(&account, &RefreshContext::for_token("   ", CALL_TIMEOUT))
        .await
        .expect_err("blank refresh token");
    assert_eq!(
        err,
        ProviderError::MissingRefreshToken,
        "missing_refresh_token: blank counts as missing"
    );
}

async fn refresh_returns_merged_credentials(
    executor: &dyn RefreshExecutor,
    mut account: Account,
    now: DateTime<Utc>,
) {
    account
        .credentials
        .insert("intercept_warmup_requests", json!(true));
    let old_refresh = account.credentials.refresh_token();
    let ctx = RefreshContext::for_token(
        old_refresh.clone().expect("fixture refresh token"),
        CALL_TIMEOUT,
    );
    let creds = executor
        .refresh(&account, &ctx)
        .await
        .expect("refresh succeeds against the fixture upstream");
    let access = creds
        .access_token()
        .expect("refresh: an access token is returned");
    assert_ne!(
        Some(access),
        account.credentials.access_token(),
        "refresh: a new access token"
    );
    assert!(
        creds.refresh_token().is_some(),
        "refresh: a refresh token survives (new or kept)"
    );
    assert!(old_refresh.is_some());
    assert_eq!(
        creds.get("intercept_warmup_requests"),
        Some(&json!(true)),
        "refresh: unrelated keys survive the merge"
    );
    let expires_at = creds.expires_at().expect("refresh: expires_at is readable");
    if let Some(at) = expires_at {
        assert!(at > now, "refresh: the new token is not already expired");
    }
}

fn due_predicate_honours_the_window(
    executor: &dyn RefreshExecutor,
    mut account: Account,
    now: DateTime<Utc>,
) {
    let window = Duration::from_secs(180).max(executor.min_window());
    account.credentials.set_expires_at(
        now + chrono::Duration::from_std(window).unwrap_or_default() + chrono::Duration::hours(1),
    );
    assert!(
        !executor.needs_refresh(&account, Duration::from_secs(180), now),
        "due: far from expiry is not due"
    );
    account
        .credentials
        .set_expires_at(now + chrono::Duration::seconds(10));
    assert!(
        executor.needs_refresh(&account, Duration::from_secs(180), now),
        "due: within the window is due"
    );
    account.credentials.remove(keys::EXPIRES_AT);
    assert!(
        executor.needs_refresh(&account, Duration::from_secs(180), now),
        "due: unknown expiry is due"
    );
}
