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
