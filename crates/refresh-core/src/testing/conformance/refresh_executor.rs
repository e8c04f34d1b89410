//! Conformance suites of [`RefreshExecutor`]: what the flow relies on from
//! every provider plugin.
//!
//! - [`refresh_executor_suite`] runs against the plugin's upstream emulator
//!   (or [`FakeUpstream`](crate::testing::FakeUpstream)): eligibility, the
//!   key, the due predicate, and refreshes that check the rotation is
//!   returned, the claimed token is the one presented, and a consumed token
//!   is a final `InvalidGrant`.
//! - [`token_endpoint_mapping_suite`] points the executor at a
//!   [`TokenEndpoint`] and checks how each status and body becomes a
//!   [`ProviderError`], that each `refresh()` sends one token request and
//!   never retries after sending, and that no token reaches an error.
//!
//! Every check runs under a timeout and names itself in its panic:
//! `<suite>: <check>: <what broke>`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::time::Instant;

use super::harness::{Checks, check};
use crate::domain::{Account, AccountId, AccountType, Credentials, Platform, Secret, keys};
use crate::error::ProviderError;
use crate::ports::{ManualClock, RefreshContext, RefreshExecutor};
use crate::testing::{ScriptedReply, TokenEndpoint};

/// Bound of each executor call the suites make.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Token values shorter than this are not searched for in error texts (a
/// two-letter fixture token would match ordinary words).
const MIN_SEARCHED_TOKEN: usize = 8;

/// Runs every upstream-independent check against `executor`.
///
/// `account(id)` must return an account of the executor's platform, type
/// `oauth`, whose stored refresh token the executor's upstream (an emulator
/// or stub, never a real host) accepts, and which the upstream has not seen
/// before; it is called with a new id for each check. Refresh checks then
/// refresh up to three times in a row from the returned credentials, so
/// the upstream must rotate (or keep) tokens as the real one does. `now` is
/// the time of the [`RefreshContext`] clock the suite passes.
///
/// The checks, in order:
/// - `platform_is_the_fixtures`: `platform()` equals the fixture's, and
///   the fixture is `can_refresh`;
/// - `other_platforms_and_types_are_not_refreshed`;
/// - `key_is_stable_across_credential_changes` and
///   `key_is_distinct_per_account_id` (any id-only key passes, e.g. an
///   override `myplugin:{id}`);
/// - `refresh_returns_merged_credentials`;
/// - `second_refresh_from_the_returned_credentials_succeeds`: an executor
///   that drops the rotated refresh token fails here;
/// - `refresh_presents_the_ctx_refresh_token`: the account stores a token
///   the upstream rejects, `ctx.refresh_token` is the accepted one;
/// - `blank_ctx_refresh_token_is_missing_even_when_one_is_stored`;
/// - `consumed_refresh_token_is_a_final_invalid_grant` (for an upstream
///   that rotated; a non-rotating one accepts the token again);
/// - `missing_refresh_token_is_a_typed_error`;
/// - `due_predicate_honours_the_window`.
///
/// Every error seen is also checked for token text (the fixture's tokens,
/// the presented ones and the issued ones) in its `Display` and `Debug`.
/// Status and body mapping, request counts and retries need an HTTP
/// endpoint: see [`token_endpoint_mapping_suite`].
///
/// # Panics
/// On the first violated contract clause, naming the check; a check that
/// does not finish within its timeout panics too.
pub async fn refresh_executor_suite<F, Fut>(
    executor: Arc<dyn RefreshExecutor>,
    account: F,
    now: DateTime<Utc>,
) where
    F: Fn(AccountId) -> Fut,
    Fut: Future<Output = Account>,
{
    let checks = Checks::new("refresh_executor_suite");
    let ex = executor.as_ref();
    check!(
        checks,
        platform_is_the_fixtures(ex, account(AccountId(9_001)).await)
    );
    check!(
        checks,
        other_platforms_and_types_are_not_refreshed(ex, account(AccountId(9_002)).await)
    );
    check!(
        checks,
        key_is_stable_across_credential_changes(ex, account(AccountId(9_003)).await)
    );
    check!(
        checks,
        key_is_distinct_per_account_id(
            ex,
            account(AccountId(9_004)).await,
            account(AccountId(9_005)).await
        )
    );
    check!(
        checks,
        refresh_returns_merged_credentials(ex, account(AccountId(9_006)).await, now)
    );
    check!(
        checks,
        second_refresh_from_the_returned_credentials_succeeds(
            ex,
            account(AccountId(9_007)).await,
            now
        )
    );
    check!(
        checks,
        refresh_presents_the_ctx_refresh_token(ex, account(AccountId(9_008)).await, now)
    );
    check!(
        checks,
        blank_ctx_refresh_token_is_missing_even_when_one_is_stored(
            ex,
            account(AccountId(9_009)).await,
            now
        )
    );
    check!(
        checks,
        consumed_refresh_token_is_a_final_invalid_grant(ex, account(AccountId(9_010)).await, now)
    );
    check!(
        checks,
        missing_refresh_token_is_a_typed_error(ex, account(AccountId(9_011)).await, now)
    );
    check!(
        checks,
        due_predicate_honours_the_window(ex, account(AccountId(9_012)).await, now)
    );
}

