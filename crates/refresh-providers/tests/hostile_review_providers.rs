//! Hostile review of refresh-providers: each test pins one property of the
//! executor SPI contract, the HTTP layer, the emulator or the user-facing
//! API, on loopback servers only. Its own fixtures (quicker discovery,
//! accounts with an operator key) beside the shared ones of `common`.
//!
//! Tests named `break_*` FAIL on the reviewed code (each is a defect);
//! tests named `held_*` pass and pin behaviour that resisted an attack.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::Utc;
use common::{
    CLAIMED, Captured, NOW_SECS, PLATFORMS, assert_never_shown, closed_port, ctx, ctx_for,
    emulated, executor_with as executor, now, socks5_target,
};
use refresh_core::ProxyUrl;
use refresh_core::plugin::*;
use refresh_core::testing::{ScriptedReply, TokenEndpoint};
use refresh_providers::emulator::{
    EmulatedProvider, Emulator, EmulatorConfig, Fault, FaultKind, GrantSpec, paths,
};
use refresh_providers::{DiscoveryTiming, HttpClients, ProvidersConfig};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// ---------------------------------------------------------------- helpers

fn quick() -> DiscoveryTiming {
    DiscoveryTiming {
        call_timeout: Duration::from_secs(5),
        onboard_polls: 2,
        onboard_interval: Duration::from_millis(1),
        attempts: 1,
        backoff: Duration::from_millis(1),
        backoff_cap: Duration::from_millis(1),
        reserve: Duration::from_millis(300),
    }
}

fn config_at(base: &str) -> ProvidersConfig {
    let mut c = ProvidersConfig::default().with_base_url(base);
    c.gemini.discovery = quick();
    c.antigravity.discovery = quick();
    c
}

fn exec_at(platform: &Platform, base: &str) -> Arc<dyn RefreshExecutor> {
    executor(platform, config_at(base), HttpClients::default())
}

fn account(platform: &Platform, id: i64, rt: &str) -> Account {
    let mut c = Credentials::new()
        .with("access_token", format!("AT-old-{id}-Qm3Xv8Rt2Lp7"))
        .with("refresh_token", rt)
        .with("operator_note", "keep me");
    match platform {
        Platform::Gemini => {
            c.insert("oauth_type", "code_assist");
            c.insert("project_id", "stored-project");
        }
        Platform::Antigravity => c.insert("project_id", "stored-project"),
        _ => {}
    }
    Account::oauth(id, platform.clone(), c)
}

fn google_ok() -> ScriptedReply {
    ScriptedReply::json(
        200,
        &json!({"access_token": "ya29.new-Hq8Lm2Zx5Kd7Wq", "expires_in": 3599, "token_type": "Bearer"}),
    )
}

fn ok_body(platform: &Platform) -> ScriptedReply {
    match platform {
        Platform::Gemini | Platform::Antigravity => google_ok(),
        _ => ScriptedReply::json(
            200,
            &json!({"access_token": "AT-new-Hq8Lm2Zx5Kd7Wq", "refresh_token": "RT-new-Zp3Kq9Lw2Xv5", "expires_in": 3600}),
        ),
    }
}

/// `platform`'s executor refreshing a stored account (presenting
/// [`CLAIMED`]) at a new endpoint that answers `reply`; the endpoint too,
/// for what it received.
async fn refresh_answered(
    platform: &Platform,
    reply: ScriptedReply,
) -> (TokenEndpoint, Result<Credentials, ProviderError>) {
    let endpoint = TokenEndpoint::start().await.unwrap();
    endpoint.push(reply);
    let result = exec_at(platform, &endpoint.url())
        .refresh(&account(platform, 1, "RT-stored"), &ctx(CLAIMED))
        .await;
    (endpoint, result)
}

/// A listener that counts accepted connections and never answers.
async fn counting_sink() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let h = Arc::clone(&hits);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            h.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0_u8; 4096];
                while s.read(&mut buf).await.unwrap_or(0) > 0 {}
            });
        }
    });
    (url, hits)
}

