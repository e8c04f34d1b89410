//! The handlers.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use refresh_facade::{AccountFilter, AccountId, AccountStatus, RefreshOutcome};
use serde_json::{Value, json};

use super::AppState;
use super::api_error::ApiError;
use crate::view::account_json;

type Shared = Arc<AppState>;

/// Bound of the readiness probe and of scrape-time database reads.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

fn parse_id(id: &str) -> Result<AccountId, ApiError> {
    id.parse::<i64>().map(AccountId).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("invalid account id `{}`: expected an integer", sanitize(id)),
        )
    })
}

/// An id from the path, shortened and printable (it is echoed back).
fn sanitize(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(32)
        .collect()
}

fn query(raw: Option<&str>) -> Vec<(String, String)> {
    raw.map(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .into_owned()
            .collect()
    })
    .unwrap_or_default()
}

pub(super) async fn access_token(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let token = state
        .stack
        .tokens()
        .access_token_by_id(id)
        .await
        .map_err(|e| ApiError::from_token(&e))?;
    let body = json!({
        "access_token": token.token.expose(),
        "expires_at": token.expires_at.map(|t| t.timestamp()),
        "token_type": "Bearer",
    });
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

pub(super) async fn refresh(
    State(state): State<Shared>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let force = query(raw.as_deref())
        .iter()
        .any(|(k, v)| k == "force" && (v == "true" || v == "1"));
    // The flow runs detached: a client that goes away does not cancel it.
    let outcome = state
        .stack
        .refresh(id, force)
        .await
        .map_err(|e| ApiError::from_token(&e))?;
    let (name, account) = match &outcome {
        RefreshOutcome::Refreshed { account, .. } => ("refreshed", Some(account)),
        RefreshOutcome::StillFresh { account } => ("still_fresh", Some(account)),
        RefreshOutcome::HeldElsewhere => ("held_elsewhere", None),
    };
    Ok(Json(json!({
        "outcome": name,
        "account": account.map(account_json),
    })))
}

pub(super) async fn list_accounts(
    State(state): State<Shared>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let mut filter = AccountFilter::default();
    let mut after = None;
    let mut limit = 100usize;
    let bad = |name: &str| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("invalid query parameter `{name}`"),
        )
    };
    for (key, value) in query(raw.as_deref()) {
        match key.as_str() {
            "platform" => filter.platform = Some(value.parse().map_err(|_| bad("platform"))?),
            "status" => {
                filter.status = Some(value.parse::<AccountStatus>().map_err(|_| bad("status"))?);
            }
            "after" => after = Some(AccountId(value.parse().map_err(|_| bad("after"))?)),
            "limit" => {
                limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| bad("limit"))?;
            }
            _ => return Err(bad(&key.chars().take(32).collect::<String>())),
        }
    }
    let page = state
        .stack
        .catalog()
        .list(&filter, after, limit)
        .await
        .map_err(|e| ApiError::storage(format!("listing accounts failed: {}", e.kind())))?;
    let mut accounts: Vec<Value> = page.accounts.iter().map(account_json).collect();
    accounts.extend(page.corrupt.iter().map(
        |c| json!({"id": c.id.get(), "error_message": format!("unreadable: {}", c.error.kind())}),
    ));
    Ok(Json(json!({
        "accounts": accounts,
        "next_after": page.next.map(AccountId::get),
    })))
}

pub(super) async fn show_account(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let account = state
        .stack
        .repository()
        .get(id)
        .await
        .map_err(|e| ApiError::storage(format!("reading account {id} failed: {}", e.kind())))?
        .ok_or_else(|| ApiError::not_found(&id.to_string()))?;
    Ok(Json(account_json(&account)))
}

pub(super) async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub(super) async fn readyz(State(state): State<Shared>) -> Result<Json<Value>, ApiError> {
    state
        .stack
        .ready(PROBE_TIMEOUT)
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", e.to_string()))?;
    Ok(Json(json!({
        "status": "ready",
        "database": "ok",
        "redis": if state.stack.has_redis() { "ok" } else { "not configured" },
    })))
}

pub(super) async fn metrics(State(state): State<Shared>) -> Response {
    let text = state.metrics.render(&state.stack, PROBE_TIMEOUT).await;
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

pub(super) async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

pub(super) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}
