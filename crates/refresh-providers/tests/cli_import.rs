//! Importing the official CLIs' credential files (issue 12): sample files
//! of each format written by the test, read back and normalized to
//! canonical credentials (millisecond timestamps → unix seconds), typed
//! errors for a missing refresh token and bad input, and the imported
//! account refreshing against the emulator.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use refresh_core::plugin::*;
use refresh_providers::cli_import::{
    CliImportError, CliKind, OWNERSHIP_WARNING, parse, parse_claude_code, parse_codex,
    parse_gemini_cli,
};
use refresh_providers::emulator::{EmulatedProvider, Emulator, GrantSpec};
use refresh_providers::login::LoginOutcome;
use serde_json::{Value, json};

/// A file the test writes and reads back, removed on drop.
struct SampleFile(PathBuf);

impl SampleFile {
    fn write(name: &str, content: &Value) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "oauth-refresh-cli-import-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, serde_json::to_vec_pretty(content).unwrap()).unwrap();
        Self(path)
    }

    fn bytes(&self) -> Vec<u8> {
        std::fs::read(&self.0).unwrap()
    }
}

impl Drop for SampleFile {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn jwt(claims: &Value) -> String {
    format!(
        "{}.{}.c2lnbmF0dXJl",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

fn s(outcome: &LoginOutcome, key: &str) -> String {
    outcome.credentials.string_view(key)
}

/// Refreshes the imported account against the emulator, whose grant holds
/// the file's refresh token.
async fn refreshes(platform: &Platform, outcome: &LoginOutcome) -> Credentials {
    let emu = Emulator::start().await.unwrap();
    let provider = match platform {
        Platform::Anthropic => EmulatedProvider::Claude,
        Platform::OpenAi => EmulatedProvider::OpenAi,
        _ => EmulatedProvider::Gemini,
    };
    let rt = outcome.credentials.refresh_token().unwrap();
    emu.seed(GrantSpec {
        project_id: Some("discovered-project".into()),
        ..GrantSpec::new(provider).refresh_token(rt.expose())
    });
    let account = outcome.clone().into_account(1);
    executor_at(platform, &emu.url())
        .refresh(
            &account,
            &RefreshContext::for_token(rt, Duration::from_secs(10)),
        )
        .await
        .unwrap()
}

fn assert_error_hides(err: &CliImportError, secrets: &[&str]) {
    assert_hides(&format!("{err} {err:?}"), secrets);
}

#[tokio::test]
async fn claude_code_credentials_with_millisecond_expiry() {
    let file = SampleFile::write(
        ".credentials.json",
        &json!({"claudeAiOauth": {
            "accessToken": "sk-ant-oat01-Imported-Access-Qm3Xv8Rt2Lp7",
            "refreshToken": "sk-ant-ort01-Imported-Refresh-Zx5Kd7Hq8",
            "expiresAt": 1_893_456_000_789_i64,
            "scopes": ["user:inference", "user:profile", "user:sessions:claude_code"],
            "subscriptionType": "max",
            "rateLimitTier": "default_claude_max_20x"
        }}),
    );
    let outcome = parse_claude_code(&file.bytes()).unwrap();
    assert_eq!(outcome.platform, Platform::Anthropic);
    assert_eq!(outcome.account_type, AccountType::OAuth);
    assert_eq!(
        outcome.credentials.get("expires_at"),
        Some(&json!("1893456000")),
        "milliseconds become canonical seconds"
    );
    assert_eq!(
        s(&outcome, "scope"),
        "user:inference user:profile user:sessions:claude_code"
    );
    assert_eq!(s(&outcome, "token_type"), "Bearer");
    assert_eq!(outcome.extra["subscription_type"], "max");
    assert_eq!(outcome.extra["rate_limit_tier"], "default_claude_max_20x");
    assert_hides(
        &format!("{outcome:?}"),
        &["Imported-Access", "Imported-Refresh"],
    );
    let refreshed = refreshes(&Platform::Anthropic, &outcome).await;
    assert_ne!(
        refreshed.refresh_token(),
        outcome.credentials.refresh_token()
    );
    assert_eq!(parse(CliKind::ClaudeCode, &file.bytes()).unwrap(), outcome);
}

#[test]
fn claude_code_bad_files_are_typed_errors() {
    let access = "sk-ant-oat01-Secret-Access-Qm3Xv8Rt2Lp7";
    for (content, want) in [
        (
            json!({"claudeAiOauth": {"accessToken": access, "expiresAt": 1_893_456_000_000_i64}}),
            CliImportError::MissingRefreshToken,
        ),
        (
            json!({"claudeAiOauth": {"accessToken": access, "refreshToken": "  "}}),
            CliImportError::MissingRefreshToken,
        ),
        (
            json!({"claudeAiOauth": {"accessToken": access, "refreshToken": "rt-x", "expiresAt": 1_893_456_000_i64}}),
            CliImportError::InvalidExpiry {
                field: "expiresAt",
                reason: "not unix milliseconds (too small: seconds?)",
            },
        ),
        (
            json!({"claudeAiOauth": {"accessToken": access, "refreshToken": "rt-x", "expiresAt": "soon"}}),
            CliImportError::InvalidExpiry {
                field: "expiresAt",
                reason: "not a number",
            },
        ),
        (
            json!({"claudeAiOauth": {"refreshToken": "rt-x"}}),
            CliImportError::MissingField {
                field: "claudeAiOauth.accessToken",
            },
        ),
        (
            json!({"access_token": access}),
            CliImportError::MissingField {
                field: "claudeAiOauth",
            },
        ),
        (
            json!([1, 2]),
            CliImportError::MissingField {
                field: "top-level object",
            },
        ),
    ] {
        let file = SampleFile::write(".credentials.json", &content);
        let err = parse_claude_code(&file.bytes()).unwrap_err();
        assert_eq!(err, want, "{content}");
        assert_error_hides(&err, &[access]);
    }
    assert!(matches!(
        parse_claude_code(b"{\"claudeAiOauth\": {"),
        Err(CliImportError::InvalidJson { line: 1, .. })
    ));
}

#[tokio::test]
async fn codex_auth_json_with_jwt_expiry_and_id_token_claims() {
    let access = jwt(&json!({"exp": 1_893_456_000_i64, "poid": "org-x"}));
    let id_token = jwt(&json!({
        "email": "codex@example.com",
        "exp": 1_600_000_000_i64,
        "https://api.openai.com/auth": {
            "chatgpt_account_id": "acct-file",
            "chatgpt_user_id": "user-file",
            "chatgpt_plan_type": "pro",
            "organizations": [{"id": "org-file", "is_default": true}]
        }
    }));
    let file = SampleFile::write(
        "auth.json",
        &json!({
            "OPENAI_API_KEY": null,
            "tokens": {
                "id_token": id_token,
                "access_token": access,
                "refresh_token": "rt_Imported-Codex-Refresh-Zx5Kd7Hq8",
                "account_id": "acct-file"
            },
            "last_refresh": "2029-12-31T12:00:00Z"
        }),
    );
    let outcome = parse_codex(&file.bytes()).unwrap();
    assert_eq!(outcome.platform, Platform::OpenAi);
    assert_eq!(
        outcome.credentials.get("expires_at"),
        Some(&json!("1893456000"))
    );
    assert_eq!(s(&outcome, "email"), "codex@example.com");
    assert_eq!(s(&outcome, "chatgpt_account_id"), "acct-file");
    assert_eq!(s(&outcome, "chatgpt_user_id"), "user-file");
    assert_eq!(s(&outcome, "organization_id"), "org-file");
    assert_eq!(
        s(&outcome, "plan_type"),
        "pro",
        "an expired id_token still labels"
    );
    assert_eq!(s(&outcome, "client_id"), "app_EMoamEEZ73f0CkXaXp7hrann");
    assert_eq!(outcome.name, "codex@example.com");
    assert_hides(
        &format!("{outcome:?}"),
        &["Imported-Codex-Refresh", &access],
    );
    refreshes(&Platform::OpenAi, &outcome).await;

    // An opaque access token and no id_token: unknown expiry (due at once),
    // the account id from the file.
    let file = SampleFile::write(
        "auth.json",
        &json!({"tokens": {"access_token": "opaque-access-token", "refresh_token": "rt_x-0123456789", "account_id": "acct-only"}}),
    );
    let outcome = parse_codex(&file.bytes()).unwrap();
    assert_eq!(outcome.credentials.expires_at().unwrap(), None);
    assert_eq!(s(&outcome, "chatgpt_account_id"), "acct-only");
    assert_eq!(outcome.name, "codex");
}

#[test]
fn codex_files_without_a_refresh_token_are_typed_errors() {
    for (content, want) in [
        (
            json!({"OPENAI_API_KEY": "sk-proj-Secret-Key-0123456789", "tokens": null}),
            CliImportError::MissingRefreshToken,
        ),
        (
            json!({"OPENAI_API_KEY": "sk-proj-Secret-Key-0123456789"}),
            CliImportError::MissingRefreshToken,
        ),
        (
            json!({"tokens": {"access_token": "sk-proj-Secret-Key-0123456789"}}),
            CliImportError::MissingRefreshToken,
        ),
        (
            json!({"tokens": {"refresh_token": "rt_x"}}),
            CliImportError::MissingField {
                field: "tokens.access_token",
            },
        ),
        (json!({}), CliImportError::MissingField { field: "tokens" }),
    ] {
        let file = SampleFile::write("auth.json", &content);
        let err = parse_codex(&file.bytes()).unwrap_err();
        assert_eq!(err, want, "{content}");
        assert_error_hides(&err, &["sk-proj-Secret-Key"]);
    }
}

#[tokio::test]
async fn gemini_cli_oauth_creds_with_millisecond_expiry_date() {
    let file = SampleFile::write(
        "oauth_creds.json",
        &json!({
            "access_token": "ya29.Imported-Access-Qm3Xv8Rt2Lp7",
            "refresh_token": "1//0gImported-Refresh-Zx5Kd7Hq8",
            "scope": "https://www.googleapis.com/auth/cloud-platform openid",
            "token_type": "Bearer",
            "id_token": jwt(&json!({"email": "gem@example.com", "exp": 1_600_000_000_i64})),
            "expiry_date": 1_893_456_000_999_i64
        }),
    );
    let outcome = parse_gemini_cli(&file.bytes()).unwrap();
    assert_eq!(outcome.platform, Platform::Gemini);
    assert_eq!(
        outcome.credentials.get("expires_at"),
        Some(&json!("1893456000"))
    );
    assert_eq!(s(&outcome, "oauth_type"), "code_assist");
    assert_eq!(s(&outcome, "token_type"), "Bearer");
    assert!(outcome.credentials.get("project_id").is_none());
    assert_eq!(outcome.extra["email"], "gem@example.com");
    assert_eq!(outcome.name, "gem@example.com");
    // The first refresh discovers the project.
    let refreshed = refreshes(&Platform::Gemini, &outcome).await;
    assert_eq!(refreshed.string_view("project_id"), "discovered-project");

    for (content, want) in [
        (
            json!({"access_token": "ya29.x", "expiry_date": 1_893_456_000_000_i64}),
            CliImportError::MissingRefreshToken,
        ),
        (
            json!({"access_token": "ya29.x", "refresh_token": "1//0g", "expiry_date": 1_893_456_000_i64}),
            CliImportError::InvalidExpiry {
                field: "expiry_date",
                reason: "not unix milliseconds (too small: seconds?)",
            },
        ),
        (
            json!({"refresh_token": "1//0g"}),
            CliImportError::MissingField {
                field: "access_token",
            },
        ),
    ] {
        let file = SampleFile::write("oauth_creds.json", &content);
        assert_eq!(
            parse_gemini_cli(&file.bytes()).unwrap_err(),
            want,
            "{content}"
        );
    }
}

#[test]
fn cli_kinds_default_paths_and_the_ownership_warning() {
    for (name, kind, path) in [
        (
            "claude-code",
            CliKind::ClaudeCode,
            ".claude/.credentials.json",
        ),
        ("codex", CliKind::Codex, ".codex/auth.json"),
        ("gemini-cli", CliKind::GeminiCli, ".gemini/oauth_creds.json"),
    ] {
        assert_eq!(name.parse::<CliKind>().unwrap(), kind);
        assert_eq!(kind.as_str(), name);
        assert_eq!(kind.default_relative_path(), path);
    }
    assert_eq!("claude".parse::<CliKind>(), Err(CliImportError::UnknownCli));
    assert!(OWNERSHIP_WARNING.contains("belongs to oauth-refresh"));
}
