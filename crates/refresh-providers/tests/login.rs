//! The OAuth login of issue 12 (REFERENCE.md §13) against the emulator:
//! per provider begin → authorize (followed like a browser, without
//! redirect following) → complete → refresh the new account with the
//! provider's executor; the exact authorize parameters and exchange
//! bodies; and the security properties: a wrong or missing state and an
//! expired session send nothing, a code works once, the PKCE verifier
//! leaves the process only in the exchange body, no secret in a log line,
//! a `Debug` or an error.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use refresh_core::plugin::*;
use refresh_core::{ManualClock, OAuthErrorCode, SystemClock};
use refresh_providers::antigravity::AntigravityLogin;
use refresh_providers::claude::ClaudeLogin;
use refresh_providers::emulator::{
    EmulatedProvider, Emulator, EmulatorConfig, GcpProject, GrantSpec, RecordedRequest, paths,
};
use refresh_providers::gemini::GeminiLogin;
use refresh_providers::login::{
    LoginError, LoginFlow, LoginOptions, LoginOutcome, LoginSession, Redirect, login_flows,
};
use refresh_providers::openai::OpenAiLogin;
use refresh_providers::{HttpClients, ProvidersConfig};
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------- helpers

/// Every provider's settings under the emulator's URL, quick discovery.
fn config(emu: &Emulator) -> ProvidersConfig {
    let mut config = config_at(&emu.url());
    config.gemini.login.post_login_timeout = Duration::from_secs(20);
    config.antigravity.login.post_login_timeout = Duration::from_secs(20);
    config
}

/// The login flow of `platform`, on `clock`.
fn flow_on(
    platform: &Platform,
    config: &ProvidersConfig,
    clock: Arc<dyn Clock>,
) -> Arc<dyn LoginFlow> {
    let http = HttpClients::default();
    match platform {
        Platform::Anthropic => {
            Arc::new(ClaudeLogin::new(config.claude.clone(), http).with_clock(clock))
        }
        Platform::OpenAi => {
            Arc::new(OpenAiLogin::new(config.openai.clone(), http).with_clock(clock))
        }
        Platform::Gemini => {
            Arc::new(GeminiLogin::new(config.gemini.clone(), http).with_clock(clock))
        }
        Platform::Antigravity => {
            Arc::new(AntigravityLogin::new(config.antigravity.clone(), http).with_clock(clock))
        }
        other => panic!("no login for {other}"),
    }
}

fn flow(platform: &Platform, config: &ProvidersConfig) -> Arc<dyn LoginFlow> {
    flow_on(platform, config, Arc::new(SystemClock))
}

/// A secret field of a session, read through its serialization (the only
/// way out of the process besides the exchange body).
fn session_secret(session: &LoginSession, key: &str) -> String {
    serde_json::to_value(session).unwrap()[key]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Opens `url` like a browser that does not follow redirects: the
/// authorize answer must be a 302 whose `Location` is returned.
async fn follow(url: &str) -> url::Url {
    let answer = browser().get(url).send().await.unwrap();
    assert_eq!(
        answer.status(),
        302,
        "authorize answered {}",
        answer.status()
    );
    let location = answer.headers()["location"].to_str().unwrap();
    url::Url::parse(location).unwrap()
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap()
}

fn query(url: &url::Url) -> HashMap<String, String> {
    url.query_pairs().into_owned().collect()
}

fn ordered_query(url: &str) -> Vec<(String, String)> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// What the user pastes on `platform`: the `code#state` Claude's page
/// shows, the code alone Google's code page shows (Gemini), the
/// address-bar URL otherwise.
fn paste_for(platform: &Platform, location: &url::Url) -> String {
    let q = query(location);
    match platform {
        Platform::Anthropic => format!("{}#{}", q["code"], q["state"]),
        Platform::Gemini => q["code"].clone(),
        _ => location.to_string(),
    }
}

/// The recorded code exchanges (token path, `authorization_code`).
fn exchanges(emu: &Emulator, platform: &Platform) -> Vec<RecordedRequest> {
    emu.recorded_requests()
        .into_iter()
        .filter(|r| r.path() == token_path(platform) && r.contains("authorization_code"))
        .collect()
}

fn header<'a>(request: &'a RecordedRequest, name: &str) -> Option<&'a str> {
    request
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn s(creds: &Credentials, key: &str) -> String {
    creds.string_view(key)
}

/// Begins, follows the authorize redirect, completes.
async fn login(
    flow: &dyn LoginFlow,
    platform: &Platform,
    options: LoginOptions,
) -> (LoginSession, String, Result<LoginOutcome, LoginError>) {
    let session = flow.begin_login(options).unwrap();
    let location = follow(session.authorize_url()).await;
    let pasted = paste_for(platform, &location);
    let outcome = flow.complete_login(&session, &pasted).await;
    (session, pasted, outcome)
}

/// Refreshes `outcome` as an account with `platform`'s executor.
async fn refresh(
    emu: &Emulator,
    platform: &Platform,
    outcome: &LoginOutcome,
) -> Result<Credentials, ProviderError> {
    refresh_with(&config(emu), platform, outcome).await
}

/// Refreshes `outcome` with `platform`'s executor configured by `config`.
async fn refresh_with(
    config: &ProvidersConfig,
    platform: &Platform,
    outcome: &LoginOutcome,
) -> Result<Credentials, ProviderError> {
    let account = outcome.clone().into_account(7);
    let executor = executor_with(platform, config.clone(), HttpClients::default());
    let rt = account.credentials.refresh_token().unwrap();
    executor
        .refresh(
            &account,
            &RefreshContext::for_token(rt, Duration::from_secs(10)),
        )
        .await
}

// ------------------------------------------------------- end to end per provider

