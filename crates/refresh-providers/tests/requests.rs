//! Per provider: the exact token request (method, path, content type,
//! every body field, required headers) against core's recording loopback
//! endpoint, and the credentials built from the answer (canonical
//! `expires_at`, merge of unknown old keys, an omitted refresh token).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use refresh_core::plugin::*;
use refresh_core::testing::{RecordedRequest, ScriptedReply, TokenEndpoint};
use refresh_core::{ProviderError, TokenGrant};
use refresh_providers::{HttpClients, ProvidersConfig};
use serde_json::{Value, json};

const CLAIMED: &str = "RT-claimed-Xq7Lm2Pz9Kd4";

fn form(request: &RecordedRequest) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(&request.body)
        .into_owned()
        .collect()
}

fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn s(creds: &Credentials, key: &str) -> Option<String> {
    creds.get(key).map(|v| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

fn at(secs_from_now: i64) -> String {
    (NOW_SECS + secs_from_now).to_string()
}

async fn endpoint_with(reply: ScriptedReply) -> TokenEndpoint {
    let endpoint = TokenEndpoint::start().await.unwrap();
    endpoint.push(reply);
    endpoint
}

#[tokio::test]
async fn claude_sends_the_json_refresh_and_builds_six_keys_over_the_old_ones() {
    let endpoint = endpoint_with(ScriptedReply::json(
        200,
        &json!({"token_type": "Bearer", "access_token": "AT-new-Claude-Hq8Lm2", "expires_in": 28800,
                "refresh_token": "RT-new-Claude-Zx5Kd7", "scope": "user:inference user:profile",
                "organization": {"uuid": "o"}, "account": {"uuid": "a", "email_address": "e@x"}}),
    ))
    .await;
    let executor = executor_at(&Platform::Anthropic, &endpoint.url());
    let account = account(&Platform::Anthropic, 1, "RT-stored-x");
    let creds = executor.refresh(&account, &ctx(CLAIMED)).await.unwrap();

    let requests = endpoint.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/v1/oauth/token")
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.header("accept"),
        Some("application/json, text/plain, */*")
    );
    assert_eq!(r.header("user-agent"), Some("axios/1.13.6"));
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        body,
        json!({"grant_type": "refresh_token", "refresh_token": CLAIMED, "client_id": "9d1c250a-e61b-44d9-88ed-5944d1962f5e"})
    );
    assert!(
        r.body_text()
            .starts_with(r#"{"grant_type":"refresh_token","refresh_token":"#),
        "Claude Code's field order"
    );

    assert_eq!(
        s(&creds, "access_token").as_deref(),
        Some("AT-new-Claude-Hq8Lm2")
    );
    assert_eq!(
        s(&creds, "refresh_token").as_deref(),
        Some("RT-new-Claude-Zx5Kd7")
    );
    assert_eq!(s(&creds, "token_type").as_deref(), Some("Bearer"));
    assert_eq!(
        creds.get("expires_in"),
        Some(&json!("28800")),
        "a decimal string"
    );
    assert_eq!(
        creds.get("expires_at"),
        Some(&json!(at(28800))),
        "canonical, no margin"
    );
    assert_eq!(
        s(&creds, "scope").as_deref(),
        Some("user:inference user:profile")
    );
    assert_eq!(
        creds.get("intercept_warmup_requests"),
        Some(&json!(true)),
        "old key kept"
    );
    assert_eq!(creds.as_map().len(), 7, "six keys plus the unrelated one");
}

#[tokio::test]
async fn claude_keeps_the_refresh_token_and_scope_an_answer_omits() {
    let endpoint = endpoint_with(ScriptedReply::json(
        200,
        &json!({"token_type": "Bearer", "access_token": "AT-new-2", "expires_in": 3600, "scope": ""}),
    ))
    .await;
    let executor = executor_at(&Platform::Anthropic, &endpoint.url());
    let mut account = account(&Platform::Anthropic, 2, "RT-stored-kept");
    account.credentials.insert("scope", "old-scope");
    account
        .credentials
        .insert("expires_at", "2023-11-15T06:13:20+08:00");
    let creds = executor.refresh(&account, &ctx(CLAIMED)).await.unwrap();
    assert_eq!(
        s(&creds, "refresh_token").as_deref(),
        Some("RT-stored-kept")
    );
    assert_eq!(s(&creds, "scope").as_deref(), Some("old-scope"));
    assert_eq!(
        creds.get("expires_at"),
        Some(&json!(at(3600))),
        "legacy RFC 3339 replaced"
    );
}

#[tokio::test]
async fn claude_refreshes_new_setup_tokens_and_serves_old_ones_statically() {
    let executor = executor_at(&Platform::Anthropic, "http://127.0.0.1:1");
    let mut new_kind = account(&Platform::Anthropic, 3, "RT-setup");
    new_kind.account_type = AccountType::SetupToken;
    new_kind.credentials.insert("expires_at", at(28800));
    assert!(
        executor.can_refresh(&new_kind),
        "a setup token with a refresh token and expiry"
    );
    assert_eq!(executor.static_token(&new_kind), None);
    let mut old_kind = new_kind.clone();
    old_kind.credentials.remove("refresh_token");
    assert!(!executor.can_refresh(&old_kind));
    assert_eq!(
        executor
            .static_token(&old_kind)
            .map(|t| t.expose().to_owned()),
        Some("AT-old-3-Qm3Xv8Rt2Lp7".to_owned())
    );
    let mut no_expiry = new_kind.clone();
    no_expiry.credentials.remove("expires_at");
    assert!(!executor.can_refresh(&no_expiry));
}

#[tokio::test]
async fn openai_sends_the_form_with_codex_headers_and_reads_the_id_token() {
    let id_token = jwt(&json!({
        "email": "dev@example.com", "exp": NOW_SECS + 3600,
        "https://api.openai.com/auth": {"chatgpt_account_id": "acct-9", "chatgpt_user_id": "user-9",
            "chatgpt_plan_type": "pro", "organizations": [{"id": "org-9", "is_default": true}]}
    }));
    let endpoint = endpoint_with(ScriptedReply::json(
        200,
        &json!({"access_token": "AT-new-OpenAI-Kd4Xq7", "id_token": id_token, "refresh_token": "RT-new-OpenAI-Lm2Pz9",
                "token_type": "Bearer", "expires_in": 864000, "scope": "openid profile email"}),
    ))
    .await;
    let executor = executor_at(&Platform::OpenAi, &endpoint.url());
    let account = account(&Platform::OpenAi, 4, "RT-stored-x");
    let creds = executor.refresh(&account, &ctx(CLAIMED)).await.unwrap();

    let r = &endpoint.requests()[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/oauth/token")
    );
    assert_eq!(
        r.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        r.header("user-agent"),
        Some("codex-tui/0.146.0 (Ubuntu 22.4.0; x86_64) xterm-256color")
    );
    assert_eq!(r.header("originator"), Some("codex-tui"));
    assert_eq!(
        form(r),
        fields(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", CLAIMED),
            ("client_id", "app_EMoamEEZ73f0CkXaXp7hrann"),
            ("scope", "openid profile email"),
        ])
    );

    assert_eq!(
        s(&creds, "access_token").as_deref(),
        Some("AT-new-OpenAI-Kd4Xq7")
    );
    assert_eq!(
        s(&creds, "refresh_token").as_deref(),
        Some("RT-new-OpenAI-Lm2Pz9")
    );
    assert_eq!(
        creds.get("expires_at"),
        Some(&json!(at(864000))),
        "canonical, no margin"
    );
    assert_eq!(s(&creds, "id_token").as_deref(), Some(id_token.as_str()));
    for (key, want) in [
        ("email", "dev@example.com"),
        ("chatgpt_account_id", "acct-9"),
        ("chatgpt_user_id", "user-9"),
        ("organization_id", "org-9"),
        ("plan_type", "pro"),
    ] {
        assert_eq!(s(&creds, key).as_deref(), Some(want), "{key}");
    }
    for absent in ["expires_in", "token_type", "scope", "client_id"] {
        assert_eq!(creds.get(absent), None, "{absent} is not written");
    }
    assert_eq!(creds.get("intercept_warmup_requests"), Some(&json!(true)));
}

