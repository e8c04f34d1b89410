//! [`AntigravityConfig`].

use std::time::Duration;

use refresh_core::{ConfigError, Secret};
use serde::Deserialize;

use crate::DiscoveryTiming;
use crate::config::join;

/// Settings of the Antigravity executor; the defaults are the real
/// upstream's (2026-12 version `1.23.2`). `Debug` redacts the client
/// secret.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AntigravityConfig {
    /// Google's token endpoint.
    pub token_url: String,
    /// Upper bound on this provider's token calls, from every path
    /// (`"20/s"`, `"600/m"`; default [`DEFAULT_RATE_LIMIT`](crate::DEFAULT_RATE_LIMIT)),
    /// enforced by the refresh flow before it claims a generation.
    pub rate_limit: refresh_core::RateLimit,
    /// The Antigravity OAuth client id.
    pub client_id: String,
    /// The Antigravity OAuth client secret.
    pub client_secret: Secret,
    /// `User-Agent` of token calls; `None` (the default) sends none.
    pub token_user_agent: Option<String>,
    /// Total timeout of the token call (also bounded by the refresh
    /// deadline).
    #[serde(with = "crate::config::duration_secs")]
    pub timeout: Duration,
    /// Code Assist base URLs, tried in this order; also read as
    /// `code_assist_urls` (the operator's configuration key).
    #[serde(alias = "code_assist_urls")]
    pub code_assist_base_urls: Vec<String>,
    /// The Antigravity version, sent as `ideVersion` in `loadCodeAssist`.
    pub version: String,
    /// `User-Agent` of Code Assist calls; `None` derives
    /// `antigravity/<version> windows/amd64`.
    pub code_assist_user_agent: Option<String>,
    /// Retries, polls and budgets of the project load.
    pub discovery: DiscoveryTiming,
    /// The login's own settings (authorize URL, redirects, scope,
    /// userinfo).
    pub login: super::AntigravityLoginConfig,
}

impl Default for AntigravityConfig {
    fn default() -> Self {
        Self {
            token_url: "https://oauth2.googleapis.com/token".to_owned(),
            rate_limit: crate::DEFAULT_RATE_LIMIT,
            client_id: "1071006060591-tmhssin2h21lcre235vtolojh4g403ep.apps.googleusercontent.com"
                .to_owned(),
            client_secret: Secret::from("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"),
            token_user_agent: None,
            timeout: Duration::from_secs(30),
            code_assist_base_urls: vec![
                "https://cloudcode-pa.googleapis.com".to_owned(),
                "https://daily-cloudcode-pa.sandbox.googleapis.com".to_owned(),
            ],
            version: "1.23.2".to_owned(),
            code_assist_user_agent: None,
            discovery: DiscoveryTiming::default(),
            login: super::AntigravityLoginConfig::default(),
        }
    }
}

impl AntigravityConfig {
    /// Points the token URL (`{base}/token`), the one Code Assist base
    /// URL and the login's authorize and userinfo URLs at `base`.
    pub fn with_base_url(mut self, base: &str) -> Self {
        self.token_url = join(base, "/token");
        self.code_assist_base_urls = vec![base.trim_end_matches('/').to_owned()];
        self.login = self.login.with_base_url(base);
        self
    }

    /// The `User-Agent` of Code Assist calls.
    pub fn code_assist_user_agent(&self) -> String {
        self.code_assist_user_agent
            .clone()
            .unwrap_or_else(|| format!("antigravity/{} windows/amd64", self.version))
    }

    /// At least one Code Assist base URL.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for `antigravity.code_assist_base_urls`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        use crate::validate;
        validate::url("antigravity.token_url", &self.token_url)?;
        validate::url("antigravity.login.authorize_url", &self.login.authorize_url)?;
        validate::url("antigravity.login.userinfo_url", &self.login.userinfo_url)?;
        for url in self
            .code_assist_base_urls
            .iter()
            .filter(|u| !u.trim().is_empty())
        {
            validate::url("antigravity.code_assist_base_urls", url)?;
        }
        validate::duration("antigravity.timeout", self.timeout, validate::TOKEN_TIMEOUT)?;
        validate::header("antigravity.version", &self.version)?;
        validate::header(
            "antigravity.token_user_agent",
            self.token_user_agent.as_deref().unwrap_or(""),
        )?;
        validate::header(
            "antigravity.code_assist_user_agent",
            self.code_assist_user_agent.as_deref().unwrap_or(""),
        )?;
        self.discovery.validate("antigravity.discovery")?;
        if self
            .code_assist_base_urls
            .iter()
            .all(|u| u.trim().is_empty())
        {
            return Err(ConfigError::Invalid {
                field: "antigravity.code_assist_base_urls",
                reason: "at least one base URL is needed".to_owned(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_the_secret_and_the_user_agent_follows_the_version() {
        let config = AntigravityConfig {
            version: "9.9.9".into(),
            ..AntigravityConfig::default()
        };
        assert!(!format!("{config:?}").contains("GOCSPX"));
        assert_eq!(
            config.code_assist_user_agent(),
            "antigravity/9.9.9 windows/amd64"
        );
        assert!(config.validate().is_ok());
        let empty = AntigravityConfig {
            code_assist_base_urls: vec![],
            ..AntigravityConfig::default()
        };
        assert!(empty.validate().is_err());
    }
}
