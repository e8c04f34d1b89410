//! [`InMemoryRefreshEventLog`]: the reference [`RefreshEventLog`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};

use crate::domain::AccountId;
use crate::error::StorageError;
use crate::ports::{HourlyCount, RefreshEvent, RefreshEventLog, event_name, hour_of};

/// Events in memory, oldest first, at most `capacity` of them (the oldest
/// are dropped first); single-process.
#[derive(Debug)]
pub struct InMemoryRefreshEventLog {
    events: Mutex<VecDeque<RefreshEvent>>,
    capacity: usize,
}

impl Default for InMemoryRefreshEventLog {
    /// Keeps up to 100 000 events.
    fn default() -> Self {
        Self::with_capacity(100_000)
    }
}

impl InMemoryRefreshEventLog {
    /// A log keeping at most `capacity` events (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            events: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
        }
    }

    /// How many events it holds.
    pub fn len(&self) -> usize {
        self.events().len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn events(&self) -> std::sync::MutexGuard<'_, VecDeque<RefreshEvent>> {
        self.events.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `at` to the millisecond, as the database backends keep it.
fn to_millis(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::milliseconds(1)).unwrap_or(at)
}

#[async_trait]
impl RefreshEventLog for InMemoryRefreshEventLog {
    async fn append(&self, event: &RefreshEvent) -> Result<(), StorageError> {
        let mut stored = event.clone();
        stored.at = to_millis(stored.at);
        stored.outcome = event_name(&stored.outcome);
        stored.lock_layer = stored.lock_layer.as_deref().map(event_name);
        let mut events = self.events();
        if events.len() >= self.capacity {
            events.pop_front();
        }
        events.push_back(stored);
        Ok(())
    }

    async fn recent(
        &self,
        account: AccountId,
        limit: usize,
    ) -> Result<Vec<RefreshEvent>, StorageError> {
        let events = self.events();
        let mut mine: Vec<(usize, &RefreshEvent)> = events
            .iter()
            .enumerate()
            .filter(|(_, e)| e.account_id == account)
            .collect();
        mine.sort_by(|(i, a), (j, b)| b.at.cmp(&a.at).then(j.cmp(i)));
        Ok(mine
            .into_iter()
            .take(limit)
            .map(|(_, e)| e.clone())
            .collect())
    }

    async fn latest(&self, accounts: &[AccountId]) -> Result<Vec<RefreshEvent>, StorageError> {
        let events = self.events();
        let mut newest: BTreeMap<AccountId, (DateTime<Utc>, usize)> = BTreeMap::new();
        for (i, e) in events.iter().enumerate() {
            if accounts.contains(&e.account_id) {
                let entry = newest.entry(e.account_id).or_insert((e.at, i));
                *entry = (*entry).max((e.at, i));
            }
        }
        Ok(newest
            .into_values()
            .map(|(_, i)| events[i].clone())
            .collect())
    }

    async fn hourly(&self, since: DateTime<Utc>) -> Result<Vec<HourlyCount>, StorageError> {
        let mut counts = BTreeMap::new();
        for event in self.events().iter().filter(|e| e.at >= since) {
            *counts
                .entry((
                    hour_of(event.at),
                    event.platform.clone(),
                    event.outcome.clone(),
                ))
                .or_insert(0u64) += 1;
        }
        Ok(counts
            .into_iter()
            .map(|((hour, platform, outcome), count)| HourlyCount {
                hour,
                platform,
                outcome,
                count,
            })
            .collect())
    }

    async fn purge(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, StorageError> {
        let mut events = self.events();
        let mut old: Vec<(DateTime<Utc>, usize)> = events
            .iter()
            .enumerate()
            .filter(|(_, e)| e.at < before)
            .map(|(i, e)| (e.at, i))
            .collect();
        old.sort();
        old.truncate(limit);
        let mut doomed: Vec<usize> = old.into_iter().map(|(_, i)| i).collect();
        doomed.sort_unstable_by(|a, b| b.cmp(a));
        for index in &doomed {
            events.remove(*index);
        }
        Ok(doomed.len() as u64)
    }

    async fn purge_excess(&self, keep: usize, limit: usize) -> Result<u64, StorageError> {
        let mut events = self.events();
        let mut by_account: BTreeMap<AccountId, Vec<(DateTime<Utc>, usize)>> = BTreeMap::new();
        for (i, e) in events.iter().enumerate() {
            by_account.entry(e.account_id).or_default().push((e.at, i));
        }
        // Beyond the newest `keep` of each account (newest: later time,
        // then later appended), the oldest first.
        let mut excess: Vec<(DateTime<Utc>, usize)> = Vec::new();
        for mut mine in by_account.into_values() {
            mine.sort_by(|a, b| b.cmp(a));
            excess.extend(mine.into_iter().skip(keep));
        }
        excess.sort();
        excess.truncate(limit);
        let mut doomed: Vec<usize> = excess.into_iter().map(|(_, i)| i).collect();
        doomed.sort_unstable_by(|a, b| b.cmp(a));
        for index in &doomed {
            events.remove(*index);
        }
        Ok(doomed.len() as u64)
    }
}