/// The whole login of `platform` with every assertion of the acceptance:
/// the authorize parameters, the exchange body and headers, the
/// credentials, a refresh afterwards, and where the verifier went.
async fn end_to_end(platform: Platform, options: LoginOptions, expected_params: &[(&str, &str)]) {
    let captured = Captured::global();
    let emu = Emulator::start().await.unwrap();
    emu.record_requests(true);
    emu.queue_login(GrantSpec {
        email: Some("dev@example.com".into()),
        project_id: (platform == Platform::Antigravity).then(|| "ag-project-7".into()),
        onboard_project: Some("onboarded-project-3".into()),
        onboard_pending_polls: 1,
        ..GrantSpec::new(emulated(&platform))
    });
    let config = config(&emu);
    let flow = flow(&platform, &config);
    assert_eq!(flow.platform(), platform);

    let session = flow.begin_login(options).unwrap();
    let verifier = session_secret(&session, "code_verifier");
    let state = session_secret(&session, "state");

    // The authorize URL: exactly the §13 parameters, in order.
    let url = session.authorize_url().to_owned();
    assert!(
        !url.contains(&verifier),
        "the verifier is in the authorize URL"
    );
    let mut want = pairs(expected_params);
    for (_, value) in &mut want {
        if value == "<challenge>" {
            *value = s256(&verifier);
        } else if value == "<state>" {
            value.clone_from(&state);
        }
    }
    assert_eq!(
        ordered_query(&url),
        want,
        "authorize parameters of {platform}"
    );
    assert!(url.contains("scope="), "{platform}");
    assert!(
        !url.contains("scope=%20") && !url.contains("%20"),
        "spaces are sent as +"
    );
    assert_eq!(state.len(), 43);
    assert_eq!(s256(&verifier).len(), 43);

    // The browser: the emulator redirects to the redirect URI with code and state.
    let location = follow(&url).await;
    let q = query(&location);
    assert!(
        location.as_str().starts_with(session.redirect_uri()),
        "{location}"
    );
    assert_eq!(q["state"], state);
    let code = q["code"].clone();
    let pasted = paste_for(&platform, &location);

    let outcome = flow.complete_login(&session, &pasted).await.unwrap();

    // The exchange: one request, its exact body and headers.
    let sent = exchanges(&emu, &platform);
    assert_eq!(sent.len(), 1, "one exchange");
    let exchange = &sent[0];
    assert_eq!(exchange.method, "POST");
    let redirect = session.redirect_uri();
    match platform {
        Platform::Anthropic => {
            assert_eq!(header(exchange, "content-type"), Some("application/json"));
            assert_eq!(header(exchange, "user-agent"), Some("axios/1.13.6"));
            assert_eq!(
                header(exchange, "accept"),
                Some("application/json, text/plain, */*")
            );
            assert_eq!(
                String::from_utf8(exchange.body.clone()).unwrap(),
                format!(
                    r#"{{"grant_type":"authorization_code","code":"{code}","redirect_uri":"{redirect}","client_id":"9d1c250a-e61b-44d9-88ed-5944d1962f5e","code_verifier":"{verifier}","state":"{state}"}}"#
                )
            );
        }
        Platform::OpenAi => {
            assert_eq!(
                header(exchange, "content-type"),
                Some("application/x-www-form-urlencoded")
            );
            assert_eq!(
                header(exchange, "user-agent"),
                Some("codex-tui/0.146.0 (Ubuntu 22.4.0; x86_64) xterm-256color")
            );
            assert_eq!(header(exchange, "originator"), Some("codex-tui"));
            assert_eq!(
                form_pairs(&exchange.body),
                pairs(&[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", redirect),
                    ("client_id", "app_EMoamEEZ73f0CkXaXp7hrann"),
                    ("code_verifier", &verifier),
                ])
            );
        }
        Platform::Gemini => {
            assert_eq!(header(exchange, "user-agent"), None);
            assert_eq!(
                form_pairs(&exchange.body),
                pairs(&[
                    ("grant_type", "authorization_code"),
                    (
                        "client_id",
                        "681255809395-oo8ft2oprdrnp9e3aqf6av3hmdib135j.apps.googleusercontent.com"
                    ),
                    ("client_secret", "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"),
                    ("code", &code),
                    ("code_verifier", &verifier),
                    ("redirect_uri", redirect),
                ])
            );
        }
        _ => {
            assert_eq!(
                form_pairs(&exchange.body),
                pairs(&[
                    (
                        "client_id",
                        "1071006060591-tmhssin2h21lcre235vtolojh4g403ep.apps.googleusercontent.com"
                    ),
                    ("client_secret", "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"),
                    ("code", &code),
                    ("redirect_uri", redirect),
                    ("grant_type", "authorization_code"),
                    ("code_verifier", &verifier),
                ])
            );
        }
    }

    // The verifier left the process exactly once: in the exchange body.
    let carrying: Vec<_> = emu
        .recorded_requests()
        .into_iter()
        .filter(|r| r.contains(&verifier))
        .collect();
    assert_eq!(carrying.len(), 1, "{carrying:?}");
    assert_eq!(carrying[0].path(), token_path(&platform));
    assert!(
        String::from_utf8_lossy(&carrying[0].body).contains(&verifier)
            || form_pairs(&carrying[0].body)
                .iter()
                .any(|(_, v)| v == &verifier)
    );
    assert!(!carrying[0].uri.contains(&verifier));
    assert!(
        carrying[0]
            .headers
            .iter()
            .all(|(_, v)| !v.contains(&verifier))
    );

    // The outcome: canonical credentials, identity, nothing pending.
    assert_eq!(outcome.platform, platform);
    let creds = &outcome.credentials;
    assert!(creds.access_token().is_some() && creds.refresh_token().is_some());
    let expires_at = creds.get("expires_at").and_then(|v| v.as_str()).unwrap();
    assert!(
        expires_at.parse::<i64>().is_ok(),
        "canonical expires_at: {expires_at}"
    );
    assert!(creds.expires_at().unwrap().unwrap() > chrono::Utc::now());
    assert!(outcome.warnings.is_empty(), "{:?}", outcome.warnings);
    assert_eq!(outcome.name, "dev@example.com");
    match platform {
        Platform::Anthropic => {
            assert_eq!(outcome.account_type, AccountType::OAuth);
            assert_eq!(s(creds, "token_type"), "Bearer");
            assert_eq!(s(creds, "expires_in"), "28800");
            assert_eq!(
                s(creds, "scope"),
                "org:create_api_key user:profile user:inference user:sessions:claude_code user:mcp_servers user:file_upload"
            );
            assert_eq!(outcome.extra["email_address"], "dev@example.com");
            assert!(
                outcome.extra["org_uuid"]
                    .as_str()
                    .unwrap()
                    .starts_with("00000000-")
            );
            assert!(outcome.extra.contains_key("account_uuid"));
        }
        Platform::OpenAi => {
            assert_eq!(s(creds, "email"), "dev@example.com");
            assert_eq!(s(creds, "chatgpt_account_id"), "acct-1");
            assert_eq!(s(creds, "chatgpt_user_id"), "user-1");
            assert_eq!(s(creds, "organization_id"), "org-1");
            assert_eq!(s(creds, "plan_type"), "plus");
            assert_eq!(s(creds, "client_id"), "app_EMoamEEZ73f0CkXaXp7hrann");
            assert!(creds.get("id_token").is_some());
            assert_eq!(outcome.extra["email"], "dev@example.com");
        }
        Platform::Gemini => {
            assert_eq!(s(creds, "oauth_type"), "code_assist");
            assert_eq!(s(creds, "project_id"), "onboarded-project-3");
            assert_eq!(s(creds, "tier_id"), "gcp_standard");
            assert_eq!(s(creds, "token_type"), "Bearer");
            assert!(creds.get("project_discovery_pending").is_none());
            assert_eq!(outcome.extra["email"], "dev@example.com");
            assert_eq!(emu.login_stats().userinfo_calls, 1);
        }
        _ => {
            assert_eq!(s(creds, "email"), "dev@example.com");
            assert_eq!(s(creds, "project_id"), "ag-project-7");
            assert_eq!(s(creds, "token_type"), "Bearer");
            assert_eq!(emu.login_stats().userinfo_calls, 1);
        }
    }
    let stats = emu.login_stats();
    assert_eq!((stats.authorizations, stats.exchanges), (1, 1));
    assert_eq!(
        stats.exchanges_by_provider.keys().collect::<Vec<_>>(),
        [match platform {
            Platform::Anthropic => "claude",
            Platform::OpenAi => "openai",
            Platform::Gemini => "gemini",
            _ => "antigravity",
        }]
    );
    assert_eq!(stats.exchange_rejections, 0);

    // The new account refreshes (and rotates where the upstream does).
    let refreshed = refresh(&emu, &platform, &outcome).await.unwrap();
    let grant = emu.stats().grants[0].clone();
    assert_eq!(grant.refreshes, 1);
    assert!(!grant.revoked);
    let rotates = matches!(platform, Platform::Anthropic | Platform::OpenAi);
    assert_eq!(
        refreshed.refresh_token() != creds.refresh_token(),
        rotates,
        "rotation on {platform}"
    );
    assert_ne!(refreshed.access_token(), creds.access_token());

    // No secret in the log, nor in any Debug/Display.
    let log = captured.text();
    assert!(log.contains("login code exchanged"), "the log was captured");
    let shown = format!("{session:?} {outcome:?} {flow:?} {config:?} {carrying:?}");
    let mut secrets = vec![verifier.clone(), state.clone(), code.clone()];
    secrets.extend(emu.issued_tokens().iter().map(|t| t.expose().to_owned()));
    assert_never_shown(&log, &shown, &secrets);
    assert!(!format!("{session:?}").contains(session.authorize_url()));
}

