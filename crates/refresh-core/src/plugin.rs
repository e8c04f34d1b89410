//! One import for provider plugins and backends:
//! `use refresh_core::plugin::*;` brings the port traits, every type their
//! signatures use, the parsing helpers, and the crates the signatures come
//! from (`async_trait`, `chrono`, `serde_json`, and tokio's `Instant` of
//! [`RefreshContext::deadline`]), so a plugin's own `Cargo.toml` needs
//! `refresh-core` alone.

pub use async_trait::async_trait;
pub use chrono;
pub use serde_json;
pub use tokio::time::Instant;

pub use crate::domain::{
    Account, AccountId, AccountStatus, AccountType, Credentials, ExpiryRule, Fingerprint,
    GrantFields, Platform, ProxyUrl, RefreshKey, Secret, TokenGrant, keys,
};
pub use crate::error::{
    OAuthErrorBody, OAuthErrorCode, ProviderError, StorageError, StorageErrorKind,
    parse_retry_after, parse_retry_after_with_date, sanitize_description,
};
pub use crate::ports::{
    AccountCatalog, AccountFilter, AccountPage, AccountRepository, CachedToken, CasExpectation,
    CasOutcome, Claim, ClaimAcquire, ClaimId, ClaimKey, ClaimState, ClaimStore, Clock,
    CorruptAccount, DueCursor, DuePage, Lease, LeaseOwner, MetadataUpdate, NewAccount, PutOutcome,
    RefreshContext, RefreshExecutor, RefreshLock, RefreshNotice, SealError, Sealer, StatusCounts,
    TokenCache,
};
