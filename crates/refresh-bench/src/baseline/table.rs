//! `go_accounts`: the Go implementation's account row (REFERENCE.md §2),
//! credentials as a plaintext JSON object, read and written whole.

use anyhow::{Context, Result};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, QueryResult, Statement, Value};
use serde_json::{Map, Value as Json};

const COLUMNS: &str =
    "id, name, platform, type, status, priority, credentials, extra, error_message, updated_at";

/// One account as Go holds it.
#[derive(Clone)]
pub(crate) struct GoAccount {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) platform: String,
    pub(crate) kind: String,
    pub(crate) status: String,
    pub(crate) priority: i32,
    pub(crate) credentials: Map<String, Json>,
    pub(crate) extra: String,
    pub(crate) error_message: Option<String>,
    pub(crate) updated_at: i64,
}

impl GoAccount {
    /// A Claude OAuth account with these tokens.
    pub(crate) fn claude(id: i64, access: &str, refresh: &str, expires_at: i64) -> Self {
        let mut credentials = Map::new();
        credentials.insert("access_token".into(), access.into());
        credentials.insert("refresh_token".into(), refresh.into());
        credentials.insert("expires_at".into(), expires_at.to_string().into());
        Self {
            id,
            name: format!("go-{id}"),
            platform: "anthropic".into(),
            kind: "oauth".into(),
            status: "active".into(),
            priority: 0,
            credentials,
            extra: "{}".into(),
            error_message: None,
            updated_at: 0,
        }
    }

    /// `expires_at` in unix seconds (Go's lenient string parse), if any.
    pub(crate) fn expires_at(&self) -> Option<i64> {
        match self.credentials.get("expires_at")? {
            Json::String(s) => s.trim().parse().ok(),
            Json::Number(n) => n.as_i64(),
            _ => None,
        }
    }

    pub(crate) fn string(&self, key: &str) -> String {
        self.credentials
            .get(key)
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_owned()
    }

    /// `_token_version` (0 when missing).
    pub(crate) fn token_version(&self) -> i64 {
        self.credentials
            .get("_token_version")
            .and_then(Json::as_i64)
            .unwrap_or(0)
    }

    fn read(row: &QueryResult) -> Result<Self> {
        let credentials: String = row.try_get("", "credentials")?;
        Ok(Self {
            id: row.try_get("", "id")?,
            name: row.try_get("", "name")?,
            platform: row.try_get("", "platform")?,
            kind: row.try_get("", "type")?,
            status: row.try_get("", "status")?,
            priority: row.try_get("", "priority")?,
            credentials: serde_json::from_str(&credentials)?,
            extra: row.try_get("", "extra")?,
            error_message: row.try_get("", "error_message")?,
            updated_at: row.try_get("", "updated_at")?,
        })
    }

    fn values(&self) -> Vec<Value> {
        vec![
            self.id.into(),
            self.name.clone().into(),
            self.platform.clone().into(),
            self.kind.clone().into(),
            self.status.clone().into(),
            self.priority.into(),
            Json::Object(self.credentials.clone()).to_string().into(),
            self.extra.clone().into(),
            self.error_message.clone().into(),
            self.updated_at.into(),
        ]
    }
}

fn stmt(sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// Creates the table (and Go's priority index).
pub(crate) async fn create(db: &DatabaseConnection) -> Result<()> {
    db.execute_unprepared(
        "CREATE TABLE IF NOT EXISTS go_accounts (
            id BIGINT PRIMARY KEY, name TEXT NOT NULL, platform TEXT NOT NULL,
            type TEXT NOT NULL, status TEXT NOT NULL, priority INT NOT NULL,
            credentials TEXT NOT NULL, extra TEXT NOT NULL, error_message TEXT,
            updated_at BIGINT NOT NULL);
         CREATE INDEX IF NOT EXISTS go_accounts_status_priority ON go_accounts (status, priority);",
    )
    .await
    .context("create go_accounts")?;
    Ok(())
}

/// Inserts `accounts` in multi-row statements.
pub(crate) async fn insert(db: &DatabaseConnection, accounts: &[GoAccount]) -> Result<()> {
    for chunk in accounts.chunks(500) {
        let mut sql = format!("INSERT INTO go_accounts ({COLUMNS}) VALUES ");
        let mut values = Vec::with_capacity(chunk.len() * 10);
        for (i, account) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            let n = i * 10;
            sql.push('(');
            sql.push_str(
                &(1..=10)
                    .map(|k| format!("${}", n + k))
                    .collect::<Vec<_>>()
                    .join(","),
            );
            sql.push(')');
            values.extend(account.values());
        }
        db.execute(stmt(&sql, values))
            .await
            .context("insert go_accounts")?;
    }
    Ok(())
}

/// Go's `GetByID`.
pub(crate) async fn get(db: &DatabaseConnection, id: i64) -> Result<Option<GoAccount>> {
    let row = db
        .query_one(stmt(
            &format!("SELECT {COLUMNS} FROM go_accounts WHERE id = $1"),
            vec![id.into()],
        ))
        .await?;
    row.as_ref().map(GoAccount::read).transpose()
}

/// Go's `ListActive`: every active account, by priority (the sweep's
/// listing; no due filter, no paging).
pub(crate) async fn list_active(db: &DatabaseConnection) -> Result<Vec<GoAccount>> {
    db.query_all(stmt(
        &format!("SELECT {COLUMNS} FROM go_accounts WHERE status = 'active' ORDER BY priority, id"),
        vec![],
    ))
    .await?
    .iter()
    .map(GoAccount::read)
    .collect()
}

/// Go's `Update`: the whole row, unconditionally (defect 5).
pub(crate) async fn update(db: &DatabaseConnection, account: &GoAccount) -> Result<()> {
    db.execute(stmt(
        "UPDATE go_accounts SET name = $2, platform = $3, type = $4, status = $5, priority = $6,
            credentials = $7, extra = $8, error_message = $9, updated_at = $10 WHERE id = $1",
        account.values(),
    ))
    .await
    .context("update go_accounts")?;
    Ok(())
}
