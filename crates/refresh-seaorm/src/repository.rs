//! [`SeaOrmAccountRepository`]: core's [`AccountRepository`] on SQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, QueryResult, TransactionTrait, Value};

use crate::codec::{
    ACCOUNT_COLUMNS, canonical, decode_account, encode_credentials, encode_extra, encode_proxy,
    expiry_column, fingerprint_column, from_ms, to_ms,
};
use crate::db::{Db, big, column, exec, query_all, query_one};
use crate::error::storage_error;
use refresh_core::{
    Account, AccountId, AccountRepository, CasExpectation, CasOutcome, CorruptAccount, Credentials,
    DueCursor, DuePage, Platform, StorageError,
};

/// Accounts in the `accounts` table; also the [`AccountCatalog`](refresh_core::AccountCatalog).
///
/// Every credential write is one conditional `UPDATE` on `id`,
/// `credentials_version`, the refresh-token fingerprint column and the
/// platform (the credentials' sealing context), setting only
/// `credentials`, `refresh_fingerprint`, `expires_at`,
/// `credentials_version + 1` and `updated_at`.
#[derive(Clone)]
pub struct SeaOrmAccountRepository {
    pub(crate) db: Db,
}

impl std::fmt::Debug for SeaOrmAccountRepository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeaOrmAccountRepository")
            .field("backend", &self.db.dialect().0)
            .finish_non_exhaustive()
    }
}

impl SeaOrmAccountRepository {
    pub(crate) fn new(db: Db) -> Self {
        Self { db }
    }

    /// The account's platform: remembered from an earlier read, or read.
    pub(crate) async fn platform_of(
        &self,
        op: &'static str,
        id: AccountId,
    ) -> Result<Option<Platform>, StorageError> {
        if let Some(platform) = self.db.known_platform(id) {
            return Ok(Some(platform));
        }
        let sql = "SELECT platform FROM accounts WHERE id = $1";
        let Some(row) = query_one(
            self.db.conn(),
            self.db.dialect(),
            op,
            sql,
            vec![id.0.into()],
        )
        .await?
        else {
            return Ok(None);
        };
        let name: String = column(&row, op, "platform")?;
        let platform: Platform = canonical(&name)
            .map_err(|e| StorageError::invalid_data(op, format!("account {id}: platform: {e}")))?;
        self.db.remember_platform(id, &platform);
        Ok(Some(platform))
    }

    /// A credential write of `credentials` to `id` under `condition` (extra
    /// `WHERE` terms from `$7`): the one statement every credential write
    /// is. `Ok(None)` when no row matched.
    pub(crate) async fn write_credentials(
        &self,
        op: &'static str,
        id: AccountId,
        platform: &Platform,
        credentials: &Credentials,
        condition: &str,
        extra: Vec<Value>,
    ) -> Result<Option<Account>, StorageError> {
        let sealed = encode_credentials(self.db.sealing(), op, id, platform, credentials)?;
        let set = format!(
            "UPDATE accounts SET credentials = $1, refresh_fingerprint = $2, expires_at = $3, \
             credentials_version = credentials_version + 1, updated_at = {{now}} \
             WHERE id = $4 AND platform = $5{condition}"
        );
        let mut values = vec![
            sealed.into(),
            fingerprint_column(credentials).into(),
            expiry_column(credentials).into(),
            id.0.into(),
            platform.as_str().into(),
        ];
        values.extend(extra);
        let row = self.update_returning(op, id, &set, values).await?;
        row.map(|row| decode_account(&self.db, op, &row, Some(credentials)).map_err(|(_, e)| e))
            .transpose()
    }

    /// Runs the single-row `UPDATE` `sql` and returns the row as it stands
    /// after it (`RETURNING`; MySQL: a read in the same transaction).
    pub(crate) async fn update_returning(
        &self,
        op: &'static str,
        id: AccountId,
        sql: &str,
        values: Vec<Value>,
    ) -> Result<Option<QueryResult>, StorageError> {
        let dialect = self.db.dialect();
        if dialect.has_returning() {
            let sql = format!("{sql} RETURNING {ACCOUNT_COLUMNS}");
            return query_one(self.db.conn(), dialect, op, &sql, values).await;
        }
        let txn = self
            .db
            .conn()
            .begin()
            .await
            .map_err(|e| storage_error(op, e))?;
        let row = if exec(&txn, dialect, op, sql, values).await? == 1 {
            let select = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1");
            query_one(&txn, dialect, op, &select, vec![id.0.into()]).await?
        } else {
            None
        };
        txn.commit().await.map_err(|e| storage_error(op, e))?;
        Ok(row)
    }