/// A context presenting `token`, on a clock reading `now`, due in
/// [`CALL_TIMEOUT`].
fn context(token: &str, now: DateTime<Utc>) -> RefreshContext {
    context_until(token, now, CALL_TIMEOUT)
}

fn context_until(token: &str, now: DateTime<Utc>, timeout: Duration) -> RefreshContext {
    RefreshContext::new(
        Secret::from(token),
        Arc::new(ManualClock::new(now)),
        Instant::now() + timeout,
    )
}

/// `executor.refresh`, bounded by [`CALL_TIMEOUT`] plus a second.
async fn call(
    executor: &dyn RefreshExecutor,
    account: &Account,
    ctx: &RefreshContext,
) -> Result<Credentials, ProviderError> {
    let limit = CALL_TIMEOUT + Duration::from_secs(1);
    tokio::time::timeout(limit, executor.refresh(account, ctx))
        .await
        .unwrap_or_else(|_| panic!("refresh() did not return within {limit:?}"))
}

/// The stored token of a fixture account.
fn stored(account: &Account, what: &str) -> String {
    account
        .credentials
        .refresh_token()
        .unwrap_or_else(|| panic!("{what}: the fixture account has no refresh token"))
        .expose()
        .to_owned()
}

/// Every token text of `creds` (access and refresh).
fn tokens_of(creds: &Credentials) -> Vec<String> {
    [creds.access_token(), creds.refresh_token()]
        .into_iter()
        .flatten()
        .map(|s| s.expose().to_owned())
        .collect()
}

/// Panics when `err` shows any of `tokens` in its `Display` or `Debug`
/// (which covers every reason and description field).
fn assert_no_token_text(err: &ProviderError, tokens: &[String]) {
    let shown = format!("{err} {err:?}");
    for token in tokens.iter().filter(|t| t.len() >= MIN_SEARCHED_TOKEN) {
        assert!(
            !shown.contains(token.as_str()),
            "the {} error shows token text in its Display/Debug (a token presented or \
             issued must never reach an error, a log line or error_message)",
            err.kind_name()
        );
    }
}

async fn platform_is_the_fixtures(executor: &dyn RefreshExecutor, account: Account) {
    assert_eq!(
        executor.platform(),
        account.platform,
        "platform() must equal the fixture account's platform"
    );
    assert!(
        executor.can_refresh(&account),
        "an oauth account of the executor's platform must be can_refresh"
    );
}

async fn other_platforms_and_types_are_not_refreshed(
    executor: &dyn RefreshExecutor,
    account: Account,
) {
    let mut other_platform = account.clone();
    other_platform.platform = if account.platform == Platform::Anthropic {
        Platform::OpenAi
    } else {
        Platform::Anthropic
    };
    assert!(
        !executor.can_refresh(&other_platform),
        "an account of platform {} is refreshed by the {} executor",
        other_platform.platform,
        executor.platform()
    );
    for static_type in [
        AccountType::ApiKey,
        AccountType::SetupToken,
        AccountType::Upstream,
        AccountType::Bedrock,
    ] {
        let mut other_type = account.clone();
        other_type.account_type = static_type;
        if static_type == AccountType::SetupToken {
            // A setup token that carries a refresh token may be refreshed
            // (Claude's since 2026-07, REFERENCE.md updates); one without
            // is static for every executor.
            other_type.credentials.remove(keys::REFRESH_TOKEN);
        }
        assert!(
            !executor.can_refresh(&other_type),
            "an account of type {} (a static credential) is refreshable",
            static_type.as_str()
        );
    }
}

async fn key_is_stable_across_credential_changes(executor: &dyn RefreshExecutor, account: Account) {
    let key = executor.key(&account);
    assert!(!key.as_str().trim().is_empty(), "the key is empty");
    let mut edited = account.clone();
    edited
        .credentials
        .insert(keys::REFRESH_TOKEN, "rt-after-a-rotation");
    edited
        .credentials
        .insert(keys::ACCESS_TOKEN, "at-after-a-rotation");
    edited
        .credentials
        .insert("project_id", "backfilled-project");
    edited
        .credentials
        .set_expires_at(DateTime::from_timestamp(2_000_000_000, 0).unwrap_or_default());
    edited.derive_expires_at();
    edited.credentials_version += 7;
    assert_eq!(
        executor.key(&edited),
        key,
        "the key changed with the credentials (tokens, project_id, expiry, version): it \
         must depend on the account id alone (defect 8)"
    );
    let mut no_tokens = account.clone();
    no_tokens.credentials.remove(keys::REFRESH_TOKEN);
    no_tokens.credentials.remove(keys::ACCESS_TOKEN);
    assert_eq!(
        executor.key(&no_tokens),
        key,
        "the key changed when the tokens were removed"
    );
}

