//! [`DbRefreshEventLog`]: core's [`RefreshEventLog`] in `refresh_events`.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::{DbBackend, QueryResult};

use crate::db::{Db, column, exec, query_all};
use refresh_core::ports::{HourlyCount, RefreshEvent, RefreshEventLog, event_name, hour_of};
use refresh_core::{AccountId, Platform, StorageError};

/// The refresh history in the database: one `INSERT` per event, reads by
/// index (`refresh_events_account`, `refresh_events_at`), a purge that
/// deletes at most `limit` of the oldest rows per statement, and a
/// per-account purge served by `refresh_events_account`. Every process
/// sharing the database sees the same history.
#[derive(Clone)]
pub struct DbRefreshEventLog {
    db: Db,
}

impl std::fmt::Debug for DbRefreshEventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbRefreshEventLog")
            .field("backend", &self.db.dialect().0)
            .finish()
    }
}

const COLUMNS: &str = "account_id, platform, at_ms, outcome, duration_ms, lock_layer, attempts";

fn limit_value(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn time(op: &'static str, ms: i64) -> Result<DateTime<Utc>, StorageError> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StorageError::invalid_data(op, "event time out of range"))
}

fn decode(row: &QueryResult) -> Result<RefreshEvent, StorageError> {
    const OP: &str = "event_recent";
    let platform: String = column(row, OP, "platform")?;
    let duration: i64 = column(row, OP, "duration_ms")?;
    let attempts: i32 = column(row, OP, "attempts")?;
    Ok(RefreshEvent {
        account_id: AccountId(column(row, OP, "account_id")?),
        platform: platform
            .parse::<Platform>()
            .map_err(|e| StorageError::invalid_data(OP, format!("platform: {e}")))?,
        at: time(OP, column(row, OP, "at_ms")?)?,
        outcome: column(row, OP, "outcome")?,
        duration: Duration::from_millis(u64::try_from(duration).unwrap_or(0)),
        lock_layer: column(row, OP, "lock_layer")?,
        attempts: u32::try_from(attempts).unwrap_or(0),
    })
}

/// Accounts one [`latest`](RefreshEventLog::latest) statement reads (SQLite
/// allows 500 terms in a compound `SELECT`).
const LATEST_CHUNK: usize = 100;

/// Accounts over the bound one [`purge_excess`](RefreshEventLog::purge_excess)
/// call looks at most.
const EXCESS_ACCOUNTS: i64 = 100;

/// The accounts with more than `$1` events (`$2` of them at most): one
/// pass over the `refresh_events_account` index (covering on SQLite).
const OVER_BOUND_SQL: &str = "SELECT account_id FROM refresh_events GROUP BY account_id \
     HAVING COUNT(*) > $1 ORDER BY account_id LIMIT $2";

/// The events of account `$1` beyond its newest `$2`, at most `$3` of
/// them: a backward range of `refresh_events_account` (account, time, id)
/// skipping the newest `$2`. The derived table lets MySQL delete from the
/// table it reads.
const EXCESS_SQL: &str = "DELETE FROM refresh_events WHERE id IN (SELECT id FROM \
     (SELECT id FROM refresh_events WHERE account_id = $1 \
     ORDER BY at_ms DESC, id DESC LIMIT $3 OFFSET $2) AS excess)";

impl DbRefreshEventLog {
    pub(crate) fn new(db: Db) -> Self {
        Self { db }
    }

    /// The database's plan of the statements of
    /// [`purge_excess`](RefreshEventLog::purge_excess) (PostgreSQL
    /// `EXPLAIN`, SQLite `EXPLAIN QUERY PLAN`): the plan of the grouped
    /// pass, then the plan of one account's delete, each one line per plan
    /// row: to check that `refresh_events_account` serves them.
    ///
    /// # Errors
    /// A [`StorageError`] when the database fails.
    pub async fn explain_purge_excess(
        &self,
        keep: usize,
    ) -> Result<[Vec<String>; 2], StorageError> {
        const OP: &str = "explain_event_purge_excess";
        let (explain, column_name) = match self.db.dialect().0 {
            DbBackend::Sqlite => ("EXPLAIN QUERY PLAN", "detail"),
            DbBackend::Postgres => ("EXPLAIN", "QUERY PLAN"),
            DbBackend::MySql => ("EXPLAIN FORMAT=TREE", "EXPLAIN"),
        };
        let keep = limit_value(keep);
        let statements: [(&str, Vec<sea_orm::Value>); 2] = [
            (OVER_BOUND_SQL, vec![keep.into(), EXCESS_ACCOUNTS.into()]),
            (EXCESS_SQL, vec![1_i64.into(), keep.into(), 1000_i64.into()]),
        ];
        let mut plans: [Vec<String>; 2] = Default::default();
        for ((sql, values), lines) in statements.into_iter().zip(&mut plans) {
            let sql = format!("{explain} {sql}");
            for row in query_all(self.db.conn(), self.db.dialect(), OP, &sql, values).await? {
                lines.push(column::<String>(&row, OP, column_name)?);
            }
        }
        Ok(plans)
    }
}

#[async_trait]
impl RefreshEventLog for DbRefreshEventLog {
    async fn append(&self, event: &RefreshEvent) -> Result<(), StorageError> {
        let duration = i64::try_from(event.duration.as_millis()).unwrap_or(i64::MAX);
        let sql = format!(
            "INSERT INTO refresh_events ({COLUMNS}, hour_s) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        );
        exec(
            self.db.conn(),
            self.db.dialect(),
            "event_append",
            &sql,
            vec![
                event.account_id.get().into(),
                event.platform.as_str().into(),
                event.at.timestamp_millis().into(),
                event_name(&event.outcome).into(),
                duration.into(),
                event.lock_layer.as_deref().map(event_name).into(),
                i32::try_from(event.attempts).unwrap_or(i32::MAX).into(),
                hour_of(event.at).timestamp().into(),
            ],
        )
        .await
        .map(drop)
    }

    async fn recent(
        &self,
        account: AccountId,
        limit: usize,
    ) -> Result<Vec<RefreshEvent>, StorageError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {COLUMNS} FROM refresh_events WHERE account_id = $1 \
             ORDER BY at_ms DESC, id DESC LIMIT $2"
        );
        let rows = query_all(
            self.db.conn(),
            self.db.dialect(),
            "event_recent",
            &sql,
            vec![account.get().into(), limit_value(limit).into()],
        )
        .await?;
        rows.iter().map(decode).collect()
    }

    /// One statement per 100 accounts: a `UNION ALL` of one newest-first
    /// `LIMIT 1` read of `refresh_events_account` per account.
    async fn latest(&self, accounts: &[AccountId]) -> Result<Vec<RefreshEvent>, StorageError> {
        let mut events = Vec::with_capacity(accounts.len());
        for chunk in accounts.chunks(LATEST_CHUNK) {
            let sql = (1..=chunk.len())
                .map(|i| {
                    format!(
                        "SELECT * FROM (SELECT {COLUMNS} FROM refresh_events \
                         WHERE account_id = ${i} ORDER BY at_ms DESC, id DESC LIMIT 1) AS l{i}"
                    )
                })
                .collect::<Vec<_>>()
                .join(" UNION ALL ");
            let rows = query_all(
                self.db.conn(),
                self.db.dialect(),
                "event_latest",
                &sql,
                chunk.iter().map(|a| a.get().into()).collect(),
            )
            .await?;
            for row in &rows {
                events.push(decode(row)?);
            }
        }
        Ok(events)
    }

    async fn hourly(&self, since: DateTime<Utc>) -> Result<Vec<HourlyCount>, StorageError> {
        const OP: &str = "event_hourly";
        let sql = "SELECT hour_s, platform, outcome, COUNT(*) AS n FROM refresh_events \
                   WHERE at_ms >= $1 GROUP BY hour_s, platform, outcome";
        let rows = query_all(
            self.db.conn(),
            self.db.dialect(),
            OP,
            sql,
            vec![since.timestamp_millis().into()],
        )
        .await?;
        let mut counts = rows
            .iter()
            .map(|row| {
                let platform: String = column(row, OP, "platform")?;
                let hour: i64 = column(row, OP, "hour_s")?;
                let count: i64 = column(row, OP, "n")?;
                Ok(HourlyCount {
                    hour: time(OP, hour.saturating_mul(1000))?,
                    platform: platform
                        .parse()
                        .map_err(|e| StorageError::invalid_data(OP, format!("platform: {e}")))?,
                    outcome: column(row, OP, "outcome")?,
                    count: u64::try_from(count).unwrap_or(0),
                })
            })
            .collect::<Result<Vec<_>, StorageError>>()?;
        counts.sort();
        Ok(counts)
    }

    async fn purge(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, StorageError> {
        if limit == 0 {
            return Ok(0);
        }
        let sql = if self.db.dialect().0 == DbBackend::MySql {
            "DELETE FROM refresh_events WHERE at_ms < $1 ORDER BY at_ms, id LIMIT $2"
        } else {
            "DELETE FROM refresh_events WHERE id IN (SELECT id FROM refresh_events \
             WHERE at_ms < $1 ORDER BY at_ms, id LIMIT $2)"
        };
        exec(
            self.db.conn(),
            self.db.dialect(),
            "event_purge",
            sql,
            vec![before.timestamp_millis().into(), limit_value(limit).into()],
        )
        .await
    }

    /// Finds the accounts over the bound (one grouped pass over the
    /// account index), then deletes each one's excess with one indexed
    /// statement, until `limit` rows went.
    async fn purge_excess(&self, keep: usize, limit: usize) -> Result<u64, StorageError> {
        const OP: &str = "event_purge_excess";
        if limit == 0 {
            return Ok(0);
        }
        let keep = limit_value(keep);
        let over = query_all(
            self.db.conn(),
            self.db.dialect(),
            OP,
            OVER_BOUND_SQL,
            vec![keep.into(), EXCESS_ACCOUNTS.into()],
        )
        .await?;
        let mut deleted = 0u64;
        for row in &over {
            let left = u64::try_from(limit).unwrap_or(u64::MAX) - deleted;
            if left == 0 {
                break;
            }
            let account: i64 = column(row, OP, "account_id")?;
            deleted += exec(
                self.db.conn(),
                self.db.dialect(),
                OP,
                EXCESS_SQL,
                vec![
                    account.into(),
                    keep.into(),
                    i64::try_from(left).unwrap_or(i64::MAX).into(),
                ],
            )
            .await?;
        }
        Ok(deleted)
    }
}