#[tokio::test]
async fn claude_login_end_to_end() {
    end_to_end(
        Platform::Anthropic,
        LoginOptions::default(),
        &[
            ("code", "true"),
            ("client_id", "9d1c250a-e61b-44d9-88ed-5944d1962f5e"),
            ("response_type", "code"),
            ("redirect_uri", "https://platform.claude.com/oauth/code/callback"),
            (
                "scope",
                "org:create_api_key user:profile user:inference user:sessions:claude_code user:mcp_servers user:file_upload",
            ),
            ("code_challenge", "<challenge>"),
            ("code_challenge_method", "S256"),
            ("state", "<state>"),
        ],
    )
    .await;
}

#[tokio::test]
async fn openai_login_end_to_end() {
    end_to_end(
        Platform::OpenAi,
        LoginOptions::default(),
        &[
            ("response_type", "code"),
            ("client_id", "app_EMoamEEZ73f0CkXaXp7hrann"),
            ("redirect_uri", "http://localhost:1455/auth/callback"),
            ("scope", "openid profile email offline_access"),
            ("state", "<state>"),
            ("code_challenge", "<challenge>"),
            ("code_challenge_method", "S256"),
            ("id_token_add_organizations", "true"),
            ("codex_cli_simplified_flow", "true"),
        ],
    )
    .await;
}

#[tokio::test]
async fn gemini_code_assist_login_end_to_end() {
    end_to_end(
        Platform::Gemini,
        LoginOptions::default(),
        &[
            ("response_type", "code"),
            (
                "client_id",
                "681255809395-oo8ft2oprdrnp9e3aqf6av3hmdib135j.apps.googleusercontent.com",
            ),
            ("redirect_uri", "https://codeassist.google.com/authcode"),
            (
                "scope",
                "https://www.googleapis.com/auth/cloud-platform https://www.googleapis.com/auth/userinfo.email https://www.googleapis.com/auth/userinfo.profile",
            ),
            ("state", "<state>"),
            ("code_challenge", "<challenge>"),
            ("code_challenge_method", "S256"),
            ("access_type", "offline"),
            ("prompt", "consent"),
            ("include_granted_scopes", "true"),
        ],
    )
    .await;
}

#[tokio::test]
async fn antigravity_login_end_to_end() {
    end_to_end(
        Platform::Antigravity,
        LoginOptions::default(),
        &[
            (
                "client_id",
                "1071006060591-tmhssin2h21lcre235vtolojh4g403ep.apps.googleusercontent.com",
            ),
            ("redirect_uri", "http://localhost:8085/callback"),
            ("response_type", "code"),
            (
                "scope",
                "https://www.googleapis.com/auth/cloud-platform https://www.googleapis.com/auth/userinfo.email https://www.googleapis.com/auth/userinfo.profile https://www.googleapis.com/auth/cclog https://www.googleapis.com/auth/experimentsandconfigs",
            ),
            ("state", "<state>"),
            ("access_type", "offline"),
            ("prompt", "consent"),
            ("include_granted_scopes", "true"),
            ("code_challenge", "<challenge>"),
            ("code_challenge_method", "S256"),
        ],
    )
    .await;
}