#[tokio::test]
async fn openai_uses_the_accounts_own_client_and_keeps_an_omitted_refresh_token() {
    let endpoint = endpoint_with(ScriptedReply::json(
        200,
        &json!({"access_token": "AT-new-5", "expires_in": 3600, "id_token": "not-a-jwt"}),
    ))
    .await;
    let executor = executor_at(&Platform::OpenAi, &endpoint.url());
    let mut account = account(&Platform::OpenAi, 5, "RT-stored-kept");
    account.credentials.insert("client_id", " app_custom ");
    account.credentials.insert("email", "kept@example.com");
    let creds = executor.refresh(&account, &ctx(CLAIMED)).await.unwrap();
    assert_eq!(form(&endpoint.requests()[0])["client_id"], "app_custom");
    assert_eq!(s(&creds, "client_id").as_deref(), Some("app_custom"));
    assert_eq!(
        s(&creds, "refresh_token").as_deref(),
        Some("RT-stored-kept")
    );
    assert_eq!(
        s(&creds, "email").as_deref(),
        Some("kept@example.com"),
        "bad id_token: old claims kept"
    );
}

fn google_answer(expires_in: i64) -> ScriptedReply {
    ScriptedReply::json(
        200,
        &json!({"access_token": "AT-new-Google-Vw1Ty6", "expires_in": expires_in,
                "scope": "https://www.googleapis.com/auth/cloud-platform", "token_type": "Bearer"}),
    )
}

