//! An OAuth emulator of the four upstreams (feature `emulator`), for tests,
//! benchmarks and the demo: an axum server on `127.0.0.1` that speaks
//!
//! - the token endpoints with their real body formats and error shapes:
//!   Claude `POST /v1/oauth/token` (JSON), OpenAI `POST /oauth/token`
//!   (form, nested errors), Google `POST /token` (form, client secret;
//!   Gemini and Antigravity clients);
//! - Code Assist `POST /v1internal:loadCodeAssist` and
//!   `POST /v1internal:onboardUser`, Resource Manager `GET /v1/projects`
//!   and Drive `GET /drive/v3/about`, all with Bearer access tokens it
//!   issued;
//! - the login: each provider's authorize endpoint and the
//!   `authorization_code` exchange at its token endpoint (PKCE S256,
//!   single-use codes), Google's userinfo, login counters and an opt-in
//!   request journal (see [`LoginStats`], [`Emulator::queue_login`]);
//! - an admin API under `/admin` (seed grants, read counters, set
//!   latency, lifetimes and faults), mirrored by [`Emulator`]'s methods
//!   for in-process use.
//!
//! Per grant it keeps the current refresh token; Claude and OpenAI rotate
//! it on every refresh (Google keeps it). Presenting a rotated-out token is
//! a reuse (RFC 9700 §4.14.2): it is answered with that provider's error
//! shape and **revokes the grant**, so every later refresh of it fails.
//!
//! [`ProvidersConfig::with_base_url`](crate::ProvidersConfig::with_base_url)
//! points every executor and login flow at it.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use refresh_providers::emulator::{Emulator, EmulatedProvider, GrantSpec};
//!
//! let emulator = Emulator::start().await?;
//! let grant = emulator.seed(GrantSpec::new(EmulatedProvider::Claude));
//! // ... point the executors at emulator.url(), refresh with grant.refresh_token ...
//! assert_eq!(emulator.grant(grant.grant_id).unwrap().refreshes, 0);
//! # Ok(()) }
//! ```

mod admin;
mod code_assist;
mod config;
mod faults;
mod grant;
mod issue;
mod login;
mod reply;
mod server;
mod state;
mod token;

pub use config::{EmulatorConfig, Latency};
pub use faults::{Fault, FaultKind, FaultRates};
pub use grant::{EmulatedProvider, GcpProject, GrantId, GrantSpec, GrantStats, SeededGrant};
pub use login::{DEFAULT_LOGIN_EMAIL, LoginStats, RecordedRequest};
pub use server::Emulator;
pub use state::Stats;

/// The paths the emulator serves (every one of them counted in
/// [`Stats::requests_by_path`]).
pub mod paths {
    /// Claude's token endpoint.
    pub const CLAUDE_TOKEN: &str = "/v1/oauth/token";
    /// OpenAI's token endpoint.
    pub const OPENAI_TOKEN: &str = "/oauth/token";
    /// Google's token endpoint (Gemini and Antigravity).
    pub const GOOGLE_TOKEN: &str = "/token";
    /// Code Assist `loadCodeAssist`.
    pub const LOAD_CODE_ASSIST: &str = "/v1internal:loadCodeAssist";
    /// Code Assist `onboardUser`.
    pub const ONBOARD_USER: &str = "/v1internal:onboardUser";
    /// Cloud Resource Manager projects list.
    pub const PROJECTS: &str = "/v1/projects";
    /// Drive `about` (storage quota).
    pub const DRIVE_ABOUT: &str = "/drive/v3/about";
    /// Claude's authorize endpoint (`claude.com/cai/oauth/authorize`).
    pub const CLAUDE_AUTHORIZE: &str = "/cai/oauth/authorize";
    /// OpenAI's authorize endpoint.
    pub const OPENAI_AUTHORIZE: &str = "/oauth/authorize";
    /// Google's authorize endpoint (Gemini and Antigravity clients).
    pub const GOOGLE_AUTHORIZE: &str = "/o/oauth2/v2/auth";
    /// Google's userinfo (v2).
    pub const GOOGLE_USERINFO: &str = "/oauth2/v2/userinfo";
}
