//! The executor conformance suites, tested themselves: correct executors
//! pass, and each deliberately broken one fails with a panic that names the
//! check of its bug.
//!
//! `refresh_executor_suite` runs over [`RotatingExecutor`] and
//! [`FakeUpstream`], broken by the [`Broken`] wrapper;
//! `token_endpoint_mapping_suite` runs over [`HttpExecutor`], a small
//! executor speaking HTTP/1.1 over a tokio `TcpStream` to the suite's
//! loopback [`TokenEndpoint`](refresh_core::testing::TokenEndpoint), broken
//! by [`HttpBug`]. Each failing suite runs in `tokio::spawn`, and the test
//! reads the check name from the `JoinError`'s panic payload.

use std::future::{Future, Ready, ready};
use std::sync::Arc;
use std::time::Duration;

use refresh_core::plugin::*;
use refresh_core::testing::conformance::{
    T0, account_expiring, refresh_executor_suite, token_endpoint_mapping_suite,
};
use refresh_core::testing::{FakeUpstream, RotatingExecutor};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use chrono::{DateTime, Utc};

const LIFETIME: Duration = Duration::from_secs(3600);

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(T0, 0).expect("T0 is a valid instant")
}

fn fixture(id: AccountId) -> Ready<Account> {
    ready(account_expiring(id.get(), Some(60)))
}

/// Runs `suite` to completion in its own task; `None` when it passed, the
/// panic message when it failed.
async fn outcome_of(suite: impl Future<Output = ()> + Send + 'static) -> Option<String> {
    match tokio::spawn(suite).await {
        Ok(()) => None,
        Err(err) => {
            let payload = err.into_panic();
            Some(
                payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "(a panic without a message)".to_owned()),
            )
        }
    }
}

/// Asserts that `suite` fails, in check `check` of suite `suite_name`.
async fn assert_fails_at(
    suite_name: &str,
    check: &str,
    suite: impl Future<Output = ()> + Send + 'static,
) {
    let expected = format!("{suite_name}: {check}");
    match outcome_of(suite).await {
        None => panic!("the suite passed; it must fail at {expected}"),
        Some(message) => assert!(
            message.starts_with(&format!("{expected}:")),
            "the suite must fail at {expected}, it failed with: {message}"
        ),
    }
}

// ---------------------------------------------------------------------------
// refresh_executor_suite over RotatingExecutor
// ---------------------------------------------------------------------------

/// One bug planted in a [`RotatingExecutor`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bug {
    /// None: a legal key override `myplugin:{id}`.
    LegalKeyOverride,
    /// Returns the presented refresh token instead of the rotated one.
    DropsRotatedRefreshToken,
    /// Maps `InvalidGrant` to a retryable `ServerError`.
    InvalidGrantAsServerError,
    /// Maps `InvalidGrant` to a final but wrong kind (`InvalidClient`).
    InvalidGrantAsInvalidClient,
    /// Quotes the presented token in the `InvalidGrant` description.
    TokenInErrorDescription,
    /// `platform()` is OpenAI for an Anthropic upstream.
    WrongPlatform,
    /// `platform()` is OpenAI, and `can_refresh` says yes to everything.
    WrongPlatformRefreshesEverything,
    /// Presents the account's stored refresh token, not `ctx.refresh_token`.
    PresentsStoredRefreshToken,
    /// Falls back to the stored token when `ctx.refresh_token` is blank.
    BlankCtxFallsBackToStoredToken,
    /// Derives the key from the refresh token.
    KeyFromRefreshToken,
    /// One key for every account.
    ConstantKey,
}

struct Broken {
    inner: RotatingExecutor,
    bug: Bug,
}

fn broken(bug: Bug) -> Arc<dyn RefreshExecutor> {
    Arc::new(Broken {
        inner: RotatingExecutor::new(Platform::Anthropic, FakeUpstream::new(), LIFETIME),
        bug,
    })
}

#[async_trait]
impl RefreshExecutor for Broken {
    fn platform(&self) -> Platform {
        match self.bug {
            Bug::WrongPlatform | Bug::WrongPlatformRefreshesEverything => Platform::OpenAi,
            _ => self.inner.platform(),
        }
    }

