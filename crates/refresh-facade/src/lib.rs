//! oauth-refresh: the facade crate.
//!
//! Re-exports the curated API of [`refresh_core`] today. A later issue adds the
//! `RefreshStack` builder (`.sqlite()/.postgres()/.redis()/.providers()`),
//! per-backend and per-provider features, and the `oauth-refresh` CLI.

pub use refresh_core as core;
pub use refresh_providers as providers;
pub use refresh_redis as redis;
pub use refresh_seaorm as seaorm;
