//! [`SeaOrmBackend`]: one connection pool and the backends over it.

use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbBackend};

use crate::config::{DatabaseConfig, SqliteSynchronous, driver_url};
use crate::db::{Db, quiet};
use crate::error::storage_error;
use crate::rekey::{RekeyReport, rekey};
use crate::seal::Sealing;
use crate::{
    DbClaimStore, DbLeaseLock, DbLoginSessionStore, DbRefreshEventLog, SeaOrmAccountRepository,
};
use refresh_core::StorageError;

/// A connection pool with its sealing mode, handing out the repository
/// (and catalog), the lease lock, the claim store and the login-session
/// store. Cheap to clone.
///
/// SQLite is opened in WAL mode with a busy timeout and
/// `synchronous=FULL` (configurable), `foreign_keys` on, so several
/// processes share one file; an in-memory SQLite database has one
/// connection (each connection would be its own database).
#[derive(Clone)]
pub struct SeaOrmBackend {
    db: Db,
}

impl std::fmt::Debug for SeaOrmBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeaOrmBackend")
            .field("backend", &self.db.dialect().0)
            .field("sealing", self.db.sealing())
            .finish()
    }
}

impl SeaOrmBackend {
    /// Opens a pool as `config` says. Does not migrate: call
    /// [`migrate`](Self::migrate). Nothing of the connect is logged (see
    /// the README: sea-orm's spans would print the URL).
    ///
    /// # Errors
    /// `Unavailable`/`Timeout` when the database cannot be reached; `Other`
    /// (not retryable) for a configuration error: a URL scheme no driver
    /// speaks, a URL the driver refuses, a SQLite file that cannot be
    /// opened (missing directory, no permission). The message never holds
    /// the URL or its password.
    pub async fn connect(config: &DatabaseConfig, sealing: Sealing) -> Result<Self, StorageError> {
        let url = driver_url(&config.url)?;
        let conn = quiet(Database::connect(connect_options(config, url)))
            .await
            .map_err(|e| storage_error("connect", e))?;
        Ok(Self::from_connection(conn, sealing))
    }

    /// Wraps an open connection (its SQLite pragmas are the caller's).
    pub fn from_connection(conn: DatabaseConnection, sealing: Sealing) -> Self {
        Self {
            db: Db::new(conn, sealing),
        }
    }

    /// Applies pending migrations (idempotent); see [`crate::migrate`].
    ///
    /// # Errors
    /// As [`crate::migrate`].
    pub async fn migrate(&self) -> Result<(), StorageError> {
        crate::migrate(self.db.conn()).await
    }

    /// The random id of this database, created by [`migrate`](Self::migrate)
    /// and stable for the database's life (a copy keeps it; a new database
    /// gets another). Shared infrastructure (a Redis key prefix) is keyed
    /// by it so two databases never see each other's cached tokens.
    ///
    /// # Errors
    /// `NotFound` when the database is not migrated; a [`StorageError`]
    /// when it fails.
    pub async fn installation_id(&self) -> Result<String, StorageError> {
        use sea_orm::{FromQueryResult, Statement};

        #[derive(FromQueryResult)]
        struct Row {
            installation_id: String,
        }
        let statement = Statement::from_string(
            self.backend(),
            "SELECT installation_id FROM oauth_refresh_installation WHERE id = 1",
        );
        let row = crate::db::quiet(Row::find_by_statement(statement).one(self.db.conn()))
            .await
            .map_err(|e| crate::error::storage_error("installation_id", e))?;
        row.map(|r| r.installation_id).ok_or_else(|| {
            StorageError::not_found("installation_id", "the database is not migrated")
        })
    }

