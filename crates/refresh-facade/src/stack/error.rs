//! [`StackError`]: why a [`RefreshStack`](super::RefreshStack) could not be
//! built. Every variant names the setting at fault and carries no secret.

use refresh_core::{ConfigError, StorageError};

/// A stack that cannot be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StackError {
    /// A setting, or a combination of settings, that cannot work.
    #[error("{setting}: {reason}")]
    Invalid {
        /// The setting at fault (`database_url`, `redis_url`, ...).
        setting: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A section refused by its own validation (flow, background,
    /// providers, sealing).
    #[error("{setting}: {source}")]
    Config {
        /// The section (`flow`, `background`, `providers`, `encryption_key`).
        setting: &'static str,
        /// Its own error, naming the field.
        #[source]
        source: ConfigError,
    },
    /// The database could not be reached, migrated or read.
    #[error("database_url ({url}): cannot {operation}: {source}")]
    Database {
        /// The URL with any password redacted.
        url: String,
        /// What was attempted (`connect`, `migrate`, `read the accounts table`).
        operation: &'static str,
        /// The storage error (a kind and a category, no SQL or values).
        #[source]
        source: StorageError,
    },
    /// Redis could not be configured or reached.
    #[cfg(feature = "redis")]
    #[error("redis_url: {source}")]
    Redis {
        /// The connect error (no password).
        #[source]
        source: refresh_redis::ConnectError,
    },
}

impl StackError {
    /// The setting this error is about.
    pub fn setting(&self) -> &'static str {
        match self {
            Self::Invalid { setting, .. } | Self::Config { setting, .. } => setting,
            Self::Database { .. } => "database_url",
            #[cfg(feature = "redis")]
            Self::Redis { .. } => "redis_url",
        }
    }

    pub(crate) fn invalid(setting: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            setting,
            reason: reason.into(),
        }
    }
}
