//! [`ClaudeConfig`].

use std::time::Duration;

use serde::Deserialize;

/// Settings of the Claude executor; the defaults are the real upstream's.
/// Holds no secret (Claude's OAuth client has none).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClaudeConfig {
    /// Token endpoint.
    pub token_url: String,
    /// Upper bound on this provider's token calls, from every path
    /// (`"20/s"`, `"600/m"`; default [`DEFAULT_RATE_LIMIT`](crate::DEFAULT_RATE_LIMIT)),
    /// enforced by the refresh flow before it claims a generation.
    pub rate_limit: refresh_core::RateLimit,
    /// OAuth client id (Claude Code's).
    pub client_id: String,
    /// `User-Agent` of token calls (2026-12: `axios/1.13.6`; the upstream
    /// rate-limits calls without one).
    pub user_agent: String,
    /// `Accept` of token calls.
    pub accept: String,
    /// Total timeout of the token call (also bounded by the refresh
    /// deadline).
    #[serde(with = "crate::config::duration_secs")]
    pub timeout: Duration,
    /// The login's own settings (authorize URL, redirects, scopes).
    pub login: super::ClaudeLoginConfig,
}

impl Default for ClaudeConfig {
    fn default() -> Self {
        Self {
            token_url: "https://platform.claude.com/v1/oauth/token".to_owned(),
            rate_limit: crate::DEFAULT_RATE_LIMIT,
            client_id: "9d1c250a-e61b-44d9-88ed-5944d1962f5e".to_owned(),
            user_agent: "axios/1.13.6".to_owned(),
            accept: "application/json, text/plain, */*".to_owned(),
            timeout: Duration::from_secs(60),
            login: super::ClaudeLoginConfig::default(),
        }
    }
}

impl ClaudeConfig {
    /// Checks every URL, the timeout and the header values.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`](refresh_core::ConfigError::Invalid) naming
    /// the setting.
    pub fn validate(&self) -> Result<(), refresh_core::ConfigError> {
        use crate::validate;
        validate::url("claude.token_url", &self.token_url)?;
        validate::url("claude.login.authorize_url", &self.login.authorize_url)?;
        validate::duration("claude.timeout", self.timeout, validate::TOKEN_TIMEOUT)?;
        validate::header("claude.user_agent", &self.user_agent)?;
        validate::header("claude.accept", &self.accept)
    }

    /// Points the token URL at `base` (`{base}/v1/oauth/token`), and the
    /// login's authorize URL.
    pub fn with_base_url(mut self, base: &str) -> Self {
        self.token_url = crate::config::join(base, "/v1/oauth/token");
        self.login = self.login.with_base_url(base);
        self
    }
}
