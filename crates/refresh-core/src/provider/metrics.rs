//! [`TokenMetrics`]: counters of the request path, per platform
//! (REFERENCE.md §5.4).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::domain::Platform;

/// Counters of one platform.
#[derive(Debug, Default)]
pub struct PlatformMetrics {
    refresh_requests: AtomicU64,
    refresh_successes: AtomicU64,
    refresh_failures: AtomicU64,
    lock_acquire_failures: AtomicU64,
    lock_contention: AtomicU64,
    lock_wait_samples: AtomicU64,
    lock_wait_total_ms: AtomicU64,
    lock_wait_hits: AtomicU64,
    lock_wait_misses: AtomicU64,
    cancellations: AtomicU64,
    last_observation_unix_ms: AtomicU64,
}

/// A copy of one platform's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Refresh operations started by the request path.
    pub refresh_requests: u64,
    /// Of those, completed (refreshed or already fresh).
    pub refresh_successes: u64,
    /// Of those, failed.
    pub refresh_failures: u64,
    /// No lock store could be reached.
    pub lock_acquire_failures: u64,
    /// The lease was held elsewhere.
    pub lock_contention: u64,
    /// Waits for a refresh held elsewhere.
    pub lock_wait_samples: u64,
    /// Total time spent in those waits.
    pub lock_wait_total_ms: u64,
    /// Waits that ended with a newer token.
    pub lock_wait_hits: u64,
    /// Waits that did not.
    pub lock_wait_misses: u64,
    /// Callers that cancelled while waiting.
    pub cancellations: u64,
    /// Unix milliseconds of the last update.
    pub last_observation_unix_ms: u64,
}

pub(crate) enum Event {
    RefreshRequest,
    RefreshSuccess,
    RefreshFailure,
    LockAcquireFailure,
    LockContention,
    Wait { waited: Duration, hit: bool },
    Cancelled,
}

impl PlatformMetrics {
    pub(crate) fn record(&self, event: Event, now_unix_ms: u64) {
        let bump = |c: &AtomicU64| {
            c.fetch_add(1, Ordering::Relaxed);
        };
        match event {
            Event::RefreshRequest => bump(&self.refresh_requests),
            Event::RefreshSuccess => bump(&self.refresh_successes),
            Event::RefreshFailure => bump(&self.refresh_failures),
            Event::LockAcquireFailure => bump(&self.lock_acquire_failures),
            Event::LockContention => bump(&self.lock_contention),
            Event::Wait { waited, hit } => {
                bump(&self.lock_wait_samples);
                self.lock_wait_total_ms.fetch_add(
                    u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
                    Ordering::Relaxed,
                );
                bump(if hit {
                    &self.lock_wait_hits
                } else {
                    &self.lock_wait_misses
                });
            }
            Event::Cancelled => bump(&self.cancellations),
        }
        self.last_observation_unix_ms
            .store(now_unix_ms, Ordering::Relaxed);
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetricsSnapshot {
            refresh_requests: get(&self.refresh_requests),
            refresh_successes: get(&self.refresh_successes),
            refresh_failures: get(&self.refresh_failures),
            lock_acquire_failures: get(&self.lock_acquire_failures),
            lock_contention: get(&self.lock_contention),
            lock_wait_samples: get(&self.lock_wait_samples),
            lock_wait_total_ms: get(&self.lock_wait_total_ms),
            lock_wait_hits: get(&self.lock_wait_hits),
            lock_wait_misses: get(&self.lock_wait_misses),
            cancellations: get(&self.cancellations),
            last_observation_unix_ms: get(&self.last_observation_unix_ms),
        }
    }
}

/// Request-path counters labelled by platform.
#[derive(Debug, Default)]
pub struct TokenMetrics {
    platforms: RwLock<HashMap<Platform, Arc<PlatformMetrics>>>,
}

impl TokenMetrics {
    /// The counters of a platform (created on first use).
    pub fn platform(&self, platform: &Platform) -> Arc<PlatformMetrics> {
        if let Some(m) = self
            .platforms
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(platform)
        {
            return Arc::clone(m);
        }
        Arc::clone(
            self.platforms
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .entry(platform.clone())
                .or_default(),
        )
    }

    /// A copy of every platform's counters.
    pub fn snapshot(&self) -> Vec<(Platform, MetricsSnapshot)> {
        let mut all: Vec<_> = self
            .platforms
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(p, m)| (p.clone(), m.snapshot()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}
