//! [`DbClaimStore`]: core's [`ClaimStore`] in `refresh_claims`, judged by
//! the database's clock.

use std::time::Duration;

use async_trait::async_trait;
use sea_orm::{QueryResult, TransactionTrait, Value};

use crate::codec::{open_text, seal_text};
use crate::db::{Db, big, column, exec, millis, query_one};
use crate::error::storage_error;
use crate::seal::context;
use refresh_core::{
    AccountId, Claim, ClaimAcquire, ClaimId, ClaimKey, ClaimState, ClaimStore, Credentials,
    Fingerprint, Platform, StorageError,
};

/// How often `acquire` goes round when the claim it lost to vanished before
/// it could be read (removed in between).
const ACQUIRE_ROUNDS: usize = 4;

/// Generation claims in the database (the durable, shared, linearizable
/// store the flow requires in a cluster).
///
/// - `acquire` is ONE statement: `INSERT … ON CONFLICT (platform,
///   fingerprint) DO UPDATE … WHERE` the existing claim expired by the
///   database's clock, holds no answer and is not answered `RETURNING
///   claim_id`; a caller that did not win reads the claim in a second
///   statement.
/// - Every later operation is an `UPDATE`/`DELETE` conditional on the claim
///   id (and the state it may act on).
/// - Answered claims have `expires_at = NULL`: they never expire and the
///   purge never deletes them. Consumed claims expire after the horizon
///   the flow gives; [`purge`](ClaimStore::purge) deletes at most `limit`
///   claims that are over.
/// - Answers are sealed, bound to (platform, fingerprint).
#[derive(Clone)]
pub struct DbClaimStore {
    db: Db,
}

impl std::fmt::Debug for DbClaimStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbClaimStore")
            .field("backend", &self.db.dialect().0)
            .finish()
    }
}

/// The columns `get` reads, with the remaining life by the database clock.
const CLAIM_COLUMNS: &str =
    "account_id, claim_id, base_version, state, answer, expires_at - {now} AS remaining_ms";

impl DbClaimStore {
    pub(crate) fn new(db: Db) -> Self {
        Self { db }
    }

    fn key_values(key: &ClaimKey) -> [Value; 2] {
        [
            key.platform.as_str().into(),
            key.fingerprint.to_hex().into(),
        ]
    }

    fn decode(&self, key: &ClaimKey, row: &QueryResult) -> Result<Claim, StorageError> {
        const OP: &str = "claim_get";
        let state: String = column(row, OP, "state")?;
        let state: ClaimState = state.parse()?;
        let answer = column::<Option<String>>(row, OP, "answer")?
            .map(|stored| {
                let text = open_text(
                    self.db.sealing(),
                    OP,
                    "answer",
                    &stored,
                    &context::answer(key),
                )?;
                Credentials::from_json_str(&text)
                    .map_err(|e| StorageError::invalid_data(OP, format!("answer: {e}")))
            })
            .transpose()?;
        let remaining = column::<Option<i64>>(row, OP, "remaining_ms")?
            .map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or_default()));
        Ok(Claim {
            key: key.clone(),
            id: ClaimId::from_raw(column::<String>(row, OP, "claim_id")?),
            account_id: AccountId(column(row, OP, "account_id")?),
            base_version: u64::try_from(column::<i64>(row, OP, "base_version")?)
                .unwrap_or_default(),
            state,
            answer,
            remaining: if state == ClaimState::Answered {
                None
            } else {
                remaining
            },
        })
    }

    /// One compare-and-act `UPDATE` of the claim `id` of `key`.
    async fn act(
        &self,
        op: &'static str,
        key: &ClaimKey,
        id: &ClaimId,
        set: &str,
        condition: &str,
        mut values: Vec<Value>,
    ) -> Result<bool, StorageError> {
        let n = values.len();
        let sql = format!(
            "UPDATE refresh_claims SET {set} WHERE platform = ${} AND fingerprint = ${} \
             AND claim_id = ${}{condition}",
            n + 1,
            n + 2,
            n + 3
        );
        values.extend(Self::key_values(key));
        values.push(id.as_str().into());
        Ok(exec(self.db.conn(), self.db.dialect(), op, &sql, values).await? == 1)
    }

    /// MySQL (no `RETURNING`): the acquire step as a transaction.
    async fn acquire_in_transaction(&self, values: Vec<Value>) -> Result<bool, StorageError> {
        const OP: &str = "claim_acquire";
        let dialect = self.db.dialect();
        let txn = self
            .db
            .conn()
            .begin()
            .await
            .map_err(|e| storage_error(OP, e))?;
        let insert = "INSERT IGNORE INTO refresh_claims (platform, fingerprint, account_id, claim_id, \
                      base_version, state, answer, expires_at, created_at) \
                      VALUES ($1, $2, $3, $4, $5, 'open', NULL, {now} + $6, {now})";
        let won = if exec(&txn, dialect, OP, insert, values.clone()).await? == 1 {
            true
        } else {
            let take = "UPDATE refresh_claims SET account_id = $3, claim_id = $4, base_version = $5, \
                        state = 'open', answer = NULL, expires_at = {now} + $6, created_at = {now} \
                        WHERE platform = $1 AND fingerprint = $2 AND state <> 'answered' \
                        AND answer IS NULL AND expires_at IS NOT NULL AND expires_at <= {now}";
            exec(&txn, dialect, OP, take, values).await? == 1
        };
        txn.commit().await.map_err(|e| storage_error(OP, e))?;
        Ok(won)
    }
}