#[tokio::test]
async fn claude_setup_token_login_asks_for_user_inference_and_refreshes() {
    let emu = Emulator::start().await.unwrap();
    let config = config(&emu);
    let flow = flow(&Platform::Anthropic, &config);
    let options = LoginOptions {
        account_type: Some(AccountType::SetupToken),
        redirect: Redirect::Loopback,
        name: Some("ci-token".into()),
        ..LoginOptions::default()
    };
    let (session, _, outcome) = login(flow.as_ref(), &Platform::Anthropic, options).await;
    let params: HashMap<_, _> = ordered_query(session.authorize_url()).into_iter().collect();
    assert_eq!(params["scope"], "user:inference");
    assert_eq!(params["redirect_uri"], "http://localhost:54545/callback");
    let outcome = outcome.unwrap();
    assert_eq!(outcome.account_type, AccountType::SetupToken);
    assert_eq!(outcome.name, "ci-token");
    assert_eq!(s(&outcome.credentials, "scope"), "user:inference");
    refresh(&emu, &Platform::Anthropic, &outcome).await.unwrap();
}

// ------------------------------------------------------------- security

/// A code obtained by a real authorization, pasted with another state.
#[tokio::test]
async fn a_wrong_state_is_refused_before_anything_is_sent() {
    let emu = Emulator::start().await.unwrap();
    let config = config(&emu);
    for platform in &PLATFORMS {
        let flow = flow(platform, &config);
        let session = flow.begin_login(LoginOptions::default()).unwrap();
        let location = follow(session.authorize_url()).await;
        let q = query(&location);
        let forged = "Zm9yZ2VkLXN0YXRlLXZhbHVlLTAxMjM0NTY3ODlhYmNkZWY";
        let mut other = location.clone();
        other
            .query_pairs_mut()
            .clear()
            .append_pair("code", &q["code"])
            .append_pair("state", forged);
        // And a code of another session, with that session's state.
        let session_b = flow.begin_login(LoginOptions::default()).unwrap();
        let location_b = follow(session_b.authorize_url()).await;
        for pasted in [
            format!("{}#{forged}", q["code"]),
            other.to_string(),
            location_b.to_string(),
        ] {
            let err = flow.complete_login(&session, &pasted).await.unwrap_err();
            assert_eq!(err, LoginError::StateMismatch, "{platform}");
        }
    }
    let stats = emu.stats();
    for path in [
        paths::CLAUDE_TOKEN,
        paths::OPENAI_TOKEN,
        paths::GOOGLE_TOKEN,
    ] {
        assert_eq!(stats.requests(path), 0, "{path} saw a request");
    }
    let login = emu.login_stats();
    assert_eq!((login.exchanges, login.exchange_rejections), (0, 0));
    assert_eq!(login.authorizations, 8);
}

#[tokio::test]
async fn a_missing_state_is_refused_where_the_callback_always_has_one() {
    let emu = Emulator::start().await.unwrap();
    let config = config(&emu);
    for platform in [Platform::Anthropic, Platform::OpenAi, Platform::Antigravity] {
        let flow = flow(&platform, &config);
        let session = flow.begin_login(LoginOptions::default()).unwrap();
        let location = follow(session.authorize_url()).await;
        let code = query(&location)["code"].clone();
        for pasted in [code.clone(), format!("?code={code}")] {
            assert_eq!(
                flow.complete_login(&session, &pasted).await.unwrap_err(),
                LoginError::StateMissing,
                "{platform}"
            );
        }
    }
    assert_eq!(emu.login_stats().exchanges, 0);
    assert_eq!(emu.stats().requests(paths::CLAUDE_TOKEN), 0);
}

#[tokio::test]
async fn an_expired_session_is_refused_before_anything_is_sent() {
    let emu = Emulator::start().await.unwrap();
    let config = config(&emu);
    for platform in &PLATFORMS {
        let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
        let flow = flow_on(platform, &config, clock.clone());
        let session = flow.begin_login(LoginOptions::default()).unwrap();
        assert_eq!(
            session.expires_at() - session.created_at(),
            chrono::Duration::minutes(15)
        );
        let location = follow(session.authorize_url()).await;
        clock.advance(Duration::from_secs(15 * 60));
        let err = flow
            .complete_login(&session, &paste_for(platform, &location))
            .await
            .unwrap_err();
        assert_eq!(err, LoginError::SessionExpired, "{platform}");
    }
    assert_eq!(emu.login_stats().exchanges, 0);
    assert_eq!(emu.stats().requests(paths::GOOGLE_TOKEN), 0);
    assert_eq!(emu.stats().requests(paths::CLAUDE_TOKEN), 0);
    assert_eq!(emu.stats().requests(paths::OPENAI_TOKEN), 0);

    // Within its lifetime it completes; the lifetime is clamped to 10–30 min.
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let flow = flow_on(&Platform::OpenAi, &config, clock.clone());
    let session = flow.begin_login(LoginOptions::default()).unwrap();
    let location = follow(session.authorize_url()).await;
    clock.advance(Duration::from_secs(15 * 60 - 1));
    flow.complete_login(&session, location.as_str())
        .await
        .unwrap();
    for (asked, got) in [(60, 10), (20 * 60, 20), (7200, 30)] {
        let session = flow
            .begin_login(LoginOptions {
                session_ttl: Some(Duration::from_secs(asked)),
                ..LoginOptions::default()
            })
            .unwrap();
        assert_eq!(
            session.expires_at() - session.created_at(),
            chrono::Duration::minutes(got)
        );
    }
}

