//! The token endpoints: Claude (JSON), OpenAI (form, nested errors) and
//! Google (form with client secret). Each dispatches on `grant_type`, so an
//! `authorization_code` exchange can be added beside `refresh_token`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::Response;
use axum::routing::{MethodRouter, post};
use axum::{Extension, Router};
use chrono::Utc;
use serde_json::{Map, Value, json};

use super::issue;
use super::paths;
use super::reply::{flat_error, json, openai_error, serve};
use super::server::ConnControl;
use super::state::{Endpoint, Issued, Refreshed, Shared};

/// The three token endpoints.
pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route(paths::CLAUDE_TOKEN, endpoint(paths::CLAUDE_TOKEN, claude))
        .route(paths::OPENAI_TOKEN, endpoint(paths::OPENAI_TOKEN, openai))
        .route(paths::GOOGLE_TOKEN, endpoint(paths::GOOGLE_TOKEN, google))
}

/// `POST path`, answered by `answer` (counted, with the faults and the
/// latency).
fn endpoint(
    path: &'static str,
    answer: fn(&Shared, &HeaderMap, &[u8]) -> Response,
) -> MethodRouter<Arc<Shared>> {
    post(
        move |State(shared): State<Arc<Shared>>,
              Extension(control): Extension<ConnControl>,
              headers: HeaderMap,
              body: Bytes| async move {
            serve(&shared, &control, path, || answer(&shared, &headers, &body)).await
        },
    )
}

fn content_type_is(headers: &HeaderMap, wanted: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with(wanted))
}

/// Non-blank string fields of a JSON object body.
fn json_fields(body: &[u8]) -> Option<HashMap<String, String>> {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
        return None;
    };
    Some(strings(&map))
}

fn strings(map: &Map<String, Value>) -> HashMap<String, String> {
    map.iter()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.trim().to_owned())))
        .filter(|(_, v)| !v.is_empty())
        .collect()
}

/// Non-blank fields of a form body (the first of repeated keys).
fn form_fields(body: &[u8]) -> HashMap<String, String> {
    let mut fields = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(body) {
        let v = v.trim();
        if !v.is_empty() {
            fields.entry(k.into_owned()).or_insert_with(|| v.to_owned());
        }
    }
    fields
}

/// `POST /v1/oauth/token` (Claude).
fn claude(shared: &Shared, headers: &HeaderMap, body: &[u8]) -> Response {
    let bad = || flat_error(400, "invalid_request", "Invalid request format");
    if !content_type_is(headers, "application/json") {
        return bad();
    }
    let Some(fields) = json_fields(body) else {
        return bad();
    };
    if fields.get("grant_type").map(String::as_str) == Some("authorization_code") {
        return super::login::claude_exchange(shared, &fields);
    }
    let field = |k: &str| fields.get(k).map(String::as_str);
    match field("grant_type") {
        Some("refresh_token") => {}
        Some(_) => return flat_error(400, "unsupported_grant_type", "Unsupported grant type"),
        None => return bad(),
    }
    let (Some(client_id), Some(token)) = (field("client_id"), field("refresh_token")) else {
        return bad();
    };
    if client_id != shared.config.claude_client_id {
        return flat_error(401, "invalid_client", "Client authentication failed");
    }
    match shared.refresh(Endpoint::Claude, token, client_id) {
        Refreshed::Issued(issued) => claude_granted(
            issued,
            "user:inference user:profile user:sessions:claude_code",
        ),
        Refreshed::WrongClient => flat_error(401, "invalid_client", "Client authentication failed"),
        Refreshed::Unknown | Refreshed::Revoked | Refreshed::Reused => {
            flat_error(400, "invalid_grant", "Refresh token not found or invalid")
        }
    }
}

/// `POST /oauth/token` (OpenAI).
fn openai(shared: &Shared, headers: &HeaderMap, body: &[u8]) -> Response {
    if !content_type_is(headers, "application/x-www-form-urlencoded") {
        return openai_error(400, "invalid_request", "Unsupported content type.");
    }
    let fields = form_fields(body);
    if fields.get("grant_type").map(String::as_str) == Some("authorization_code") {
        return super::login::openai_exchange(shared, &fields);
    }
    let field = |k: &str| fields.get(k).map(String::as_str);
    match field("grant_type") {
        Some("refresh_token") => {}
        Some(_) => return openai_error(400, "unsupported_grant_type", "Unsupported grant type."),
        None => return openai_error(400, "invalid_request", "Missing grant_type."),
    }
    let Some(client_id) = field("client_id") else {
        return openai_error(400, "invalid_request", "Missing client_id.");
    };
    if !shared
        .config
        .openai_client_ids
        .iter()
        .any(|c| c == client_id)
    {
        return openai_error(401, "invalid_client", "Unknown client.");
    }
    let Some(token) = field("refresh_token") else {
        return openai_error(400, "invalid_request", "Missing refresh_token.");
    };
    match shared.refresh(Endpoint::OpenAi, token, client_id) {
        Refreshed::Issued(issued) => openai_granted(
            issued,
            field("scope").unwrap_or("openid profile email"),
            client_id,
        ),
        Refreshed::Reused => openai_error(
            401,
            "refresh_token_reused",
            "Your refresh token has already been used to generate a new access token. Please try signing in again.",
        ),
        Refreshed::Revoked => openai_error(
            401,
            "refresh_token_invalidated",
            "Your refresh token has been invalidated. Please try signing in again.",
        ),
        Refreshed::Unknown => openai_error(400, "invalid_grant", "Invalid refresh token."),
        Refreshed::WrongClient => openai_error(401, "invalid_client", "Unknown client."),
    }
}

