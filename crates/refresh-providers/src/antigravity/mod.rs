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

use refresh_core::RefreshExecutor;

use crate::http::HttpClients;

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
