//! [`RedisConfig`]: where Redis is and how long to wait for it.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// The key prefix when none is configured.
pub const DEFAULT_PREFIX: &str = "oauth-refresh";

/// Where Redis is: one server, or the seed nodes of a Redis Cluster.
///
/// Deserializes from a string (`redis://`, `rediss://`, or
/// `redis+cluster://host1:port1,host2:port2/`) or from a list of node URLs
/// (a cluster).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum RedisUrl {
    /// `redis://`, `rediss://` (one server) or `redis+cluster://` /
    /// `rediss+cluster://` with comma-separated nodes.
    One(String),
    /// A cluster's seed nodes, each a `redis://` or `rediss://` URL.
    Nodes(Vec<String>),
}

/// The deployment shape a [`RedisUrl`] resolves to.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Topology {
    /// One server.
    Single(String),
    /// A cluster's seed nodes.
    Cluster(Vec<String>),
}

/// Configuration of the Redis backends.
///
/// `Debug` redacts passwords in the URLs.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// Where Redis is.
    pub url: RedisUrl,
    /// Prefix of every key and channel (no `{`, `}` or whitespace); lets
    /// deployments share a server.
    pub key_prefix: String,
    /// The longest any command may take before it fails with a `Timeout`
    /// storage error.
    #[serde(with = "millis")]
    pub command_timeout: Duration,
    /// The longest a connection attempt may take.
    #[serde(with = "millis")]
    pub connect_timeout: Duration,
    /// The first pause before the notification connection reconnects; it
    /// doubles up to [`max_reconnect_backoff`](Self::max_reconnect_backoff).
    #[serde(with = "millis")]
    pub reconnect_backoff: Duration,
    /// The longest pause between reconnect attempts.
    #[serde(with = "millis")]
    pub max_reconnect_backoff: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: RedisUrl::One("redis://127.0.0.1:6379/".into()),
            key_prefix: DEFAULT_PREFIX.into(),
            command_timeout: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(2),
            reconnect_backoff: Duration::from_millis(100),
            max_reconnect_backoff: Duration::from_secs(5),
        }
    }
}

/// A configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A URL that does not parse or has an unsupported scheme. The URL is
    /// not quoted (it may hold a password).
    #[error("invalid Redis URL ({reason})")]
    InvalidUrl {
        /// What is wrong with it.
        reason: String,
    },
    /// A `rediss://` URL while the crate is built without its `tls` feature.
    #[error("rediss:// needs refresh-redis's `tls` feature")]
    TlsNotEnabled,
    /// A cluster with no node.
    #[error("a Redis Cluster needs at least one node URL")]
    NoNodes,
    /// A key prefix that would break the hash tags or the key layout.
    #[error("invalid key prefix: {reason}")]
    InvalidPrefix {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A zero or out-of-range duration.
    #[error("{field} must be between 1 ms and {max:?}")]
    InvalidDuration {
        /// The field.
        field: &'static str,
        /// The largest accepted value.
        max: Duration,
    },
}

/// The longest accepted timeout or backoff.
const MAX_DURATION: Duration = Duration::from_secs(3600);

impl RedisConfig {
    /// The defaults with `url`, validated.
    ///
    /// # Errors
    /// [`ConfigError`] when the URL is unusable.
    pub fn new(url: impl Into<String>) -> Result<Self, ConfigError> {
        let config = Self {
            url: RedisUrl::One(url.into()),
            ..Self::default()
        };
        config.validate()?;
        Ok(config)
    }

    /// The defaults for a cluster of `nodes`, validated.
    ///
    /// # Errors
    /// [`ConfigError`] when a node URL is unusable or there is none.
    pub fn cluster<I, S>(nodes: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let config = Self {
            url: RedisUrl::Nodes(nodes.into_iter().map(Into::into).collect()),
            ..Self::default()
        };
        config.validate()?;
        Ok(config)
    }

