//! [`FlowConfig`]: deadlines, claim lifetimes and retry bounds of the
//! refresh flow.

use std::time::Duration;

use crate::error::ConfigError;

/// The longest any duration knob may be (the consumed horizon excepted):
/// keeps every deadline computation far from overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);
/// The longest consumed-claim horizon.
pub const MAX_CONSUMED_HORIZON: Duration = Duration::from_secs(400 * 24 * 3600);

/// Deadlines, claim lifetimes and retry bounds of
/// [`RefreshFlow`](super::RefreshFlow). Every duration is bounded by
/// [`validate`](Self::validate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowConfig {
    /// Lease TTL. Leases only reduce contention and wake waiters; the claim
    /// makes refreshes safe. Must exceed `upstream_timeout` plus two storage
    /// calls.
    pub lease_ttl: Duration,
    /// H, the hard deadline of one executor call: at H the call's task is
    /// aborted (its connection closed). Internal retries of the executor
    /// count against it.
    pub upstream_timeout: Duration,
    /// S: how long the upstream may still process a request it received
    /// after the flow gave up on it, plus a margin for clock-rate
    /// differences. The token is sent only while the claim has at least
    /// `H + S` of life left by local monotonic time.
    pub upstream_grace: Duration,
    /// The initial life of a claim, by the claim store's clock: at least
    /// `H + S` plus an allowance for store outages after an answer arrived
    /// (a holder that cannot reach any store for longer than what remains
    /// of this loses the protection). Shortened to `quarantine` once the
    /// holder knows it holds no answer.
    pub claim_ttl: Duration,
    /// How long a claim whose request may have consumed the token (5xx,
    /// timeout, reset after sending, 2xx garbage, panic) blocks new
    /// requests with that token. At least S.
    pub quarantine: Duration,
    /// How long a consumed generation is remembered, so a consumed refresh
    /// token written back (old export, restored backup) is refused rather
    /// than presented. At least the refresh tokens' lifetime.
    pub consumed_horizon: Duration,
    /// Attempts of the fenced write (≥ 1) before the flow reports
    /// `NotPersisted` (the answer is then in the claim, or a detached rescue
    /// keeps trying).
    pub persist_attempts: u32,
    /// Deadline of one write attempt.
    pub persist_attempt_timeout: Duration,
    /// First backoff between write attempts; doubles each time.
    pub persist_backoff: Duration,
    /// Deadline of each lease release, and of publishing the notification.
    pub release_timeout: Duration,
    /// Deadline of every other storage call (lease acquire and extend,
    /// re-read, claim operations). A hung backend then fails the flow
    /// instead of holding the lease and the in-process flight forever.
    pub storage_timeout: Duration,
}

impl Default for FlowConfig {
    fn default() -> Self {
        Self {
            lease_ttl: Duration::from_secs(180),
            upstream_timeout: Duration::from_secs(60),
            upstream_grace: Duration::from_secs(30),
            claim_ttl: Duration::from_secs(15 * 60),
            quarantine: Duration::from_secs(10 * 60),
            consumed_horizon: Duration::from_secs(30 * 24 * 3600),
            persist_attempts: 5,
            persist_attempt_timeout: Duration::from_secs(5),
            persist_backoff: Duration::from_millis(100),
            release_timeout: Duration::from_secs(2),
            storage_timeout: Duration::from_secs(5),
        }
    }
}

impl FlowConfig {
    /// The pause before write attempt `attempt` (2, 3, ...): the backoff,
    /// doubled per attempt.
    pub fn persist_backoff_before(&self, attempt: u32) -> Duration {
        self.persist_backoff
            .saturating_mul(1 << attempt.saturating_sub(2).min(16))
    }

    /// `H + S`: the least claim life left, by local monotonic time, at which
    /// the token may still be sent.
    pub fn send_margin(&self) -> Duration {
        self.upstream_timeout.saturating_add(self.upstream_grace)
    }

