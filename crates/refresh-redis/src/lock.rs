//! [`RedisLock`]: the fast lease layer, owner-checked and fenced.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use redis::Script;
use refresh_core::ports::{Lease, LeaseOwner, RefreshLock};
use refresh_core::{RefreshKey, StorageError};
use tracing::debug;

use crate::connection::{Inner, px};

/// How often the lease of a failed acquire is released before giving up
/// (it lapses at its TTL anyway).
const GHOST_RELEASE_ATTEMPTS: usize = 5;

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
        // Until the script's answer is in hand, an error or a cancelled
        // call (the caller's own deadline) may still leave the script to
        // run on the server (it was on the wire, or the server is frozen):
        // it would leave a lease nobody knows, answering "held elsewhere"
        // to every peer for a whole TTL. The guard then releases it by its
        // owner, after it.
        let mut ghost = GhostGuard {
            inner: Arc::clone(&self.inner),
            lease: Some(lease.clone()),
            owner: owner.clone(),
        };
        let fence: Option<u64> = self
            .inner
            .run(
                "redis_lock_acquire",
                &ACQUIRE,
                &[&lease, &fence],
                &[owner.as_str().as_bytes(), &px(ttl)],
            )
            .await?;
        ghost.lease = None;
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

/// Armed while an acquire's answer is unknown; on drop, releases what that
/// acquire may have taken.
struct GhostGuard {
    inner: Arc<Inner>,
    /// The lease key; `None` once the answer is known.
    lease: Option<String>,
    owner: LeaseOwner,
}

impl Drop for GhostGuard {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let owner = self.owner.clone();
            runtime.spawn(release_ghost(Arc::clone(&self.inner), lease, owner));
        }
    }
}

/// Tries a few times to release the lease an acquire that reported an error
/// may have taken anyway. The release is owner-checked, so it can only ever
/// delete that acquire's own lease; on one connection Redis runs it after
/// the acquire, whenever the server answers again.
async fn release_ghost(inner: Arc<Inner>, lease: String, owner: LeaseOwner) {
    let mut pause = inner.config.reconnect_backoff;
    for _ in 0..GHOST_RELEASE_ATTEMPTS {
        let released: Result<i64, StorageError> = inner
            .run(
                "redis_lock_release",
                &RELEASE,
                &[&lease],
                &[owner.as_str().as_bytes()],
            )
            .await;
        match released {
            Ok(_) => return,
            Err(error) => {
                debug!(kind = %error.kind(), "could not clear the lease of a failed acquire yet");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(inner.config.max_reconnect_backoff);
            }
        }
    }
}
