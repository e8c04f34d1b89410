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
//!   [`LoginSessionStore`], [`RefreshExecutor`], [`Clock`] — and the extension points
//!   [`ExecutorRegistry`] and [`RefreshListener`].
//! - [`plugin`]: one import for a provider plugin or a backend.
//! - [`RefreshFlow`]: single flight → lease → re-read → due check → claim
//!   the generation → re-read → upstream call within a hard deadline →
//!   answer into the claim → fenced persist → notify → claim consumed →
//!   release.
//! - [`TokenProvider`]: the cache-first request path.
//! - [`BackgroundRefresher`]: the periodic sweep.
//! - [`memory`]: in-memory backends, the reference semantics.
//! - `testing` (feature `testing`): conformance suites every backend runs,
//!   fault-injecting wrappers and a rotating fake upstream.
//! - `Mock*` types of every port (feature `mock`), for other crates' unit
//!   tests.
//!
//! One process, one account, a plugin executor (a real one POSTs
//! `ctx.refresh_token` to its token endpoint):
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use refresh_core::memory::{InMemoryAccountRepository, InMemoryClaimStore, InMemoryRefreshLock};
//! use refresh_core::plugin::*;
//! use refresh_core::{LockStrategy, RefreshFlow, RefreshOutcome};
//!
//! struct Acme;
//!
//! #[async_trait]
//! impl RefreshExecutor for Acme {
//!     fn platform(&self) -> Platform {
//!         "acme".parse().expect("a plugin platform name")
//!     }
//!
//!     async fn refresh(&self, account: &Account, ctx: &RefreshContext) -> Result<Credentials, ProviderError> {
//!         assert_eq!(ctx.refresh_token.expose(), "rt-1");
//!         let body = br#"{"access_token":"at-2","refresh_token":"rt-2","expires_in":3600}"#;
//!         let grant = TokenGrant::from_json(body)?;
//!         let issued = grant.to_credentials(ctx.now(), ExpiryRule::EXACT, GrantFields::default());
//!         Ok(issued.merged_over(&account.credentials))
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let credentials = Credentials::new().with("access_token", "at-1").with("refresh_token", "rt-1");
//! let account = Account::oauth(1, "acme".parse().unwrap(), credentials);
//! let repo = Arc::new(InMemoryAccountRepository::with_accounts([account.clone()]));
//! let lock = Arc::new(InMemoryRefreshLock::default());
//! // One process: the in-memory claim store is the explicit opt-in; a
//! // cluster shares a database claim store.
//! let claims = Arc::new(InMemoryClaimStore::single_process());
//! let flow = RefreshFlow::builder(repo, LockStrategy::single(lock), claims).build().unwrap();
//!
//! let executor: Arc<dyn RefreshExecutor> = Arc::new(Acme);
//! // Refresh when the token expires within 3 minutes (unknown expiry counts as due).
//! let outcome = flow.refresh_if_needed(&account, &executor, Duration::from_secs(180)).await;
//! let Ok(RefreshOutcome::Refreshed { account, .. }) = outcome else { panic!("{outcome:?}") };
//! assert_eq!(account.credentials.refresh_token().unwrap().expose(), "rt-2");
//! # });
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
    GrantFields, Platform, ProxyUrl, RefreshKey, Secret, TokenGrant,
};
pub use error::{
    ConfigError, CredentialsError, DomainError, FlowError, FlowStage, OAuthErrorCode,
    ProviderError, RefreshTokenTaken, StorageError, StorageErrorKind, TokenError, TokenHolder,
};
pub use flow::{
    FlowConfig, LockStrategy, RateLimit, RefreshFlow, RefreshFlowBuilder, RefreshOutcome,
};
pub use policy::{BackgroundRefreshPolicy, ProviderRefreshPolicy};
pub use ports::{
    AccountCatalog, AccountFilter, AccountPage, AccountRepository, CachedToken, CasExpectation,
    CasOutcome, Claim, ClaimAcquire, ClaimId, ClaimKey, ClaimState, ClaimStore, Clock,
    CorruptAccount, DueCursor, DuePage, ExecutorRegistry, FlowObserver, Lease, LeaseOwner,
    LoginSessionStore, LoginTake, ManualClock, MetadataUpdate, NewAccount, PendingLogin,
    PutOutcome, RefreshContext, RefreshEvent, RefreshEventLog, RefreshExecutor, RefreshListener,
    RefreshLock, RefreshNotice, SealError, Sealer, StatusCounts, SystemClock, TokenCache,
    TokioClock,
};
pub use provider::{AccessToken, TokenProvider};
