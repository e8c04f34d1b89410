//! [`InMemoryLoginSessionStore`]: logins in progress in process memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::add_duration;
use crate::error::StorageError;
use crate::ports::{Clock, LoginSessionStore, LoginTake, PendingLogin, SystemClock};

/// Login sessions kept in one process, expiring on the store's own
/// [`Clock`]. A login begun here can only be completed here: a deployment
/// with several processes uses a database store.
pub struct InMemoryLoginSessionStore {
    rows: Mutex<HashMap<String, (PendingLogin, DateTime<Utc>)>>,
    clock: Arc<dyn Clock>,
}

impl Default for InMemoryLoginSessionStore {
    fn default() -> Self {
        Self::new(Arc::new(SystemClock))
    }
}

impl std::fmt::Debug for InMemoryLoginSessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryLoginSessionStore")
            .field("sessions", &self.len())
            .finish()
    }
}

impl InMemoryLoginSessionStore {
    /// A store whose expiries run on `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            rows: Mutex::new(HashMap::new()),
            clock,
        }
    }

    fn rows(&self) -> MutexGuard<'_, HashMap<String, (PendingLogin, DateTime<Utc>)>> {
        self.rows.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many sessions are stored, expired ones included.
    pub fn len(&self) -> usize {
        self.rows().len()
    }

    /// Whether no session is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl LoginSessionStore for InMemoryLoginSessionStore {
    async fn put(
        &self,
        login: &PendingLogin,
        ttl: Duration,
    ) -> Result<DateTime<Utc>, StorageError> {
        const OP: &str = "login_session_put";
        if !PendingLogin::is_valid_id(&login.id) {
            return Err(StorageError::invalid_data(OP, "invalid session id"));
        }
        let expires_at = add_duration(self.clock.now(), ttl);
        let mut rows = self.rows();
        if rows.contains_key(&login.id) {
            return Err(StorageError::conflict(OP, "the session id is in use"));
        }
        rows.insert(login.id.clone(), (login.clone(), expires_at));
        Ok(expires_at)
    }

    async fn take(&self, id: &str) -> Result<LoginTake, StorageError> {
        let now = self.clock.now();
        Ok(match self.rows().remove(id) {
            None => LoginTake::Absent,
            Some((_, expires_at)) if expires_at <= now => LoginTake::Expired,
            Some((login, _)) => LoginTake::Taken(login),
        })
    }

    async fn purge(&self, limit: usize) -> Result<u64, StorageError> {
        let now = self.clock.now();
        let mut rows = self.rows();
        let over: Vec<String> = rows
            .iter()
            .filter(|(_, (_, expires_at))| *expires_at <= now)
            .map(|(id, _)| id.clone())
            .take(limit)
            .collect();
        for id in &over {
            rows.remove(id);
        }
        Ok(u64::try_from(over.len()).unwrap_or(u64::MAX))
    }
}