    fn can_refresh(&self, account: &Account) -> bool {
        match self.bug {
            Bug::WrongPlatformRefreshesEverything => true,
            _ => account.platform == self.platform() && account.account_type == AccountType::OAuth,
        }
    }

    fn key(&self, account: &Account) -> RefreshKey {
        match self.bug {
            Bug::LegalKeyOverride => RefreshKey::from_raw(format!("myplugin:{}", account.id)),
            Bug::KeyFromRefreshToken => RefreshKey::from_raw(format!(
                "claude:{}",
                account
                    .credentials
                    .refresh_token()
                    .map(|rt| rt.expose().to_owned())
                    .unwrap_or_default()
            )),
            Bug::ConstantKey => RefreshKey::from_raw("claude:all"),
            _ => self.inner.key(account),
        }
    }

    async fn refresh(
        &self,
        account: &Account,
        ctx: &RefreshContext,
    ) -> Result<Credentials, ProviderError> {
        let stored = account.credentials.refresh_token();
        let presented = match (self.bug, stored) {
            (Bug::PresentsStoredRefreshToken, Some(stored)) => stored,
            (Bug::BlankCtxFallsBackToStoredToken, Some(stored)) if ctx.refresh_token.is_blank() => {
                stored
            }
            _ => ctx.refresh_token.clone(),
        };
        let inner_ctx =
            RefreshContext::new(presented.clone(), Arc::clone(&ctx.clock), ctx.deadline);
        let outcome = self.inner.refresh(account, &inner_ctx).await;
        match (self.bug, outcome) {
            (Bug::DropsRotatedRefreshToken, Ok(creds)) => {
                Ok(creds.with(keys::REFRESH_TOKEN, presented.expose()))
            }
            (Bug::InvalidGrantAsServerError, Err(ProviderError::InvalidGrant { .. })) => {
                Err(ProviderError::ServerError {
                    status: Some(400),
                    reason: "upstream refused".into(),
                })
            }
            (Bug::InvalidGrantAsInvalidClient, Err(ProviderError::InvalidGrant { .. })) => {
                Err(ProviderError::InvalidClient {
                    code: OAuthErrorCode::new("invalid_client"),
                    description: None,
                })
            }
            (Bug::TokenInErrorDescription, Err(ProviderError::InvalidGrant { code, .. })) => {
                Err(ProviderError::InvalidGrant {
                    code,
                    description: Some(format!("refresh token {} refused", presented.expose())),
                })
            }
            (_, outcome) => outcome,
        }
    }
}

const SUITE: &str = "refresh_executor_suite";

async fn suite_over(executor: Arc<dyn RefreshExecutor>) {
    refresh_executor_suite(executor, fixture, now()).await;
}

#[tokio::test]
async fn rotating_executor_passes_the_executor_suite() {
    let executor = RotatingExecutor::new(Platform::Anthropic, FakeUpstream::new(), LIFETIME);
    assert_eq!(outcome_of(suite_over(Arc::new(executor))).await, None);
}

#[tokio::test]
async fn non_rotating_executor_passes_the_executor_suite() {
    let upstream = FakeUpstream::new();
    upstream.keep_refresh_tokens();
    let executor = RotatingExecutor::new(Platform::Anthropic, upstream, LIFETIME);
    assert_eq!(outcome_of(suite_over(Arc::new(executor))).await, None);
}

#[tokio::test]
async fn a_legal_key_override_passes_the_executor_suite() {
    assert_eq!(
        outcome_of(suite_over(broken(Bug::LegalKeyOverride))).await,
        None
    );
}

#[tokio::test]
async fn executor_suite_fails_an_executor_that_drops_the_rotated_refresh_token() {
    assert_fails_at(
        SUITE,
        "second_refresh_from_the_returned_credentials_succeeds",
        suite_over(broken(Bug::DropsRotatedRefreshToken)),
    )
    .await;
}

#[tokio::test]
async fn executor_suite_fails_an_executor_that_maps_invalid_grant_to_a_retryable_kind() {
    assert_fails_at(
        SUITE,
        "consumed_refresh_token_is_a_final_invalid_grant",
        suite_over(broken(Bug::InvalidGrantAsServerError)),
    )
    .await;
}

#[tokio::test]
async fn executor_suite_fails_an_executor_that_maps_invalid_grant_to_another_final_kind() {
    assert_fails_at(
        SUITE,
        "consumed_refresh_token_is_a_final_invalid_grant",
        suite_over(broken(Bug::InvalidGrantAsInvalidClient)),
    )
    .await;
}

