//! [`OpenAiConfig`].

use std::time::Duration;

use serde::Deserialize;

/// Settings of the OpenAI executor; the defaults are the real upstream's.
/// Holds no secret (the Codex CLI client has none).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenAiConfig {
    /// Token endpoint.
    pub token_url: String,
    /// Upper bound on this provider's token calls, from every path
    /// (`"20/s"`, `"600/m"`; default [`DEFAULT_RATE_LIMIT`](crate::DEFAULT_RATE_LIMIT)),
    /// enforced by the refresh flow before it claims a generation.
    pub rate_limit: refresh_core::RateLimit,
    /// OAuth client id used when the account's credentials name none
    /// (the Codex CLI's).
    pub client_id: String,
    /// `scope` sent with the refresh (deliberately without
    /// `offline_access`).
    pub scope: String,
    /// `User-Agent` of token calls.
    pub user_agent: String,
    /// `originator` header of token calls; `None` sends none.
    pub originator: Option<String>,
    /// Total timeout of the token call (also bounded by the refresh
    /// deadline).
    #[serde(with = "crate::config::duration_secs")]
    pub timeout: Duration,
    /// The login's own settings (authorize URL, redirect, scope).
    pub login: super::OpenAiLoginConfig,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        Self {
            token_url: "https://auth.openai.com/oauth/token".to_owned(),
            rate_limit: crate::DEFAULT_RATE_LIMIT,
            client_id: "app_EMoamEEZ73f0CkXaXp7hrann".to_owned(),
            scope: "openid profile email".to_owned(),
            user_agent: "codex-tui/0.146.0 (Ubuntu 22.4.0; x86_64) xterm-256color".to_owned(),
            originator: Some("codex-tui".to_owned()),
            timeout: Duration::from_secs(120),
            login: super::OpenAiLoginConfig::default(),
        }
    }
}

impl OpenAiConfig {
    /// Checks every URL, the timeout and the header values.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`](refresh_core::ConfigError::Invalid) naming
    /// the setting.
    pub fn validate(&self) -> Result<(), refresh_core::ConfigError> {
        use crate::validate;
        validate::url("openai.token_url", &self.token_url)?;
        validate::url("openai.login.authorize_url", &self.login.authorize_url)?;
        validate::duration("openai.timeout", self.timeout, validate::TOKEN_TIMEOUT)?;
        validate::header("openai.user_agent", &self.user_agent)?;
        validate::header(
            "openai.originator",
            self.originator.as_deref().unwrap_or(""),
        )
    }

    /// Points the token URL at `base` (`{base}/oauth/token`), and the
    /// login's authorize URL.
    pub fn with_base_url(mut self, base: &str) -> Self {
        self.token_url = crate::config::join(base, "/oauth/token");
        self.login = self.login.with_base_url(base);
        self
    }
}
