//! Mapping `reqwest` failures to [`ProviderError`]s.

use refresh_core::ProviderError;

/// Where a request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Connecting, writing the request or waiting for the response head.
    Send,
    /// Reading the response body (the request was certainly sent).
    Body,
}

/// Classifies a `reqwest` error:
/// - a request that could not be built → `Configuration` (nothing sent);
/// - a failed connect (DNS, TCP, TLS, proxy refusal or handshake, connect
///   timeout) while sending → `NotSent`: the request never left;
/// - anything else (a timeout or reset after the request was written, a
///   body cut short) → `Ambiguous`: the upstream may have processed it.
///
/// Reasons are the innermost cause's text with URLs and user info removed,
/// never the request or response.
pub(crate) fn map_transport_error(error: &reqwest::Error, phase: Phase) -> ProviderError {
    if error.is_builder() {
        return ProviderError::Configuration {
            reason: format!("the request cannot be built: {}", root_cause(error)),
        };
    }
    if phase == Phase::Send && error.is_connect() {
        let what = if error.is_timeout() {
            "connect timed out"
        } else {
            "connect failed"
        };
        return ProviderError::transport(false, format!("{what}: {}", root_cause(error)));
    }
    if error.is_timeout() {
        return ProviderError::transport(true, "timed out after the request was sent");
    }
    let what = match phase {
        Phase::Send => "connection failed after the request was sent",
        Phase::Body => "the response body was cut short",
    };
    ProviderError::transport(true, format!("{what}: {}", root_cause(error)))
}

/// The innermost cause's text, shortened, with anything URL-like dropped.
pub(crate) fn root_cause(error: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = error;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    let text = if std::ptr::addr_eq(cause, error as &dyn std::error::Error) {
        // No source: reqwest's own text names the URL; say the kind only.
        "no further detail".to_owned()
    } else {
        cause.to_string()
    };
    let kept: Vec<&str> = text
        .split_whitespace()
        .filter(|w| !w.contains("://") && !w.contains('@'))
        .collect();
    let mut reason = kept.join(" ");
    if reason.chars().count() > 120 {
        reason = reason.chars().take(120).collect();
    }
    reason
}
