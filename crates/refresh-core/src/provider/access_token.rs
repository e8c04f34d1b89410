//! [`AccessToken`]: what the request path hands out.

use chrono::{DateTime, Utc};

use crate::domain::{Account, AccountId, Secret};
use crate::ports::CachedToken;

/// A currently valid access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToken {
    /// The account it belongs to.
    pub account_id: AccountId,
    /// The token (redacted `Debug`).
    pub token: Secret,
    /// Its expiry, when known.
    pub expires_at: Option<DateTime<Utc>>,
    /// The `credentials_version` it was read from.
    pub version: u64,
}

impl AccessToken {
    pub(crate) fn from_cached(account_id: AccountId, cached: CachedToken) -> Self {
        Self {
            account_id,
            token: cached.access_token,
            expires_at: cached.expires_at,
            version: cached.version,
        }
    }

    pub(crate) fn to_cached(&self) -> CachedToken {
        CachedToken {
            access_token: self.token.clone(),
            version: self.version,
            expires_at: self.expires_at,
        }
    }

    /// The token stored in an account's credentials, if any.
    pub(crate) fn of_account(account: &Account) -> Option<Self> {
        Some(Self {
            account_id: account.id,
            token: account.credentials.access_token()?,
            expires_at: account.credentials.expires_at().ok().flatten(),
            version: account.credentials_version,
        })
    }
}
