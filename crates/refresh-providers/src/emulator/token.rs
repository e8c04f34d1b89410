//! The token endpoints: Claude (JSON), OpenAI (form, nested errors) and
//! Google (form with client secret). Each dispatches on `grant_type`, so an
//! `authorization_code` exchange can be added beside `refresh_token`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::issue;
use super::paths;
use super::reply::{flat_error, json, openai_error, serve};
use super::server::ConnControl;
use super::state::{Endpoint, Refreshed, Shared};

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
pub(crate) async fn claude(
    State(shared): State<Arc<Shared>>,
    Extension(control): Extension<ConnControl>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    serve(&shared, &control, paths::CLAUDE_TOKEN, || {
        claude_token(&shared, &headers, &body)
    })
    .await
}

fn claude_token(shared: &Shared, headers: &HeaderMap, body: &[u8]) -> Response {
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
        Refreshed::Issued {
            access_token,
            refresh_token,
            expires_in,
            email,
            grant,
        } => json(
            200,
            &json!({
                "token_type": "Bearer",
                "access_token": access_token,
                "expires_in": expires_in,
                "refresh_token": refresh_token,
                "scope": "user:inference user:profile user:sessions:claude_code",
                "organization": {"uuid": format!("00000000-0000-4000-8000-{:012}", grant.0), "name": "Emulated Org"},
                "account": {"uuid": format!("00000000-0000-4000-9000-{:012}", grant.0), "email_address": email},
            }),
        ),
        Refreshed::WrongClient => flat_error(401, "invalid_client", "Client authentication failed"),
        Refreshed::Unknown | Refreshed::Revoked | Refreshed::Reused => {
            flat_error(400, "invalid_grant", "Refresh token not found or invalid")
        }
    }
}

/// `POST /oauth/token` (OpenAI).
pub(crate) async fn openai(
    State(shared): State<Arc<Shared>>,
    Extension(control): Extension<ConnControl>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    serve(&shared, &control, paths::OPENAI_TOKEN, || {
        openai_token(&shared, &headers, &body)
    })
    .await
}

fn openai_token(shared: &Shared, headers: &HeaderMap, body: &[u8]) -> Response {
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
        Refreshed::Issued {
            access_token,
            refresh_token,
            expires_in,
            email,
            grant,
        } => {
            let now = chrono::Utc::now().timestamp();
            let id_token = issue::jwt(&json!({
                "iss": "https://auth.openai.com",
                "aud": [client_id],
                "iat": now,
                "exp": now + 3600,
                "email": email,
                "https://api.openai.com/auth": {
                    "chatgpt_account_id": format!("acct-{}", grant.0),
                    "chatgpt_user_id": format!("user-{}", grant.0),
                    "chatgpt_plan_type": "plus",
                    "organizations": [{"id": format!("org-{}", grant.0), "is_default": true, "role": "owner"}],
                },
            }));
            json(
                200,
                &json!({
                    "access_token": access_token,
                    "id_token": id_token,
                    "refresh_token": refresh_token,
                    "token_type": "Bearer",
                    "expires_in": expires_in,
                    "scope": field("scope").unwrap_or("openid profile email"),
                }),
            )
        }
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
pub(crate) async fn google(
    State(shared): State<Arc<Shared>>,
    Extension(control): Extension<ConnControl>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    serve(&shared, &control, paths::GOOGLE_TOKEN, || {
        google_token(&shared, &headers, &body)
    })
    .await
}

fn google_token(shared: &Shared, headers: &HeaderMap, body: &[u8]) -> Response {
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
    let (client_id, secret) = (
        field("client_id").unwrap_or_default(),
        field("client_secret"),
    );
    match shared
        .config
        .google_clients
        .iter()
        .find(|(id, _)| id == client_id)
    {
        None => return flat_error(401, "invalid_client", "The OAuth client was not found."),
        Some((_, s)) if Some(s.as_str()) != secret => {
            return flat_error(401, "invalid_client", "Unauthorized");
        }
        Some(_) => {}
    }
    let token = field("refresh_token").unwrap_or_default();
    match shared.refresh(Endpoint::Google, token, client_id) {
        Refreshed::Issued {
            access_token,
            refresh_token,
            expires_in,
            ..
        } => {
            let mut answer = json!({
                "access_token": access_token,
                "expires_in": expires_in,
                "scope": "https://www.googleapis.com/auth/cloud-platform https://www.googleapis.com/auth/userinfo.email openid",
                "token_type": "Bearer",
            });
            if let Some(rt) = refresh_token {
                answer["refresh_token"] = json!(rt);
            }
            json(200, &answer)
        }
        Refreshed::WrongClient => flat_error(401, "unauthorized_client", "Unauthorized"),
        Refreshed::Unknown | Refreshed::Revoked | Refreshed::Reused => {
            flat_error(400, "invalid_grant", "Token has been expired or revoked.")
        }
    }
}
