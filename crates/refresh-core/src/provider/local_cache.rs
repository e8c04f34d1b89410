//! [`LocalCache`]: the in-process token cache in front of everything else.

use std::time::Duration;

use chrono::{DateTime, Utc};
use moka::ops::compute::Op;

use super::AccessToken;
use crate::domain::AccountId;
use crate::policy::UNKNOWN_EXPIRY_TTL;

#[derive(Clone)]
struct Entry {
    token: AccessToken,
    valid_until: DateTime<Utc>,
}

/// A bounded concurrent map (moka) from account id to token. Validity is
/// checked against the provider's [`Clock`](crate::Clock) on every read, so
/// TTLs follow paused tokio time in tests; moka's own TTL only bounds
/// memory.
pub(crate) struct LocalCache {
    entries: moka::sync::Cache<AccountId, Entry>,
}

impl LocalCache {
    pub(crate) fn new(capacity: u64) -> Self {
        Self {
            entries: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(UNKNOWN_EXPIRY_TTL)
                .build(),
        }
    }

    pub(crate) fn get(&self, id: AccountId, now: DateTime<Utc>) -> Option<AccessToken> {
        self.entries
            .get(&id)
            .filter(|entry| entry.valid_until > now)
            .map(|entry| entry.token)
    }

    /// Stores `token` for `ttl` unless a newer version is cached and valid.
    pub(crate) fn put(&self, token: &AccessToken, ttl: Duration, now: DateTime<Utc>) {
        let valid_until = crate::domain::add_duration(now, ttl);
        let entry = Entry {
            token: token.clone(),
            valid_until,
        };
        self.entries
            .entry(token.account_id)
            .and_compute_with(|existing| match existing {
                Some(old)
                    if old.value().valid_until > now
                        && old.value().token.version > token.version =>
                {
                    Op::Nop
                }
                _ => Op::Put(entry),
            });
    }

    pub(crate) fn invalidate(&self, id: AccountId) {
        self.entries.invalidate(&id);
    }
}
