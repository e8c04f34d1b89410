//! The database lease: `try_acquire` + `release` of one key (two
//! statements, two commits), on
//!
//! - `sqlite_full`: a SQLite file with `synchronous=FULL` (the default: an
//!   acknowledged claim or answer survives a power failure);
//! - `sqlite_normal`: the same file with `synchronous=NORMAL` (the cost of
//!   FULL is the difference);
//! - `postgres`: a database created under `REFRESH_TEST_DATABASE_URL`
//!   (skipped when unset), dropped at the end;
//! - `sqlite_full_claim_cycle` / `postgres_claim_cycle`: a generation claim's
//!   acquire + mark consumed (the two statements each refresh adds).

use std::time::Duration;

use criterion::{Criterion, criterion_main};
use refresh_core::{
    AccountId, ClaimId, ClaimKey, ClaimStore, Fingerprint, Platform, RefreshKey, RefreshLock,
};
use refresh_seaorm::{DatabaseConfig, SeaOrmBackend, Sealing, SealingKey, SqliteSynchronous};
use sea_orm::{ConnectionTrait, Database, Statement};
use tokio::runtime::Runtime;

const TTL: Duration = Duration::from_secs(30);

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn sealing() -> Sealing {
    Sealing::keys(&SealingKey::generate(), &[])
}

fn bench_lease(c: &mut Criterion, rt: &Runtime, name: &str, backend: &SeaOrmBackend) {
    let lock = backend.lease_lock();
    let key = RefreshKey::for_account(&Platform::Anthropic, AccountId(1));
    c.bench_function(name, |b| {
        b.to_async(rt).iter(|| async {
            let lease = lock
                .try_acquire(&key, TTL)
                .await
                .expect("acquire")
                .expect("free: every iteration releases it");
            assert!(lock.release(&lease).await.expect("release"));
        });
    });
}

fn bench_claim(c: &mut Criterion, rt: &Runtime, name: &str, backend: &SeaOrmBackend) {
    let claims = backend.claim_store();
    let mut n = 0_u64;
    c.bench_function(name, |b| {
        b.to_async(rt).iter(|| {
            n += 1;
            let key = ClaimKey::new(Platform::Anthropic, Fingerprint::of_bytes(&n.to_le_bytes()));
            let claims = claims.clone();
            async move {
                let id = ClaimId::random();
                claims
                    .acquire(&key, &id, AccountId(1), 0, TTL)
                    .await
                    .expect("acquire");
                assert!(claims.mark_consumed(&key, &id, TTL).await.expect("mark"));
            }
        });
    });
}

fn db_lease(c: &mut Criterion) {
    let rt = runtime();
    let dir = std::env::temp_dir().join(format!("refresh-seaorm-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench dir");
    for (name, synchronous) in [
        ("sqlite_full", SqliteSynchronous::Full),
        ("sqlite_normal", SqliteSynchronous::Normal),
    ] {
        let config = DatabaseConfig {
            sqlite_synchronous: synchronous,
            ..DatabaseConfig::new(format!("sqlite://{}/{name}.db?mode=rwc", dir.display()))
        };
        let backend = rt
            .block_on(SeaOrmBackend::connect(&config, sealing()))
            .expect("sqlite");
        rt.block_on(backend.migrate()).expect("migrate");
        bench_lease(c, &rt, &format!("lease_acquire_release/{name}"), &backend);
        bench_claim(c, &rt, &format!("claim_acquire_consume/{name}"), &backend);
    }
    let _ = std::fs::remove_dir_all(&dir);

    let Ok(admin) = std::env::var("REFRESH_TEST_DATABASE_URL") else {
        return;
    };
    let name = format!("bench_db_lease_{}", std::process::id());
    let create = |sql: String| {
        let admin = admin.clone();
        async move {
            let conn = Database::connect(admin.as_str()).await.expect("admin");
            conn.execute(Statement::from_string(conn.get_database_backend(), sql))
                .await
                .expect("admin statement");
            conn.close().await.expect("close");
        }
    };
    rt.block_on(create(format!("CREATE DATABASE \"{name}\"")));
    let mut url = url::Url::parse(&admin).expect("url");
    url.set_path(&format!("/{name}"));
    {
        let backend = rt
            .block_on(SeaOrmBackend::connect(
                &DatabaseConfig::new(url.to_string()),
                sealing(),
            ))
            .expect("postgres");
        rt.block_on(backend.migrate()).expect("migrate");
        bench_lease(c, &rt, "lease_acquire_release/postgres", &backend);
        bench_claim(c, &rt, "claim_acquire_consume/postgres", &backend);
    }
    rt.block_on(create(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )));
}

/// The group `criterion_main!` runs (`criterion_group!` declares an
/// undocumented `pub fn`).
mod group {
    #![allow(missing_docs, unreachable_pub)]
    criterion::criterion_group!(benches, super::db_lease);
}

criterion_main!(group::benches);
