//! OpenAI (ChatGPT / Codex): refresh over `POST /oauth/token` with a form
//! body (REFERENCE.md §6.2, with the 2026-12 user agent and `originator`).
//!
//! - Rotates the refresh token on every refresh; a reused one is answered
//!   with the nested `{"error":{"code":"refresh_token_reused"}}` shape.
//! - The `id_token` is decoded without signature verification (as every
//!   peer does) for `email`, `chatgpt_account_id`, `chatgpt_user_id`,
//!   `organization_id` and `plan_type`; a token that cannot be decoded or
//!   has expired (120 s tolerance) is logged and the claims are skipped.
//! - Credentials written: `access_token`, `expires_at` (unix seconds, no
//!   margin), `refresh_token` when returned, the claims above and
//!   `id_token` when non-empty, and `client_id` when the account chose its
//!   own client. No `expires_in`, `token_type` or `scope`.

use std::sync::Arc;

use refresh_core::RefreshExecutor;

use crate::http::HttpClients;

mod config;
mod executor;
pub(crate) mod id_token;
mod login;

pub use config::OpenAiConfig;
pub use executor::OpenAiExecutor;
pub use login::{OpenAiLogin, OpenAiLoginConfig};

/// The OpenAI executor over `http`.
pub fn executor(config: OpenAiConfig, http: HttpClients) -> Arc<dyn RefreshExecutor> {
    Arc::new(OpenAiExecutor::new(config, http))
}
