//! Policies and the pure rules they share: the due predicate, cache TTLs,
//! the version guard, and the per-platform request and background policies.

mod background_policy;
mod cache_ttl;
mod predicate;
mod provider_policy;
mod version_guard;

pub use background_policy::{BackgroundRefreshPolicy, SkipAction};
pub(crate) use cache_ttl::request_ttl;
pub use cache_ttl::{CACHE_SKEW, UNKNOWN_EXPIRY_TTL, cache_ttl, failure_ttl};
pub use predicate::{needs_refresh, token_is_valid};
pub use provider_policy::{LockWait, OnLockHeld, OnRefreshError, ProviderRefreshPolicy};
pub use version_guard::{check_token_version, is_stale};