#[tokio::test]
async fn gemini_sends_the_form_with_the_builtin_client_and_applies_the_google_margin() {
    let endpoint = endpoint_with(google_answer(3599)).await;
    let executor = executor_at(&Platform::Gemini, &endpoint.url());
    let mut account = account(&Platform::Gemini, 6, "RT-stored-kept");
    account.credentials.insert("tier_id", "ENTERPRISE");
    let creds = executor.refresh(&account, &ctx(CLAIMED)).await.unwrap();

    let requests = endpoint.requests();
    assert_eq!(requests.len(), 1, "a stored project: no discovery call");
    let r = &requests[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/token"));
    assert_eq!(
        r.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(r.header("user-agent"), None, "no explicit user agent");
    assert_eq!(
        form(r),
        fields(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", CLAIMED),
            (
                "client_id",
                "681255809395-oo8ft2oprdrnp9e3aqf6av3hmdib135j.apps.googleusercontent.com"
            ),
            ("client_secret", "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"),
        ])
    );
    assert_eq!(creds.get("expires_at"), Some(&json!(at(3599 - 300))));
    assert_eq!(
        s(&creds, "refresh_token").as_deref(),
        Some("RT-stored-kept"),
        "Google omits it"
    );
    assert_eq!(s(&creds, "token_type").as_deref(), Some("Bearer"));
    assert_eq!(
        s(&creds, "scope").as_deref(),
        Some("https://www.googleapis.com/auth/cloud-platform")
    );
    assert_eq!(s(&creds, "oauth_type").as_deref(), Some("code_assist"));
    assert_eq!(
        s(&creds, "tier_id").as_deref(),
        Some("gcp_enterprise"),
        "canonical"
    );
    assert_eq!(s(&creds, "project_id").as_deref(), Some("stored-project"));
    assert_eq!(creds.get("intercept_warmup_requests"), Some(&json!(true)));
    assert_eq!(creds.get("expires_in"), None);
}

#[tokio::test]
async fn gemini_ai_studio_uses_the_operator_client_and_a_short_lifetime_is_floored() {
    let endpoint = endpoint_with(google_answer(100)).await;
    let mut config = config_at(&endpoint.url());
    config.gemini.ai_studio_client_id = Some("custom.apps.googleusercontent.com".into());
    config.gemini.ai_studio_client_secret = Some(Secret::from("GOCSPX-custom"));
    let executor = executor_with(&Platform::Gemini, config, HttpClients::default());
    let mut account = account(&Platform::Gemini, 7, "RT-stored");
    account.credentials.insert("oauth_type", "ai_studio");
    account.credentials.remove("project_id");
    let creds = executor.refresh(&account, &ctx(CLAIMED)).await.unwrap();
    let sent = form(&endpoint.requests()[0]);
    assert_eq!(sent["client_id"], "custom.apps.googleusercontent.com");
    assert_eq!(sent["client_secret"], "GOCSPX-custom");
    assert_eq!(
        endpoint.request_count(),
        1,
        "ai_studio makes no follow-up call"
    );
    assert_eq!(
        creds.get("expires_at"),
        Some(&json!(at(30))),
        "floor now + 30 s"
    );
    assert_eq!(creds.get("project_id"), None);
}

#[tokio::test]
async fn gemini_google_one_reads_the_drive_tier_at_most_once_a_day() {
    let endpoint = endpoint_with(google_answer(3599)).await;
    endpoint.push(ScriptedReply::json(
        200,
        &json!({"storageQuota": {"limit": (2_i64 << 40).to_string(), "usage": "1234"}}),
    ));
    let executor = executor_at(&Platform::Gemini, &endpoint.url());
    let mut account = account(&Platform::Gemini, 8, "RT-stored");
    account.credentials.insert("oauth_type", "google_one");
    let creds = executor.refresh(&account, &ctx(CLAIMED)).await.unwrap();
    let requests = endpoint.requests();
    assert_eq!(requests.len(), 2);
    let drive = &requests[1];
    assert_eq!(
        (drive.method.as_str(), drive.path.as_str()),
        ("GET", "/drive/v3/about?fields=storageQuota")
    );
    assert_eq!(
        drive.header("authorization"),
        Some("Bearer AT-new-Google-Vw1Ty6")
    );
    assert_eq!(s(&creds, "tier_id").as_deref(), Some("google_ai_pro"));
    assert_eq!(creds.get("drive_storage_limit"), Some(&json!(2_i64 << 40)));
    assert_eq!(creds.get("drive_storage_usage"), Some(&json!(1234)));
    assert_eq!(
        creds.get("drive_tier_updated_at"),
        Some(&json!("2030-01-01T00:00:00Z"))
    );

    // Written where it is read: the next refresh within 24 h skips Drive.
    let endpoint = endpoint_with(google_answer(3599)).await;
    let executor = executor_at(&Platform::Gemini, &endpoint.url());
    let mut again = account.clone();
    again.set_credentials(creds);
    let creds = executor.refresh(&again, &ctx(CLAIMED)).await.unwrap();
    assert_eq!(endpoint.request_count(), 1, "no Drive call within 24 h");
    assert_eq!(s(&creds, "tier_id").as_deref(), Some("google_ai_pro"));
}

#[tokio::test]
async fn gemini_google_one_without_drive_access_keeps_the_stored_tier() {
    let endpoint = endpoint_with(google_answer(3599)).await;
    endpoint.push(ScriptedReply::json(
        403,
        &json!({"error": {"code": 403, "status": "PERMISSION_DENIED"}}),
    ));
    let executor = executor_at(&Platform::Gemini, &endpoint.url());
    let mut account = account(&Platform::Gemini, 9, "RT-stored");
    account.credentials.insert("oauth_type", "google_one");
    account.credentials.insert("tier_id", "AI_PREMIUM");
    let creds = executor.refresh(&account, &ctx(CLAIMED)).await.unwrap();
    assert_eq!(s(&creds, "tier_id").as_deref(), Some("google_ai_pro"));
    assert_eq!(creds.get("drive_tier_updated_at"), None);
    assert_eq!(
        s(&creds, "access_token").as_deref(),
        Some("AT-new-Google-Vw1Ty6")
    );
}

#[tokio::test]
async fn gemini_unknown_or_ambiguous_oauth_type_is_a_typed_error_before_any_call() {
    let endpoint = TokenEndpoint::start().await.unwrap();
    let executor = executor_at(&Platform::Gemini, &endpoint.url());
    let mut unknown = account(&Platform::Gemini, 10, "RT-stored");
    unknown.credentials.insert("oauth_type", "vertex_ai");
    let mut ambiguous = account(&Platform::Gemini, 11, "RT-stored");
    ambiguous.credentials.remove("oauth_type");
    ambiguous.credentials.remove("project_id");
    for (what, account) in [("unknown", unknown), ("ambiguous", ambiguous)] {
        let err = executor.refresh(&account, &ctx(CLAIMED)).await.unwrap_err();
        assert!(
            matches!(err, ProviderError::Configuration { .. }),
            "{what}: {err:?}"
        );
        assert!(!err.is_retryable() && err.provably_not_consumed());
    }
    assert_eq!(endpoint.request_count(), 0);
    // A half-configured AI Studio client is refused by validation and at refresh.
    let mut config: ProvidersConfig = config_at(&endpoint.url());
    config.gemini.ai_studio_client_id = Some("custom".into());
    assert!(config.validate().is_err());
    let executor = executor_with(&Platform::Gemini, config, HttpClients::default());
    let mut studio = account(&Platform::Gemini, 12, "RT-stored");
    studio.credentials.insert("oauth_type", "ai_studio");
    let err = executor.refresh(&studio, &ctx(CLAIMED)).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::Configuration { .. }),
        "{err:?}"
    );
    assert_eq!(endpoint.request_count(), 0);
}