    /// Inserts `account` under its own id, on `conn`.
    pub(crate) async fn insert_on(
        &self,
        conn: &impl ConnectionTrait,
        op: &'static str,
        account: &Account,
    ) -> Result<(), StorageError> {
        let sealing = self.db.sealing();
        let sql = "INSERT INTO accounts (id, name, platform, account_type, status, error_message, \
                   credentials, refresh_fingerprint, extra, proxy_url, priority, credentials_version, \
                   expires_at, temp_unschedulable_until, temp_unschedulable_reason, created_at, updated_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, {now}, {now})";
        let values = vec![
            account.id.0.into(),
            account.name.clone().into(),
            account.platform.as_str().into(),
            account.account_type.as_str().into(),
            account.status.as_str().into(),
            account.error_message.clone().into(),
            encode_credentials(
                sealing,
                op,
                account.id,
                &account.platform,
                &account.credentials,
            )?
            .into(),
            fingerprint_column(&account.credentials).into(),
            encode_extra(&account.extra).into(),
            encode_proxy(sealing, op, account.id, account.proxy.as_ref())?.into(),
            account.priority.into(),
            big(account.credentials_version),
            expiry_column(&account.credentials).into(),
            account.temp_unschedulable_until.map(to_ms).into(),
            account.temp_unschedulable_reason.clone().into(),
        ];
        exec(conn, self.db.dialect(), op, sql, values).await?;
        Ok(())
    }

    /// Inserts `account` under its explicit id. On PostgreSQL the id
    /// sequence is first moved past it, in the same transaction, under a
    /// `SHARE ROW EXCLUSIVE` lock of `accounts`: every insert that drew a
    /// value from the sequence (a `create`) holds `ROW EXCLUSIVE` on the
    /// table from before its `nextval` to its commit, so while the lock is
    /// held no value is being drawn and the sequence can only move forward;
    /// afterwards no `create` draws this id. (Moving the sequence after the
    /// insert, or without the lock, let a `create` draw an id in use or the
    /// sequence move back.) SQLite's AUTOINCREMENT and MySQL's
    /// AUTO_INCREMENT follow explicit ids by themselves.
    async fn insert_explicit(
        &self,
        op: &'static str,
        account: &Account,
    ) -> Result<(), StorageError> {
        let dialect = self.db.dialect();
        if dialect.0 != DbBackend::Postgres {
            return self.insert_on(self.db.conn(), op, account).await;
        }
        let txn = self
            .db
            .conn()
            .begin()
            .await
            .map_err(|e| storage_error(op, e))?;
        let lock = "LOCK TABLE accounts IN SHARE ROW EXCLUSIVE MODE";
        exec(&txn, dialect, op, lock, Vec::new()).await?;
        let sql = "SELECT setval(pg_get_serial_sequence('accounts', 'id'), \
                   GREATEST($1, (SELECT COALESCE(MAX(id), 1) FROM accounts), \
                   (SELECT COALESCE(MAX(last_value), 1) FROM pg_sequences \
                   WHERE schemaname = current_schema() AND sequencename = 'accounts_id_seq')))";
        exec(&txn, dialect, op, sql, vec![account.id.0.into()]).await?;
        self.insert_on(&txn, op, account).await?;
        txn.commit().await.map_err(|e| storage_error(op, e))
    }

    /// Reads rows of `sql` into accounts, reporting rows that do not parse
    /// as corrupt instead of failing.
    pub(crate) fn decode_rows(
        &self,
        op: &'static str,
        rows: &[QueryResult],
    ) -> (Vec<Account>, Vec<CorruptAccount>) {
        let mut accounts = Vec::with_capacity(rows.len());
        let mut corrupt = Vec::new();
        for row in rows {
            match decode_account(&self.db, op, row, None) {
                Ok(account) => accounts.push(account),
                Err((id, error)) => corrupt.push(CorruptAccount {
                    id: id.unwrap_or(AccountId(i64::MIN)),
                    error,
                }),
            }
        }
        (accounts, corrupt)
    }

