//! [`LoginError`]: why a login could not begin or complete.

use refresh_core::{OAuthErrorCode, Platform, ProviderError};

/// A login that could not begin or complete. Carries no code, verifier,
/// state or token, and never the pasted text: `Display` and `Debug` are
/// safe to log and to return to an HTTP client.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum LoginError {
    /// The pasted text is not a code, `code#state`, a callback URL or a
    /// query string with a `code`.
    #[error("the pasted text is not an authorization code or callback URL: {reason}")]
    InvalidPaste {
        /// What is wrong with it (never the text itself).
        reason: &'static str,
    },
    /// The pasted `state` is not the session's: the code belongs to
    /// another login (or was planted). Nothing was sent.
    #[error("the pasted state does not match this login session; start a new login")]
    StateMismatch,
    /// The redirect of this session always carries a `state`, and the
    /// pasted text has none (e.g. the code alone was copied from a
    /// `code#state` page or a callback URL). Nothing was sent.
    #[error("the pasted text has no state; paste the whole callback URL or code#state")]
    StateMissing,
    /// The session is past its expiry. Nothing was sent.
    #[error("the login session expired; start a new login")]
    SessionExpired,
    /// The session was begun for another platform.
    #[error("the login session is for {session}, not {flow}")]
    WrongPlatform {
        /// The session's platform.
        session: Platform,
        /// The flow's platform.
        flow: Platform,
    },
    /// An option that this provider does not take, or a value it refuses.
    #[error("invalid login option {option}: {reason}")]
    InvalidOption {
        /// The option.
        option: &'static str,
        /// Why.
        reason: String,
    },
    /// The provider's login settings cannot work (a URL that does not
    /// parse, AI Studio without an operator client).
    #[error("invalid login configuration: {reason}")]
    Configuration {
        /// Why (no secret).
        reason: String,
    },
    /// The operating system's random source failed.
    #[error("the system random source is unavailable")]
    RandomUnavailable,
    /// The provider redirected back with an OAuth `error` (the user
    /// denied consent, or the authorize request was refused).
    #[error("the provider refused the authorization ({code})")]
    AuthorizationDenied {
        /// The normalized OAuth error code.
        code: OAuthErrorCode,
    },
    /// The token endpoint refused the code exchange (a used, expired or
    /// foreign code, a PKCE mismatch, a refused client).
    #[error("the token endpoint refused the code exchange (status {status}{})", code_suffix(.code))]
    ExchangeRejected {
        /// The HTTP status.
        status: u16,
        /// The parsed OAuth error code, when the body had one.
        code: Option<OAuthErrorCode>,
    },
    /// The exchange answered 2xx with something unusable.
    #[error("the token endpoint's answer is unusable: {reason}")]
    InvalidResponse {
        /// Why (no body text).
        reason: String,
    },
    /// The exchange issued no refresh token, so the account could never
    /// be refreshed (Google issues one only on a consent screen).
    #[error("the provider issued no refresh token; log in again (with consent)")]
    NoRefreshToken,
    /// The exchange could not be sent or answered (connect, proxy,
    /// timeout): [`ProviderError::NotSent`] or [`ProviderError::Ambiguous`].
    #[error("the code exchange failed: {source}")]
    Transport {
        /// The transport failure (sanitized).
        source: ProviderError,
    },
    /// A required post-login step failed (Google One needs a Code Assist
    /// project).
    #[error("post-login discovery failed: {reason}")]
    Discovery {
        /// Why (no body, no token).
        reason: String,
    },
}

fn code_suffix(code: &Option<OAuthErrorCode>) -> String {
    code.as_ref().map(|c| format!(", {c}")).unwrap_or_default()
}