// ------------------------------------------------- SPI: one request, no redirects

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_307_and_308_redirects_are_never_followed_to_another_host() {
    for platform in &PLATFORMS {
        for status in [301_u16, 302, 303, 307, 308] {
            let (sink, hits) = counting_sink().await;
            let reply = ScriptedReply::status(status).header("Location", format!("{sink}/steal"));
            let (endpoint, result) = refresh_answered(platform, reply).await;
            let err = result.unwrap_err();
            assert!(
                matches!(err, ProviderError::UnexpectedStatus { status: s, .. } if s == status),
                "{platform} {status}: {err:?}"
            );
            assert!(!err.provably_not_consumed(), "{platform} {status}");
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert_eq!(
                hits.load(Ordering::SeqCst),
                0,
                "{platform} {status}: followed"
            );
            assert_eq!(endpoint.requests_containing(CLAIMED).len(), 1);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_5xx_429_and_resets_are_never_retried_by_any_executor() {
    for platform in &PLATFORMS {
        for reply in [
            ScriptedReply::html(503, "<html>busy</html>"),
            ScriptedReply::status(500),
            ScriptedReply::status(502),
            ScriptedReply::status(429).header("Retry-After", "1"),
            ScriptedReply::reset(),
            ScriptedReply::close(),
            ScriptedReply::json(401, &json!({"error": "unauthorized_client"})),
        ] {
            let endpoint = TokenEndpoint::start().await.unwrap();
            endpoint.push(reply);
            endpoint.set_fallback(ok_body(platform));
            let result = exec_at(platform, &endpoint.url())
                .refresh(&account(platform, 1, "RT-stored"), &ctx(CLAIMED))
                .await;
            assert!(result.is_err(), "{platform}: a second request succeeded");
            assert_eq!(endpoint.requests_containing(CLAIMED).len(), 1, "{platform}");
            assert_eq!(
                endpoint.requests_containing("RT-stored").len(),
                0,
                "{platform}"
            );
        }
    }
}

// ------------------------------------------------------- SPI: NotSent vs Ambiguous

/// A SOCKS5 "proxy" that accepts TCP and never answers the greeting.
async fn mute_socks() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("socks5://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    url
}

/// With the refresh deadline shorter than `connect_timeout`, a proxy
/// handshake that never completes is cut by the request's total timeout.
/// reqwest cannot tell that timeout from one after sending, so the
/// executor reports it as maybe sent: the safe direction (the claim is
/// quarantined, the token never re-presented); nothing reached the
/// upstream. (With the flow's defaults the deadline is far longer than the
/// connect timeout, and a hung handshake is `NotSent`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_hung_proxy_handshake_under_a_short_deadline_fails_safe() {
    let endpoint = TokenEndpoint::start().await.unwrap();
    let proxy = mute_socks().await;
    for platform in &PLATFORMS {
        let mut acct = account(platform, 1, "RT-stored");
        acct.proxy = Some(proxy.parse::<ProxyUrl>().unwrap());
        let err = exec_at(platform, &endpoint.url())
            .refresh(&acct, &ctx_for(CLAIMED, Duration::from_millis(600)))
            .await
            .unwrap_err();
        assert_eq!(endpoint.request_count(), 0);
        assert!(
            matches!(
                err,
                ProviderError::Ambiguous { .. } | ProviderError::NotSent { .. }
            ),
            "{platform}: {err:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_hung_proxy_handshake_within_connect_timeout_is_not_sent() {
    let endpoint = TokenEndpoint::start().await.unwrap();
    let proxy = mute_socks().await;
    let mut config = config_at(&endpoint.url());
    config.http.connect_timeout = Duration::from_millis(300);
    let http = HttpClients::new(config.http.clone());
    for platform in &PLATFORMS {
        let mut acct = account(platform, 1, "RT-stored");
        acct.proxy = Some(proxy.parse::<ProxyUrl>().unwrap());
        let err = executor(platform, config.clone(), http.clone())
            .refresh(&acct, &ctx_for(CLAIMED, Duration::from_secs(5)))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ProviderError::NotSent { .. }),
            "{platform}: {err:?}"
        );
    }
    assert_eq!(endpoint.request_count(), 0);
}

/// An HTTP forward proxy: reads the whole request, then `then` decides.
async fn forward_proxy(answer: &'static [u8]) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(AtomicUsize::new(0));
    let s2 = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((mut c, _)) = listener.accept().await {
            let seen = Arc::clone(&s2);
            tokio::spawn(async move {
                let mut buf = vec![0_u8; 65536];
                let mut got = Vec::new();
                // read head + body (Content-Length)
                loop {
                    let n = c.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if got.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                seen.fetch_add(1, Ordering::SeqCst);
                if !answer.is_empty() {
                    let _ = c.write_all(answer).await;
                }
                let _ = c.shutdown().await;
            });
        }
    });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_forward_proxy_that_drops_after_the_body_is_ambiguous() {
    let endpoint = TokenEndpoint::start().await.unwrap();
    let (proxy, seen) = forward_proxy(b"").await;
    for platform in &PLATFORMS {
        let mut acct = account(platform, 1, "RT-stored");
        acct.proxy = Some(proxy.parse::<ProxyUrl>().unwrap());
        let err = exec_at(platform, &endpoint.url())
            .refresh(&acct, &ctx(CLAIMED))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ProviderError::Ambiguous { .. }),
            "{platform}: {err:?}"
        );
        assert!(!err.provably_not_consumed());
    }
    assert_eq!(
        seen.load(Ordering::SeqCst),
        4,
        "one request per refresh, never retried"
    );
}

/// A forward proxy answering 407: the error blames "upstream".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_proxy_407_is_maybe_consumed_but_reads_as_an_upstream_status() {
    let endpoint = TokenEndpoint::start().await.unwrap();
    let (proxy, _) = forward_proxy(
        b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"p\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    let proxy = proxy.replace("http://", "http://bob:Pr0xyPassw0rdSecret@");
    for platform in &PLATFORMS {
        let mut acct = account(platform, 1, "RT-stored");
        acct.proxy = Some(proxy.parse::<ProxyUrl>().unwrap());
        let err = exec_at(platform, &endpoint.url())
            .refresh(&acct, &ctx(CLAIMED))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                ProviderError::UnexpectedStatus {
                    status: 407,
                    code: None
                }
            ),
            "{platform}: {err:?}"
        );
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("Pr0xyPassw0rdSecret"));
        assert!(
            !shown.contains("proxy"),
            "documents: the message never says proxy: {shown}"
        );
    }
    assert_eq!(endpoint.request_count(), 0);
}

/// Proxy URLs an HTTP client would drop silently (and then connect
/// DIRECTLY, REFERENCE defect 16) once passed `ProxyUrl`: hyper-util parses
/// the proxy again as an `http::Uri` (max 65 534 bytes, no opaque hosts)
/// and intercepts nothing when that fails. `ProxyUrl` now refuses them: an
/// overlong URL, and SOCKS hosts that `url` keeps opaque (percent-encoded,
/// with `{`); an account cannot hold one, so no request can go direct.
#[test]
fn held_proxy_urls_a_client_would_drop_are_refused_at_parse() {
    let long = format!("http://bob:{}@127.0.0.1:9", "p".repeat(70_000));
    for proxy in [
        long.as_str(),
        "socks5://proxy%2Eexample.com:1080",
        "socks5h://user:pw@ho%20st:1080",
        "socks5://ex{ample:1080",
    ] {
        let error = proxy.parse::<ProxyUrl>().expect_err("refused");
        assert!(
            matches!(error, refresh_core::DomainError::InvalidProxyUrl { .. }),
            "{error:?}"
        );
        assert!(!error.to_string().contains("pw@"), "{error}");
    }
}

// ------------------------------------------------------------ 2xx bodies

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_unusable_2xx_bodies_are_invalid_response_and_maybe_consumed() {
    let bodies: Vec<(&str, ScriptedReply)> = vec![
        (
            "null",
            ScriptedReply::status(200)
                .header("Content-Type", "application/json")
                .body("null"),
        ),
        (
            "array",
            ScriptedReply::status(200)
                .header("Content-Type", "application/json")
                .body("[{\"access_token\":\"x\"}]"),
        ),
        (
            "number at",
            ScriptedReply::json(200, &json!({"access_token": 12345})),
        ),
        (
            "blank at",
            ScriptedReply::json(200, &json!({"access_token": "   ", "scope": "openid"})),
        ),
        (
            "null at",
            ScriptedReply::json(200, &json!({"access_token": null})),
        ),
        (
            "rt number",
            ScriptedReply::json(200, &json!({"access_token": "AT-x", "refresh_token": 7})),
        ),
        ("204", ScriptedReply::status(204)),
        ("200 empty", ScriptedReply::status(200)),
        (
            "200 error body",
            ScriptedReply::json(200, &json!({"error": "invalid_grant"})),
        ),
        (
            "cut by cap",
            ScriptedReply::json(
                200,
                &json!({"access_token": "AT-x", "pad": "x".repeat(1 << 20)}),
            ),
        ),
    ];
    for platform in &PLATFORMS {
        for (name, reply) in bodies.clone() {
            let (_endpoint, result) = refresh_answered(platform, reply).await;
            let err = result.unwrap_err();
            assert!(
                matches!(err, ProviderError::InvalidResponse { .. }),
                "{platform} / {name}: {err:?}"
            );
            assert!(!err.provably_not_consumed(), "{platform} / {name}");
        }
    }
}