/// `POST /token` (Google: Gemini and Antigravity).
fn google(shared: &Shared, headers: &HeaderMap, body: &[u8]) -> Response {
    if !content_type_is(headers, "application/x-www-form-urlencoded") {
        return flat_error(400, "invalid_request", "Invalid content type");
    }
    let fields = form_fields(body);
    if fields.get("grant_type").map(String::as_str) == Some("authorization_code") {
        return super::login::google_exchange(shared, &fields);
    }
    let field = |k: &str| fields.get(k).map(String::as_str);
    for required in ["grant_type", "client_id", "client_secret", "refresh_token"] {
        if field(required).is_none() {
            return flat_error(
                400,
                "invalid_request",
                &format!("Missing required parameter: {required}"),
            );
        }
    }
    if field("grant_type") != Some("refresh_token") {
        return flat_error(400, "unsupported_grant_type", "Invalid grant_type");
    }
    if let Some(refused) = google_client_refusal(shared, &fields) {
        return refused;
    }
    let (client_id, token) = (
        field("client_id").unwrap_or_default(),
        field("refresh_token").unwrap_or_default(),
    );
    match shared.refresh(Endpoint::Google, token, client_id) {
        Refreshed::Issued(issued) => google_granted(
            issued,
            "https://www.googleapis.com/auth/cloud-platform https://www.googleapis.com/auth/userinfo.email openid",
        ),
        Refreshed::WrongClient => flat_error(401, "unauthorized_client", "Unauthorized"),
        Refreshed::Unknown | Refreshed::Revoked | Refreshed::Reused => {
            flat_error(400, "invalid_grant", "Token has been expired or revoked.")
        }
    }
}

/// Refuses a Google request whose `client_id` is unknown or whose
/// `client_secret` is not that client's.
pub(crate) fn google_client_refusal(
    shared: &Shared,
    fields: &HashMap<String, String>,
) -> Option<Response> {
    let field = |k: &str| fields.get(k).map(String::as_str);
    match shared
        .config
        .google_clients
        .iter()
        .find(|(id, _)| Some(id.as_str()) == field("client_id"))
    {
        None => Some(flat_error(
            401,
            "invalid_client",
            "The OAuth client was not found.",
        )),
        Some((_, secret)) if Some(secret.as_str()) != field("client_secret") => {
            Some(flat_error(401, "invalid_client", "Unauthorized"))
        }
        Some(_) => None,
    }
}

/// Claude's answer with `issued` tokens (a refresh or a code exchange).
pub(crate) fn claude_granted(issued: Issued, scope: &str) -> Response {
    let user = issued.user;
    json(
        200,
        &json!({
            "token_type": "Bearer",
            "access_token": issued.access_token,
            "expires_in": issued.expires_in,
            "refresh_token": issued.refresh_token,
            "scope": scope,
            "organization": {"uuid": format!("00000000-0000-4000-8000-{user:012}"), "name": "Emulated Org"},
            "account": {"uuid": format!("00000000-0000-4000-9000-{user:012}"), "email_address": issued.email},
        }),
    )
}

/// OpenAI's answer with `issued` tokens, and an id_token for `client_id`.
pub(crate) fn openai_granted(issued: Issued, scope: &str, client_id: &str) -> Response {
    let (now, user) = (Utc::now().timestamp(), issued.user);
    let id_token = issue::jwt(&json!({
        "iss": "https://auth.openai.com",
        "aud": [client_id],
        "iat": now,
        "exp": now + 3600,
        "email": issued.email,
        "https://api.openai.com/auth": {
            "chatgpt_account_id": format!("acct-{user}"),
            "chatgpt_user_id": format!("user-{user}"),
            "chatgpt_plan_type": "plus",
            "organizations": [{"id": format!("org-{user}"), "is_default": true, "role": "owner"}],
        },
    }));
    let answer = json!({
        "access_token": issued.access_token,
        "id_token": id_token,
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
        "scope": scope,
    });
    json(200, &with_refresh_token(answer, issued.refresh_token))
}

/// Google's answer with `issued` tokens.
pub(crate) fn google_granted(issued: Issued, scope: &str) -> Response {
    let answer = json!({
        "access_token": issued.access_token,
        "expires_in": issued.expires_in,
        "scope": scope,
        "token_type": "Bearer",
    });
    json(200, &with_refresh_token(answer, issued.refresh_token))
}

/// `answer` with `refresh_token` when one was issued.
fn with_refresh_token(mut answer: Value, refresh_token: Option<String>) -> Value {
    if let Some(rt) = refresh_token {
        answer["refresh_token"] = json!(rt);
    }
    answer
}
