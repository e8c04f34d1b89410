//! The steps every provider's completion shares: the checks made before
//! anything is sent, the code exchange, and naming the account.

use std::time::Duration;

use chrono::{DateTime, Utc};
use refresh_core::error::OAuthErrorBody;
use refresh_core::{AccountType, Platform, ProviderError, Secret, TokenGrant};
use serde_json::{Map, Value};
use tokio::time::Instant;
use tracing::{info, warn};

use super::paste::parse_pasted;
use super::pkce::constant_time_eq;
use super::{LoginError, LoginOptions, LoginSession};
use crate::http::{Capped, HttpClients, Outgoing};
use crate::token::sane_expires_in;

/// Everything checked before a request leaves: the session's platform and
/// expiry (unless a store [admitted](LoginSession::admitted_by_store) it),
/// the pasted text's shape, and its state against the session's
/// (constant time). Returns the code.
///
/// # Errors
/// [`LoginError::WrongPlatform`], [`LoginError::SessionExpired`], the
/// paste's errors, [`LoginError::StateMismatch`],
/// [`LoginError::StateMissing`].
pub(crate) fn code_from_paste(
    session: &LoginSession,
    platform: &Platform,
    pasted: &str,
    now: DateTime<Utc>,
) -> Result<Secret, LoginError> {
    if session.platform() != platform {
        return Err(LoginError::WrongPlatform {
            session: session.platform().clone(),
            flow: platform.clone(),
        });
    }
    if session.expiry_unjudged() && session.is_expired(now) {
        return Err(LoginError::SessionExpired);
    }
    let pasted = parse_pasted(pasted)?;
    match &pasted.state {
        Some(state) if !constant_time_eq(state.expose(), session.state().expose()) => {
            warn!(
                platform = platform.as_str(),
                session_id = session.session_id(),
                "login refused: the pasted state is not the session's"
            );
            Err(LoginError::StateMismatch)
        }
        None if session.state_required() => Err(LoginError::StateMissing),
        _ => Ok(pasted.code),
    }
}

/// A successful code exchange: the common grant fields (with a sane
/// `expires_in`) and the whole JSON object, for provider-specific fields.
/// Holds tokens: no `Debug`.
pub(crate) struct Exchanged {
    pub(crate) grant: TokenGrant,
    /// The grant's access token (a login needs one for its follow-up
    /// calls; an exchange without it is refused).
    pub(crate) access_token: Secret,
    pub(crate) body: Map<String, Value>,
}

impl Exchanged {
    /// The exchange, if it issued a refresh token.
    ///
    /// # Errors
    /// [`LoginError::NoRefreshToken`].
    pub(crate) fn with_refresh_token(self) -> Result<Self, LoginError> {
        if self.grant.refresh_token.is_none() {
            return Err(LoginError::NoRefreshToken);
        }
        Ok(self)
    }
}

/// Sends the code exchange `request` (bounded by its own timeout) and
/// reads the answer.
///
/// # Errors
/// [`LoginError::Configuration`] for an unusable proxy or URL,
/// [`LoginError::Transport`] when nothing or no answer came back,
/// [`LoginError::ExchangeRejected`] for a non-2xx (with its OAuth code),
/// [`LoginError::InvalidResponse`] for an unusable 2xx.
pub(crate) async fn exchange(
    http: &HttpClients,
    request: Outgoing<'_>,
    session: &LoginSession,
) -> Result<Exchanged, LoginError> {
    let deadline = Instant::now() + request.timeout;
    let platform = session.platform().as_str().to_owned();
    let response = http.send(request, deadline).await.map_err(|e| match e {
        ProviderError::Configuration { reason } => LoginError::Configuration { reason },
        source => LoginError::Transport { source },
    })?;
    if !response.is_success() {
        let code = OAuthErrorBody::parse(response.body_or_empty()).and_then(|b| b.code);
        warn!(
            platform,
            session_id = session.session_id(),
            status = response.status,
            error_code = code.as_ref().map(|c| c.as_str()),
            "login code exchange refused"
        );
        return Err(LoginError::ExchangeRejected {
            status: response.status,
            code,
        });
    }
    let Capped::Complete(body) = &response.body else {
        return Err(LoginError::InvalidResponse {
            reason: "the answer is larger than the response size limit".to_owned(),
        });
    };
    let mut grant = TokenGrant::from_json(body).map_err(|e| LoginError::InvalidResponse {
        reason: match e {
            ProviderError::InvalidResponse { reason } => reason,
            other => other.kind_name().to_owned(),
        },
    })?;
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(body) else {
        return Err(LoginError::InvalidResponse {
            reason: "token response is not a JSON object".to_owned(),
        });
    };
    let Some(access_token) = grant.access_token.clone() else {
        return Err(LoginError::InvalidResponse {
            reason: "token response has no access_token".to_owned(),
        });
    };
    grant.expires_in = Some(sane_expires_in(grant.expires_in, "login"));
    info!(
        platform,
        session_id = session.session_id(),
        refresh_token_issued = grant.refresh_token.is_some(),
        "login code exchanged"
    );
    Ok(Exchanged {
        grant,
        access_token,
        body,
    })
}

