//! [`LocalCache`]: the in-process token cache in front of everything else.
//!
//! The warm read of the request path is one lookup here, so it is built for
//! that read: shards of `RwLock<HashMap>` keyed by account id with a
//! multiplicative hash (no SipHash), validity compared with the provider's
//! clock (so TTLs follow paused tokio time and manual clocks in tests), and
//! no per-read bookkeeping: a read takes one shard's read lock, compares one
//! instant and clones one `Arc`. Memory is bounded by capacity: a full shard
//! first drops its expired entries, then an arbitrary one.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rustc_hash::FxHasher;

use super::AccessToken;
use crate::domain::AccountId;

/// Shards of the map: enough that reads of different accounts rarely share
/// a lock's cache line on any realistic core count.
const SHARDS: usize = 64;

type Shard = HashMap<AccountId, Entry, BuildHasherDefault<FxHasher>>;

struct Entry {
    token: AccessToken,
    valid_until: DateTime<Utc>,
}

/// One shard: its map, and the hits it served (counted next to the lock
/// word the read writes anyway, so counting costs no extra shared line).
#[derive(Default)]
struct Slot {
    map: RwLock<Shard>,
    hits: AtomicU64,
}

/// A bounded concurrent map from account id to token.
pub(crate) struct LocalCache {
    shards: Box<[Slot]>,
    per_shard: usize,
}

impl LocalCache {
    pub(crate) fn new(capacity: u64) -> Self {
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX);
        Self {
            shards: (0..SHARDS).map(|_| Slot::default()).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    fn shard(&self, id: AccountId) -> &Slot {
        // Fibonacci hashing: the top bits of id × 2^64/φ spread sequential
        // ids over the shards.
        let mixed = (id.0 as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        &self.shards[(mixed >> 58) as usize % SHARDS]
    }

    fn read(slot: &Slot) -> RwLockReadGuard<'_, Shard> {
        slot.map.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self, id: AccountId) -> RwLockWriteGuard<'_, Shard> {
        self.shard(id)
            .map
            .write()
            .unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn get(&self, id: AccountId, now: DateTime<Utc>) -> Option<AccessToken> {
        let slot = self.shard(id);
        let token = Self::read(slot)
            .get(&id)
            .filter(|entry| entry.valid_until > now)
            .map(|entry| entry.token.clone());
        if token.is_some() {
            slot.hits.fetch_add(1, Ordering::Relaxed);
        }
        token
    }

    /// Reads served so far.
    pub(crate) fn hits(&self) -> u64 {
        self.shards
            .iter()
            .map(|slot| slot.hits.load(Ordering::Relaxed))
            .sum()
    }

    /// Stores `token` for `ttl` unless a newer version is cached and valid.
    pub(crate) fn put(&self, token: &AccessToken, ttl: Duration, now: DateTime<Utc>) {
        let id = token.account_id;
        let mut shard = self.write(id);
        if let Some(old) = shard.get(&id)
            && old.valid_until > now
            && old.token.version > token.version
        {
            return;
        }
        if shard.len() >= self.per_shard && !shard.contains_key(&id) {
            shard.retain(|_, entry| entry.valid_until > now);
            if shard.len() >= self.per_shard
                && let Some(victim) = shard.keys().next().copied()
            {
                shard.remove(&victim);
            }
        }
        let entry = Entry {
            token: token.clone(),
            valid_until: crate::domain::add_duration(now, ttl),
        };
        shard.insert(id, entry);
    }

    pub(crate) fn invalidate(&self, id: AccountId) {
        self.write(id).remove(&id);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.iter().map(|s| Self::read(s).len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Secret;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn token(id: i64, version: u64) -> AccessToken {
        AccessToken {
            account_id: AccountId(id),
            token: Secret::from(format!("at-{id}-{version}")),
            expires_at: None,
            version,
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn an_entry_is_served_until_its_ttl_and_not_after() {
        let cache = LocalCache::new(10);
        cache.put(&token(1, 0), secs(60), now());
        assert_eq!(cache.get(AccountId(1), now()).unwrap().version, 0);
        assert_eq!(cache.hits(), 1, "a hit is counted");
        let later = now() + chrono::Duration::seconds(59);
        assert!(cache.get(AccountId(1), later).is_some());
        let lapsed = now() + chrono::Duration::seconds(60);
        assert!(cache.get(AccountId(1), lapsed).is_none());
        assert!(cache.get(AccountId(2), now()).is_none());
    }

    #[test]
    fn a_valid_newer_version_is_never_replaced_by_an_older_one() {
        let cache = LocalCache::new(10);
        cache.put(&token(1, 5), secs(60), now());
        cache.put(&token(1, 4), secs(600), now());
        assert_eq!(cache.get(AccountId(1), now()).unwrap().version, 5);
        // Once the newer one lapsed, an older one may be cached again.
        let later = now() + chrono::Duration::seconds(61);
        cache.put(&token(1, 4), secs(60), later);
        assert_eq!(cache.get(AccountId(1), later).unwrap().version, 4);
        cache.invalidate(AccountId(1));
        assert!(cache.get(AccountId(1), later).is_none());
    }

    #[test]
    fn memory_is_bounded_by_capacity_and_expired_entries_go_first() {
        let cache = LocalCache::new(SHARDS as u64 * 2);
        for id in 0..10_000 {
            cache.put(&token(id, 0), secs(60), now());
        }
        assert!(cache.len() <= SHARDS * 2, "{}", cache.len());

        // Expired entries are dropped before live ones when a shard fills.
        let cache = LocalCache::new(SHARDS as u64);
        let ids: Vec<i64> = (0..)
            .filter(|id| std::ptr::eq(cache.shard(AccountId(*id)), cache.shard(AccountId(0))))
            .take(2)
            .collect();
        cache.put(&token(ids[0], 0), secs(10), now());
        let later = now() + chrono::Duration::seconds(20);
        cache.put(&token(ids[1], 0), secs(60), later);
        assert!(cache.get(AccountId(ids[1]), later).is_some());
        assert_eq!(cache.len(), 1, "the expired entry made room");
    }
}
