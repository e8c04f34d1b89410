//! [`OpenAiLogin`]: OpenAI's (Codex CLI client) authorization-code login
//! (REFERENCE.md §13.3).

use std::sync::Arc;

use async_trait::async_trait;
use refresh_core::{AccountType, Clock, ExpiryRule, GrantFields, Platform, SystemClock};
use serde::Deserialize;
use serde_json::{Map, Value};
use tracing::warn;

use super::{OpenAiConfig, id_token};
use crate::http::{HttpClients, Outgoing, RequestBody};
use crate::login::{
    LoginError, LoginFlow, LoginOptions, LoginOutcome, LoginSession, SessionSpec, account_name,
    code_from_paste, exchange, oauth_only, refuse_gemini_options, text_at,
};

/// OpenAI's login settings (`openai.login`); the defaults are the real
/// ones. The token URL, client id, user agent, `originator` and timeout
/// are the refresh settings'.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenAiLoginConfig {
    /// Authorize endpoint.
    pub authorize_url: String,
    /// The redirect, manual and loopback alike: the Codex CLI's, the only
    /// one its client accepts (1457 is codex-rs's fallback port).
    pub redirect_uri: String,
    /// Scope (sub2api, CRS).
    pub scope: String,
    /// Parameters appended after the standard ones, in order: e.g.
    /// `[["prompt", "login"]]` to force a fresh login when adding several
    /// accounts (CPA), or codex-rs's `originator`. None by default.
    pub extra_authorize_params: Vec<(String, String)>,
}

impl Default for OpenAiLoginConfig {
    fn default() -> Self {
        Self {
            authorize_url: "https://auth.openai.com/oauth/authorize".to_owned(),
            redirect_uri: "http://localhost:1455/auth/callback".to_owned(),
            scope: "openid profile email offline_access".to_owned(),
            extra_authorize_params: Vec::new(),
        }
    }
}

impl OpenAiLoginConfig {
    /// Points the authorize URL at `base` (`{base}/oauth/authorize`).
    pub fn with_base_url(mut self, base: &str) -> Self {
        self.authorize_url = crate::config::join(base, "/oauth/authorize");
        self
    }
}

/// OpenAI's login (`oauth` accounts on the Codex CLI client).
#[derive(Debug)]
pub struct OpenAiLogin {
    config: OpenAiConfig,
    http: HttpClients,
    clock: Arc<dyn Clock>,
}

impl OpenAiLogin {
    /// A login flow with `config` over `http`, on the system clock.
    pub fn new(config: OpenAiConfig, http: HttpClients) -> Self {
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
impl LoginFlow for OpenAiLogin {
    fn platform(&self) -> Platform {
        Platform::OpenAi
    }

    fn begin_login(&self, options: LoginOptions) -> Result<LoginSession, LoginError> {
        refuse_gemini_options(&options)?;
        oauth_only(&options)?;
        let login = &self.config.login;
        let client_id = self.config.client_id.as_str();
        LoginSession::new(
            SessionSpec {
                platform: Platform::OpenAi,
                authorize_url: &login.authorize_url,
                redirect_uri: &login.redirect_uri,
                client_id,
                scope: &login.scope,
                account_type: AccountType::OAuth,
                // codex-rs: 64 bytes (86 characters).
                verifier_bytes: 64,
                state_required: true,
            },
            options,
            self.clock.now(),
            |c| {
                let mut params = vec![
                    ("response_type", "code".to_owned()),
                    ("client_id", client_id.to_owned()),
                    ("redirect_uri", login.redirect_uri.clone()),
                    ("scope", login.scope.clone()),
                    ("state", c.state.to_owned()),
                    ("code_challenge", c.code_challenge.to_owned()),
                    ("code_challenge_method", "S256".to_owned()),
                    ("id_token_add_organizations", "true".to_owned()),
                    ("codex_cli_simplified_flow", "true".to_owned()),
                ];
                params.extend(
                    login
                        .extra_authorize_params
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.clone())),
                );
                params
            },
        )
    }

    async fn complete_login(
        &self,
        session: &LoginSession,
        pasted: &str,
    ) -> Result<LoginOutcome, LoginError> {
        let code = code_from_paste(session, &Platform::OpenAi, pasted, self.clock.now())?;
        // codex-rs's order.
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "authorization_code")
            .append_pair("code", code.expose())
            .append_pair("redirect_uri", session.redirect_uri())
            .append_pair("client_id", session.client_id())
            .append_pair("code_verifier", session.code_verifier().expose())
            .finish();
        let request = Outgoing::post(
            &self.config.token_url,
            RequestBody::Form(form),
            self.config.timeout,
        )
        .header("user-agent", self.config.user_agent.as_str())
        .header_opt("originator", self.config.originator.as_deref())
        .via(session.options().proxy.as_ref());
        let exchanged = exchange(&self.http, request, session).await?;
        if exchanged.grant.refresh_token.is_none() {
            return Err(LoginError::NoRefreshToken);
        }
        let now = self.clock.now();
        let mut credentials =
            exchanged
                .grant
                .to_credentials(now, ExpiryRule::EXACT, GrantFields::default());
        // The grant belongs to this client: refreshes must present it.
        credentials.insert("client_id", session.client_id());
        let mut warnings = Vec::new();
        let mut extra = Map::new();
        match text_at(&exchanged.body, &["id_token"]) {
            None => {
                warnings.push("the token response has no id_token; no identity stored".to_owned())
            }
            Some(token) => {
                match id_token::parse(&token, now) {
                    Ok(claims) => {
                        if let Some(email) = &claims.email {
                            extra.insert("email".to_owned(), Value::String(email.clone()));
                        }
                        for (key, value) in [
                            ("email", claims.email),
                            ("chatgpt_account_id", claims.chatgpt_account_id),
                            ("chatgpt_user_id", claims.chatgpt_user_id),
                            ("organization_id", claims.organization_id),
                            ("plan_type", claims.plan_type),
                        ] {
                            if let Some(value) = value {
                                credentials.insert(key, value);
                            }
                        }
                    }
                    Err(problem) => {
                        warn!(
                            platform = "openai",
                            session_id = session.session_id(),
                            problem = problem.as_str(),
                            "login id_token not usable; claims skipped"
                        );
                        warnings.push(format!(
                            "the id_token is {}; no identity stored",
                            problem.as_str()
                        ));
                    }
                }
                credentials.insert("id_token", token);
            }
        }
        let email = extra
            .get("email")
            .and_then(Value::as_str)
            .map(str::to_owned);
        Ok(LoginOutcome {
            name: account_name(session, email.as_deref()),
            platform: Platform::OpenAi,
            account_type: AccountType::OAuth,
            credentials,
            extra,
            proxy: session.options().proxy.clone(),
            warnings,
        })
    }
}