/// README: "a 2xx is never thrown away (it may carry a rotation)". A JSON
/// number serde_json cannot hold (`1e400`) in `expires_in`, a cosmetic
/// field, makes the whole body "not JSON": the new refresh token in the
/// same body is discarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_an_out_of_range_expires_in_throws_away_a_rotation() {
    for platform in &[Platform::Anthropic, Platform::OpenAi] {
        let reply = ScriptedReply::status(200)
            .header("Content-Type", "application/json")
            .body(r#"{"access_token":"AT-new-Hq8Lm2Zx5Kd7Wq","refresh_token":"RT-new-Zp3Kq9Lw2Xv5","expires_in":1e400}"#);
        let (_endpoint, result) = refresh_answered(platform, reply).await;
        let creds = result.unwrap_or_else(|e| panic!("{platform}: rotation discarded: {e:?}"));
        assert_eq!(
            creds.refresh_token().unwrap().expose(),
            "RT-new-Zp3Kq9Lw2Xv5"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_odd_expires_in_values_keep_the_tokens_and_a_future_canonical_expiry() {
    for platform in &PLATFORMS {
        for expires_in in [
            json!(null),
            json!("abc"),
            json!(0),
            json!(-5),
            json!(1e300),
            json!(u64::MAX),
            json!("99999999999999999999999"),
            json!(1),
            json!(3600.9),
            json!(" 3600 "),
        ] {
            let reply = ScriptedReply::json(
                200,
                &json!({"access_token": "AT-new-Hq8Lm2Zx5Kd7Wq", "refresh_token": "RT-new-Zp3Kq9Lw2Xv5", "expires_in": expires_in}),
            );
            let (_endpoint, result) = refresh_answered(platform, reply).await;
            let creds = result.unwrap_or_else(|e| panic!("{platform} {expires_in}: {e:?}"));
            let raw = creds.get("expires_at").cloned().unwrap();
            let s = raw
                .as_str()
                .unwrap_or_else(|| panic!("not a string: {raw}"));
            let secs: i64 = s
                .parse()
                .unwrap_or_else(|_| panic!("{platform} {expires_in}: not canonical {s}"));
            assert!(
                secs > NOW_SECS,
                "{platform} {expires_in}: already expired ({secs})"
            );
            assert!(
                secs <= NOW_SECS + 367 * 86400,
                "{platform} {expires_in}: {secs}"
            );
            assert_eq!(
                creds.refresh_token().unwrap().expose(),
                "RT-new-Zp3Kq9Lw2Xv5"
            );
            if matches!(platform, Platform::Gemini | Platform::Antigravity) {
                assert!(secs >= NOW_SECS + 30, "{platform} {expires_in}: floor");
            }
        }
    }
}

// ---------------------------------------------------------- merge semantics

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_merge_keeps_unknown_keys_and_the_stored_refresh_token_on_blank_or_null() {
    for platform in &PLATFORMS {
        for rt in [json!(null), json!(""), json!("   "), json!(null)] {
            let endpoint = TokenEndpoint::start().await.unwrap();
            endpoint.push(ScriptedReply::json(
                200,
                &json!({"access_token": "AT-new-Hq8Lm2Zx5Kd7Wq", "refresh_token": rt, "expires_in": 3600, "id_token": "", "scope": "", "token_type": null}),
            ));
            let mut acct = account(platform, 1, "RT-stored-keep");
            acct.credentials
                .insert("expires_at", "2029-12-31T23:00:00+09:00");
            acct.credentials.insert("email", "keep@example.com");
            acct.credentials.insert("scope", "old-scope");
            acct.credentials.insert("nested", json!({"a": [1, 2]}));
            let creds = exec_at(platform, &endpoint.url())
                .refresh(&acct, &ctx("RT-stored-keep"))
                .await
                .unwrap_or_else(|e| panic!("{platform}: {e:?}"));
            assert_eq!(
                creds.refresh_token().unwrap().expose(),
                "RT-stored-keep",
                "{platform}"
            );
            assert_eq!(creds.get("operator_note"), Some(&json!("keep me")));
            assert_eq!(creds.get("nested"), Some(&json!({"a": [1, 2]})));
            assert_eq!(creds.get("email"), Some(&json!("keep@example.com")));
            assert_eq!(creds.get("scope"), Some(&json!("old-scope")), "{platform}");
            assert_eq!(
                creds.string_view("expires_at"),
                (NOW_SECS
                    + if matches!(platform, Platform::Gemini | Platform::Antigravity) {
                        3300
                    } else {
                        3600
                    })
                .to_string()
            );
            assert_eq!(
                creds.access_token().unwrap().expose(),
                "AT-new-Hq8Lm2Zx5Kd7Wq"
            );
        }
    }
}

/// Executors never read the stored refresh token: a stored one of the
/// wrong type, or a different one, is not sent; ctx's is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_only_ctx_refresh_token_is_presented_whatever_is_stored() {
    for platform in &PLATFORMS {
        for stored in [
            json!(12345),
            json!(["RT-array"]),
            json!("RT-stored-other"),
            json!(null),
        ] {
            let endpoint = TokenEndpoint::start().await.unwrap();
            endpoint.push(ok_body(platform));
            let mut acct = account(platform, 1, "x");
            acct.credentials.insert("refresh_token", stored.clone());
            exec_at(platform, &endpoint.url())
                .refresh(&acct, &ctx(CLAIMED))
                .await
                .unwrap_or_else(|e| panic!("{platform} {stored}: {e:?}"));
            assert_eq!(endpoint.requests_containing(CLAIMED).len(), 1, "{platform}");
            assert_eq!(endpoint.requests_containing("RT-stored-other").len(), 0);
            assert_eq!(endpoint.requests_containing("RT-array").len(), 0);
            assert_eq!(endpoint.requests_containing("12345").len(), 0);
        }
    }
}

// ------------------------------------------------------- classification

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_error_shapes_statuses_and_retry_after_variants_classify() {
    use ProviderError as E;
    type Check = fn(&E) -> bool;
    let far = (now() + chrono::Duration::days(30))
        .to_rfc2822()
        .replace("+0000", "GMT");
    let past = (now() - chrono::Duration::days(1))
        .to_rfc2822()
        .replace("+0000", "GMT");
    let cases: Vec<(&str, ScriptedReply, Check)> = vec![
        (
            "odd case + spaces",
            ScriptedReply::json(400, &json!({"error": "  Invalid_Grant\t"})),
            |e| matches!(e, E::InvalidGrant { .. }),
        ),
        (
            "openai nested reused",
            ScriptedReply::json(
                401,
                &json!({"error": {"code": "REFRESH_TOKEN_REUSED", "type": "invalid_request_error"}}),
            ),
            |e| matches!(e, E::InvalidGrant { .. }),
        ),
        (
            "google nested status",
            ScriptedReply::json(
                401,
                &json!({"error": {"code": 401, "status": "UNAUTHENTICATED", "message": "x"}}),
            ),
            |e| matches!(e, E::UnexpectedStatus { status: 401, .. }),
        ),
        (
            "unknown code",
            ScriptedReply::json(400, &json!({"error": "weird_new_code"})),
            |e| {
                matches!(
                    e,
                    E::UnexpectedStatus {
                        status: 400,
                        code: Some(_)
                    }
                )
            },
        ),
        ("401 no body", ScriptedReply::status(401), |e| {
            matches!(
                e,
                E::UnexpectedStatus {
                    status: 401,
                    code: None
                }
            ) && !e.provably_not_consumed()
        }),
        ("403 no body", ScriptedReply::status(403), |e| {
            matches!(
                e,
                E::UnexpectedStatus {
                    status: 403,
                    code: None
                }
            )
        }),
        (
            "400 html",
            ScriptedReply::html(400, "<html>bad</html>"),
            |e| {
                matches!(
                    e,
                    E::UnexpectedStatus {
                        status: 400,
                        code: None
                    }
                ) && !e.provably_not_consumed()
            },
        ),
        ("304", ScriptedReply::status(304), |e| {
            matches!(e, E::UnexpectedStatus { status: 304, .. })
        }),
        (
            "429 garbage RA",
            ScriptedReply::status(429).header("Retry-After", "soon-ish"),
            |e| matches!(e, E::RateLimited { retry_after: None }),
        ),
        (
            "429 negative RA",
            ScriptedReply::status(429).header("Retry-After", "-30"),
            |e| matches!(e, E::RateLimited { retry_after: None }),
        ),
        (
            "429 huge RA",
            ScriptedReply::status(429).header("Retry-After", "999999999999999999999999"),
            |e| matches!(e, E::RateLimited { retry_after: Some(d) } if *d == Duration::from_secs(86400)),
        ),
        (
            "429 far date",
            ScriptedReply::status(429).header("Retry-After", far),
            |e| matches!(e, E::RateLimited { retry_after: Some(d) } if *d == Duration::from_secs(86400)),
        ),
        (
            "429 past date",
            ScriptedReply::status(429).header("Retry-After", past),
            |e| matches!(e, E::RateLimited { retry_after: Some(d) } if d.is_zero()),
        ),
        (
            "429 fraction RA",
            ScriptedReply::status(429).header("Retry-After", "1.5"),
            |e| matches!(e, E::RateLimited { retry_after: None }),
        ),
        (
            "503 + invalid_grant body",
            ScriptedReply::json(503, &json!({"error": "invalid_grant"})),
            |e| matches!(e, E::InvalidGrant { .. }),
        ),
    ];
    for platform in &PLATFORMS {
        for (name, reply, ok) in cases.clone() {
            let (_endpoint, result) = refresh_answered(platform, reply).await;
            let err = result.unwrap_err();
            assert!(ok(&err), "{platform} / {name}: {err:?}");
            assert!(!format!("{err} {err:?}").contains(CLAIMED));
        }
    }
}

// ----------------------------------------------------------------- bad input

/// A 2026-12 setup token (refresh token + 8 h access token) whose
/// `expires_at` is in a legacy encoding the core parser refuses
/// (milliseconds) or garbage is neither refreshed nor reported: the
/// executor silently treats it as an old static token, so the request
/// path serves its access token long after it expired (invariant 10).
#[test]
fn fixed_claude_setup_token_with_unreadable_expiry_is_silently_served_static() {
    let exec = refresh_providers::claude::executor(Default::default(), HttpClients::default());
    for expires_at in [
        json!("1893456000000"),
        json!(1_893_456_000_000_i64),
        json!("next tuesday"),
        json!({"when": 1}),
    ] {
        let creds = Credentials::new()
            .with("access_token", "sk-ant-oat01-old-Qm3Xv8Rt2Lp7")
            .with("refresh_token", "sk-ant-ort01-Wd2Kq8Ls5Nf1Xz9")
            .with("expires_at", expires_at.clone());
        let acct = Account::new(1, Platform::Anthropic, AccountType::SetupToken, creds);
        let served_static = exec.static_token(&acct).is_some();
        let refreshable = exec.can_refresh(&acct);
        assert!(
            refreshable || !served_static,
            "expires_at {expires_at}: refresh token present but can_refresh = false and the access token is served statically"
        );
    }
}

#[test]
fn held_claude_setup_token_expiry_encodings_that_parse_are_refreshable() {
    let exec = refresh_providers::claude::executor(Default::default(), HttpClients::default());
    for expires_at in [
        json!("1893456000"),
        json!(1_893_456_000),
        json!(1_893_456_000.7),
        json!(" 1893456000 "),
        json!("2030-01-01T08:00:00+08:00"),
        json!("2030-01-01T00:00:00.123Z"),
    ] {
        let creds = Credentials::new()
            .with("access_token", "sk-ant-oat01-old")
            .with("refresh_token", "sk-ant-ort01-x")
            .with("expires_at", expires_at.clone());
        let acct = Account::new(1, Platform::Anthropic, AccountType::SetupToken, creds);
        assert!(exec.can_refresh(&acct), "{expires_at}");
        assert!(exec.static_token(&acct).is_none(), "{expires_at}");
    }
}

/// `validate()` treats a blank `ai_studio_client_id` as "not set", but
/// the executor's client choice treats `Some("")` as half configured, so
/// a config that validates fails every ai_studio refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_blank_ai_studio_client_id_validates_but_fails_every_ai_studio_refresh() {
    let endpoint = TokenEndpoint::start().await.unwrap();
    endpoint.set_fallback(google_ok());
    let config: ProvidersConfig = serde_json::from_value(json!({
        "gemini": {"ai_studio_client_id": "", "ai_studio_client_secret": ""}
    }))
    .unwrap();
    config
        .validate()
        .expect("validate accepts blank id and secret");
    let mut config = config.with_base_url(&endpoint.url());
    config.gemini.discovery = quick();
    let exec = executor(&Platform::Gemini, config, HttpClients::default());
    let creds = Credentials::new()
        .with("access_token", "ya29.old")
        .with("refresh_token", "1//0g-stored")
        .with("oauth_type", "ai_studio");
    let result = exec
        .refresh(&Account::oauth(1, Platform::Gemini, creds), &ctx(CLAIMED))
        .await;
    assert!(
        result.is_ok(),
        "validated config, failed refresh: {:?}",
        result.err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_gemini_odd_oauth_type_and_project_values_fail_typed_before_sending() {
    let endpoint = TokenEndpoint::start().await.unwrap();
    endpoint.set_fallback(google_ok());
    let exec = exec_at(&Platform::Gemini, &endpoint.url());
    for (oauth_type, project) in [
        (json!("vertex"), json!("p")),
        (json!(["code_assist"]), json!(null)),
        (json!(""), json!(null)),
        (json!(null), json!({"id": "p"})),
        (json!(7), json!("p")),
    ] {
        let creds = Credentials::new()
            .with("refresh_token", "1//0g-stored")
            .with("oauth_type", oauth_type.clone())
            .with("project_id", project.clone());
        let err = exec
            .refresh(&Account::oauth(1, Platform::Gemini, creds), &ctx(CLAIMED))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ProviderError::Configuration { .. }),
            "{oauth_type} / {project}: {err:?}"
        );
        assert!(err.provably_not_consumed());
    }
    assert_eq!(endpoint.request_count(), 0);
}

// ------------------------------------------------------------- follow-ups

/// Every follow-up failure after a usable 2xx returns the tokens (Ok), in
/// time, and never re-presents the refresh token.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn held_failing_or_hanging_follow_ups_never_lose_the_tokens() {
    let faults = [
        FaultKind::ServerError,
        FaultKind::Hang,
        FaultKind::Reset,
        FaultKind::MalformedJson,
        FaultKind::HtmlError,
        FaultKind::RateLimited {
            retry_after: "5".into(),
        },
        FaultKind::Oversized {
            bytes: 3_000_000,
            announce_length: false,
        },
    ];
    for kind in faults {
        for (platform, oauth_type, path) in [
            (Platform::Gemini, "code_assist", paths::LOAD_CODE_ASSIST),
            (Platform::Gemini, "google_one", paths::DRIVE_ABOUT),
            (Platform::Antigravity, "", paths::LOAD_CODE_ASSIST),
        ] {
            let emu = Emulator::start().await.unwrap();
            let grant = emu.seed(GrantSpec {
                project_id: Some("emu-project".into()),
                drive_limit: Some(3 << 40),
                ..GrantSpec::new(emulated(&platform))
            });
            emu.push_fault(Fault::new(kind.clone()).on(path));
            let rt = grant.refresh_token.expose().to_owned();
            let mut creds = Credentials::new()
                .with("access_token", "ya29.old")
                .with("refresh_token", rt.as_str())
                .with("tier_id", "google_ai_pro");
            if !oauth_type.is_empty() {
                creds.insert("oauth_type", oauth_type);
                if oauth_type == "google_one" {
                    creds.insert("project_id", "kept");
                }
            }
            let acct = Account::oauth(7, platform.clone(), creds);
            let started = std::time::Instant::now();
            let timeout = Duration::from_secs(3);
            let result = exec_at(&platform, &emu.url())
                .refresh(&acct, &ctx_for(&rt, timeout))
                .await;
            let took = started.elapsed();
            let creds =
                result.unwrap_or_else(|e| panic!("{platform}/{oauth_type}/{kind:?}: {e:?}"));
            assert!(
                took < timeout,
                "{platform}/{oauth_type}/{kind:?}: returned after the deadline ({took:?})"
            );
            assert!(creds.access_token().unwrap().expose().starts_with("ya29."));
            assert_ne!(creds.access_token().unwrap().expose(), "ya29.old");
            let stats = emu.stats();
            assert_eq!(
                stats.requests(paths::GOOGLE_TOKEN),
                1,
                "{platform}/{oauth_type}/{kind:?}"
            );
            if oauth_type == "google_one" {
                assert_eq!(
                    creds.string_view("tier_id"),
                    "google_ai_pro",
                    "{kind:?}: stored tier kept"
                );
            }
        }
    }
}

