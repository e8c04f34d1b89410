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
//!   [`AccountRepository`], [`ClaimStore`], [`RefreshLock`], [`TokenCache`],
//!   [`RefreshExecutor`], [`Clock`] — and the extension points
//!   [`ExecutorRegistry`] and [`RefreshListener`].
//! - [`plugin`]: one import for a provider plugin or a backend.
//! - [`RefreshFlow`]: single flight → lease → re-read → due check → claim
//!   the generation → re-read → upstream call within a hard deadline →
//!   answer into the claim → fenced persist → claim consumed → notify →
//!   release.
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
//! use refresh_core::memory::{InMemoryAccountRepository, InMemoryClaimStore, InMemoryRefreshLock};
//! use refresh_core::{LockStrategy, RefreshFlow};
//!
//! let repo = Arc::new(InMemoryAccountRepository::new());
//! let lock = Arc::new(InMemoryRefreshLock::default());
//! // One process: the in-memory claim store is the explicit opt-in.
//! let claims = Arc::new(InMemoryClaimStore::single_process());
//! let flow = RefreshFlow::builder(repo, LockStrategy::single(lock), claims).build().unwrap();
//! # let _ = flow;
//! ```

pub mod background;
mod concurrency;
pub mod domain;
pub mod error;
pub mod flow;
pub mod memory;
pub mod plugin;
pub mod policy;
pub mod ports;
pub mod provider;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use background::{BackgroundConfig, BackgroundRefresher, CycleReport};
pub use domain::{
    Account, AccountId, AccountStatus, AccountType, Credentials, ExpiryRule, Fingerprint,
    GrantFields, Platform, RefreshKey, Secret, TokenGrant,
};
pub use error::{
    ConfigError, CredentialsError, DomainError, FlowError, FlowStage, OAuthErrorCode,
    ProviderError, StorageError, StorageErrorKind, TokenError,
};
pub use flow::{FlowConfig, LockStrategy, RefreshFlow, RefreshFlowBuilder, RefreshOutcome};
pub use policy::{BackgroundRefreshPolicy, ProviderRefreshPolicy};
pub use ports::{
    AccountRepository, CachedToken, CasExpectation, CasOutcome, Claim, ClaimAcquire, ClaimId,
    ClaimKey, ClaimState, ClaimStore, Clock, DueCursor, ExecutorRegistry, Lease, LeaseOwner,
    ManualClock, PutOutcome, RefreshContext, RefreshExecutor, RefreshListener, RefreshLock,
    RefreshNotice, SystemClock, TokenCache, TokioClock,
};
pub use provider::{AccessToken, TokenProvider};
