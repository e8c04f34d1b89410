//! Code Assist (`loadCodeAssist`, `onboardUser`), Resource Manager and
//! Drive, for Google grants, authenticated by access tokens the emulator
//! issued.

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::Response;

use super::grant::GrantId;
use super::paths;
use super::reply::{google_api_error, json, serve};
use super::server::ConnControl;
use super::state::Shared;

/// The Google grant of the request's `Authorization: Bearer` token.
pub(crate) fn bearer_grant(shared: &Shared, headers: &HeaderMap) -> Option<GrantId> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|token| shared.google_grant(token.trim()))
}

/// [`bearer_grant`], or Google's refusal.
fn bearer(shared: &Shared, headers: &HeaderMap) -> Result<GrantId, Response> {
    bearer_grant(shared, headers).ok_or_else(|| {
        google_api_error(
            401,
            "Request had invalid authentication credentials.",
            "UNAUTHENTICATED",
        )
    })
}

fn authenticated(
    shared: &Shared,
    headers: &HeaderMap,
    answer: impl FnOnce(GrantId) -> Response,
) -> Response {
    match bearer(shared, headers) {
        Ok(id) => answer(id),
        Err(refused) => refused,
    }
}

/// `POST /v1internal:loadCodeAssist`.
pub(crate) async fn load(
    State(shared): State<Arc<Shared>>,
    Extension(control): Extension<ConnControl>,
    headers: HeaderMap,
    _body: Bytes,
) -> Response {
    serve(&shared, &control, paths::LOAD_CODE_ASSIST, || {
        authenticated(&shared, &headers, |id| {
            json(200, &shared.load_code_assist(id))
        })
    })
    .await
}

/// `POST /v1internal:onboardUser`.
pub(crate) async fn onboard(
    State(shared): State<Arc<Shared>>,
    Extension(control): Extension<ConnControl>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    serve(&shared, &control, paths::ONBOARD_USER, || {
        authenticated(&shared, &headers, |id| {
            let tier = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("tierId").and_then(|t| t.as_str()).map(str::to_owned));
            if tier.is_none_or(|t| t.trim().is_empty()) {
                return google_api_error(400, "tierId is required", "INVALID_ARGUMENT");
            }
            json(200, &shared.onboard(id))
        })
    })
    .await
}

/// `GET /v1/projects`.
pub(crate) async fn projects(
    State(shared): State<Arc<Shared>>,
    Extension(control): Extension<ConnControl>,
    headers: HeaderMap,
) -> Response {
    serve(&shared, &control, paths::PROJECTS, || {
        authenticated(&shared, &headers, |id| json(200, &shared.projects(id)))
    })
    .await
}

/// `GET /drive/v3/about?fields=storageQuota`.
pub(crate) async fn drive(
    State(shared): State<Arc<Shared>>,
    Extension(control): Extension<ConnControl>,
    headers: HeaderMap,
) -> Response {
    serve(&shared, &control, paths::DRIVE_ABOUT, || {
        authenticated(&shared, &headers, |id| match shared.drive(id) {
            Some(about) => json(200, &about),
            None => google_api_error(
                403,
                "Request had insufficient authentication scopes.",
                "PERMISSION_DENIED",
            ),
        })
    })
    .await
}