// ------------------------------------------------------------------ emulator

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn held_emulator_100_concurrent_refreshes_of_one_token_give_exactly_one_success() {
    for platform in [Platform::Anthropic, Platform::OpenAi] {
        let emu = Emulator::start().await.unwrap();
        let grant = emu.seed(GrantSpec::new(emulated(&platform)));
        let rt = grant.refresh_token.expose().to_owned();
        let exec = exec_at(&platform, &emu.url());
        let acct = account(&platform, 1, &rt);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..100 {
            let (exec, acct, rt) = (Arc::clone(&exec), acct.clone(), rt.clone());
            tasks.spawn(async move { exec.refresh(&acct, &ctx(&rt)).await });
        }
        let (mut ok, mut grant_errs) = (0, 0);
        while let Some(r) = tasks.join_next().await {
            match r.unwrap() {
                Ok(_) => ok += 1,
                Err(e) if e.is_grant_rejected() => grant_errs += 1,
                Err(e) => panic!("{platform}: {e:?}"),
            }
        }
        assert_eq!((ok, grant_errs), (1, 99), "{platform}");
        let g = emu.grant(grant.grant_id).unwrap();
        assert_eq!(g.refreshes, 1);
        assert!(g.revoked, "{platform}: reuse revokes the grant");
        assert_eq!(g.rejected, 99);
        let stats = emu.stats();
        assert_eq!(stats.refreshes, 1);
        assert_eq!(stats.revoked_grants, vec![grant.grant_id]);
    }
}

