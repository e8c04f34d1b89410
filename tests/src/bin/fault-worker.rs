//! `fault-worker`: a worker process over the facade's parts for the faults
//! the real `oauth-refresh` binary cannot inject: an offset clock, a
//! repository whose credential writes fail (while a flag file exists) or
//! crawl, and flow settings at their validated minimum (short leases).
//!
//! Wired like `RefreshStack` (PostgreSQL repository, database lease under
//! an optional Redis lease, database claims, Redis cache and notifications
//! under `<prefix>:<installation id>`), configured by `FW_*` variables:
//!
//! | variable | meaning |
//! |---|---|
//! | `FW_DATABASE_URL`, `FW_KEY_FILE` | the database and its sealing key file |
//! | `FW_REDIS_URL`, `FW_REDIS_PREFIX` | Redis (optional) |
//! | `FW_EMULATOR_URL` | every provider's token endpoint |
//! | `FW_MODE` | `background` (refresh due accounts until SIGTERM) or `tokens` (read `FW_ACCOUNTS` once, then exit) |
//! | `FW_ACCOUNTS` | comma-separated account ids (`tokens`) |
//! | `FW_CALLER_TIMEOUT_MS` | `tokens`: each caller gives up (drops its future) after this |
//! | `FW_CLOCK_OFFSET_SECS` | offset of the flow's clock (±) |
//! | `FW_FAIL_WRITES_FLAG` | credential writes fail while this file exists |
//! | `FW_WRITE_DELAY_MS` | every credential write first waits this long |
//! | `FW_LEASE_TTL_MS`, `FW_UPSTREAM_TIMEOUT_MS`, `FW_UPSTREAM_GRACE_MS`, `FW_STORAGE_TIMEOUT_MS`, `FW_CLAIM_TTL_MS`, `FW_QUARANTINE_MS` | flow settings |
//! | `FW_INTERVAL_MS`, `FW_WINDOW_SECS` | background schedule |
//!
//! It logs with `tracing` on stderr and prints one [`Summary`] line on
//! stdout when it exits (after draining detached refreshes).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use refresh_facade::core::{
    Account, AccountId, AccountRepository, BackgroundConfig, CasExpectation, CasOutcome, Clock,
    Credentials, DueCursor, DuePage, ExecutorRegistry, FlowConfig, FlowObserver, LockStrategy,
    Platform, RefreshFlow, RefreshLock, StorageError, TokenCache, TokenProvider,
};
use refresh_facade::keyfile::read_key_file;
use refresh_facade::{
    BackgroundRefresher, CancellationToken, DatabaseConfig, ProvidersConfig, RedisBackend,
    RedisConfig, SeaOrmBackend, Sealing, register_all,
};
use refresh_tests::Summary;
use serde_json::json;

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn required(name: &str) -> anyhow::Result<String> {
    var(name).ok_or_else(|| anyhow::anyhow!("{name} is not set"))
}

fn millis(name: &str) -> anyhow::Result<Option<Duration>> {
    var(name)
        .map(|v| Ok(Duration::from_millis(v.parse()?)))
        .transpose()
}

/// The system clock moved by a fixed offset.
#[derive(Debug)]
struct OffsetClock(chrono::Duration);

impl Clock for OffsetClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.0
    }
}

/// A repository whose credential writes fail while a flag file exists, or
/// wait before they run.
struct WriteFaults {
    inner: Arc<dyn AccountRepository>,
    fail_flag: Option<PathBuf>,
    delay: Duration,
}

#[async_trait]
impl AccountRepository for WriteFaults {
    async fn get(&self, id: AccountId) -> Result<Option<Account>, StorageError> {
        self.inner.get(id).await
    }

    async fn insert(&self, account: Account) -> Result<Account, StorageError> {
        self.inner.insert(account).await
    }

