//! [`BackgroundConfig`]: schedule, window, retries and concurrency of the
//! background refresher.

use std::time::Duration;

use crate::error::ConfigError;
use crate::policy::BackgroundRefreshPolicy;

/// Settings of [`BackgroundRefresher`](super::BackgroundRefresher)
/// (REFERENCE.md §8.1, validated).
#[derive(Debug, Clone, PartialEq)]
pub struct BackgroundConfig {
    /// Time between cycles (default 5 min).
    pub interval: Duration,
    /// Refresh accounts expiring within this window (default 30 min).
    pub window: Duration,
    /// Attempts per account per cycle (default 3; at least 1).
    pub max_retries: u32,
    /// First retry backoff (default 2 s); doubles per attempt, jittered.
    pub retry_backoff: Duration,
    /// Cap of one backoff.
    pub max_backoff: Duration,
    /// Accounts refreshed at once (default 64: with 50 ms upstream latency a
    /// sweep of 5 000 due accounts takes ~4 s instead of ~16 s at 16; the
    /// per-platform rate limit of the flow, not this, protects the upstreams).
    pub concurrency: usize,
    /// Accounts per `list_due` page (default 500).
    pub page_size: usize,
    /// No new attempt (or backoff) of an account starts after this; a
    /// running attempt is never cut short, so the concurrency bound covers
    /// every upstream call (each ends by the flow's hard deadline).
    pub account_deadline: Duration,
    /// How accounts refreshed elsewhere are counted.
    pub policy: BackgroundRefreshPolicy,
}

impl Default for BackgroundConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5 * 60),
            window: Duration::from_secs(30 * 60),
            max_retries: 3,
            retry_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(60),
            concurrency: 64,
            page_size: 500,
            account_deadline: Duration::from_secs(10 * 60),
            policy: BackgroundRefreshPolicy::default(),
        }
    }
}

impl BackgroundConfig {
    /// Checks every field.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first bad field (zero retries,
    /// zero concurrency, zero page size, zero interval or deadline).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, reason: &str| {
            Err(ConfigError::Invalid {
                field,
                reason: reason.to_owned(),
            })
        };
        if self.max_retries == 0 {
            return invalid("max_retries", "must be at least 1");
        }
        if self.concurrency == 0 {
            return invalid("concurrency", "must be at least 1");
        }
        if self.page_size == 0 {
            return invalid("page_size", "must be at least 1");
        }
        if self.interval.is_zero() {
            return invalid("interval", "must be positive");
        }
        if self.account_deadline.is_zero() {
            return invalid("account_deadline", "must be positive");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_retries_is_rejected_not_silently_successful() {
        let cfg = BackgroundConfig {
            max_retries: 0,
            ..BackgroundConfig::default()
        };
        assert!(matches!(
            cfg.validate(),
            Err(ConfigError::Invalid {
                field: "max_retries",
                ..
            })
        ));
        BackgroundConfig::default().validate().unwrap();
    }
}
