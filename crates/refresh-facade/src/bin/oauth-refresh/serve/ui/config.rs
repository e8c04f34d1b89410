//! `[serve.ui]`: the status page's settings.

use std::time::Duration;

use serde::Deserialize;

/// `[serve.ui]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct UiSection {
    /// Serve the status page at `/` (default true).
    pub(crate) enabled: bool,
    /// How long a login lasts (default 8 h).
    #[serde(with = "crate::config::duration")]
    pub(crate) session_ttl: Duration,
    /// Mark cookies `Secure` although `serve` itself speaks plain HTTP
    /// (behind a TLS proxy). They are also marked when a request says
    /// `X-Forwarded-Proto: https`.
    pub(crate) secure_cookie: bool,
    /// How long refresh events are kept (default 7 days).
    #[serde(with = "crate::config::duration")]
    pub(crate) event_retention: Duration,
    /// How many refresh events of each account are kept, the newest
    /// (default 200, at least 1).
    pub(crate) event_history_per_account: usize,
    /// Accounts per page (default 50, at most 500).
    pub(crate) page_size: usize,
}

impl Default for UiSection {
    fn default() -> Self {
        Self {
            enabled: true,
            session_ttl: Duration::from_secs(8 * 3600),
            secure_cookie: false,
            event_retention: Duration::from_secs(7 * 24 * 3600),
            event_history_per_account: 200,
            page_size: 50,
        }
    }
}

impl UiSection {
    /// What the event writer keeps.
    pub(crate) fn retention(&self) -> refresh_facade::events::Retention {
        refresh_facade::events::Retention {
            max_age: self.event_retention,
            per_account: self.event_history_per_account.max(1),
        }
    }

    /// The page size, within 1..=500.
    pub(crate) fn page_size(&self) -> usize {
        self.page_size.clamp(1, 500)
    }
}
