//! The early hand-out of a run to the request path: the token provider's
//! callers get the new credentials as soon as the fenced write committed,
//! while the rest of the run (the shared-cache entry, the publish, the
//! consumed mark, the lease release) goes on on the run's own task.
//!
//! Nothing is handed out before the generation claim was won and the
//! answer saved into it (the write comes after both), so invariants 1 and 2
//! hold as they do for a caller that awaits the whole run.

use std::cell::RefCell;
use std::future::Future;
use std::time::Duration;

use tokio::sync::oneshot;
use tracing::debug;

use super::FlowInner;
use crate::concurrency::bounded;
use crate::domain::{Account, RefreshKey};
use crate::policy::request_ttl;
use crate::ports::CachedToken;

/// Longest shared caching of a token already inside the refresh window
/// (as the token provider caches a token it could not confirm).
const INSIDE_WINDOW_TTL: Duration = Duration::from_secs(60);

/// Who waits for a run's persisted account, and the refresh window of the
/// request path it serves.
struct Early {
    persisted: Option<oneshot::Sender<Account>>,
    window: Duration,
}

tokio::task_local! {
    /// The request path waiting for the run on this task.
    static EARLY: RefCell<Early>;
}

/// Runs `run` with `persisted` as the receiver of [`hand_out`]; `window` is
/// the request path's refresh window (its shared-cache entries lapse when
/// the token enters it).
pub(super) async fn handing_out_to<F: Future>(
    persisted: oneshot::Sender<Account>,
    window: Duration,
    run: F,
) -> F::Output {
    let early = Early {
        persisted: Some(persisted),
        window,
    };
    EARLY.scope(RefCell::new(early), run).await
}

/// Hands `account` (as stored by this run's fenced write) to the request
/// path waiting for it, once per run. The request path's refresh window
/// when one waits, `None` for a run nobody waits for early (the background
/// refresher's, a manual refresh).
pub(super) fn hand_out(account: &Account) -> Option<Duration> {
    EARLY
        .try_with(|early| {
            let mut early = early.borrow_mut();
            let persisted = early.persisted.take()?;
            let _ = persisted.send(account.clone());
            Some(early.window)
        })
        .ok()
        .flatten()
}

impl FlowInner {
    /// Puts the access token `account` now holds into the shared cache
    /// before the publish, so a waiter woken by it takes the token from
    /// the cache (one GET) instead of reading the account. Version-guarded
    /// and best effort: a waiter that misses reads the account.
    pub(super) async fn share(&self, key: &RefreshKey, account: &Account, window: Duration) {
        let Some(cache) = &self.notifier else { return };
        let Some(access_token) = account.credentials.access_token() else {
            return;
        };
        let expires_at = account.credentials.expires_at().ok().flatten();
        let now = self.clock.now();
        let Some(ttl) = request_ttl(expires_at, now, window, INSIDE_WINDOW_TTL) else {
            return;
        };
        let token = CachedToken {
            access_token,
            version: account.credentials_version,
            expires_at,
        };
        let put = cache.put(key, &token, ttl);
        if let Err(error) = bounded(self.config.storage_timeout, "cache_put", put).await {
            debug!(kind = %error.kind(), "shared cache write before the publish failed");
        }
    }
}
