//! [`RefreshStack`]: the wired defaults. One call builds the repository,
//! the locks, the claim store, the executors, the flow, the token provider
//! and the background refresher from a database URL (and optionally a
//! Redis configuration).
//!
//! | setting | without Redis | with Redis |
//! |---|---|---|
//! | leases | `LockStrategy::single(DbLeaseLock)` | `LockStrategy::layered(RedisLock, DbLeaseLock)` |
//! | generation claims (the recovery records) | `DbClaimStore` | `DbClaimStore` |
//! | token cache | in-process only | in-process, then `RedisTokenCache` |
//! | waiters on other instances | bounded polling | Redis pub/sub, polling as fallback |

mod builder;
mod counted;
mod database_url;
mod error;

use std::sync::Arc;
use std::time::Duration;

pub use builder::RefreshStackBuilder;
pub use counted::StoreCalls;
pub use database_url::DatabaseKind;
pub use error::StackError;

use refresh_core::{
    AccountCatalog, AccountId, AccountRepository, AccountStatus, BackgroundRefresher, ClaimStore,
    ExecutorRegistry, LoginSessionStore, NewAccount, Platform, RefreshFlow, RefreshOutcome,
    StorageError, TokenError, TokenProvider,
};
use refresh_providers::login::LoginFlow;
use refresh_seaorm::SeaOrmBackend;

use crate::import::{CheckError, check_claims};

/// Everything a process needs to hand out tokens and keep them fresh.
/// Cheap to clone.
#[derive(Clone)]
pub struct RefreshStack {
    inner: Arc<Inner>,
}

struct Inner {
    tokens: TokenProvider,
    flow: RefreshFlow,
    background: BackgroundRefresher,
    repository: Arc<dyn AccountRepository>,
    catalog: Arc<dyn AccountCatalog>,
    claims: Arc<dyn ClaimStore>,
    executors: ExecutorRegistry,
    logins: Vec<Arc<dyn LoginFlow>>,
    login_sessions: Arc<dyn LoginSessionStore>,
    database: SeaOrmBackend,
    database_kind: DatabaseKind,
    #[cfg(feature = "redis")]
    redis: Option<refresh_redis::RedisBackend>,
    calls: Arc<StoreCalls>,
    /// The background window: what [`RefreshStack::refresh`] without
    /// `force` treats as due.
    refresh_window: Duration,
}

/// The window of a forced refresh: any token expiring within a year.
const FORCE_WINDOW: Duration = Duration::from_secs(366 * 24 * 3600);

impl std::fmt::Debug for RefreshStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = f.debug_struct("RefreshStack");
        out.field("database", &self.inner.database_kind)
            .field("executors", &self.inner.executors)
            .field("flow", &self.inner.flow);
        #[cfg(feature = "redis")]
        out.field("redis", &self.inner.redis.is_some());
        out.finish_non_exhaustive()
    }
}