    async fn compare_and_set_credentials(
        &self,
        id: AccountId,
        expected: CasExpectation,
        credentials: &Credentials,
    ) -> Result<CasOutcome, StorageError> {
        if self.fail_flag.as_ref().is_some_and(|flag| flag.exists()) {
            return Err(StorageError::unavailable(
                "compare_and_set_credentials",
                "injected: database writes failing",
            ));
        }
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        self.inner
            .compare_and_set_credentials(id, expected, credentials)
            .await
    }

    async fn list_due(
        &self,
        before: DateTime<Utc>,
        after: Option<DueCursor>,
        limit: usize,
    ) -> Result<DuePage, StorageError> {
        self.inner.list_due(before, after, limit).await
    }

    async fn set_error(
        &self,
        id: AccountId,
        observed_version: u64,
        message: &str,
    ) -> Result<bool, StorageError> {
        self.inner.set_error(id, observed_version, message).await
    }

    async fn clear_error(&self, id: AccountId) -> Result<(), StorageError> {
        self.inner.clear_error(id).await
    }

    async fn clear_temp_unschedulable(&self, id: AccountId) -> Result<(), StorageError> {
        self.inner.clear_temp_unschedulable(id).await
    }
}

/// Counts the flow's events for the summary line.
#[derive(Default)]
struct Counts(Mutex<Summary>);

impl Counts {
    fn bump(&self, name: String) {
        let mut summary = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *summary.counts.entry(name).or_default() += 1;
    }