async fn key_is_distinct_per_account_id(
    executor: &dyn RefreshExecutor,
    first: Account,
    second: Account,
) {
    assert_ne!(
        executor.key(&first),
        executor.key(&second),
        "two accounts with different ids share a key"
    );
    // Same credentials, different ids: the id alone must tell them apart.
    let keys: Vec<_> = [1, 2, 10, 11, 100, i64::MAX]
        .into_iter()
        .map(|id| {
            let mut copy = first.clone();
            copy.id = AccountId(id);
            executor.key(&copy)
        })
        .collect();
    for (i, a) in keys.iter().enumerate() {
        for b in &keys[i + 1..] {
            assert_ne!(
                a, b,
                "accounts with equal credentials and different ids share a key"
            );
        }
    }
}

async fn refresh_returns_merged_credentials(
    executor: &dyn RefreshExecutor,
    mut account: Account,
    now: DateTime<Utc>,
) {
    account
        .credentials
        .insert("intercept_warmup_requests", json!(true));
    let old = stored(&account, "refresh");
    let mut tokens = tokens_of(&account.credentials);
    let creds = match call(executor, &account, &context(&old, now)).await {
        Ok(creds) => creds,
        Err(err) => {
            assert_no_token_text(&err, &tokens);
            panic!(
                "refresh against the fixture upstream failed: {}",
                err.kind_name()
            )
        }
    };
    tokens.extend(tokens_of(&creds));
    let access = creds
        .access_token()
        .expect("the refreshed credentials have no access token");
    assert_ne!(
        Some(access),
        account.credentials.access_token(),
        "the access token did not change"
    );
    assert!(
        creds.refresh_token().is_some(),
        "the refreshed credentials have no refresh token (neither a new nor the kept one)"
    );
    assert_eq!(
        creds.get("intercept_warmup_requests"),
        Some(&json!(true)),
        "an unrelated key was lost: the new credentials must be merged over the old ones"
    );
    let expires_at = creds
        .expires_at()
        .expect("expires_at of the refreshed credentials is unreadable");
    if let Some(at) = expires_at {
        assert!(
            at > now,
            "the new access token is already expired at ctx.now() (expires_at must come \
             from ctx.now() plus expires_in)"
        );
    }
}

async fn second_refresh_from_the_returned_credentials_succeeds(
    executor: &dyn RefreshExecutor,
    mut account: Account,
    now: DateTime<Utc>,
) {
    let first_token = stored(&account, "rotation");
    let mut tokens = tokens_of(&account.credentials);
    let first = call(executor, &account, &context(&first_token, now))
        .await
        .unwrap_or_else(|err| {
            assert_no_token_text(&err, &tokens);
            panic!("the first refresh failed: {}", err.kind_name())
        });
    tokens.extend(tokens_of(&first));
    account.set_credentials(first.clone());
    account.credentials_version += 1;
    let next_token = stored(&account, "rotation");
    match call(executor, &account, &context(&next_token, now)).await {
        Ok(second) => {
            assert_ne!(
                second.access_token(),
                first.access_token(),
                "the second refresh returned the first access token again"
            );
        }
        Err(err) => {
            assert_no_token_text(&err, &tokens);
            panic!(
                "a second refresh from the returned credentials failed ({}): the executor \
                 must return the rotated refresh token (it dropped it, or kept the consumed one)",
                err.kind_name()
            );
        }
    }
}

async fn refresh_presents_the_ctx_refresh_token(
    executor: &dyn RefreshExecutor,
    mut account: Account,
    now: DateTime<Utc>,
) {
    let first_token = stored(&account, "ctx_token");
    let mut tokens = tokens_of(&account.credentials);
    // The first refresh makes the upstream know the account, so that a
    // token it never issued is refused from now on.
    let first = call(executor, &account, &context(&first_token, now))
        .await
        .unwrap_or_else(|err| {
            assert_no_token_text(&err, &tokens);
            panic!("the first refresh failed: {}", err.kind_name())
        });
    tokens.extend(tokens_of(&first));
    let claimed = first
        .refresh_token()
        .expect("the refreshed credentials have no refresh token")
        .expose()
        .to_owned();
    let not_claimed = format!("rt-stored-not-claimed-{}", account.id);
    tokens.push(not_claimed.clone());
    account.set_credentials(first.with(keys::REFRESH_TOKEN, not_claimed));
    match call(executor, &account, &context(&claimed, now)).await {
        Ok(creds) => tokens.extend(tokens_of(&creds)),
        Err(err) => {
            assert_no_token_text(&err, &tokens);
            panic!(
                "refresh failed ({}) when ctx.refresh_token is the upstream's current token \
                 and the account stores another one: the executor must present exactly \
                 ctx.refresh_token, never a token read from the account",
                err.kind_name()
            );
        }
    }
}