#[async_trait]
impl ClaimStore for DbClaimStore {
    fn name(&self) -> &'static str {
        "database"
    }

    async fn acquire(
        &self,
        key: &ClaimKey,
        id: &ClaimId,
        account: AccountId,
        base_version: u64,
        ttl: Duration,
    ) -> Result<ClaimAcquire, StorageError> {
        const OP: &str = "claim_acquire";
        let [platform, fingerprint] = Self::key_values(key);
        let values = vec![
            platform,
            fingerprint,
            account.0.into(),
            id.as_str().into(),
            big(base_version),
            millis(ttl),
        ];
        for _ in 0..ACQUIRE_ROUNDS {
            let won = if self.db.dialect().has_returning() {
                let sql = "INSERT INTO refresh_claims (platform, fingerprint, account_id, claim_id, \
                           base_version, state, answer, expires_at, created_at) \
                           VALUES ($1, $2, $3, $4, $5, 'open', NULL, {now} + $6, {now}) \
                           ON CONFLICT (platform, fingerprint) DO UPDATE SET \
                           account_id = excluded.account_id, claim_id = excluded.claim_id, \
                           base_version = excluded.base_version, state = 'open', answer = NULL, \
                           expires_at = excluded.expires_at, created_at = excluded.created_at \
                           WHERE refresh_claims.state <> 'answered' \
                           AND refresh_claims.answer IS NULL \
                           AND refresh_claims.expires_at IS NOT NULL \
                           AND refresh_claims.expires_at <= {now} \
                           RETURNING claim_id";
                query_one(self.db.conn(), self.db.dialect(), OP, sql, values.clone())
                    .await?
                    .is_some()
            } else {
                self.acquire_in_transaction(values.clone()).await?
            };
            if won {
                return Ok(ClaimAcquire::Won(id.clone()));
            }
            match self.get(key).await? {
                // A retry of an acquire whose answer was lost: ours already.
                Some(claim) if claim.id == *id && claim.state == ClaimState::Open => {
                    return Ok(ClaimAcquire::Won(id.clone()));
                }
                Some(claim) => return Ok(ClaimAcquire::Existing(claim)),
                // Removed between the two statements: try again.
                None => {}
            }
        }
        Err(StorageError::busy(
            OP,
            "the claim kept changing between attempts",
        ))
    }

    async fn get(&self, key: &ClaimKey) -> Result<Option<Claim>, StorageError> {
        let sql = format!(
            "SELECT {CLAIM_COLUMNS} FROM refresh_claims WHERE platform = $1 AND fingerprint = $2"
        );
        let row = query_one(
            self.db.conn(),
            self.db.dialect(),
            "claim_get",
            &sql,
            Self::key_values(key).to_vec(),
        )
        .await?;
        row.map(|row| self.decode(key, &row)).transpose()
    }

    async fn extend(
        &self,
        key: &ClaimKey,
        id: &ClaimId,
        ttl: Duration,
    ) -> Result<bool, StorageError> {
        self.act(
            "claim_extend",
            key,
            id,
            "expires_at = {now} + $1",
            " AND state = 'open'",
            vec![millis(ttl)],
        )
        .await
    }

    async fn quarantine(
        &self,
        key: &ClaimKey,
        id: &ClaimId,
        ttl: Duration,
    ) -> Result<bool, StorageError> {
        self.act(
            "claim_quarantine",
            key,
            id,
            "state = 'quarantined', expires_at = {now} + $1",
            " AND state = 'open'",
            vec![millis(ttl)],
        )
        .await
    }

    async fn save_answer(
        &self,
        key: &ClaimKey,
        id: &ClaimId,
        answer: &Credentials,
    ) -> Result<bool, StorageError> {
        const OP: &str = "claim_save_answer";
        let json = serde_json::to_string(answer.as_map())
            .map_err(|_| StorageError::other(OP, "the answer cannot be serialized"))?;
        let sealed = seal_text(self.db.sealing(), OP, &json, &context::answer(key))?;
        self.act(
            OP,
            key,
            id,
            "state = 'answered', answer = $1, expires_at = NULL",
            " AND state IN ('open', 'quarantined', 'answered')",
            vec![sealed.into()],
        )
        .await
    }

    async fn mark_consumed(
        &self,
        key: &ClaimKey,
        id: &ClaimId,
        keep: Duration,
    ) -> Result<bool, StorageError> {
        self.act(
            "claim_mark_consumed",
            key,
            id,
            "state = 'consumed', answer = NULL, expires_at = {now} + $1",
            "",
            vec![millis(keep)],
        )
        .await
    }

    async fn remove(&self, key: &ClaimKey, id: &ClaimId) -> Result<bool, StorageError> {
        let sql =
            "DELETE FROM refresh_claims WHERE platform = $1 AND fingerprint = $2 AND claim_id = $3";
        let [platform, fingerprint] = Self::key_values(key);
        let values = vec![platform, fingerprint, id.as_str().into()];
        Ok(exec(
            self.db.conn(),
            self.db.dialect(),
            "claim_remove",
            sql,
            values,
        )
        .await?
            == 1)
    }

    async fn purge(&self, limit: usize) -> Result<u64, StorageError> {
        if limit == 0 {
            return Ok(0);
        }
        let over = "state <> 'answered' AND expires_at IS NOT NULL AND expires_at <= {now}";
        let sql = if self.db.dialect().has_returning() {
            // `{over}` twice: the subquery picks candidates from its
            // snapshot, and under PostgreSQL's READ COMMITTED a row updated
            // meanwhile (taken over, answered, consumed) is re-checked
            // against the outer WHERE only, so the outer WHERE must say
            // "over" too, or a live claim is deleted (invariant 1).
            format!(
                "DELETE FROM refresh_claims WHERE (platform, fingerprint) IN \
                 (SELECT platform, fingerprint FROM refresh_claims WHERE {over} LIMIT $1) \
                 AND {over}"
            )
        } else {
            format!("DELETE FROM refresh_claims WHERE {over} LIMIT $1")
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        exec(
            self.db.conn(),
            self.db.dialect(),
            "claim_purge",
            &sql,
            vec![limit.into()],
        )
        .await
    }
}

/// The claim key stored in a row.
pub(crate) fn key_of(platform: &str, fingerprint: &str) -> Option<ClaimKey> {
    Some(ClaimKey::new(
        platform.parse::<Platform>().ok()?,
        Fingerprint::from_hex(fingerprint)?,
    ))
}
