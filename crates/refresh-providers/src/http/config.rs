//! [`HttpConfig`]: settings of the shared HTTP layer.

use std::time::Duration;

use serde::Deserialize;

/// Settings shared by every executor's HTTP calls. Per-provider total
/// timeouts live in each provider's config; every call is also bounded by
/// the refresh's deadline.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Bound of TCP connect plus proxy handshake (and TLS): a connection
    /// not made by then fails as "not sent".
    #[serde(with = "crate::config::duration_secs")]
    pub connect_timeout: Duration,
    /// Largest response body read (1 MiB). A larger body is cut off while
    /// streaming and never buffered whole.
    pub max_body_bytes: usize,
    /// Distinct proxies whose pooled client is kept (least recently used
    /// ones are dropped beyond this).
    pub max_clients: u64,
    /// A pooled client unused this long is dropped.
    #[serde(with = "crate::config::duration_secs")]
    pub client_idle_timeout: Duration,
}

/// The smallest body cap accepted: every real token answer fits many
/// times over, so a cap cannot throw away a rotation.
pub(crate) const MIN_BODY_BYTES: usize = 64 * 1024;

impl HttpConfig {
    /// Checks the bounds.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`](refresh_core::ConfigError::Invalid) naming
    /// the setting.
    pub fn validate(&self) -> Result<(), refresh_core::ConfigError> {
        use crate::validate;
        validate::duration(
            "http.connect_timeout",
            self.connect_timeout,
            Duration::from_millis(100)..=Duration::from_secs(300),
        )?;
        validate::number(
            "http.max_body_bytes",
            self.max_body_bytes,
            MIN_BODY_BYTES..=64 * 1024 * 1024,
        )?;
        validate::number("http.max_clients", self.max_clients, 1..=1_000_000)?;
        validate::duration(
            "http.client_idle_timeout",
            self.client_idle_timeout,
            Duration::from_secs(1)..=Duration::from_secs(30 * 24 * 3600),
        )
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            max_body_bytes: refresh_core::TokenGrant::MAX_BODY_BYTES,
            max_clients: 256,
            client_idle_timeout: Duration::from_secs(30 * 60),
        }
    }
}
