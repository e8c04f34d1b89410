//! What every scenario shares: the services (PostgreSQL, Redis, the
//! emulator), one sealing key, throwaway databases and stacks over them.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use refresh_facade::providers::claude::ClaudeConfig;
use refresh_facade::providers::emulator::{Emulator, EmulatorConfig, Latency};
use refresh_facade::providers::{HttpClients, HttpConfig};
use refresh_facade::{
    BackgroundConfig, DatabaseConfig, ProvidersConfig, RedisConfig, RefreshStack, SealingKey,
};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};

use crate::baseline::Baseline;
use crate::baseline::store::RedisStore;

/// The services of one run.
pub(crate) struct Env {
    /// A PostgreSQL URL allowed to create databases.
    pub(crate) admin_url: String,
    pub(crate) redis_url: String,
    pub(crate) emulator: Emulator,
    /// The sealing key, hex (also handed to child processes).
    pub(crate) key_hex: String,
    pub(crate) quick: bool,
}

/// A throwaway database, dropped by [`Env::drop_database`].
pub(crate) struct Db {
    pub(crate) name: String,
    pub(crate) url: String,
}

impl Env {
    pub(crate) async fn start(admin_url: String, redis_url: String, quick: bool) -> Result<Self> {
        let emulator = Emulator::start_with(EmulatorConfig::default())
            .await
            .context("start the emulator")?;
        // Issued tokens outlive the 30 min background window.
        emulator.set_access_token_lifetime(Some(8 * 3600));
        let key_hex: String = (0..32)
            .map(|_| format!("{:02x}", fastrand::u8(..)))
            .collect();
        Ok(Self {
            admin_url,
            redis_url,
            emulator,
            key_hex,
            quick,
        })
    }

    /// The emulator's latency from now on.
    pub(crate) fn set_latency(&self, latency: Duration) {
        self.emulator.set_latency(Latency::fixed(latency));
    }

    async fn admin(&self, sql: String) -> Result<()> {
        let conn = Database::connect(self.admin_url.as_str())
            .await
            .context("connect to PostgreSQL (REFRESH_TEST_DATABASE_URL)")?;
        conn.execute_unprepared(&sql)
            .await
            .context("admin statement")?;
        conn.close().await.ok();
        Ok(())
    }

    /// Creates an empty database for one scenario.
    pub(crate) async fn database(&self, tag: &str) -> Result<Db> {
        let name = format!("bench_{}_{tag}", std::process::id());
        self.admin(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await?;
        self.admin(format!("CREATE DATABASE \"{name}\"")).await?;
        let mut url = url::Url::parse(&self.admin_url).context("database url")?;
        url.set_path(&format!("/{name}"));
        Ok(Db {
            name,
            url: url.to_string(),
        })
    }

    pub(crate) async fn drop_database(&self, db: Db) {
        let _ = self
            .admin(format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                db.name
            ))
            .await;
    }

    /// This project's stack on `db` with Redis, at the default flow and
    /// background configuration.
    pub(crate) async fn stack(&self, db: &Db, migrate: bool) -> Result<RefreshStack> {
        stack(
            &db.url,
            &self.redis_url,
            &self.emulator.url(),
            &self.key_hex,
            migrate,
        )
        .await
    }

    /// The baseline on `db` (its table created), keys under `namespace`.
    pub(crate) async fn baseline(&self, db: &Db, namespace: &str) -> Result<Baseline> {
        baseline(&db.url, &self.redis_url, &self.emulator.url(), namespace).await
    }
}

/// A stack as a worker process builds it.
pub(crate) async fn stack(
    db_url: &str,
    redis_url: &str,
    emulator_url: &str,
    key_hex: &str,
    migrate: bool,
) -> Result<RefreshStack> {
    let key = SealingKey::parse("encryption_key", key_hex)?;
    let stack = RefreshStack::builder()
        .database_config(DatabaseConfig::new(db_url))
        .migrate(migrate)
        .encryption_key(&key)
        .redis(RedisConfig::new(redis_url)?)
        .providers(ProvidersConfig::default().with_base_url(emulator_url))
        .background(BackgroundConfig::default())
        .build()
        .await?;
    Ok(stack)
}

/// A baseline as a worker process builds it.
pub(crate) async fn baseline(
    db_url: &str,
    redis_url: &str,
    emulator_url: &str,
    namespace: &str,
) -> Result<Baseline> {
    let db: DatabaseConnection = Database::connect(db_url).await?;
    crate::baseline::table::create(&db).await?;
    let store = RedisStore::connect(redis_url, namespace).await?;
    let executor = refresh_facade::providers::claude::executor(
        ClaudeConfig::default().with_base_url(emulator_url),
        HttpClients::new(HttpConfig::default()),
    );
    Ok(Baseline::new(db, store, Arc::clone(&executor)))
}
