//! [`DiscoveryTiming`]: retries, polls and budgets of project discovery.

use std::time::Duration;

use serde::Deserialize;

/// How project discovery retries and polls. Every wait and call is also
/// bounded by the refresh deadline minus [`reserve`](Self::reserve).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiscoveryTiming {
    /// Total timeout of one discovery call (30 s).
    #[serde(with = "crate::config::duration_secs")]
    pub call_timeout: Duration,
    /// `onboardUser` calls while the operation is not `done` (5).
    pub onboard_polls: u32,
    /// Wait between `onboardUser` polls (2 s).
    #[serde(with = "crate::config::duration_secs")]
    pub onboard_interval: Duration,
    /// Rounds over the base URLs (Antigravity: 4).
    pub attempts: u32,
    /// First wait between rounds, doubled each round (1 s).
    #[serde(with = "crate::config::duration_secs")]
    pub backoff: Duration,
    /// Longest wait between rounds (8 s).
    #[serde(with = "crate::config::duration_secs")]
    pub backoff_cap: Duration,
    /// Time kept before the refresh deadline for returning the tokens
    /// (2 s): discovery stops this long before it.
    #[serde(with = "crate::config::duration_secs")]
    pub reserve: Duration,
}

impl Default for DiscoveryTiming {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(30),
            onboard_polls: 5,
            onboard_interval: Duration::from_secs(2),
            attempts: 4,
            backoff: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(8),
            reserve: Duration::from_secs(2),
        }
    }
}

impl DiscoveryTiming {
    /// Checks the bounds; `section` prefixes nothing (the field names are
    /// static) but says which provider's discovery is meant in the reason.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`](refresh_core::ConfigError::Invalid) naming
    /// the setting.
    pub fn validate(&self, section: &str) -> Result<(), refresh_core::ConfigError> {
        use crate::validate;
        let within = |field: &'static str, value: Duration, min: u64, max: u64| {
            validate::duration(
                field,
                value,
                Duration::from_millis(min)..=Duration::from_millis(max),
            )
            .map_err(|e| match e {
                refresh_core::ConfigError::Invalid { field, reason } => {
                    refresh_core::ConfigError::Invalid {
                        field,
                        reason: format!("{section}: {reason}"),
                    }
                }
                other => other,
            })
        };
        within("discovery.call_timeout", self.call_timeout, 100, 600_000)?;
        within(
            "discovery.onboard_interval",
            self.onboard_interval,
            0,
            60_000,
        )?;
        within("discovery.backoff", self.backoff, 0, 60_000)?;
        within("discovery.backoff_cap", self.backoff_cap, 0, 600_000)?;
        // The tokens are returned in this reserve: without it a hanging
        // follow-up would run into the refresh deadline, which aborts the
        // whole call and loses the rotated tokens.
        within("discovery.reserve", self.reserve, 500, 60_000)?;
        validate::number("discovery.onboard_polls", self.onboard_polls, 0..=100)?;
        validate::number("discovery.attempts", self.attempts, 1..=20)
    }

    /// The wait after round `round` (0-based): `backoff × 2^round`, capped.
    pub(crate) fn backoff_after(&self, round: u32) -> Duration {
        self.backoff
            .saturating_mul(2_u32.saturating_pow(round))
            .min(self.backoff_cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let t = DiscoveryTiming::default();
        let waits: Vec<u64> = (0..6).map(|r| t.backoff_after(r).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 8, 8]);
    }
}