/// `GrantStats::reuse_attempts` is documented as "presentations of a
/// rotated-out refresh token", but once the first reuse revokes the grant
/// every later presentation of the same rotated-out token is counted only
/// as `rejected` (state.rs checks `revoked` before reuse).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_emulator_reuse_attempts_stop_counting_after_the_revocation() {
    let emu = Emulator::start().await.unwrap();
    let grant = emu.seed(GrantSpec::new(EmulatedProvider::Claude));
    let rt1 = grant.refresh_token.expose().to_owned();
    let exec = exec_at(&Platform::Anthropic, &emu.url());
    exec.refresh(&account(&Platform::Anthropic, 1, &rt1), &ctx(&rt1))
        .await
        .unwrap();
    for _ in 0..3 {
        let _ = exec
            .refresh(&account(&Platform::Anthropic, 1, &rt1), &ctx(&rt1))
            .await;
    }
    assert_eq!(emu.grant(grant.grant_id).unwrap().reuse_attempts, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_emulator_reuse_answers_the_real_shape_and_kills_the_rotated_token_too() {
    for (platform, reuse_code, after_code) in [
        (Platform::Anthropic, "invalid_grant", "invalid_grant"),
        (
            Platform::OpenAi,
            "refresh_token_reused",
            "refresh_token_invalidated",
        ),
    ] {
        let emu = Emulator::start().await.unwrap();
        let grant = emu.seed(GrantSpec::new(emulated(&platform)));
        let rt1 = grant.refresh_token.expose().to_owned();
        let exec = exec_at(&platform, &emu.url());
        let creds = exec
            .refresh(&account(&platform, 1, &rt1), &ctx(&rt1))
            .await
            .unwrap();
        let rt2 = creds.refresh_token().unwrap().expose().to_owned();
        assert_ne!(rt1, rt2);
        let err = exec
            .refresh(&account(&platform, 1, &rt1), &ctx(&rt1))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ProviderError::InvalidGrant { code, .. } if code.as_str() == reuse_code),
            "{err:?}"
        );
        let err = exec
            .refresh(&account(&platform, 1, &rt2), &ctx(&rt2))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ProviderError::InvalidGrant { code, .. } if code.as_str() == after_code),
            "{err:?}"
        );
        assert!(emu.grant(grant.grant_id).unwrap().revoked);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_processed_hang_and_reset_consume_the_token_and_are_ambiguous() {
    for kind in [
        FaultKind::Hang,
        FaultKind::Reset,
        FaultKind::MalformedJson,
        FaultKind::ServerError,
    ] {
        for platform in [Platform::Anthropic, Platform::OpenAi] {
            let emu = Emulator::start().await.unwrap();
            let grant = emu.seed(GrantSpec::new(emulated(&platform)));
            let rt = grant.refresh_token.expose().to_owned();
            emu.push_fault(Fault::new(kind.clone()).after_processing());
            let exec = exec_at(&platform, &emu.url());
            let err = exec
                .refresh(
                    &account(&platform, 1, &rt),
                    &ctx_for(&rt, Duration::from_millis(800)),
                )
                .await
                .unwrap_err();
            assert!(!err.provably_not_consumed(), "{kind:?} {platform}: {err:?}");
            let g = emu.grant(grant.grant_id).unwrap();
            assert_eq!((g.refreshes, g.generation), (1, 2), "{kind:?}: processed");
            // Presenting it again is a reuse and kills the grant.
            let err = exec
                .refresh(&account(&platform, 1, &rt), &ctx(&rt))
                .await
                .unwrap_err();
            assert!(err.is_grant_rejected(), "{err:?}");
            assert!(emu.grant(grant.grant_id).unwrap().revoked);
        }
    }
}

