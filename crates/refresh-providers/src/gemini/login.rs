//! [`GeminiLogin`]: Google's authorization-code login for Gemini
//! (REFERENCE.md §13.4): Code Assist, Google One or AI Studio.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use refresh_core::{AccountType, Clock, Credentials, Platform, Secret, SystemClock};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::tier::{self, GCP_ENTERPRISE, GCP_STANDARD};
use super::{GeminiConfig, OAuthType, OAuthTypeError, drive, endpoints, issued, token_request};
use crate::code_assist::{Caller, apply_project, detect_tier, discover_project};
use crate::http::HttpClients;
use crate::login::{
    LoginError, LoginFlow, LoginOptions, LoginOutcome, LoginSession, Redirect, SessionSpec,
    account_name, code_from_paste, exchange, log_warnings, oauth_only, post_login_deadline,
    userinfo_email,
};

/// AI Studio tiers an operator may choose (default `aistudio_free`).
const AI_STUDIO_TIERS: [&str; 2] = ["aistudio_free", "aistudio_paid"];

/// Gemini's login settings (`gemini.login`); the defaults are the real
/// ones. The token URL, clients, Code Assist, Resource Manager and Drive
/// URLs and the discovery timing are the refresh settings'.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GeminiLoginConfig {
    /// Google's authorize endpoint.
    pub authorize_url: String,
    /// The manual redirect of the built-in client: Google's page that
    /// shows the code (without the state).
    pub redirect_uri: String,
    /// The manual redirect of an operator's AI Studio client (it must be
    /// registered on that client; the user pastes the address-bar URL).
    pub ai_studio_redirect_uri: String,
    /// The loopback redirect (a Google desktop client accepts any port).
    pub loopback_redirect_uri: String,
    /// Scope of code_assist and google_one logins.
    pub scope: String,
    /// Scope of ai_studio logins.
    pub ai_studio_scope: String,
    /// Google's userinfo endpoint (the account's email).
    pub userinfo_url: String,
    /// Budget of every post-login call together (userinfo, project and
    /// tier discovery, Drive).
    #[serde(with = "crate::config::duration_secs")]
    pub post_login_timeout: Duration,
}

impl Default for GeminiLoginConfig {
    fn default() -> Self {
        Self {
            authorize_url: "https://accounts.google.com/o/oauth2/v2/auth".to_owned(),
            redirect_uri: "https://codeassist.google.com/authcode".to_owned(),
            ai_studio_redirect_uri: "http://localhost:1455/auth/callback".to_owned(),
            loopback_redirect_uri: "http://localhost:8085/oauth2callback".to_owned(),
            scope: "https://www.googleapis.com/auth/cloud-platform \
                    https://www.googleapis.com/auth/userinfo.email \
                    https://www.googleapis.com/auth/userinfo.profile"
                .to_owned(),
            ai_studio_scope: "https://www.googleapis.com/auth/cloud-platform \
                              https://www.googleapis.com/auth/generative-language.retriever"
                .to_owned(),
            userinfo_url: "https://www.googleapis.com/oauth2/v2/userinfo".to_owned(),
            post_login_timeout: Duration::from_secs(90),
        }
    }
}

impl GeminiLoginConfig {
    /// Points the authorize (`{base}/o/oauth2/v2/auth`) and userinfo
    /// (`{base}/oauth2/v2/userinfo`) URLs at `base`.
    pub fn with_base_url(mut self, base: &str) -> Self {
        self.authorize_url = crate::config::join(base, "/o/oauth2/v2/auth");
        self.userinfo_url = crate::config::join(base, "/oauth2/v2/userinfo");
        self
    }
}

impl FromStr for OAuthType {
    type Err = OAuthTypeError;

    /// `code_assist`, `google_one` or `ai_studio` (trimmed, any case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "code_assist" => Ok(Self::CodeAssist),
            "google_one" => Ok(Self::GoogleOne),
            "ai_studio" => Ok(Self::AiStudio),
            other => Err(OAuthTypeError::Unknown(other.chars().take(32).collect())),
        }
    }
}

/// Gemini's login.
#[derive(Debug)]
pub struct GeminiLogin {
    config: GeminiConfig,
    http: HttpClients,
    clock: Arc<dyn Clock>,
}