    /// The longest a refresh that has started can still run: the upstream
    /// call with its grace ([`send_margin`](Self::send_margin)), every
    /// persist attempt with its backoff, and the lease release. A process
    /// that stops waiting for its refreshes sooner (a shutdown grace
    /// period) can abandon a refresh that rotates the grant upstream and is
    /// never stored.
    pub fn refresh_deadline(&self) -> Duration {
        let persist = (1..=self.persist_attempts).fold(Duration::ZERO, |sum, attempt| {
            sum.saturating_add(self.persist_attempt_timeout)
                .saturating_add(self.persist_backoff_before(attempt))
        });
        self.send_margin()
            .saturating_add(persist)
            .saturating_add(self.release_timeout)
    }

    /// Checks the invariants of the configuration.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for zero attempts, a zero or oversized
    /// duration, a claim life shorter than `H + S` plus two storage calls,
    /// or a quarantine shorter than S; [`ConfigError::LeaseTooShort`] when
    /// the lease could lapse during the upstream call.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, reason: String| Err(ConfigError::Invalid { field, reason });
        if self.persist_attempts == 0 {
            return invalid("persist_attempts", "must be at least 1".into());
        }
        for (field, value, max) in [
            ("lease_ttl", self.lease_ttl, MAX_DURATION),
            ("upstream_timeout", self.upstream_timeout, MAX_DURATION),
            ("upstream_grace", self.upstream_grace, MAX_DURATION),
            ("claim_ttl", self.claim_ttl, MAX_DURATION),
            ("quarantine", self.quarantine, MAX_DURATION),
            (
                "consumed_horizon",
                self.consumed_horizon,
                MAX_CONSUMED_HORIZON,
            ),
            (
                "persist_attempt_timeout",
                self.persist_attempt_timeout,
                MAX_DURATION,
            ),
            ("release_timeout", self.release_timeout, MAX_DURATION),
            ("storage_timeout", self.storage_timeout, MAX_DURATION),
            (
                "persist_backoff",
                self.persist_backoff.max(Duration::from_nanos(1)),
                MAX_DURATION,
            ),
        ] {
            if value.is_zero() || value > max {
                return invalid(field, format!("must be positive and at most {max:?}"));
            }
        }
        let storage_twice = self.storage_timeout.saturating_mul(2);
        let claim_floor = self.send_margin().saturating_add(storage_twice);
        if self.claim_ttl < claim_floor {
            return invalid(
                "claim_ttl",
                format!(
                    "must cover upstream_timeout + upstream_grace + two storage calls ({claim_floor:?})"
                ),
            );
        }
        if self.quarantine < self.upstream_grace {
            return invalid("quarantine", "must be at least upstream_grace".into());
        }
        let required = self.upstream_timeout.saturating_add(storage_twice);
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

    fn rejected(cfg: FlowConfig) -> Option<&'static str> {
        match cfg.validate() {
            Err(ConfigError::Invalid { field, .. }) => Some(field),
            Err(ConfigError::LeaseTooShort { .. }) => Some("lease_ttl (too short)"),
            _ => None,
        }
    }

    #[test]
    fn default_config_is_valid() {
        FlowConfig::default().validate().unwrap();
    }

    #[test]
    fn every_bad_knob_is_a_typed_error_not_a_panic() {
        let with = |change: fn(&mut FlowConfig)| {
            let mut cfg = FlowConfig::default();
            change(&mut cfg);
            rejected(cfg)
        };
        assert_eq!(
            with(|c| c.lease_ttl = Duration::from_secs(60)),
            Some("lease_ttl (too short)")
        );
        assert_eq!(with(|c| c.lease_ttl = Duration::MAX), Some("lease_ttl"));
        assert_eq!(
            with(|c| c.upstream_timeout = Duration::MAX),
            Some("upstream_timeout")
        );
        assert_eq!(
            with(|c| c.consumed_horizon = Duration::MAX),
            Some("consumed_horizon")
        );
        assert_eq!(
            with(|c| c.storage_timeout = Duration::ZERO),
            Some("storage_timeout")
        );
        assert_eq!(
            with(|c| c.claim_ttl = Duration::from_secs(80)),
            Some("claim_ttl")
        );
        assert_eq!(
            with(|c| c.quarantine = Duration::from_secs(1)),
            Some("quarantine")
        );
        assert_eq!(with(|c| c.persist_attempts = 0), Some("persist_attempts"));
    }
}
