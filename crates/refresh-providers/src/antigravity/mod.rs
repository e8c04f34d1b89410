//! Google Antigravity: refresh over Google's `POST /token` with a form body
//! and a client secret (REFERENCE.md §6.4), then the project load of §7.2
//! on every refresh, over the Code Assist base URLs in order.
//!
//! - `oauth` accounts are refreshed; `upstream` accounts serve their static
//!   `api_key`.
//! - The refresh window is at least 15 minutes ([`min_window`]).
//! - Google keeps refresh tokens (`rotates_refresh_token() == false`).
//! - `expires_at` = max(now + expires_in − 300 s, now + 30 s) (defect 17:
//!   Go had no lower clamp).
//! - A failed project load keeps the stored `project_id`; with none, the
//!   tokens are returned with
//!   [`PROJECT_DISCOVERY_PENDING`](crate::PROJECT_DISCOVERY_PENDING) set.
//!
//! [`min_window`]: refresh_core::RefreshExecutor::min_window

use std::sync::Arc;

use chrono::{DateTime, Utc};
use refresh_core::domain::keys;
use refresh_core::{Credentials, ExpiryRule, GrantFields, ProxyUrl, RefreshExecutor, TokenGrant};
use serde_json::json;

use crate::code_assist::Caller;
use crate::http::{HttpClients, Outgoing, RequestBody};

mod config;
mod executor;
mod login;

pub use config::AntigravityConfig;
pub use executor::AntigravityExecutor;
pub use login::{AntigravityLogin, AntigravityLoginConfig};

/// The Antigravity executor over `http`.
pub fn executor(config: AntigravityConfig, http: HttpClients) -> Arc<dyn RefreshExecutor> {
    Arc::new(AntigravityExecutor::new(config, http))
}

/// A token-endpoint request (a refresh or a code exchange) with the
/// `form`, through `proxy`.
fn token_request<'a>(
    config: &'a AntigravityConfig,
    form: String,
    proxy: Option<&'a ProxyUrl>,
) -> Outgoing<'a> {
    Outgoing::post(&config.token_url, RequestBody::Form(form), config.timeout)
        .header_opt("user-agent", config.token_user_agent.as_deref())
        .via(proxy)
}

/// The credentials a grant writes, at a refresh or a login: Google's
/// expiry margin and `token_type`.
fn issued(grant: &TokenGrant, now: DateTime<Utc>) -> Credentials {
    let mut issued = grant.to_credentials(now, ExpiryRule::GOOGLE, GrantFields::default());
    if let Some(token_type) = &grant.token_type {
        issued.insert(keys::TOKEN_TYPE, token_type.as_str());
    }
    issued
}

/// The project `loadCodeAssist` gives the caller's account (§7.2), or why
/// none came.
async fn load_project(config: &AntigravityConfig, caller: &Caller<'_>) -> Result<String, String> {
    let metadata = json!({
        "ideType": "ANTIGRAVITY",
        "ideVersion": config.version,
        "ideName": "antigravity",
    });
    crate::code_assist::load_project(
        caller,
        &config.code_assist_base_urls,
        &metadata,
        &config.discovery,
    )
    .await
}