impl GeminiLogin {
    /// A login flow with `config` over `http`, on the system clock.
    pub fn new(config: GeminiConfig, http: HttpClients) -> Self {
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

    /// The OAuth client of `oauth_type`: the built-in one, or the
    /// operator's for ai_studio (required, §13.4).
    fn client(&self, oauth_type: OAuthType) -> Result<(&str, &Secret), LoginError> {
        if oauth_type != OAuthType::AiStudio {
            return Ok((
                &self.config.builtin_client_id,
                &self.config.builtin_client_secret,
            ));
        }
        match (
            &self.config.ai_studio_client_id,
            &self.config.ai_studio_client_secret,
        ) {
            (Some(id), Some(secret)) if self.config.ai_studio_oauth_enabled() => {
                Ok((id.trim(), secret))
            }
            _ => Err(LoginError::Configuration {
                reason: "AI Studio OAuth requires a custom OAuth client \
                         (gemini.ai_studio_client_id and _secret)"
                    .to_owned(),
            }),
        }
    }

    /// The secret of the session's client (the configuration may have
    /// changed since it began).
    fn secret_of(&self, client_id: &str) -> Result<&Secret, LoginError> {
        if client_id == self.config.builtin_client_id {
            return Ok(&self.config.builtin_client_secret);
        }
        match (
            &self.config.ai_studio_client_id,
            &self.config.ai_studio_client_secret,
        ) {
            (Some(id), Some(secret)) if id.trim() == client_id => Ok(secret),
            _ => Err(LoginError::Configuration {
                reason: "the login's OAuth client is no longer configured".to_owned(),
            }),
        }
    }

    /// Code Assist: the given project's tier, or the project and tier
    /// discovered (§7.1). A project not found yet leaves the discovery
    /// pending (the refresh retries it) rather than failing the login.
    async fn code_assist(
        &self,
        caller: &Caller<'_>,
        options: &LoginOptions,
        credentials: &mut Credentials,
        warnings: &mut Vec<String>,
    ) {
        let given = non_blank(options.project_id.as_deref());
        let endpoints = endpoints(&self.config);
        let (project, detected) = match &given {
            Some(project) => match detect_tier(caller, &endpoints).await {
                Ok(tier) => (Some(project.clone()), Some(tier)),
                Err(reason) => {
                    warnings.push(format!("tier not detected: {reason}"));
                    (Some(project.clone()), None)
                }
            },
            None => match discover_project(caller, &endpoints, &self.config.discovery).await {
                Ok(found) => (Some(found.project_id), Some(found.tier)),
                Err(reason) => {
                    warnings.push(format!(
                        "Code Assist project not found ({reason}); the refresh keeps looking"
                    ));
                    (None, None)
                }
            },
        };
        apply_project(credentials, &Credentials::new(), project);
        let chosen = [detected.as_deref(), options.tier_id.as_deref()]
            .into_iter()
            .flatten()
            .map(tier::canonical)
            .find(|t| t == GCP_STANDARD || t == GCP_ENTERPRISE)
            .unwrap_or_else(|| GCP_STANDARD.to_owned());
        credentials.insert("tier_id", chosen);
    }

    /// Google One: a project is required (§13.4); the tier comes from the
    /// Drive quota, else the chosen one, else `google_one_free`.
    async fn google_one(
        &self,
        caller: &Caller<'_>,
        options: &LoginOptions,
        credentials: &mut Credentials,
        warnings: &mut Vec<String>,
    ) -> Result<(), LoginError> {
        let project = match non_blank(options.project_id.as_deref()) {
            Some(project) => project,
            None => {
                discover_project(caller, &endpoints(&self.config), &self.config.discovery)
                    .await
                    .map_err(|reason| LoginError::Discovery {
                        reason: format!("Google One needs a Code Assist project: {reason}"),
                    })?
                    .project_id
            }
        };
        credentials.insert("project_id", project);
        let chosen = options.tier_id.as_deref().unwrap_or_default();
        let url = &self.config.drive_about_url;
        let tier = drive::read_tier(caller, url, credentials, || self.clock.now(), chosen)
            .await
            .unwrap_or_else(|e| {
                // The built-in client usually lacks the Drive scope (403).
                warnings.push(format!("Drive tier not read ({})", e.describe()));
                drive::fallback(chosen)
            });
        credentials.insert("tier_id", tier);
        Ok(())
    }
}

#[async_trait]
impl LoginFlow for GeminiLogin {
    fn platform(&self) -> Platform {
        Platform::Gemini
    }

    fn begin_login(&self, options: LoginOptions) -> Result<LoginSession, LoginError> {
        oauth_only(&options)?;
        let oauth_type = oauth_type_of(&options)?;
        check_tier(oauth_type, options.tier_id.as_deref())?;
        if options
            .project_id
            .as_deref()
            .is_some_and(|p| p.trim().is_empty() || p.len() > 128)
        {
            return Err(LoginError::InvalidOption {
                option: "project_id",
                reason: "blank or longer than 128 characters".to_owned(),
            });
        }
        let (client_id, _) = self.client(oauth_type)?;
        let login = &self.config.login;
        let (redirect_uri, state_required) = match (options.redirect, oauth_type) {
            (Redirect::Loopback, _) => (login.loopback_redirect_uri.as_str(), true),
            (Redirect::Manual, OAuthType::AiStudio) => {
                (login.ai_studio_redirect_uri.as_str(), true)
            }
            // Google's code page shows the code without the state.
            (Redirect::Manual, _) => (login.redirect_uri.as_str(), false),
        };
        let scope = match oauth_type {
            OAuthType::AiStudio => login.ai_studio_scope.as_str(),
            _ => login.scope.as_str(),
        };
        LoginSession::new(
            SessionSpec {
                platform: Platform::Gemini,
                authorize_url: &login.authorize_url,
                redirect_uri,
                client_id,
                scope,
                account_type: AccountType::OAuth,
                // sub2api: 32 bytes (43 characters).
                verifier_bytes: 32,
                state_required,
            },
            LoginOptions {
                oauth_type: Some(oauth_type.as_str().to_owned()),
                ..options
            },
            self.clock.now(),
            |c| {
                vec![
                    ("response_type", "code".to_owned()),
                    ("client_id", client_id.to_owned()),
                    ("redirect_uri", redirect_uri.to_owned()),
                    ("scope", scope.to_owned()),
                    ("state", c.state.to_owned()),
                    ("code_challenge", c.code_challenge.to_owned()),
                    ("code_challenge_method", "S256".to_owned()),
                    ("access_type", "offline".to_owned()),
                    ("prompt", "consent".to_owned()),
                    ("include_granted_scopes", "true".to_owned()),
                ]
            },
        )
    }

