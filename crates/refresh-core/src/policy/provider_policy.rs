//! [`ProviderRefreshPolicy`]: what the request path does when a refresh
//! fails or is held elsewhere (REFERENCE.md §4, §5.3).

use std::time::Duration;

use crate::domain::Platform;

/// What to do when the refresh fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRefreshError {
    /// Fail the request.
    ReturnError,
    /// Serve the existing token, but only while it is still valid
    /// (defect 12), cached for the failure TTL.
    UseExistingToken,
}

/// What to do when another instance holds the refresh lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnLockHeld {
    /// Wait for the holder's "refreshed" notification, polling the cache as
    /// a fallback, then re-read the account.
    WaitForCache,
    /// Serve the existing token while it is valid; once expired, wait as
    /// [`OnLockHeld::WaitForCache`] does.
    UseExistingToken,
}

/// How a caller waits for a refresh held elsewhere.
#[derive(Debug, Clone, PartialEq)]
pub struct LockWait {
    /// Poll delays before the first re-read of the account; each is cut
    /// short by a "refreshed" notification.
    pub schedule: Vec<Duration>,
    /// Each delay is multiplied by a uniform factor in `[1 − jitter, 1 +
    /// jitter]`.
    pub jitter: f64,
    /// The longest a caller whose token has expired keeps waiting in all.
    pub max_wait: Duration,
    /// Poll interval after the schedule, while the stored token is expired.
    pub poll_interval: Duration,
    /// A wait at least this long is logged as slow.
    pub warn_after: Duration,
}

impl LockWait {
    /// Claude: one 200 ms wait, then a re-read.
    pub fn single(delay: Duration) -> Self {
        Self {
            schedule: vec![delay],
            jitter: 0.0,
            ..Self::backoff()
        }
    }

    /// OpenAI: 20, 40, 80, 120, 120 ms with ±20 % jitter (worst case about
    /// 456 ms) before the re-read.
    pub fn backoff() -> Self {
        Self {
            schedule: [20, 40, 80, 120, 120].map(Duration::from_millis).to_vec(),
            jitter: 0.2,
            max_wait: Duration::from_secs(30),
            poll_interval: Duration::from_millis(250),
            warn_after: Duration::from_millis(250),
        }
    }
}

/// The request-path policy of one platform.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderRefreshPolicy {
    /// On a failed refresh.
    pub on_refresh_error: OnRefreshError,
    /// On a refresh held elsewhere.
    pub on_lock_held: OnLockHeld,
    /// Cache TTL of an existing token served after a failed refresh (zero
    /// means one minute).
    pub failure_ttl: Duration,
    /// How to wait for a refresh held elsewhere.
    pub wait: LockWait,
}

impl ProviderRefreshPolicy {
    /// The defaults of REFERENCE.md §4:
    ///
    /// | platform | on error | on lock held | failure TTL |
    /// |---|---|---|---|
    /// | Claude | use existing | wait (once, 200 ms) | 1 min |
    /// | OpenAI | use existing | wait (backoff) | 1 min |
    /// | Gemini, Antigravity, plugins | return error | use existing | 0 |
    pub fn for_platform(platform: &Platform) -> Self {
        match platform {
            Platform::Anthropic => Self {
                on_refresh_error: OnRefreshError::UseExistingToken,
                on_lock_held: OnLockHeld::WaitForCache,
                failure_ttl: Duration::from_secs(60),
                wait: LockWait::single(Duration::from_millis(200)),
            },
            Platform::OpenAi => Self {
                on_refresh_error: OnRefreshError::UseExistingToken,
                on_lock_held: OnLockHeld::WaitForCache,
                failure_ttl: Duration::from_secs(60),
                wait: LockWait::backoff(),
            },
            Platform::Gemini | Platform::Antigravity | Platform::Other(_) => Self {
                on_refresh_error: OnRefreshError::ReturnError,
                on_lock_held: OnLockHeld::UseExistingToken,
                failure_ttl: Duration::ZERO,
                wait: LockWait::backoff(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_four_getter_rows_hold_exactly() {
        let rows = [
            (
                Platform::Anthropic,
                OnRefreshError::UseExistingToken,
                OnLockHeld::WaitForCache,
                60,
            ),
            (
                Platform::OpenAi,
                OnRefreshError::UseExistingToken,
                OnLockHeld::WaitForCache,
                60,
            ),
            (
                Platform::Gemini,
                OnRefreshError::ReturnError,
                OnLockHeld::UseExistingToken,
                0,
            ),
            (
                Platform::Antigravity,
                OnRefreshError::ReturnError,
                OnLockHeld::UseExistingToken,
                0,
            ),
        ];
        for (platform, on_error, on_held, ttl) in rows {
            let p = ProviderRefreshPolicy::for_platform(&platform);
            assert_eq!(p.on_refresh_error, on_error, "{platform}");
            assert_eq!(p.on_lock_held, on_held, "{platform}");
            assert_eq!(p.failure_ttl, Duration::from_secs(ttl), "{platform}");
        }
        assert_eq!(
            ProviderRefreshPolicy::for_platform(&Platform::Anthropic)
                .wait
                .schedule
                .len(),
            1
        );
        assert_eq!(
            ProviderRefreshPolicy::for_platform(&Platform::OpenAi)
                .wait
                .schedule
                .len(),
            5
        );
    }
}