    /// Checks that this backend's sealing reads what the database holds:
    /// the first sealed account must open under the configured keys. A
    /// database of sealed credentials opened in plaintext mode (which would
    /// write plaintext rows beside them), or with a key that did not seal
    /// them (which would write rows only that key opens, and read none of
    /// the others), is refused before anything is written. A database with
    /// no sealed row (new, or plaintext before sealing was switched on)
    /// passes.
    ///
    /// # Errors
    /// `InvalidData` naming the account and the key ids (never key
    /// material); a [`StorageError`] when the database fails. `Ok` when the
    /// accounts table does not exist yet.
    pub async fn check_sealing(&self) -> Result<(), StorageError> {
        const OP: &str = "check_sealing";
        let sql = "SELECT id, platform, credentials FROM accounts WHERE credentials LIKE 's1.%' ORDER BY id LIMIT 1";
        let row = match crate::db::query_one(self.db.conn(), self.db.dialect(), OP, sql, Vec::new())
            .await
        {
            Ok(row) => row,
            // Not migrated yet: nothing stored, nothing to check.
            Err(_) => return Ok(()),
        };
        let Some(row) = row else {
            return Ok(());
        };
        let id = refresh_core::AccountId(crate::db::column::<i64>(&row, OP, "id")?);
        let platform: String = crate::db::column(&row, OP, "platform")?;
        let stored: String = crate::db::column(&row, OP, "credentials")?;
        let key_id: String = stored
            .split('.')
            .nth(1)
            .unwrap_or_default()
            .chars()
            .take(16)
            .collect();
        let Some(sealer) = self.db.sealing().as_sealer() else {
            return Err(StorageError::invalid_data(
                OP,
                format!(
                    "the database holds sealed credentials (account {id}, key id {key_id}) but no encryption key is configured: configure the key that sealed them; nothing was written"
                ),
            ));
        };
        let Ok(platform) = platform.parse::<refresh_core::Platform>() else {
            // A corrupt row: the listing reports it; no verdict on the key.
            return Ok(());
        };
        let context = crate::seal::context::credentials(id, &platform);
        if sealer.open(&stored, &context).is_err() {
            return Err(StorageError::invalid_data(
                OP,
                format!(
                    "the configured encryption key does not open the stored credentials (account {id} is sealed with key id {key_id}): configure the key that sealed them, or list it in the previous keys; nothing was written"
                ),
            ));
        }
        Ok(())
    }

    /// The account repository, which is also the catalog.
    pub fn repository(&self) -> SeaOrmAccountRepository {
        SeaOrmAccountRepository::new(self.db.clone())
    }

    /// The database lease lock.
    pub fn lease_lock(&self) -> DbLeaseLock {
        DbLeaseLock::new(self.db.clone())
    }

    /// The generation-claim store.
    pub fn claim_store(&self) -> DbClaimStore {
        DbClaimStore::new(self.db.clone())
    }

    /// The store of OAuth logins in progress.
    pub fn login_session_store(&self) -> DbLoginSessionStore {
        DbLoginSessionStore::new(self.db.clone())
    }

    /// The shared history of refresh runs (`refresh_events`).
    pub fn event_log(&self) -> DbRefreshEventLog {
        DbRefreshEventLog::new(self.db.clone())
    }

    /// Re-seals every stored secret that is plaintext or sealed under a
    /// previous key with the current key. Safe while refreshes run (see
    /// [`RekeyReport`]); run it until `credentials + proxies + answers` is 0
    /// before removing the previous key.
    ///
    /// # Errors
    /// `Other` in plaintext mode; a [`StorageError`] when the database
    /// fails (what was re-sealed stays re-sealed; run it again).
    pub async fn rekey(&self) -> Result<RekeyReport, StorageError> {
        rekey(&self.db).await
    }

    /// The connection pool.
    pub fn connection(&self) -> &DatabaseConnection {
        self.db.conn()
    }

    /// Which database this is.
    pub fn backend(&self) -> DbBackend {
        self.db.dialect().0
    }
}

/// SeaORM/sqlx options for `config`, connecting to `url` (the checked
/// [`driver_url`]).
fn connect_options(config: &DatabaseConfig, url: String) -> ConnectOptions {
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    let mut options = ConnectOptions::new(url);
    let max = if in_memory {
        1
    } else {
        config.max_connections.max(1)
    };
    options
        .max_connections(max)
        .min_connections(config.min_connections.min(max))
        .connect_timeout(config.connect_timeout)
        .acquire_timeout(config.acquire_timeout)
        .sqlx_logging(false);
    let (busy, synchronous) = (config.sqlite_busy_timeout, config.sqlite_synchronous);
    options.map_sqlx_sqlite_opts(move |opts| {
        use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous as Sync};
        // secure_delete: freed cells are zeroed, so a replaced plaintext
        // value (before sealing was switched on) leaves no copy behind.
        let opts = opts
            .busy_timeout(busy)
            .pragma("secure_delete", "ON")
            .foreign_keys(true)
            .synchronous(match synchronous {
                SqliteSynchronous::Full => Sync::Full,
                SqliteSynchronous::Normal => Sync::Normal,
            });
        if in_memory {
            opts
        } else {
            opts.journal_mode(SqliteJournalMode::Wal)
        }
    });
    options
}
