//! [`ClaudeLogin`]: Claude's authorization-code login (REFERENCE.md §13.2).

use std::sync::Arc;

use async_trait::async_trait;
use refresh_core::{AccountType, Clock, ExpiryRule, GrantFields, Platform, SystemClock};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::ClaudeConfig;
use crate::http::{HttpClients, Outgoing, RequestBody};
use crate::login::{
    LoginError, LoginFlow, LoginOptions, LoginOutcome, LoginSession, Redirect, SessionSpec,
    account_name, code_from_paste, exchange, refuse_gemini_options, text_at,
};

/// Claude's login settings (`claude.login`); the defaults are the real
/// ones. The token URL, client id, user agent, `Accept` and timeout are the
/// refresh settings'.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClaudeLoginConfig {
    /// Authorize endpoint: `https://claude.com/cai/oauth/authorize`
    /// (sub2api since 2026-08; CPA and CRS use
    /// `https://claude.ai/oauth/authorize`, to which it redirects).
    pub authorize_url: String,
    /// The manual redirect: Anthropic's page showing `code#state`.
    pub redirect_uri: String,
    /// The loopback redirect (CPA's fixed port).
    pub loopback_redirect_uri: String,
    /// Scope of an `oauth` login (sub2api, CRS).
    pub scope: String,
    /// Scope of a `setup-token` login.
    pub setup_token_scope: String,
    /// `expires_in` sent with a setup-token exchange; `None` (the default)
    /// sends none: sub2api dropped it after 400s (#3424), a later
    /// measurement says it is honoured for `user:inference`.
    pub setup_token_expires_in: Option<u64>,
}

impl Default for ClaudeLoginConfig {
    fn default() -> Self {
        Self {
            authorize_url: "https://claude.com/cai/oauth/authorize".to_owned(),
            redirect_uri: "https://platform.claude.com/oauth/code/callback".to_owned(),
            loopback_redirect_uri: "http://localhost:54545/callback".to_owned(),
            scope: "org:create_api_key user:profile user:inference user:sessions:claude_code \
                    user:mcp_servers user:file_upload"
                .to_owned(),
            setup_token_scope: "user:inference".to_owned(),
            setup_token_expires_in: None,
        }
    }
}

impl ClaudeLoginConfig {
    /// Points the authorize URL at `base` (`{base}/cai/oauth/authorize`);
    /// the redirect URIs stay (the emulator redirects to them).
    pub fn with_base_url(mut self, base: &str) -> Self {
        self.authorize_url = crate::config::join(base, "/cai/oauth/authorize");
        self
    }
}

/// The exchange body, in the order Claude Code sends it (CPA).
#[derive(Serialize)]
struct ExchangeBody<'a> {
    grant_type: &'static str,
    code: &'a str,
    redirect_uri: &'a str,
    client_id: &'a str,
    code_verifier: &'a str,
    state: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_in: Option<u64>,
}

/// Claude's login: `oauth` (default) or `setup-token` accounts.
#[derive(Debug)]
pub struct ClaudeLogin {
    config: ClaudeConfig,
    http: HttpClients,
    clock: Arc<dyn Clock>,
}

impl ClaudeLogin {
    /// A login flow with `config` over `http`, on the system clock.
    pub fn new(config: ClaudeConfig, http: HttpClients) -> Self {
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
impl LoginFlow for ClaudeLogin {
    fn platform(&self) -> Platform {
        Platform::Anthropic
    }

    fn begin_login(&self, options: LoginOptions) -> Result<LoginSession, LoginError> {
        refuse_gemini_options(&options)?;
        let login = &self.config.login;
        let (account_type, scope) = match options.account_type.unwrap_or(AccountType::OAuth) {
            AccountType::OAuth => (AccountType::OAuth, login.scope.as_str()),
            AccountType::SetupToken => (AccountType::SetupToken, login.setup_token_scope.as_str()),
            other => {
                return Err(LoginError::InvalidOption {
                    option: "account_type",
                    reason: format!(
                        "Claude logins create oauth or setup-token accounts, not {}",
                        other.as_str()
                    ),
                });
            }
        };
        let redirect_uri = match options.redirect {
            Redirect::Manual => login.redirect_uri.as_str(),
            Redirect::Loopback => login.loopback_redirect_uri.as_str(),
        };
        let client_id = self.config.client_id.as_str();
        LoginSession::new(
            SessionSpec {
                platform: Platform::Anthropic,
                authorize_url: &login.authorize_url,
                redirect_uri,
                client_id,
                scope,
                account_type,
                // sub2api and CRS: 32 bytes (43 characters), "match official client".
                verifier_bytes: 32,
                // The manual page shows `code#state`; the loopback URL has `state`.
                state_required: true,
            },
            options.clone(),
            self.clock.now(),
            |c| {
                vec![
                    ("code", "true".to_owned()),
                    ("client_id", client_id.to_owned()),
                    ("response_type", "code".to_owned()),
                    ("redirect_uri", redirect_uri.to_owned()),
                    ("scope", scope.to_owned()),
                    ("code_challenge", c.code_challenge.to_owned()),
                    ("code_challenge_method", "S256".to_owned()),
                    ("state", c.state.to_owned()),
                ]
            },
        )
    }

    async fn complete_login(
        &self,
        session: &LoginSession,
        pasted: &str,
    ) -> Result<LoginOutcome, LoginError> {
        let code = code_from_paste(session, &Platform::Anthropic, pasted, self.clock.now())?;
        let setup = session.account_type() == AccountType::SetupToken;
        let body = serde_json::to_vec(&ExchangeBody {
            grant_type: "authorization_code",
            code: code.expose(),
            redirect_uri: session.redirect_uri(),
            client_id: session.client_id(),
            code_verifier: session.code_verifier().expose(),
            state: session.state().expose(),
            expires_in: self.config.login.setup_token_expires_in.filter(|_| setup),
        })
        .map_err(|_| LoginError::Configuration {
            reason: "the exchange body cannot be encoded".to_owned(),
        })?;
        let request = Outgoing::post(
            &self.config.token_url,
            RequestBody::Json(body),
            self.config.timeout,
        )
        .header("accept", self.config.accept.as_str())
        .header("user-agent", self.config.user_agent.as_str())
        .via(session.options().proxy.as_ref());
        let exchanged = exchange(&self.http, request, session).await?;
        // A setup token without a refresh token is served statically.
        if !setup && exchanged.grant.refresh_token.is_none() {
            return Err(LoginError::NoRefreshToken);
        }
        let credentials = exchanged.grant.to_credentials(
            self.clock.now(),
            ExpiryRule::EXACT,
            GrantFields {
                write_expires_in: true,
                write_type_and_scope: true,
            },
        );
        // §2.2: the organization and account live in `extra`.
        let mut extra = Map::new();
        for (key, path) in [
            ("org_uuid", ["organization", "uuid"]),
            ("org_name", ["organization", "name"]),
            ("account_uuid", ["account", "uuid"]),
            ("email_address", ["account", "email_address"]),
        ] {
            if let Some(value) = text_at(&exchanged.body, &path) {
                extra.insert(key.to_owned(), Value::String(value));
            }
        }
        let email = extra
            .get("email_address")
            .and_then(Value::as_str)
            .map(str::to_owned);
        Ok(LoginOutcome {
            name: account_name(session, email.as_deref()),
            platform: Platform::Anthropic,
            account_type: session.account_type(),
            credentials,
            extra,
            proxy: session.options().proxy.clone(),
            warnings: Vec::new(),
        })
    }
}
