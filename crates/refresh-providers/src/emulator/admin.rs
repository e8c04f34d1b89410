//! The admin API (`/admin/...`, JSON), the same operations as
//! [`Emulator`](super::Emulator)'s methods, for other processes (the demo,
//! benchmarks, multi-process tests). Admin calls are not counted.
//!
//! | Method and path | Body | Answer |
//! |---|---|---|
//! | `POST /admin/grants` | [`GrantSpec`] | `201 {"grant_id", "refresh_token"}` |
//! | `GET /admin/grants/{id}` | | [`GrantStats`](super::GrantStats) |
//! | `GET /admin/grants/{id}/refresh-token` | | `{"refresh_token"}`: the grant's current one |
//! | `POST /admin/grants/{id}/revoke` | | `204` |
//! | `GET /admin/stats` | | [`Stats`](super::Stats) |
//! | `GET /admin/issued-tokens` | | `{"tokens": [...]}`: every access and refresh token issued, for leak scans |
//! | `PUT /admin/latency` | [`Latency`] | `204` |
//! | `PUT /admin/token-lifetime` | `{"expires_in": n \| null}` | `204` |
//! | `POST /admin/faults` | [`Fault`] (one-shot, queued) | `204` |
//! | `PUT /admin/fault-rates` | [`FaultRates`] | `204` |
//! | `DELETE /admin/faults` | | `204` (queue and rates cleared) |

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::config::Latency;
use super::faults::{Fault, FaultRates};
use super::grant::{GrantId, GrantSpec};
use super::state::Shared;

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/admin/grants", post(seed))
        .route("/admin/grants/{id}", get(grant))
        .route(
            "/admin/grants/{id}/refresh-token",
            get(current_refresh_token),
        )
        .route("/admin/grants/{id}/revoke", post(revoke))
        .route("/admin/stats", get(stats))
        .route("/admin/issued-tokens", get(issued_tokens))
        .route("/admin/latency", put(latency))
        .route("/admin/token-lifetime", put(lifetime))
        .route("/admin/faults", post(fault).delete(clear_faults))
        .route("/admin/fault-rates", put(rates))
}

async fn seed(State(shared): State<Arc<Shared>>, Json(spec): Json<GrantSpec>) -> Response {
    match shared.seed(spec) {
        Ok(grant) => (
            StatusCode::CREATED,
            Json(json!({
                "grant_id": grant.grant_id,
                "refresh_token": grant.refresh_token.expose(),
            })),
        )
            .into_response(),
        Err(reason) => (StatusCode::BAD_REQUEST, Json(json!({ "error": reason }))).into_response(),
    }
}

async fn grant(State(shared): State<Arc<Shared>>, Path(id): Path<u64>) -> Response {
    match shared.grant(GrantId(id)) {
        Some(stats) => Json(stats).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn current_refresh_token(State(shared): State<Arc<Shared>>, Path(id): Path<u64>) -> Response {
    match shared.current_refresh_token(GrantId(id)) {
        Some(token) => Json(json!({ "refresh_token": token.expose() })).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn issued_tokens(State(shared): State<Arc<Shared>>) -> Response {
    let tokens: Vec<String> = shared
        .issued_tokens()
        .iter()
        .map(|t| t.expose().to_owned())
        .collect();
    Json(json!({ "tokens": tokens })).into_response()
}

async fn revoke(State(shared): State<Arc<Shared>>, Path(id): Path<u64>) -> StatusCode {
    if shared.revoke(GrantId(id)) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}

async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.stats()).into_response()
}

async fn latency(State(shared): State<Arc<Shared>>, Json(latency): Json<Latency>) -> StatusCode {
    shared.set_latency(latency);
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Lifetime {
    expires_in: Option<i64>,
}

async fn lifetime(State(shared): State<Arc<Shared>>, Json(body): Json<Lifetime>) -> StatusCode {
    shared.set_lifetime(body.expires_in);
    StatusCode::NO_CONTENT
}

async fn fault(State(shared): State<Arc<Shared>>, Json(fault): Json<Fault>) -> StatusCode {
    shared.push_fault(fault);
    StatusCode::NO_CONTENT
}

async fn rates(State(shared): State<Arc<Shared>>, Json(rates): Json<FaultRates>) -> StatusCode {
    shared.set_rates(rates);
    StatusCode::NO_CONTENT
}

async fn clear_faults(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.clear_faults();
    StatusCode::NO_CONTENT
}
