//! # refresh-providers
//!
//! [`RefreshExecutor`](refresh_core::RefreshExecutor)s for the four built-in
//! upstreams, over one shared HTTP layer, plus an OAuth emulator of all
//! four (feature `emulator`). Depends on `refresh-core` only.
//!
//! - [`claude`] (feature `claude`), [`openai`] (`openai`), [`gemini`]
//!   (`gemini`: code_assist, google_one, ai_studio), [`antigravity`]
//!   (`antigravity`): one module per provider with its `XxxConfig` (every
//!   URL, client id/secret, scope, timeout and user agent overridable;
//!   `serde::Deserialize` with the real values as defaults) and a
//!   constructor returning `Arc<dyn RefreshExecutor>`.
//! - [`register_all`] registers every enabled provider from one
//!   [`ProvidersConfig`], sharing one [`HttpClients`] pool.
//! - [`HttpClients`]: `reqwest` with rustls, one pooled client per
//!   distinct account proxy (http, https, socks5), failing closed;
//!   connect and total timeouts bounded by the refresh deadline; a
//!   response-size cap enforced while streaming.
//! - [`login`]: adding an account by the OAuth authorization-code flow
//!   with PKCE (REFERENCE.md §13), one `LoginFlow` per provider beside its
//!   executor; [`cli_import`]: the official CLIs' credential files.
//! - `emulator` (feature `emulator`): the four token endpoints with
//!   rotation and reuse detection, the authorize endpoints and code
//!   exchange, Code Assist, faults, an admin API, and the
//!   `oauth-emulator` binary.
//!
//! What each executor sends and reads back is in the crate README.
//!
//! ```no_run
//! # async fn demo() -> Result<(), refresh_core::ConfigError> {
//! use refresh_core::ExecutorRegistry;
//! use refresh_providers::{ProvidersConfig, register_all};
//!
//! let mut registry = ExecutorRegistry::new();
//! register_all(&mut registry, ProvidersConfig::default())?;
//! // Tests and the demo point every upstream at the emulator instead:
//! let config = ProvidersConfig::default().with_base_url("http://127.0.0.1:8080");
//! register_all(&mut registry, config)?;
//! # Ok(()) }
//! ```

// With only some providers enabled, parts of the shared HTTP layer go unused.
#![cfg_attr(
    not(all(
        feature = "claude",
        feature = "openai",
        feature = "gemini",
        feature = "antigravity"
    )),
    allow(dead_code, unused_imports, unused_mut)
)]

#[cfg(feature = "antigravity")]
pub mod antigravity;
#[cfg(feature = "claude")]
pub mod claude;
pub mod cli_import;
#[cfg(feature = "code-assist")]
mod code_assist;
mod config;
#[cfg(feature = "emulator")]
pub mod emulator;
#[cfg(feature = "gemini")]
pub mod gemini;
mod http;
mod jwt;
pub mod login;
#[cfg(feature = "openai")]
pub mod openai;
mod token;
mod validate;

#[cfg(feature = "code-assist")]
pub use code_assist::{DiscoveryTiming, PROJECT_DISCOVERY_PENDING};
pub use config::{ProvidersConfig, register_all};
pub use http::{HttpClients, HttpConfig};

/// The default `rate_limit` of every built-in provider: 1000 token calls a
/// second (bursts of 100). A ceiling against a runaway (a raised background
/// concurrency, a stampede over thousands of accounts), sized so the default
/// background concurrency at 50 ms upstream latency (1280 calls/s at most)
/// is barely slowed; set the provider's real quota when it is known.
pub const DEFAULT_RATE_LIMIT: refresh_core::RateLimit =
    refresh_core::RateLimit::per_second(match std::num::NonZeroU32::new(1000) {
        Some(n) => n,
        None => panic!("1000 is not zero"),
    });