#[tokio::test]
async fn executor_suite_fails_an_executor_that_puts_token_text_in_an_error() {
    let message = outcome_of(suite_over(broken(Bug::TokenInErrorDescription)))
        .await
        .expect("the suite must fail");
    assert!(
        message.starts_with(&format!(
            "{SUITE}: consumed_refresh_token_is_a_final_invalid_grant:"
        )) && message.contains("shows token text"),
        "{message}"
    );
    assert!(
        !message.contains("rt-9010-"),
        "the failure names the leak without repeating the token: {message}"
    );
}

#[tokio::test]
async fn executor_suite_fails_an_executor_with_the_wrong_platform() {
    assert_fails_at(
        SUITE,
        "platform_is_the_fixtures",
        suite_over(broken(Bug::WrongPlatform)),
    )
    .await;
    assert_fails_at(
        SUITE,
        "platform_is_the_fixtures",
        suite_over(broken(Bug::WrongPlatformRefreshesEverything)),
    )
    .await;
}

#[tokio::test]
async fn executor_suite_fails_an_executor_that_presents_the_stored_refresh_token() {
    assert_fails_at(
        SUITE,
        "refresh_presents_the_ctx_refresh_token",
        suite_over(broken(Bug::PresentsStoredRefreshToken)),
    )
    .await;
}

#[tokio::test]
async fn executor_suite_fails_an_executor_that_refreshes_with_a_blank_ctx_token() {
    assert_fails_at(
        SUITE,
        "blank_ctx_refresh_token_is_missing_even_when_one_is_stored",
        suite_over(broken(Bug::BlankCtxFallsBackToStoredToken)),
    )
    .await;
}

#[tokio::test]
async fn executor_suite_fails_a_key_that_changes_with_the_credentials() {
    assert_fails_at(
        SUITE,
        "key_is_stable_across_credential_changes",
        suite_over(broken(Bug::KeyFromRefreshToken)),
    )
    .await;
}

#[tokio::test]
async fn executor_suite_fails_a_key_shared_by_every_account() {
    assert_fails_at(
        SUITE,
        "key_is_distinct_per_account_id",
        suite_over(broken(Bug::ConstantKey)),
    )
    .await;
}

/// An executor whose `refresh()` never returns.
struct Hanging;

#[async_trait]
impl RefreshExecutor for Hanging {
    fn platform(&self) -> Platform {
        Platform::Anthropic
    }

    async fn refresh(
        &self,
        _account: &Account,
        _ctx: &RefreshContext,
    ) -> Result<Credentials, ProviderError> {
        std::future::pending().await
    }
}

#[tokio::test(start_paused = true)]
async fn executor_suite_cannot_hang_on_an_executor_that_never_returns() {
    let message = outcome_of(suite_over(Arc::new(Hanging)))
        .await
        .expect("the suite must fail");
    assert!(
        message.starts_with(&format!("{SUITE}: refresh_returns_merged_credentials:"))
            && message.contains("did not return within"),
        "{message}"
    );
}

// ---------------------------------------------------------------------------
// token_endpoint_mapping_suite over a minimal HTTP executor
// ---------------------------------------------------------------------------

/// One bug planted in [`HttpExecutor`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HttpBug {
    /// Retries once after a 5xx.
    RetriesServerErrors,
    /// Sends the token request twice and uses the second answer.
    SendsTwice,
    /// Calls a profile endpoint after the 2xx and returns its failure.
    FollowUpFailureIsTheError,
    /// Presents the account's stored refresh token.
    PresentsStoredRefreshToken,
    /// Sends a request even when `ctx.refresh_token` is blank.
    SendsWithBlankToken,
    /// Maps every non-2xx to `ServerError`, ignoring the body.
    IgnoresErrorBodies,
    /// Ignores `Retry-After`.
    IgnoresRetryAfter,
    /// Reports a failure after sending as `NotSent`.
    FailureAfterSendingIsNotSent,
    /// Reports a refused connection as sent (`Ambiguous`).
    RefusedConnectionIsSent,
    /// Quotes the body in an `InvalidResponse` reason.
    BodyInReason,
    /// Keeps the old access token when the 2xx has none.
    AcceptsAnswerWithoutAccessToken,
    /// Keeps the stored refresh token instead of the rotated one.
    DropsRotatedRefreshToken,
}

