//! `POST /v1/logins` and `POST /v1/logins/{session_id}/complete`: the OAuth
//! login over HTTP. Sessions are parked in the database, so any `serve`
//! process on it completes a login another began; a session is completed
//! at most once (every completion attempt uses it up, a failed one too).
//!
//! | failure | status | `error.code` |
//! |---|---|---|
//! | a body that is not the JSON object, an unknown platform, a refused option | 400 | `bad_request`, `invalid_option` |
//! | no login for the platform | 400 | `login_unsupported` |
//! | the paste is no code or callback URL / has no state | 400 | `invalid_paste`, `state_missing` |
//! | the pasted state is not the session's (nothing sent) | 400 | `state_mismatch` |
//! | the user denied consent | 400 | `authorization_denied` |
//! | the session is unknown, used or expired | 410 | `login_session_gone`, `login_session_expired` |
//! | the token endpoint refused the code | 502 | `exchange_rejected` |
//! | the exchange failed or answered garbage, discovery failed | 502 | `exchange_failed`, `discovery_failed` |
//! | the account's refresh token was already redeemed here | 409 | `account_refused` |
//! | the database failed | 503 | `storage_unavailable` |

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use refresh_facade::core::ProxyUrl;
use refresh_facade::login::{self, LoginPurpose, OnboardingError};
use refresh_facade::providers::login::{LoginError, LoginOptions, Redirect};
use refresh_facade::{AccountType, ImportRefused, Platform, StorageErrorKind};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::api_error::ApiError;
use crate::view::account_json;

type Shared = Arc<AppState>;

/// The body of `POST /v1/logins`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BeginBody {
    platform: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    proxy: Option<String>,
    #[serde(default, rename = "type")]
    account_type: Option<String>,
    #[serde(default)]
    oauth_type: Option<String>,
    #[serde(default)]
    project_id: Option<String>,
    #[serde(default)]
    tier_id: Option<String>,
}

/// The body of `POST /v1/logins/{session_id}/complete`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CompleteBody {
    pasted: String,
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
}

/// A JSON body, or a 400 that says where it is wrong (never its text).
fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        let what = if e.is_data() {
            "a field is missing, unknown or of the wrong type"
        } else {
            "not a JSON object"
        };
        bad_request(format!(
            "invalid body: {what} (line {}, column {})",
            e.line(),
            e.column()
        ))
    })
}

pub(super) async fn begin(State(state): State<Shared>, body: Bytes) -> Result<Response, ApiError> {
    let body: BeginBody = parse(&body)?;
    let platform: Platform = body.platform.parse().map_err(|_| {
        bad_request("unknown platform: expected anthropic, openai, gemini or antigravity")
    })?;
    let proxy = body
        .proxy
        .map(|p| p.parse::<ProxyUrl>())
        .transpose()
        .map_err(|e| bad_request(format!("proxy: {e}")))?;
    let account_type = body
        .account_type
        .map(|t| t.parse::<AccountType>())
        .transpose()
        .map_err(|_| bad_request("type: expected oauth or setup-token"))?;
    let options = LoginOptions {
        name: body.name,
        proxy,
        redirect: Redirect::Manual,
        account_type,
        oauth_type: body.oauth_type,
        project_id: body.project_id,
        tier_id: body.tier_id,
        ..LoginOptions::default()
    };
    let session = login::begin(&state.stack, &platform, options).map_err(|e| api_error(&e))?;
    let parked = login::park(&state.stack, &session, LoginPurpose::NewAccount)
        .await
        .map_err(|e| api_error(&e))?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "session_id": parked.session_id,
            "authorize_url": session.authorize_url(),
            "expires_at": parked.expires_at.timestamp(),
            "platform": platform.as_str(),
        })),
    )
        .into_response())
}

pub(super) async fn complete(
    State(state): State<Shared>,
    Path(session_id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: CompleteBody = parse(&body)?;
    let session = login::take(&state.stack, &session_id, LoginPurpose::NewAccount)
        .await
        .map_err(|e| api_error(&e))?;
    let (account, warnings) = login::complete_new(&state.stack, &session, &body.pasted)
        .await
        .map_err(|e| api_error(&e))?;
    let mut view = account_json(&account);
    view["warnings"] = json!(warnings);
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// The answer to a failed login. Messages are the typed errors' own, which
/// carry no code, verifier, state or token.
fn api_error(error: &OnboardingError) -> ApiError {
    let (status, code) = error_code(error);
    ApiError::new(status, code, error.to_string())
}

/// The status and code of a failed login (the JSON API's `error.code`; the
/// status page shows the code too).
pub(super) fn error_code(error: &OnboardingError) -> (StatusCode, &'static str) {
    match error {
        OnboardingError::Unsupported { .. } => (StatusCode::BAD_REQUEST, "login_unsupported"),
        OnboardingError::SessionGone => (StatusCode::GONE, "login_session_gone"),
        OnboardingError::SessionExpired => (StatusCode::GONE, "login_session_expired"),
        OnboardingError::CorruptSession { .. } => (StatusCode::GONE, "login_session_unreadable"),
        OnboardingError::SessionMismatch { .. } => (StatusCode::CONFLICT, "login_session_mismatch"),
        OnboardingError::Login(login) => login_status(login),
        OnboardingError::Refused(ImportRefused::Store(e))
            if e.kind() != StorageErrorKind::InvalidData =>
        {
            (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable")
        }
        OnboardingError::Refused(_) => (StatusCode::CONFLICT, "account_refused"),
        OnboardingError::UnknownAccount { .. } => (StatusCode::NOT_FOUND, "account_not_found"),
        OnboardingError::WrongPlatform { .. } => (StatusCode::BAD_REQUEST, "wrong_platform"),
        OnboardingError::IdentityChanged { .. } => (StatusCode::CONFLICT, "identity_changed"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable"),
    }
}

fn login_status(error: &LoginError) -> (StatusCode, &'static str) {
    match error {
        LoginError::InvalidPaste { .. } => (StatusCode::BAD_REQUEST, "invalid_paste"),
        LoginError::StateMissing => (StatusCode::BAD_REQUEST, "state_missing"),
        LoginError::StateMismatch => (StatusCode::BAD_REQUEST, "state_mismatch"),
        LoginError::SessionExpired => (StatusCode::GONE, "login_session_expired"),
        LoginError::WrongPlatform { .. } => (StatusCode::BAD_REQUEST, "wrong_platform"),
        LoginError::InvalidOption { .. } => (StatusCode::BAD_REQUEST, "invalid_option"),
        LoginError::AuthorizationDenied { .. } => (StatusCode::BAD_REQUEST, "authorization_denied"),
        LoginError::ExchangeRejected { .. } => (StatusCode::BAD_GATEWAY, "exchange_rejected"),
        LoginError::Discovery { .. } => (StatusCode::BAD_GATEWAY, "discovery_failed"),
        LoginError::InvalidResponse { .. }
        | LoginError::NoRefreshToken
        | LoginError::Transport { .. } => (StatusCode::BAD_GATEWAY, "exchange_failed"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "login_unavailable"),
    }
}
