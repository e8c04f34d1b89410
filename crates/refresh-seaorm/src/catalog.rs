//! [`AccountCatalog`] of [`SeaOrmAccountRepository`]: the operator surface.

use async_trait::async_trait;
use sea_orm::{ConnectionTrait, TransactionTrait, Value};

use crate::codec::{
    ACCOUNT_COLUMNS, decode_account, encode_credentials, encode_extra, encode_proxy, expiry_column,
    fingerprint_column,
};
use crate::db::{column, exec, exec_insert_id, query_all, query_one};
use crate::error::storage_error;
use crate::repository::SeaOrmAccountRepository;
use refresh_core::{
    Account, AccountCatalog, AccountFilter, AccountId, AccountPage, Credentials, MetadataUpdate,
    NewAccount, Platform, RefreshTokenTaken, StatusCounts, StorageError, TokenHolder,
    ports::{duplicate_refresh_tokens, invalid_entry},
};

/// The refusal of a refresh token `holder` already holds.
fn taken(op: &'static str, holder: AccountId) -> StorageError {
    StorageError::refresh_token_taken(
        op,
        RefreshTokenTaken {
            entry: None,
            holder: TokenHolder::Account(holder),
        },
    )
}

impl SeaOrmAccountRepository {
    /// The account other than `except` whose stored refresh token is that
    /// of `credentials` (by the `refresh_fingerprint` column, so it works
    /// on sealed rows), on `conn`.
    async fn holder_of(
        &self,
        conn: &impl ConnectionTrait,
        op: &'static str,
        credentials: &Credentials,
        except: Option<AccountId>,
    ) -> Result<Option<AccountId>, StorageError> {
        let fingerprint = fingerprint_column(credentials);
        if fingerprint.is_empty() {
            return Ok(None);
        }
        // `<> ''` repeats the partial unique index's predicate: without it
        // SQLite cannot prove the index applies to a bound parameter and
        // scans the table for every entry (an import of N accounts was
        // O(N²) and held the write lock for minutes).
        let sql = "SELECT id FROM accounts WHERE refresh_fingerprint = $1 \
                   AND refresh_fingerprint <> '' AND id <> $2 ORDER BY id LIMIT 1";
        let except = except.map_or(i64::MIN, |id| id.0);
        let row = query_one(
            conn,
            self.db.dialect(),
            op,
            sql,
            vec![fingerprint.into(), except.into()],
        )
        .await?;
        row.map(|row| column::<i64>(&row, op, "id").map(AccountId))
            .transpose()
    }

    /// The first entry of `accounts` whose refresh token an existing account
    /// holds, with that account: one indexed query per chunk of entries
    /// (not one per entry), on `conn`.
    async fn first_held(
        &self,
        conn: &impl ConnectionTrait,
        op: &'static str,
        accounts: &[NewAccount],
    ) -> Result<Option<(usize, AccountId)>, StorageError> {
        const CHUNK: usize = 500;
        let fingerprints: Vec<(usize, String)> = accounts
            .iter()
            .enumerate()
            .map(|(index, a)| (index, fingerprint_column(&a.credentials)))
            .filter(|(_, f)| !f.is_empty())
            .collect();
        let mut first: Option<(usize, AccountId)> = None;
        for chunk in fingerprints.chunks(CHUNK) {
            let params: Vec<String> = (1..=chunk.len()).map(|n| format!("${n}")).collect();
            // `<> ''` repeats the partial unique index's predicate, so the
            // planner can use the index for bound parameters.
            let sql = format!(
                "SELECT id, refresh_fingerprint FROM accounts WHERE refresh_fingerprint <> '' \
                 AND refresh_fingerprint IN ({})",
                params.join(", ")
            );
            let values: Vec<Value> = chunk.iter().map(|(_, f)| f.clone().into()).collect();
            for row in query_all(conn, self.db.dialect(), op, &sql, values).await? {
                let holder = AccountId(column::<i64>(&row, op, "id")?);
                let fingerprint = column::<String>(&row, op, "refresh_fingerprint")?;
                if let Some((index, _)) = chunk.iter().find(|(_, f)| *f == fingerprint)
                    && first.is_none_or(|(seen, _)| *index < seen)
                {
                    first = Some((*index, holder));
                }
            }
        }
        Ok(first)
    }