#[tokio::test]
async fn held_emulator_binds_loopback_only_and_unknown_paths_are_not_counted() {
    let emu = Emulator::start().await.unwrap();
    assert!(emu.addr().ip().is_loopback());
    assert!(emu.url().starts_with("http://127.0.0.1:"));
    let r = reqwest::Client::new()
        .post(format!("{}/v1/oauth/token/extra", emu.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(emu.stats().requests_by_path.is_empty());
}

/// Invariant 9 for the emulator's public types: `EmulatorConfig` derives
/// `Debug` over `google_clients: Vec<(String, String)>` (client secrets),
/// and `GrantSpec` derives `Debug` over `refresh_token: Option<String>`.
#[test]
fn fixed_emulator_config_and_grant_spec_debug_show_secrets() {
    let config = format!("{:?}", EmulatorConfig::default());
    let spec = format!(
        "{:?}",
        GrantSpec::new(EmulatedProvider::Claude).refresh_token("sk-ant-ort01-Wd2Kq8Ls5Nf1Xz9Qm3Xv")
    );
    let mut leaks = Vec::new();
    if config.contains("GOCSPX-") {
        leaks.push("EmulatorConfig Debug shows the Google client secrets");
    }
    if spec.contains("Wd2Kq8Ls5Nf1Xz9") {
        leaks.push("GrantSpec Debug shows the refresh token");
    }
    assert!(leaks.is_empty(), "{leaks:?}");
}

// ---------------------------------------------------------------------- leaks

#[tokio::test]
async fn held_no_secret_in_trace_logs_errors_or_debug_through_proxies_and_faults() {
    let captured = Captured::global();

    const PROXY_PW: &str = "Pr0xyPw-Zq8Xv2Lm5Kd7";
    const AI_SECRET: &str = "GOCSPX-aistudio-Hq8Lm2Zx5Kd7";
    let emu = Emulator::start().await.unwrap();
    let (p407, _) = forward_proxy(
        b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    let (pdrop, _) = forward_proxy(b"").await;
    let proxies = [
        None,
        Some(p407.replace("http://", &format!("http://bob:{PROXY_PW}@"))),
        Some(pdrop.replace("http://", &format!("http://bob:{PROXY_PW}@"))),
        Some(format!("socks5://bob:{PROXY_PW}@{}", closed_port())),
        Some(format!("http://bob:{PROXY_PW}@{}", closed_port())),
    ];
    let mut config = config_at(&emu.url());
    config.gemini.ai_studio_client_id = Some("custom.apps.googleusercontent.com".into());
    config.gemini.ai_studio_client_secret = Some(Secret::from(AI_SECRET));
    let http = HttpClients::new(config.http.clone());
    let mut shown = vec![format!("{config:?}")];
    let faults = [
        None,
        Some(FaultKind::ServerError),
        Some(FaultKind::Reset),
        Some(FaultKind::MalformedJson),
        Some(FaultKind::RateLimited {
            retry_after: "Wed, 21 Oct 2015 07:28:00 GMT".into(),
        }),
        Some(FaultKind::Oversized {
            bytes: 2_000_000,
            announce_length: true,
        }),
    ];
    for platform in &PLATFORMS {
        let exec = executor(platform, config.clone(), http.clone());
        for proxy in &proxies {
            for fault in &faults {
                let grant = emu.seed(GrantSpec {
                    onboard_project: Some("p".into()),
                    ..GrantSpec::new(emulated(platform))
                });
                let rt = grant.refresh_token.expose().to_owned();
                if let Some(kind) = fault {
                    emu.push_fault(Fault::new(kind.clone()));
                }
                let mut acct = account(platform, 3, &rt);
                if *platform == Platform::Gemini {
                    acct.credentials.remove("project_id");
                }
                if let Some(p) = proxy {
                    acct.proxy = Some(p.parse::<ProxyUrl>().unwrap());
                }
                let r = exec
                    .refresh(&acct, &ctx_for(&rt, Duration::from_secs(2)))
                    .await;
                match r {
                    Ok(c) => shown.push(format!("{c:?}")),
                    Err(e) => shown.push(format!("{e} | {e:?}")),
                }
                shown.push(format!(
                    "{acct:?} {}",
                    acct.proxy
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default()
                ));
                emu.clear_faults();
            }
        }
    }
    shown.push(format!(
        "{http:?} {:?} {:?}",
        refresh_providers::gemini::GeminiExecutor::new(config.gemini.clone(), http.clone()),
        refresh_providers::antigravity::AntigravityExecutor::new(
            config.antigravity.clone(),
            http.clone()
        )
    ));
    let log = captured.text();
    let shown = shown.join("\n");
    let mut secrets: Vec<String> = emu
        .issued_tokens()
        .iter()
        .map(|t| t.expose().to_owned())
        .collect();
    secrets.extend(
        [
            PROXY_PW,
            AI_SECRET,
            "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",
            "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",
        ]
        .map(str::to_owned),
    );
    secrets.push(base64_basic("bob", PROXY_PW));
    assert!(log.len() > 1000, "log captured");
    assert_never_shown(&log, &shown, &secrets);
}

fn base64_basic(user: &str, pw: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
}

// --------------------------------------------------------------- SOCKS / DNS

#[derive(Default)]
struct SocksSeen {
    atyp: std::sync::Mutex<Vec<(u8, String)>>,
    creds: std::sync::Mutex<Vec<(String, String)>>,
}

/// SOCKS5 with optional user/password auth (RFC 1929); records the
/// address type and name asked for, resolves names itself, relays.
async fn socks5_auth_proxy() -> (std::net::SocketAddr, Arc<SocksSeen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(SocksSeen::default());
    let s2 = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((mut c, _)) = listener.accept().await {
            let seen = Arc::clone(&s2);
            tokio::spawn(async move {
                let r: std::io::Result<()> = async {
                    let mut g = [0_u8; 2];
                    c.read_exact(&mut g).await?;
                    let mut m = vec![0_u8; g[1] as usize];
                    c.read_exact(&mut m).await?;
                    if m.contains(&2) {
                        c.write_all(&[5, 2]).await?;
                        let mut v = [0_u8; 2];
                        c.read_exact(&mut v).await?;
                        let mut u = vec![0_u8; v[1] as usize];
                        c.read_exact(&mut u).await?;
                        let mut pl = [0_u8; 1];
                        c.read_exact(&mut pl).await?;
                        let mut p = vec![0_u8; pl[0] as usize];
                        c.read_exact(&mut p).await?;
                        seen.creds.lock().unwrap().push((
                            String::from_utf8_lossy(&u).into(),
                            String::from_utf8_lossy(&p).into(),
                        ));
                        c.write_all(&[1, 0]).await?;
                    } else {
                        c.write_all(&[5, 0]).await?;
                    }
                    let Some((atyp, host, port)) = socks5_target(&mut c).await? else {
                        return Ok(());
                    };
                    seen.atyp.lock().unwrap().push((atyp, host.clone()));
                    let target = if host == "upstream.invalid" {
                        "127.0.0.1".to_owned()
                    } else {
                        host
                    };
                    let mut up = TcpStream::connect((target.as_str(), port)).await?;
                    c.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
                    tokio::io::copy_bidirectional(&mut c, &mut up).await?;
                    Ok(())
                }
                .await;
                let _ = r;
            });
        }
    });
    (addr, seen)
}

/// socks5 is upgraded to socks5h: the upstream host name goes to the
/// proxy unresolved (a name only the proxy can resolve works), and
/// percent-encoded credentials arrive decoded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_socks5_resolves_names_at_the_proxy_and_decodes_credentials() {
    let emu = Emulator::start().await.unwrap();
    let port = emu.addr().port();
    let (proxy_addr, seen) = socks5_auth_proxy().await;
    for scheme in ["socks5", "socks5h"] {
        let grant = emu.seed(GrantSpec::new(EmulatedProvider::Claude));
        let rt = grant.refresh_token.expose().to_owned();
        let mut acct = account(&Platform::Anthropic, 1, &rt);
        acct.proxy = Some(
            format!("{scheme}://b%40b:p%40ss%3Aw%2Frd@{proxy_addr}")
                .parse::<ProxyUrl>()
                .unwrap(),
        );
        let exec = exec_at(
            &Platform::Anthropic,
            &format!("http://upstream.invalid:{port}"),
        );
        exec.refresh(&acct, &ctx(&rt))
            .await
            .unwrap_or_else(|e| panic!("{scheme}: {e:?}"));
    }
    assert_eq!(
        *seen.atyp.lock().unwrap(),
        vec![
            (3, "upstream.invalid".to_owned()),
            (3, "upstream.invalid".to_owned())
        ]
    );
    assert!(
        seen.creds
            .lock()
            .unwrap()
            .iter()
            .all(|c| c == &("b@b".to_owned(), "p@ss:w/rd".to_owned())),
        "{:?}",
        seen.creds.lock().unwrap()
    );
}

