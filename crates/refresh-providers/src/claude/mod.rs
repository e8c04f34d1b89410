//! Anthropic (Claude): refresh over `POST /v1/oauth/token` with a JSON body
//! (REFERENCE.md §6.1, with the 2026-12 updates).
//!
//! - Refreshed: `oauth` accounts, and `setup-token` accounts that carry a
//!   refresh token and an expiry (issued since July 2026, 8 h access
//!   tokens). Older setup tokens without them are served statically.
//! - Rotates the refresh token on every refresh.
//! - Credentials written: `access_token`, `token_type`, `expires_in`
//!   (decimal string), `expires_at` (unix seconds, no margin), and
//!   `refresh_token` / `scope` when returned non-empty; everything else
//!   stored is kept.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use refresh_core::{Credentials, ExpiryRule, GrantFields, ProxyUrl, RefreshExecutor, TokenGrant};

use crate::http::{HttpClients, Outgoing, RequestBody};

mod config;
mod executor;
mod login;

pub use config::ClaudeConfig;
pub use executor::ClaudeExecutor;
pub use login::{ClaudeLogin, ClaudeLoginConfig};

/// The Claude executor over `http`.
pub fn executor(config: ClaudeConfig, http: HttpClients) -> Arc<dyn RefreshExecutor> {
    Arc::new(ClaudeExecutor::new(config, http))
}

/// A token-endpoint request (a refresh or a code exchange) with the JSON
/// `body` and Claude Code's headers, through `proxy`.
fn token_request<'a>(
    config: &'a ClaudeConfig,
    body: Vec<u8>,
    proxy: Option<&'a ProxyUrl>,
) -> Outgoing<'a> {
    Outgoing::post(&config.token_url, RequestBody::Json(body), config.timeout)
        .header("accept", config.accept.as_str())
        .header("user-agent", config.user_agent.as_str())
        .via(proxy)
}

/// The credentials a grant writes, at a refresh or a login: the exact
/// expiry, `expires_in`, `token_type` and `scope`.
fn issued(grant: &TokenGrant, now: DateTime<Utc>) -> Credentials {
    grant.to_credentials(
        now,
        ExpiryRule::EXACT,
        GrantFields {
            write_expires_in: true,
            write_type_and_scope: true,
        },
    )
}
