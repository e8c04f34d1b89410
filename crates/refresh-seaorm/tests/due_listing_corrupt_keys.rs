//! Due listings over sort keys no cursor can hold (a SQLite `REAL` with a
//! fraction, integers outside the instants `DateTime` holds) and names not
//! stored canonically: every readable due account is listed exactly once,
//! in order, with every page size; the corrupt rows are reported, never
//! repeated; the listing always ends.

mod common;

use chrono::{DateTime, Utc};
use common::{PgDatabase, sealed, sqlite_memory};
use refresh_core::testing::conformance::{T0, account_expiring};
use refresh_core::{AccountId, AccountRepository, StorageErrorKind};
use refresh_seaorm::SeaOrmBackend;
use sea_orm::{ConnectionTrait, Statement};

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(T0 + secs, 0).expect("valid")
}

fn ms(secs: i64) -> i64 {
    (T0 + secs) * 1000
}

async fn raw(backend: &SeaOrmBackend, sql: &str) {
    let conn = backend.connection();
    conn.execute(Statement::from_string(
        conn.get_database_backend(),
        sql.to_owned(),
    ))
    .await
    .expect(sql);
}

/// One row: its id and the SQL text of its `expires_at` (`None`: the
/// expiry the account's credentials give).
struct Row {
    id: i64,
    expires_at: Option<String>,
}

/// Inserts `rows` (all due by their credentials), overwrites their
/// `expires_at` as given, and lists with every page size from 1 to 5:
/// `readable` in this order, `corrupt` reported once each.
async fn listing_over(backend: &SeaOrmBackend, rows: &[Row], readable: &[i64], corrupt: &[i64]) {
    let repo = backend.repository();
    for row in rows {
        repo.insert(account_expiring(row.id, Some(60)))
            .await
            .expect("insert");
        if let Some(value) = &row.expires_at {
            raw(
                backend,
                &format!(
                    "UPDATE accounts SET expires_at = {value} WHERE id = {}",
                    row.id
                ),
            )
            .await;
        }
    }
    for limit in 1..=5 {
        let (mut listed, mut reported, mut cursor) = (Vec::new(), Vec::new(), None);
        for page_number in 0.. {
            assert!(page_number < 50, "limit {limit}: the listing does not end");
            let page = repo
                .list_due(at(86_400), cursor, limit)
                .await
                .expect("list_due");
            listed.extend(page.accounts.iter().map(|a| a.id.0));
            reported.extend(page.corrupt.iter().map(|c| c.id.0));
            for c in &page.corrupt {
                assert_eq!(c.error.kind(), StorageErrorKind::InvalidData);
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(listed, readable, "limit {limit}");
        assert_eq!(reported, corrupt, "limit {limit}");
    }
}

/// SQLite: a fractional `REAL` right below a whole-millisecond row of a
/// LOWER id (the cursor past the `REAL` must not pass over it), a huge
/// negative `REAL` (below every instant), a huge positive one (never due),
/// an unknown expiry, and a status spelled `Active` (not listed: the
/// listing compares `status = 'active'`; `get` says corrupt).
#[tokio::test]
async fn sqlite_corrupt_sort_keys_are_reported_and_every_readable_row_listed_once() {
    let backend = sqlite_memory().await;
    let rows = [
        Row {
            id: 1,
            expires_at: Some((ms(120) + 1).to_string()),
        },
        Row {
            id: 2,
            expires_at: Some(format!("{}.5", ms(120))),
        },
        Row {
            id: 3,
            expires_at: Some(ms(60).to_string()),
        },
        Row {
            id: 4,
            expires_at: Some("-1e300".into()),
        },
        Row {
            id: 5,
            expires_at: Some(ms(180).to_string()),
        },
        Row {
            id: 6,
            expires_at: Some("NULL".into()),
        },
        Row {
            id: 7,
            expires_at: None,
        },
        Row {
            id: 8,
            expires_at: Some("1e300".into()),
        },
    ];
    listing_over(&backend, &rows, &[6, 3, 7, 1, 5], &[4, 2]).await;
    // Row 7 again, with its status spelled otherwise: readable by nobody.
    raw(
        &backend,
        "UPDATE accounts SET status = 'Active', expires_at = 1 WHERE id = 7",
    )
    .await;
    let error = backend
        .repository()
        .get(AccountId(7))
        .await
        .expect_err("a status not stored canonically");
    assert_eq!(error.kind(), StorageErrorKind::InvalidData, "{error}");
    let page = backend
        .repository()
        .list_due(at(86_400), None, 100)
        .await
        .expect("list");
    assert!(!page.accounts.iter().any(|a| a.id.0 == 7));
}

/// PostgreSQL: `BIGINT`s outside the instants `DateTime` holds, below
/// (due, corrupt) and above (never due).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn postgres_corrupt_sort_keys_are_reported_and_every_readable_row_listed_once() {
    let db = PgDatabase::create("corrupt_sort_keys").await;
    let backend = db.open(sealed()).await;
    let rows = [
        Row {
            id: 1,
            expires_at: Some(ms(120).to_string()),
        },
        Row {
            id: 2,
            expires_at: Some(i64::MIN.to_string()),
        },
        Row {
            id: 3,
            expires_at: Some(ms(60).to_string()),
        },
        Row {
            id: 4,
            expires_at: Some(i64::MAX.to_string()),
        },
        Row {
            id: 5,
            expires_at: Some("NULL".into()),
        },
    ];
    listing_over(&backend, &rows, &[5, 3, 1], &[2]).await;
}