// ------------------------------------------------------------- the user's view

/// An operator's program: providers configured from a JSON document (the
/// same shape a TOML file deserializes to), every executor registered,
/// one account of each platform refreshed through core's flow against the
/// emulator, as the README shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_user_view_config_from_json_register_all_and_refresh_each_platform() {
    use refresh_core::memory::{
        InMemoryAccountRepository, InMemoryClaimStore, InMemoryRefreshLock,
    };
    use refresh_core::{ExecutorRegistry, LockStrategy, RefreshFlow, RefreshOutcome};

    let emu = Emulator::start().await.unwrap();
    let base = emu.url();
    // What an operator writes (durations are plain seconds).
    let doc = json!({
        "http": {"connect_timeout": 2, "max_body_bytes": 65536},
        "claude": {"token_url": format!("{base}/v1/oauth/token"), "timeout": 5},
        "openai": {"token_url": format!("{base}/oauth/token"), "originator": null},
        "gemini": {
            "token_url": format!("{base}/token"),
            "code_assist_base_url": base,
            "resource_manager_url": format!("{base}/v1/projects"),
            "drive_about_url": format!("{base}/drive/v3/about?fields=storageQuota"),
            "discovery": {"onboard_interval": 0.01, "backoff": 0.01}
        },
        "antigravity": {
            "token_url": format!("{base}/token"),
            "code_assist_base_urls": [base],
            "version": "1.23.2",
            "discovery": {"onboard_interval": 0.01, "backoff": 0.01}
        }
    });
    let config: ProvidersConfig = serde_json::from_value(doc).expect("operator config");
    let mut registry = ExecutorRegistry::new();
    refresh_providers::register_all(&mut registry, config).expect("valid config");

    let mut accounts = Vec::new();
    for (i, platform) in PLATFORMS.iter().enumerate() {
        let grant = emu.seed(GrantSpec {
            project_id: Some("proj-1".into()),
            ..GrantSpec::new(emulated(platform))
        });
        let mut creds = Credentials::new()
            .with("access_token", "old")
            .with("refresh_token", grant.refresh_token.expose())
            .with("expires_at", (Utc::now().timestamp() + 60).to_string());
        if *platform == Platform::Gemini {
            creds.insert("oauth_type", "code_assist");
        }
        accounts.push(Account::oauth(i as i64 + 1, platform.clone(), creds));
    }
    let repo = Arc::new(InMemoryAccountRepository::with_accounts(accounts.clone()));
    let lock = Arc::new(InMemoryRefreshLock::default());
    let claims = Arc::new(InMemoryClaimStore::single_process());
    let flow = RefreshFlow::builder(repo, LockStrategy::single(lock), claims)
        .build()
        .unwrap();
    for acct in &accounts {
        let exec = registry.get(&acct.platform).expect("registered").clone();
        let outcome = flow
            .refresh_if_needed(acct, &exec, Duration::from_secs(180))
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", acct.platform));
        let RefreshOutcome::Refreshed { account, .. } = outcome else {
            panic!("{}: {outcome:?}", acct.platform)
        };
        assert_ne!(account.credentials.access_token().unwrap().expose(), "old");
        if matches!(acct.platform, Platform::Gemini | Platform::Antigravity) {
            assert_eq!(account.credentials.string_view("project_id"), "proj-1");
        }
    }
    assert_eq!(emu.stats().refreshes, 4);
}