    /// Creates `new` on `conn` under a store-assigned id: the row goes in
    /// with its secrets empty, then they are sealed under the id it got
    /// (the sealing context binds the id). Run inside a transaction, after
    /// [`Self::first_held`].
    async fn create_on(
        &self,
        conn: &impl ConnectionTrait,
        op: &'static str,
        new: NewAccount,
    ) -> Result<Account, StorageError> {
        let dialect = self.db.dialect();
        let insert = "INSERT INTO accounts (name, platform, account_type, status, error_message, \
                      credentials, refresh_fingerprint, extra, proxy_url, priority, credentials_version, \
                      expires_at, temp_unschedulable_until, temp_unschedulable_reason, created_at, updated_at) \
                      VALUES ($1, $2, $3, $4, NULL, '', $5, $6, NULL, $7, 0, $8, NULL, NULL, {now}, {now})";
        let values: Vec<Value> = vec![
            new.name.clone().into(),
            new.platform.as_str().into(),
            new.account_type.as_str().into(),
            new.status.as_str().into(),
            fingerprint_column(&new.credentials).into(),
            encode_extra(&new.extra).into(),
            new.priority.into(),
            expiry_column(&new.credentials).into(),
        ];
        let id = if dialect.has_returning() {
            let sql = format!("{insert} RETURNING id");
            let row = query_one(conn, dialect, op, &sql, values)
                .await?
                .ok_or_else(|| StorageError::other(op, "the insert returned no id"))?;
            AccountId(column::<i64>(&row, op, "id")?)
        } else {
            let id = exec_insert_id(conn, dialect, op, insert, values).await?;
            AccountId(i64::try_from(id).map_err(|_| StorageError::other(op, "id out of range"))?)
        };
        let sealing = self.db.sealing();
        let credentials = encode_credentials(sealing, op, id, &new.platform, &new.credentials)?;
        let proxy = encode_proxy(sealing, op, id, new.proxy.as_ref())?;
        let sql = "UPDATE accounts SET credentials = $1, proxy_url = $2 WHERE id = $3";
        exec(
            conn,
            dialect,
            op,
            sql,
            vec![credentials.into(), proxy.into(), id.0.into()],
        )
        .await?;
        self.db.remember_platform(id, &new.platform);
        let mut account = new.into_account(id);
        account.derive_expires_at();
        Ok(account)
    }

    async fn import_batch(
        &self,
        op: &'static str,
        accounts: Vec<NewAccount>,
    ) -> Result<Vec<Account>, StorageError> {
        for (index, account) in accounts.iter().enumerate() {
            account
                .validate()
                .map_err(|e| invalid_entry(op, index, &e))?;
        }
        duplicate_refresh_tokens(op, &accounts)?;
        if accounts.is_empty() {
            return Ok(Vec::new());
        }
        // One transaction whose first statement is a write, so SQLite takes
        // its write lock at once (with the busy timeout) instead of failing
        // to upgrade a read snapshot.
        let txn = self
            .db
            .conn()
            .begin()
            .await
            .map_err(|e| storage_error(op, e))?;
        if self.db.dialect().0 == sea_orm::DbBackend::Sqlite {
            // The check for a held refresh token reads before the first
            // insert: take the write lock first, or the read snapshot could
            // not be upgraded when another pool writes meanwhile.
            let lock = "DELETE FROM accounts WHERE 1 = 0";
            if let Err(error) = exec(&txn, self.db.dialect(), op, lock, Vec::new()).await {
                let _ = txn.rollback().await;
                return Err(error);
            }
        }
        let single = accounts.len() == 1 && op == "create";
        match self.first_held(&txn, op, &accounts).await {
            Ok(None) => {}
            Ok(Some((index, holder))) => {
                let _ = txn.rollback().await;
                let error = taken(op, holder);
                return Err(if single { error } else { error.in_entry(index) });
            }
            Err(error) => {
                let _ = txn.rollback().await;
                return Err(error);
            }
        }
        let mut created = Vec::with_capacity(accounts.len());
        for (index, account) in accounts.into_iter().enumerate() {
            match self.create_on(&txn, op, account).await {
                Ok(account) => created.push(account),
                Err(error) => {
                    let _ = txn.rollback().await;
                    return Err(if single && error.taken_refresh_token().is_some() {
                        error
                    } else {
                        error.in_entry(index)
                    });
                }
            }
        }
        txn.commit().await.map_err(|e| storage_error(op, e))?;
        Ok(created)
    }
}

#[async_trait]
impl AccountCatalog for SeaOrmAccountRepository {
    async fn create(&self, account: NewAccount) -> Result<Account, StorageError> {
        let mut created = self.import_batch("create", vec![account]).await?;
        created
            .pop()
            .ok_or_else(|| StorageError::other("create", "nothing created"))
    }

    async fn import(&self, accounts: Vec<NewAccount>) -> Result<Vec<Account>, StorageError> {
        self.import_batch("import", accounts).await
    }

