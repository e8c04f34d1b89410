//! [`RefreshKey`]: the lock, cache and notification key of an account.

use std::fmt;
use std::sync::Arc;

use super::{AccountId, Platform};

/// `<platform prefix>:account:<id>`, e.g. `claude:account:42`.
///
/// The same key names the refresh lease, the cached access token and the
/// "refreshed" notification channel; backends add their own deployment
/// prefix. It depends on the account id only (REFERENCE.md defect 8).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RefreshKey(Arc<str>);

impl RefreshKey {
    /// The key of an account.
    pub fn for_account(platform: &Platform, id: AccountId) -> Self {
        Self(format!("{}:account:{id}", platform.key_prefix()).into())
    }

    /// A key from its text (plugins with their own scheme; the
    /// temp-unschedulable key `temp_unsched:account:{id}`).
    pub fn from_raw(raw: impl Into<Arc<str>>) -> Self {
        Self(raw.into())
    }

    /// The key text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RefreshKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RefreshKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RefreshKey({})", self.0)
    }
}