    /// The same configuration with `prefix`.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// The same configuration with `timeout` for every command.
    pub fn with_command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// Checks every field.
    ///
    /// # Errors
    /// The first [`ConfigError`] found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.topology()?;
        let prefix = &self.key_prefix;
        if prefix.is_empty() {
            return Err(ConfigError::InvalidPrefix {
                reason: "it is empty",
            });
        }
        if prefix
            .chars()
            .any(|c| c == '{' || c == '}' || c.is_whitespace() || c.is_control())
        {
            return Err(ConfigError::InvalidPrefix {
                reason: "it holds `{`, `}`, whitespace or a control character",
            });
        }
        for (field, value) in [
            ("command_timeout", self.command_timeout),
            ("connect_timeout", self.connect_timeout),
            ("reconnect_backoff", self.reconnect_backoff),
            ("max_reconnect_backoff", self.max_reconnect_backoff),
        ] {
            if value < Duration::from_millis(1) || value > MAX_DURATION {
                return Err(ConfigError::InvalidDuration {
                    field,
                    max: MAX_DURATION,
                });
            }
        }
        Ok(())
    }

    /// The deployment shape, with every URL checked.
    pub(crate) fn topology(&self) -> Result<Topology, ConfigError> {
        match &self.url {
            RedisUrl::One(url) => {
                for (scheme, tls) in [("redis+cluster://", false), ("rediss+cluster://", true)] {
                    if let Some(rest) = url.strip_prefix(scheme) {
                        let base = if tls { "rediss://" } else { "redis://" };
                        let nodes = split_cluster_url(rest, base);
                        return cluster(nodes);
                    }
                }
                check_url(url)?;
                Ok(Topology::Single(url.clone()))
            }
            RedisUrl::Nodes(nodes) => cluster(nodes.clone()),
        }
    }
}

/// `user:pass@h1:p1,h2:p2/db` → one URL per node, with the credentials and
/// the path of the whole.
fn split_cluster_url(rest: &str, base: &str) -> Vec<String> {
    let (auth, hosts) = match rest.rsplit_once('@') {
        Some((auth, hosts)) => (format!("{auth}@"), hosts),
        None => (String::new(), rest),
    };
    let (hosts, path) = match hosts.split_once('/') {
        Some((hosts, path)) => (hosts, format!("/{path}")),
        None => (hosts, "/".to_owned()),
    };
    hosts
        .split(',')
        .filter(|h| !h.trim().is_empty())
        .map(|h| format!("{base}{auth}{}{path}", h.trim()))
        .collect()
}

fn cluster(nodes: Vec<String>) -> Result<Topology, ConfigError> {
    if nodes.is_empty() {
        return Err(ConfigError::NoNodes);
    }
    for node in &nodes {
        if check_url(node)? != 0 {
            return Err(ConfigError::InvalidUrl {
                reason: "a Redis Cluster has database 0 only; drop the /<db> path".into(),
            });
        }
    }
    Ok(Topology::Cluster(nodes))
}

/// Checks one server URL; returns its database number.
fn check_url(url: &str) -> Result<i64, ConfigError> {
    let parsed = redis::parse_redis_url(url).ok_or_else(|| ConfigError::InvalidUrl {
        reason: "not a redis:// or rediss:// URL".into(),
    })?;
    match parsed.scheme() {
        "redis" => {}
        "rediss" if cfg!(feature = "tls") => {}
        "rediss" => return Err(ConfigError::TlsNotEnabled),
        other => {
            return Err(ConfigError::InvalidUrl {
                reason: format!("unsupported scheme {other:?}"),
            });
        }
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::InvalidUrl {
            reason: "no host".into(),
        });
    }
    let info = redis::IntoConnectionInfo::into_connection_info(url).map_err(|e| {
        ConfigError::InvalidUrl {
            reason: format!("{:?}", e.kind()),
        }
    })?;
    Ok(info.redis_settings().db())
}