// ------------------------------------------------------- config foot-guns

/// `max_body_bytes` has no lower bound: a config with a small cap
/// validates, then every successful refresh is cut by the cap after the
/// upstream rotated, i.e. every rotation is thrown away (`InvalidResponse`)
/// and the account is dead after one refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_a_small_max_body_bytes_validates_and_discards_every_rotation() {
    let emu = Emulator::start().await.unwrap();
    let config: ProvidersConfig =
        serde_json::from_value(json!({"http": {"max_body_bytes": 256}})).unwrap();
    let validated = config.validate().is_ok();
    let config = config.with_base_url(&emu.url());
    let http = HttpClients::new(config.http.clone());
    let grant = emu.seed(GrantSpec::new(EmulatedProvider::OpenAi));
    let rt = grant.refresh_token.expose().to_owned();
    let result = executor(&Platform::OpenAi, config, http)
        .refresh(&account(&Platform::OpenAi, 1, &rt), &ctx(&rt))
        .await;
    let rotated = emu.grant(grant.grant_id).unwrap().generation > 1;
    assert!(
        !(validated && rotated && result.is_err()),
        "validate() accepted the config; the upstream rotated; the executor returned {result:?}"
    );
}

/// A `timeout` of 0 validates; the request is still written (the token
/// reaches the upstream, which rotates it) but the answer is never read:
/// every refresh burns the refresh token and reports `Ambiguous`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_a_zero_timeout_validates_and_burns_the_token_on_every_refresh() {
    let emu = Emulator::start().await.unwrap();
    let config: ProvidersConfig =
        serde_json::from_value(json!({"openai": {"timeout": 0}})).unwrap();
    let validated = config.validate().is_ok();
    let config = config.with_base_url(&emu.url());
    let grant = emu.seed(GrantSpec::new(EmulatedProvider::OpenAi));
    let rt = grant.refresh_token.expose().to_owned();
    let result = executor(&Platform::OpenAi, config, HttpClients::default())
        .refresh(&account(&Platform::OpenAi, 1, &rt), &ctx(&rt))
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let g = emu.grant(grant.grant_id).unwrap();
    assert!(
        !validated || result.is_ok(),
        "validate() accepted timeout 0; refresh: {result:?}; upstream rotated: {}",
        g.generation > 1
    );
}

/// `originator` is `Option<String>` defaulting to `Some("codex-tui")`;
/// TOML has no null, so the only way to "turn it off" from a TOML file is
/// `originator = ""`, which sends an empty `originator:` header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_an_empty_originator_sends_an_empty_header_instead_of_none() {
    let endpoint = TokenEndpoint::start().await.unwrap();
    endpoint.set_fallback(ok_body(&Platform::OpenAi));
    let config: ProvidersConfig =
        serde_json::from_value(json!({"openai": {"originator": ""}})).unwrap();
    let config = config.with_base_url(&endpoint.url());
    executor(&Platform::OpenAi, config, HttpClients::default())
        .refresh(&account(&Platform::OpenAi, 1, "x"), &ctx(CLAIMED))
        .await
        .unwrap();
    let req = &endpoint.requests()[0];
    assert_eq!(
        req.header("originator"),
        None,
        "sent {:?}",
        req.header("originator")
    );
}

/// `http.client_idle_timeout` is unbounded in serde and `validate()`;
/// moka asserts it is at most 1000 years, so `register_all` on a config
/// that parsed (e.g. an operator's "never expire" 1e11 s) panics instead
/// of returning a `ConfigError` (invariant 10).
#[test]
fn fixed_a_huge_client_idle_timeout_panics_register_all_instead_of_a_config_error() {
    let config: ProvidersConfig =
        serde_json::from_value(json!({"http": {"client_idle_timeout": 1e11}})).unwrap();
    let outcome = std::panic::catch_unwind(move || {
        let mut registry = refresh_core::ExecutorRegistry::new();
        refresh_providers::register_all(&mut registry, config).is_err()
    });
    assert!(
        matches!(outcome, Ok(true)),
        "register_all panicked (or accepted it)"
    );
}

/// An HTTPS upstream through an HTTP proxy that accepts `CONNECT` (200)
/// and then drops the tunnel: the TLS handshake never completed, nothing
/// was sent: `NotSent`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_connect_accepted_then_dropped_is_not_sent() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = format!("http://{}", listener.local_addr().unwrap());
    let connects = Arc::new(AtomicUsize::new(0));
    let c2 = Arc::clone(&connects);
    tokio::spawn(async move {
        while let Ok((mut c, _)) = listener.accept().await {
            let c2 = Arc::clone(&c2);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0_u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if c.read(&mut b).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                if head.starts_with(b"CONNECT ") {
                    c2.fetch_add(1, Ordering::SeqCst);
                }
                let _ = c
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await;
                let _ = c.shutdown().await;
            });
        }
    });
    for platform in &PLATFORMS {
        let mut acct = account(platform, 1, "RT-stored");
        acct.proxy = Some(proxy.parse::<ProxyUrl>().unwrap());
        let err = exec_at(platform, "https://upstream.invalid")
            .refresh(&acct, &ctx(CLAIMED))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ProviderError::NotSent { .. }),
            "{platform}: {err:?}"
        );
    }
    assert_eq!(connects.load(Ordering::SeqCst), 4);
}
