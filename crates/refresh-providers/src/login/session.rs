//! [`LoginOptions`], [`Redirect`] and [`LoginSession`].

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use refresh_core::{AccountType, Platform, ProxyUrl, Secret};
use serde::{Deserialize, Serialize};

use super::LoginError;
use super::pkce::{random_token, s256_challenge, session_id};

/// The shortest and longest session lifetimes, and the default.
pub const SESSION_TTL_MIN: Duration = Duration::from_secs(10 * 60);
/// The longest session lifetime.
pub const SESSION_TTL_MAX: Duration = Duration::from_secs(30 * 60);
/// The session lifetime when [`LoginOptions::session_ttl`] is not set.
pub const SESSION_TTL_DEFAULT: Duration = Duration::from_secs(15 * 60);

/// Which redirect URI a login uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Redirect {
    /// The provider's manual redirect: a page that shows the code (Claude,
    /// Gemini) or a localhost URL nothing listens on, whose address-bar
    /// URL the user pastes (OpenAI, Antigravity).
    #[default]
    Manual,
    /// The loopback redirect a local listener can receive (the CLI's
    /// `--listen`); its port is in [`LoginSession::redirect_uri`].
    Loopback,
}

/// What the operator chose when starting a login. Options a provider does
/// not take are refused with [`LoginError::InvalidOption`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoginOptions {
    /// The account name; the account's email (or `<platform>-<id>`) when
    /// absent.
    pub name: Option<String>,
    /// The proxy of the code exchange and the post-login calls, stored
    /// with the account.
    pub proxy: Option<ProxyUrl>,
    /// Manual (default) or loopback redirect.
    pub redirect: Redirect,
    /// Claude only: `oauth` (default) or `setup-token` (scope
    /// `user:inference`).
    pub account_type: Option<AccountType>,
    /// Gemini only: `code_assist` (default), `google_one` or `ai_studio`.
    pub oauth_type: Option<String>,
    /// Gemini only: a known Code Assist project (skips discovery; its tier
    /// is still read).
    pub project_id: Option<String>,
    /// Gemini only: the tier to store when none is detected.
    pub tier_id: Option<String>,
    /// How long the session may be completed: clamped to 10–30 min;
    /// 15 min when absent.
    #[serde(with = "optional_secs")]
    pub session_ttl: Option<Duration>,
}

/// A login in progress: what [`begin_login`](super::LoginFlow::begin_login)
/// created and [`complete_login`](super::LoginFlow::complete_login)
/// needs. `Serialize`/`Deserialize`, so it can be stored (sealed: it holds
/// the PKCE verifier and the state) and completed by another process;
/// `Debug` shows neither, nor the authorize URL (it carries the state).
///
/// It expires by itself ([`expires_at`](Self::expires_at)); making it
/// single-use is the store's job (take it out, then complete).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct LoginSession {
    session_id: String,
    platform: Platform,
    authorize_url: String,
    redirect_uri: String,
    client_id: String,
    scope: String,
    state: Secret,
    code_verifier: Secret,
    /// Whether the callback of this redirect always carries the state.
    state_required: bool,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    account_type: AccountType,
    options: LoginOptions,
    /// Set by [`admitted_by_store`](Self::admitted_by_store): a store
    /// judged the expiry by its own clock. Never stored.
    #[serde(skip)]
    expiry_judged: bool,
}

/// The provider-specific parts of a new session.
pub(crate) struct SessionSpec<'a> {
    pub(crate) platform: Platform,
    pub(crate) authorize_url: &'a str,
    pub(crate) redirect_uri: &'a str,
    pub(crate) client_id: &'a str,
    pub(crate) scope: &'a str,
    pub(crate) account_type: AccountType,
    /// Random bytes of the verifier (32 → 43 characters, 64 → 86).
    pub(crate) verifier_bytes: usize,
    /// Whether the redirect's callback always carries the state.
    pub(crate) state_required: bool,
}

/// The state and the S256 challenge, to put in the authorize URL.
pub(crate) struct Challenge<'a> {
    pub(crate) state: &'a str,
    pub(crate) code_challenge: &'a str,
}

