//! [`rekey`](crate::SeaOrmBackend::rekey): re-seal every stored secret under
//! the current key.

use crate::claims::key_of;
use sea_orm::DbBackend;

use crate::codec::{is_sealed, needs_reseal, open_text, seal_text};
use crate::db::{Db, column, exec, query_all, query_one};
use crate::seal::context;
use refresh_core::{AccountId, Platform, StorageError};

/// What one [`rekey`](crate::SeaOrmBackend::rekey) run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RekeyReport {
    /// Account credentials re-sealed.
    pub credentials: u64,
    /// Proxy URLs re-sealed.
    pub proxies: u64,
    /// Claim answers re-sealed.
    pub answers: u64,
    /// Values left as they were because a concurrent write replaced them
    /// first (that write sealed under the current key) or they did not open
    /// (reported below).
    pub skipped: u64,
    /// Values that do not open with any configured key: listed by account
    /// id so an operator can look at them; nothing is changed.
    pub unreadable: Vec<i64>,
}

/// Rows read per batch.
const BATCH: i64 = 500;

/// Re-seals, in batches by id, every credentials, proxy URL and claim
/// answer that is plaintext or sealed under a key other than the current
/// one. Each value is replaced by one `UPDATE … WHERE <key> AND <column> =
/// <the text read>`: a concurrent credential write (a refresh, an operator
/// re-login) is never overwritten, and the version is not bumped (the
/// credentials did not change), so in-flight refreshes are not disturbed.
pub(crate) async fn rekey(db: &Db) -> Result<RekeyReport, StorageError> {
    const OP: &str = "rekey";
    let Some(_) = db.sealing().as_sealer() else {
        return Err(StorageError::other(
            OP,
            "no encryption key is configured: nothing to re-seal under",
        ));
    };
    let (conn, dialect, sealing) = (db.conn(), db.dialect(), db.sealing());
    let mut report = RekeyReport::default();
    // Whether a plaintext value was sealed: the file then still holds it.
    let mut sealed_plaintext = false;
    let mut after = i64::MIN;
    loop {
        let sql = "SELECT id, platform, credentials, proxy_url FROM accounts WHERE id > $1 ORDER BY id LIMIT $2";
        let rows = query_all(conn, dialect, OP, sql, vec![after.into(), BATCH.into()]).await?;
        let Some(last) = rows.last() else { break };
        after = column(last, OP, "id")?;
        for row in &rows {
            let id = AccountId(column(row, OP, "id")?);
            let platform: String = column(row, OP, "platform")?;
            let Ok(platform) = platform.parse::<Platform>() else {
                report.unreadable.push(id.0);
                continue;
            };
            let stored: String = column(row, OP, "credentials")?;
            if needs_reseal(sealing, &stored) {
                let ctx = context::credentials(id, &platform);
                match open_text(sealing, OP, "credentials", &stored, &ctx) {
                    Ok(text) => {
                        let sealed = seal_text(sealing, OP, &text, &ctx)?;
                        let sql = "UPDATE accounts SET credentials = $1 WHERE id = $2 AND credentials = $3";
                        let plain = !is_sealed(&stored);
                        match exec(
                            conn,
                            dialect,
                            OP,
                            sql,
                            vec![sealed.into(), id.0.into(), stored.into()],
                        )
                        .await?
                        {
                            1 => {
                                report.credentials += 1;
                                sealed_plaintext |= plain;
                            }
                            _ => report.skipped += 1,
                        }
                    }
                    Err(_) => report.unreadable.push(id.0),
                }
            }
            if let Some(stored) = column::<Option<String>>(row, OP, "proxy_url")?
                && needs_reseal(sealing, &stored)
            {
                let ctx = context::proxy(id);
                match open_text(sealing, OP, "proxy_url", &stored, &ctx) {
                    Ok(text) => {
                        let sealed = seal_text(sealing, OP, &text, &ctx)?;
                        let sql =
                            "UPDATE accounts SET proxy_url = $1 WHERE id = $2 AND proxy_url = $3";
                        let plain = !is_sealed(&stored);
                        match exec(
                            conn,
                            dialect,
                            OP,
                            sql,
                            vec![sealed.into(), id.0.into(), stored.into()],
                        )
                        .await?
                        {
                            1 => {
                                report.proxies += 1;
                                sealed_plaintext |= plain;
                            }
                            _ => report.skipped += 1,
                        }
                    }
                    Err(_) => report.unreadable.push(id.0),
                }
            }
        }
    }
    let sql = "SELECT platform, fingerprint, answer FROM refresh_claims WHERE answer IS NOT NULL";
    for row in query_all(conn, dialect, OP, sql, Vec::new()).await? {
        let platform: String = column(&row, OP, "platform")?;
        let fingerprint: String = column(&row, OP, "fingerprint")?;
        let stored: String = column(&row, OP, "answer")?;
        let Some(key) = key_of(&platform, &fingerprint) else {
            report.skipped += 1;
            continue;
        };
        if !needs_reseal(sealing, &stored) {
            continue;
        }
        let ctx = context::answer(&key);
        let Ok(text) = open_text(sealing, OP, "answer", &stored, &ctx) else {
            report.skipped += 1;
            continue;
        };
        let sealed = seal_text(sealing, OP, &text, &ctx)?;
        let plain = !is_sealed(&stored);
        let sql = "UPDATE refresh_claims SET answer = $1 WHERE platform = $2 AND fingerprint = $3 AND answer = $4";
        let values = vec![
            sealed.into(),
            platform.into(),
            fingerprint.into(),
            stored.into(),
        ];
        match exec(conn, dialect, OP, sql, values).await? {
            1 => {
                report.answers += 1;
                sealed_plaintext |= plain;
            }
            _ => report.skipped += 1,
        }
    }
    if sealed_plaintext && dialect.0 == DbBackend::Sqlite {
        scrub_sqlite(db).await?;
    }
    Ok(report)
}

/// After plaintext values were sealed: rebuilds the SQLite file (`VACUUM`:
/// free pages and the slack of rewritten pages may still hold the old
/// text) and truncates the WAL, which holds the old pages too. Every
/// connection also runs with `secure_delete`, so values replaced later are
/// zeroed as they are freed. PostgreSQL keeps old row versions until
/// `VACUUM FULL` rewrites the table: see the README.
async fn scrub_sqlite(db: &Db) -> Result<(), StorageError> {
    const OP: &str = "rekey_scrub";
    let (conn, dialect) = (db.conn(), db.dialect());
    exec(conn, dialect, OP, "VACUUM", Vec::new()).await?;
    let checkpoint = "PRAGMA wal_checkpoint(TRUNCATE)";
    if let Some(row) = query_one(conn, dialect, OP, checkpoint, Vec::new()).await?
        && column::<i64>(&row, OP, "busy").unwrap_or_default() != 0
    {
        tracing::warn!(
            "rekey sealed plaintext values, but readers kept the SQLite write-ahead log from being truncated: it may still hold the old text until `PRAGMA wal_checkpoint(TRUNCATE)` succeeds"
        );
    }
    Ok(())
}
