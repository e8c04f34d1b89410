//! Hostile review of refresh-seaorm: tests that try to break the claim
//! store, the lease, the repository, sealing and configuration. Each test
//! states the clause it checks; a failing test is a break.

#![allow(clippy::print_stderr)]

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{PgDatabase, SqliteFile, sealed, sqlite_memory};
use refresh_core::testing::conformance::{T0, account_expiring};
use refresh_core::{
    AccountCatalog, AccountId, AccountRepository, ClaimAcquire, ClaimId, ClaimKey, ClaimState,
    ClaimStore, Credentials, Fingerprint, Platform, StorageErrorKind,
};
use refresh_seaorm::{DatabaseConfig, SeaOrmBackend};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement, TransactionTrait};

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(T0 + secs, 0).expect("valid")
}

fn claim_key(tag: &str) -> ClaimKey {
    ClaimKey::new(
        Platform::Anthropic,
        Fingerprint::of_bytes(format!("rt-hostile-{tag}").as_bytes()),
    )
}

fn key_where(key: &ClaimKey) -> String {
    format!(
        "platform = '{}' AND fingerprint = '{}'",
        key.platform.as_str(),
        key.fingerprint.to_hex()
    )
}

async fn raw(conn: &DatabaseConnection, sql: &str) {
    conn.execute(Statement::from_string(
        conn.get_database_backend(),
        sql.to_owned(),
    ))
    .await
    .expect(sql);
}

