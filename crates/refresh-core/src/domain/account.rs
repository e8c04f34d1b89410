//! [`Account`]: one upstream account row.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{AccountId, AccountStatus, AccountType, Credentials, Platform, ProxyUrl};

/// An upstream account as stored.
///
/// The credentials are owned by the refresh flow and written only through
/// [`AccountRepository::compare_and_set_credentials`](crate::ports::AccountRepository::compare_and_set_credentials),
/// which bumps [`credentials_version`](Account::credentials_version). Status,
/// error and scheduling fields belong to others and are never touched by a
/// credential write (invariant 3).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    /// Stable id; lock and cache keys derive from it alone.
    pub id: AccountId,
    /// Human-readable name (logs only).
    pub name: String,
    /// Upstream provider.
    pub platform: Platform,
    /// Authentication type; only `oauth` is refreshed.
    pub account_type: AccountType,
    /// Scheduling status.
    pub status: AccountStatus,
    /// Sanitized reason of the last non-retryable failure.
    pub error_message: Option<String>,
    /// Token material.
    pub credentials: Credentials,
    /// Non-secret per-platform data (organization ids, tier timestamps).
    pub extra: Map<String, Value>,
    /// The proxy every upstream call of this account goes through; `None`
    /// = direct. Executors fail closed: an unusable proxy is an error, never
    /// a silent direct connection.
    pub proxy: Option<ProxyUrl>,
    /// Incremented by every credential write; the compare-and-set fence.
    pub credentials_version: u64,
    /// Denormalized access-token expiry, kept by the repository for the
    /// due-accounts index. `None` when unknown.
    pub expires_at: Option<DateTime<Utc>>,
    /// Temporarily unschedulable until this instant.
    pub temp_unschedulable_until: Option<DateTime<Utc>>,
    /// Why the account is temporarily unschedulable.
    pub temp_unschedulable_reason: Option<String>,
    /// Scheduling priority (lower first); not used by refresh.
    pub priority: i32,
}

impl Account {
    /// A new active account at version 0 with `expires_at` derived from the
    /// credentials.
    pub fn new(
        id: impl Into<AccountId>,
        platform: Platform,
        account_type: AccountType,
        credentials: Credentials,
    ) -> Self {
        let id = id.into();
        let expires_at = credentials.expires_at().ok().flatten();
        Self {
            id,
            name: format!("account-{id}"),
            platform,
            account_type,
            status: AccountStatus::Active,
            error_message: None,
            credentials,
            extra: Map::new(),
            proxy: None,
            credentials_version: 0,
            expires_at,
            temp_unschedulable_until: None,
            temp_unschedulable_reason: None,
            priority: 0,
        }
    }

    /// An OAuth account; shorthand for [`Account::new`].
    pub fn oauth(id: impl Into<AccountId>, platform: Platform, credentials: Credentials) -> Self {
        Self::new(id, platform, AccountType::OAuth, credentials)
    }

    /// Replaces the credentials and re-derives `expires_at` (the repository
    /// calls this when it applies a credential write).
    pub fn set_credentials(&mut self, credentials: Credentials) {
        self.credentials = credentials;
        self.derive_expires_at();
    }

    /// Re-derives the denormalized `expires_at` from the credentials
    /// (unknown when missing or unreadable). Repositories call it on insert
    /// and on every credential write.
    pub fn derive_expires_at(&mut self) {
        self.expires_at = self.credentials.expires_at().ok().flatten();
    }
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("platform", &self.platform)
            .field("account_type", &self.account_type)
            .field("status", &self.status)
            .field("error_message", &self.error_message)
            .field("credentials", &self.credentials)
            .field("extra_keys", &self.extra.keys().collect::<Vec<_>>())
            .field("proxy", &self.proxy)
            .field("credentials_version", &self.credentials_version)
            .field("expires_at", &self.expires_at)
            .field("temp_unschedulable_until", &self.temp_unschedulable_until)
            .finish_non_exhaustive()
    }
}
