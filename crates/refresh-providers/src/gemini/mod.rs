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

use refresh_core::RefreshExecutor;

use crate::http::HttpClients;

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