    async fn exists(&self, op: &'static str, id: AccountId) -> Result<bool, StorageError> {
        let sql = "SELECT id FROM accounts WHERE id = $1";
        Ok(query_one(
            self.db.conn(),
            self.db.dialect(),
            op,
            sql,
            vec![id.0.into()],
        )
        .await?
        .is_some())
    }

    /// An `UPDATE` of status columns of `id`; `NotFound` when no row.
    async fn status_write(
        &self,
        op: &'static str,
        id: AccountId,
        set: &str,
    ) -> Result<(), StorageError> {
        let sql = format!("UPDATE accounts SET {set}, updated_at = {{now}} WHERE id = $1");
        match exec(
            self.db.conn(),
            self.db.dialect(),
            op,
            &sql,
            vec![id.0.into()],
        )
        .await?
        {
            0 => Err(StorageError::not_found(
                op,
                format!("account {id} not found"),
            )),
            _ => Ok(()),
        }
    }
}

/// The two range scans of a due listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DuePhase {
    /// `expires_at IS NULL`, by id.
    Unknown,
    /// `expires_at < before`, by (expires_at, id).
    Known,
}

/// The statement of one phase of a due page of `limit` rows after
/// `after`, or `None` when the phase has nothing to list.
fn due_query(
    phase: DuePhase,
    before: DateTime<Utc>,
    after: Option<DueCursor>,
    limit: usize,
) -> Option<(String, Vec<Value>)> {
    if limit == 0 {
        return None;
    }
    let n: Value = i64::try_from(limit).unwrap_or(i64::MAX).into();
    let select = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE status = 'active'");
    match phase {
        DuePhase::Unknown => {
            if after.is_some_and(|c| c.expires_at.is_some()) {
                return None;
            }
            let from = after.map_or(i64::MIN, |c| c.id.0);
            Some((
                format!("{select} AND expires_at IS NULL AND id > $1 ORDER BY id LIMIT $2"),
                vec![from.into(), n],
            ))
        }
        DuePhase::Known => {
            let before = to_ms(before);
            Some(
                match after.and_then(|c| c.expires_at.map(|at| (to_ms(at), c.id))) {
                    Some((at, id)) => (
                        format!(
                            "{select} AND expires_at < $1 AND (expires_at, id) > ($2, $3) \
                         ORDER BY expires_at, id LIMIT $4"
                        ),
                        vec![before.into(), at.into(), id.0.into(), n],
                    ),
                    None => (
                        format!("{select} AND expires_at < $1 ORDER BY expires_at, id LIMIT $2"),
                        vec![before.into(), n],
                    ),
                },
            )
        }
    }
}

impl SeaOrmAccountRepository {
    /// The database's plan of the statements one `list_due(before, after,
    /// limit)` page runs (PostgreSQL `EXPLAIN`, SQLite `EXPLAIN QUERY
    /// PLAN`), one line per plan row: to check that the due index serves
    /// the listing.
    ///
    /// # Errors
    /// A [`StorageError`] when the database fails.
    pub async fn explain_list_due(
        &self,
        before: DateTime<Utc>,
        after: Option<DueCursor>,
        limit: usize,
    ) -> Result<Vec<String>, StorageError> {
        const OP: &str = "explain_list_due";
        let (explain, column_name) = match self.db.dialect().0 {
            DbBackend::Sqlite => ("EXPLAIN QUERY PLAN", "detail"),
            DbBackend::Postgres => ("EXPLAIN", "QUERY PLAN"),
            DbBackend::MySql => ("EXPLAIN FORMAT=TREE", "EXPLAIN"),
        };
        let mut lines = Vec::new();
        for phase in [DuePhase::Unknown, DuePhase::Known] {
            let Some((sql, values)) = due_query(phase, before, after, limit) else {
                continue;
            };
            let sql = format!("{explain} {sql}");
            for row in query_all(self.db.conn(), self.db.dialect(), OP, &sql, values).await? {
                lines.push(column::<String>(&row, OP, column_name)?);
            }
        }
        Ok(lines)
    }
}

