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

use refresh_core::RefreshExecutor;

use crate::http::HttpClients;

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
