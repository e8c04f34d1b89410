//! Code Assist project discovery, shared by Gemini (§7.1) and Antigravity
//! (§7.2), and the marker recording a discovery still pending.
//!
//! Discovery runs after the token call with the new access token, bounded
//! by the refresh deadline minus a reserve, so the executor always returns
//! the new tokens; a failure is recorded in the credentials
//! ([`PROJECT_DISCOVERY_PENDING`]) and retried on the next refresh, never reported as the
//! refresh's error.

mod antigravity_load;
mod caller;
mod gemini_discovery;
mod pending;
mod responses;
mod timing;

#[cfg(feature = "antigravity")]
pub(crate) use antigravity_load::load_project;
pub(crate) use caller::Caller;
#[cfg(feature = "gemini")]
pub(crate) use gemini_discovery::{GeminiEndpoints, detect_tier, discover_project};
pub use pending::PROJECT_DISCOVERY_PENDING;
pub(crate) use pending::apply_project;
pub use timing::DiscoveryTiming;
