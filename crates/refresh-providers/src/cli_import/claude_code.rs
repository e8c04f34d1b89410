//! Claude Code's `.credentials.json`.

use refresh_core::domain::keys;
use refresh_core::{AccountType, Credentials, Platform};
use serde_json::{Map, Value};

use super::CliImportError;
use super::json::{millis, object, text};
use crate::login::LoginOutcome;

/// Parses Claude Code's `.credentials.json`:
/// `{"claudeAiOauth": {"accessToken", "refreshToken", "expiresAt" (unix
/// milliseconds), "scopes": [...], "subscriptionType", "rateLimitTier"}}`
/// into an `anthropic` `oauth` account: `access_token`, `refresh_token`,
/// `expires_at` (canonical seconds), `token_type` `Bearer`, `scope`
/// (the scopes space-joined); `extra` gets `subscription_type` and
/// `rate_limit_tier`.
///
/// # Errors
/// [`CliImportError::InvalidJson`], [`CliImportError::MissingField`]
/// (`claudeAiOauth`, `claudeAiOauth.accessToken`),
/// [`CliImportError::MissingRefreshToken`],
/// [`CliImportError::InvalidExpiry`] for an `expiresAt` that is not unix
/// milliseconds.
pub fn parse_claude_code(bytes: &[u8]) -> Result<LoginOutcome, CliImportError> {
    let file = object(bytes)?;
    let oauth = file.get("claudeAiOauth").and_then(Value::as_object).ok_or(
        CliImportError::MissingField {
            field: "claudeAiOauth",
        },
    )?;
    let access = text(oauth, "accessToken").ok_or(CliImportError::MissingField {
        field: "claudeAiOauth.accessToken",
    })?;
    let refresh = text(oauth, "refreshToken").ok_or(CliImportError::MissingRefreshToken)?;
    let mut credentials = Credentials::new()
        .with(keys::ACCESS_TOKEN, access)
        .with(keys::REFRESH_TOKEN, refresh)
        .with(keys::TOKEN_TYPE, "Bearer");
    if let Some(at) = millis(oauth, "expiresAt")? {
        credentials.set_expires_at(at);
    }
    let scopes: Vec<&str> = oauth
        .get("scopes")
        .and_then(Value::as_array)
        .map(|s| s.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !scopes.is_empty() {
        credentials.insert(keys::SCOPE, scopes.join(" "));
    }
    let mut extra = Map::new();
    for (from, to) in [
        ("subscriptionType", "subscription_type"),
        ("rateLimitTier", "rate_limit_tier"),
    ] {
        if let Some(value) = text(oauth, from) {
            extra.insert(to.to_owned(), Value::String(value));
        }
    }
    Ok(LoginOutcome {
        name: "claude-code".to_owned(),
        platform: Platform::Anthropic,
        account_type: AccountType::OAuth,
        credentials,
        extra,
        proxy: None,
        warnings: Vec::new(),
    })
}