/// A session a store admitted (it judged the expiry by its own clock, the
/// database's) is not judged again by the flow's clock: a completing
/// process whose clock runs past the expiry still completes it.
#[tokio::test]
async fn a_session_a_store_admitted_is_not_judged_again_by_the_local_clock() {
    let emu = Emulator::start().await.unwrap();
    let config = config(&emu);
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let flow = flow_on(&Platform::OpenAi, &config, clock.clone());
    let session = flow.begin_login(LoginOptions::default()).unwrap();
    let location = follow(session.authorize_url()).await;
    clock.advance(Duration::from_secs(16 * 60));
    assert_eq!(
        flow.complete_login(&session, location.as_str())
            .await
            .unwrap_err(),
        LoginError::SessionExpired
    );
    let admitted = session.admitted_by_store();
    flow.complete_login(&admitted, location.as_str())
        .await
        .unwrap();
    assert_eq!(emu.login_stats().exchanges, 1);
    // Never stored: a session read back is judged by the clock again.
    let reread: LoginSession =
        serde_json::from_str(&serde_json::to_string(&admitted).unwrap()).unwrap();
    assert_eq!(
        flow.complete_login(&reread, location.as_str())
            .await
            .unwrap_err(),
        LoginError::SessionExpired
    );
}

/// What a loopback listener accepts: only the session's own state, once.
#[tokio::test]
async fn only_a_callback_with_the_sessions_state_is_its_own() {
    let emu = Emulator::start().await.unwrap();
    let config = config(&emu);
    let flow = flow(&Platform::Anthropic, &config);
    let session = flow
        .begin_login(LoginOptions {
            redirect: Redirect::Loopback,
            ..LoginOptions::default()
        })
        .unwrap();
    let location = follow(session.authorize_url()).await;
    let own = location.query().unwrap().to_owned();
    let state = query(&location)["state"].clone();
    assert!(session.is_own_callback(&own));
    assert!(session.is_own_callback(&format!("error=access_denied&state={state}")));
    for foreign in [
        String::new(),
        "code=forgedcode1234567".to_owned(),
        "code=forgedcode1234567&state=forged".to_owned(),
        format!("code=forgedcode1234567&state={state}x"),
        format!("code=c1234567890&state={state}&state={state}"),
    ] {
        assert!(!session.is_own_callback(&foreign), "{foreign}");
    }
}

#[tokio::test]
async fn a_code_works_once_and_its_reuse_revokes_the_grant() {
    let emu = Emulator::start().await.unwrap();
    let config = config(&emu);
    for (i, platform) in PLATFORMS.iter().enumerate() {
        let flow = flow(platform, &config);
        let (session, pasted, outcome) =
            login(flow.as_ref(), platform, LoginOptions::default()).await;
        let outcome = outcome.unwrap();
        let again = flow.complete_login(&session, &pasted).await.unwrap_err();
        assert_eq!(
            again,
            LoginError::ExchangeRejected {
                status: 400,
                code: Some(OAuthErrorCode::new("invalid_grant"))
            },
            "{platform}"
        );
        assert_eq!(emu.login_stats().code_reuse_attempts, i as u64 + 1);
        // RFC 6749 §4.1.2: what the code issued is revoked.
        let err = refresh(&emu, platform, &outcome).await.unwrap_err();
        assert!(err.is_grant_rejected(), "{platform}: {err:?}");
    }
    assert_eq!(emu.login_stats().exchanges, 4);
    assert_eq!(emu.stats().revoked_grants.len(), 4);
}

/// The emulator checks the verifier against the challenge (and a failed
/// check does not consume the code), the client and the redirect URI.
#[tokio::test]
async fn the_emulator_checks_pkce_client_and_redirect_at_the_exchange() {
    let emu = Emulator::start().await.unwrap();
    let config = config(&emu);
    let flow = flow(&Platform::OpenAi, &config);
    let session = flow.begin_login(LoginOptions::default()).unwrap();
    let verifier = session_secret(&session, "code_verifier");
    let code = query(&follow(session.authorize_url()).await)["code"].clone();
    let post = |fields: Vec<(&'static str, String)>| {
        let url = format!("{}{}", emu.url(), paths::OPENAI_TOKEN);
        async move {
            let body = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(fields)
                .finish();
            let answer = browser()
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = answer.status().as_u16();
            let body: serde_json::Value = answer.json().await.unwrap();
            (status, body)
        }
    };
    let base = |verifier: &str, redirect: &str, client: &str| {
        vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.clone()),
            ("redirect_uri", redirect.to_owned()),
            ("client_id", client.to_owned()),
            ("code_verifier", verifier.to_owned()),
        ]
    };
    let redirect = session.redirect_uri().to_owned();
    let wrong_verifier = "x".repeat(43);
    for (fields, status, code_name) in [
        (
            base(&wrong_verifier, &redirect, "app_EMoamEEZ73f0CkXaXp7hrann"),
            400,
            "invalid_grant",
        ),
        (
            base("short", &redirect, "app_EMoamEEZ73f0CkXaXp7hrann"),
            400,
            "invalid_grant",
        ),
        (
            base(
                &verifier,
                "http://localhost:1457/auth/callback",
                "app_EMoamEEZ73f0CkXaXp7hrann",
            ),
            400,
            "invalid_grant",
        ),
        (
            base(&verifier, &redirect, "app_other"),
            401,
            "invalid_client",
        ),
    ] {
        let (got, body) = post(fields).await;
        assert_eq!(got, status, "{body}");
        assert_eq!(body["error"]["code"], code_name);
    }
    assert_eq!(emu.login_stats().pkce_failures, 2);
    // The failed attempts did not consume the code.
    let (got, body) = post(base(&verifier, &redirect, "app_EMoamEEZ73f0CkXaXp7hrann")).await;
    assert_eq!(got, 200, "{body}");
    assert!(body["refresh_token"].is_string());
    assert_eq!(emu.login_stats().exchanges, 1);
}

