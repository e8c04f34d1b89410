//! [`InMemoryTokenCache`]: the reference shared token cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::domain::RefreshKey;
use crate::error::StorageError;
use crate::ports::{CachedToken, Clock, PutOutcome, RefreshNotice, SystemClock, TokenCache};

/// A process-local token cache with version-guarded puts, TTLs on a
/// [`Clock`], and "refreshed" notifications over `tokio::sync::watch`.
pub struct InMemoryTokenCache {
    entries: Mutex<HashMap<RefreshKey, (CachedToken, DateTime<Utc>)>>,
    channels: Mutex<HashMap<RefreshKey, watch::Sender<u64>>>,
    clock: Arc<dyn Clock>,
}

impl Default for InMemoryTokenCache {
    fn default() -> Self {
        Self::new(Arc::new(SystemClock))
    }
}

impl std::fmt::Debug for InMemoryTokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InMemoryTokenCache")
    }
}

impl InMemoryTokenCache {
    /// A cache whose TTLs run on `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            channels: Mutex::new(HashMap::new()),
            clock,
        }
    }

    fn channel(&self, key: &RefreshKey) -> watch::Sender<u64> {
        self.channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.clone())
            .or_insert_with(|| watch::channel(0).0)
            .clone()
    }
}

#[async_trait]
impl TokenCache for InMemoryTokenCache {
    async fn get(&self, key: &RefreshKey) -> Result<Option<CachedToken>, StorageError> {
        let now = self.clock.now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(key) {
            Some((token, until)) if *until > now => Ok(Some(token.clone())),
            Some(_) => {
                entries.remove(key);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn put(
        &self,
        key: &RefreshKey,
        token: &CachedToken,
        ttl: Duration,
    ) -> Result<PutOutcome, StorageError> {
        let now = self.clock.now();
        let until = crate::domain::add_duration(now, ttl);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((cached, cached_until)) = entries.get(key)
            && *cached_until > now
            && cached.version > token.version
        {
            return Ok(PutOutcome::Superseded {
                cached_version: cached.version,
            });
        }
        entries.insert(key.clone(), (token.clone(), until));
        Ok(PutOutcome::Stored)
    }

    async fn invalidate(&self, key: &RefreshKey) -> Result<(), StorageError> {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        Ok(())
    }

    async fn publish_refreshed(&self, key: &RefreshKey, version: u64) -> Result<(), StorageError> {
        self.channel(key).send_replace(version);
        Ok(())
    }

    async fn subscribe_refreshed(&self, key: &RefreshKey) -> Result<RefreshNotice, StorageError> {
        let mut rx = self.channel(key).subscribe();
        rx.mark_unchanged();
        Ok(RefreshNotice::new(async move {
            rx.changed().await.ok()?;
            let version = *rx.borrow();
            Some(version)
        }))
    }
}
