//! [`DbLoginSessionStore`]: core's [`LoginSessionStore`] in
//! `login_sessions`, judged by the database's clock.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::{QueryResult, TransactionTrait};

use crate::codec::{from_ms, open_text, seal_text};
use crate::db::{Db, column, exec, millis, query_one};
use crate::error::storage_error;
use crate::seal::context;
use refresh_core::{LoginSessionStore, LoginTake, PendingLogin, Platform, StorageError};

/// Logins in progress in the database, shared by every process on it.
///
/// - `put` is one `INSERT` (a used id violates the primary key:
///   `Conflict`) with `expires_at = now + ttl` on the database's clock,
///   `RETURNING` that instant.
/// - `take` is one `DELETE … WHERE session_id = ? RETURNING …` with the
///   remaining life by the database's clock: the database serializes the
///   deletes of one row, so one caller gets it; an expired row is deleted
///   and reported as [`LoginTake::Expired`]. (MySQL: `SELECT … FOR UPDATE`
///   and `DELETE` in one transaction.)
/// - The payload is sealed with the credentials' key, bound to the session
///   id and platform. Sessions live minutes: `rekey` leaves them (one
///   sealed under a previous key opens while that key is configured).
#[derive(Clone)]
pub struct DbLoginSessionStore {
    db: Db,
}

impl std::fmt::Debug for DbLoginSessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbLoginSessionStore")
            .field("backend", &self.db.dialect().0)
            .finish()
    }
}

impl DbLoginSessionStore {
    pub(crate) fn new(db: Db) -> Self {
        Self { db }
    }

    fn decode(&self, id: &str, row: &QueryResult) -> Result<LoginTake, StorageError> {
        const OP: &str = "login_session_take";
        let remaining: i64 = column(row, OP, "remaining_ms")?;
        if remaining <= 0 {
            return Ok(LoginTake::Expired);
        }
        let platform: String = column(row, OP, "platform")?;
        let platform: Platform = platform
            .parse()
            .map_err(|_| StorageError::invalid_data(OP, "platform is not a platform name"))?;
        let stored: String = column(row, OP, "payload")?;
        let payload = open_text(
            self.db.sealing(),
            OP,
            "payload",
            &stored,
            &context::login_session(id, &platform),
        )?;
        Ok(LoginTake::Taken(PendingLogin {
            id: id.to_owned(),
            platform,
            payload: payload.into(),
        }))
    }

    /// MySQL (no `RETURNING`): the take as a transaction.
    async fn take_in_transaction(&self, id: &str) -> Result<Option<QueryResult>, StorageError> {
        const OP: &str = "login_session_take";
        let dialect = self.db.dialect();
        let txn = self
            .db
            .conn()
            .begin()
            .await
            .map_err(|e| storage_error(OP, e))?;
        let read = "SELECT platform, payload, expires_at - {now} AS remaining_ms \
                    FROM login_sessions WHERE session_id = $1 FOR UPDATE";
        let row = query_one(&txn, dialect, OP, read, vec![id.into()]).await?;
        let row = match row {
            Some(row) => {
                let delete = "DELETE FROM login_sessions WHERE session_id = $1";
                (exec(&txn, dialect, OP, delete, vec![id.into()]).await? == 1).then_some(row)
            }
            None => None,
        };
        txn.commit().await.map_err(|e| storage_error(OP, e))?;
        Ok(row)
    }
}

#[async_trait]
impl LoginSessionStore for DbLoginSessionStore {
    async fn put(
        &self,
        login: &PendingLogin,
        ttl: Duration,
    ) -> Result<DateTime<Utc>, StorageError> {
        const OP: &str = "login_session_put";
        if !PendingLogin::is_valid_id(&login.id) {
            return Err(StorageError::invalid_data(OP, "invalid session id"));
        }
        let sealed = seal_text(
            self.db.sealing(),
            OP,
            login.payload.expose(),
            &context::login_session(&login.id, &login.platform),
        )?;
        let values = vec![
            login.id.as_str().into(),
            login.platform.as_str().into(),
            sealed.into(),
            millis(ttl),
        ];
        let insert = "INSERT INTO login_sessions (session_id, platform, payload, expires_at, created_at) \
                      VALUES ($1, $2, $3, {now} + $4, {now})";
        let expires_ms: i64 = if self.db.dialect().has_returning() {
            let sql = format!("{insert} RETURNING expires_at");
            let row = query_one(self.db.conn(), self.db.dialect(), OP, &sql, values)
                .await?
                .ok_or_else(|| StorageError::other(OP, "the insert returned no row"))?;
            column(&row, OP, "expires_at")?
        } else {
            exec(self.db.conn(), self.db.dialect(), OP, insert, values).await?;
            let read = "SELECT expires_at FROM login_sessions WHERE session_id = $1";
            let row = query_one(
                self.db.conn(),
                self.db.dialect(),
                OP,
                read,
                vec![login.id.as_str().into()],
            )
            .await?
            .ok_or_else(|| StorageError::other(OP, "the session vanished after its insert"))?;
            column(&row, OP, "expires_at")?
        };
        from_ms(expires_ms)
            .ok_or_else(|| StorageError::invalid_data(OP, "expires_at is out of range"))
    }

    async fn take(&self, id: &str) -> Result<LoginTake, StorageError> {
        const OP: &str = "login_session_take";
        if !PendingLogin::is_valid_id(id) {
            return Ok(LoginTake::Absent);
        }
        let row = if self.db.dialect().has_returning() {
            let sql = "DELETE FROM login_sessions WHERE session_id = $1 \
                       RETURNING platform, payload, expires_at - {now} AS remaining_ms";
            query_one(self.db.conn(), self.db.dialect(), OP, sql, vec![id.into()]).await?
        } else {
            self.take_in_transaction(id).await?
        };
        match row {
            None => Ok(LoginTake::Absent),
            Some(row) => self.decode(id, &row),
        }
    }

    async fn purge(&self, limit: usize) -> Result<u64, StorageError> {
        if limit == 0 {
            return Ok(0);
        }
        let over = "expires_at <= {now}";
        let sql = if self.db.dialect().has_returning() {
            format!(
                "DELETE FROM login_sessions WHERE session_id IN \
                 (SELECT session_id FROM login_sessions WHERE {over} LIMIT $1) AND {over}"
            )
        } else {
            format!("DELETE FROM login_sessions WHERE {over} LIMIT $1")
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        exec(
            self.db.conn(),
            self.db.dialect(),
            "login_session_purge",
            &sql,
            vec![limit.into()],
        )
        .await
    }
}