#[tokio::test]
async fn the_emulator_refuses_bad_authorize_requests() {
    let emu = Emulator::start().await.unwrap();
    let config = config(&emu);
    let flow = flow(&Platform::Gemini, &config);
    let session = flow
        .begin_login(LoginOptions {
            redirect: Redirect::Loopback,
            ..LoginOptions::default()
        })
        .unwrap();
    let good = url::Url::parse(session.authorize_url()).unwrap();
    let with = |key: &str, value: &str| {
        let mut url = good.clone();
        let kept: Vec<(String, String)> = good
            .query_pairs()
            .into_owned()
            .filter(|(k, _)| k != key)
            .collect();
        url.query_pairs_mut()
            .clear()
            .extend_pairs(kept)
            .append_pair(key, value);
        url.to_string()
    };
    // Unknown client or unregistered redirect: an error page, no redirect.
    for url in [
        with("client_id", "unknown.apps.googleusercontent.com"),
        with("redirect_uri", "https://evil.example/callback"),
    ] {
        let answer = browser().get(url).send().await.unwrap();
        assert_eq!(answer.status(), 400);
        assert!(answer.headers().get("location").is_none());
    }
    // Bad PKCE, scope or response type: a redirect with `error` and the state.
    for (url, error) in [
        (with("code_challenge_method", "plain"), "invalid_request"),
        (with("code_challenge", "too-short"), "invalid_request"),
        (
            with(
                "scope",
                "https://www.googleapis.com/auth/generative-language.retriever",
            ),
            "invalid_scope",
        ),
        (with("response_type", "token"), "unsupported_response_type"),
    ] {
        let location = follow(&url).await;
        let q = query(&location);
        assert_eq!(q["error"], error);
        assert!(!q.contains_key("code"));
        // Pasting it is a typed refusal, and nothing is sent.
        assert_eq!(
            flow.complete_login(&session, location.as_str())
                .await
                .unwrap_err(),
            LoginError::AuthorizationDenied {
                code: OAuthErrorCode::new(error)
            }
        );
    }
    let stats = emu.login_stats();
    assert_eq!((stats.authorizations, stats.authorize_refusals), (0, 6));
    assert_eq!(emu.stats().requests(paths::GOOGLE_TOKEN), 0);

    // Google issues a refresh token only with access_type=offline.
    let location = follow(&with("access_type", "online")).await;
    let code = query(&location)["code"].clone();
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "authorization_code")
        .append_pair("client_id", session.client_id())
        .append_pair("client_secret", "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")
        .append_pair("code", &code)
        .append_pair("code_verifier", &session_secret(&session, "code_verifier"))
        .append_pair("redirect_uri", session.redirect_uri())
        .finish();
    let answer: serde_json::Value = browser()
        .post(format!("{}{}", emu.url(), paths::GOOGLE_TOKEN))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(answer["access_token"].is_string());
    assert!(answer.get("refresh_token").is_none());
}

// ------------------------------------------------- exchange answers, mapped

/// The exchange's answers against a scripted endpoint: each becomes its
/// typed error; the body is the §13.3 one.
#[tokio::test]
async fn exchange_answers_map_to_typed_errors() {
    use refresh_core::testing::{ScriptedReply, TokenEndpoint};
    use serde_json::json;

    let endpoint = TokenEndpoint::start().await.unwrap();
    let mut config = ProvidersConfig::default().with_base_url(&endpoint.url());
    config.openai.timeout = Duration::from_secs(5);
    let flow = flow(&Platform::OpenAi, &config);
    let at = "eyJ-access-Qm3Xv8Rt2Lp7Zx5Kd7";
    type Check = Box<dyn Fn(&LoginError) -> bool>;
    let cases: Vec<(ScriptedReply, Check)> = vec![
        (
            ScriptedReply::json(
                400,
                &json!({"error": {"code": "invalid_grant", "message": "bad"}}),
            ),
            Box::new(|e| {
                *e == LoginError::ExchangeRejected {
                    status: 400,
                    code: Some(OAuthErrorCode::new("invalid_grant")),
                }
            }),
        ),
        (
            ScriptedReply::html(502, "<html>bad gateway</html>"),
            Box::new(|e| {
                *e == LoginError::ExchangeRejected {
                    status: 502,
                    code: None,
                }
            }),
        ),
        (
            ScriptedReply::json(200, &json!({"access_token": at, "expires_in": 3600})),
            Box::new(|e| *e == LoginError::NoRefreshToken),
        ),
        (
            ScriptedReply::json(200, &json!({"token_type": "Bearer"})),
            Box::new(|e| matches!(e, LoginError::InvalidResponse { .. })),
        ),
        (
            ScriptedReply::html(200, "<html>not json</html>"),
            Box::new(|e| matches!(e, LoginError::InvalidResponse { .. })),
        ),
        (
            ScriptedReply::reset(),
            Box::new(|e| matches!(e, LoginError::Transport { .. })),
        ),
    ];
    let n = cases.len();
    for (reply, check) in cases {
        endpoint.push(reply);
        let session = flow.begin_login(LoginOptions::default()).unwrap();
        let state = session_secret(&session, "state");
        let pasted = format!(
            "http://localhost:1455/auth/callback?code=ac_Pasted0123456789abcdef&state={state}"
        );
        let err = flow.complete_login(&session, &pasted).await.unwrap_err();
        assert!(check(&err), "{err:?}");
        let shown = format!("{err} {err:?}");
        assert!(
            !shown.contains("ac_Pasted0123456789abcdef")
                && !shown.contains(&state)
                && !shown.contains(at)
        );
    }
    let requests = endpoint.requests();
    assert_eq!(requests.len(), n, "one exchange per completion, no retry");
    let body = form_pairs(&requests[0].body);
    assert_eq!(
        body.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        [
            "grant_type",
            "code",
            "redirect_uri",
            "client_id",
            "code_verifier"
        ]
    );
}

// --------------------------------------------------------------- sessions

