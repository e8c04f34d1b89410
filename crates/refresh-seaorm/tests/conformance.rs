//! Core's conformance suites on real databases: SQLite in memory, SQLite
//! in a file (WAL, synchronous=FULL), and PostgreSQL (ignored without
//! `cargo xtask test`). Leases and claims run on the database's clock.

mod common;

use std::sync::{Arc, Mutex};

use common::{PgDatabase, SHORT_TTL, SqliteFile, sealed, sqlite_memory};
use refresh_core::testing::conformance::{
    RealTime, account_catalog_suite, account_repository_suite, claim_store_suite,
    login_session_store_suite, refresh_lock_suite,
};
use refresh_core::{AccountCatalog, AccountRepository, ClaimStore, LoginSessionStore, RefreshLock};
use refresh_seaorm::SeaOrmBackend;

fn time() -> RealTime {
    RealTime {
        short_ttl: SHORT_TTL,
    }
}

/// Every suite against backends `open` makes, one fresh database each.
async fn all_suites<F, Fut>(open: F)
where
    F: Fn() -> Fut + Clone,
    Fut: std::future::Future<Output = SeaOrmBackend>,
{
    let o = open.clone();
    account_repository_suite(move || {
        let o = o.clone();
        async move { Arc::new(o().await.repository()) as Arc<dyn AccountRepository> }
    })
    .await;
    let o = open.clone();
    account_catalog_suite(move || {
        let o = o.clone();
        async move {
            let repo = Arc::new(o().await.repository());
            (
                Arc::clone(&repo) as Arc<dyn AccountRepository>,
                repo as Arc<dyn AccountCatalog>,
            )
        }
    })
    .await;
    let o = open.clone();
    refresh_lock_suite(
        move || {
            let o = o.clone();
            async move { Arc::new(o().await.lease_lock()) as Arc<dyn RefreshLock> }
        },
        &time(),
    )
    .await;
    let o = open.clone();
    claim_store_suite(
        move || {
            let o = o.clone();
            async move { Arc::new(o().await.claim_store()) as Arc<dyn ClaimStore> }
        },
        &time(),
    )
    .await;
    let o = open.clone();
    login_session_store_suite(
        move || {
            let o = o.clone();
            async move { Arc::new(o().await.login_session_store()) as Arc<dyn LoginSessionStore> }
        },
        &time(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_in_memory_passes_every_suite() {
    all_suites(sqlite_memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file_passes_every_suite() {
    let files = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&files);
    all_suites(move || {
        let files = Arc::clone(&kept);
        async move {
            let file = SqliteFile::new("suite");
            let backend = file.open(sealed()).await;
            files.lock().expect("files").push(file);
            backend
        }
    })
    .await;
    drop(files);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn postgres_passes_every_suite() {
    let dbs = Arc::new(tokio::sync::Mutex::new(Vec::new()));
    let kept = Arc::clone(&dbs);
    all_suites(move || {
        let dbs = Arc::clone(&kept);
        async move {
            let db = PgDatabase::create("suite").await;
            let backend = db.open(sealed()).await;
            dbs.lock().await.push(db);
            backend
        }
    })
    .await;
    for db in std::mem::take(&mut *dbs.lock().await) {
        db.drop_db().await;
    }
}
