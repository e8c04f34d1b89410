//! Review of issue 12: the login-session store under cross-pool races (two
//! pools on one SQLite file, two on one PostgreSQL database, as two
//! processes would have) and a tampered platform column.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{PgDatabase, SqliteFile, sealed};
use refresh_core::{LoginSessionStore, LoginTake, PendingLogin, Platform, StorageErrorKind};
use refresh_seaorm::SeaOrmBackend;
use sea_orm::{ConnectionTrait, Statement};
use tokio::sync::Barrier;

const TAKERS_PER_POOL: usize = 8;

/// Races `TAKERS_PER_POOL` takes of one session on each of `backends`
/// (started together by a barrier): exactly one gets it.
async fn one_take_wins_across_pools(backends: Vec<SeaOrmBackend>) {
    let stores: Vec<Arc<dyn LoginSessionStore>> = backends
        .iter()
        .map(|b| Arc::new(b.login_session_store()) as Arc<dyn LoginSessionStore>)
        .collect();
    for round in 0..5 {
        let id = format!("race-{round}");
        let login = PendingLogin {
            id: id.clone(),
            platform: Platform::OpenAi,
            payload: format!(r#"{{"code_verifier":"SECRET-VERIFIER-{round}"}}"#).into(),
        };
        stores[0]
            .put(&login, Duration::from_secs(600))
            .await
            .expect("put");
        let barrier = Arc::new(Barrier::new(stores.len() * TAKERS_PER_POOL));
        let mut tasks = Vec::new();
        for store in &stores {
            for _ in 0..TAKERS_PER_POOL {
                let (store, barrier, id) = (Arc::clone(store), Arc::clone(&barrier), id.clone());
                tasks.push(tokio::spawn(async move {
                    barrier.wait().await;
                    store.take(&id).await
                }));
            }
        }
        let mut taken = 0;
        for task in tasks {
            match task.await.expect("join") {
                Ok(LoginTake::Taken(got)) => {
                    assert_eq!(got, login, "byte for byte");
                    taken += 1;
                }
                Ok(LoginTake::Absent) => {}
                Ok(LoginTake::Expired) => panic!("a live session reported expired"),
                // A busy SQLite file may refuse a racer; it must not get it.
                Err(e) => assert_ne!(e.kind(), StorageErrorKind::InvalidData, "{e}"),
            }
        }
        assert_eq!(taken, 1, "round {round}: exactly one take wins");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_file_two_pools_one_take_wins() {
    let file = SqliteFile::new("review12-race");
    let a = file.open(sealed()).await;
    let b = file.open(sealed()).await;
    one_take_wins_across_pools(vec![a, b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs services: cargo xtask test"]
async fn postgres_two_pools_one_take_wins() {
    let db = PgDatabase::create("review12_race").await;
    let a = db.open(sealed()).await;
    let b = db.open(sealed()).await;
    one_take_wins_across_pools(vec![a, b]).await;
}

/// The platform column is not sealed, but the seal is bound to it: a row
/// whose platform was rewritten does not open (so a session begun for
/// OpenAI cannot be completed as Claude), and it is gone afterwards.
#[tokio::test]
async fn a_rewritten_platform_column_does_not_open() {
    let file = SqliteFile::new("review12-platform");
    let backend = file.open(sealed()).await;
    let store = backend.login_session_store();
    let login = PendingLogin {
        id: "swap-1".to_owned(),
        platform: Platform::OpenAi,
        payload: r#"{"code_verifier":"SECRET-VERIFIER-swap"}"#.into(),
    };
    store
        .put(&login, Duration::from_secs(600))
        .await
        .expect("put");
    let conn = backend.connection();
    conn.execute(Statement::from_string(
        conn.get_database_backend(),
        "UPDATE login_sessions SET platform = 'anthropic' WHERE session_id = 'swap-1'",
    ))
    .await
    .expect("rewrite platform");
    let error = store.take("swap-1").await.expect_err("must not open");
    assert_eq!(error.kind(), StorageErrorKind::InvalidData);
    assert!(!error.to_string().contains("SECRET-VERIFIER"), "{error}");
    assert_eq!(store.take("swap-1").await.expect("take"), LoginTake::Absent);
}