    async fn list(
        &self,
        filter: &AccountFilter,
        after: Option<AccountId>,
        limit: usize,
    ) -> Result<AccountPage, StorageError> {
        const OP: &str = "list";
        let mut sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id > $1");
        let mut values: Vec<Value> = vec![after.map_or(i64::MIN, |id| id.0).into()];
        if let Some(platform) = &filter.platform {
            values.push(platform.as_str().into());
            sql.push_str(&format!(" AND platform = ${}", values.len()));
        }
        if let Some(status) = filter.status {
            values.push(status.as_str().into());
            sql.push_str(&format!(" AND status = ${}", values.len()));
        }
        values.push(i64::try_from(limit).unwrap_or(i64::MAX).into());
        sql.push_str(&format!(" ORDER BY id LIMIT ${}", values.len()));
        let rows = query_all(self.db.conn(), self.db.dialect(), OP, &sql, values).await?;
        let last = match rows.last() {
            Some(row) if rows.len() >= limit => Some(AccountId(column::<i64>(row, OP, "id")?)),
            _ => None,
        };
        let (accounts, corrupt) = self.decode_rows(OP, &rows);
        Ok(AccountPage {
            accounts,
            corrupt,
            next: last,
        })
    }

    async fn count_by_status(
        &self,
        platform: Option<Platform>,
    ) -> Result<StatusCounts, StorageError> {
        const OP: &str = "count_by_status";
        let (sql, values): (&str, Vec<Value>) = match &platform {
            None => (
                "SELECT status, COUNT(*) AS n FROM accounts GROUP BY status",
                Vec::new(),
            ),
            Some(platform) => (
                "SELECT status, COUNT(*) AS n FROM accounts WHERE platform = $1 GROUP BY status",
                vec![platform.as_str().into()],
            ),
        };
        let mut counts = StatusCounts::default();
        for row in query_all(self.db.conn(), self.db.dialect(), OP, sql, values).await? {
            let status: String = column(&row, OP, "status")?;
            let n: i64 = column(&row, OP, "n")?;
            // A status no variant has is a corrupt row: not counted.
            if let Ok(status) = status.parse() {
                let n = u64::try_from(n).unwrap_or_default();
                match status {
                    refresh_core::AccountStatus::Active => counts.active += n,
                    refresh_core::AccountStatus::Disabled => counts.disabled += n,
                    refresh_core::AccountStatus::Error => counts.error += n,
                }
            }
        }
        Ok(counts)
    }

    async fn update_metadata(
        &self,
        id: AccountId,
        update: &MetadataUpdate,
    ) -> Result<Account, StorageError> {
        const OP: &str = "update_metadata";
        update.validate().map_err(|e| invalid_entry(OP, 0, &e))?;
        let mut sets = Vec::new();
        let mut values: Vec<Value> = Vec::new();
        let mut set = |column: &str, value: Value| {
            values.push(value);
            sets.push(format!("{column} = ${}", values.len()));
        };
        if let Some(name) = &update.name {
            set("name", name.clone().into());
        }
        if let Some(status) = update.status {
            set("status", status.as_str().into());
        }
        if let Some(message) = &update.error_message {
            set("error_message", message.clone().into());
        }
        if let Some(extra) = &update.extra {
            set("extra", encode_extra(extra).into());
        }
        if let Some(proxy) = &update.proxy {
            set(
                "proxy_url",
                encode_proxy(self.db.sealing(), OP, id, proxy.as_ref())?.into(),
            );
        }
        if let Some(priority) = update.priority {
            set("priority", priority.into());
        }
        let sql = format!(
            "UPDATE accounts SET {}updated_at = {{now}} WHERE id = ${}",
            sets.iter().map(|s| format!("{s}, ")).collect::<String>(),
            values.len() + 1
        );
        values.push(id.0.into());
        let row = self
            .update_returning(OP, id, &sql, values)
            .await?
            .ok_or_else(|| StorageError::not_found(OP, format!("account {id} not found")))?;
        decode_account(&self.db, OP, &row, None).map_err(|(_, e)| e)
    }

    async fn delete(&self, id: AccountId) -> Result<bool, StorageError> {
        let sql = "DELETE FROM accounts WHERE id = $1";
        let deleted = exec(
            self.db.conn(),
            self.db.dialect(),
            "delete",
            sql,
            vec![id.0.into()],
        )
        .await?;
        self.db.forget_platform(id);
        Ok(deleted > 0)
    }

    async fn replace_credentials(
        &self,
        id: AccountId,
        credentials: &Credentials,
    ) -> Result<Account, StorageError> {
        const OP: &str = "replace_credentials";
        credentials
            .expires_at()
            .map_err(|e| StorageError::invalid_data(OP, format!("credentials.expires_at: {e}")))?;
        let not_found = || StorageError::not_found(OP, format!("account {id} not found"));
        // Twice at most: a remembered platform is stale only when the row
        // was deleted and re-created with another platform meanwhile.
        for _ in 0..2 {
            let platform = self.platform_of(OP, id).await?.ok_or_else(not_found)?;
            if let Some(holder) = self
                .holder_of(self.db.conn(), OP, credentials, Some(id))
                .await?
            {
                return Err(taken(OP, holder));
            }
            let written = self
                .write_credentials(OP, id, &platform, credentials, "", Vec::new())
                .await?;
            if let Some(account) = written {
                return Ok(account);
            }
            self.db.forget_platform(id);
        }
        Err(not_found())
    }
}
