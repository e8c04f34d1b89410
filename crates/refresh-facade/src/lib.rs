//! # oauth-refresh
//!
//! Keeps the OAuth access tokens of many upstream accounts valid, with at
//! most one upstream refresh per refresh-token generation across a cluster
//! and no lost rotation. This crate wires the pieces together:
//!
//! - [`RefreshStack::builder`]: a database URL (SQLite by default,
//!   PostgreSQL by scheme), optionally Redis, the providers, the flow and
//!   background settings → the [`TokenProvider`], the [`RefreshFlow`], the
//!   [`BackgroundRefresher`], the repository and the catalog.
//! - [`import`]: the account import format, checked entry by entry, and
//!   the generation-claim check that refuses a token already redeemed.
//! - [`keyfile`]: the sealing key file `oauth-refresh.key`.
//! - [`login`]: account onboarding: OAuth logins that create or
//!   re-authorize accounts (sessions parked in the database), and imports
//!   of the official CLIs' credential files.
//! - [`events`]: the shared history of refresh runs (the status page's).
//! - `metrics` (feature `metrics`): Prometheus metrics.
//! - the `oauth-refresh` binary (feature `cli`): `migrate`, `accounts`,
//!   `token`, `refresh`, `run`, `serve`, `demo`, `config`.
//!
//! ```no_run
//! use refresh_facade::prelude::*;
//!
//! # async fn quickstart() -> Result<(), Box<dyn std::error::Error>> {
//! let stack = RefreshStack::builder()
//!     .database("sqlite://oauth-refresh.db?mode=rwc")
//!     .migrate(true)
//!     .encryption_key(&SealingKey::generate())
//!     .build()
//!     .await?;
//! let token = stack.tokens().access_token_by_id(AccountId(1)).await?;
//! # drop(token); Ok(()) }
//! ```
//!
//! The items below are re-exported by name from the crates that define
//! them (`refresh-core`, `refresh-seaorm`, `refresh-providers`,
//! `refresh-redis`); those crates stay reachable as [`core`], [`seaorm`],
//! [`providers`] and `redis` for everything else.

pub mod events;
pub mod import;
pub mod keyfile;
pub mod login;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod prelude;
mod stack;

pub use stack::{
    DatabaseKind, ImportRefused, NotReady, RefreshStack, RefreshStackBuilder, StackError,
    StoreCalls,
};

pub use refresh_core as core;
pub use refresh_providers as providers;
#[cfg(feature = "redis")]
pub use refresh_redis as redis;
pub use refresh_seaorm as seaorm;

pub use refresh_core::{
    AccessToken, Account, AccountCatalog, AccountFilter, AccountId, AccountRepository,
    AccountStatus, AccountType, BackgroundConfig, BackgroundRefresher, ClaimStore, ConfigError,
    Credentials, CycleReport, ExecutorRegistry, FlowConfig, FlowError, FlowObserver, LockStrategy,
    MetadataUpdate, NewAccount, Platform, ProviderError, ProviderRefreshPolicy, RefreshExecutor,
    RefreshFlow, RefreshOutcome, Secret, StorageError, StorageErrorKind, TokenError, TokenProvider,
};
pub use refresh_providers::{ProvidersConfig, register_all};
#[cfg(feature = "redis")]
pub use refresh_redis::{RedisBackend, RedisConfig};
pub use refresh_seaorm::{DatabaseConfig, SeaOrmBackend, Sealing, SealingConfig, SealingKey};
pub use tokio_util::sync::CancellationToken;
