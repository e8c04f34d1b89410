//! The operator status page, server-rendered by `serve` (maud templates,
//! the stylesheet and script embedded, no CDN).
//!
//! | route | page |
//! |---|---|
//! | `GET /` | overview: refreshes per hour by outcome and platform (24 h, SVG), accounts by status, claims pending, lock fallbacks |
//! | `GET /accounts[?platform=&status=&sort=expiry&after=]` | accounts, filtered, paged |
//! | `GET /accounts/{id}` | one account and its recent refresh events |
//! | `POST /accounts/{id}/refresh` | "refresh now" (CSRF token) |
//! | `POST /accounts/{id}/relogin` | "re-login": begins a login, shows the authorize URL and the paste form (CSRF token) |
//! | `POST /accounts/{id}/relogin/complete` | completes it: the account's credentials replaced (CSRF token) |
//! | `GET /login`, `POST /login`, `POST /logout` | a session from one of `serve.api_keys` |
//! | `GET /ui/style.css`, `GET /ui/app.js` | the embedded assets |
//!
//! Every page answers with `Server-Timing: app;dur=<ms>` (the time to
//! build it). Pages need a session ([`session`]); every POST checks a CSRF token;
//! every response carries the [`headers`] (a layer of the whole router, so
//! 404 and 405 answers too). No page shows a credential: the
//! account views hold names, statuses, times and counts only.

mod accounts;
mod assets;
mod chart;
mod config;
pub(super) mod headers;
mod layout;
mod login;
mod overview;
mod relogin;
mod session;

use std::sync::Arc;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::Utc;
use maud::html;
use refresh_facade::core::ports::RefreshEventLog;
use refresh_facade::events::EventRecorder;

pub(crate) use self::config::UiSection;
use self::session::{Revoked, Session, SessionKeys};
use super::AppState;

type Shared = Arc<AppState>;

/// Bound of each store read of a page (a database that stopped answering
/// shows a notice instead of holding the request).
pub(super) const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// `read`, bounded by [`READ_TIMEOUT`]; a timeout is the error text
/// `timeout`, a store error its kind only (never the database's text).
pub(super) async fn bounded<T>(
    read: impl std::future::Future<Output = Result<T, refresh_facade::StorageError>>,
) -> Result<T, String> {
    match tokio::time::timeout(READ_TIMEOUT, read).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(e.kind().to_string()),
        Err(_) => Err("timeout".to_owned()),
    }
}

/// What the status page shares.
pub(crate) struct UiState {
    pub(crate) sessions: SessionKeys,
    /// Sessions logged out.
    pub(crate) revoked: Revoked,
    pub(crate) events: Arc<dyn RefreshEventLog>,
    pub(crate) recorder: EventRecorder,
    pub(crate) config: UiSection,
}

impl UiState {
    pub(crate) fn new(
        api_keys: &[refresh_facade::Secret],
        events: Arc<dyn RefreshEventLog>,
        recorder: EventRecorder,
        config: UiSection,
    ) -> Self {
        Self {
            sessions: SessionKeys::new(api_keys),
            revoked: Revoked::default(),
            events,
            recorder,
            config,
        }
    }
}

/// The status page's routes (none when `serve.ui.enabled` is false).
pub(crate) fn routes(enabled: bool) -> Router<Shared> {
    if !enabled {
        return Router::new();
    }
    Router::new()
        .route("/", get(overview::show))
        .route("/login", get(login::form_page).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/accounts", get(accounts::list))
        .route("/accounts/{id}", get(accounts::show))
        .route("/accounts/{id}/refresh", post(accounts::refresh_now))
        .route("/accounts/{id}/relogin", post(relogin::begin))
        .route("/accounts/{id}/relogin/complete", post(relogin::complete))
        .route("/ui/style.css", get(assets::style))
        .route("/ui/app.js", get(assets::script))
        .route_layer(axum::middleware::from_fn(headers::server_timing))
}

/// A logged-in operator: the extractor of every page; without a valid
/// session (or with one logged out), a redirect to the login page.
pub(super) struct Operator {
    pub(super) csrf: String,
    pub(super) session: Session,
}

impl FromRequestParts<Shared> for Operator {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, Response> {
        let ui = &state.ui;
        let session = parts
            .headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|h| session::cookie(h, session::SESSION_COOKIE))
            .and_then(|value| ui.sessions.verify(value, Utc::now()))
            .filter(|session| !ui.revoked.contains(session));
        match session {
            Some(session) => Ok(Self {
                csrf: ui.sessions.csrf(&session),
                session,
            }),
            None => Err(Redirect::to("/login").into_response()),
        }
    }
}

impl Operator {
    /// Whether a form's `csrf` field is this session's token.
    pub(super) fn checks(&self, form: &[(String, String)]) -> bool {
        field(form, "csrf").is_some_and(|token| session::same(token, &self.csrf))
    }
}

/// A form body (`application/x-www-form-urlencoded`).
pub(super) fn form(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// A query string, as pairs.
pub(super) fn query(raw: Option<&str>) -> Vec<(String, String)> {
    form(raw.unwrap_or_default().as_bytes())
}

/// The first value of `name`.
pub(super) fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Whether cookies set for this request get `Secure`.
pub(super) fn secure(state: &AppState, headers: &HeaderMap) -> bool {
    state.ui.config.secure_cookie
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

/// 403: a POST without the session's CSRF token.
pub(super) fn csrf_refused() -> Response {
    let body = html! {
        h1 { "Refused" }
        p.notice.bad role="alert" { "The form's security token is missing or wrong. Reload the page and try again." }
        p { a href="/" { "Back to the overview" } }
    };
    html_response(StatusCode::FORBIDDEN, layout::page("Refused", None, &body))
}

/// An HTML response.
pub(super) fn html_response(status: StatusCode, markup: maud::Markup) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}
