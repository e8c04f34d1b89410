//! [`RedisTokenCache`]: the shared access-token cache (version-guarded
//! puts) and the "refreshed" notifications.

use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use redis::Script;
use refresh_core::ports::{CachedToken, PutOutcome, RefreshNotice, Sealer, TokenCache};
use refresh_core::{RefreshKey, StorageError};

use crate::config::Topology;
use crate::connection::{Inner, px};
use crate::notify::Hub;

static PUT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/put.lua")));

/// A [`TokenCache`] on Redis. Entries are hashes (`v` = version, `d` = the
/// token as JSON) with a `PX` TTL; a put is one script that never replaces a
/// higher cached version. Notifications go over `PUBLISH` and ONE
/// subscriber connection per cache (clones share it), multiplexing every
/// waiter.
///
/// With a [`Sealer`] ([`with_sealer`](Self::with_sealer)) the payload is
/// sealed, bound to its key: Redis (its memory, an RDB dump, a replica)
/// never holds an access token in clear, and an entry copied to another
/// key does not open.
#[derive(Clone)]
pub struct RedisTokenCache {
    inner: Arc<Inner>,
    hub: Arc<Mutex<Option<Hub>>>,
    sealer: Option<Arc<dyn Sealer>>,
}

impl std::fmt::Debug for RedisTokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTokenCache").finish_non_exhaustive()
    }
}

impl RedisTokenCache {
    pub(crate) fn new(inner: Arc<Inner>) -> Self {
        Self {
            inner,
            hub: Arc::new(Mutex::new(None)),
            sealer: None,
        }
    }

    /// Seals every cached payload with `sealer` (the same keys that seal
    /// credentials at rest). Entries written unsealed, or sealed under a
    /// key the sealer does not hold, read as `InvalidData` (the token
    /// provider then treats them as a miss) until they are overwritten or
    /// lapse.
    pub fn with_sealer(mut self, sealer: Arc<dyn Sealer>) -> Self {
        self.sealer = Some(sealer);
        self
    }

    /// The associated data binding a sealed payload to its key.
    fn seal_context(key: &RefreshKey) -> Vec<u8> {
        [
            b"oauth-refresh:redis-token:".as_slice(),
            key.as_str().as_bytes(),
        ]
        .concat()
    }

    /// The notification task, started on the current runtime the first
    /// time, and again when the runtime it ran on is gone.
    fn hub(&self) -> Hub {
        let mut hub = self.hub.lock().unwrap_or_else(|e| e.into_inner());
        match hub.as_ref() {
            Some(running) if !running.is_closed() => running.clone(),
            _ => {
                let nodes = match &self.inner.topology {
                    Topology::Single(url) => vec![url.clone()],
                    Topology::Cluster(nodes) => nodes.clone(),
                };
                hub.insert(Hub::spawn(nodes, &self.inner.config)).clone()
            }
        }
    }
}

#[async_trait]
impl TokenCache for RedisTokenCache {
    async fn get(&self, key: &RefreshKey) -> Result<Option<CachedToken>, StorageError> {
        let mut cmd = redis::cmd("HGET");
        cmd.arg(self.inner.keys.token(key)).arg("d");
        let payload: Option<Vec<u8>> = self.inner.query("redis_cache_get", &cmd).await?;
        let payload = match (payload, &self.sealer) {
            (Some(sealed), Some(sealer)) => {
                let envelope = std::str::from_utf8(&sealed).map_err(|_| {
                    StorageError::invalid_data("redis_cache_get", "cached token is not sealed")
                })?;
                let opened = sealer
                    .open(envelope, &Self::seal_context(key))
                    .map_err(|e| StorageError::invalid_data("redis_cache_get", e.to_string()))?;
                Some(opened)
            }
            (payload, _) => payload,
        };
        payload
            .map(|bytes| {
                serde_json::from_slice(&bytes).map_err(|e| {
                    StorageError::invalid_data(
                        "redis_cache_get",
                        format!("cached token does not decode ({:?})", e.classify()),
                    )
                })
            })
            .transpose()
    }

    async fn put(
        &self,
        key: &RefreshKey,
        token: &CachedToken,
        ttl: Duration,
    ) -> Result<PutOutcome, StorageError> {
        let mut payload = serde_json::to_vec(token).map_err(|e| {
            StorageError::other(
                "redis_cache_put",
                format!("token does not encode ({:?})", e.classify()),
            )
        })?;
        if let Some(sealer) = &self.sealer {
            payload = sealer
                .seal(&payload, &Self::seal_context(key))
                .map_err(|e| StorageError::other("redis_cache_put", e.to_string()))?
                .into_bytes();
        }
        let entry = self.inner.keys.token(key);
        let version = token.version.to_string();
        let cached: Option<String> = self
            .inner
            .run(
                "redis_cache_put",
                &PUT,
                &[&entry],
                &[version.as_bytes(), &payload, &px(ttl)],
            )
            .await?;
        match cached {
            None => Ok(PutOutcome::Stored),
            Some(cached) => cached
                .parse()
                .map(|cached_version| PutOutcome::Superseded { cached_version })
                .map_err(|_| {
                    StorageError::invalid_data("redis_cache_put", "cached version is not a number")
                }),
        }
    }

    async fn invalidate(&self, key: &RefreshKey) -> Result<(), StorageError> {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.inner.keys.token(key));
        let _: i64 = self.inner.query("redis_cache_invalidate", &cmd).await?;
        Ok(())
    }

    async fn publish_refreshed(&self, key: &RefreshKey, version: u64) -> Result<(), StorageError> {
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(self.inner.keys.channel(key)).arg(version);
        let _: i64 = self.inner.query("redis_publish_refreshed", &cmd).await?;
        Ok(())
    }

    async fn subscribe_refreshed(&self, key: &RefreshKey) -> Result<RefreshNotice, StorageError> {
        let channel = self.inner.keys.channel(key);
        // The hub may be connecting: one connect and one command.
        let config = &self.inner.config;
        let timeout = config.connect_timeout + config.command_timeout * 2;
        self.hub().subscribe(channel, timeout).await
    }
}
