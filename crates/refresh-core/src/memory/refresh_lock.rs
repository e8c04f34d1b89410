//! [`InMemoryRefreshLock`]: the reference lease lock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::RefreshKey;
use crate::error::StorageError;
use crate::ports::{Clock, Lease, LeaseOwner, RefreshLock, SystemClock};

#[derive(Default)]
struct KeyState {
    holder: Option<(LeaseOwner, DateTime<Utc>)>,
    fence: u64,
}

/// A process-local lease lock with owner tokens, fences and TTLs measured
/// on a [`Clock`].
pub struct InMemoryRefreshLock {
    keys: Mutex<HashMap<RefreshKey, KeyState>>,
    clock: Arc<dyn Clock>,
}

impl Default for InMemoryRefreshLock {
    fn default() -> Self {
        Self::new(Arc::new(SystemClock))
    }
}

impl std::fmt::Debug for InMemoryRefreshLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InMemoryRefreshLock")
    }
}

impl InMemoryRefreshLock {
    /// A lock whose leases lapse on `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            keys: Mutex::new(HashMap::new()),
            clock,
        }
    }

    fn deadline(&self, ttl: Duration) -> DateTime<Utc> {
        crate::domain::add_duration(self.clock.now(), ttl)
    }

    fn with_key<R>(
        &self,
        key: &RefreshKey,
        f: impl FnOnce(&mut KeyState, DateTime<Utc>) -> R,
    ) -> R {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let now = self.clock.now();
        let state = keys.entry(key.clone()).or_default();
        if state
            .holder
            .as_ref()
            .is_some_and(|(_, until)| *until <= now)
        {
            state.holder = None;
        }
        f(state, now)
    }
}

#[async_trait]
impl RefreshLock for InMemoryRefreshLock {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn try_acquire(
        &self,
        key: &RefreshKey,
        ttl: Duration,
    ) -> Result<Option<Lease>, StorageError> {
        let until = self.deadline(ttl);
        Ok(self.with_key(key, |state, _| {
            if state.holder.is_some() {
                return None;
            }
            let owner = LeaseOwner::random();
            state.fence += 1;
            state.holder = Some((owner.clone(), until));
            Some(Lease {
                key: key.clone(),
                owner,
                fence: state.fence,
                ttl,
            })
        }))
    }

    async fn extend(&self, lease: &Lease, ttl: Duration) -> Result<bool, StorageError> {
        let until = self.deadline(ttl);
        Ok(
            self.with_key(&lease.key, |state, _| match &mut state.holder {
                Some((owner, deadline)) if *owner == lease.owner => {
                    *deadline = until;
                    true
                }
                _ => false,
            }),
        )
    }

    async fn release(&self, lease: &Lease) -> Result<bool, StorageError> {
        Ok(self.with_key(&lease.key, |state, _| {
            if state
                .holder
                .as_ref()
                .is_some_and(|(owner, _)| *owner == lease.owner)
            {
                state.holder = None;
                true
            } else {
                false
            }
        }))
    }
}