/// A small HTTP/1.1 executor: `POST {base}/oauth/token` with a JSON body,
/// parsed with [`TokenGrant::from_token_response`]. With `follow_up` it
/// also calls `GET {base}/v1/profile` after the 2xx and reports a failure
/// of it in the `profile_error` key, as the contract asks.
struct HttpExecutor {
    base: String,
    follow_up: bool,
    bug: Option<HttpBug>,
}

/// A parsed HTTP response.
struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: Vec<u8>,
}

impl HttpExecutor {
    fn has(&self, bug: HttpBug) -> bool {
        self.bug == Some(bug)
    }

    fn transport(&self, sent: bool, reason: &str) -> ProviderError {
        ProviderError::transport(
            (sent || self.has(HttpBug::RefusedConnectionIsSent))
                && !self.has(HttpBug::FailureAfterSendingIsNotSent),
            reason,
        )
    }

    /// One request on a new connection, read to EOF; bounded by `deadline`.
    async fn send(
        &self,
        request_line: &str,
        headers: &[(&str, String)],
        body: &str,
        deadline: Instant,
    ) -> Result<Answer, ProviderError> {
        let addr = self.base.trim_start_matches("http://").to_owned();
        let exchange = async {
            let mut stream = TcpStream::connect(&addr)
                .await
                .map_err(|e| self.transport(false, &format!("connect: {}", e.kind())))?;
            let mut request = format!("{request_line} HTTP/1.1\r\nHost: {addr}\r\n");
            for (name, value) in headers {
                request.push_str(&format!("{name}: {value}\r\n"));
            }
            request.push_str(&format!(
                "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ));
            stream
                .write_all(request.as_bytes())
                .await
                .map_err(|e| self.transport(true, &format!("write: {}", e.kind())))?;
            let mut raw = Vec::new();
            let limit = u64::try_from(TokenGrant::MAX_BODY_BYTES + 64 * 1024).unwrap_or(u64::MAX);
            (&mut stream)
                .take(limit)
                .read_to_end(&mut raw)
                .await
                .map_err(|e| self.transport(true, &format!("read: {}", e.kind())))?;
            parse_answer(&raw)
                .ok_or_else(|| self.transport(true, "connection closed before a complete response"))
        };
        tokio::time::timeout_at(deadline, exchange)
            .await
            .unwrap_or_else(|_| Err(self.transport(true, "no answer before the deadline")))
    }

    async fn token_request(
        &self,
        token: &Secret,
        deadline: Instant,
    ) -> Result<Answer, ProviderError> {
        let body = json!({"grant_type": "refresh_token", "refresh_token": token.expose()});
        self.send(
            "POST /oauth/token",
            &[("Content-Type", "application/json".to_owned())],
            &body.to_string(),
            deadline,
        )
        .await
    }

    fn classify(&self, answer: &Answer) -> Result<TokenGrant, ProviderError> {
        let ok = (200..300).contains(&answer.status);
        if !ok && self.has(HttpBug::IgnoresErrorBodies) {
            return Err(ProviderError::ServerError {
                status: Some(answer.status),
                reason: "token refresh failed".into(),
            });
        }
        let retry_after = if self.has(HttpBug::IgnoresRetryAfter) {
            None
        } else {
            answer.retry_after.as_deref()
        };
        match TokenGrant::from_token_response(answer.status, retry_after, &answer.body) {
            Err(ProviderError::InvalidResponse { .. }) if self.has(HttpBug::BodyInReason) => {
                Err(ProviderError::InvalidResponse {
                    reason: format!("bad body: {}", String::from_utf8_lossy(&answer.body)),
                })
            }
            Err(ProviderError::InvalidResponse { .. })
                if ok && self.has(HttpBug::AcceptsAnswerWithoutAccessToken) =>
            {
                let value: serde_json::Value =
                    serde_json::from_slice(&answer.body).map_err(|_| {
                        ProviderError::InvalidResponse {
                            reason: "not JSON".into(),
                        }
                    })?;
                Ok(TokenGrant {
                    access_token: Some(Secret::from("kept-old-access-token")),
                    refresh_token: value["refresh_token"].as_str().map(Secret::from),
                    token_type: None,
                    expires_in: value["expires_in"].as_i64(),
                    scope: None,
                })
            }
            other => other,
        }
    }
}

/// Status, `Retry-After` and body of a raw response read to EOF.
fn parse_answer(raw: &[u8]) -> Option<Answer> {
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let mut retry_after = None;
    let mut length = None;
    for (name, value) in lines.filter_map(|l| l.split_once(':')) {
        if name.trim().eq_ignore_ascii_case("retry-after") {
            retry_after = Some(value.trim().to_owned());
        } else if name.trim().eq_ignore_ascii_case("content-length") {
            length = value.trim().parse::<usize>().ok();
        }
    }
    let mut body = raw[head_end + 4..].to_vec();
    if let Some(length) = length {
        if body.len() < length {
            return None;
        }
        body.truncate(length);
    }
    Some(Answer {
        status,
        retry_after,
        body,
    })
}

#[async_trait]
impl RefreshExecutor for HttpExecutor {
    fn platform(&self) -> Platform {
        Platform::Anthropic
    }

    async fn refresh(
        &self,
        account: &Account,
        ctx: &RefreshContext,
    ) -> Result<Credentials, ProviderError> {
        let token = match account.credentials.refresh_token() {
            Some(stored) if self.has(HttpBug::PresentsStoredRefreshToken) => stored,
            _ => ctx.refresh_token.clone(),
        };
        if token.is_blank() && !self.has(HttpBug::SendsWithBlankToken) {
            return Err(ProviderError::MissingRefreshToken);
        }
        let mut answer = self.token_request(&token, ctx.deadline).await?;
        if self.has(HttpBug::SendsTwice) {
            answer = self.token_request(&token, ctx.deadline).await?;
        }
        let grant = match self.classify(&answer) {
            Err(ProviderError::ServerError { .. }) if self.has(HttpBug::RetriesServerErrors) => {
                let retry = self.token_request(&token, ctx.deadline).await?;
                self.classify(&retry)?
            }
            other => other?,
        };
        let mut creds = grant.to_credentials(
            ctx.now(),
            ExpiryRule::EXACT,
            GrantFields {
                write_expires_in: false,
                write_type_and_scope: true,
            },
        );
        if self.has(HttpBug::DropsRotatedRefreshToken) {
            creds.remove(keys::REFRESH_TOKEN);
        }
        if self.follow_up || self.has(HttpBug::FollowUpFailureIsTheError) {
            let bearer = format!(
                "Bearer {}",
                grant.access_token.as_ref().map_or("", Secret::expose)
            );
            let profile = self
                .send(
                    "GET /v1/profile",
                    &[("Authorization", bearer)],
                    "",
                    ctx.deadline,
                )
                .await;
            let failed = match &profile {
                Ok(answer) => !(200..300).contains(&answer.status),
                Err(_) => true,
            };
            if failed && self.has(HttpBug::FollowUpFailureIsTheError) {
                return Err(ProviderError::ServerError {
                    status: profile.ok().map(|a| a.status),
                    reason: "profile lookup failed".into(),
                });
            }
            creds.insert("profile_error", failed);
        }
        Ok(creds.merged_over(&account.credentials))
    }
}

const ENDPOINT_SUITE: &str = "token_endpoint_mapping_suite";

async fn endpoint_suite_over(follow_up: bool, bug: Option<HttpBug>) {
    token_endpoint_mapping_suite(
        move |base: &str| -> Arc<dyn RefreshExecutor> {
            Arc::new(HttpExecutor {
                base: base.to_owned(),
                follow_up,
                bug,
            })
        },
        fixture,
        now(),
    )
    .await;
}

#[tokio::test]
async fn http_executor_passes_the_endpoint_suite() {
    assert_eq!(outcome_of(endpoint_suite_over(false, None)).await, None);
}

#[tokio::test]
async fn http_executor_reporting_follow_up_failures_separately_passes_the_endpoint_suite() {
    assert_eq!(outcome_of(endpoint_suite_over(true, None)).await, None);
}

#[tokio::test]
async fn endpoint_suite_fails_an_executor_that_retries_after_a_5xx() {
    assert_fails_at(
        ENDPOINT_SUITE,
        "server_error_is_reported_once_not_retried",
        endpoint_suite_over(false, Some(HttpBug::RetriesServerErrors)),
    )
    .await;
}

#[tokio::test]
async fn endpoint_suite_fails_an_executor_that_sends_two_token_requests() {
    assert_fails_at(
        ENDPOINT_SUITE,
        "one_token_request_presents_exactly_the_ctx_refresh_token",
        endpoint_suite_over(false, Some(HttpBug::SendsTwice)),
    )
    .await;
}

#[tokio::test]
async fn endpoint_suite_fails_an_executor_that_reports_a_follow_up_failure_as_the_error() {
    let message = outcome_of(endpoint_suite_over(
        false,
        Some(HttpBug::FollowUpFailureIsTheError),
    ))
    .await
    .expect("the suite must fail");
    assert!(
        message.starts_with(&format!(
            "{ENDPOINT_SUITE}: success_answer_is_returned_merged_over_the_account:"
        )) && message.contains("follow-up"),
        "{message}"
    );
}

#[tokio::test]
async fn endpoint_suite_fails_an_executor_that_presents_the_stored_refresh_token() {
    assert_fails_at(
        ENDPOINT_SUITE,
        "one_token_request_presents_exactly_the_ctx_refresh_token",
        endpoint_suite_over(false, Some(HttpBug::PresentsStoredRefreshToken)),
    )
    .await;
}

#[tokio::test]
async fn endpoint_suite_fails_an_executor_that_sends_with_a_blank_token() {
    assert_fails_at(
        ENDPOINT_SUITE,
        "blank_ctx_refresh_token_sends_nothing",
        endpoint_suite_over(false, Some(HttpBug::SendsWithBlankToken)),
    )
    .await;
}

#[tokio::test]
async fn endpoint_suite_fails_an_executor_that_ignores_error_bodies() {
    assert_fails_at(
        ENDPOINT_SUITE,
        "flat_invalid_grant_is_a_final_invalid_grant",
        endpoint_suite_over(false, Some(HttpBug::IgnoresErrorBodies)),
    )
    .await;
}

#[tokio::test]
async fn endpoint_suite_fails_an_executor_that_ignores_retry_after() {
    assert_fails_at(
        ENDPOINT_SUITE,
        "rate_limit_keeps_retry_after",
        endpoint_suite_over(false, Some(HttpBug::IgnoresRetryAfter)),
    )
    .await;
}

#[tokio::test]
async fn endpoint_suite_fails_an_executor_that_reports_a_reset_after_sending_as_not_sent() {
    assert_fails_at(
        ENDPOINT_SUITE,
        "reset_after_sending_may_have_consumed_the_token",
        endpoint_suite_over(false, Some(HttpBug::FailureAfterSendingIsNotSent)),
    )
    .await;
}

#[tokio::test]
async fn endpoint_suite_fails_an_executor_that_reports_a_refused_connection_as_sent() {
    assert_fails_at(
        ENDPOINT_SUITE,
        "refused_connection_is_not_sent",
        endpoint_suite_over(false, Some(HttpBug::RefusedConnectionIsSent)),
    )
    .await;
}

#[tokio::test]
async fn endpoint_suite_fails_an_executor_that_quotes_the_body_in_an_error() {
    let message = outcome_of(endpoint_suite_over(false, Some(HttpBug::BodyInReason)))
        .await
        .expect("the suite must fail");
    assert!(
        message.starts_with(&format!(
            "{ENDPOINT_SUITE}: non_json_2xx_is_an_invalid_response:"
        )) && message.contains("shows token text"),
        "{message}"
    );
}

#[tokio::test]
async fn endpoint_suite_fails_an_executor_that_accepts_a_2xx_without_access_token() {
    assert_fails_at(
        ENDPOINT_SUITE,
        "two_xx_without_access_token_is_an_invalid_response",
        endpoint_suite_over(false, Some(HttpBug::AcceptsAnswerWithoutAccessToken)),
    )
    .await;
}

#[tokio::test]
async fn endpoint_suite_fails_an_executor_that_drops_the_rotated_refresh_token() {
    assert_fails_at(
        ENDPOINT_SUITE,
        "success_answer_is_returned_merged_over_the_account",
        endpoint_suite_over(false, Some(HttpBug::DropsRotatedRefreshToken)),
    )
    .await;
}