async fn blank_ctx_refresh_token_is_missing_even_when_one_is_stored(
    executor: &dyn RefreshExecutor,
    account: Account,
    now: DateTime<Utc>,
) {
    let tokens = tokens_of(&account.credentials);
    for blank in ["", "   "] {
        match call(executor, &account, &context(blank, now)).await {
            Err(ProviderError::MissingRefreshToken) => {}
            Err(err) => {
                assert_no_token_text(&err, &tokens);
                panic!(
                    "a blank ctx.refresh_token gave {} instead of MissingRefreshToken",
                    err.kind_name()
                );
            }
            Ok(_) => panic!(
                "a blank ctx.refresh_token refreshed (with the account's stored token?): it \
                 must fail with MissingRefreshToken before any call"
            ),
        }
    }
}

async fn consumed_refresh_token_is_a_final_invalid_grant(
    executor: &dyn RefreshExecutor,
    account: Account,
    now: DateTime<Utc>,
) {
    let consumed = stored(&account, "invalid_grant");
    let mut tokens = tokens_of(&account.credentials);
    let first = call(executor, &account, &context(&consumed, now))
        .await
        .unwrap_or_else(|err| {
            assert_no_token_text(&err, &tokens);
            panic!("the first refresh failed: {}", err.kind_name())
        });
    tokens.extend(tokens_of(&first));
    if first.refresh_token().map(|rt| rt.expose().to_owned()) == Some(consumed.clone()) {
        // The upstream kept the token (Google): presenting it again is
        // legal, so there is no consumed token to present. The endpoint
        // suite checks the invalid_grant mapping for every executor.
        return;
    }
    let mut again = account.clone();
    again.set_credentials(first);
    match call(executor, &again, &context(&consumed, now)).await {
        Ok(_) => panic!(
            "presenting the consumed refresh token succeeded: the fixture upstream must \
             remember issued tokens and refuse a used one with invalid_grant (a rotating \
             emulator, not a scripted endpoint), and the executor must present \
             ctx.refresh_token"
        ),
        Err(err) => {
            assert_no_token_text(&err, &tokens);
            assert!(
                matches!(err, ProviderError::InvalidGrant { .. }) && err.is_grant_rejected(),
                "the upstream refused a consumed token and the executor reported {} instead \
                 of InvalidGrant",
                err.kind_name()
            );
            assert!(
                !err.is_retryable(),
                "InvalidGrant for a consumed token is retryable"
            );
        }
    }
}

async fn missing_refresh_token_is_a_typed_error(
    executor: &dyn RefreshExecutor,
    mut account: Account,
    now: DateTime<Utc>,
) {
    let tokens = tokens_of(&account.credentials);
    account.credentials.remove(keys::REFRESH_TOKEN);
    for (stored, ctx) in [(None, ""), (Some("   "), "   ")] {
        if let Some(value) = stored {
            account.credentials.insert(keys::REFRESH_TOKEN, value);
        }
        match call(executor, &account, &context(ctx, now)).await {
            Err(ProviderError::MissingRefreshToken) => {}
            Err(err) => {
                assert_no_token_text(&err, &tokens);
                panic!(
                    "no refresh token gave {} instead of MissingRefreshToken",
                    err.kind_name()
                );
            }
            Ok(_) => panic!("an account without a refresh token was refreshed"),
        }
    }
}

async fn due_predicate_honours_the_window(
    executor: &dyn RefreshExecutor,
    mut account: Account,
    now: DateTime<Utc>,
) {
    let window = Duration::from_secs(180);
    let effective = window.max(executor.min_window());
    account.credentials.set_expires_at(
        now + chrono::Duration::from_std(effective).unwrap_or_default()
            + chrono::Duration::hours(1),
    );
    assert!(
        !executor.needs_refresh(&account, window, now),
        "a token an hour past the window is due"
    );
    account
        .credentials
        .set_expires_at(now + chrono::Duration::seconds(10));
    assert!(
        executor.needs_refresh(&account, window, now),
        "a token expiring within the window is not due"
    );
    account.credentials.remove(keys::EXPIRES_AT);
    assert!(
        executor.needs_refresh(&account, window, now),
        "a token of unknown expiry is not due"
    );
}

