//! `refresh_events`: core's refresh-event-log suite on SQLite (in memory
//! and in a file) and PostgreSQL, and one history shared by two backends
//! (two processes) opened on the same database.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use common::{PgDatabase, SqliteFile, sealed, sqlite_memory};
use refresh_core::ports::{RefreshEvent, RefreshEventLog};
use refresh_core::testing::conformance::refresh_event_log_suite;
use refresh_core::{AccountId, Platform};

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
