//! [`FlowObserver`]: what the refresh flow and the token provider report as
//! they go, for metrics.

use std::time::Duration;

use crate::background::CycleReport;
use crate::domain::Platform;
use crate::ports::RefreshEvent;

/// Receives the events of refreshes, token reads and background cycles:
/// lock acquisitions by layer, contention and fallbacks, upstream calls
/// with their latency and outcome, refresh outcomes, in-process cache
/// misses, shared-cache lookups, waits, and each background cycle's report
/// and duration. A metrics
/// exporter implements the methods it needs; the others do nothing.
///
/// # Contract
/// - Methods are called inline on the refresh and read paths: they must
///   return promptly, never block on I/O and never panic.
/// - Nothing secret is passed: labels are platform names and fixed
///   `&'static str` names (lock layers as [`RefreshLock::name`], outcomes
///   as [`ProviderError::kind_name`] or the names listed per method), so an
///   exporter can use them as metric labels directly.
/// - The warm in-process token read reports nothing (it must stay a plain
///   memory lookup); [`TokenProvider::local_hits`] counts it instead.
///
/// [`RefreshLock::name`]: crate::ports::RefreshLock::name
/// [`ProviderError::kind_name`]: crate::ProviderError::kind_name
/// [`TokenProvider::local_hits`]: crate::TokenProvider::local_hits
pub trait FlowObserver: Send + Sync {
    /// A lease was taken on `layer`.
    fn lock_acquired(&self, _layer: &'static str) {}

    /// `layer` answered that another instance holds the lease.
    fn lock_contended(&self, _layer: &'static str) {}

    /// `layer` could not be asked; the flow falls to the next layer (a lock
    /// fallback) or fails with "lock unavailable".
    fn lock_unavailable(&self, _layer: &'static str) {}

    /// A token request of `platform` ended after `elapsed`: `outcome` is
    /// `ok` or the error's [`ProviderError::kind_name`](crate::ProviderError::kind_name).
    fn upstream_call(&self, _platform: &Platform, _elapsed: Duration, _outcome: &'static str) {}

    /// A run of the flow for an account of `platform` ended: `outcome` is
    /// `refreshed`, `recovered` (an answer left in a claim was applied),
    /// `still_fresh`, `held_elsewhere`, or the failed stage's name
    /// ([`FlowStage`](crate::FlowStage) as text).
    fn refresh_finished(&self, _platform: &Platform, _outcome: &'static str) {}

    /// The same run in detail, reported right after
    /// [`refresh_finished`](Self::refresh_finished): the account, when it
    /// ended, how long it took, the lock layers held and the upstream
    /// requests sent. An observer that stores it (a
    /// [`RefreshEventLog`](crate::ports::RefreshEventLog)) hands it to a
    /// task of its own: this method must not wait for the store.
    fn refresh_event(&self, _event: &RefreshEvent) {}

    /// The token provider looked up the shared cache: `hit` when it served
    /// a usable token.
    fn shared_cache_lookup(&self, _hit: bool) {}

    /// A caller waited `waited` for a refresh held elsewhere; `hit` when it
    /// got a newer token.
    fn waited(&self, _platform: &Platform, _waited: Duration, _hit: bool) {}

    /// A token read missed the in-process cache and took the slow path
    /// (shared cache, store, refresh). Concurrent callers of one account
    /// that share one resolution count once. (Hits are not reported: see
    /// [`TokenProvider::local_hits`](crate::TokenProvider::local_hits).)
    fn process_cache_miss(&self) {}

    /// A background cycle ended after `elapsed` with `report` (also a
    /// cycle cut short by shutdown: `report.cancelled`).
    fn background_cycle(&self, _report: &CycleReport, _elapsed: Duration) {}
}

/// The observer that reports nothing (the default).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObserver;

impl FlowObserver for NoObserver {}
