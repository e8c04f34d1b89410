//! Go's cache and lock store (REFERENCE.md §9): `oauth:token:<key>` and
//! `oauth:refresh_lock:<key>` under a namespace of the run.

use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;

/// Go's lock TTL (30 s, never extended).
const LOCK_TTL_SECS: u64 = 30;

/// One multiplexed connection (Go's client pools; one pipelined connection
/// is, if anything, kinder to the baseline).
#[derive(Clone)]
pub(crate) struct RedisStore {
    conn: MultiplexedConnection,
    namespace: String,
}

impl RedisStore {
    pub(crate) async fn connect(url: &str, namespace: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)?;
        Ok(Self {
            conn: client.get_multiplexed_async_connection().await?,
            namespace: namespace.to_owned(),
        })
    }

    /// Go's service key of a Claude account.
    pub(crate) fn key(id: i64) -> String {
        format!("claude:account:{id}")
    }

    fn token_key(&self, key: &str) -> String {
        format!("{}:oauth:token:{key}", self.namespace)
    }

    fn lock_key(&self, key: &str) -> String {
        format!("{}:oauth:refresh_lock:{key}", self.namespace)
    }

    /// `GET`; a miss is `Ok(None)` here (Go reports it as an error).
    pub(crate) async fn get_token(&self, key: &str) -> redis::RedisResult<Option<String>> {
        self.conn.clone().get(self.token_key(key)).await
    }

    /// `SET key token PX ttl`.
    pub(crate) async fn set_token(
        &self,
        key: &str,
        token: &str,
        ttl: Duration,
    ) -> redis::RedisResult<()> {
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        self.conn
            .clone()
            .pset_ex(self.token_key(key), token, ms)
            .await
    }

    /// `DEL` of the cached token.
    pub(crate) async fn delete_token(&self, key: &str) -> redis::RedisResult<()> {
        self.conn.clone().del(self.token_key(key)).await
    }

    /// `SET lock 1 NX EX 30`: whether it was taken.
    pub(crate) async fn try_lock(&self, key: &str) -> redis::RedisResult<bool> {
        let set: Option<String> = redis::cmd("SET")
            .arg(self.lock_key(key))
            .arg(1)
            .arg("NX")
            .arg("EX")
            .arg(LOCK_TTL_SECS)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(set.is_some())
    }

    /// Plain `DEL` of the lock, whoever holds it (defect 1).
    pub(crate) async fn unlock(&self, key: &str) -> redis::RedisResult<()> {
        self.conn.clone().del(self.lock_key(key)).await
    }

    /// `PING` (the round-trip floor).
    pub(crate) async fn ping(&self) -> redis::RedisResult<()> {
        redis::cmd("PING")
            .query_async::<String>(&mut self.conn.clone())
            .await
            .map(drop)
    }

    /// `(calls, usec)` by command from `INFO commandstats` (the server's
    /// own time per command: the profile of a round trip's server side).
    pub(crate) async fn command_stats(&self) -> std::collections::BTreeMap<String, (u64, u64)> {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut self.conn.clone())
            .await
            .unwrap_or_default();
        info.lines()
            .filter_map(|line| {
                let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
                let field = |key: &str| {
                    rest.split(',')
                        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))?
                        .parse::<u64>()
                        .ok()
                };
                Some((name.to_owned(), (field("calls")?, field("usec")?)))
            })
            .collect()
    }

    /// Deletes every key of the namespace.
    pub(crate) async fn clear(&self) {
        let mut conn = self.conn.clone();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.namespace))
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        for chunk in keys.chunks(1000) {
            let _: redis::RedisResult<()> = conn.del(chunk).await;
        }
    }
}
