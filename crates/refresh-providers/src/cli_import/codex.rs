//! Codex's `auth.json`.

use chrono::{DateTime, Utc};
use refresh_core::domain::keys;
use refresh_core::{AccountType, Credentials, Platform};
use serde_json::{Map, Value};

use super::CliImportError;
use super::json::{jwt_claims, object, text};
use crate::login::LoginOutcome;
use crate::openai::id_token;

/// The Codex CLI's OAuth client: its grants refresh with it.
const CODEX_CLIENT_ID: &str = "app_EMoamEEZ73f0CkXaXp7hrann";

/// Parses Codex's `auth.json`:
/// `{"OPENAI_API_KEY": …, "tokens": {"id_token", "access_token",
/// "refresh_token", "account_id"}, "last_refresh"}` into an `openai`
/// `oauth` account: `access_token`, `refresh_token`, `expires_at` from the
/// access token's JWT `exp` (unknown when it is not a JWT: refreshed at
/// once), `id_token` and its claims (`email`, `chatgpt_account_id`, falling
/// back to `tokens.account_id`, `chatgpt_user_id`, `organization_id`,
/// `plan_type`; an expired id_token still labels the account), and
/// `client_id` (the Codex CLI's). `OPENAI_API_KEY` is not imported.
///
/// # Errors
/// [`CliImportError::InvalidJson`], [`CliImportError::MissingField`]
/// (`tokens`, `tokens.access_token`),
/// [`CliImportError::MissingRefreshToken`] (e.g. an API-key-only file).
pub fn parse_codex(bytes: &[u8]) -> Result<LoginOutcome, CliImportError> {
    let file = object(bytes)?;
    let tokens = match file.get("tokens") {
        Some(Value::Object(tokens)) => tokens,
        // An API-key login has no tokens at all.
        None | Some(Value::Null) if text(&file, "OPENAI_API_KEY").is_some() => {
            return Err(CliImportError::MissingRefreshToken);
        }
        _ => return Err(CliImportError::MissingField { field: "tokens" }),
    };
    let access = text(tokens, "access_token").ok_or(CliImportError::MissingField {
        field: "tokens.access_token",
    })?;
    let refresh = text(tokens, "refresh_token").ok_or(CliImportError::MissingRefreshToken)?;
    let mut credentials = Credentials::new()
        .with(keys::REFRESH_TOKEN, refresh)
        .with("client_id", CODEX_CLIENT_ID);
    if let Some(exp) = jwt_claims(&access)
        .and_then(|c| c.get("exp").and_then(Value::as_i64))
        .and_then(|exp| DateTime::from_timestamp(exp, 0))
    {
        credentials.set_expires_at(exp);
    }
    credentials.insert(keys::ACCESS_TOKEN, access);
    let mut extra = Map::new();
    if let Some(token) = text(tokens, "id_token") {
        // Any `exp` passes: a stale id_token still names the account.
        if let Ok(claims) = id_token::parse(&token, DateTime::<Utc>::MIN_UTC) {
            if let Some(email) = &claims.email {
                extra.insert("email".to_owned(), Value::String(email.clone()));
            }
            for (key, value) in [
                ("email", claims.email),
                ("chatgpt_account_id", claims.chatgpt_account_id),
                ("chatgpt_user_id", claims.chatgpt_user_id),
                ("organization_id", claims.organization_id),
                ("plan_type", claims.plan_type),
            ] {
                if let Some(value) = value {
                    credentials.insert(key, value);
                }
            }
        }
        credentials.insert("id_token", token);
    }
    if credentials.get("chatgpt_account_id").is_none()
        && let Some(account) = text(tokens, "account_id")
    {
        credentials.insert("chatgpt_account_id", account);
    }
    let name = extra
        .get("email")
        .and_then(Value::as_str)
        .map_or_else(|| "codex".to_owned(), str::to_owned);
    Ok(LoginOutcome {
        name,
        platform: Platform::OpenAi,
        account_type: AccountType::OAuth,
        credentials,
        extra,
        proxy: None,
        warnings: Vec::new(),
    })
}
