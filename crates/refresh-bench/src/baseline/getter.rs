//! Go's Claude token getter (REFERENCE.md §5, §3.7, §5.2, §5.3).

use std::time::Duration;

use anyhow::{Result, anyhow};

use super::Baseline;
use super::refresh::Refresh;
use super::store::RedisStore;
use super::table::{self, GoAccount};

/// The getter's refresh skew and window (3 min).
const REFRESH_SKEW: Duration = Duration::from_secs(3 * 60);
/// The cache skew (5 min).
const CACHE_SKEW: i64 = 5 * 60;
/// Claude's wait on a held lock.
const LOCK_WAIT: Duration = Duration::from_millis(200);

impl Baseline {
    /// A token for `snapshot` (the account as the caller's scheduler holds
    /// it): cache `GET` first, as on every read.
    pub(crate) async fn access_token(&self, snapshot: &GoAccount) -> Result<String> {
        let key = RedisStore::key(snapshot.id);
        // 2. cache lookup.
        if let Ok(Some(token)) = self.store.get_token(&key).await
            && !token.trim().is_empty()
        {
            return Ok(token);
        }
        // 3. pre-check: unknown expiry or ≤ 3 min left (defect 10).
        let now = chrono::Utc::now().timestamp();
        let due = snapshot
            .expires_at()
            .is_none_or(|at| at - now <= REFRESH_SKEW.as_secs() as i64);
        let mut account = snapshot.clone();
        if due {
            // 4. refresh; Claude: on error use the existing token.
            match self.refresh_if_needed(snapshot, REFRESH_SKEW).await {
                Ok(Refresh::Refreshed(fresh) | Refresh::NotRefreshed(fresh)) => account = fresh,
                Ok(Refresh::LockHeld) => {
                    // §5.3 Claude: wait 200 ms once, read the cache once;
                    // on a miss go on with the snapshot's token.
                    tokio::time::sleep(LOCK_WAIT).await;
                    if let Ok(Some(token)) = self.store.get_token(&key).await
                        && !token.trim().is_empty()
                    {
                        return Ok(token);
                    }
                }
                Err(_) => {}
            }
        }
        // 5. the access token.
        let token = account.string("access_token");
        if token.trim().is_empty() {
            return Err(anyhow!("access_token not found in credentials"));
        }
        // 7. version check (a DB read), then the cache write.
        if let Ok(Some(stored)) = table::get(&self.db, account.id).await {
            let (mine, theirs) = (account.token_version(), stored.token_version());
            if (mine == 0 && theirs > 0) || theirs > mine {
                let token = stored.string("access_token");
                if token.trim().is_empty() {
                    return Err(anyhow!("access_token not found after version check"));
                }
                return Ok(token);
            }
        }
        let ttl = match account.expires_at() {
            None => Duration::from_secs(30 * 60),
            Some(at) if at - now > CACHE_SKEW => {
                Duration::from_secs((at - now - CACHE_SKEW) as u64)
            }
            Some(at) if at > now => Duration::from_secs((at - now) as u64),
            Some(_) => Duration::from_secs(60),
        };
        let _ = self.store.set_token(&key, &token, ttl).await;
        Ok(token)
    }
}
