//! [`AntigravityLogin`]: Google's authorization-code login on the
//! Antigravity client (REFERENCE.md §13.5).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use refresh_core::{AccountType, Clock, Credentials, Platform, SystemClock};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{AntigravityConfig, issued, load_project, token_request};
use crate::code_assist::{Caller, apply_project};
use crate::http::HttpClients;
use crate::login::{
    LoginError, LoginFlow, LoginOptions, LoginOutcome, LoginSession, Redirect, SessionSpec,
    account_name, code_from_paste, exchange, log_warnings, oauth_only, post_login_deadline,
    refuse_gemini_options, userinfo_email,
};

/// Antigravity's login settings (`antigravity.login`); the defaults are
/// the real ones. The token URL, client, Code Assist base URLs, version
/// and discovery timing are the refresh settings'.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AntigravityLoginConfig {
    /// Google's authorize endpoint.
    pub authorize_url: String,
    /// The manual redirect (sub2api): a localhost URL nothing listens on;
    /// the user pastes the address-bar URL.
    pub redirect_uri: String,
    /// The loopback redirect (CPA's fixed port; a Google desktop client
    /// accepts any loopback port and path).
    pub loopback_redirect_uri: String,
    /// Scope (all peers agree).
    pub scope: String,
    /// Google's userinfo endpoint (the account's email).
    pub userinfo_url: String,
    /// Budget of every post-login call together (userinfo, project load).
    #[serde(with = "crate::config::duration_secs")]
    pub post_login_timeout: Duration,
}

impl Default for AntigravityLoginConfig {
    fn default() -> Self {
        Self {
            authorize_url: "https://accounts.google.com/o/oauth2/v2/auth".to_owned(),
            redirect_uri: "http://localhost:8085/callback".to_owned(),
            loopback_redirect_uri: "http://localhost:51121/oauth-callback".to_owned(),
            scope: "https://www.googleapis.com/auth/cloud-platform \
                    https://www.googleapis.com/auth/userinfo.email \
                    https://www.googleapis.com/auth/userinfo.profile \
                    https://www.googleapis.com/auth/cclog \
                    https://www.googleapis.com/auth/experimentsandconfigs"
                .to_owned(),
            userinfo_url: "https://www.googleapis.com/oauth2/v2/userinfo".to_owned(),
            post_login_timeout: Duration::from_secs(90),
        }
    }
}

impl AntigravityLoginConfig {
    /// Points the authorize (`{base}/o/oauth2/v2/auth`) and userinfo
    /// (`{base}/oauth2/v2/userinfo`) URLs at `base`.
    pub fn with_base_url(mut self, base: &str) -> Self {
        self.authorize_url = crate::config::join(base, "/o/oauth2/v2/auth");
        self.userinfo_url = crate::config::join(base, "/oauth2/v2/userinfo");
        self
    }
}

/// Antigravity's login (`oauth` accounts).
#[derive(Debug)]
pub struct AntigravityLogin {
    config: AntigravityConfig,
    http: HttpClients,
    clock: Arc<dyn Clock>,
}

impl AntigravityLogin {
    /// A login flow with `config` over `http`, on the system clock.
    pub fn new(config: AntigravityConfig, http: HttpClients) -> Self {
        Self {
            config,
            http,
            clock: Arc::new(SystemClock),
        }
    }

    /// The same flow reading time from `clock` (session expiry).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
}

#[async_trait]
impl LoginFlow for AntigravityLogin {
    fn platform(&self) -> Platform {
        Platform::Antigravity
    }

    fn begin_login(&self, options: LoginOptions) -> Result<LoginSession, LoginError> {
        refuse_gemini_options(&options)?;
        oauth_only(&options)?;
        let login = &self.config.login;
        let redirect_uri = match options.redirect {
            Redirect::Manual => login.redirect_uri.as_str(),
            Redirect::Loopback => login.loopback_redirect_uri.as_str(),
        };
        let client_id = self.config.client_id.as_str();
        LoginSession::new(
            SessionSpec {
                platform: Platform::Antigravity,
                authorize_url: &login.authorize_url,
                redirect_uri,
                client_id,
                scope: &login.scope,
                account_type: AccountType::OAuth,
                // sub2api: 32 bytes (43 characters).
                verifier_bytes: 32,
                // Both redirects are URLs whose query has the state.
                state_required: true,
            },
            options,
            self.clock.now(),
            |c| {
                vec![
                    ("client_id", client_id.to_owned()),
                    ("redirect_uri", redirect_uri.to_owned()),
                    ("response_type", "code".to_owned()),
                    ("scope", login.scope.clone()),
                    ("state", c.state.to_owned()),
                    ("access_type", "offline".to_owned()),
                    ("prompt", "consent".to_owned()),
                    ("include_granted_scopes", "true".to_owned()),
                    ("code_challenge", c.code_challenge.to_owned()),
                    ("code_challenge_method", "S256".to_owned()),
                ]
            },
        )
    }

    async fn complete_login(
        &self,
        session: &LoginSession,
        pasted: &str,
    ) -> Result<LoginOutcome, LoginError> {
        let code = code_from_paste(session, &Platform::Antigravity, pasted, self.clock.now())?;
        if session.client_id() != self.config.client_id {
            return Err(LoginError::Configuration {
                reason: "the login's OAuth client is no longer configured".to_owned(),
            });
        }
        let options = session.options();
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", session.client_id())
            .append_pair("client_secret", self.config.client_secret.expose())
            .append_pair("code", code.expose())
            .append_pair("redirect_uri", session.redirect_uri())
            .append_pair("grant_type", "authorization_code")
            .append_pair("code_verifier", session.code_verifier().expose())
            .finish();
        let request = token_request(&self.config, form, options.proxy.as_ref());
        let exchanged = exchange(&self.http, request, session)
            .await?
            .with_refresh_token()?;
        let mut credentials = issued(&exchanged.grant, self.clock.now());
        let user_agent = self.config.code_assist_user_agent();
        let caller = Caller {
            http: &self.http,
            proxy: options.proxy.as_ref(),
            access_token: &exchanged.access_token,
            user_agent: Some(user_agent.as_str()),
            call_timeout: self.config.discovery.call_timeout,
            deadline: post_login_deadline(self.config.login.post_login_timeout),
        };
        let mut warnings = Vec::new();
        let mut extra = Map::new();
        if let Some(email) =
            userinfo_email(&caller, &self.config.login.userinfo_url, &mut warnings).await
        {
            credentials.insert("email", email.as_str());
            extra.insert("email".to_owned(), Value::String(email));
        }
        let project = match load_project(&self.config, &caller).await {
            Ok(project) => Some(project),
            Err(reason) => {
                // sub2api creates the account anyway; every refresh loads it.
                warnings.push(format!(
                    "project not loaded ({reason}); the refresh keeps looking"
                ));
                None
            }
        };
        apply_project(&mut credentials, &Credentials::new(), project);
        log_warnings(session, &warnings);
        Ok(LoginOutcome {
            name: account_name(session, &extra, "email"),
            platform: Platform::Antigravity,
            account_type: AccountType::OAuth,
            credentials,
            extra,
            proxy: options.proxy.clone(),
            warnings,
        })
    }
}