#[tokio::test]
async fn antigravity_sends_the_form_then_loads_the_project_with_the_new_token() {
    let endpoint = endpoint_with(google_answer(60)).await;
    endpoint.push(ScriptedReply::json(
        200,
        &json!({"cloudaicompanionProject": "ag-project-1", "currentTier": {"id": "free-tier"}}),
    ));
    let executor = executor_at(&Platform::Antigravity, &endpoint.url());
    let account = account(&Platform::Antigravity, 13, "RT-stored-kept");
    let creds = executor.refresh(&account, &ctx(CLAIMED)).await.unwrap();

    let requests = endpoint.requests();
    assert_eq!(requests.len(), 2);
    let token = &requests[0];
    assert_eq!(
        (token.method.as_str(), token.path.as_str()),
        ("POST", "/token")
    );
    assert_eq!(
        token.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(token.header("user-agent"), None);
    assert_eq!(
        form(token),
        fields(&[
            (
                "client_id",
                "1071006060591-tmhssin2h21lcre235vtolojh4g403ep.apps.googleusercontent.com"
            ),
            ("client_secret", "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"),
            ("refresh_token", CLAIMED),
            ("grant_type", "refresh_token"),
        ])
    );
    let load = &requests[1];
    assert_eq!(
        (load.method.as_str(), load.path.as_str()),
        ("POST", "/v1internal:loadCodeAssist")
    );
    assert_eq!(
        load.header("authorization"),
        Some("Bearer AT-new-Google-Vw1Ty6")
    );
    assert_eq!(load.header("content-type"), Some("application/json"));
    assert_eq!(
        load.header("user-agent"),
        Some("antigravity/1.23.2 windows/amd64")
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&load.body).unwrap(),
        json!({"metadata": {"ideType": "ANTIGRAVITY", "ideVersion": "1.23.2", "ideName": "antigravity"}})
    );

    assert_eq!(
        creds.get("expires_at"),
        Some(&json!(at(30))),
        "defect 17: floored"
    );
    assert_eq!(s(&creds, "project_id").as_deref(), Some("ag-project-1"));
    assert_eq!(
        s(&creds, "email").as_deref(),
        Some("ag@example.com"),
        "kept"
    );
    assert_eq!(s(&creds, "token_type").as_deref(), Some("Bearer"));
    assert_eq!(
        s(&creds, "refresh_token").as_deref(),
        Some("RT-stored-kept")
    );
    assert_eq!(creds.get("scope"), None);
    assert_eq!(creds.get("project_discovery_pending"), None);
}

