//! [`ProviderError`]: how an upstream refresh failed.

use std::time::Duration;

use super::oauth_code::{OAuthErrorBody, OAuthErrorCode, redact_token_like};

/// A failed upstream refresh, classified from the HTTP status and the parsed
/// OAuth `error` code (never from message text). Carries no token material
/// and no raw body; `Display` redacts token-like words of every
/// executor-supplied reason as a second line of defence.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// The account has no refresh token; nothing was sent.
    #[error("no refresh token available")]
    MissingRefreshToken,
    /// The refresh token was refused (`invalid_grant`,
    /// `refresh_token_reused`, `refresh_token_invalidated`). The flow applies
    /// race recovery before treating it as final.
    #[error("refresh token rejected by upstream ({code})")]
    InvalidGrant {
        /// The OAuth code.
        code: OAuthErrorCode,
        /// Sanitized upstream description.
        description: Option<String>,
    },
    /// The OAuth client was refused (`invalid_client`,
    /// `unauthorized_client`).
    #[error("OAuth client rejected by upstream ({code})")]
    InvalidClient {
        /// The OAuth code.
        code: OAuthErrorCode,
        /// Sanitized upstream description.
        description: Option<String>,
    },
    /// `access_denied`.
    #[error("access denied by upstream")]
    AccessDenied {
        /// Sanitized upstream description.
        description: Option<String>,
    },
    /// HTTP 429 or `slow_down`.
    #[error("rate limited by upstream")]
    RateLimited {
        /// The upstream's `Retry-After`, when given.
        retry_after: Option<Duration>,
    },
    /// The request provably never left: DNS, connect, TLS or proxy CONNECT
    /// refusal, HTTP/2 `REFUSED_STREAM`. The token was not presented, so the
    /// generation claim is released.
    #[error("request not sent: {}", redact_token_like(reason))]
    NotSent {
        /// Short reason.
        reason: String,
    },
    /// The upstream answered 5xx or `temporarily_unavailable`/`server_error`.
    /// It processed the request, so the token may be consumed: the claim is
    /// kept as a quarantine.
    #[error("upstream server error: {}", redact_token_like(reason))]
    ServerError {
        /// HTTP status, when there was one.
        status: Option<u16>,
        /// Short reason (no body).
        reason: String,
    },
    /// A non-2xx status with no recognized code.
    #[error("upstream answered status {status}")]
    UnexpectedStatus {
        /// HTTP status.
        status: u16,
        /// The code, if one was present but not recognized.
        code: Option<OAuthErrorCode>,
    },
    /// The request was sent but no answer came (timeout, connection reset
    /// after sending): the upstream may or may not have rotated the token.
    #[error("request sent but no answer received: {}", redact_token_like(reason))]
    Ambiguous {
        /// Short reason.
        reason: String,
    },
    /// A 2xx response that cannot be used (not JSON, too large, no
    /// `access_token`).
    #[error("invalid upstream response: {}", redact_token_like(reason))]
    InvalidResponse {
        /// Short reason.
        reason: String,
    },
    /// The account or the executor is misconfigured (bad proxy URL, missing
    /// OAuth client). Needs a human.
    #[error("invalid provider configuration: {}", redact_token_like(reason))]
    Configuration {
        /// Short reason (no secrets, no proxy password).
        reason: String,
    },
    /// The project id could not be discovered before any token was issued.
    /// An executor that already holds new tokens returns them (`Ok`) and
    /// reports the project problem separately, so the rotation is persisted
    /// (REFERENCE.md §10).
    #[error("project discovery failed: {}", redact_token_like(reason))]
    ProjectDiscovery {
        /// Short reason.
        reason: String,
    },
}

impl ProviderError {
    /// Classifies a non-2xx token-endpoint response from its status, body and
    /// `Retry-After`.
    pub fn from_response(status: u16, body: &[u8], retry_after: Option<Duration>) -> Self {
        let parsed = OAuthErrorBody::parse(body).unwrap_or_default();
        let description = parsed.description;
        match parsed.code {
            Some(code) if code.is_grant_rejected() => Self::InvalidGrant { code, description },
            Some(code) if code.is_client_rejected() => Self::InvalidClient { code, description },
            Some(code) if code.is_access_denied() => Self::AccessDenied { description },
            Some(code) if code.is_rate_limited() => Self::RateLimited { retry_after },
            _ if status == 429 => Self::RateLimited { retry_after },
            Some(code) if code.is_transient() => Self::ServerError {
                status: Some(status),
                reason: format!("upstream {code}"),
            },
            _ if status >= 500 => Self::ServerError {
                status: Some(status),
                reason: format!("upstream status {status}"),
            },
            code => Self::UnexpectedStatus { status, code },
        }
    }

    /// A transport failure: [`NotSent`](Self::NotSent) when the request
    /// provably never left (`sent == false`), [`Ambiguous`](Self::Ambiguous)
    /// otherwise. Executors map their HTTP client's errors through this.
    pub fn transport(sent: bool, reason: impl Into<String>) -> Self {
        let reason = super::sanitize_description(&reason.into());
        if sent {
            Self::Ambiguous { reason }
        } else {
            Self::NotSent { reason }
        }
    }

