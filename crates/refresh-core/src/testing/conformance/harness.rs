//! [`TimeHarness`]: how a suite lets time pass for a backend under test.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::ports::ManualClock;

/// Makes backend time pass. In-memory backends advance a [`ManualClock`];
/// servers with their own clock (Redis `PX`, database `now()`) wait in real
/// time for the given span, which the suites keep short.
#[async_trait]
pub trait TimeHarness: Send + Sync {
    /// A TTL short enough to wait out; long enough that a lease taken now is
    /// still held when the next statement runs.
    fn short_ttl(&self) -> Duration;

    /// Lets `by` pass for the backend.
    async fn advance(&self, by: Duration);
}

#[async_trait]
impl TimeHarness for Arc<ManualClock> {
    fn short_ttl(&self) -> Duration {
        Duration::from_secs(5)
    }

    async fn advance(&self, by: Duration) {
        ManualClock::advance(self, by);
    }
}