/// Where a due row sorts, read as the listing's SQL compares it
/// (`expires_at`, a number).
#[derive(Debug, Clone, Copy, PartialEq)]
enum SortKey {
    /// `expires_at IS NULL`.
    Unknown,
    /// Unix milliseconds a [`DueCursor`] holds exactly.
    Exact(DateTime<Utc>),
    /// A value no cursor holds exactly: a SQLite `REAL` with a fraction,
    /// an integer outside the instants `DateTime` can hold. Always a
    /// corrupt row (nothing this crate writes).
    Inexact(f64),
}

impl SortKey {
    /// Reads column `expires_at` of `row`.
    fn read(row: &QueryResult) -> Result<Self, StorageError> {
        if let Ok(ms) = row.try_get::<Option<i64>>("", "expires_at") {
            return Ok(match ms {
                None => Self::Unknown,
                Some(ms) => from_ms(ms).map_or(Self::Inexact(ms as f64), Self::Exact),
            });
        }
        match row.try_get::<Option<f64>>("", "expires_at") {
            Ok(Some(x)) if !x.is_nan() => Ok(Self::Inexact(x)),
            _ => Err(StorageError::invalid_data(
                "list_due",
                "column expires_at cannot be read as a number",
            )),
        }
    }

    /// The cursor just past a row at this key with id `id`, or `None` when
    /// no row after it can be due. A row at an inexact key `x` gets the
    /// cursor `(ceil(x), i64::MIN)` (clamped to the instants a cursor
    /// holds): every later row is listed, and only rows that are corrupt
    /// too (keys between `x` and `ceil(x)`) can be passed over. Never a
    /// cursor of unknown expiry for a known one: that would start the
    /// listing over, forever.
    fn cursor_past(self, id: i64) -> Option<DueCursor> {
        let at = |ms: i64, id: i64| {
            from_ms(ms).map(|at| DueCursor {
                expires_at: Some(at),
                id: AccountId(id),
            })
        };
        match self {
            Self::Unknown => Some(DueCursor {
                expires_at: None,
                id: AccountId(id),
            }),
            Self::Exact(expires_at) => Some(DueCursor {
                expires_at: Some(expires_at),
                id: AccountId(id),
            }),
            Self::Inexact(x) => {
                let (min, max) = (
                    DateTime::<Utc>::MIN_UTC.timestamp_millis(),
                    DateTime::<Utc>::MAX_UTC.timestamp_millis(),
                );
                let ceil = x.ceil();
                if ceil > max as f64 {
                    // Past every instant: nothing after it is before `before`.
                    None
                } else if ceil < min as f64 {
                    at(min, i64::MIN)
                } else {
                    // In range: the cast is exact for whole values.
                    let ms = ceil as i64;
                    at(ms, if ceil == x { id } else { i64::MIN })
                }
            }
        }
    }
}

/// One row of a due listing: its sort key and what it decoded to.
struct DueRow {
    key: SortKey,
    id: i64,
    account: Result<Account, StorageError>,
}

impl SeaOrmAccountRepository {
    async fn due_rows(&self, sql: &str, values: Vec<Value>) -> Result<Vec<DueRow>, StorageError> {
        let rows = query_all(self.db.conn(), self.db.dialect(), "list_due", sql, values).await?;
        rows.iter()
            .map(|row| {
                let id: i64 = column(row, "list_due", "id")?;
                let key = SortKey::read(row)?;
                let account = match key {
                    SortKey::Inexact(_) => Err(StorageError::invalid_data(
                        "list_due",
                        format!(
                            "account {id}: expires_at: not a whole number of milliseconds in range"
                        ),
                    )),
                    _ => decode_account(&self.db, "list_due", row, None).map_err(|(_, e)| e),
                };
                Ok(DueRow { key, id, account })
            })
            .collect()
    }
}

