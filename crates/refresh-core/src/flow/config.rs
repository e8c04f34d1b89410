//! [`FlowConfig`]: timeouts and retry bounds of the refresh flow.

use std::time::Duration;

use crate::error::ConfigError;

/// Timeouts and retry bounds of [`RefreshFlow`](super::RefreshFlow).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowConfig {
    /// Lease TTL; must exceed `upstream_timeout`, two storage calls (re-read
    /// and recovery check) and the persist budget.
    pub lease_ttl: Duration,
    /// Deadline of one executor call (its internal retries included). A
    /// call still running then is reported as ambiguous.
    pub upstream_timeout: Duration,
    /// Attempts of the fenced write (≥ 1).
    pub persist_attempts: u32,
    /// Deadline of one write attempt.
    pub persist_attempt_timeout: Duration,
    /// First backoff between write attempts; doubles each time.
    pub persist_backoff: Duration,
    /// Deadline of each lease release, and of publishing the notification.
    pub release_timeout: Duration,
    /// Deadline of every other storage call (lease acquire and extend,
    /// re-read, recovery store). A hung backend then fails the flow instead
    /// of holding the lease and the in-process flight forever.
    pub storage_timeout: Duration,
}

impl Default for FlowConfig {
    fn default() -> Self {
        Self {
            lease_ttl: Duration::from_secs(180),
            upstream_timeout: Duration::from_secs(120),
            persist_attempts: 5,
            persist_attempt_timeout: Duration::from_secs(5),
            persist_backoff: Duration::from_millis(100),
            release_timeout: Duration::from_secs(2),
            storage_timeout: Duration::from_secs(5),
        }
    }
}

impl FlowConfig {
    /// The longest the persist step can take: every attempt timing out plus
    /// every backoff.
    pub fn persist_budget(&self) -> Duration {
        (2..=self.persist_attempts).fold(
            self.persist_attempt_timeout
                .saturating_mul(self.persist_attempts),
            |total, attempt| total.saturating_add(self.persist_backoff_before(attempt)),
        )
    }

    /// The pause before write attempt `attempt` (2, 3, ...): the backoff,
    /// doubled per attempt.
    pub fn persist_backoff_before(&self, attempt: u32) -> Duration {
        self.persist_backoff
            .saturating_mul(1 << attempt.saturating_sub(2).min(16))
    }

    /// Checks the invariants of the configuration.
    ///
    /// # Errors
    /// [`ConfigError::LeaseTooShort`] when the lease could lapse during a
    /// worst-case refresh; [`ConfigError::Invalid`] for zero attempts or
    /// timeouts.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.persist_attempts == 0 {
            return Err(ConfigError::Invalid {
                field: "persist_attempts",
                reason: "must be at least 1".into(),
            });
        }
        for (field, value) in [
            ("upstream_timeout", self.upstream_timeout),
            ("persist_attempt_timeout", self.persist_attempt_timeout),
            ("release_timeout", self.release_timeout),
            ("storage_timeout", self.storage_timeout),
        ] {
            if value.is_zero() {
                return Err(ConfigError::Invalid {
                    field,
                    reason: "must be positive".into(),
                });
            }
        }
        let required = self
            .upstream_timeout
            .saturating_add(self.storage_timeout.saturating_mul(2))
            .saturating_add(self.persist_budget());
        if self.lease_ttl <= required {
            return Err(ConfigError::LeaseTooShort {
                lease_ttl: self.lease_ttl,
                required,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid() {
        FlowConfig::default().validate().unwrap();
    }

    #[test]
    fn invariant_4_lease_shorter_than_http_timeout_plus_persist_is_rejected() {
        let cfg = FlowConfig {
            lease_ttl: Duration::from_secs(60),
            upstream_timeout: Duration::from_secs(60),
            ..FlowConfig::default()
        };
        assert!(matches!(
            cfg.validate(),
            Err(ConfigError::LeaseTooShort { .. })
        ));
    }

    #[test]
    fn invariant_10_huge_durations_are_rejected_not_a_panic() {
        let cfg = FlowConfig {
            upstream_timeout: Duration::MAX,
            persist_attempt_timeout: Duration::MAX,
            ..FlowConfig::default()
        };
        assert!(matches!(
            cfg.validate(),
            Err(ConfigError::LeaseTooShort { .. })
        ));
        assert_eq!(cfg.persist_budget(), Duration::MAX);
    }

    #[test]
    fn zero_attempts_is_rejected() {
        let cfg = FlowConfig {
            persist_attempts: 0,
            ..FlowConfig::default()
        };
        assert!(matches!(
            cfg.validate(),
            Err(ConfigError::Invalid {
                field: "persist_attempts",
                ..
            })
        ));
    }
}
