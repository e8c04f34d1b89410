//! [`GeminiConfig`].

use std::time::Duration;

use refresh_core::{ConfigError, Secret};
use serde::Deserialize;

use crate::DiscoveryTiming;
use crate::config::join;

/// Settings of the Gemini executor; the defaults are the real upstream's.
/// `Debug` redacts the client secrets (they are `Secret`s).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GeminiConfig {
    /// Google's token endpoint.
    pub token_url: String,
    /// Upper bound on this provider's token calls, from every path
    /// (`"20/s"`, `"600/m"`; default [`DEFAULT_RATE_LIMIT`](crate::DEFAULT_RATE_LIMIT)),
    /// enforced by the refresh flow before it claims a generation.
    pub rate_limit: refresh_core::RateLimit,
    /// The built-in Gemini CLI client id (code_assist, google_one, and
    /// ai_studio when no AI Studio client is configured).
    pub builtin_client_id: String,
    /// The built-in client's secret (an "installed application" secret,
    /// public, but still never shown).
    pub builtin_client_secret: Secret,
    /// The operator's AI Studio OAuth client id; both or neither of id and
    /// secret.
    pub ai_studio_client_id: Option<String>,
    /// The operator's AI Studio OAuth client secret.
    pub ai_studio_client_secret: Option<Secret>,
    /// `User-Agent` of token calls; `None` (the default) sends none, as
    /// Google's libraries do not set one explicitly.
    pub token_user_agent: Option<String>,
    /// Total timeout of the token call (also bounded by the refresh
    /// deadline).
    #[serde(with = "crate::config::duration_secs")]
    pub timeout: Duration,
    /// Code Assist base URL (`loadCodeAssist`, `onboardUser`); also read
    /// as `code_assist_url` (the operator's configuration key).
    #[serde(alias = "code_assist_url")]
    pub code_assist_base_url: String,
    /// `User-Agent` of Code Assist, Resource Manager and Drive calls.
    pub code_assist_user_agent: String,
    /// Cloud Resource Manager projects list.
    pub resource_manager_url: String,
    /// Drive `about` with the storage quota (Google One tier).
    pub drive_about_url: String,
    /// A Drive tier younger than this is kept without a Drive call (24 h).
    #[serde(with = "crate::config::duration_secs")]
    pub drive_tier_ttl: Duration,
    /// Retries, polls and budgets of project discovery.
    pub discovery: DiscoveryTiming,
    /// The login's own settings (authorize URL, redirects, scopes,
    /// userinfo).
    pub login: super::GeminiLoginConfig,
}

impl Default for GeminiConfig {
    fn default() -> Self {
        Self {
            token_url: "https://oauth2.googleapis.com/token".to_owned(),
            rate_limit: crate::DEFAULT_RATE_LIMIT,
            builtin_client_id:
                "681255809395-oo8ft2oprdrnp9e3aqf6av3hmdib135j.apps.googleusercontent.com"
                    .to_owned(),
            builtin_client_secret: Secret::from("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"),
            ai_studio_client_id: None,
            ai_studio_client_secret: None,
            token_user_agent: None,
            timeout: Duration::from_secs(60),
            code_assist_base_url: "https://cloudcode-pa.googleapis.com".to_owned(),
            code_assist_user_agent: "GeminiCLI/0.1.5 (Windows; AMD64)".to_owned(),
            resource_manager_url: "https://cloudresourcemanager.googleapis.com/v1/projects"
                .to_owned(),
            drive_about_url: "https://www.googleapis.com/drive/v3/about?fields=storageQuota"
                .to_owned(),
            drive_tier_ttl: Duration::from_secs(24 * 3600),
            discovery: DiscoveryTiming::default(),
            login: super::GeminiLoginConfig::default(),
        }
    }
}

impl GeminiConfig {
    /// Points every URL at `base` with the real paths: `{base}/token`,
    /// `{base}` for Code Assist, `{base}/v1/projects`,
    /// `{base}/drive/v3/about?fields=storageQuota`, and the login's
    /// authorize and userinfo URLs.
    pub fn with_base_url(mut self, base: &str) -> Self {
        self.token_url = join(base, "/token");
        self.code_assist_base_url = base.trim_end_matches('/').to_owned();
        self.resource_manager_url = join(base, "/v1/projects");
        self.drive_about_url = join(base, "/drive/v3/about?fields=storageQuota");
        self.login = self.login.with_base_url(base);
        self
    }

    /// Whether the operator's AI Studio client is set (both values) and
    /// differs from the built-in one.
    pub fn ai_studio_oauth_enabled(&self) -> bool {
        matches!(
            (&self.ai_studio_client_id, &self.ai_studio_client_secret),
            (Some(id), Some(secret)) if !id.trim().is_empty()
                && !secret.is_blank()
                && id.trim() != self.builtin_client_id
        )
    }

    /// Both or neither of the AI Studio client id and secret must be set.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for `gemini.ai_studio_client_*`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        use crate::validate;
        validate::url("gemini.token_url", &self.token_url)?;
        validate::url("gemini.login.authorize_url", &self.login.authorize_url)?;
        validate::url("gemini.login.userinfo_url", &self.login.userinfo_url)?;
        validate::url("gemini.code_assist_base_url", &self.code_assist_base_url)?;
        validate::url("gemini.resource_manager_url", &self.resource_manager_url)?;
        validate::url("gemini.drive_about_url", &self.drive_about_url)?;
        validate::duration("gemini.timeout", self.timeout, validate::TOKEN_TIMEOUT)?;
        validate::header(
            "gemini.code_assist_user_agent",
            &self.code_assist_user_agent,
        )?;
        validate::header(
            "gemini.token_user_agent",
            self.token_user_agent.as_deref().unwrap_or(""),
        )?;
        self.discovery.validate("gemini.discovery")?;
        let id = self
            .ai_studio_client_id
            .as_deref()
            .is_some_and(|v| !v.trim().is_empty());
        let secret = self
            .ai_studio_client_secret
            .as_ref()
            .is_some_and(|v| !v.is_blank());
        if id != secret {
            return Err(ConfigError::Invalid {
                field: "gemini.ai_studio_client_id",
                reason: "set both the AI Studio client id and secret, or neither".to_owned(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_secrets_and_validate_wants_both_or_neither() {
        let mut config = GeminiConfig {
            ai_studio_client_id: Some("custom.apps.googleusercontent.com".into()),
            ai_studio_client_secret: Some(Secret::from("GOCSPX-custom-secret-value")),
            ..GeminiConfig::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("GOCSPX"), "{shown}");
        assert!(config.validate().is_ok());
        assert!(config.ai_studio_oauth_enabled());
        config.ai_studio_client_secret = None;
        assert!(config.validate().is_err());
        assert!(!config.ai_studio_oauth_enabled());
        assert!(GeminiConfig::default().validate().is_ok());
    }

    #[test]
    fn deserializes_from_partial_toml_like_json() {
        let config: GeminiConfig = serde_json::from_str(
            r#"{"token_url":"http://127.0.0.1:1/token","discovery":{"onboard_polls":2}}"#,
        )
        .unwrap();
        assert_eq!(config.token_url, "http://127.0.0.1:1/token");
        assert_eq!(config.discovery.onboard_polls, 2);
        assert_eq!(
            config.builtin_client_id,
            GeminiConfig::default().builtin_client_id
        );
    }
}
