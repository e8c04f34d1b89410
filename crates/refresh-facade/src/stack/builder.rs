//! [`RefreshStackBuilder`].

use std::sync::Arc;
use std::time::Duration;

use refresh_core::Platform;
use refresh_core::policy::{LockWait, ProviderRefreshPolicy};
use refresh_core::{
    BackgroundConfig, BackgroundRefresher, ExecutorRegistry, FlowConfig, FlowObserver,
    LockStrategy, RefreshExecutor, RefreshFlow, RefreshLock, TokenCache, TokenProvider,
};
use refresh_providers::{ProvidersConfig, register_all};
use refresh_seaorm::{DatabaseConfig, SeaOrmBackend, Sealing, SealingConfig, SealingKey};

#[cfg(feature = "redis")]
use super::counted::CountedCache;
use super::counted::{CountedRepository, StoreCalls};
use super::{DatabaseKind, Inner, RefreshStack, StackError};

/// Builds a [`RefreshStack`]; see [`RefreshStack::builder`] for the
/// defaults.
#[derive(Default)]
pub struct RefreshStackBuilder {
    database: DatabaseConfig,
    migrate: bool,
    sealing: Option<Sealing>,
    #[cfg(feature = "redis")]
    redis: Option<refresh_redis::RedisConfig>,
    providers: ProvidersConfig,
    executors: Vec<Arc<dyn RefreshExecutor>>,
    flow: FlowConfig,
    background: BackgroundConfig,
    observer: Option<Arc<dyn FlowObserver>>,
    skew: Option<Duration>,
    local_max_age: Option<Duration>,
    policies: Vec<(Platform, ProviderRefreshPolicy)>,
}

impl std::fmt::Debug for RefreshStackBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshStackBuilder")
            .field("database", &self.database)
            .field("migrate", &self.migrate)
            .field("sealing", &self.sealing)
            .field("flow", &self.flow)
            .field("background", &self.background)
            .finish_non_exhaustive()
    }
}

impl RefreshStackBuilder {
    /// The database: `sqlite://PATH?mode=rwc` (feature `sqlite`),
    /// `postgres://...` (feature `postgres`) or `mysql://...` (feature
    /// `mysql`), with the pool defaults.
    pub fn database(mut self, url: impl Into<String>) -> Self {
        self.database.url = url.into();
        self
    }

    /// The database with every pool setting.
    pub fn database_config(mut self, config: DatabaseConfig) -> Self {
        self.database = config;
        self
    }

    /// Whether `build` applies the migrations first (default `false`).
    pub fn migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// How credentials are stored (default: sealed with the key in
    /// `OAUTH_REFRESH_ENCRYPTION_KEY`; no key is an error).
    pub fn sealing(mut self, sealing: Sealing) -> Self {
        self.sealing = Some(sealing);
        self
    }

    /// Seals stored credentials and the tokens cached in Redis with `key`.
    pub fn encryption_key(self, key: &SealingKey) -> Self {
        self.sealing(Sealing::keys(key, &[]))
    }

    /// Redis: its lease over the database lease (`LockStrategy::layered`),
    /// its token cache (values sealed with the database's key), and its
    /// notifications.
    #[cfg(feature = "redis")]
    pub fn redis(mut self, config: refresh_redis::RedisConfig) -> Self {
        self.redis = Some(config);
        self
    }

    /// Settings of the built-in providers (endpoints, clients, timeouts).
    pub fn providers(mut self, config: ProvidersConfig) -> Self {
        self.providers = config;
        self
    }

    /// Adds a plugin executor (replaces a built-in one of its platform).
    pub fn executor(mut self, executor: Arc<dyn RefreshExecutor>) -> Self {
        self.executors.push(executor);
        self
    }

    /// Deadlines, claim lifetimes and retry bounds of the flow.
    pub fn flow(mut self, config: FlowConfig) -> Self {
        self.flow = config;
        self
    }

    /// Schedule, window, retries and concurrency of the background refresher.
    pub fn background(mut self, config: BackgroundConfig) -> Self {
        self.background = config;
        self
    }