/// Runs the status/body → [`ProviderError`] mapping checks and the
/// one-request-per-refresh checks against executors pointed at a fresh
/// [`TokenEndpoint`] each.
///
/// `make_executor(base_url)` builds the executor with every upstream URL
/// (the token endpoint, and any follow-up such as a profile or project
/// lookup) under `base_url` (`http://127.0.0.1:<port>`, no trailing
/// slash); the endpoint answers any path. `account(id)` returns an account
/// of the executor's platform, type `oauth`, with whatever non-token keys
/// the executor needs (client id, project id); the suite overwrites its
/// `access_token` and `refresh_token` with its own values. `now` is the
/// time of the context clock.
///
/// The first request of each `refresh()` must be the token request; it is
/// recognized by carrying `ctx.refresh_token` (in the body, a header or
/// the target). Each check scripts one or two replies; every request after
/// them (a follow-up, or a forbidden retry) gets `503` with an HTML body.
/// The 2xx token answer is
/// `{"access_token", "refresh_token", "token_type": "Bearer",
/// "expires_in": 3600, "scope"}`.
///
/// The checks, in order:
/// - `one_token_request_presents_exactly_the_ctx_refresh_token`: a 2xx
///   answer, then exactly one request carrying `ctx.refresh_token` and
///   none carrying the account's stored one;
/// - `success_answer_is_returned_merged_over_the_account`: the issued
///   tokens come back, merged; a follow-up that fails after the 2xx is
///   not the refresh's error;
/// - `blank_ctx_refresh_token_sends_nothing`;
/// - `flat_invalid_grant_is_a_final_invalid_grant`,
///   `nested_refresh_token_reused_is_a_final_invalid_grant`;
/// - `invalid_client_is_invalid_client`;
/// - `rate_limit_keeps_retry_after` (`Retry-After: 7`);
/// - `server_error_is_reported_once_not_retried`: 503 then a 2xx; the
///   executor must report `ServerError` after exactly one request;
/// - `non_json_2xx_is_an_invalid_response`,
///   `two_xx_without_access_token_is_an_invalid_response` (neither token);
/// - `two_xx_rotation_without_access_token_returns_the_rotation`: a 2xx
///   with a new refresh token and no access token is returned as that
///   rotation, without a fresh expiry for the old access token;
/// - `reset_after_sending_may_have_consumed_the_token`: a connection reset
///   after the request was read is not `NotSent` (nor any other
///   provably-not-consumed kind) and is not retried;
/// - `held_request_is_not_reported_as_not_sent`: no answer until a
///   1 s `ctx.deadline`; an error then must not be provably-not-consumed
///   (an executor that does not return by the deadline passes: the flow
///   aborts it there).
///
/// Every error is checked for the suite's tokens (presented, stored and
/// issued; the error bodies quote them) in its `Display` and `Debug`.
///
/// Runs on real time (the endpoint is a real socket): do not call it from
/// a `start_paused` runtime.
///
/// # Panics
/// On the first violated contract clause, naming the check; a check that
/// does not finish within its timeout panics too.
pub async fn token_endpoint_mapping_suite<M, F, Fut>(
    make_executor: M,
    account: F,
    now: DateTime<Utc>,
) where
    M: Fn(&str) -> Arc<dyn RefreshExecutor>,
    F: Fn(AccountId) -> Fut,
    Fut: Future<Output = Account>,
{
    let checks = Checks::new("token_endpoint_mapping_suite");
    let make = &make_executor;
    macro_rules! endpoint_check {
        ($check:ident, $id:expr) => {
            check!(
                checks,
                $check(EndpointSetup::start(make, account(AccountId($id)).await, now).await)
            )
        };
    }
    endpoint_check!(
        one_token_request_presents_exactly_the_ctx_refresh_token,
        9_101
    );
    endpoint_check!(success_answer_is_returned_merged_over_the_account, 9_102);
    endpoint_check!(blank_ctx_refresh_token_sends_nothing, 9_103);
    endpoint_check!(flat_invalid_grant_is_a_final_invalid_grant, 9_104);
    endpoint_check!(nested_refresh_token_reused_is_a_final_invalid_grant, 9_105);
    endpoint_check!(invalid_client_is_invalid_client, 9_106);
    endpoint_check!(rate_limit_keeps_retry_after, 9_107);
    endpoint_check!(server_error_is_reported_once_not_retried, 9_108);
    endpoint_check!(non_json_2xx_is_an_invalid_response, 9_109);
    endpoint_check!(two_xx_without_access_token_is_an_invalid_response, 9_110);
    endpoint_check!(
        two_xx_rotation_without_access_token_returns_the_rotation,
        9_115
    );
    endpoint_check!(reset_after_sending_may_have_consumed_the_token, 9_111);
    endpoint_check!(held_request_is_not_reported_as_not_sent, 9_112);
    check!(
        checks,
        refused_connection_is_not_sent(make, account(AccountId(9_113)).await, now)
    );
}

/// A port nobody listens on refuses the connection: the request provably
/// never left, so the executor must say `NotSent` (the flow then releases
/// the claim instead of quarantining the token).
async fn refused_connection_is_not_sent<M>(make: &M, account: Account, now: DateTime<Utc>)
where
    M: Fn(&str) -> Arc<dyn RefreshExecutor>,
{
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        listener.local_addr().expect("local address")
    };
    let executor = make(&format!("http://{closed}"));
    let claimed = format!("RT-claimed-{}-Wd2Kq8Ls5Nf1", account.id);
    match call(executor.as_ref(), &account, &context(&claimed, now)).await {
        Err(ProviderError::NotSent { .. }) => {}
        Err(err) => panic!(
            "a refused connection gave {} instead of NotSent: map connect errors with \
             ProviderError::transport(false, ..), or the claim is quarantined for nothing",
            err.kind_name()
        ),
        Ok(_) => panic!("a refresh against a closed port succeeded"),
    }
}