    async fn complete_login(
        &self,
        session: &LoginSession,
        pasted: &str,
    ) -> Result<LoginOutcome, LoginError> {
        let code = code_from_paste(session, &Platform::Gemini, pasted, self.clock.now())?;
        let options = session.options();
        let oauth_type = oauth_type_of(options)?;
        let client_secret = self.secret_of(session.client_id())?;
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "authorization_code")
            .append_pair("client_id", session.client_id())
            .append_pair("client_secret", client_secret.expose())
            .append_pair("code", code.expose())
            .append_pair("code_verifier", session.code_verifier().expose())
            .append_pair("redirect_uri", session.redirect_uri())
            .finish();
        let request = token_request(&self.config, form, options.proxy.as_ref());
        let exchanged = exchange(&self.http, request, session)
            .await?
            .with_refresh_token()?;
        let mut credentials = issued(&exchanged.grant, self.clock.now(), oauth_type);
        let caller = Caller {
            http: &self.http,
            proxy: options.proxy.as_ref(),
            access_token: &exchanged.access_token,
            user_agent: Some(self.config.code_assist_user_agent.as_str()),
            call_timeout: self.config.discovery.call_timeout,
            deadline: post_login_deadline(self.config.login.post_login_timeout),
        };
        let mut warnings = Vec::new();
        let mut extra = Map::new();
        // AI Studio's scope has no userinfo.email.
        if oauth_type != OAuthType::AiStudio
            && let Some(email) =
                userinfo_email(&caller, &self.config.login.userinfo_url, &mut warnings).await
        {
            extra.insert("email".to_owned(), Value::String(email));
        }
        match oauth_type {
            OAuthType::CodeAssist => {
                self.code_assist(&caller, options, &mut credentials, &mut warnings)
                    .await;
            }
            OAuthType::GoogleOne => {
                self.google_one(&caller, options, &mut credentials, &mut warnings)
                    .await?;
            }
            OAuthType::AiStudio => {
                if let Some(project) = non_blank(options.project_id.as_deref()) {
                    credentials.insert("project_id", project);
                }
                let tier = options
                    .tier_id
                    .as_deref()
                    .map(|t| t.trim().to_ascii_lowercase())
                    .unwrap_or_else(|| AI_STUDIO_TIERS[0].to_owned());
                credentials.insert("tier_id", tier);
            }
        }
        tier::drop_unstorable(&mut credentials);
        log_warnings(session, &warnings);
        Ok(LoginOutcome {
            name: account_name(session, &extra, "email"),
            platform: Platform::Gemini,
            account_type: AccountType::OAuth,
            credentials,
            extra,
            proxy: options.proxy.clone(),
            warnings,
        })
    }
}

fn non_blank(value: Option<&str>) -> Option<String> {
    value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// The session's OAuth type (default `code_assist`).
fn oauth_type_of(options: &LoginOptions) -> Result<OAuthType, LoginError> {
    options
        .oauth_type
        .as_deref()
        .map_or(Ok(OAuthType::CodeAssist), OAuthType::from_str)
        .map_err(|e| LoginError::InvalidOption {
            option: "oauth_type",
            reason: e.to_string(),
        })
}

/// A chosen tier must belong to the type: `gcp_standard`/`gcp_enterprise`
/// (code_assist), the Google One family (google_one), `aistudio_free`/
/// `aistudio_paid` (ai_studio).
fn check_tier(oauth_type: OAuthType, tier_id: Option<&str>) -> Result<(), LoginError> {
    let Some(raw) = tier_id else {
        return Ok(());
    };
    let canonical = tier::canonical(raw);
    let fits = match oauth_type {
        OAuthType::CodeAssist => canonical == GCP_STANDARD || canonical == GCP_ENTERPRISE,
        OAuthType::GoogleOne => tier::google_one_family(raw).is_some(),
        OAuthType::AiStudio => AI_STUDIO_TIERS.contains(&canonical.as_str()),
    };
    if fits {
        Ok(())
    } else {
        Err(LoginError::InvalidOption {
            option: "tier_id",
            reason: format!("not a {} tier", oauth_type.as_str()),
        })
    }
}