#[async_trait]
impl AccountRepository for SeaOrmAccountRepository {
    async fn get(&self, id: AccountId) -> Result<Option<Account>, StorageError> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1");
        let row = query_one(
            self.db.conn(),
            self.db.dialect(),
            "get",
            &sql,
            vec![id.0.into()],
        )
        .await?;
        row.map(|row| decode_account(&self.db, "get", &row, None).map_err(|(_, e)| e))
            .transpose()
    }

    async fn insert(&self, mut account: Account) -> Result<Account, StorageError> {
        self.insert_explicit("insert", &account).await?;
        self.db.remember_platform(account.id, &account.platform);
        account.derive_expires_at();
        Ok(account)
    }

    async fn compare_and_set_credentials(
        &self,
        id: AccountId,
        expected: CasExpectation,
        credentials: &Credentials,
    ) -> Result<CasOutcome, StorageError> {
        const OP: &str = "compare_and_set_credentials";
        let Some(platform) = self.platform_of(OP, id).await? else {
            return Ok(CasOutcome::NotFound);
        };
        let fence = expected
            .refresh_token
            .map(|f| f.to_hex())
            .unwrap_or_default();
        let written = self
            .write_credentials(
                OP,
                id,
                &platform,
                credentials,
                " AND credentials_version = $6 AND refresh_fingerprint = $7",
                vec![big(expected.version), fence.into()],
            )
            .await?;
        if let Some(account) = written {
            return Ok(CasOutcome::Applied(account));
        }
        let sql = "SELECT credentials_version FROM accounts WHERE id = $1";
        match query_one(
            self.db.conn(),
            self.db.dialect(),
            OP,
            sql,
            vec![id.0.into()],
        )
        .await?
        {
            None => {
                self.db.forget_platform(id);
                Ok(CasOutcome::NotFound)
            }
            Some(row) => {
                let version: i64 = column(&row, OP, "credentials_version")?;
                Ok(CasOutcome::VersionMismatch {
                    current_version: u64::try_from(version).unwrap_or_default(),
                })
            }
        }
    }

    async fn list_due(
        &self,
        before: DateTime<Utc>,
        after: Option<DueCursor>,
        limit: usize,
    ) -> Result<DuePage, StorageError> {
        let mut rows = Vec::new();
        // Unknown expiries first (by id), then known ones before `before`
        // by (expires_at, id): two range scans of the (status, expires_at,
        // id) index, never an OFFSET.
        if let Some((sql, values)) = due_query(DuePhase::Unknown, before, after, limit) {
            rows = self.due_rows(&sql, values).await?;
        }
        if let Some((sql, values)) = due_query(DuePhase::Known, before, after, limit - rows.len()) {
            rows.extend(self.due_rows(&sql, values).await?);
        }
        let next = (rows.len() >= limit)
            .then(|| rows.last())
            .flatten()
            .and_then(|last| last.key.cursor_past(last.id));
        let mut page = DuePage {
            next,
            ..DuePage::default()
        };
        for row in rows {
            match row.account {
                Ok(account) => page.accounts.push(account),
                Err(error) => page.corrupt.push(CorruptAccount {
                    id: AccountId(row.id),
                    error,
                }),
            }
        }
        Ok(page)
    }

    async fn set_error(
        &self,
        id: AccountId,
        observed_version: u64,
        message: &str,
    ) -> Result<bool, StorageError> {
        const OP: &str = "set_error";
        let sql = "UPDATE accounts SET status = 'error', error_message = $1, updated_at = {now} \
                   WHERE id = $2 AND credentials_version = $3";
        let values = vec![message.into(), id.0.into(), big(observed_version)];
        if exec(self.db.conn(), self.db.dialect(), OP, sql, values).await? == 1 {
            return Ok(true);
        }
        if self.exists(OP, id).await? {
            Ok(false)
        } else {
            Err(StorageError::not_found(
                OP,
                format!("account {id} not found"),
            ))
        }
    }

    async fn clear_error(&self, id: AccountId) -> Result<(), StorageError> {
        self.status_write("clear_error", id, "status = 'active', error_message = NULL")
            .await
    }

    async fn clear_temp_unschedulable(&self, id: AccountId) -> Result<(), StorageError> {
        self.status_write(
            "clear_temp_unschedulable",
            id,
            "temp_unschedulable_until = NULL, temp_unschedulable_reason = NULL",
        )
        .await
    }
}