impl LoginSession {
    /// A new session at `now`: fresh state, verifier and id; the authorize
    /// URL is `spec.authorize_url` with the query `params` builds, in
    /// that order (spaces as `+`).
    pub(crate) fn new<'p>(
        spec: SessionSpec<'_>,
        options: LoginOptions,
        now: DateTime<Utc>,
        params: impl FnOnce(&Challenge<'_>) -> Vec<(&'p str, String)>,
    ) -> Result<Self, LoginError> {
        let state = random_token(32)?;
        let code_verifier = random_token(spec.verifier_bytes)?;
        let code_challenge = s256_challenge(code_verifier.expose());
        let pairs = params(&Challenge {
            state: state.expose(),
            code_challenge: &code_challenge,
        });
        let mut url =
            url::Url::parse(spec.authorize_url).map_err(|e| LoginError::Configuration {
                reason: format!("the authorize URL does not parse ({e})"),
            })?;
        url.query_pairs_mut().extend_pairs(pairs);
        let ttl = options
            .session_ttl
            .unwrap_or(SESSION_TTL_DEFAULT)
            .clamp(SESSION_TTL_MIN, SESSION_TTL_MAX);
        Ok(Self {
            session_id: session_id()?,
            platform: spec.platform,
            authorize_url: url.into(),
            redirect_uri: spec.redirect_uri.to_owned(),
            client_id: spec.client_id.to_owned(),
            scope: spec.scope.to_owned(),
            state,
            code_verifier,
            state_required: spec.state_required,
            created_at: now,
            expires_at: now + ttl,
            account_type: spec.account_type,
            options,
            expiry_judged: false,
        })
    }

    /// The id to complete it by (a random UUID).
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The platform it logs in to.
    pub fn platform(&self) -> &Platform {
        &self.platform
    }

    /// The URL to open in a browser. It carries the state and the S256
    /// challenge, never the verifier.
    pub fn authorize_url(&self) -> &str {
        &self.authorize_url
    }

    /// The redirect URI (a loopback listener binds its port).
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// The OAuth client id the login uses.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The scope requested.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// The account type the login creates.
    pub fn account_type(&self) -> AccountType {
        self.account_type
    }

    /// The options it was begun with.
    pub fn options(&self) -> &LoginOptions {
        &self.options
    }

    /// When it was begun.
    pub fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }

    /// After this instant it can no longer be completed.
    pub fn expires_at(&self) -> DateTime<Utc> {
        self.expires_at
    }

    /// Whether it can still be completed at `now`.
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        now >= self.expires_at
    }

    /// This session, as a store that keeps sessions until their expiry by
    /// its own clock (a database's) has just handed it over live:
    /// [`complete_login`](super::LoginFlow::complete_login) then does not
    /// judge the expiry again by this process's clock, so one clock decides
    /// (a process whose clock runs ahead would refuse a session the store
    /// admitted, and the single-use take has already consumed it).
    #[must_use]
    pub fn admitted_by_store(mut self) -> Self {
        self.expiry_judged = true;
        self
    }

    /// Whether completing it checks its expiry against the flow's clock
    /// (false once a store admitted it).
    pub(crate) fn expiry_unjudged(&self) -> bool {
        !self.expiry_judged
    }

    /// Whether `query`, the query string of a request to the redirect URI,
    /// carries this session's `state` (once; compared in constant time).
    /// A loopback listener answers only such a callback: any page the
    /// browser visits can request the redirect URI with a state of its own.
    pub fn is_own_callback(&self, query: &str) -> bool {
        super::paste::callback_state(query)
            .is_some_and(|state| super::pkce::constant_time_eq(state.expose(), self.state.expose()))
    }

    pub(crate) fn state(&self) -> &Secret {
        &self.state
    }

    pub(crate) fn code_verifier(&self) -> &Secret {
        &self.code_verifier
    }

    pub(crate) fn state_required(&self) -> bool {
        self.state_required
    }
}

impl fmt::Debug for LoginSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginSession")
            .field("session_id", &self.session_id)
            .field("platform", &self.platform)
            .field("authorize_url", &"[redacted]")
            .field("redirect_uri", &self.redirect_uri)
            .field("client_id", &self.client_id)
            .field("scope", &self.scope)
            .field("state", &self.state)
            .field("code_verifier", &self.code_verifier)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("account_type", &self.account_type)
            .field("options", &self.options)
            .finish()
    }
}

/// `Option<Duration>` as seconds.
mod optional_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Option::<f64>::deserialize(d)?
            .map(|secs| Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom))
            .transpose()
    }
}