    /// Where lock, upstream and outcome events go (metrics).
    pub fn observer(mut self, observer: Arc<dyn FlowObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The request path's policy for `platform` (what a caller does when
    /// the refresh is held elsewhere or fails), replacing the stack's
    /// default: core's policy, with Claude and OpenAI callers waiting up to
    /// 5 s for the holder's new token.
    pub fn policy(mut self, platform: Platform, policy: ProviderRefreshPolicy) -> Self {
        self.policies.push((platform, policy));
        self
    }

    /// The request path's refresh skew (default 3 min).
    pub fn skew(mut self, skew: Duration) -> Self {
        self.skew = Some(skew);
        self
    }

    /// How long the in-process token cache serves an entry before reading
    /// the account again (default 30 s): the bound on how long a change made
    /// by another process (a relogin or a disable from the CLI) goes unseen.
    pub fn local_max_age(mut self, age: Duration) -> Self {
        self.local_max_age = Some(age);
        self
    }

    /// Checks every setting, connects, migrates when asked, and wires the
    /// stack.
    ///
    /// # Errors
    /// [`StackError`] naming the setting: an unsupported or disabled
    /// database scheme, an in-memory SQLite database with Redis (other
    /// instances could not share its claims), an invalid flow, background
    /// or provider setting, no sealing key, an unreachable or unmigrated
    /// database, a database whose sealed credentials the configured key
    /// (or plaintext mode) cannot open (`encryption_key`), a bad Redis
    /// configuration.
    pub async fn build(self) -> Result<RefreshStack, StackError> {
        let database_kind = DatabaseKind::of(&self.database.url)?;
        self.flow.validate().map_err(|source| StackError::Config {
            setting: "flow",
            source,
        })?;
        self.background
            .validate()
            .map_err(|source| StackError::Config {
                setting: "background",
                source,
            })?;
        #[cfg(feature = "redis")]
        if let Some(redis) = &self.redis {
            if !database_kind.is_shared() {
                return Err(StackError::invalid(
                    "redis_url",
                    "Redis coordinates several instances, but an in-memory SQLite database is private to one: use a SQLite file or PostgreSQL",
                ));
            }
            redis.validate().map_err(|error| StackError::Redis {
                source: error.into(),
            })?;
        }
        let mut executors = ExecutorRegistry::new();
        let rate_limits = self.providers.rate_limits();
        let login_config = self.providers.clone().resolved();
        let http =
            register_all(&mut executors, self.providers).map_err(|source| StackError::Config {
                setting: "providers",
                source,
            })?;
        // The logins share the executors' connection pool.
        let logins = refresh_providers::login::login_flows(&login_config, &http);
        for executor in self.executors {
            executors.register(executor);
        }
        let sealing = match self.sealing {
            Some(sealing) => sealing,
            None => Sealing::from_config(&SealingConfig::from_env()).map_err(|source| {
                StackError::Config {
                    setting: "encryption_key",
                    source,
                }
            })?,
        };

        let url = self.database.redacted_url();
        let database_error = |operation, source| StackError::Database {
            url: url.clone(),
            operation,
            source,
        };
        #[cfg(feature = "redis")]
        let sealer = sealing.as_sealer().cloned();
        let database = SeaOrmBackend::connect(&self.database, sealing)
            .await
            .map_err(|e| database_error("connect", e))?;
        if self.migrate {
            database
                .migrate()
                .await
                .map_err(|e| database_error("migrate", e))?;
        }
        let catalog = Arc::new(database.repository());
        refresh_core::AccountCatalog::count_by_status(catalog.as_ref(), None)
            .await
            .map_err(|e| {
                database_error(
                    "read the accounts table (has `oauth-refresh migrate` run?)",
                    e,
                )
            })?;

        // Sealed rows opened in plaintext mode, or with a key that did not
        // seal them: refused before anything is written beside them.
        database.check_sealing().await.map_err(|e| match e.kind() {
            refresh_core::StorageErrorKind::InvalidData => {
                StackError::invalid("encryption_key", e.message())
            }
            _ => database_error("check the sealing of the stored credentials", e),
        })?;
        let calls = Arc::new(StoreCalls::default());
        let repository = Arc::new(CountedRepository {
            inner: catalog.clone(),
            calls: Arc::clone(&calls),
        });
        let db_lease: Arc<dyn RefreshLock> = Arc::new(database.lease_lock());
        let claims = Arc::new(database.claim_store());
        let login_sessions = Arc::new(database.login_session_store());

        #[cfg(feature = "redis")]
        let (redis, locks, shared) = match self.redis {
            Some(config) => {
                // Keys live under `<prefix>:<installation id>`: two
                // databases sharing one Redis and prefix (staging beside
                // production, a restored copy) have the same account ids
                // and versions, and must never see each other's tokens.
                let installation = database.installation_id().await.map_err(|e| {
                    database_error(
                        "read the installation id (has `oauth-refresh migrate` run?)",
                        e,
                    )
                })?;
                let prefix = format!(
                    "{}:{}",
                    config.key_prefix,
                    &installation[..16.min(installation.len())]
                );
                let config = config.with_prefix(prefix);
                let redis = refresh_redis::RedisBackend::connect(config)
                    .await
                    .map_err(|source| StackError::Redis { source })?;
                // Cached access tokens are sealed with the key that seals
                // the database's credentials (plaintext only by opt-in).
                let mut redis_cache = redis.token_cache();
                if let Some(sealer) = sealer {
                    redis_cache = redis_cache.with_sealer(sealer);
                }
                let cache: Arc<dyn TokenCache> = Arc::new(CountedCache {
                    inner: Arc::new(redis_cache),
                    calls: Arc::clone(&calls),
                });
                let locks = LockStrategy::layered(Arc::new(redis.lock()), db_lease);
                (Some(redis), locks, Some(cache))
            }
            None => (None, LockStrategy::single(db_lease), None),
        };
        #[cfg(not(feature = "redis"))]
        let (locks, shared): (LockStrategy, Option<Arc<dyn TokenCache>>) =
            (LockStrategy::single(db_lease), None);

        let mut flow =
            RefreshFlow::builder(repository.clone(), locks, claims.clone()).config(self.flow);
        for (platform, limit) in rate_limits {
            flow = flow.rate_limit(platform, limit);
        }
        if let Some(observer) = self.observer {
            flow = flow.observer(observer);
        }
        if let Some(cache) = &shared {
            flow = flow.notifier(Arc::clone(cache));
        }
        let flow = flow.build().map_err(|source| StackError::Config {
            setting: "flow",
            source,
        })?;

        let mut tokens = TokenProvider::builder(flow.clone(), executors.clone());
        for platform in [Platform::Anthropic, Platform::OpenAi] {
            tokens = tokens.policy(platform.clone(), waiting_policy(&platform));
        }
        if let Some(cache) = &shared {
            tokens = tokens.shared_cache(Arc::clone(cache));
        }
        for (platform, policy) in self.policies {
            tokens = tokens.policy(platform, policy);
        }
        if let Some(skew) = self.skew {
            tokens = tokens.skew(skew);
        }
        if let Some(age) = self.local_max_age {
            tokens = tokens.local_max_age(age);
        }
        let tokens = tokens.build();

        let refresh_window = self.background.window;
        let mut background = BackgroundRefresher::builder(flow.clone(), executors.clone())
            .config(self.background)
            .listener(Arc::new(tokens.clone()));
        if let Some(cache) = &shared {
            background = background.cache(Arc::clone(cache));
        }
        let background = background.build().map_err(|source| StackError::Config {
            setting: "background",
            source,
        })?;

        Ok(RefreshStack {
            inner: Arc::new(Inner {
                tokens,
                flow,
                background,
                repository,
                catalog,
                claims,
                executors,
                logins,
                login_sessions,
                database,
                database_kind,
                #[cfg(feature = "redis")]
                redis,
                calls,
                refresh_window,
            }),
        })
    }
}

/// How long, at most, a caller that finds a rotating account's refresh held
/// by another instance waits for the new token (in short polls of the
/// stored account, cut short by a Redis notification) before it settles
/// for the previous token while that is still valid.
const WAIT_FOR_NEW_TOKEN: Duration = Duration::from_secs(5);

/// The request-path policy the stack uses for Claude and OpenAI: core's
/// (REFERENCE.md §4), but a caller waits up to [`WAIT_FOR_NEW_TOKEN`] for
/// the holder's new token instead of 200 / 456 ms, so every caller of a
/// stampede is served the token the refresh produced (invariant 8), not
/// the old one it replaces.
fn waiting_policy(platform: &Platform) -> ProviderRefreshPolicy {
    let mut schedule: Vec<Duration> = [20, 40, 80, 160, 320].map(Duration::from_millis).to_vec();
    let mut total: Duration = schedule.iter().sum();
    while total < WAIT_FOR_NEW_TOKEN {
        schedule.push(Duration::from_millis(250));
        total += Duration::from_millis(250);
    }
    ProviderRefreshPolicy {
        wait: LockWait {
            schedule,
            warn_after: Duration::from_secs(2),
            ..LockWait::backoff()
        },
        ..ProviderRefreshPolicy::for_platform(platform)
    }
}
