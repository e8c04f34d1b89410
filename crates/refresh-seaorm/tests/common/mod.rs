//! Shared test helpers: fresh SQLite databases (in memory and in files) and
//! fresh PostgreSQL databases under `REFRESH_TEST_DATABASE_URL` (created
//! with a unique name, dropped at the end), all migrated and sealed.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use refresh_seaorm::{DatabaseConfig, SeaOrmBackend, Sealing, SealingKey};
use sea_orm::{ConnectionTrait, Database, Statement};

/// One key for the whole test binary (and its child processes, through
/// [`KEY_ENV`]).
pub fn test_key() -> &'static SealingKey {
    static KEY: OnceLock<SealingKey> = OnceLock::new();
    KEY.get_or_init(|| match std::env::var(KEY_ENV) {
        Ok(key) => SealingKey::parse("test key", &key).expect("a key from the parent"),
        Err(_) => SealingKey::generate(),
    })
}

/// Where a parent test hands its key to child processes.
pub const KEY_ENV: &str = "REFRESH_SEAORM_TEST_KEY";

pub fn sealed() -> Sealing {
    Sealing::keys(test_key(), &[])
}

fn unique(test: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{test}_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        fastrand::u32(..)
    )
}

/// A fresh, migrated in-memory SQLite database.
pub async fn sqlite_memory() -> SeaOrmBackend {
    let backend = SeaOrmBackend::connect(&DatabaseConfig::new("sqlite::memory:"), sealed())
        .await
        .expect("in-memory sqlite");
    backend.migrate().await.expect("migrate");
    backend
}

/// A SQLite file this test owns; removed (with its WAL) on drop.
pub struct SqliteFile {
    pub path: PathBuf,
}

impl SqliteFile {
    pub fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join("refresh-seaorm-tests");
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self {
            path: dir.join(format!("{}.db", unique(test))),
        }
    }

    pub fn url(&self) -> String {
        format!("sqlite://{}?mode=rwc", self.path.display())
    }

    pub fn config(&self) -> DatabaseConfig {
        DatabaseConfig::new(self.url())
    }

    /// A new pool on the file (what another process would open).
    pub async fn open(&self, sealing: Sealing) -> SeaOrmBackend {
        let backend = SeaOrmBackend::connect(&self.config(), sealing)
            .await
            .expect("sqlite file");
        backend.migrate().await.expect("migrate");
        backend
    }
}

impl Drop for SqliteFile {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.path.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(Path::new(&path));
        }
    }
}

/// `REFRESH_TEST_DATABASE_URL`.
pub fn pg_admin_url() -> String {
    std::env::var("REFRESH_TEST_DATABASE_URL")
        .expect("REFRESH_TEST_DATABASE_URL is not set: run the tests with `cargo xtask test`")
}

/// A PostgreSQL database this test created; drop it with [`PgDatabase::drop_db`].
pub struct PgDatabase {
    pub name: String,
    pub url: String,
}

impl PgDatabase {
    pub async fn create(test: &str) -> Self {
        let admin = pg_admin_url();
        let name = format!("t_{}", unique(test)).to_lowercase();
        let conn = Database::connect(admin.as_str())
            .await
            .expect("admin connection");
        conn.execute(Statement::from_string(
            conn.get_database_backend(),
            format!("CREATE DATABASE \"{name}\""),
        ))
        .await
        .expect("create database");
        conn.close().await.expect("close");
        let mut url = url::Url::parse(&admin).expect("admin url");
        url.set_path(&format!("/{name}"));
        Self {
            name,
            url: url.to_string(),
        }
    }

    /// A connection to the admin database (`REFRESH_TEST_DATABASE_URL`).
    pub async fn admin_conn() -> sea_orm::DatabaseConnection {
        Database::connect(pg_admin_url().as_str())
            .await
            .expect("admin connection")
    }

    pub fn config(&self) -> DatabaseConfig {
        DatabaseConfig {
            max_connections: 16,
            ..DatabaseConfig::new(self.url.clone())
        }
    }

    pub async fn open(&self, sealing: Sealing) -> SeaOrmBackend {
        let backend = SeaOrmBackend::connect(&self.config(), sealing)
            .await
            .expect("postgres");
        backend.migrate().await.expect("migrate");
        backend
    }

    /// Drops the database (closing whatever still uses it).
    pub async fn drop_db(self) {
        drop(self);
    }
}

impl Drop for PgDatabase {
    /// Drops the database even when the test panicked: on a thread of its
    /// own with its own runtime (a test's runtime may be gone).
    fn drop(&mut self) {
        let name = self.name.clone();
        let dropper = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let Ok(conn) = Database::connect(pg_admin_url().as_str()).await else {
                    return;
                };
                let _ = conn
                    .execute(Statement::from_string(
                        conn.get_database_backend(),
                        format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
                    ))
                    .await;
                let _ = conn.close().await;
            });
        });
        let _ = dropper.join();
    }
}

/// Short TTL for the suites on a real database clock.
pub const SHORT_TTL: Duration = Duration::from_millis(500);