/// Waits until `n` sessions of this database wait on a lock.
async fn wait_for_lock_waiters(conn: &DatabaseConnection, n: i64) {
    for _ in 0..500 {
        let row = conn
            .query_one(Statement::from_string(
                conn.get_database_backend(),
                "SELECT count(*) AS n FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    .to_owned(),
            ))
            .await
            .expect("pg_stat_activity")
            .expect("a row");
        if row.try_get::<i64>("", "n").expect("n") >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never saw {n} lock waiter(s)");
}

/// Waits until the claim of `key` has expired by the database's clock.
async fn wait_expired(store: &impl ClaimStore, key: &ClaimKey) {
    for _ in 0..200 {
        let claim = store.get(key).await.expect("get").expect("claim");
        if claim.remaining == Some(Duration::ZERO) {
            // One more tick so `expires_at <= now` holds strictly.
            tokio::time::sleep(Duration::from_millis(20)).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the claim never expired");
}

// ---------------------------------------------------------------------
// B1. PostgreSQL purge racing a takeover / a save_answer
// ---------------------------------------------------------------------

/// `purge` is `DELETE … WHERE (platform, fingerprint) IN (SELECT … WHERE
/// <over> LIMIT n)`. Under READ COMMITTED, a row the subquery saw as
/// "over" that another transaction updates before the DELETE reaches it is
/// re-checked only against the join condition (the key, unchanged), not
/// against `<over>`: a claim taken over (or answered) in that window is
/// deleted. Here a third session holds the row lock for a moment so that
/// the takeover and the purge queue on it in that order (what load does by
/// chance).
async fn purge_race(db: &PgDatabase, answer_instead_of_takeover: bool) -> (ClaimKey, ClaimId) {
    let (a, b, c, d) = (
        db.open(sealed()).await,
        db.open(sealed()).await,
        db.open(sealed()).await,
        db.open(sealed()).await,
    );
    let key = claim_key(if answer_instead_of_takeover {
        "purge-answer"
    } else {
        "purge-takeover"
    });
    let first = ClaimId::random();
    let won = a
        .claim_store()
        .acquire(&key, &first, AccountId(1), 0, Duration::from_millis(200))
        .await
        .expect("acquire");
    assert_eq!(won, ClaimAcquire::Won(first.clone()));
    wait_expired(&a.claim_store(), &key).await;

    let locker = Database::connect(db.url.as_str()).await.expect("locker");
    let txn = locker.begin().await.expect("begin");
    txn.execute(Statement::from_string(
        txn.get_database_backend(),
        format!(
            "SELECT 1 FROM refresh_claims WHERE {} FOR UPDATE",
            key_where(&key)
        ),
    ))
    .await
    .expect("lock");

    let second = ClaimId::random();
    let writer = {
        let (store, key, first, second) =
            (b.claim_store(), key.clone(), first.clone(), second.clone());
        tokio::spawn(async move {
            if answer_instead_of_takeover {
                // The holder of the (expired, open) claim saves its answer.
                let answer = Credentials::new()
                    .with("access_token", "at-new")
                    .with("refresh_token", "rt-new");
                let saved = store
                    .save_answer(&key, &first, &answer)
                    .await
                    .expect("save");
                assert!(saved, "the holder's answer is saved");
                first
            } else {
                let got = store
                    .acquire(&key, &second, AccountId(2), 0, Duration::from_secs(600))
                    .await
                    .expect("takeover");
                assert_eq!(got, ClaimAcquire::Won(second.clone()), "B takes over");
                second
            }
        })
    };
    wait_for_lock_waiters(&locker, 1).await;
    let purger = {
        let store = c.claim_store();
        tokio::spawn(async move { store.purge(100).await.expect("purge") })
    };
    wait_for_lock_waiters(&locker, 2).await;
    txn.commit().await.expect("release the lock");
    let holder = writer.await.expect("join writer");
    let purged = purger.await.expect("join purge");
    let after = d.claim_store().get(&key).await.expect("get");
    assert!(
        after.is_some(),
        "purge deleted {purged} claim(s): the claim {} had just {} and is gone",
        holder.as_str(),
        if answer_instead_of_takeover {
            "been answered (an answered claim is never purged)"
        } else {
            "been taken over (a live claim is never purged)"
        }
    );
    (key, holder)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs services: cargo xtask test"]
async fn hostile_pg_purge_racing_a_takeover_never_deletes_the_live_claim() {
    let db = PgDatabase::create("hostile_purge_takeover").await;
    let (key, holder) = purge_race(&db, false).await;
    // Were it deleted, a second flow would win the same generation now.
    let other = db.open(sealed()).await.claim_store();
    let got = other
        .acquire(
            &key,
            &ClaimId::random(),
            AccountId(3),
            0,
            Duration::from_secs(60),
        )
        .await
        .expect("acquire");
    assert!(
        matches!(got, ClaimAcquire::Existing(ref c) if c.id == holder),
        "two live holders of one generation: {got:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs services: cargo xtask test"]
async fn hostile_pg_purge_racing_save_answer_never_deletes_the_answer() {
    let db = PgDatabase::create("hostile_purge_answer").await;
    let (key, _) = purge_race(&db, true).await;
    let claim = db
        .open(sealed())
        .await
        .claim_store()
        .get(&key)
        .await
        .expect("get")
        .expect("claim");
    assert_eq!(claim.state, ClaimState::Answered);
    assert!(claim.answer.is_some());
}

/// The same race with no helper lock: many expired claims, taken over
/// while purges run. Any taken-over claim that is gone afterwards is a
/// break.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs services: cargo xtask test"]
async fn hostile_pg_purge_under_load_never_deletes_a_taken_over_claim() {
    let db = PgDatabase::create("hostile_purge_load").await;
    let pools = [
        db.open(sealed()).await,
        db.open(sealed()).await,
        db.open(sealed()).await,
    ];
    let mut lost = 0;
    for round in 0..20 {
        let keys: Vec<ClaimKey> = (0..200)
            .map(|i| claim_key(&format!("load-{round}-{i}")))
            .collect();
        for k in &keys {
            pools[0]
                .claim_store()
                .acquire(
                    k,
                    &ClaimId::random(),
                    AccountId(1),
                    0,
                    Duration::from_millis(1),
                )
                .await
                .expect("seed");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let purgers: Vec<_> = (0..4)
            .map(|_| {
                let store = pools[1].claim_store();
                tokio::spawn(async move {
                    let mut n = 0;
                    for _ in 0..5 {
                        n += store.purge(37).await.expect("purge");
                    }
                    n
                })
            })
            .collect();
        let mut takers = Vec::new();
        for k in keys.clone() {
            let store = pools[2].claim_store();
            takers.push(tokio::spawn(async move {
                let id = ClaimId::random();
                match store
                    .acquire(&k, &id, AccountId(2), 0, Duration::from_secs(600))
                    .await
                    .expect("acquire")
                {
                    ClaimAcquire::Won(id) => Some((k, id)),
                    ClaimAcquire::Existing(_) => None,
                }
            }));
        }
        for p in purgers {
            p.await.expect("join");
        }
        for t in takers {
            if let Some((k, id)) = t.await.expect("join") {
                match pools[0].claim_store().get(&k).await.expect("get") {
                    Some(c) if c.id == id => {}
                    other => {
                        lost += 1;
                        eprintln!(
                            "round {round}: won claim {} then found {other:?}",
                            id.as_str()
                        );
                    }
                }
            }
        }
    }
    assert_eq!(
        lost, 0,
        "claims won by a takeover and then deleted by a concurrent purge"
    );
}

// ---------------------------------------------------------------------
// B2. A corrupt expires_at at a page boundary: the listing never ends
// ---------------------------------------------------------------------

async fn corrupt_expiry_at_a_page_end(backend: SeaOrmBackend, corrupt_value: &str, limit: usize) {
    let repo = backend.repository();
    for id in 1..=3 {
        repo.insert(account_expiring(id, Some(id * 60)))
            .await
            .expect("insert");
    }
    raw(
        backend.connection(),
        &format!("UPDATE accounts SET expires_at = {corrupt_value} WHERE id = 2"),
    )
    .await;
    let mut pages = 0;
    let mut cursor = None;
    let mut seen = Vec::new();
    loop {
        pages += 1;
        assert!(
            pages <= 10,
            "3 due rows, pages of {limit}: the listing should end in 4 pages or fewer, saw {seen:?} (negative = corrupt)"
        );
        let page = repo
            .list_due(at(86_400), cursor, limit)
            .await
            .expect("list_due");
        seen.extend(page.accounts.iter().map(|a| a.id.0));
        seen.extend(page.corrupt.iter().map(|c| -c.id.0));
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
}

/// SQLite: a non-integral REAL in `expires_at` (hand edit, or a tool that
/// writes floats). It is listed (REAL < INTEGER compares numerically), the
/// row is reported corrupt, but the cursor built from it has no expiry
/// (`try_get(...).unwrap_or(None)`, repository.rs:353), so the next page
/// restarts the known-expiry scan from the beginning: the same pages come
/// back forever, and the background sweep never finishes a cycle.
#[tokio::test]
async fn hostile_sqlite_list_due_terminates_with_a_real_expires_at_at_a_page_end() {
    // Between account 1 (T0+60 s) and account 3 (T0+180 s): it ends page 1.
    corrupt_expiry_at_a_page_end(sqlite_memory().await, "1893456120000.5", 2).await;
}

/// PostgreSQL: a BIGINT no `DateTime` can hold (`from_ms` → None).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn hostile_pg_list_due_terminates_with_an_out_of_range_expires_at_at_a_page_end() {
    let db = PgDatabase::create("hostile_corrupt_expiry").await;
    // It sorts first: with pages of 1 it ends page 1.
    corrupt_expiry_at_a_page_end(db.open(sealed()).await, "-9000000000000000000", 1).await;
}

// ---------------------------------------------------------------------
// B3. Huge TTLs: overflow in `{now} + ttl`
// ---------------------------------------------------------------------

async fn huge_ttl_claim(backend: SeaOrmBackend) {
    let store = backend.claim_store();
    let key = claim_key("huge-ttl");
    let id = ClaimId::random();
    let first = store
        .acquire(&key, &id, AccountId(1), 0, Duration::MAX)
        .await;
    match first {
        Ok(ClaimAcquire::Won(_)) => {
            // Then the claim must stay readable and refuse others.
            let claim = store.get(&key).await.expect("a huge-ttl claim can be read");
            assert!(claim.is_some());
            let other = store
                .acquire(
                    &key,
                    &ClaimId::random(),
                    AccountId(2),
                    0,
                    Duration::from_secs(60),
                )
                .await
                .expect("a second acquirer gets Existing, not an error");
            assert!(matches!(other, ClaimAcquire::Existing(_)), "{other:?}");
        }
        Ok(other) => panic!("{other:?}"),
        Err(error) => panic!(
            "a huge ttl is clamped (or refused as invalid input), not a database error: {error} (kind {:?})",
            error.kind()
        ),
    }
}

#[tokio::test]
async fn hostile_sqlite_claim_with_a_huge_ttl_stays_readable() {
    huge_ttl_claim(sqlite_memory().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn hostile_pg_claim_with_a_huge_ttl_is_not_a_database_error() {
    let db = PgDatabase::create("hostile_huge_ttl").await;
    huge_ttl_claim(db.open(sealed()).await).await;
}

// ---------------------------------------------------------------------
// B4. Configuration: secrets in Debug, error kinds of bad URLs
// ---------------------------------------------------------------------

/// sqlx reads `password` (and `sslpassword`) from the query string of a
/// PostgreSQL URL; `Debug` only redacts the userinfo password.
#[test]
fn hostile_debug_of_database_config_hides_a_query_string_password() {
    let config =
        DatabaseConfig::new("postgres://app@db:5432/refresh?password=hunter2&sslmode=disable");
    let shown = format!("{config:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(
        !config.redacted_url().contains("hunter2"),
        "{}",
        config.redacted_url()
    );
}

/// A URL no driver speaks is a configuration error: retrying cannot help,
/// so it must not be a retryable kind.
#[tokio::test]
async fn hostile_unknown_url_scheme_is_not_retryable() {
    let error = SeaOrmBackend::connect(&DatabaseConfig::new("redis://127.0.0.1/0"), sealed())
        .await
        .expect_err("no such driver");
    assert!(
        !error.kind().is_retryable(),
        "an unknown scheme is reported as {:?} (retryable): {error}",
        error.kind()
    );
}

/// A SQLite file in a directory that does not exist: permanent, not
/// retryable.
#[tokio::test]
async fn hostile_missing_sqlite_directory_is_not_retryable() {
    let error = SeaOrmBackend::connect(
        &DatabaseConfig::new("sqlite:///nonexistent-dir-hostile/x/refresh.db?mode=rwc"),
        sealed(),
    )
    .await
    .expect_err("no directory");
    assert!(
        !error.kind().is_retryable(),
        "a missing directory is reported as {:?} (retryable): {error}",
        error.kind()
    );
}

// ---------------------------------------------------------------------
// B1 end to end: the purge race presents one refresh token twice
// ---------------------------------------------------------------------

/// A holder crashed and left an open claim on R; it expired. Flow B (its
/// own process and lease, as after a Redis flush) takes the claim over and
/// sends R; the background purge of another process runs at that moment
/// and deletes B's claim; flow C then wins a fresh claim on R and sends it
/// again: the upstream sees R twice (invariant 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs services: cargo xtask test"]
async fn hostile_pg_flow_purge_race_never_presents_a_refresh_token_twice() {
    use std::sync::Arc;

    use refresh_core::memory::InMemoryRefreshLock;
    use refresh_core::testing::{FakeUpstream, RotatingExecutor};
    use refresh_core::{
        Account, Clock, FlowConfig, LockStrategy, RefreshExecutor, RefreshFlow, RefreshLock,
        SystemClock,
    };

    let db = PgDatabase::create("hostile_purge_flow").await;
    let (pa, pb, pc, pd) = (
        db.open(sealed()).await,
        db.open(sealed()).await,
        db.open(sealed()).await,
        db.open(sealed()).await,
    );
    let upstream = FakeUpstream::new();
    upstream.hold_responses();
    let executor: Arc<dyn RefreshExecutor> = Arc::new(RotatingExecutor::new(
        Platform::Anthropic,
        Arc::clone(&upstream),
        Duration::from_secs(3600),
    ));
    let expired = SystemClock.now().timestamp() - 600;
    let account = Account::oauth(
        1,
        Platform::Anthropic,
        Credentials::new()
            .with("access_token", "at-1-0")
            .with("refresh_token", "rt-1-0")
            .with("expires_at", expired.to_string()),
    );
    pa.repository()
        .insert(account.clone())
        .await
        .expect("insert");
    let key = ClaimKey::new(Platform::Anthropic, Fingerprint::of(&"rt-1-0".into()));
    // The crashed holder's claim, expired.
    pa.claim_store()
        .acquire(
            &key,
            &ClaimId::random(),
            AccountId(1),
            0,
            Duration::from_millis(100),
        )
        .await
        .expect("orphan claim");
    wait_expired(&pa.claim_store(), &key).await;

    let flow = |backend: &SeaOrmBackend| {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        RefreshFlow::builder(
            Arc::new(backend.repository()),
            LockStrategy::single(
                Arc::new(InMemoryRefreshLock::new(Arc::clone(&clock))) as Arc<dyn RefreshLock>
            ),
            Arc::new(backend.claim_store()),
        )
        .clock(clock)
        .config(FlowConfig::default())
        .build()
        .expect("flow")
    };
    let (flow_b, flow_c) = (flow(&pb), flow(&pc));
    let window = Duration::from_secs(180);

    let locker = Database::connect(db.url.as_str()).await.expect("locker");
    let txn = locker.begin().await.expect("begin");
    txn.execute(Statement::from_string(
        txn.get_database_backend(),
        format!(
            "SELECT 1 FROM refresh_claims WHERE {} FOR UPDATE",
            key_where(&key)
        ),
    ))
    .await
    .expect("lock");
    let b = {
        let (flow, account, executor) = (flow_b.clone(), account.clone(), Arc::clone(&executor));
        tokio::spawn(async move { flow.refresh_if_needed(&account, &executor, window).await })
    };
    wait_for_lock_waiters(&locker, 1).await;
    let purge = {
        let store = pd.claim_store();
        tokio::spawn(async move { store.purge(1000).await })
    };
    wait_for_lock_waiters(&locker, 2).await;
    txn.commit().await.expect("unlock");
    upstream.wait_for_calls(1).await;
    let purged = purge.await.expect("join").expect("purge");

    let c = {
        let (flow, account, executor) = (flow_c.clone(), account.clone(), Arc::clone(&executor));
        tokio::spawn(async move { flow.refresh_if_needed(&account, &executor, window).await })
    };
    let second_call =
        tokio::time::timeout(Duration::from_secs(3), upstream.wait_for_calls(2)).await;
    upstream.open();
    let _ = b.await;
    let _ = c.await;
    assert!(
        second_call.is_err() && upstream.reuses() == 0,
        "R presented twice: {} calls, {} reuse(s) (purge deleted {purged} claim)",
        upstream.calls(),
        upstream.reuses()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn hostile_pg_lease_with_a_huge_ttl_is_not_a_database_error() {
    use refresh_core::{RefreshKey, RefreshLock};
    let db = PgDatabase::create("hostile_lease_huge").await;
    let backend = db.open(sealed()).await;
    let key = RefreshKey::from_raw("claude:account:huge");
    let lease = backend.lease_lock().try_acquire(&key, Duration::MAX).await;
    let lease = lease.unwrap_or_else(|e| panic!("huge lease ttl: {e} ({:?})", e.kind()));
    assert!(lease.is_some());
}

// ---------------------------------------------------------------------
// B5. A platform text the parser accepts but the writes do not match
// ---------------------------------------------------------------------

/// `Platform::from_str` trims and accepts the alias `claude`; reads parse
/// the stored text leniently, but every credential write puts `platform =
/// '<canonical name>'` in its WHERE (repository.rs:88 with the parsed
/// platform, db.rs cache). A row whose platform column says `claude` (the
/// key prefix the Go tool and the lock keys use) or `anthropic ` reads
/// fine, yet its fenced write never matches: `VersionMismatch` at the very
/// version just read, and `replace_credentials` says `NotFound` for a row
/// that exists. The flow then refreshes upstream and can never persist.
async fn non_canonical_platform(backend: SeaOrmBackend) {
    let repo = backend.repository();
    repo.insert(account_expiring(1, Some(60)))
        .await
        .expect("insert");
    raw(
        backend.connection(),
        "UPDATE accounts SET platform = 'claude' WHERE id = 1",
    )
    .await;
    // A fresh pool (another process) with no remembered platform.
    let other = SeaOrmBackend::from_connection(backend.connection().clone(), sealed()).repository();
    let read = other.get(AccountId(1)).await;
    let Ok(Some(account)) = read else {
        // Reporting it as corrupt (InvalidData) would be a fine answer too.
        assert_eq!(
            read.expect_err("corrupt").kind(),
            StorageErrorKind::InvalidData
        );
        return;
    };
    let next = account.credentials.clone().with("refresh_token", "rt-1-1");
    let written = other
        .compare_and_set_credentials(
            account.id,
            refresh_core::CasExpectation::of(&account),
            &next,
        )
        .await
        .expect("cas");
    assert!(
        matches!(written, refresh_core::CasOutcome::Applied(_)),
        "the account was read at version {} and written with that expectation: {written:?}",
        account.credentials_version
    );
}

#[tokio::test]
async fn hostile_sqlite_a_readable_account_can_be_written() {
    non_canonical_platform(sqlite_memory().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn hostile_pg_a_readable_account_can_be_written() {
    let db = PgDatabase::create("hostile_platform_alias").await;
    non_canonical_platform(db.open(sealed()).await).await;
}

// ---------------------------------------------------------------------
// B6. Concurrent migrations on SQLite; B7. a newer schema
// ---------------------------------------------------------------------

/// Three processes start on a fresh SQLite file and migrate at once. SQLite
/// migrations run without a transaction (sea-orm-migration), so two runs
/// apply the same migration and both insert its record; `migrate` retries
/// once (migration/mod.rs:338), which is not enough when the retry races
/// again: `Conflict (code 1555)`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_sqlite_three_concurrent_migrations_all_succeed() {
    use std::sync::Arc;
    use tokio::sync::Barrier;
    for round in 0..30 {
        let file = SqliteFile::new("hostile_migrate");
        let mut pools = Vec::new();
        for _ in 0..3 {
            pools.push(
                SeaOrmBackend::connect(&file.config(), sealed())
                    .await
                    .expect("connect"),
            );
        }
        let barrier = Arc::new(Barrier::new(pools.len()));
        let tasks: Vec<_> = pools
            .into_iter()
            .map(|p| {
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    p.migrate().await
                })
            })
            .collect();
        for t in tasks {
            if let Err(e) = t.await.expect("join") {
                panic!(
                    "round {round}: concurrent migrate failed: {e} ({:?})",
                    e.kind()
                );
            }
        }
    }
}

/// A database migrated by a newer release: `migrate` fails (fine) with
/// "database error" (kind Other), which says nothing about the cause.
#[tokio::test]
async fn hostile_newer_migration_set_is_a_clear_error() {
    let file = SqliteFile::new("hostile_newer");
    let backend = file.open(sealed()).await;
    raw(
        backend.connection(),
        "INSERT INTO oauth_refresh_migrations (version, applied_at) VALUES ('m20991231_000001_from_the_future', 0)",
    )
    .await;
    let e = backend.migrate().await.expect_err("a newer database");
    assert!(
        e.to_string().contains("newer")
            || e.to_string().contains("unknown migration")
            || e.to_string().contains("m20991231"),
        "the error says what is wrong: {e} ({:?})",
        e.kind()
    );
}

// ---------------------------------------------------------------------
// B2 in the background refresher: the cycle never ends
// ---------------------------------------------------------------------

/// Account 1 is due but has no executor (another platform; an account the
/// sweep passes over without changing it, like one whose upstream is down
/// and keeps failing retryably), row 2 has a non-integral REAL expiry
/// between it and account 3, pages of 2. The cursor after row 2 has no
/// expiry, so every page restarts at account 1: `run_once` never returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_sqlite_background_cycle_ends_despite_a_corrupt_expiry() {
    use std::sync::Arc;

    use refresh_core::testing::{FakeUpstream, RotatingExecutor};
    use refresh_core::{
        BackgroundConfig, BackgroundRefresher, Clock, ExecutorRegistry, FlowConfig, LockStrategy,
        ManualClock, RefreshFlow, RefreshLock,
    };

    let backend = sqlite_memory().await;
    let repo = backend.repository();
    let mut gemini = account_expiring(1, Some(60));
    gemini.platform = Platform::Gemini;
    repo.insert(gemini).await.expect("insert");
    repo.insert(account_expiring(2, Some(120)))
        .await
        .expect("insert");
    repo.insert(account_expiring(3, Some(180)))
        .await
        .expect("insert");
    raw(
        backend.connection(),
        "UPDATE accounts SET expires_at = 1893456120000.5 WHERE id = 2",
    )
    .await;
    let clock = Arc::new(ManualClock::new(at(0)));
    let upstream = FakeUpstream::new();
    let flow = RefreshFlow::builder(
        Arc::new(backend.repository()),
        LockStrategy::single(Arc::new(backend.lease_lock()) as Arc<dyn RefreshLock>),
        Arc::new(backend.claim_store()),
    )
    .clock(Arc::clone(&clock) as Arc<dyn Clock>)
    .config(FlowConfig::default())
    .build()
    .expect("flow");
    let executors = ExecutorRegistry::new().with(Arc::new(RotatingExecutor::new(
        Platform::Anthropic,
        Arc::clone(&upstream),
        Duration::from_secs(3600),
    )));
    let refresher = BackgroundRefresher::builder(flow, executors)
        .config(BackgroundConfig {
            page_size: 2,
            ..BackgroundConfig::default()
        })
        .build()
        .expect("refresher");
    let report = tokio::time::timeout(Duration::from_secs(10), refresher.run_once()).await;
    let report = report.expect("one background cycle over 3 due rows ends");
    assert_eq!(report.corrupt, 1, "{report:?}");
}

// ---------------------------------------------------------------------
// B8. Secrets in TRACE-level spans
// ---------------------------------------------------------------------

mod capture {
    use std::fmt::Write as _;
    use std::sync::{Mutex, OnceLock};

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    pub(crate) static LOG: Mutex<String> = Mutex::new(String::new());

    struct Collect;

    struct V<'a>(&'a mut String);

    impl Visit for V<'_> {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            let _ = write!(self.0, " {}={:?}", field.name(), value);
        }
    }

    impl Subscriber for Collect {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, span: &Attributes<'_>) -> Id {
            let mut log = LOG.lock().unwrap_or_else(|e| e.into_inner());
            let _ = write!(
                log,
                "\nspan {}::{}",
                span.metadata().target(),
                span.metadata().name()
            );
            span.record(&mut V(&mut log));
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, values: &Record<'_>) {
            let mut log = LOG.lock().unwrap_or_else(|e| e.into_inner());
            values.record(&mut V(&mut log));
        }
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let mut log = LOG.lock().unwrap_or_else(|e| e.into_inner());
            let _ = write!(
                log,
                "\n{} {}",
                event.metadata().level(),
                event.metadata().target()
            );
            event.record(&mut V(&mut log));
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    /// A global subscriber with every level on (as `RUST_LOG=trace`).
    pub(crate) fn install() {
        static ONCE: OnceLock<()> = OnceLock::new();
        ONCE.get_or_init(|| {
            let _ = tracing::subscriber::set_global_default(Collect);
        });
    }

    pub(crate) fn lines_with(needle: &str) -> Vec<String> {
        LOG.lock()
            .unwrap_or_else(|e| e.into_inner())
            .lines()
            .filter(|l| l.contains(needle))
            .map(|l| l.chars().take(300).collect())
            .collect()
    }
}

/// With TRACE enabled (a debugging session), sea-orm's `#[instrument]`
/// spans print `Database::connect`'s options, URL and password included,
/// and every statement with its bound values: the old plaintext token that
/// `rekey` binds in `WHERE credentials = $3` (rekey.rs:66), and every token
/// in plaintext mode. The crate calls `Database::connect` (backend.rs:183)
/// and runs every statement through `DatabaseConnection` (db.rs:80-130).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_no_secret_in_trace_level_spans() {
    capture::install();
    const PASSWORD: &str = "PGPASSWORDHOSTILE";
    const TOKEN: &str = "RTPLAINTEXTHOSTILE";
    let url = format!("postgres://app:{PASSWORD}@127.0.0.1:9/x");
    let _ = SeaOrmBackend::connect(
        &DatabaseConfig {
            connect_timeout: Duration::from_millis(300),
            ..DatabaseConfig::new(url)
        },
        sealed(),
    )
    .await;
    // A database from before sealing was switched on, then rekeyed.
    let file = SqliteFile::new("hostile_trace");
    let plain = file.open(refresh_seaorm::Sealing::plaintext_opt_in()).await;
    let mut account = account_expiring(1, Some(60));
    account.credentials.insert("refresh_token", TOKEN);
    plain.repository().insert(account).await.expect("insert");
    let sealed_backend = file.open(sealed()).await;
    sealed_backend.rekey().await.expect("rekey");
    let leaks: Vec<String> = capture::lines_with(PASSWORD)
        .into_iter()
        .chain(capture::lines_with(TOKEN))
        .collect();
    assert!(
        leaks.is_empty(),
        "secrets in tracing output:\n{}",
        leaks.join("\n")
    );
}

// ---------------------------------------------------------------------
// B9. Plaintext left in the SQLite file after sealing was switched on
// ---------------------------------------------------------------------

/// A database from before sealing was switched on (plaintext rows), then
/// `rekey()` as the README's rotation steps say, and the pool closed. The
/// rows now hold envelopes, but SQLite does not overwrite freed cells
/// (`secure_delete` is off, no VACUUM): the old plaintext tokens are still
/// in the file's bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_sqlite_no_token_text_in_the_file_after_rekey_from_plaintext() {
    const MARK: &str = "RTPLAINBEFOREREKEY";
    let file = SqliteFile::new("hostile_rekey_file");
    let plain = file.open(refresh_seaorm::Sealing::plaintext_opt_in()).await;
    for id in 1..=50 {
        let mut account = account_expiring(id, Some(60));
        account
            .credentials
            .insert("refresh_token", format!("{MARK}-{id}"));
        plain.repository().insert(account).await.expect("insert");
    }
    plain.connection().clone().close().await.expect("close");
    let sealed_backend = file.open(sealed()).await;
    let report = sealed_backend.rekey().await.expect("rekey");
    assert_eq!(report.credentials, 50);
    assert_eq!(sealed_backend.rekey().await.expect("again").credentials, 0);
    // Even with the WAL checkpointed into the main file and truncated.
    raw(
        sealed_backend.connection(),
        "PRAGMA wal_checkpoint(TRUNCATE)",
    )
    .await;
    sealed_backend
        .connection()
        .clone()
        .close()
        .await
        .expect("close");
    let mut found = Vec::new();
    for suffix in ["", "-wal"] {
        let mut path = file.path.clone().into_os_string();
        path.push(suffix);
        if let Ok(bytes) = std::fs::read(&path) {
            let n = bytes
                .windows(MARK.len())
                .filter(|w| *w == MARK.as_bytes())
                .count();
            if n > 0 {
                found.push(format!("{n} copies in {path:?}"));
            }
        }
    }
    assert!(found.is_empty(), "plaintext tokens after rekey: {found:?}");
}

/// The same class of break through the other derived column: a row whose
/// `refresh_fingerprint` does not match its credentials (written by a
/// tool, an SQL import from the Go database, a hand fix; `''` is the
/// column's default) reads fine, and the flow presents its refresh token
/// upstream, but the fenced write compares the column (repository.rs:409)
/// with the fingerprint of the credentials just read and never matches:
/// the rotation can never be persisted.
async fn stale_fingerprint_column(backend: SeaOrmBackend) {
    use std::sync::Arc;

    use refresh_core::testing::{FakeUpstream, RotatingExecutor};
    use refresh_core::{
        Clock, FlowConfig, LockStrategy, ManualClock, RefreshExecutor, RefreshFlow, RefreshLock,
    };

    let repo = backend.repository();
    repo.insert(account_expiring(1, Some(60)))
        .await
        .expect("insert");
    raw(
        backend.connection(),
        "UPDATE accounts SET refresh_fingerprint = '' WHERE id = 1",
    )
    .await;
    let read = repo.get(AccountId(1)).await;
    let Ok(Some(account)) = read else {
        assert_eq!(
            read.expect_err("corrupt").kind(),
            StorageErrorKind::InvalidData
        );
        return;
    };
    let clock = Arc::new(ManualClock::new(at(0)));
    let upstream = FakeUpstream::new();
    let executor: Arc<dyn RefreshExecutor> = Arc::new(RotatingExecutor::new(
        Platform::Anthropic,
        Arc::clone(&upstream),
        Duration::from_secs(3600),
    ));
    let flow = RefreshFlow::builder(
        Arc::new(backend.repository()),
        LockStrategy::single(Arc::new(backend.lease_lock()) as Arc<dyn RefreshLock>),
        Arc::new(backend.claim_store()),
    )
    .clock(Arc::clone(&clock) as Arc<dyn Clock>)
    .config(FlowConfig::default())
    .build()
    .expect("flow");
    let outcome = flow
        .refresh_if_needed(&account, &executor, Duration::from_secs(180))
        .await;
    let stored = repo.get(AccountId(1)).await.expect("get").expect("row");
    assert_eq!(
        stored
            .credentials
            .refresh_token()
            .map(|t| t.expose().to_owned()),
        upstream.current_refresh_token(AccountId(1)),
        "the upstream rotated (calls: {}), the account does not hold the new token; flow: {outcome:?}",
        upstream.calls()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_sqlite_stale_fingerprint_column_never_strands_a_rotation() {
    stale_fingerprint_column(sqlite_memory().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn hostile_pg_stale_fingerprint_column_never_strands_a_rotation() {
    let db = PgDatabase::create("hostile_stale_fp").await;
    stale_fingerprint_column(db.open(sealed()).await).await;
}

// ---------------------------------------------------------------------
// B11. Catalog create racing explicit inserts (PostgreSQL)
// ---------------------------------------------------------------------

fn new_account_named(n: usize) -> refresh_core::NewAccount {
    refresh_core::NewAccount::new(
        format!("acct-{n}"),
        Platform::Anthropic,
        refresh_core::AccountType::OAuth,
        Credentials::new()
            .with("access_token", format!("at-n{n}"))
            .with("refresh_token", format!("rt-n{n}"))
            .with("expires_at", (T0 + 60).to_string()),
    )
}

/// `insert` writes the explicit id, THEN moves the sequence past it
/// (repository.rs:382-383, two autocommit statements): a `create` whose
/// `nextval` lands in between gets an id that is already in use and fails
/// with `Conflict`, although the catalog promises "never an id in use,
/// also after explicit inserts".
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs services: cargo xtask test"]
async fn hostile_pg_create_never_fails_while_explicit_inserts_run() {
    let db = PgDatabase::create("probe_ids").await;
    let a = db.open(sealed()).await;
    let b = db.open(sealed()).await;
    let inserter = {
        let repo = a.repository();
        tokio::spawn(async move {
            let mut errors = Vec::new();
            for id in 1..=300 {
                if let Err(e) = repo.insert(account_expiring(id * 2, Some(60))).await {
                    errors.push(format!("insert {}: {e}", id * 2));
                }
            }
            errors
        })
    };
    let creator = {
        let repo = b.repository();
        tokio::spawn(async move {
            let mut errors = Vec::new();
            for n in 0..300 {
                if let Err(e) = repo.create(new_account_named(n)).await {
                    errors.push(format!("create {n}: {e} ({:?})", e.kind()));
                }
            }
            errors
        })
    };
    // An explicit insert on an id the catalog handed out is a Conflict by
    // contract; a create must never fail.
    let _ = inserter.await.expect("join");
    let errors = creator.await.expect("join");
    assert!(
        errors.is_empty(),
        "{} errors, e.g. {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
}
