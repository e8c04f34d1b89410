//! The schema, as `sea-orm-migration` migrations, and [`migrate`].

// `MigrationTrait` is an `async_trait` whose `SchemaManager<'_>` lifetime
// must stay elided in the impls.
#![allow(elided_lifetimes_in_paths)]

mod m20261207_000001_accounts;
mod m20261207_000002_refresh_leases;
mod m20261207_000003_refresh_claims;
mod m20261207_000004_installation;
mod m20261207_000005_unique_refresh_token;
mod m20261214_000005_login_sessions;
mod m20261221_000007_refresh_events;

use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, TransactionTrait};
use sea_orm_migration::{MigrationTrait, MigratorTrait};

use crate::db::exec;
use crate::dialect::Dialect;
use crate::error::storage_error;
use refresh_core::{StorageError, StorageErrorKind};

/// Every migration of this crate, in order. Applied migrations are recorded
/// in `oauth_refresh_migrations` (not SeaORM's default table, so an
/// application's own migrations can share the database).
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261207_000001_accounts::Migration),
            Box::new(m20261207_000002_refresh_leases::Migration),
            Box::new(m20261207_000003_refresh_claims::Migration),
            Box::new(m20261207_000004_installation::Migration),
            Box::new(m20261207_000005_unique_refresh_token::Migration),
            Box::new(m20261214_000005_login_sessions::Migration),
            Box::new(m20261221_000007_refresh_events::Migration),
        ]
    }

    fn migration_table_name() -> sea_orm::DynIden {
        sea_orm::sea_query::Alias::new("oauth_refresh_migrations").into_iden()
    }
}

use sea_orm::sea_query::IntoIden;

const OP: &str = "migrate";

/// Attempts of a migration that met a busy database or a concurrent
/// migrator (each waits for the other's lock first; see [`migrate`]).
const ATTEMPTS: u32 = 8;

/// Applies every pending migration. Idempotent: running it twice, or on a
/// database an older release migrated, applies only what is missing; every
/// table and index is created `IF NOT EXISTS`.
///
/// Several processes may migrate one database at once: on SQLite and
/// PostgreSQL the whole run is ONE transaction that first takes a lock
/// (SQLite's write lock, waiting up to the busy timeout; a PostgreSQL
/// advisory lock), so the runs take turns, the later ones find nothing to
/// do, and a run that fails leaves nothing half-applied. A run that still
/// meets a busy database is retried with backoff.
///
/// # Errors
/// `Other` naming the unknown migrations when the database was migrated by
/// a newer release (nothing is changed); a [`StorageError`] when the
/// database fails (no SQL text in it).
pub async fn migrate(db: &DatabaseConnection) -> Result<(), StorageError> {
    let mut backoff = Duration::from_millis(25);
    let mut attempt = 1;
    loop {
        match migrate_once(db).await {
            Ok(()) => return Ok(()),
            Err(e)
                if attempt < ATTEMPTS
                    && (e.is_retryable() || e.kind() == StorageErrorKind::Conflict) =>
            {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// One run of [`migrate`].
async fn migrate_once(db: &DatabaseConnection) -> Result<(), StorageError> {
    let dialect = Dialect(db.get_database_backend());
    if dialect.0 == DbBackend::MySql {
        // No transactional DDL: as sea-orm-migration does it.
        refuse_unknown(db).await?;
        return Migrator::up(db, None)
            .await
            .map_err(|e| storage_error(OP, e));
    }
    if dialect.0 == DbBackend::Sqlite {
        // The table the lock statement below writes to.
        Migrator::install(db)
            .await
            .map_err(|e| storage_error(OP, e))?;
    }
    let txn = db.begin().await.map_err(|e| storage_error(OP, e))?;
    let lock = match dialect.0 {
        // A write as the transaction's first statement takes SQLite's write
        // lock now (waiting up to the busy timeout), before anything is
        // read.
        DbBackend::Sqlite => "DELETE FROM oauth_refresh_migrations WHERE 1 = 0",
        // The advisory lock "oauthmig" of this database.
        _ => "SELECT pg_advisory_xact_lock(8025825153779591527)",
    };
    exec(&txn, dialect, OP, lock, Vec::new()).await?;
    refuse_unknown(&txn).await?;
    refuse_shared_refresh_tokens(&txn, dialect).await?;
    Migrator::up(&txn, None)
        .await
        .map_err(|e| storage_error(OP, e))?;
    txn.commit().await.map_err(|e| storage_error(OP, e))
}

/// Fails, naming the accounts, when two accounts of an existing database
/// share one refresh token: the unique index cannot be built then, and
/// those accounts would lose each other's rotations anyway.
async fn refuse_shared_refresh_tokens(
    db: &impl ConnectionTrait,
    dialect: Dialect,
) -> Result<(), StorageError> {
    let exists = match dialect.0 {
        DbBackend::Sqlite => {
            "SELECT 1 AS present FROM sqlite_master WHERE type = 'table' AND name = 'accounts'"
        }
        _ => {
            "SELECT 1 AS present FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = 'accounts'"
        }
    };
    if crate::db::query_one(db, dialect, OP, exists, Vec::new())
        .await?
        .is_none()
    {
        return Ok(());
    }
    let sql = "SELECT MIN(id) AS first, MAX(id) AS last, COUNT(*) AS n FROM accounts \
               WHERE refresh_fingerprint <> '' GROUP BY refresh_fingerprint HAVING COUNT(*) > 1 \
               ORDER BY MIN(id) LIMIT 10";
    let rows = crate::db::query_all(db, dialect, OP, sql, Vec::new()).await?;
    if rows.is_empty() {
        return Ok(());
    }
    let mut groups = Vec::new();
    for row in &rows {
        let first: i64 = crate::db::column(row, OP, "first")?;
        let last: i64 = crate::db::column(row, OP, "last")?;
        let n: i64 = crate::db::column(row, OP, "n")?;
        groups.push(if n == 2 {
            format!("accounts {first} and {last}")
        } else {
            format!("{n} accounts from {first} to {last}")
        });
    }
    Err(StorageError::invalid_data(
        OP,
        format!(
            "{} share one refresh token, so each refresh of one revokes the other; remove one of each (or re-import it with its own credentials) and migrate again; nothing was changed",
            groups.join("; ")
        ),
    ))
}

/// Fails when the database records migrations this release does not know:
/// a newer release migrated it, and this one must not run against a
/// schema it does not know.
async fn refuse_unknown(db: &impl ConnectionTrait) -> Result<(), StorageError> {
    let known: Vec<String> = Migrator::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    let unknown: Vec<String> = Migrator::get_migration_models(db)
        .await
        .map_err(|e| storage_error(OP, e))?
        .into_iter()
        .filter(|applied| !known.contains(&applied.version))
        .map(|applied| {
            applied
                .version
                .chars()
                .take(64)
                .map(|c| if c.is_ascii_graphic() { c } else { '?' })
                .collect()
        })
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    Err(StorageError::other(
        OP,
        format!(
            "the database was migrated by a newer release (unknown migration(s): {}); run a release that knows them, nothing was changed",
            unknown.join(", ")
        ),
    ))
}
