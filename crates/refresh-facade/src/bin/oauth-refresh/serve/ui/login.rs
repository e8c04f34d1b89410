//! Login and logout. The login form is protected by a double-submit
//! token (a short-lived cookie and the same value in the form), so a
//! foreign page cannot log a browser in with its own key.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use maud::html;

use super::session::{LOGIN_COOKIE, SESSION_COOKIE, cookie, nonce, same, set_cookie};
use super::{AppState, Operator, csrf_refused, field, form, html_response, layout, secure};

type Shared = Arc<AppState>;

/// How long the login form's token lives.
const LOGIN_FORM_TTL: u64 = 600;

fn login_page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    refused: bool,
) -> Response {
    let token = nonce();
    let no_keys = state.ui.sessions.is_empty();
    let body = html! {
        form.login method="post" action="/login" {
            h1 { "Log in" }
            @if refused {
                p.notice.bad role="alert" { "That key is not accepted." }
            }
            @if no_keys {
                p.notice role="status" {
                    "No API keys are configured (serve.api_keys), so no one can log in."
                }
            }
            input type="hidden" name="csrf" value=(token);
            label {
                "API key"
                input type="password" name="key" autocomplete="current-password" required autofocus;
            }
            button.primary type="submit" disabled[no_keys] { "Log in" }
            p.muted { "Use one of the keys of the /v1 API (serve.api_keys)." }
        }
    };
    let mut response = html_response(status, layout::page("Log in", None, &body));
    if let Ok(value) = HeaderValue::from_str(&set_cookie(
        LOGIN_COOKIE,
        &token,
        LOGIN_FORM_TTL,
        secure(state, headers),
    )) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

pub(super) async fn form_page(State(state): State<Shared>, headers: HeaderMap) -> Response {
    login_page(&state, &headers, StatusCode::OK, false)
}

pub(super) async fn submit(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let pairs = form(&body);
    let expected = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|h| cookie(h, LOGIN_COOKIE));
    let presented = field(&pairs, "csrf");
    let token_ok =
        matches!((expected, presented), (Some(a), Some(b)) if !a.is_empty() && same(a, b));
    if !token_ok {
        return csrf_refused();
    }
    let sessions = &state.ui.sessions;
    let Some(key) = field(&pairs, "key").and_then(|k| sessions.key_index(k)) else {
        tracing::warn!("status page login refused");
        return login_page(&state, &headers, StatusCode::UNAUTHORIZED, true);
    };
    let ttl = state.ui.config.session_ttl;
    let expires =
        Utc::now() + chrono::TimeDelta::from_std(ttl).unwrap_or(chrono::TimeDelta::hours(8));
    let value = sessions.issue(key, expires);
    let secure = secure(&state, &headers);
    let mut response = Redirect::to("/").into_response();
    for cookie in [
        set_cookie(SESSION_COOKIE, &value, ttl.as_secs(), secure),
        set_cookie(LOGIN_COOKIE, "", 0, secure),
    ] {
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    tracing::info!("status page login");
    response
}

pub(super) async fn logout(
    State(state): State<Shared>,
    operator: Operator,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !operator.checks(&form(&body)) {
        return csrf_refused();
    }
    state.ui.revoked.revoke(&operator.session, Utc::now());
    let mut response = Redirect::to("/login").into_response();
    if let Ok(value) =
        HeaderValue::from_str(&set_cookie(SESSION_COOKIE, "", 0, secure(&state, &headers)))
    {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}