/// `url` with its password replaced.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<unparsable>".into();
    };
    match rest.rsplit_once('@') {
        Some((auth, host)) => {
            let user = auth.split_once(':').map_or(auth, |(user, _)| user);
            if auth.contains(':') {
                format!("{scheme}://{user}:***@{host}")
            } else {
                format!("{scheme}://***@{host}")
            }
        }
        None => url.to_owned(),
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::One(url) => f.debug_tuple("One").field(&redact(url)).finish(),
            Self::Nodes(nodes) => f
                .debug_tuple("Nodes")
                .field(&nodes.iter().map(|n| redact(n)).collect::<Vec<_>>())
                .finish(),
        }
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.url)
            .field("key_prefix", &self.key_prefix)
            .field("command_timeout", &self.command_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("reconnect_backoff", &self.reconnect_backoff)
            .field("max_reconnect_backoff", &self.max_reconnect_backoff)
            .finish()
    }
}

/// Durations as integer milliseconds in configuration files.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_urls_parse_and_bad_ones_are_typed_errors() {
        assert!(RedisConfig::new("redis://127.0.0.1:6379/").is_ok());
        assert!(RedisConfig::new("redis://:pw@localhost/2").is_ok());
        assert!(matches!(
            RedisConfig::new("http://localhost/"),
            Err(ConfigError::InvalidUrl { .. })
        ));
        assert!(matches!(
            RedisConfig::new("not a url"),
            Err(ConfigError::InvalidUrl { .. })
        ));
        assert!(matches!(
            RedisConfig::new("redis:///"),
            Err(ConfigError::InvalidUrl { .. })
        ));
        if !cfg!(feature = "tls") {
            assert_eq!(
                RedisConfig::new("rediss://h/").unwrap_err(),
                ConfigError::TlsNotEnabled
            );
        }
    }

    #[test]
    fn cluster_forms_resolve_to_their_nodes() {
        let c = RedisConfig::new("redis+cluster://u:pw@h1:7000,h2:7001/").unwrap();
        assert!(matches!(
            c.topology().unwrap(),
            Topology::Cluster(nodes) if nodes == ["redis://u:pw@h1:7000/", "redis://u:pw@h2:7001/"]
        ));
        let c = RedisConfig::cluster(["redis://h1:7000/", "redis://h2:7001/"]).unwrap();
        assert!(matches!(c.topology().unwrap(), Topology::Cluster(n) if n.len() == 2));
        assert_eq!(
            RedisConfig::cluster(Vec::<String>::new()).unwrap_err(),
            ConfigError::NoNodes
        );
        assert_eq!(
            RedisConfig::new("redis+cluster:///").unwrap_err(),
            ConfigError::NoNodes
        );
    }

    #[test]
    fn debug_never_shows_a_password() {
        let c = RedisConfig::new("redis://user:hunter2@h:1/").unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("user:***@h:1"), "{shown}");
        let c = RedisConfig::cluster(["redis://:s3cret@h1:1/"]).unwrap();
        assert!(!format!("{c:?}").contains("s3cret"));
        let err = RedisConfig::new("redis://:s3cret@").unwrap_err();
        assert!(!err.to_string().contains("s3cret"));
    }

    #[test]
    fn prefixes_and_durations_are_checked() {
        let ok = RedisConfig::new("redis://h/").unwrap();
        assert!(matches!(
            ok.clone().with_prefix("a{b").validate(),
            Err(ConfigError::InvalidPrefix { .. })
        ));
        assert!(matches!(
            ok.clone().with_prefix("").validate(),
            Err(ConfigError::InvalidPrefix { .. })
        ));
        assert!(matches!(
            ok.with_command_timeout(Duration::ZERO).validate(),
            Err(ConfigError::InvalidDuration {
                field: "command_timeout",
                ..
            })
        ));
    }

    #[test]
    fn deserializes_with_defaults_and_rejects_unknown_fields() {
        let c: RedisConfig =
            serde_json::from_str(r#"{"url": "redis://h:1/", "command_timeout": 250}"#).unwrap();
        assert_eq!(c.command_timeout, Duration::from_millis(250));
        assert_eq!(c.key_prefix, DEFAULT_PREFIX);
        let c: RedisConfig =
            serde_json::from_str(r#"{"url": ["redis://h1:1/", "redis://h2:2/"]}"#).unwrap();
        assert!(matches!(c.topology().unwrap(), Topology::Cluster(_)));
        assert!(serde_json::from_str::<RedisConfig>(r#"{"urll": "x"}"#).is_err());
    }
}
