//! # refresh-core
//!
//! The heart of oauth-refresh: it keeps OAuth access tokens of many upstream
//! accounts valid with **at most one upstream refresh per refresh-token
//! generation** and **no lost rotation**, whatever the number of callers,
//! tasks and processes.
//!
//! - [`domain`]: [`Account`], [`Credentials`] (typed, redacting), [`Secret`],
//!   [`Platform`], [`RefreshKey`].
//! - [`ports`]: the traits backends and plugins implement —
//!   [`AccountRepository`], [`RefreshLock`], [`TokenCache`],
//!   [`RecoveryStore`], [`RefreshExecutor`], [`Clock`].
//! - [`RefreshFlow`]: single flight → lease → re-read → recovery → double
//!   check → detached upstream call → fenced persist → notify → release.
//! - [`TokenProvider`]: the cache-first request path.
//! - [`BackgroundRefresher`]: the periodic sweep.
//! - [`memory`]: in-memory backends, the reference semantics.
//! - `testing` (feature `testing`): conformance suites every backend runs,
//!   fault-injecting wrappers and a rotating fake upstream.
//! - `Mock*` types of every port (feature `mock`), for other crates' unit
//!   tests.
//!
//! ```
//! use std::sync::Arc;
//! use refresh_core::memory::{InMemoryAccountRepository, InMemoryRefreshLock};
//! use refresh_core::{LockStrategy, RefreshFlow};
//!
//! let repo = Arc::new(InMemoryAccountRepository::new());
//! let lock = Arc::new(InMemoryRefreshLock::default());
//! let flow = RefreshFlow::builder(repo, LockStrategy::single(lock)).build().unwrap();
//! # let _ = flow;
//! ```

pub mod background;
pub mod domain;
pub mod error;
pub mod flow;
pub mod memory;
pub mod policy;
pub mod ports;
pub mod provider;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use background::{BackgroundConfig, BackgroundRefresher, CycleReport, RefreshListener};
pub use domain::{
    Account, AccountId, AccountStatus, AccountType, Credentials, Platform, RefreshKey, Secret,
};
pub use error::{
    ConfigError, CredentialsError, DomainError, FlowError, FlowStage, ProviderError, StorageError,
    StorageErrorKind, TokenError,
};
pub use flow::{FlowConfig, LockStrategy, RefreshFlow, RefreshOutcome};
pub use policy::{BackgroundRefreshPolicy, ProviderRefreshPolicy};
pub use ports::{
    AccountRepository, CachedToken, Clock, RecoveryRecord, RecoveryStore, RefreshExecutor,
    RefreshLock, SystemClock, TokenCache,
};
pub use provider::{AccessToken, ExecutorRegistry, TokenProvider};
