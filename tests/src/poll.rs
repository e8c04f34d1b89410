//! Waiting on observable state with a bounded deadline (never a sleep as
//! synchronization).

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `check` every 25 ms until it holds; panics naming `what` after
/// `limit`.
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Polls `check` every 25 ms for `span` and panics naming `what` the
/// first time it does not hold: a property that must hold throughout a
/// window (e.g. "no request before Retry-After").
pub async fn stays<F, Fut>(what: &str, span: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = Instant::now() + span;
    while Instant::now() < end {
        assert!(check().await, "{what} stopped holding");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(check().await, "{what} stopped holding");
}
