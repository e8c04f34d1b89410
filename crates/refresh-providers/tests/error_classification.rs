//! Table-driven classification of every token-endpoint outcome, for each
//! of the four executors, against core's scriptable loopback endpoint:
//! flat and nested OAuth codes, Retry-After in both forms, 5xx, bad 2xx
//! bodies, and transport failures before and after sending.

mod common;

use std::time::Duration;

use common::*;
use refresh_core::ProviderError;
use refresh_core::plugin::{OAuthErrorCode, Platform};
use refresh_core::testing::{ScriptedReply, TokenEndpoint};
use serde_json::json;

/// What a case must become.
#[derive(Debug)]
enum Want {
    Grant(&'static str),
    Client(&'static str),
    AccessDenied,
    RateLimited(Option<u64>),
    Server(Option<u16>),
    Unexpected(u16, Option<&'static str>),
    Invalid(&'static str),
    NotSent,
    Ambiguous,
    Missing,
}

fn check(case: &str, platform: &Platform, err: &ProviderError, want: &Want) {
    let code = |c: &OAuthErrorCode| c.as_str().to_owned();
    let ok = match (want, err) {
        (Want::Grant(w), ProviderError::InvalidGrant { code: c, .. }) => code(c) == *w,
        (Want::Client(w), ProviderError::InvalidClient { code: c, .. }) => code(c) == *w,
        (Want::AccessDenied, ProviderError::AccessDenied { .. }) => true,
        (Want::RateLimited(w), ProviderError::RateLimited { retry_after }) => {
            *retry_after == w.map(Duration::from_secs)
        }
        (Want::Server(w), ProviderError::ServerError { status, .. }) => status == w,
        (Want::Unexpected(s, w), ProviderError::UnexpectedStatus { status, code: c }) => {
            status == s && c.as_ref().map(code).as_deref() == *w
        }
        (Want::Invalid(w), ProviderError::InvalidResponse { reason }) => reason.contains(w),
        (Want::NotSent, ProviderError::NotSent { .. }) => true,
        (Want::Ambiguous, ProviderError::Ambiguous { .. }) => true,
        (Want::Missing, ProviderError::MissingRefreshToken) => true,
        _ => false,
    };
    assert!(ok, "{platform} / {case}: want {want:?}, got {err:?}");
    assert_hides(&format!("{err} {err:?}"), &[CLAIMED, "AT-old-"]);
    let final_kind = matches!(
        want,
        Want::Grant(_) | Want::Client(_) | Want::AccessDenied | Want::Missing
    );
    assert_eq!(
        err.is_retryable(),
        !final_kind,
        "{platform} / {case}: retryability of {err:?}"
    );
}

/// The scripted answers and what each must become.
fn http_cases() -> Vec<(&'static str, ScriptedReply, Want)> {
    let retry_at = (now() + chrono::Duration::seconds(120)).to_rfc2822();
    let retry_at = retry_at.replace("+0000", "GMT");
    vec![
        (
            "flat invalid_grant",
            ScriptedReply::json(
                400,
                &json!({"error": "invalid_grant", "error_description": format!("Token {CLAIMED} has been expired or revoked.")}),
            ),
            Want::Grant("invalid_grant"),
        ),
        (
            "nested refresh_token_reused (OpenAI)",
            ScriptedReply::json(
                401,
                &json!({"error": {"message": "Your refresh token has already been used to generate a new access token.", "type": "invalid_request_error", "param": null, "code": "refresh_token_reused"}}),
            ),
            Want::Grant("refresh_token_reused"),
        ),
        (
            "flat refresh_token_expired",
            ScriptedReply::json(400, &json!({"error": "refresh_token_expired"})),
            Want::Grant("refresh_token_expired"),
        ),
        (
            "nested refresh_token_invalidated",
            ScriptedReply::json(
                401,
                &json!({"error": {"code": "refresh_token_invalidated", "message": "revoked"}}),
            ),
            Want::Grant("refresh_token_invalidated"),
        ),
        (
            "Google nested status INVALID_GRANT",
            ScriptedReply::json(
                400,
                &json!({"error": {"code": 400, "message": "bad", "status": "INVALID_GRANT"}}),
            ),
            Want::Grant("invalid_grant"),
        ),
        (
            "upper-case INVALID_GRANT",
            ScriptedReply::json(400, &json!({"error": "INVALID_GRANT"})),
            Want::Grant("invalid_grant"),
        ),
        (
            "invalid_client",
            ScriptedReply::json(
                401,
                &json!({"error": "invalid_client", "error_description": "The OAuth client was not found."}),
            ),
            Want::Client("invalid_client"),
        ),
        (
            "unauthorized_client",
            ScriptedReply::json(
                401,
                &json!({"error": "unauthorized_client", "error_description": "Unauthorized"}),
            ),
            Want::Client("unauthorized_client"),
        ),
        (
            "access_denied",
            ScriptedReply::json(403, &json!({"error": "access_denied"})),
            Want::AccessDenied,
        ),
        (
            "429 with Retry-After seconds",
            ScriptedReply::html(429, "<html>slow down</html>").header("Retry-After", "7"),
            Want::RateLimited(Some(7)),
        ),
        (
            "429 with Retry-After HTTP-date",
            ScriptedReply::json(429, &json!({"error": {"type": "rate_limit_error"}}))
                .header("Retry-After", retry_at),
            Want::RateLimited(Some(120)),
        ),
        (
            "429 without Retry-After",
            ScriptedReply::status(429),
            Want::RateLimited(None),
        ),
        (
            "slow_down code on 400",
            ScriptedReply::json(400, &json!({"error": "slow_down"})),
            Want::RateLimited(None),
        ),
        (
            "503 HTML page",
            ScriptedReply::html(
                503,
                "<html><body><h1>503 Service Unavailable</h1></body></html>",
            ),
            Want::Server(Some(503)),
        ),
        (
            "500 server_error",
            ScriptedReply::json(500, &json!({"error": "server_error"})),
            Want::Server(Some(500)),
        ),
        (
            "400 temporarily_unavailable",
            ScriptedReply::json(400, &json!({"error": "temporarily_unavailable"})),
            Want::Server(Some(400)),
        ),
        (
            "400 invalid_request",
            ScriptedReply::json(
                400,
                &json!({"error": "invalid_request", "error_description": "not an invalid_grant"}),
            ),
            Want::Unexpected(400, Some("invalid_request")),
        ),
        (
            "302 redirect is not followed",
            ScriptedReply::status(302).header("Location", "http://127.0.0.1:1/elsewhere"),
            Want::Unexpected(302, None),
        ),
        (
            "418 text",
            ScriptedReply::status(418).body("teapot"),
            Want::Unexpected(418, None),
        ),
        (
            "200 HTML body",
            ScriptedReply::html(200, "<html><body>Sign in</body></html>"),
            Want::Invalid("not JSON"),
        ),
        (
            "200 truncated JSON",
            ScriptedReply::status(200)
                .header("Content-Type", "application/json")
                .body(r#"{"access_token":"AT-new-trunc"#),
            Want::Invalid("not JSON"),
        ),
        (
            "200 without any token",
            ScriptedReply::json(200, &json!({"expires_in": 3600})),
            Want::Invalid("no access_token"),
        ),
        (
            "200 body over the 1 MiB cap",
            ScriptedReply::json(
                200,
                &json!({"access_token": "AT-big", "pad": "x".repeat(2 << 20)}),
            ),
            Want::Invalid("larger than"),
        ),
        (
            "503 body over the cap still classifies by status",
            ScriptedReply::html(503, &"x".repeat(2 << 20)),
            Want::Server(Some(503)),
        ),
        (
            "reset after the request was read",
            ScriptedReply::reset(),
            Want::Ambiguous,
        ),
        (
            "closed after the request was read",
            ScriptedReply::close(),
            Want::Ambiguous,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_http_outcome_is_classified_for_every_executor() {
    for platform in &PLATFORMS {
        for (case, reply, want) in http_cases() {
            let endpoint = TokenEndpoint::start().await.unwrap();
            endpoint.push(reply);
            let executor = executor_at(platform, &endpoint.url());
            let account = account(platform, 1, "RT-stored-Jf5Rg0Ue7Wm2");
            let err = executor
                .refresh(&account, &ctx(CLAIMED))
                .await
                .expect_err(case);
            check(case, platform, &err, &want);
            assert_eq!(
                endpoint.requests_containing(CLAIMED).len(),
                1,
                "{platform} / {case}: one token request, never retried"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_after_sending_is_ambiguous_and_refused_connect_is_not_sent() {
    for platform in &PLATFORMS {
        // The request is read and never answered: the deadline ends it.
        let endpoint = TokenEndpoint::start().await.unwrap();
        endpoint.push(ScriptedReply::hold());
        let executor = executor_at(platform, &endpoint.url());
        let account = account(platform, 2, "RT-stored-Jf5Rg0Ue7Wm2");
        let err = executor
            .refresh(&account, &ctx_for(CLAIMED, Duration::from_millis(300)))
            .await
            .unwrap_err();
        check("held past the deadline", platform, &err, &Want::Ambiguous);
        assert!(!err.provably_not_consumed());
        assert_eq!(endpoint.requests_containing(CLAIMED).len(), 1);

        // Nothing listens: the request never left.
        let executor = executor_at(platform, &format!("http://{}", closed_port()));
        let err = executor.refresh(&account, &ctx(CLAIMED)).await.unwrap_err();
        check("connection refused", platform, &err, &Want::NotSent);
        assert!(err.provably_not_consumed());

        // A proxy that is down: not sent, never a direct connection.
        let endpoint = TokenEndpoint::start().await.unwrap();
        let executor = executor_at(platform, &endpoint.url());
        let proxied = with_proxy(account.clone(), &format!("http://{}", closed_port()));
        let err = executor.refresh(&proxied, &ctx(CLAIMED)).await.unwrap_err();
        check("proxy down", platform, &err, &Want::NotSent);
        assert_eq!(endpoint.request_count(), 0, "no direct connection");

        // The deadline already passed: nothing is sent.
        let err = executor
            .refresh(&account, &ctx_for(CLAIMED, Duration::ZERO))
            .await
            .unwrap_err();
        check("deadline passed", platform, &err, &Want::NotSent);

        // A blank claimed token: nothing is sent.
        let err = executor.refresh(&account, &ctx("  ")).await.unwrap_err();
        check("blank refresh token", platform, &err, &Want::Missing);
        assert_eq!(endpoint.request_count(), 0);
    }
}

/// Invariant 2: a 2xx that rotated the refresh token but carries no usable
/// access token still hands the rotation back (the flow stores it), for
/// every executor, without a follow-up call on a missing token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_without_an_access_token_is_returned_not_thrown_away() {
    for platform in &PLATFORMS {
        let endpoint = TokenEndpoint::start().await.unwrap();
        endpoint.push(ScriptedReply::json(
            200,
            &json!({"refresh_token": "RT-issued-Hq8Lm2Zx5Kd7", "expires_in": 3600}),
        ));
        let executor = executor_at(platform, &endpoint.url());
        let account = account(platform, 1, "RT-stored-Jf5Rg0Ue7Wm2");
        let issued = executor
            .refresh(&account, &ctx(CLAIMED))
            .await
            .unwrap_or_else(|e| panic!("{platform}: {e}"));
        assert_eq!(
            issued.refresh_token().map(|t| t.expose().to_owned()),
            Some("RT-issued-Hq8Lm2Zx5Kd7".to_owned()),
            "{platform}"
        );
        assert_eq!(
            endpoint.requests_containing(CLAIMED).len(),
            1,
            "{platform}: one token request"
        );
    }
}
