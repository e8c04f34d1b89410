//! [`RefreshEventLog`]: the history of refresh runs every process of a
//! deployment shares (the operator status page reads it).

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::{AccountId, Platform};
use crate::error::StorageError;

/// The longest outcome or lock layer name a log stores (longer ones are
/// cut).
pub const MAX_EVENT_NAME_CHARS: usize = 32;

/// One run of the refresh flow for one account, as the flow reports it
/// ([`FlowObserver::refresh_event`](crate::ports::FlowObserver::refresh_event))
/// and a [`RefreshEventLog`] keeps it. Nothing secret: names, counts and
/// times only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshEvent {
    /// The account the run was for.
    pub account_id: AccountId,
    /// Its platform.
    pub platform: Platform,
    /// When the run ended, by the flow's clock.
    pub at: DateTime<Utc>,
    /// `refreshed`, `recovered`, `still_fresh`, `held_elsewhere`, or the
    /// failed stage's name (as
    /// [`FlowObserver::refresh_finished`](crate::ports::FlowObserver::refresh_finished)).
    pub outcome: String,
    /// How long the run took.
    pub duration: Duration,
    /// The lock layers whose lease the run held, joined with `+`
    /// (`redis+database`), `none` when it refreshed without a lease, or
    /// `None` when it got no lease (held elsewhere, lock unavailable).
    pub lock_layer: Option<String>,
    /// Upstream token requests the run sent (0 when none was needed or an
    /// answer left in a claim was applied).
    pub attempts: u32,
}

impl RefreshEvent {
    /// Whether the outcome is a failure (not one of the four success
    /// names).
    pub fn is_failure(&self) -> bool {
        !matches!(
            self.outcome.as_str(),
            "refreshed" | "recovered" | "still_fresh" | "held_elsewhere"
        )
    }
}

/// How many runs of one platform ended with one outcome in one hour.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct HourlyCount {
    /// The start of the hour (UTC, whole hour).
    pub hour: DateTime<Utc>,
    /// The platform.
    pub platform: Platform,
    /// The outcome name.
    pub outcome: String,
    /// Runs counted.
    pub count: u64,
}

/// The start of the hour `at` falls in.
pub fn hour_of(at: DateTime<Utc>) -> DateTime<Utc> {
    let secs = at.timestamp();
    DateTime::from_timestamp(secs - secs.rem_euclid(3600), 0).unwrap_or(at)
}

/// The bounded, shared history of refresh runs.
///
/// # Contract
/// - [`append`](Self::append) stores the event as given (outcome and lock
///   layer cut to [`MAX_EVENT_NAME_CHARS`] characters; the time kept to
///   the millisecond) and every process sharing the store sees it.
/// - [`recent`](Self::recent) returns at most `limit` events of one account,
///   newest first (ties in time: the later appended first).
/// - [`latest`](Self::latest) returns, for each of the given accounts that
///   has events, its newest (the first `recent(account, 1)` returns), in
///   no particular order.
/// - [`hourly`](Self::hourly) counts the events at or after `since` by
///   [`hour_of`] their time, platform and outcome; sorted by hour,
///   platform, outcome; no zero rows.
/// - [`purge`](Self::purge) deletes at most `limit` events older than
///   `before` (the oldest first) and never a newer one; it returns how
///   many it deleted, so a caller repeats it while it returns `limit`.
/// - [`purge_excess`](Self::purge_excess) deletes at most `limit` events
///   that are not among the newest `keep` of their account (newest as
///   [`recent`](Self::recent) orders them: by time, ties by append order),
///   and never one that is; it returns how many it deleted, so a caller
///   repeats it while it returns `limit`. Afterwards (repeated to the end,
///   no append in between) `recent(account, usize::MAX)` of every account
///   is its former newest `keep`.
#[async_trait]
pub trait RefreshEventLog: Send + Sync {
    /// Stores `event`.
    ///
    /// # Errors
    /// A [`StorageError`] when the store fails; nothing is half-stored.
    async fn append(&self, event: &RefreshEvent) -> Result<(), StorageError>;

    /// The newest `limit` events of `account`, newest first.
    ///
    /// # Errors
    /// A [`StorageError`] when the store fails or a row cannot be read.
    async fn recent(
        &self,
        account: AccountId,
        limit: usize,
    ) -> Result<Vec<RefreshEvent>, StorageError>;

    /// The newest event of each of `accounts` (those without events have
    /// none): a page's "last refresh" column in one call.
    ///
    /// # Errors
    /// A [`StorageError`] when the store fails or a row cannot be read.
    async fn latest(&self, accounts: &[AccountId]) -> Result<Vec<RefreshEvent>, StorageError>;

    /// Counts per hour, platform and outcome of the events since `since`.
    ///
    /// # Errors
    /// A [`StorageError`] when the store fails or a row cannot be read.
    async fn hourly(&self, since: DateTime<Utc>) -> Result<Vec<HourlyCount>, StorageError>;

    /// Deletes at most `limit` events older than `before`.
    ///
    /// # Errors
    /// A [`StorageError`] when the store fails; what was deleted stays
    /// deleted, nothing newer is touched.
    async fn purge(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, StorageError>;

    /// Deletes at most `limit` events beyond the newest `keep` of their
    /// account: the per-account bound of the history.
    ///
    /// # Errors
    /// A [`StorageError`] when the store fails; what was deleted stays
    /// deleted, no event among an account's newest `keep` is touched.
    async fn purge_excess(&self, keep: usize, limit: usize) -> Result<u64, StorageError>;
}

/// `name` cut to [`MAX_EVENT_NAME_CHARS`] characters.
pub fn event_name(name: &str) -> String {
    name.chars().take(MAX_EVENT_NAME_CHARS).collect()
}
