//! Gemini (Code Assist, Google One, AI Studio): refresh over Google's
//! `POST /token` with a form body and a client secret (REFERENCE.md §6.3),
//! then the per-type follow-up: project discovery for `code_assist`
//! (§7.1), the Drive storage tier for `google_one`.
//!
//! - Google keeps refresh tokens: `rotates_refresh_token() == false`, and
//!   the answer usually omits it (the stored one is kept).
//! - `expires_at` = max(now + expires_in − 300 s, now + 30 s).
//! - One derivation of the OAuth type ([`OAuthType::of`]) for the refresh
//!   and the request path; an unknown type, or an empty one with no
//!   project, is a typed configuration error before anything is sent.
//! - Follow-up results (project id, tier, Drive quota, and
//!   [`PROJECT_DISCOVERY_PENDING`](crate::PROJECT_DISCOVERY_PENDING) when discovery failed)
//!   are returned with the tokens, so they go through the flow's fenced
//!   write; a failing follow-up never loses the tokens.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use refresh_core::{Credentials, ExpiryRule, GrantFields, ProxyUrl, RefreshExecutor, TokenGrant};

use crate::code_assist::GeminiEndpoints;
use crate::http::{HttpClients, Outgoing, RequestBody};

mod config;
mod drive;
mod executor;
mod login;
mod oauth_type;
mod tier;

pub use config::GeminiConfig;
pub use executor::GeminiExecutor;
pub use login::{GeminiLogin, GeminiLoginConfig};
pub use oauth_type::{OAuthType, OAuthTypeError};

/// The Gemini executor over `http`.
pub fn executor(config: GeminiConfig, http: HttpClients) -> Arc<dyn RefreshExecutor> {
    Arc::new(GeminiExecutor::new(config, http))
}

/// A token-endpoint request (a refresh or a code exchange) with the
/// `form`, through `proxy`.
fn token_request<'a>(
    config: &'a GeminiConfig,
    form: String,
    proxy: Option<&'a ProxyUrl>,
) -> Outgoing<'a> {
    Outgoing::post(&config.token_url, RequestBody::Form(form), config.timeout)
        .header_opt("user-agent", config.token_user_agent.as_deref())
        .via(proxy)
}

/// The credentials a grant of an `oauth_type` account writes, at a refresh
/// or a login: Google's expiry margin, `token_type`, `scope` and the
/// `oauth_type`.
fn issued(grant: &TokenGrant, now: DateTime<Utc>, oauth_type: OAuthType) -> Credentials {
    let mut issued = grant.to_credentials(
        now,
        ExpiryRule::GOOGLE,
        GrantFields {
            write_expires_in: false,
            write_type_and_scope: true,
        },
    );
    issued.insert("oauth_type", oauth_type.as_str());
    issued
}

/// Where `config` sends project and tier discovery.
fn endpoints(config: &GeminiConfig) -> GeminiEndpoints<'_> {
    GeminiEndpoints {
        code_assist_base: &config.code_assist_base_url,
        resource_manager_url: &config.resource_manager_url,
    }
}
