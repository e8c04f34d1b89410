//! Redis backends for oauth-refresh: the fast lease layer and the shared
//! token cache of refresh-core.
//!
//! - [`RedisLock`] implements `refresh_core::ports::RefreshLock`: `SET NX
//!   PX` with a random owner and a strictly increasing fence in ONE Lua
//!   script; extend and release compare the owner first.
//! - [`RedisTokenCache`] implements `refresh_core::ports::TokenCache`:
//!   version-guarded puts in one script, `PX` TTLs, and "refreshed"
//!   notifications over one shared subscriber connection per cache.
//! - [`RedisBackend`] holds the command connection (a `ConnectionManager`,
//!   or a cluster connection) they share, with the command timeout applied
//!   to every call; [`RedisConfig`] says where Redis is.
//!
//! Redis is the FAST layer: it spares contention and wakes waiters. It is
//! not what keeps a token from being presented twice (a restart or a
//! `FLUSHALL` drops every lease): the generation claims and the database
//! lease of refresh-seaorm are. Every Redis failure is a core
//! `StorageError` of kind `Unavailable` or `Timeout`, so the flow falls
//! through to its next lock layer.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use refresh_redis::{RedisBackend, RedisConfig};
//!
//! let redis = RedisBackend::connect(RedisConfig::new("redis://127.0.0.1:6379/")?).await?;
//! let lock = redis.lock();
//! let cache = redis.token_cache();
//! # let _ = (lock, cache);
//! # Ok(())
//! # }
//! ```

mod cache;
mod config;
mod connection;
mod error;
mod keys;
mod lock;
mod notify;

pub use cache::RedisTokenCache;
pub use config::{ConfigError, DEFAULT_PREFIX, RedisConfig, RedisUrl};
pub use connection::{ConnectError, RedisBackend};
pub use lock::RedisLock;