#[tokio::test]
async fn a_session_stored_by_one_process_is_completed_by_another() {
    let emu = Emulator::start().await.unwrap();
    let config = config(&emu);
    for platform in &PLATFORMS {
        let first = flow(platform, &config);
        let session = first
            .begin_login(LoginOptions {
                name: Some("shared".into()),
                ..LoginOptions::default()
            })
            .unwrap();
        let stored = serde_json::to_string(&session).unwrap();
        let restored: LoginSession = serde_json::from_str(&stored).unwrap();
        assert_eq!(restored, session);
        // Debug shows neither the verifier, the state nor the URL.
        let shown = format!("{restored:?}");
        for hidden in [
            session_secret(&session, "code_verifier"),
            session_secret(&session, "state"),
            session.authorize_url().to_owned(),
        ] {
            assert!(!shown.contains(&hidden), "{shown}");
        }
        assert!(shown.contains(session.session_id()));
        // Another flow (another process: its own pool) completes it.
        let location = follow(restored.authorize_url()).await;
        let second = login_flows(&config, &HttpClients::default())
            .into_iter()
            .find(|f| &f.platform() == platform)
            .unwrap();
        let outcome = second
            .complete_login(&restored, &paste_for(platform, &location))
            .await
            .unwrap();
        assert_eq!(outcome.name, "shared");
        // A session of another platform is refused by this flow.
        let other = PLATFORMS.iter().find(|p| *p != platform).unwrap();
        assert!(matches!(
            flow(other, &config)
                .complete_login(&restored, "whatever-0123456789")
                .await,
            Err(LoginError::WrongPlatform { .. })
        ));
    }
    assert_eq!(login_flows(&config, &HttpClients::default()).len(), 4);
}

