//! Gemini CLI's `oauth_creds.json`.

use refresh_core::domain::keys;
use refresh_core::{AccountType, Credentials, Platform};
use serde_json::{Map, Value};

use super::CliImportError;
use super::json::{jwt_claims, millis, object, text};
use crate::login::LoginOutcome;

/// Parses Gemini CLI's `oauth_creds.json` (google-auth-library's
/// credentials): `{"access_token", "refresh_token", "scope", "token_type",
/// "id_token", "expiry_date" (unix milliseconds)}` into a `gemini` `oauth`
/// account of type `code_assist` (the CLI's built-in client): the tokens,
/// `expires_at` (canonical seconds), `token_type`, `scope`, `oauth_type`;
/// no `project_id`, which the first refresh discovers. `extra.email`
/// comes from the id_token.
///
/// # Errors
/// [`CliImportError::InvalidJson`], [`CliImportError::MissingField`]
/// (`access_token`), [`CliImportError::MissingRefreshToken`],
/// [`CliImportError::InvalidExpiry`] for an `expiry_date` that is not unix
/// milliseconds.
pub fn parse_gemini_cli(bytes: &[u8]) -> Result<LoginOutcome, CliImportError> {
    let file = object(bytes)?;
    let access = text(&file, "access_token").ok_or(CliImportError::MissingField {
        field: "access_token",
    })?;
    let refresh = text(&file, "refresh_token").ok_or(CliImportError::MissingRefreshToken)?;
    let mut credentials = Credentials::new()
        .with(keys::ACCESS_TOKEN, access)
        .with(keys::REFRESH_TOKEN, refresh)
        .with("oauth_type", "code_assist");
    if let Some(at) = millis(&file, "expiry_date")? {
        credentials.set_expires_at(at);
    }
    for key in [keys::TOKEN_TYPE, keys::SCOPE] {
        if let Some(value) = text(&file, key) {
            credentials.insert(key, value);
        }
    }
    let mut extra = Map::new();
    let email = text(&file, "id_token")
        .and_then(|t| jwt_claims(&t))
        .and_then(|claims| text(&claims, "email"));
    if let Some(email) = &email {
        extra.insert("email".to_owned(), Value::String(email.clone()));
    }
    Ok(LoginOutcome {
        name: email.unwrap_or_else(|| "gemini-cli".to_owned()),
        platform: Platform::Gemini,
        account_type: AccountType::OAuth,
        credentials,
        extra,
        proxy: None,
        warnings: Vec::new(),
    })
}
