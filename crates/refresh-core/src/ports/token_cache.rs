//! [`TokenCache`]: the access-token cache shared by all instances.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{RefreshKey, Secret};
use crate::error::StorageError;

/// A cached access token. Refresh tokens are never cached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedToken {
    /// The access token.
    pub access_token: Secret,
    /// The `credentials_version` it was read from.
    pub version: u64,
    /// Its expiry, when known.
    pub expires_at: Option<DateTime<Utc>>,
}

/// What a version-guarded put did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// Stored (there was nothing, or an older or equal version).
    Stored,
    /// Not stored: a newer version is cached.
    Superseded {
        /// The cached version.
        cached_version: u64,
    },
}

/// Resolves when a "refreshed" notification for one key arrives, with the new
/// `credentials_version`, or `None` when the channel closed. Subscribe
/// *before* checking the state you wait on, then await the notice.
pub struct RefreshNotice(Pin<Box<dyn Future<Output = Option<u64>> + Send>>);

impl RefreshNotice {
    /// Wraps a backend's future.
    pub fn new(fut: impl Future<Output = Option<u64>> + Send + 'static) -> Self {
        Self(Box::pin(fut))
    }

    /// A notice that never fires (backends without notifications; callers
    /// then rely on their poll fallback).
    pub fn never() -> Self {
        Self::new(std::future::pending())
    }
}

impl Future for RefreshNotice {
    type Output = Option<u64>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

impl fmt::Debug for RefreshNotice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshNotice")
    }
}

/// The shared token cache and the "refreshed" notification channel.
///
/// # Contract
/// - [`get`](Self::get) returns `Ok(None)` on a miss or after the TTL; a
///   miss is never an error.
/// - [`put`](Self::put) is an atomic version-guarded set: it never replaces
///   a cached token of a higher version (REFERENCE.md defect 11).
/// - [`invalidate`](Self::invalidate) removes the entry; later gets miss.
/// - A notice from [`subscribe_refreshed`](Self::subscribe_refreshed)
///   resolves after any [`publish_refreshed`](Self::publish_refreshed) of
///   the same key that happens after the subscription. It may also resolve
///   spuriously; waiters re-check the state they wait on. A notice that
///   resolves `None` means the channel is closed: waiters stop listening and
///   fall back to polling, so it must not be returned while the channel
///   still works.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait TokenCache: Send + Sync {
    /// Reads a cached token.
    ///
    /// # Errors
    /// A [`StorageError`] when the backend fails.
    async fn get(&self, key: &RefreshKey) -> Result<Option<CachedToken>, StorageError>;

    /// Stores `token` for `ttl` unless a newer version is cached.
    ///
    /// # Errors
    /// A [`StorageError`] when the backend fails.
    async fn put(
        &self,
        key: &RefreshKey,
        token: &CachedToken,
        ttl: Duration,
    ) -> Result<PutOutcome, StorageError>;

    /// Removes the entry.
    ///
    /// # Errors
    /// A [`StorageError`] when the backend fails.
    async fn invalidate(&self, key: &RefreshKey) -> Result<(), StorageError>;

    /// Tells every subscriber of `key` that version `version` was persisted.
    ///
    /// # Errors
    /// A [`StorageError`] when the backend fails.
    async fn publish_refreshed(&self, key: &RefreshKey, version: u64) -> Result<(), StorageError>;

    /// Subscribes to the next "refreshed" notification of `key`.
    ///
    /// # Errors
    /// A [`StorageError`] when the backend fails.
    async fn subscribe_refreshed(&self, key: &RefreshKey) -> Result<RefreshNotice, StorageError>;
}
