//! [`RedisLock`]: the fast lease layer, owner-checked and fenced.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use redis::Script;
use refresh_core::ports::{Lease, LeaseOwner, RefreshLock};
use refresh_core::{RefreshKey, StorageError};

use crate::connection::{Inner, px};

static ACQUIRE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/acquire.lua")));
static EXTEND: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/extend.lua")));
static RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/release.lua")));

/// A [`RefreshLock`] on Redis: `SET NX PX` with a random owner and a fence,
/// taken in one script; extend and release compare the owner first.
///
/// A Redis lease alone cannot keep a token from being presented twice (a
/// restart or `FLUSHALL` drops every lease, a failover can lose one): it
/// only spares contention. Pair it with the database lease
/// (`LockStrategy::layered`) and the generation claims, which are what hold
/// the invariant.
#[derive(Clone)]
pub struct RedisLock {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLock").finish_non_exhaustive()
    }
}

impl RedisLock {
    pub(crate) fn new(inner: Arc<Inner>) -> Self {
        Self { inner }
    }
}

#[async_trait]
impl RefreshLock for RedisLock {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn try_acquire(
        &self,
        key: &RefreshKey,
        ttl: Duration,
    ) -> Result<Option<Lease>, StorageError> {
        let owner = LeaseOwner::random();
        let keys = &self.inner.keys;
        let (lease, fence) = (keys.lease(key), keys.fence(key));
        let fence: Option<u64> = self
            .inner
            .run(
                "redis_lock_acquire",
                &ACQUIRE,
                &[&lease, &fence],
                &[owner.as_str().as_bytes(), &px(ttl)],
            )
            .await?;
        Ok(fence.map(|fence| Lease {
            key: key.clone(),
            owner,
            fence,
            ttl,
        }))
    }

    async fn extend(&self, lease: &Lease, ttl: Duration) -> Result<bool, StorageError> {
        let key = self.inner.keys.lease(&lease.key);
        let done: i64 = self
            .inner
            .run(
                "redis_lock_extend",
                &EXTEND,
                &[&key],
                &[lease.owner.as_str().as_bytes(), &px(ttl)],
            )
            .await?;
        Ok(done == 1)
    }

    async fn release(&self, lease: &Lease) -> Result<bool, StorageError> {
        let key = self.inner.keys.lease(&lease.key);
        let done: i64 = self
            .inner
            .run(
                "redis_lock_release",
                &RELEASE,
                &[&key],
                &[lease.owner.as_str().as_bytes()],
            )
            .await?;
        Ok(done == 1)
    }
}
