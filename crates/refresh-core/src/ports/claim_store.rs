//! [`ClaimStore`]: generation claims, the write-ahead record that makes "one
//! redemption per refresh-token generation" independent of the locks
//! (invariants 1 and 2).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::domain::{AccountId, Credentials, Fingerprint, Platform};
use crate::error::StorageError;

/// What a claim is on: one refresh-token generation of one platform. The
/// account is not part of the key, so one grant imported into two rows
/// still has a single claim.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClaimKey {
    /// The platform of the token endpoint.
    pub platform: Platform,
    /// SHA-256 of the exact refresh-token bytes the executor sends.
    pub fingerprint: Fingerprint,
}

impl ClaimKey {
    /// The key of `fingerprint` on `platform`.
    pub fn new(platform: Platform, fingerprint: Fingerprint) -> Self {
        Self {
            platform,
            fingerprint,
        }
    }
}

impl fmt::Display for ClaimKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.platform, self.fingerprint)
    }
}

/// The random id of one holding of a claim. Every operation after
/// [`ClaimStore::acquire`] is compare-and-act on it, so a holder whose claim
/// was taken over can change nothing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClaimId(Arc<str>);

impl ClaimId {
    /// A fresh random id (UUID v4).
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string().into())
    }

    /// An id read back from a backend.
    pub fn from_raw(raw: impl Into<Arc<str>>) -> Self {
        Self(raw.into())
    }

    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where a claim is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ClaimState {
    /// Held by a flow that may be presenting the token now. Expires by the
    /// store's clock; an expired open claim may be taken over.
    Open,
    /// The holder's request ended in a way that may have consumed the token
    /// and no answer came: nobody presents it until the claim expires.
    Quarantined,
    /// The upstream's answer is stored in the claim. Never expires, is never
    /// taken over; the next flow applies it.
    Answered,
    /// The answer reached the account, or the upstream declared the
    /// generation dead. Kept for a horizon: a claim attempt on a consumed
    /// generation means the credentials regressed (an old export
    /// re-imported, a backup restored).
    Consumed,
}

impl ClaimState {
    /// Every state, for backends that map them to a column.
    pub const ALL: [Self; 4] = [
        Self::Open,
        Self::Quarantined,
        Self::Answered,
        Self::Consumed,
    ];

    /// The stable lower-case name a backend stores (`open`, `quarantined`,
    /// `answered`, `consumed`); [`FromStr`](std::str::FromStr) reads it back.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Quarantined => "quarantined",
            Self::Answered => "answered",
            Self::Consumed => "consumed",
        }
    }
}

impl fmt::Display for ClaimState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ClaimState {
    type Err = StorageError;

    /// # Errors
    /// An `InvalidData` [`StorageError`] for a name no state has.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == name)
            .ok_or_else(|| {
                StorageError::invalid_data("claim_state", format!("unknown claim state {name:?}"))
            })
    }
}

/// A claim as the store holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// The generation.
    pub key: ClaimKey,
    /// The current holding.
    pub id: ClaimId,
    /// The account whose flow took it.
    pub account_id: AccountId,
    /// The account's `credentials_version` when the claim was taken.
    pub base_version: u64,
    /// Where the claim is in its life.
    pub state: ClaimState,
    /// The keys the refresh changed (new access token, rotated refresh
    /// token, expiry, ...), present in state [`ClaimState::Answered`].
    /// Redacted `Debug`.
    pub answer: Option<Credentials>,
    /// Remaining life by the STORE's clock when it was read; `None` when the
    /// claim never expires (answered). Readers never compare stored
    /// instants with their own clock.
    pub remaining: Option<Duration>,
}

/// What [`ClaimStore::acquire`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimAcquire {
    /// The caller holds the claim (inserted, took over an expired empty
    /// one, or already held it under this id). Only now may it present the
    /// token.
    Won(ClaimId),
    /// Someone else's claim, as it stood at the attempt.
    Existing(Claim),
}

