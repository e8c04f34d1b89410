//! [`Db`]: the shared handle every backend of this crate holds (connection
//! pool, dialect, sealing), and the statement helpers that map errors and
//! keep statements out of the logs ([`quiet`]).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, QueryResult, Value};
use tracing::instrument::{WithDispatch, WithSubscriber};

use crate::dialect::Dialect;
use crate::error::storage_error;
use crate::seal::Sealing;
use refresh_core::{AccountId, Platform, StorageError};

/// The state shared by the repository, the lease lock, the claim store
/// and rekeying.
#[derive(Clone)]
pub(crate) struct Db {
    inner: Arc<DbInner>,
}

struct DbInner {
    conn: DatabaseConnection,
    dialect: Dialect,
    sealing: Sealing,
    /// Platforms of accounts seen: the credentials' sealing context needs
    /// the platform, and a platform never changes (every credential write
    /// also checks it in its `WHERE`, so a stale entry only fails a write).
    platforms: Mutex<HashMap<AccountId, Platform>>,
}

impl Db {
    pub(crate) fn new(conn: DatabaseConnection, sealing: Sealing) -> Self {
        let dialect = Dialect(conn.get_database_backend());
        Self {
            inner: Arc::new(DbInner {
                conn,
                dialect,
                sealing,
                platforms: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub(crate) fn conn(&self) -> &DatabaseConnection {
        &self.inner.conn
    }

    pub(crate) fn dialect(&self) -> Dialect {
        self.inner.dialect
    }

    pub(crate) fn sealing(&self) -> &Sealing {
        &self.inner.sealing
    }

    pub(crate) fn remember_platform(&self, id: AccountId, platform: &Platform) {
        self.platforms().insert(id, platform.clone());
    }

    pub(crate) fn forget_platform(&self, id: AccountId) {
        self.platforms().remove(&id);
    }

    pub(crate) fn known_platform(&self, id: AccountId) -> Option<Platform> {
        self.platforms().get(&id).cloned()
    }

    fn platforms(&self) -> std::sync::MutexGuard<'_, HashMap<AccountId, Platform>> {
        self.inner
            .platforms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

/// `future` with tracing switched off while it runs (on this task: a
/// scoped no-op dispatcher, whatever the global subscriber enables).
///
/// sea-orm records every statement WITH its bound values in `trace`-level
/// spans (`#[instrument]` on its connection and transaction methods), and
/// the options of `Database::connect` with the URL, password included; with
/// its `debug-print` feature it logs statements at `debug`; sqlx logs the
/// value of an unknown URL parameter at `warn`. Bound values are secrets
/// here (plaintext-mode credentials and proxy URLs, the plaintext a rekey
/// compares with), so every statement and the connect run through this:
/// no level of logging can print them (invariant 9).
pub(crate) fn quiet<F: Future>(future: F) -> WithDispatch<F> {
    future.with_subscriber(tracing::Dispatch::none())
}

/// Runs `sql` (see [`Dialect::stmt`]) on `conn`; the rows it changed.
pub(crate) async fn exec(
    conn: &impl ConnectionTrait,
    dialect: Dialect,
    op: &'static str,
    sql: &str,
    values: Vec<Value>,
) -> Result<u64, StorageError> {
    quiet(conn.execute(dialect.stmt(sql, values)))
        .await
        .map(|r| r.rows_affected())
        .map_err(|e| storage_error(op, e))
}

/// Runs the insert `sql` on `conn`; the id MySQL assigned.
pub(crate) async fn exec_insert_id(
    conn: &impl ConnectionTrait,
    dialect: Dialect,
    op: &'static str,
    sql: &str,
    values: Vec<Value>,
) -> Result<u64, StorageError> {
    quiet(conn.execute(dialect.stmt(sql, values)))
        .await
        .map(|r| r.last_insert_id())
        .map_err(|e| storage_error(op, e))
}

/// The first row of `sql`, if any.
pub(crate) async fn query_one(
    conn: &impl ConnectionTrait,
    dialect: Dialect,
    op: &'static str,
    sql: &str,
    values: Vec<Value>,
) -> Result<Option<QueryResult>, StorageError> {
    quiet(conn.query_one(dialect.stmt(sql, values)))
        .await
        .map_err(|e| storage_error(op, e))
}

/// Every row of `sql`.
pub(crate) async fn query_all(
    conn: &impl ConnectionTrait,
    dialect: Dialect,
    op: &'static str,
    sql: &str,
    values: Vec<Value>,
) -> Result<Vec<QueryResult>, StorageError> {
    quiet(conn.query_all(dialect.stmt(sql, values)))
        .await
        .map_err(|e| storage_error(op, e))
}

/// Column `col` of `row`.
pub(crate) fn column<T: sea_orm::TryGetable>(
    row: &QueryResult,
    op: &'static str,
    col: &str,
) -> Result<T, StorageError> {
    row.try_get::<T>("", col)
        .map_err(|_| StorageError::invalid_data(op, format!("column {col} cannot be read")))
}

/// A `u64` count or version as a `BIGINT` value.
pub(crate) fn big(n: u64) -> Value {
    Value::from(i64::try_from(n).unwrap_or(i64::MAX))
}

/// The longest lease, claim or horizon stored: `{now} + ttl` must stay a
/// `BIGINT` (PostgreSQL refuses an overflow, SQLite turns it into a `REAL`
/// no reader expects). A century is "never" for every caller.
pub(crate) const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A duration as whole milliseconds (at least 1, at most [`MAX_TTL`]), for
/// the database clock.
pub(crate) fn millis(d: Duration) -> Value {
    let ms = d.min(MAX_TTL).as_millis();
    Value::from(i64::try_from(ms).unwrap_or(i64::MAX).max(1))
}
