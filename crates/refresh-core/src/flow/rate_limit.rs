//! [`RateLimit`]: a per-platform bound on upstream token calls, and the
//! limiters the flow waits on before it claims a generation.
//!
//! The bound lives in the flow because every upstream token call of every
//! path (request path, background sweep, manual refresh) goes through it: a
//! high background concurrency or a stampede over many accounts cannot
//! exceed it. The wait happens after the due check and before the claim, so
//! it never eats the claim's life or the upstream call's hard deadline, and
//! a call that never left is never mistaken for one that may have consumed
//! the token.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use crate::domain::Platform;
use crate::error::ConfigError;

/// At most `calls` upstream token calls per `per`, as a steady rate with a
/// burst of [`burst`](Self::burst) calls. Written `"N/s"`, `"N/m"` or
/// `"N/h"` (`"20/s"`, `"600/m"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Calls per period.
    pub calls: NonZeroU32,
    /// The period.
    pub per: Duration,
}

impl RateLimit {
    /// `calls` per second.
    pub const fn per_second(calls: NonZeroU32) -> Self {
        Self {
            calls,
            per: Duration::from_secs(1),
        }
    }

    /// The calls allowed at once after an idle spell: a tenth of a period's
    /// worth (at least 1), so a full period's calls are spread over it
    /// rather than sent in one burst.
    pub fn burst(&self) -> NonZeroU32 {
        NonZeroU32::new(self.calls.get() / 10).unwrap_or(NonZeroU32::MIN)
    }

    fn quota(&self) -> Result<Quota, ConfigError> {
        let interval = self.per / self.calls.get();
        Quota::with_period(interval)
            .map(|q| q.allow_burst(self.burst()))
            .ok_or_else(|| ConfigError::Invalid {
                field: "rate_limit",
                reason: format!("{self} is more than one call per nanosecond"),
            })
    }
}

impl std::fmt::Display for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = match self.per.as_secs() {
            3600 => "h",
            60 => "m",
            _ => "s",
        };
        write!(f, "{}/{unit}", self.calls)
    }
}

impl FromStr for RateLimit {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || ConfigError::Invalid {
            field: "rate_limit",
            reason: format!("{text:?} is not a rate like \"20/s\", \"600/m\" or \"1000/h\""),
        };
        let (calls, unit) = text.trim().split_once('/').ok_or_else(invalid)?;
        let calls: NonZeroU32 = calls.trim().parse().map_err(|_| invalid())?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(invalid()),
        };
        let limit = Self { calls, per };
        limit.quota()?;
        Ok(limit)
    }
}

impl<'de> serde::Deserialize<'de> for RateLimit {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for RateLimit {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// governor's clock read from tokio's, so the limiter and the sleeps that
/// wait for it agree (and paused test time drives both).
#[derive(Clone, Debug)]
struct TokioClock {
    start: tokio::time::Instant,
}

impl Clock for TokioClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(self.start.elapsed())
    }
}

type Limiter = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Nanos>>;

/// One limiter per platform that has a [`RateLimit`]; platforms without one
/// are not limited.
#[derive(Default)]
pub(crate) struct RateLimiters {
    by_platform: HashMap<Platform, Arc<Limiter>>,
}

impl RateLimiters {
    pub(crate) fn insert(
        &mut self,
        platform: Platform,
        limit: RateLimit,
    ) -> Result<(), ConfigError> {
        let clock = TokioClock {
            start: tokio::time::Instant::now(),
        };
        let limiter = RateLimiter::direct_with_clock(limit.quota()?, clock);
        self.by_platform.insert(platform, Arc::new(limiter));
        Ok(())
    }

    /// Waits (on tokio's clock) until `platform` may make one more call,
    /// and takes that call's cell.
    pub(crate) async fn until_ready(&self, platform: &Platform) {
        let Some(limiter) = self.by_platform.get(platform) else {
            return;
        };
        while let Err(not_until) = limiter.check() {
            let wait = not_until.wait_time_from(limiter_now(limiter));
            tokio::time::sleep(wait.max(Duration::from_micros(50))).await;
        }
    }

    pub(crate) fn platforms(&self) -> impl Iterator<Item = &Platform> {
        self.by_platform.keys()
    }
}

fn limiter_now(limiter: &Limiter) -> Nanos {
    limiter.clock().now()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_print_back() {
        let limit: RateLimit = "20/s".parse().unwrap();
        assert_eq!(limit.calls.get(), 20);
        assert_eq!(limit.per, Duration::from_secs(1));
        assert_eq!(limit.to_string(), "20/s");
        assert_eq!("600 / m".parse::<RateLimit>().unwrap().to_string(), "600/m");
        assert_eq!(
            "5/h".parse::<RateLimit>().unwrap().per,
            Duration::from_secs(3600)
        );
        for bad in ["", "20", "0/s", "-1/s", "20/d", "x/s"] {
            assert!(
                matches!(
                    bad.parse::<RateLimit>(),
                    Err(ConfigError::Invalid {
                        field: "rate_limit",
                        ..
                    })
                ),
                "{bad:?} must be refused"
            );
        }
    }

    #[test]
    fn the_burst_is_a_tenth_of_a_period() {
        assert_eq!("1000/s".parse::<RateLimit>().unwrap().burst().get(), 100);
        assert_eq!("5/s".parse::<RateLimit>().unwrap().burst().get(), 1);
    }

    #[tokio::test]
    async fn a_limited_platform_takes_cells_and_others_pass() {
        let mut limiters = RateLimiters::default();
        limiters
            .insert(Platform::Anthropic, "10/s".parse().unwrap())
            .unwrap();
        // The burst (1 call) is free; the next must wait for a cell.
        limiters.until_ready(&Platform::Anthropic).await;
        let limiter = &limiters.by_platform[&Platform::Anthropic];
        assert!(limiter.check().is_err(), "the burst is spent");
        // Another platform is not limited at all.
        for _ in 0..100 {
            limiters.until_ready(&Platform::OpenAi).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn calls_beyond_the_burst_are_spaced_by_the_rate() {
        let mut limiters = RateLimiters::default();
        limiters
            .insert(Platform::Anthropic, "10/s".parse().unwrap())
            .unwrap();
        let started = tokio::time::Instant::now();
        for _ in 0..6 {
            limiters.until_ready(&Platform::Anthropic).await;
        }
        // One free call, then five 100 ms cells (paused time, exact).
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(500), "{took:?}");
        assert!(took < Duration::from_millis(600), "{took:?}");
    }
}
