//! [`RedisBackend`]: the command connection (one server or a cluster) every
//! lock and cache of a deployment shares, with the command timeout on every
//! call.

use std::sync::Arc;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Client, Cmd, FromRedisValue, Script};
use refresh_core::StorageError;

use crate::cache::RedisTokenCache;
use crate::config::{ConfigError, RedisConfig, Topology};
use crate::error::{storage_error, timed_out};
use crate::keys::Keys;
use crate::lock::RedisLock;

/// Why a [`RedisBackend`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The cluster's seed nodes could not be reached (a single server
    /// connects lazily and never fails here).
    #[error("cannot reach the Redis Cluster: {0}")]
    Unreachable(StorageError),
}

/// The command connection.
#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// A connected Redis deployment: hands out [`RedisLock`]s and
/// [`RedisTokenCache`]s that share its command connection (multiplexed, so
/// one is enough per process).
#[derive(Clone)]
pub struct RedisBackend {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    connection: Connection,
    pub(crate) config: RedisConfig,
    pub(crate) topology: Topology,
    pub(crate) keys: Keys,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// Connects to the deployment `config` names. A single server is
    /// connected lazily (a server that is down now is reached when it comes
    /// back, and commands fail `Unavailable` until then); a cluster's seed
    /// nodes must answer now, to learn the slot map.
    ///
    /// # Errors
    /// [`ConnectError`] for a bad configuration or an unreachable cluster.
    pub async fn connect(config: RedisConfig) -> Result<Self, ConnectError> {
        config.validate()?;
        let topology = config.topology()?;
        let connection = match &topology {
            Topology::Single(url) => {
                let client = Client::open(url.as_str()).map_err(|e| ConfigError::InvalidUrl {
                    reason: format!("{:?}", e.kind()),
                })?;
                let manager = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(config.connect_timeout))
                    .set_response_timeout(Some(config.command_timeout))
                    // No retry inside a command: a dead server fails the
                    // command at once (the flow falls through to its next
                    // layer) instead of after a reconnect pause.
                    .set_number_of_retries(0)
                    .set_min_delay(config.reconnect_backoff)
                    .set_max_delay(config.max_reconnect_backoff);
                let manager = ConnectionManager::new_lazy_with_config(client, manager)
                    .map_err(|e| ConnectError::Unreachable(storage_error("connect", &e)))?;
                Connection::Single(manager)
            }
            Topology::Cluster(nodes) => {
                let client = ClusterClient::builder(nodes.iter().map(String::as_str))
                    .connection_timeout(config.connect_timeout)
                    .response_timeout(config.command_timeout)
                    .retries(1)
                    .build()
                    .map_err(|e| ConfigError::InvalidUrl {
                        reason: format!("{:?}", e.kind()),
                    })?;
                let connect = client.get_async_connection();
                let connection = tokio::time::timeout(config.connect_timeout * 2, connect)
                    .await
                    .map_err(|_| ConnectError::Unreachable(timed_out("connect")))?
                    .map_err(|e| ConnectError::Unreachable(storage_error("connect", &e)))?;
                Connection::Cluster(connection)
            }
        };
        let keys = Keys::new(&config.key_prefix);
        Ok(Self {
            inner: Arc::new(Inner {
                connection,
                config,
                topology,
                keys,
            }),
        })
    }

    /// A lease lock over this connection.
    pub fn lock(&self) -> RedisLock {
        RedisLock::new(Arc::clone(&self.inner))
    }

    /// A token cache over this connection, with its own notification
    /// connection (one per cache, shared by all its subscribers).
    pub fn token_cache(&self) -> RedisTokenCache {
        RedisTokenCache::new(Arc::clone(&self.inner))
    }

    /// The configuration it was built from.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    /// Sends `PING` (a health check, and the benchmarks' baseline).
    ///
    /// # Errors
    /// A [`StorageError`] when Redis cannot be asked.
    pub async fn ping(&self) -> Result<(), StorageError> {
        let _: String = self.inner.query("ping", &redis::cmd("PING")).await?;
        Ok(())
    }
}

/// The longest TTL sent to Redis, about 100 years: Redis refuses an expiry
/// whose absolute time overflows, and no lease or cached token needs more.
const MAX_TTL_MS: u128 = 100 * 365 * 24 * 3600 * 1000;

/// `ttl` as the millisecond argument of the scripts: rounded UP (a lease
/// never lapses before its holder thinks), capped at [`MAX_TTL_MS`]; `0`
/// only for a zero TTL, which the scripts treat as "lapses at once".
pub(crate) fn px(ttl: std::time::Duration) -> Vec<u8> {
    ttl.as_nanos()
        .div_ceil(1_000_000)
        .min(MAX_TTL_MS)
        .to_string()
        .into_bytes()
}

impl Inner {
    /// Runs `cmd` within the command timeout.
    pub(crate) async fn query<T: FromRedisValue>(
        &self,
        operation: &'static str,
        cmd: &Cmd,
    ) -> Result<T, StorageError> {
        let call = async {
            match self.connection.clone() {
                Connection::Single(mut c) => cmd.query_async(&mut c).await,
                Connection::Cluster(mut c) => cmd.query_async(&mut c).await,
            }
        };
        self.bounded(operation, call).await
    }

    /// Runs `script` on `keys` with `args` within the command timeout
    /// (`EVALSHA`, loading the script on `NOSCRIPT`).
    pub(crate) async fn run<T: FromRedisValue>(
        &self,
        operation: &'static str,
        script: &Script,
        keys: &[&str],
        args: &[&[u8]],
    ) -> Result<T, StorageError> {
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(*key);
        }
        for arg in args {
            invocation.arg(*arg);
        }
        let call = async {
            match self.connection.clone() {
                Connection::Single(mut c) => invocation.invoke_async(&mut c).await,
                Connection::Cluster(mut c) => invocation.invoke_async(&mut c).await,
            }
        };
        self.bounded(operation, call).await
    }

    async fn bounded<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StorageError> {
        match tokio::time::timeout(self.config.command_timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(storage_error(operation, &error)),
            Err(_) => Err(timed_out(operation)),
        }
    }
}