/// What [`RefreshStack::ready`] found unreachable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotReady {
    /// The database did not answer.
    #[error("database unreachable: {0}")]
    Database(#[source] StorageError),
    /// Redis did not answer.
    #[error("redis unreachable: {0}")]
    Redis(#[source] StorageError),
}

/// Why [`RefreshStack::import`] stored nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportRefused {
    /// An entry's refresh token has a generation claim, or the claim store
    /// could not be asked.
    #[error(transparent)]
    Claims(#[from] CheckError),
    /// The catalog refused the batch (an invalid entry, a store failure).
    #[error(transparent)]
    Store(#[from] StorageError),
}

impl RefreshStack {
    /// Starts a builder with the defaults: the SQLite file
    /// `oauth-refresh.db`, no Redis, every compiled-in provider with its
    /// real endpoints, default flow and background settings, the sealing
    /// key from `OAUTH_REFRESH_ENCRYPTION_KEY`.
    pub fn builder() -> RefreshStackBuilder {
        RefreshStackBuilder::default()
    }

    /// The cache-first token getter (the request path).
    pub fn tokens(&self) -> &TokenProvider {
        &self.inner.tokens
    }

    /// The refresh flow shared by the provider and the background refresher.
    pub fn flow(&self) -> &RefreshFlow {
        &self.inner.flow
    }

    /// The background refresher (call `spawn` or `run_cycle`).
    pub fn background(&self) -> &BackgroundRefresher {
        &self.inner.background
    }

    /// The account repository the flow uses (calls counted in
    /// [`store_calls`](Self::store_calls)).
    pub fn repository(&self) -> &Arc<dyn AccountRepository> {
        &self.inner.repository
    }

    /// The account catalog (import, list, show, edit, remove).
    pub fn catalog(&self) -> &Arc<dyn AccountCatalog> {
        &self.inner.catalog
    }

    /// The generation-claim store (always the database).
    pub fn claims(&self) -> &Arc<dyn ClaimStore> {
        &self.inner.claims
    }

    /// The executors by platform.
    pub fn executors(&self) -> &ExecutorRegistry {
        &self.inner.executors
    }

    /// The login flow of `platform` (every built-in provider has one).
    pub fn login_flow(&self, platform: &Platform) -> Option<&Arc<dyn LoginFlow>> {
        self.inner
            .logins
            .iter()
            .find(|flow| flow.platform() == *platform)
    }

    /// The logins in progress (always the database: any process completes
    /// a login another began).
    pub fn login_sessions(&self) -> &Arc<dyn LoginSessionStore> {
        &self.inner.login_sessions
    }

    /// The database backend (pool, migrations, `rekey`).
    pub fn database(&self) -> &SeaOrmBackend {
        &self.inner.database
    }

    /// Which database this is.
    pub fn database_kind(&self) -> DatabaseKind {
        self.inner.database_kind
    }

    /// Whether Redis is configured.
    pub fn has_redis(&self) -> bool {
        #[cfg(feature = "redis")]
        {
            self.inner.redis.is_some()
        }
        #[cfg(not(feature = "redis"))]
        {
            false
        }
    }

    /// The Redis backend, when configured.
    #[cfg(feature = "redis")]
    pub fn redis(&self) -> Option<&refresh_redis::RedisBackend> {
        self.inner.redis.as_ref()
    }

    /// Calls made to the database repository and the Redis cache so far.
    pub fn store_calls(&self) -> &Arc<StoreCalls> {
        &self.inner.calls
    }

    /// Imports `accounts` all or nothing: refuses the batch when an
    /// entry's refresh token has an open, quarantined or consumed
    /// generation claim, then stores every entry in one transaction.
    ///
    /// # Errors
    /// [`ImportRefused`]; nothing is stored then.
    pub async fn import(
        &self,
        accounts: Vec<NewAccount>,
    ) -> Result<Vec<refresh_core::Account>, ImportRefused> {
        check_claims(&accounts, self.inner.claims.as_ref()).await?;
        Ok(self.inner.catalog.import(accounts).await?)
    }

    /// Refreshes account `id` now if its token expires within the
    /// background window, or whatever its expiry with `force`; the
    /// in-process cached token is dropped either way. The refresh runs
    /// detached in the flow: dropping this future does not cancel it.
    ///
    /// # Errors
    /// [`TokenError::UnknownAccount`], [`TokenError::Storage`] when the
    /// account cannot be read, [`TokenError::Inactive`] for a `disabled` or
    /// `error` account, [`TokenError::UnsupportedPlatform`] or
    /// [`TokenError::NotEligible`] for an account no executor refreshes
    /// (an API key), [`TokenError::Refresh`] with the flow's error.
    pub async fn refresh(&self, id: AccountId, force: bool) -> Result<RefreshOutcome, TokenError> {
        let account = self
            .inner
            .repository
            .get(id)
            .await
            .map_err(|source| TokenError::Storage { id, source })?
            .ok_or(TokenError::UnknownAccount { id })?;
        if account.status != AccountStatus::Active {
            return Err(TokenError::Inactive {
                id,
                status: account.status,
            });
        }
        let executor = self.inner.executors.get(&account.platform).ok_or_else(|| {
            TokenError::UnsupportedPlatform {
                platform: account.platform.clone(),
            }
        })?;
        if !executor.can_refresh(&account) {
            return Err(TokenError::NotEligible {
                id,
                platform: account.platform.clone(),
                account_type: account.account_type,
            });
        }
        let window = if force {
            FORCE_WINDOW
        } else {
            self.inner.refresh_window
        };
        let outcome = self
            .inner
            .flow
            .refresh_if_needed(&account, executor, window)
            .await
            .map_err(|source| TokenError::Refresh { id, source });
        self.inner.tokens.invalidate_local(id);
        outcome
    }

    /// Checks that the database (and Redis, when configured) answer, each
    /// within `timeout`.
    ///
    /// # Errors
    /// [`NotReady`] naming the store that did not answer.
    pub async fn ready(&self, timeout: Duration) -> Result<(), NotReady> {
        let unanswered = |store: &'static str| StorageError::timeout(store, "no answer in time");
        match tokio::time::timeout(timeout, self.inner.catalog.count_by_status(None)).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => return Err(NotReady::Database(error)),
            Err(_) => return Err(NotReady::Database(unanswered("database"))),
        }
        #[cfg(feature = "redis")]
        if let Some(redis) = &self.inner.redis {
            match tokio::time::timeout(timeout, redis.ping()).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => return Err(NotReady::Redis(error)),
                Err(_) => return Err(NotReady::Redis(unanswered("redis"))),
            }
        }
        Ok(())
    }

    /// Waits, at most `grace`, until no refresh of this process is running
    /// (each persisted or failed). Returns whether it got there. Stop the
    /// callers (HTTP server, background refresher) first.
    pub async fn drain(&self, grace: Duration) -> bool {
        tokio::time::timeout(grace, self.inner.flow.drained())
            .await
            .is_ok()
    }
}