/// Issued lifetime of the suite's 2xx answers.
const ISSUED_EXPIRES_IN: i64 = 3600;

/// One check's endpoint, executor and account, with the token values of
/// this account: URL-safe, and token-like (mixed case, long), so that
/// [`sanitize_description`](crate::error::sanitize_description) redacts
/// them from quoted upstream descriptions.
struct EndpointSetup {
    endpoint: TokenEndpoint,
    executor: Arc<dyn RefreshExecutor>,
    account: Account,
    now: DateTime<Utc>,
    /// `ctx.refresh_token`: the one token the executor may present.
    claimed: String,
    /// The account's stored refresh token, which must never be presented.
    stored_refresh: String,
    issued_access: String,
    issued_refresh: String,
    tokens: Vec<String>,
}

impl EndpointSetup {
    async fn start<M>(make: &M, mut account: Account, now: DateTime<Utc>) -> Self
    where
        M: Fn(&str) -> Arc<dyn RefreshExecutor>,
    {
        let endpoint = TokenEndpoint::start()
            .await
            .expect("cannot bind the loopback token endpoint");
        endpoint.set_fallback(ScriptedReply::html(
            503,
            "<html><body>503 Service Unavailable (no scripted reply)</body></html>",
        ));
        let executor = make(&endpoint.url());
        let id = account.id;
        let claimed = format!("RT-claimed-{id}-Xq7Lm2Pz9Kd4");
        let stored_refresh = format!("RT-stored-{id}-Hb3Nc8Vw1Ty6");
        let stored_access = format!("AT-stored-{id}-Jf5Rg0Ue7Wm2");
        let issued_access = format!("AT-issued-{id}-Zs4Dk9Qa3Lp8");
        let issued_refresh = format!("RT-issued-{id}-Yc6Bn1Xe5Mv0");
        account
            .credentials
            .insert(keys::REFRESH_TOKEN, stored_refresh.as_str());
        account
            .credentials
            .insert(keys::ACCESS_TOKEN, stored_access.as_str());
        account
            .credentials
            .insert("suite_unrelated_key", json!(true));
        let tokens = vec![
            claimed.clone(),
            stored_refresh.clone(),
            stored_access,
            issued_access.clone(),
            issued_refresh.clone(),
        ];
        Self {
            endpoint,
            executor,
            account,
            now,
            claimed,
            stored_refresh,
            issued_access,
            issued_refresh,
            tokens,
        }
    }

    fn push(&self, reply: ScriptedReply) -> &Self {
        self.endpoint.push(reply);
        self
    }

    /// The 2xx token answer.
    fn success(&self) -> ScriptedReply {
        ScriptedReply::json(
            200,
            &json!({
                "access_token": self.issued_access,
                "refresh_token": self.issued_refresh,
                "token_type": "Bearer",
                "expires_in": ISSUED_EXPIRES_IN,
                "scope": "openid profile",
            }),
        )
    }

    async fn refresh(&self) -> Result<Credentials, ProviderError> {
        call(
            self.executor.as_ref(),
            &self.account,
            &context(&self.claimed, self.now),
        )
        .await
    }

    /// The error of a refresh that must fail, checked for token text.
    async fn refresh_err(&self, what: &str) -> ProviderError {
        match self.refresh().await {
            Ok(_) => panic!("{what}: refresh() returned Ok"),
            Err(err) => {
                assert_no_token_text(&err, &self.tokens);
                err
            }
        }
    }

    /// Requests presenting `ctx.refresh_token`.
    fn token_requests(&self) -> usize {
        self.endpoint.requests_containing(&self.claimed).len()
    }

    /// Exactly one token request, presenting the claimed token only.
    fn assert_one_token_request(&self, after: &str) {
        assert!(
            self.endpoint
                .requests_containing(&self.stored_refresh)
                .is_empty(),
            "after {after}: a request presented the account's stored refresh token; the \
             executor must present exactly ctx.refresh_token"
        );
        let sent = self.token_requests();
        assert_eq!(
            sent, 1,
            "after {after}: {sent} token requests presented ctx.refresh_token; a refresh() \
             sends exactly one and never retries once it was sent"
        );
    }
}