/// The generation-claim store. Required, shared by every instance of the
/// cluster, durable and linearizable: the in-memory store is for a single
/// process only.
///
/// # Contract
/// - [`acquire`](Self::acquire) is ONE atomic step with the store's own
///   clock: insert a claim for `key`, or take over the existing one if it
///   is expired by the store's clock, holds no answer and is not consumed
///   (a consumed claim whose horizon passed may be replaced too). The new
///   holding gets the caller's fresh random [`ClaimId`] and expires `ttl`
///   after the store's now. Otherwise it returns the existing claim
///   unchanged, with its remaining life by the store's clock.
/// - `acquire` is idempotent per id: when the key's open holding already
///   has the caller's id (a retry after an acquire whose answer was lost),
///   it returns `Won` again and changes nothing.
/// - At most one holding of a key is live at any instant; two concurrent
///   `acquire`s of a free key cannot both win.
/// - Every other operation is compare-and-act on the claim id: it returns
///   `Ok(false)` and changes nothing when the key holds another id (or
///   nothing).
/// - An answered claim never expires and is never taken over; only
///   [`mark_consumed`](Self::mark_consumed) or [`remove`](Self::remove) by
///   its id ends it.
/// - After a call returns `Ok`, every later read sees it (no lost
///   acknowledged writes); errors mean "could not ask the store" and leave
///   the outcome unknown.
/// - Errors carry no token material; answers are stored as given and never
///   logged.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait ClaimStore: Send + Sync {
    /// A short name for logs (`memory`, `database`).
    fn name(&self) -> &'static str;

    /// Claims `key` as holding `id` (fresh and random, chosen by the
    /// caller) for `account` at `base_version` for `ttl` by the store's
    /// clock; see the contract.
    ///
    /// # Errors
    /// A [`StorageError`] when the store cannot be asked (the claim may or
    /// may not have been taken: the caller retries with the same id, or
    /// removes it by id). The flow then does not present the token.
    async fn acquire(
        &self,
        key: &ClaimKey,
        id: &ClaimId,
        account: AccountId,
        base_version: u64,
        ttl: Duration,
    ) -> Result<ClaimAcquire, StorageError>;

    /// The claim of `key`, if any, with its remaining life by the store's
    /// clock.
    ///
    /// # Errors
    /// A [`StorageError`] when the store cannot be asked.
    async fn get(&self, key: &ClaimKey) -> Result<Option<Claim>, StorageError>;

    /// Sets an open claim's expiry to `ttl` after the store's now.
    /// `Ok(false)` when the id does not match or the claim is no longer
    /// open.
    ///
    /// # Errors
    /// A [`StorageError`] when the store cannot be asked.
    async fn extend(
        &self,
        key: &ClaimKey,
        id: &ClaimId,
        ttl: Duration,
    ) -> Result<bool, StorageError>;

    /// Marks an open claim quarantined, expiring `ttl` after the store's
    /// now. `Ok(false)` when the id does not match or the claim is not
    /// open.
    ///
    /// # Errors
    /// A [`StorageError`] when the store cannot be asked.
    async fn quarantine(
        &self,
        key: &ClaimKey,
        id: &ClaimId,
        ttl: Duration,
    ) -> Result<bool, StorageError>;

    /// Stores the upstream's answer in an open or quarantined claim; from
    /// then on the claim never expires. `Ok(false)` when the id does not
    /// match or the claim is consumed.
    ///
    /// # Errors
    /// A [`StorageError`] when the store cannot be asked.
    async fn save_answer(
        &self,
        key: &ClaimKey,
        id: &ClaimId,
        answer: &Credentials,
    ) -> Result<bool, StorageError>;

    /// Marks the claim consumed, drops its answer, and keeps it for `keep`
    /// by the store's clock. `Ok(false)` when the id does not match.
    ///
    /// # Errors
    /// A [`StorageError`] when the store cannot be asked.
    async fn mark_consumed(
        &self,
        key: &ClaimKey,
        id: &ClaimId,
        keep: Duration,
    ) -> Result<bool, StorageError>;

    /// Deletes the claim. `Ok(false)` when the id does not match.
    ///
    /// # Errors
    /// A [`StorageError`] when the store cannot be asked.
    async fn remove(&self, key: &ClaimKey, id: &ClaimId) -> Result<bool, StorageError>;

    /// Deletes up to `limit` claims that are over: consumed claims past
    /// their horizon and expired empty ones. Never deletes an answered
    /// claim. Returns how many were deleted.
    ///
    /// # Errors
    /// A [`StorageError`] when the store cannot be asked.
    async fn purge(&self, limit: usize) -> Result<u64, StorageError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_states_round_trip_through_their_stored_names() {
        for state in ClaimState::ALL {
            assert_eq!(state.as_str().parse::<ClaimState>().unwrap(), state);
        }
        let error = "expired".parse::<ClaimState>().unwrap_err();
        assert_eq!(error.kind(), crate::StorageErrorKind::InvalidData);
    }
}