    fn summary(&self) -> Summary {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl FlowObserver for Counts {
    fn lock_acquired(&self, layer: &'static str) {
        self.bump(format!("lock_acquired:{layer}"));
    }
    fn lock_contended(&self, layer: &'static str) {
        self.bump(format!("lock_contended:{layer}"));
    }
    fn lock_unavailable(&self, layer: &'static str) {
        self.bump(format!("lock_unavailable:{layer}"));
    }
    fn upstream_call(&self, _platform: &Platform, _elapsed: Duration, outcome: &'static str) {
        self.bump(format!("upstream:{outcome}"));
    }
    fn refresh_finished(&self, _platform: &Platform, outcome: &'static str) {
        self.bump(format!("refresh:{outcome}"));
    }
}

fn flow_config() -> anyhow::Result<FlowConfig> {
    let mut flow = FlowConfig::default();
    let set = |target: &mut Duration, name: &str| -> anyhow::Result<()> {
        if let Some(value) = millis(name)? {
            *target = value;
        }
        Ok(())
    };
    set(&mut flow.lease_ttl, "FW_LEASE_TTL_MS")?;
    set(&mut flow.upstream_timeout, "FW_UPSTREAM_TIMEOUT_MS")?;
    set(&mut flow.upstream_grace, "FW_UPSTREAM_GRACE_MS")?;
    set(&mut flow.storage_timeout, "FW_STORAGE_TIMEOUT_MS")?;
    set(&mut flow.claim_ttl, "FW_CLAIM_TTL_MS")?;
    set(&mut flow.quarantine, "FW_QUARANTINE_MS")?;
    Ok(flow)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FW_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,refresh_core=debug")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let key = read_key_file(&PathBuf::from(required("FW_KEY_FILE")?))?;
    let database = SeaOrmBackend::connect(
        &DatabaseConfig {
            url: required("FW_DATABASE_URL")?,
            max_connections: 4,
            ..DatabaseConfig::default()
        },
        Sealing::keys(&key, &[]),
    )
    .await?;
    let sealer = Sealing::keys(&key, &[]).as_sealer().cloned();

    let emulator = required("FW_EMULATOR_URL")?;
    let providers: ProvidersConfig = serde_json::from_value(json!({
        "claude": { "token_url": format!("{emulator}/v1/oauth/token") },
        "openai": { "token_url": format!("{emulator}/oauth/token") },
    }))?;
    let mut executors = ExecutorRegistry::new();
    register_all(&mut executors, providers)?;

    let repository: Arc<dyn AccountRepository> = Arc::new(WriteFaults {
        inner: Arc::new(database.repository()),
        fail_flag: var("FW_FAIL_WRITES_FLAG").map(PathBuf::from),
        delay: millis("FW_WRITE_DELAY_MS")?.unwrap_or_default(),
    });
    let db_lease: Arc<dyn RefreshLock> = Arc::new(database.lease_lock());
    let (locks, cache): (LockStrategy, Option<Arc<dyn TokenCache>>) = match var("FW_REDIS_URL") {
        Some(url) => {
            let installation = database.installation_id().await?;
            let prefix = format!(
                "{}:{}",
                required("FW_REDIS_PREFIX")?,
                &installation[..16.min(installation.len())]
            );
            let redis = RedisBackend::connect(
                RedisConfig::new(url)?
                    .with_prefix(prefix)
                    .with_command_timeout(Duration::from_millis(500)),
            )
            .await?;
            let mut cache = redis.token_cache();
            if let Some(sealer) = sealer {
                cache = cache.with_sealer(sealer);
            }
            let cache: Arc<dyn TokenCache> = Arc::new(cache);
            (
                LockStrategy::layered(Arc::new(redis.lock()), db_lease),
                Some(cache),
            )
        }
        None => (LockStrategy::single(db_lease), None),
    };
    let offset = var("FW_CLOCK_OFFSET_SECS")
        .map(|v| v.parse::<i64>())
        .transpose()?
        .unwrap_or(0);
    let counts = Arc::new(Counts::default());
    let mut flow = RefreshFlow::builder(
        Arc::clone(&repository),
        locks,
        Arc::new(database.claim_store()),
    )
    .config(flow_config()?)
    .clock(Arc::new(OffsetClock(chrono::Duration::seconds(offset))))
    .observer(counts.clone());
    if let Some(cache) = &cache {
        flow = flow.notifier(Arc::clone(cache));
    }
    let flow = flow.build()?;

    let mut tokens = TokenProvider::builder(flow.clone(), executors.clone());
    if let Some(cache) = &cache {
        tokens = tokens.shared_cache(Arc::clone(cache));
    }
    let tokens = tokens.build();

    let shutdown = CancellationToken::new();
    match required("FW_MODE")?.as_str() {
        "background" => {
            let mut config = BackgroundConfig::default();
            if let Some(interval) = millis("FW_INTERVAL_MS")? {
                config.interval = interval;
            }
            if let Some(window) = var("FW_WINDOW_SECS") {
                config.window = Duration::from_secs(window.parse()?);
            }
            let mut background = BackgroundRefresher::builder(flow.clone(), executors)
                .config(config)
                .listener(Arc::new(tokens.clone()));
            if let Some(cache) = &cache {
                background = background.cache(Arc::clone(cache));
            }
            let background = background.build()?;
            let task = background.spawn(shutdown.clone());
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            term.recv().await;
            shutdown.cancel();
            let _ = task.await;
        }
        "tokens" => {
            let timeout = millis("FW_CALLER_TIMEOUT_MS")?;
            let mut callers = tokio::task::JoinSet::new();
            for id in required("FW_ACCOUNTS")?.split(',') {
                let id = AccountId::from(id.trim().parse::<i64>()?);
                let (tokens, counts) = (tokens.clone(), Arc::clone(&counts));
                callers.spawn(async move {
                    let call = tokens.access_token_by_id(id);
                    let outcome = match timeout {
                        Some(limit) => tokio::time::timeout(limit, call).await.ok(),
                        None => Some(call.await),
                    };
                    counts.bump(
                        match outcome {
                            Some(Ok(_)) => "token:ok",
                            Some(Err(_)) => "token:error",
                            None => "token:cancelled",
                        }
                        .to_owned(),
                    );
                });
            }
            while callers.join_next().await.is_some() {}
        }
        other => anyhow::bail!("unknown FW_MODE {other:?}"),
    }
    // Detached refreshes (a cancelled caller's, a rescue) finish first.
    let _ = tokio::time::timeout(Duration::from_secs(30), flow.drained()).await;
    #[allow(clippy::print_stdout)] // the summary line is this binary's output
    {
        println!("{}", counts.summary().line());
    }
    Ok(())
}