#[tokio::test]
async fn options_a_provider_does_not_take_are_refused() {
    let config = ProvidersConfig::default();
    let cases: Vec<(Platform, LoginOptions, &str)> = vec![
        (
            Platform::OpenAi,
            LoginOptions {
                account_type: Some(AccountType::SetupToken),
                ..LoginOptions::default()
            },
            "account_type",
        ),
        (
            Platform::Anthropic,
            LoginOptions {
                account_type: Some(AccountType::ApiKey),
                ..LoginOptions::default()
            },
            "account_type",
        ),
        (
            Platform::Anthropic,
            LoginOptions {
                oauth_type: Some("code_assist".into()),
                ..LoginOptions::default()
            },
            "oauth_type",
        ),
        (
            Platform::Antigravity,
            LoginOptions {
                project_id: Some("p".into()),
                ..LoginOptions::default()
            },
            "project_id",
        ),
        (
            Platform::Gemini,
            LoginOptions {
                oauth_type: Some("vertex".into()),
                ..LoginOptions::default()
            },
            "oauth_type",
        ),
        (
            Platform::Gemini,
            LoginOptions {
                tier_id: Some("google_ai_pro".into()),
                ..LoginOptions::default()
            },
            "tier_id",
        ),
        (
            Platform::Gemini,
            LoginOptions {
                oauth_type: Some("google_one".into()),
                tier_id: Some("gcp_standard".into()),
                ..LoginOptions::default()
            },
            "tier_id",
        ),
        (
            Platform::Gemini,
            LoginOptions {
                project_id: Some("  ".into()),
                ..LoginOptions::default()
            },
            "project_id",
        ),
    ];
    for (platform, options, option) in cases {
        match flow(&platform, &config).begin_login(options) {
            Err(LoginError::InvalidOption { option: got, .. }) => assert_eq!(got, option),
            other => panic!("{platform}/{option}: {other:?}"),
        }
    }
    // AI Studio needs the operator's client.
    assert!(matches!(
        flow(&Platform::Gemini, &config).begin_login(LoginOptions {
            oauth_type: Some("ai_studio".into()),
            ..LoginOptions::default()
        }),
        Err(LoginError::Configuration { .. })
    ));
    // LoginOptions deserialize from the HTTP API's JSON.
    let options: LoginOptions = serde_json::from_str(
        r#"{"name":"a","proxy":"socks5://u:p@127.0.0.1:1080","redirect":"loopback","account_type":"setup-token","session_ttl":600}"#,
    )
    .unwrap();
    assert_eq!(options.redirect, Redirect::Loopback);
    assert_eq!(options.account_type, Some(AccountType::SetupToken));
    assert!(serde_json::from_str::<LoginOptions>(r#"{"nmae":"a"}"#).is_err());
}

// ------------------------------------------------------------------ Gemini

#[tokio::test]
async fn gemini_ai_studio_uses_the_operators_client_and_asks_nothing_after() {
    let custom = (
        "custom-client.apps.googleusercontent.com",
        "GOCSPX-custom-0123456789",
    );
    let mut emu_config = EmulatorConfig::default();
    emu_config
        .google_clients
        .push((custom.0.to_owned(), custom.1.to_owned()));
    let emu = Emulator::start_with(emu_config).await.unwrap();
    emu.record_requests(true);
    let mut config = config(&emu);
    config.gemini.ai_studio_client_id = Some(custom.0.into());
    config.gemini.ai_studio_client_secret = Some(Secret::from(custom.1));
    let flow = flow(&Platform::Gemini, &config);
    let options = LoginOptions {
        oauth_type: Some("ai_studio".into()),
        tier_id: Some("aistudio_paid".into()),
        ..LoginOptions::default()
    };
    let session = flow.begin_login(options).unwrap();
    let location = follow(session.authorize_url()).await;
    assert!(
        location
            .as_str()
            .starts_with("http://localhost:1455/auth/callback?")
    );
    // The bare code is not enough: this redirect's URL has the state.
    let code = query(&location)["code"].clone();
    assert_eq!(
        flow.complete_login(&session, &code).await.unwrap_err(),
        LoginError::StateMissing
    );
    let outcome = flow.complete_login(&session, location.as_str()).await;
    let params: HashMap<_, _> = ordered_query(session.authorize_url()).into_iter().collect();
    assert_eq!(params["client_id"], custom.0);
    assert_eq!(
        params["scope"],
        "https://www.googleapis.com/auth/cloud-platform https://www.googleapis.com/auth/generative-language.retriever"
    );
    let outcome = outcome.unwrap();
    assert_eq!(s(&outcome.credentials, "oauth_type"), "ai_studio");
    assert_eq!(s(&outcome.credentials, "tier_id"), "aistudio_paid");
    let sent = exchanges(&emu, &Platform::Gemini);
    assert!(form_pairs(&sent[0].body).contains(&("client_secret".into(), custom.1.into())));
    // No userinfo, no Code Assist.
    let stats = emu.stats();
    assert_eq!(stats.requests(paths::GOOGLE_USERINFO), 0);
    assert_eq!(stats.requests(paths::LOAD_CODE_ASSIST), 0);
    refresh_with(&config, &Platform::Gemini, &outcome)
        .await
        .unwrap();
}

#[tokio::test]
async fn gemini_google_one_needs_a_project_and_reads_the_drive_tier() {
    let emu = Emulator::start().await.unwrap();
    let config = config(&emu);
    let flow = flow(&Platform::Gemini, &config);
    let google_one = || LoginOptions {
        oauth_type: Some("google_one".into()),
        ..LoginOptions::default()
    };
    // No project anywhere: the login fails (§13.4), typed.
    let (_, _, outcome) = login(flow.as_ref(), &Platform::Gemini, google_one()).await;
    assert!(
        matches!(outcome, Err(LoginError::Discovery { .. })),
        "{outcome:?}"
    );

    // A registered user with a GCP project and a 2 TiB Drive.
    emu.queue_login(GrantSpec {
        current_tier: Some("standard-tier".into()),
        gcp_projects: vec![GcpProject {
            project_id: "my-default-project".into(),
            name: String::new(),
            lifecycle_state: "ACTIVE".into(),
        }],
        drive_limit: Some(2 * 1024_i64.pow(4)),
        drive_usage: 5,
        ..GrantSpec::new(EmulatedProvider::Gemini)
    });
    let (_, _, outcome) = login(flow.as_ref(), &Platform::Gemini, google_one()).await;
    let outcome = outcome.unwrap();
    let creds = &outcome.credentials;
    assert_eq!(s(creds, "project_id"), "my-default-project");
    assert_eq!(s(creds, "tier_id"), "google_ai_pro");
    assert_eq!(
        s(creds, "drive_storage_limit"),
        (2 * 1024_i64.pow(4)).to_string()
    );
    assert!(creds.get("drive_tier_updated_at").is_some());
    refresh(&emu, &Platform::Gemini, &outcome).await.unwrap();

    // Drive refused (the usual 403): the chosen tier, and a warning.
    emu.queue_login(GrantSpec {
        project_id: Some("p-1".into()),
        ..GrantSpec::new(EmulatedProvider::Gemini)
    });
    let (_, _, outcome) = login(
        flow.as_ref(),
        &Platform::Gemini,
        LoginOptions {
            tier_id: Some("google_ai_ultra".into()),
            ..google_one()
        },
    )
    .await;
    let outcome = outcome.unwrap();
    assert_eq!(s(&outcome.credentials, "tier_id"), "google_ai_ultra");
    assert_eq!(outcome.warnings.len(), 1, "{:?}", outcome.warnings);
}

#[tokio::test]
async fn a_project_not_found_at_login_is_left_to_the_refresh() {
    let emu = Emulator::start().await.unwrap();
    let config = config(&emu);
    for platform in [Platform::Gemini, Platform::Antigravity] {
        // The default user: onboarding finishes without a project.
        let (_, _, outcome) = login(
            flow(&platform, &config).as_ref(),
            &platform,
            LoginOptions::default(),
        )
        .await;
        let outcome = outcome.unwrap();
        assert_eq!(
            outcome.credentials.get("project_discovery_pending"),
            Some(&serde_json::json!(true)),
            "{platform}"
        );
        assert!(outcome.credentials.get("project_id").is_none());
        assert_eq!(outcome.warnings.len(), 1, "{:?}", outcome.warnings);
    }
    // A known project: no discovery, its tier read; the chosen enterprise
    // tier wins over a detected non-GCP one.
    let emu_grant = GrantSpec {
        current_tier: Some("free-tier".into()),
        ..GrantSpec::new(EmulatedProvider::Gemini)
    };
    emu.queue_login(emu_grant);
    let (_, _, outcome) = login(
        flow(&Platform::Gemini, &config).as_ref(),
        &Platform::Gemini,
        LoginOptions {
            project_id: Some("given-project".into()),
            tier_id: Some("gcp_enterprise".into()),
            ..LoginOptions::default()
        },
    )
    .await;
    let outcome = outcome.unwrap();
    assert_eq!(s(&outcome.credentials, "project_id"), "given-project");
    assert_eq!(s(&outcome.credentials, "tier_id"), "gcp_enterprise");
    assert!(outcome.warnings.is_empty());
}

// ------------------------------------------------------------------ proxy

#[tokio::test]
async fn the_exchange_and_post_login_calls_go_through_the_sessions_proxy() {
    let emu = Emulator::start().await.unwrap();
    let config = config(&emu);
    let (proxy, seen) = http_proxy().await;
    emu.queue_login(GrantSpec {
        project_id: Some("ag-p".into()),
        ..GrantSpec::new(EmulatedProvider::Antigravity)
    });
    let flow = flow(&Platform::Antigravity, &config);
    let options = LoginOptions {
        proxy: Some(proxy.parse().unwrap()),
        ..LoginOptions::default()
    };
    let (_, _, outcome) = login(flow.as_ref(), &Platform::Antigravity, options).await;
    let outcome = outcome.unwrap();
    assert!(seen.tunnels.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    assert_eq!(
        outcome
            .proxy
            .as_ref()
            .map(|p| p.expose().trim_end_matches('/').to_owned()),
        Some(proxy)
    );
    assert_eq!(s(&outcome.credentials, "project_id"), "ag-p");

    // The proxy is down: nothing reaches the token endpoint, typed error.
    let down = LoginOptions {
        proxy: Some(
            format!("http://user:Pr0xyPassw0rd@{}", closed_port())
                .parse()
                .unwrap(),
        ),
        ..LoginOptions::default()
    };
    let before = emu.stats().requests(paths::GOOGLE_TOKEN);
    let (_, _, outcome) = login(flow.as_ref(), &Platform::Antigravity, down).await;
    let err = outcome.unwrap_err();
    assert!(
        matches!(&err, LoginError::Transport { source } if matches!(source, ProviderError::NotSent { .. })),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?}").contains("Pr0xyPassw0rd"));
    assert_eq!(emu.stats().requests(paths::GOOGLE_TOKEN), before);
}