#[tokio::test]
async fn antigravity_upstream_accounts_serve_their_api_key_and_the_window_is_15_minutes() {
    let executor = executor_at(&Platform::Antigravity, "http://127.0.0.1:1");
    let mut upstream = account(&Platform::Antigravity, 14, "RT");
    upstream.account_type = AccountType::Upstream;
    upstream.credentials.insert("api_key", "ag-api-key-value");
    assert!(!executor.can_refresh(&upstream));
    assert_eq!(
        executor
            .static_token(&upstream)
            .map(|k| k.expose().to_owned()),
        Some("ag-api-key-value".to_owned())
    );
    assert_eq!(executor.min_window(), Duration::from_secs(900));
    let mut oauth = account(&Platform::Antigravity, 15, "RT");
    oauth.credentials.insert("expires_at", at(10 * 60));
    assert!(
        executor.needs_refresh(&oauth, Duration::from_secs(60), now()),
        "10 min left is due under the 15 min minimum"
    );
}

#[tokio::test]
async fn keys_depend_on_the_account_id_alone() {
    for platform in &PLATFORMS {
        let executor = executor_at(platform, "http://127.0.0.1:1");
        let a = account(platform, 42, "RT");
        let mut b = a.clone();
        b.credentials.insert("project_id", "backfilled");
        b.credentials.insert("refresh_token", "RT-2");
        assert_eq!(executor.key(&a), executor.key(&b), "{platform}");
        assert_eq!(
            executor.key(&a).as_str(),
            format!("{}:account:42", platform.key_prefix())
        );
    }
    let _ = TokenGrant::MAX_BODY_BYTES;
}