    /// Whether the upstream provably did not consume the presented token:
    /// the request never left, was refused before processing (429), was
    /// rejected before sending (no refresh token, configuration), or was
    /// answered with a parsed RFC 6749 error other than `invalid_grant`.
    /// Every other outcome may have consumed it (the flow keeps the
    /// generation claim then).
    pub fn provably_not_consumed(&self) -> bool {
        match self {
            Self::NotSent { .. }
            | Self::MissingRefreshToken
            | Self::Configuration { .. }
            | Self::RateLimited { .. }
            | Self::InvalidClient { .. }
            | Self::AccessDenied { .. } => true,
            Self::UnexpectedStatus { code, .. } => code.is_some(),
            Self::InvalidGrant { .. }
            | Self::ServerError { .. }
            | Self::Ambiguous { .. }
            | Self::InvalidResponse { .. }
            | Self::ProjectDiscovery { .. } => false,
        }
    }

    /// Whether retrying the same request may succeed. Comes from the kind.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. }
                | Self::NotSent { .. }
                | Self::ServerError { .. }
                | Self::UnexpectedStatus { .. }
                | Self::Ambiguous { .. }
                | Self::InvalidResponse { .. }
                | Self::ProjectDiscovery { .. }
        )
    }

    /// The refresh token was refused; race recovery applies.
    pub fn is_grant_rejected(&self) -> bool {
        matches!(self, Self::InvalidGrant { .. })
    }

    /// A short stable name of the kind, for logs and metrics labels.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Self::MissingRefreshToken => "missing_refresh_token",
            Self::InvalidGrant { .. } => "invalid_grant",
            Self::InvalidClient { .. } => "invalid_client",
            Self::AccessDenied { .. } => "access_denied",
            Self::RateLimited { .. } => "rate_limited",
            Self::NotSent { .. } => "not_sent",
            Self::ServerError { .. } => "server_error",
            Self::UnexpectedStatus { .. } => "unexpected_status",
            Self::Ambiguous { .. } => "ambiguous",
            Self::InvalidResponse { .. } => "invalid_response",
            Self::Configuration { .. } => "configuration",
            Self::ProjectDiscovery { .. } => "project_discovery",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(status: u16, body: &str) -> ProviderError {
        ProviderError::from_response(status, body.as_bytes(), None)
    }

    #[test]
    fn classification_not_non_retryable_for_timeout_and_5xx() {
        assert!(ProviderError::transport(false, "connect refused").is_retryable());
        assert!(matches!(
            ProviderError::transport(true, "reset"),
            ProviderError::Ambiguous { .. }
        ));
        assert!(classify(503, "<html>down</html>").is_retryable());
        assert!(classify(429, "").is_retryable());
        assert!(classify(400, r#"{"error":"temporarily_unavailable"}"#).is_retryable());
    }

    #[test]
    fn classification_non_retryable_codes() {
        for code in [
            "invalid_grant",
            "invalid_client",
            "unauthorized_client",
            "access_denied",
            "refresh_token_reused",
            "refresh_token_invalidated",
        ] {
            let err = classify(400, &format!(r#"{{"error":"{code}"}}"#));
            assert!(!err.is_retryable(), "{code}: {err:?}");
        }
        assert!(!ProviderError::MissingRefreshToken.is_retryable());
    }

    #[test]
    fn classification_invalid_grant_in_upper_case_and_nested_long_message() {
        assert!(classify(400, r#"{"error":"INVALID_GRANT"}"#).is_grant_rejected());
        let nested = classify(
            401,
            r#"{"error":{"message":"Your refresh token has already been used to generate a new access token. Please try signing in again.","type":"invalid_request_error","code":"refresh_token_reused"}}"#,
        );
        assert!(nested.is_grant_rejected());
        assert!(!nested.is_retryable());
    }

    #[test]
    fn classification_never_matches_substrings_of_messages() {
        // A message that merely mentions invalid_grant is not an invalid_grant.
        let err = classify(
            400,
            r#"{"error":"invalid_request","error_description":"not an invalid_grant"}"#,
        );
        assert!(matches!(
            err,
            ProviderError::UnexpectedStatus { status: 400, .. }
        ));
    }

    #[test]
    fn only_the_allowlist_is_provably_not_consumed() {
        assert!(classify(429, "").provably_not_consumed());
        assert!(classify(400, r#"{"error":"invalid_client"}"#).provably_not_consumed());
        assert!(classify(400, r#"{"error":"invalid_request"}"#).provably_not_consumed());
        assert!(ProviderError::transport(false, "dns").provably_not_consumed());
        for kept in [
            classify(503, "<html>down</html>"),
            classify(400, r#"{"error":"invalid_grant"}"#),
            classify(418, "teapot"),
            ProviderError::transport(true, "reset after sending"),
            ProviderError::InvalidResponse {
                reason: "not json".into(),
            },
        ] {
            assert!(!kept.provably_not_consumed(), "{kept:?}");
        }
    }

    #[test]
    fn rate_limit_keeps_retry_after() {
        let err = ProviderError::from_response(429, b"{}", Some(Duration::from_secs(7)));
        assert_eq!(
            err,
            ProviderError::RateLimited {
                retry_after: Some(Duration::from_secs(7))
            }
        );
    }
}
