//! [`ApiError`]: `{"error": {"code", "message"}}` with the status the
//! failure deserves. Messages come from the typed errors, which carry no
//! secret.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use refresh_facade::{FlowError, TokenError};
use serde_json::json;

/// An error answer.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub(crate) fn not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "account_not_found",
            format!("account {id} not found"),
        )
    }

    /// A disabled or error account: not served, not refreshed.
    pub(crate) fn inactive(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "account_inactive", message)
    }

    pub(crate) fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "unauthorized")
    }

    pub(crate) fn storage(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            message,
        )
    }

    /// The answer to a failed token read.
    pub(crate) fn from_token(error: &TokenError) -> Self {
        match error {
            TokenError::UnknownAccount { id } => Self::not_found(&id.to_string()),
            TokenError::Inactive { .. } => Self::inactive(error.to_string()),
            TokenError::UnsupportedPlatform { .. }
            | TokenError::NotEligible { .. }
            | TokenError::MissingAccessToken { .. } => {
                Self::new(StatusCode::CONFLICT, "not_refreshable", error.to_string())
            }
            TokenError::Refresh { source, .. } => Self::from_flow(source),
            TokenError::Storage { source, .. } => {
                Self::storage(format!("{error}: {}", source.kind()))
            }
            _ => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "token_unavailable",
                error.to_string(),
            ),
        }
    }

    /// The answer to a failed refresh.
    pub(crate) fn from_flow(error: &FlowError) -> Self {
        match error {
            FlowError::AccountNotFound { id } => Self::not_found(&id.to_string()),
            FlowError::NotEligible { .. } => {
                Self::new(StatusCode::CONFLICT, "not_refreshable", error.to_string())
            }
            FlowError::CredentialsRegressed { .. } => Self::new(
                StatusCode::CONFLICT,
                "credentials_regressed",
                format!("{error}; re-import current credentials"),
            ),
            FlowError::Upstream { source, .. } => Self::new(
                StatusCode::BAD_GATEWAY,
                "upstream_rejected",
                format!("{error}: {}", source.kind_name()),
            ),
            FlowError::EmptyCredentials { .. } => Self::new(
                StatusCode::BAD_GATEWAY,
                "upstream_rejected",
                error.to_string(),
            ),
            FlowError::Quarantined { until, .. } => {
                let wait = (*until - chrono::Utc::now()).num_seconds().max(1);
                Self {
                    retry_after: u64::try_from(wait).ok(),
                    ..Self::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "refresh_quarantined",
                        error.to_string(),
                    )
                }
            }
            FlowError::LockUnavailable { source, .. } => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "lock_unavailable",
                format!("{error}: {}", source.kind()),
            ),
            FlowError::Claim { source, .. }
            | FlowError::Reread { source, .. }
            | FlowError::NotPersisted { source, .. } => {
                Self::storage(format!("{error}: {}", source.kind()))
            }
            _ => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                error.to_string(),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(value) = self
            .retry_after
            .and_then(|secs| HeaderValue::from_str(&secs.to_string()).ok())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}