async fn success_answer_is_returned_merged_over_the_account(t: EndpointSetup) {
    t.push(t.success());
    let creds = match t.refresh().await {
        Ok(creds) => creds,
        Err(err) => {
            assert_no_token_text(&err, &t.tokens);
            let requests = t.endpoint.request_count();
            if t.token_requests() >= 1 && requests > t.token_requests() {
                panic!(
                    "the token endpoint answered 2xx, a follow-up request then failed (503) and \
                     refresh() reported {} as its error: once the token endpoint answered 2xx, \
                     return the tokens and report follow-up failures separately",
                    err.kind_name()
                );
            }
            panic!(
                "the token endpoint answered 2xx with usable tokens and refresh() failed: {}",
                err.kind_name()
            );
        }
    };
    assert_eq!(
        creds.access_token().map(|s| s.expose().to_owned()),
        Some(t.issued_access.clone()),
        "the returned access_token is not the issued one"
    );
    assert_eq!(
        creds.refresh_token().map(|s| s.expose().to_owned()),
        Some(t.issued_refresh.clone()),
        "the returned refresh_token is not the rotated one the endpoint issued"
    );
    assert_eq!(
        creds.get("suite_unrelated_key"),
        Some(&json!(true)),
        "an unrelated key was lost: the new credentials must be merged over the old ones"
    );
    let at = creds
        .expires_at()
        .expect("expires_at of the refreshed credentials is unreadable")
        .expect("the refreshed credentials have no expires_at although expires_in was sent");
    let latest = t.now + chrono::Duration::seconds(ISSUED_EXPIRES_IN);
    assert!(
        at > t.now && at <= latest,
        "expires_at must lie in (ctx.now(), ctx.now() + expires_in]: it is {}s from ctx.now()",
        (at - t.now).num_seconds()
    );
}

async fn one_token_request_presents_exactly_the_ctx_refresh_token(t: EndpointSetup) {
    t.push(t.success());
    // The outcome is the next check's; this one counts requests.
    let outcome = t.refresh().await;
    if let Err(err) = &outcome {
        assert_no_token_text(err, &t.tokens);
    }
    t.assert_one_token_request("a 2xx answer");
}

async fn blank_ctx_refresh_token_sends_nothing(t: EndpointSetup) {
    t.push(t.success());
    let outcome = call(t.executor.as_ref(), &t.account, &context("  ", t.now)).await;
    match outcome {
        Err(ProviderError::MissingRefreshToken) => {}
        Err(err) => {
            assert_no_token_text(&err, &t.tokens);
            panic!(
                "a blank ctx.refresh_token gave {} instead of MissingRefreshToken",
                err.kind_name()
            );
        }
        Ok(_) => panic!(
            "a blank ctx.refresh_token refreshed (with the account's stored token?): it must \
             fail with MissingRefreshToken before any call"
        ),
    }
    let sent = t.endpoint.request_count();
    assert_eq!(
        sent, 0,
        "{sent} requests were sent for a blank ctx.refresh_token"
    );
}

async fn flat_invalid_grant_is_a_final_invalid_grant(t: EndpointSetup) {
    t.push(ScriptedReply::json(
        400,
        &json!({
            "error": "invalid_grant",
            "error_description": format!("Token {} has been expired or revoked.", t.claimed),
        }),
    ));
    let err = t.refresh_err("400 invalid_grant").await;
    assert!(
        matches!(err, ProviderError::InvalidGrant { .. }),
        "400 {{\"error\":\"invalid_grant\"}} became {} instead of InvalidGrant",
        err.kind_name()
    );
    assert!(!err.is_retryable(), "InvalidGrant is retryable");
    t.assert_one_token_request("400 invalid_grant");
}

async fn nested_refresh_token_reused_is_a_final_invalid_grant(t: EndpointSetup) {
    t.push(ScriptedReply::json(
        401,
        &json!({
            "error": {
                "message": format!(
                    "Your refresh token {} has already been used to generate a new access token.",
                    t.claimed
                ),
                "type": "invalid_request_error",
                "code": "refresh_token_reused",
            }
        }),
    ));
    let err = t.refresh_err("401 refresh_token_reused").await;
    assert!(
        matches!(err, ProviderError::InvalidGrant { .. }),
        "401 {{\"error\":{{\"code\":\"refresh_token_reused\"}}}} became {} instead of \
         InvalidGrant (read the nested code)",
        err.kind_name()
    );
    assert!(!err.is_retryable(), "InvalidGrant is retryable");
    t.assert_one_token_request("401 refresh_token_reused");
}

async fn invalid_client_is_invalid_client(t: EndpointSetup) {
    t.push(ScriptedReply::json(
        400,
        &json!({
            "error": "invalid_client",
            "error_description": "The OAuth client was not found.",
        }),
    ));
    let err = t.refresh_err("400 invalid_client").await;
    assert!(
        matches!(err, ProviderError::InvalidClient { .. }),
        "400 {{\"error\":\"invalid_client\"}} became {} instead of InvalidClient",
        err.kind_name()
    );
    t.assert_one_token_request("400 invalid_client");
}

