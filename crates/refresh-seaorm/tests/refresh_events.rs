//! `refresh_events`: core's refresh-event-log suite on SQLite (in memory
//! and in a file) and PostgreSQL, one history shared by two backends
//! (two processes) opened on the same database, and the per-account bound
//! on many accounts (the account index serves it).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use common::{PgDatabase, SqliteFile, sealed, sqlite_memory};
use refresh_core::ports::{RefreshEvent, RefreshEventLog};
use refresh_core::testing::conformance::refresh_event_log_suite;
use refresh_core::{AccountId, Platform};
use refresh_seaorm::SeaOrmBackend;
use sea_orm::{ConnectionTrait, Statement};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_in_memory_passes_the_event_log_suite() {
    refresh_event_log_suite(|| async {
        Arc::new(sqlite_memory().await.event_log()) as Arc<dyn RefreshEventLog>
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file_passes_the_event_log_suite() {
    let files = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&files);
    refresh_event_log_suite(move || {
        let files = Arc::clone(&kept);
        async move {
            let file = SqliteFile::new("events");
            let backend = file.open(sealed()).await;
            files.lock().expect("files").push(file);
            Arc::new(backend.event_log()) as Arc<dyn RefreshEventLog>
        }
    })
    .await;
    drop(files);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn postgres_passes_the_event_log_suite() {
    let dbs = Arc::new(tokio::sync::Mutex::new(Vec::new()));
    let kept = Arc::clone(&dbs);
    refresh_event_log_suite(move || {
        let dbs = Arc::clone(&kept);
        async move {
            let db = PgDatabase::create("events").await;
            let backend = db.open(sealed()).await;
            dbs.lock().await.push(db);
            Arc::new(backend.event_log()) as Arc<dyn RefreshEventLog>
        }
    })
    .await;
    for db in std::mem::take(&mut *dbs.lock().await) {
        db.drop_db().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_backends_on_one_file_share_the_history() {
    let file = SqliteFile::new("events-shared");
    let (one, two) = (file.open(sealed()).await, file.open(sealed()).await);
    let event = RefreshEvent {
        account_id: AccountId(42),
        platform: Platform::Gemini,
        at: Utc::now(),
        outcome: "refreshed".into(),
        duration: Duration::from_millis(80),
        lock_layer: Some("database".into()),
        attempts: 1,
    };
    one.event_log().append(&event).await.expect("append");
    let seen = two
        .event_log()
        .recent(AccountId(42), 5)
        .await
        .expect("recent");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].outcome, "refreshed");
    let hourly = two
        .event_log()
        .hourly(event.at - chrono::TimeDelta::hours(24))
        .await
        .expect("hourly");
    assert_eq!(hourly.len(), 1);
    assert_eq!(hourly[0].count, 1);
}

/// Accounts and events per account of the bound test.
const ACCOUNTS: i64 = 300;
const PER_ACCOUNT: i64 = 30;
const KEEP: usize = 20;

/// Fills `refresh_events` with [`PER_ACCOUNT`] events for each of
/// [`ACCOUNTS`] accounts (times interleaved across accounts; two events of
/// each account share one instant at the bound), in multi-row INSERTs.
async fn fill(backend: &SeaOrmBackend) {
    let conn = backend.connection();
    for account in 1..=ACCOUNTS {
        let rows: Vec<String> = (0..PER_ACCOUNT)
            .map(|n| {
                // Events 9 and 10 (0-based) share a time: the 20th and 21st
                // newest, on either side of the bound.
                let t = if n == 10 { 9 } else { n };
                let at_ms = 1_700_000_000_000 + t * 60_000 + account;
                format!(
                    "({account}, 'anthropic', {at_ms}, {}, 'e{n}', 5, 'database', 1)",
                    at_ms / 1000 / 3600 * 3600
                )
            })
            .collect();
        conn.execute(Statement::from_string(
            conn.get_database_backend(),
            format!(
                "INSERT INTO refresh_events (account_id, platform, at_ms, hour_s, outcome, \
                 duration_ms, lock_layer, attempts) VALUES {}",
                rows.join(", ")
            ),
        ))
        .await
        .expect("insert events");
    }
}

/// Purges to the bound in batches of 1000 and checks every account kept
/// exactly its newest [`KEEP`] (of the two at one instant, the later
/// inserted).
async fn bounded_per_account(backend: &SeaOrmBackend) {
    fill(backend).await;
    let log = backend.event_log();
    let mut deleted = 0;
    let mut calls = 0;
    loop {
        let n = log.purge_excess(KEEP, 1000).await.expect("purge_excess");
        deleted += n;
        calls += 1;
        assert!(calls < 100, "the purge ends");
        if n < 1000 {
            break;
        }
    }
    let excess = ACCOUNTS * (PER_ACCOUNT - KEEP as i64);
    assert_eq!(
        deleted,
        u64::try_from(excess).unwrap(),
        "every excess event"
    );
    let expected: Vec<String> = (10..PER_ACCOUNT).rev().map(|n| format!("e{n}")).collect();
    for account in [1, ACCOUNTS / 2, ACCOUNTS] {
        let kept: Vec<String> = log
            .recent(AccountId(account), usize::MAX)
            .await
            .expect("recent")
            .into_iter()
            .map(|e| e.outcome)
            .collect();
        assert_eq!(kept, expected, "account {account} keeps its newest {KEEP}");
    }
    assert_eq!(log.purge_excess(KEEP, 1000).await.expect("purge"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_the_newest_events_of_each_account_through_the_account_index() {
    let file = SqliteFile::new("events-bound");
    let backend = file.open(sealed()).await;
    bounded_per_account(&backend).await;
    let [grouped, delete] = backend
        .event_log()
        .explain_purge_excess(KEEP)
        .await
        .expect("explain");
    for line in grouped.iter().chain(&delete) {
        if line.contains("SCAN refresh_events") || line.contains("SEARCH refresh_events") {
            assert!(
                line.contains("INDEX refresh_events_account") || line.contains("PRIMARY KEY"),
                "the account index (or the key) serves {line}: {grouped:?} {delete:?}"
            );
        }
    }
    assert!(
        delete
            .iter()
            .any(|l| l.contains("SEARCH refresh_events USING")
                && l.contains("refresh_events_account")),
        "one account's range of the index: {delete:?}"
    );
    assert!(
        !delete.iter().any(|l| l.contains("TEMP B-TREE")),
        "no sort: {delete:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn postgres_keeps_the_newest_events_of_each_account_through_the_account_index() {
    let db = PgDatabase::create("events_bound").await;
    let backend = db.open(sealed()).await;
    bounded_per_account(&backend).await;
    fill(&backend).await;
    let conn = backend.connection();
    conn.execute(Statement::from_string(
        conn.get_database_backend(),
        "ANALYZE refresh_events".to_owned(),
    ))
    .await
    .expect("analyze");
    let [grouped, delete] = backend
        .event_log()
        .explain_purge_excess(KEEP)
        .await
        .expect("explain");
    let delete_plan = delete.join("\n");
    assert!(
        delete_plan.contains("refresh_events_account"),
        "one account's range of the index: {delete_plan}"
    );
    assert!(
        !delete_plan.contains("Seq Scan on refresh_events"),
        "no sequential scan to find one account's excess: {delete_plan}"
    );
    assert!(!grouped.is_empty());
    db.drop_db().await;
}
