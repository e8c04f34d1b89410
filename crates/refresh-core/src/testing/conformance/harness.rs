//! How a suite lets time pass for a backend ([`TimeHarness`]) and how it
//! runs its checks ([`Checks`]): each check under its own timeout, every
//! failure re-raised as `<suite>: <check>: <message>`.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::FutureExt;

use crate::ports::ManualClock;

/// Makes backend time pass. In-memory backends advance a [`ManualClock`];
/// servers with their own clock (Redis `PX`, database `now()`) wait in real
/// time for the given span, which the suites keep to a few
/// [`short_ttl`](Self::short_ttl)s per check.
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

/// Real time, for backends whose clock is a server's (Redis `PX`, a
/// database's `clock_timestamp()`): `advance` waits `by` on the tokio
/// clock, so run these suites on a runtime whose time is not paused.
/// `short_ttl` is the TTL the suites take leases and claims with; keep it
/// short (the suites wait several of them) but above the server's round
/// trip and clock resolution.
#[derive(Debug, Clone, Copy)]
pub struct RealTime {
    /// The suites' short TTL.
    pub short_ttl: Duration,
}

impl Default for RealTime {
    /// A 1 s short TTL.
    fn default() -> Self {
        Self {
            short_ttl: Duration::from_secs(1),
        }
    }
}

#[async_trait]
impl TimeHarness for RealTime {
    fn short_ttl(&self) -> Duration {
        self.short_ttl
    }

    async fn advance(&self, by: Duration) {
        tokio::time::sleep(by).await;
    }
}

/// How far past a TTL the suites advance to be sure it lapsed.
pub(crate) fn past(ttl: Duration) -> Duration {
    ttl + Duration::from_millis(50)
}

/// The real-time bound of one check that lets no backend time pass.
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the checks of one suite. Each check gets [`CHECK_TIMEOUT`] plus, for
/// suites with a [`TimeHarness`], room for the time it lets pass; a check
/// that runs out of it panics with `<suite>: <check> timed out`, and a check
/// that panics is re-raised as `<suite>: <check>: <its message>`, so a buggy
/// backend can neither hang a suite nor fail it anonymously.
///
/// A backend call that blocks its thread (a synchronous loop that never
/// yields) cannot be cut by a timeout: the suites bound every loop they
/// drive themselves instead.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Checks {
    suite: &'static str,
    timeout: Duration,
}

impl Checks {
    /// Checks of `suite` that let no backend time pass.
    pub(crate) fn new(suite: &'static str) -> Self {
        Self {
            suite,
            timeout: CHECK_TIMEOUT,
        }
    }

    /// Checks of `suite` that let up to a few TTLs of `time` pass each.
    pub(crate) fn with_time(suite: &'static str, time: &dyn TimeHarness) -> Self {
        Self {
            suite,
            timeout: CHECK_TIMEOUT + time.short_ttl() * 10,
        }
    }

    /// Runs `body`, the check named `check`.
    ///
    /// # Panics
    /// When `body` panics or does not finish within the timeout, naming the
    /// suite and the check.
    pub(crate) async fn run(&self, check: &'static str, body: impl Future<Output = ()>) {
        let suite = self.suite;
        match tokio::time::timeout(self.timeout, AssertUnwindSafe(body).catch_unwind()).await {
            Ok(Ok(())) => {}
            Ok(Err(payload)) => panic!("{suite}: {check}: {}", panic_message(payload.as_ref())),
            Err(_) => panic!(
                "{suite}: {check} timed out after {:?} (a backend call that never returns?)",
                self.timeout
            ),
        }
    }
}

/// The text of a panic payload.
fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(text) = payload.downcast_ref::<&'static str>() {
        text
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text
    } else {
        "(a panic without a message)"
    }
}

/// Runs the check function `$check` with `$args` through [`Checks::run`],
/// named after the function, so a check's name in a panic always matches
/// its code. The arguments (usually `make().await`) are evaluated inside the
/// check, under its timeout.
macro_rules! check {
    ($checks:expr, $check:ident($($arg:expr),* $(,)?)) => {
        $checks
            .run(stringify!($check), async { $check($($arg),*).await })
            .await
    };
}

pub(crate) use check;