async fn rate_limit_keeps_retry_after(t: EndpointSetup) {
    t.push(
        ScriptedReply::html(429, "<html><body>Too Many Requests</body></html>")
            .header("Retry-After", "7"),
    );
    let err = t.refresh_err("429").await;
    assert_eq!(
        err,
        ProviderError::RateLimited {
            retry_after: Some(Duration::from_secs(7))
        },
        "429 with Retry-After: 7 must be RateLimited {{ retry_after: Some(7s) }}"
    );
    t.assert_one_token_request("429");
}

async fn server_error_is_reported_once_not_retried(t: EndpointSetup) {
    t.push(ScriptedReply::html(
        503,
        "<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>",
    ))
    .push(t.success());
    let outcome = t.refresh().await;
    let sent = t.token_requests();
    match outcome {
        Ok(_) => panic!(
            "503 then 2xx: refresh() succeeded after {sent} token requests, so it retried \
             after sending; a 5xx may have consumed the token, report ServerError instead"
        ),
        Err(err) => {
            assert_no_token_text(&err, &t.tokens);
            assert!(
                matches!(
                    err,
                    ProviderError::ServerError {
                        status: None | Some(503),
                        ..
                    }
                ),
                "503 with an HTML body became {} instead of ServerError",
                err.kind_name()
            );
        }
    }
    t.assert_one_token_request("503");
}

async fn non_json_2xx_is_an_invalid_response(t: EndpointSetup) {
    t.push(ScriptedReply::html(
        200,
        &format!(
            "<html><body>access_token={} refresh_token={}</body></html>",
            t.issued_access, t.issued_refresh
        ),
    ));
    let err = t.refresh_err("200 with an HTML body").await;
    assert!(
        matches!(err, ProviderError::InvalidResponse { .. }),
        "200 with a non-JSON body became {} instead of InvalidResponse",
        err.kind_name()
    );
    t.assert_one_token_request("200 with an HTML body");
}

async fn two_xx_without_access_token_is_an_invalid_response(t: EndpointSetup) {
    t.push(ScriptedReply::json(
        200,
        &json!({"token_type": "Bearer", "expires_in": ISSUED_EXPIRES_IN}),
    ));
    let err = t.refresh_err("200 without any token").await;
    assert!(
        matches!(err, ProviderError::InvalidResponse { .. }),
        "200 without any token became {} instead of InvalidResponse",
        err.kind_name()
    );
    t.assert_one_token_request("200 without any token");
}

/// Invariant 2: a 2xx that rotated the refresh token without a usable
/// access token is a rotation; throwing it away leaves the account on a
/// consumed token.
async fn two_xx_rotation_without_access_token_returns_the_rotation(t: EndpointSetup) {
    t.push(ScriptedReply::json(
        200,
        &json!({
            "refresh_token": t.issued_refresh,
            "token_type": "Bearer",
            "expires_in": ISSUED_EXPIRES_IN,
        }),
    ));
    let issued = match t.refresh().await {
        Ok(issued) => issued,
        Err(err) => panic!(
            "a 200 with a new refresh token and no access token became {}; it is a rotation \
             and must be returned (TokenGrant::from_json keeps it)",
            err.kind_name()
        ),
    };
    assert_eq!(
        issued.refresh_token().as_ref().map(Secret::expose),
        Some(t.issued_refresh.as_str()),
        "the rotated refresh token must be returned"
    );
    let stored_at = t.account.credentials.expires_at().ok().flatten();
    assert!(
        issued.access_token().is_none() || issued.expires_at().ok().flatten() <= stored_at,
        "no new access token came, yet the answer gives the old one a new expiry"
    );
    t.assert_one_token_request("200 with a rotation and no access token");
}

async fn reset_after_sending_may_have_consumed_the_token(t: EndpointSetup) {
    t.push(ScriptedReply::reset());
    let err = t.refresh_err("a connection reset after sending").await;
    assert!(
        !err.provably_not_consumed(),
        "a connection reset after the request was sent became {}, which says the token was \
         not consumed; use ProviderError::transport(true, ..) (Ambiguous)",
        err.kind_name()
    );
    t.assert_one_token_request("a connection reset after sending");
}

async fn held_request_is_not_reported_as_not_sent(t: EndpointSetup) {
    t.push(ScriptedReply::hold());
    let deadline = Duration::from_secs(1);
    let ctx = context_until(&t.claimed, t.now, deadline);
    let limit = deadline + Duration::from_secs(2);
    match tokio::time::timeout(limit, t.executor.refresh(&t.account, &ctx)).await {
        // Still waiting past the deadline: the flow aborts it there.
        Err(_) => {}
        Ok(Ok(_)) => panic!("refresh() returned Ok although the endpoint never answered"),
        Ok(Err(err)) => {
            assert_no_token_text(&err, &t.tokens);
            assert!(
                !err.provably_not_consumed(),
                "a request sent and never answered became {}, which says the token was not \
                 consumed; a timeout after sending is Ambiguous",
                err.kind_name()
            );
        }
    }
    t.assert_one_token_request("a request held without an answer");
}
