//! [`RefreshLock`]: the cross-instance lease that serializes refreshes.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::domain::RefreshKey;
use crate::error::StorageError;

/// The random token that identifies one acquisition. Only its holder can
/// extend or release the lease (REFERENCE.md defect 1).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct LeaseOwner(Arc<str>);

impl LeaseOwner {
    /// A fresh random owner token (UUID v4).
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string().into())
    }

    /// An owner token read back from a backend.
    pub fn from_raw(raw: impl Into<Arc<str>>) -> Self {
        Self(raw.into())
    }

    /// The token text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for LeaseOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The owner token is not a secret, but a short form keeps logs tidy.
        // By characters, not bytes: an owner read back from a backend may
        // hold multi-byte text.
        let short: String = self.0.chars().take(8).collect();
        write!(f, "LeaseOwner({short}…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_a_multi_byte_owner_does_not_panic() {
        let owner = LeaseOwner::from_raw("ééééééééé-owner");
        assert_eq!(format!("{owner:?}"), "LeaseOwner(éééééééé…)");
        assert_eq!(
            format!("{:?}", LeaseOwner::from_raw("ab")),
            "LeaseOwner(ab…)"
        );
    }
}

/// A held lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// What is locked.
    pub key: RefreshKey,
    /// Who holds it.
    pub owner: LeaseOwner,
    /// Strictly increasing per key across acquisitions: a later holder
    /// always has a larger fence.
    pub fence: u64,
    /// The TTL it was acquired or last extended with.
    pub ttl: Duration,
}

/// A lease lock.
///
/// # Contract
/// - [`try_acquire`](Self::try_acquire) is atomic: at most one unexpired
///   lease per key exists at any time. It never waits for a holder.
/// - Every acquisition gets a fresh random owner and a fence larger than
///   every earlier fence of that key, even after the lease lapsed or was
///   released.
/// - [`extend`](Self::extend) and [`release`](Self::release) are
///   compare-and-act on the owner: they return `Ok(false)` and change
///   nothing when the lease lapsed or belongs to someone else.
/// - A lease lapses `ttl` after its last acquire or extend.
/// - Errors mean "could not ask the backend" (kind `Unavailable`/`Timeout`
///   make the flow fall back to the next lock layer).
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait RefreshLock: Send + Sync {
    /// A short name for logs (`memory`, `redis`, `database`).
    fn name(&self) -> &'static str;

    /// Takes the lease if nobody holds it; `Ok(None)` when held elsewhere.
    ///
    /// # Errors
    /// A [`StorageError`] when the backend cannot be asked.
    async fn try_acquire(
        &self,
        key: &RefreshKey,
        ttl: Duration,
    ) -> Result<Option<Lease>, StorageError>;

    /// Pushes the expiry to `ttl` from now if `lease` is still held by its
    /// owner; `Ok(false)` when it was lost.
    ///
    /// # Errors
    /// A [`StorageError`] when the backend cannot be asked.
    async fn extend(&self, lease: &Lease, ttl: Duration) -> Result<bool, StorageError>;

    /// Releases the lease if still held by its owner; `Ok(false)` otherwise.
    ///
    /// # Errors
    /// A [`StorageError`] when the backend cannot be asked.
    async fn release(&self, lease: &Lease) -> Result<bool, StorageError>;
}
