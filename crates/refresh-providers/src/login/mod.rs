//! Account onboarding: the OAuth authorization-code login with PKCE
//! (REFERENCE.md §13), the same shape for the four providers.
//!
//! 1. [`LoginFlow::begin_login`] creates a [`LoginSession`]: a fresh
//!    `state`, a PKCE verifier and its S256 challenge, the authorize URL
//!    with exactly the provider's parameters, the redirect URI, an expiry
//!    (10–30 min) and a session id. The session serializes (to be stored
//!    sealed, so another process can complete it).
//! 2. The user opens the URL, logs in, and pastes what the provider shows
//!    or the address bar holds: a bare code, `code#state`, the callback
//!    URL, or its query string.
//! 3. [`LoginFlow::complete_login`] checks the session's expiry and the
//!    pasted state (constant time) **before sending anything**, exchanges
//!    the code at the token endpoint through the session's proxy, reads
//!    the identity (token response, OpenAI's id_token, Google userinfo),
//!    runs the provider's post-login discovery, and returns a
//!    [`LoginOutcome`] with credentials in core's canonical encoding.
//!
//! Errors are [`LoginError`]s; no code, verifier, state or token appears
//! in one, nor in a log line. The verifier leaves the process only in the
//! exchange body.
//!
//! Each provider module has its flow beside its executor
//! (`claude::ClaudeLogin`, `openai::OpenAiLogin`, `gemini::GeminiLogin`,
//! `antigravity::AntigravityLogin`); [`login_flows`] builds every enabled
//! one from a [`ProvidersConfig`](crate::ProvidersConfig).

use std::sync::Arc;

use async_trait::async_trait;
use refresh_core::Platform;

use crate::http::HttpClients;

mod complete;
mod error;
mod outcome;
mod paste;
mod pkce;
mod session;

#[cfg(feature = "code-assist")]
pub(crate) use complete::userinfo_email;
pub(crate) use complete::{
    account_name, code_from_paste, exchange, log_warnings, oauth_only, post_login_deadline,
    refuse_gemini_options, text_at,
};
pub use error::LoginError;
pub use outcome::LoginOutcome;
pub(crate) use session::SessionSpec;
pub use session::{
    LoginOptions, LoginSession, Redirect, SESSION_TTL_DEFAULT, SESSION_TTL_MAX, SESSION_TTL_MIN,
};

/// One provider's login.
#[async_trait]
pub trait LoginFlow: Send + Sync + std::fmt::Debug {
    /// The platform it logs in to.
    fn platform(&self) -> Platform;

    /// Starts a login: a new [`LoginSession`] whose
    /// [`authorize_url`](LoginSession::authorize_url) the user opens.
    /// Nothing is sent.
    ///
    /// # Errors
    /// [`LoginError::InvalidOption`] for an option this provider does not
    /// take or a value it refuses; [`LoginError::Configuration`] for
    /// settings that cannot work; [`LoginError::RandomUnavailable`].
    fn begin_login(&self, options: LoginOptions) -> Result<LoginSession, LoginError>;

    /// Completes `session` with what the user pasted.
    ///
    /// # Contract
    /// - The session's platform, its expiry (by the flow's clock, unless a
    ///   store [admitted](LoginSession::admitted_by_store) it by its own)
    ///   and the pasted state are checked before any request; a mismatch
    ///   sends nothing.
    /// - At most one code exchange is sent, through the session's proxy;
    ///   the verifier appears only in its body.
    /// - Post-login calls (userinfo, project and tier discovery) use the
    ///   new access token through the same proxy; only those §13 makes
    ///   mandatory fail the login, the others become
    ///   [`LoginOutcome::warnings`].
    /// - Nothing is stored: the caller stores the outcome (and retires the
    ///   session, which is single-use).
    ///
    /// # Errors
    /// Every [`LoginError`] but the `begin_login` ones.
    async fn complete_login(
        &self,
        session: &LoginSession,
        pasted: &str,
    ) -> Result<LoginOutcome, LoginError>;
}

/// The login flow of every enabled provider, over `http` (share the
/// executors' pool).
#[allow(unused_variables, unused_mut, clippy::vec_init_then_push)] // pushes are per feature
pub fn login_flows(config: &crate::ProvidersConfig, http: &HttpClients) -> Vec<Arc<dyn LoginFlow>> {
    let mut all: Vec<Arc<dyn LoginFlow>> = Vec::new();
    #[cfg(feature = "claude")]
    all.push(Arc::new(crate::claude::ClaudeLogin::new(
        config.claude.clone(),
        http.clone(),
    )));
    #[cfg(feature = "openai")]
    all.push(Arc::new(crate::openai::OpenAiLogin::new(
        config.openai.clone(),
        http.clone(),
    )));
    #[cfg(feature = "gemini")]
    all.push(Arc::new(crate::gemini::GeminiLogin::new(
        config.gemini.clone(),
        http.clone(),
    )));
    #[cfg(feature = "antigravity")]
    all.push(Arc::new(crate::antigravity::AntigravityLogin::new(
        config.antigravity.clone(),
        http.clone(),
    )));
    all
}