/// The account name: the operator's, else the email (`extra[email_key]`),
/// else `<platform>-<first 8 of the session id>`.
pub(crate) fn account_name(
    session: &LoginSession,
    extra: &Map<String, Value>,
    email_key: &str,
) -> String {
    session
        .options()
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .or_else(|| extra.get(email_key).and_then(Value::as_str))
        .map_or_else(
            || {
                let id: String = session.session_id().chars().take(8).collect();
                format!("{}-{id}", session.platform())
            },
            str::to_owned,
        )
}

/// A non-blank string at `path` (object keys) in `value`.
pub(crate) fn text_at(value: &Map<String, Value>, path: &[&str]) -> Option<String> {
    let (last, parents) = path.split_last()?;
    let mut map = value;
    for key in parents {
        map = map.get(*key)?.as_object()?;
    }
    map.get(*last)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The deadline of the post-login calls: `budget` from now.
pub(crate) fn post_login_deadline(budget: Duration) -> Instant {
    Instant::now() + budget
}

/// The email Google's userinfo endpoint at `url` answers for the caller's
/// token; a failed call becomes a warning.
#[cfg(feature = "code-assist")]
pub(crate) async fn userinfo_email(
    caller: &crate::code_assist::Caller<'_>,
    url: &str,
    warnings: &mut Vec<String>,
) -> Option<String> {
    match caller.get(url).await {
        Ok(info) => info.as_object().and_then(|i| text_at(i, &["email"])),
        Err(e) => {
            warnings.push(format!("userinfo not read ({})", e.describe()));
            None
        }
    }
}

/// Logs each post-login step that failed without failing the login.
pub(crate) fn log_warnings(session: &LoginSession, warnings: &[String]) {
    for warning in warnings {
        warn!(
            platform = session.platform().as_str(),
            session_id = session.session_id(),
            %warning,
            "login post-login step failed"
        );
    }
}

/// Refuses the Gemini-only options (`oauth_type`, `project_id`,
/// `tier_id`).
pub(crate) fn refuse_gemini_options(options: &LoginOptions) -> Result<(), LoginError> {
    for (option, set) in [
        ("oauth_type", options.oauth_type.is_some()),
        ("project_id", options.project_id.is_some()),
        ("tier_id", options.tier_id.is_some()),
    ] {
        if set {
            return Err(LoginError::InvalidOption {
                option,
                reason: "only Gemini logins take it".to_owned(),
            });
        }
    }
    Ok(())
}

/// Refuses an account type other than `oauth` (only Claude logins also
/// create `setup-token` accounts).
pub(crate) fn oauth_only(options: &LoginOptions) -> Result<(), LoginError> {
    match options.account_type {
        None | Some(AccountType::OAuth) => Ok(()),
        Some(other) => Err(LoginError::InvalidOption {
            option: "account_type",
            reason: format!(
                "this provider's logins create oauth accounts, not {}",
                other.as_str()
            ),
        }),
    }
}
