//! [`DatabaseConfig`]: how to reach the database.

use std::fmt;
use std::time::Duration;

use refresh_core::StorageError;
use serde::{Deserialize, Serialize};

/// SQLite's `synchronous` setting: how hard a commit waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSynchronous {
    /// Every commit is on disk before it is acknowledged (the default: an
    /// acknowledged claim or answer lost on power failure would break
    /// invariants 1 or 2).
    #[default]
    Full,
    /// WAL commits may be lost on power failure (not on a process crash).
    /// Faster; only for data you can afford to lose.
    Normal,
}

/// Connection settings. `Debug` hides the URL's password, in the user
/// info or in a query parameter.
///
/// ```
/// use refresh_seaorm::DatabaseConfig;
///
/// let config: DatabaseConfig = serde_json::from_str(r#"{"url": "sqlite://refresh.db?mode=rwc"}"#).unwrap();
/// assert_eq!(config.max_connections, 8);
/// let pg = DatabaseConfig::new("postgres://app:hunter2@db:5432/refresh");
/// assert!(!format!("{pg:?}").contains("hunter2"));
/// let pg = DatabaseConfig::new("postgres://app@db/refresh?password=hunter2&sslmode=require");
/// assert!(!format!("{pg:?}").contains("hunter2"));
/// assert!(format!("{pg:?}").contains("sslmode=require"));
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://path?mode=rwc`, `sqlite::memory:`, `postgres://...`, or
    /// (feature `mysql`) `mysql://...`.
    pub url: String,
    /// Pool size (SQLite in memory: always 1, one database per connection).
    pub max_connections: u32,
    /// Connections kept open.
    pub min_connections: u32,
    /// Deadline of opening one connection.
    #[serde(with = "duration_ms")]
    pub connect_timeout: Duration,
    /// Deadline of getting a connection from the pool.
    #[serde(with = "duration_ms")]
    pub acquire_timeout: Duration,
    /// SQLite: how long a statement waits for another connection's or
    /// process's write lock before failing `Busy`.
    #[serde(with = "duration_ms")]
    pub sqlite_busy_timeout: Duration,
    /// SQLite: the `synchronous` pragma.
    pub sqlite_synchronous: SqliteSynchronous,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://oauth-refresh.db?mode=rwc".into(),
            max_connections: 8,
            min_connections: 0,
            connect_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(5),
            sqlite_busy_timeout: Duration::from_secs(10),
            sqlite_synchronous: SqliteSynchronous::Full,
        }
    }
}

impl DatabaseConfig {
    /// The defaults with `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }

    /// The URL with any password (user info or query parameter) replaced
    /// by `[redacted]`.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }
}

/// `url` with its password and every secret-looking query parameter
/// (`password`, `sslpassword`, anything naming a password, secret, token or
/// key) replaced, or a placeholder when it does not parse (it may hold
/// anything).
pub(crate) fn redact_url(url: &str) -> String {
    const REDACTED: &str = "[redacted]";
    let Ok(mut parsed) = url::Url::parse(url) else {
        return "[unparseable url]".into();
    };
    if parsed.password().is_some() && parsed.set_password(Some(REDACTED)).is_err() {
        return "[unparseable url]".into();
    }
    if parsed.query().is_some() {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(key, value)| {
                let value = if is_secret_parameter(&key) {
                    REDACTED.to_owned()
                } else {
                    value.into_owned()
                };
                (key.into_owned(), value)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

/// Whether a URL query parameter may carry a secret.
fn is_secret_parameter(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["pass", "secret", "token", "key", "auth"]
        .iter()
        .any(|word| name.contains(word))
}

/// The URL handed to the driver: its scheme checked and spelled as
/// sea-orm expects (`postgresql://` and upper case are accepted).
///
/// # Errors
/// `Other` (not retryable: a configuration error) for a scheme no driver
/// of this build speaks; the message names the scheme, never the URL.
pub(crate) fn driver_url(url: &str) -> Result<String, StorageError> {
    let (scheme, rest) = url.split_once(':').unwrap_or(("", url));
    let lower = scheme.to_ascii_lowercase();
    let canonical = match lower.as_str() {
        "sqlite" => Some("sqlite"),
        "postgres" | "postgresql" => Some("postgres"),
        "mysql" | "mariadb" if cfg!(feature = "mysql") => Some("mysql"),
        _ => None,
    };
    match canonical {
        Some(canonical) => Ok(format!("{canonical}:{rest}")),
        None => {
            let shown = if !lower.is_empty()
                && lower.len() <= 16
                && lower.chars().all(|c| c.is_ascii_alphanumeric() || c == '+')
            {
                format!("'{lower}'")
            } else {
                "(none)".to_owned()
            };
            let mysql = if cfg!(feature = "mysql") {
                ", mysql://"
            } else {
                ""
            };
            Err(StorageError::other(
                "connect",
                format!(
                    "unsupported database URL scheme {shown}: expected sqlite:, postgres://{mysql} (a configuration error, not retried)"
                ),
            ))
        }
    }
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &self.redacted_url())
            .field("max_connections", &self.max_connections)
            .field("min_connections", &self.min_connections)
            .field("connect_timeout", &self.connect_timeout)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("sqlite_busy_timeout", &self.sqlite_busy_timeout)
            .field("sqlite_synchronous", &self.sqlite_synchronous)
            .finish()
    }
}

/// Durations as integer milliseconds in configuration files.
mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}
