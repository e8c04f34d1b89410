//! The repository and catalog beyond the suites, on real databases:
//! competing writers through separate pools, corrupt rows, a 50 000-account
//! due listing under concurrent writes, the index behind it, migrations.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use common::{PgDatabase, SqliteFile, sealed, sqlite_memory};
use refresh_core::testing::conformance::{T0, account_expiring};
use refresh_core::{
    AccountCatalog, AccountFilter, AccountId, AccountRepository, AccountStatus, AccountType,
    CasExpectation, CasOutcome, Credentials, DueCursor, NewAccount, Platform, StorageErrorKind,
};
use refresh_seaorm::{Migrator, MigratorTrait, SeaOrmAccountRepository, SeaOrmBackend};
use sea_orm::{ConnectionTrait, Statement};

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(T0 + secs, 0).expect("valid")
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

// ---------------------------------------------------------------------
// Two writers at one version, through two pools (two processes' worth)
// ---------------------------------------------------------------------

async fn two_writers_one_winner(a: SeaOrmBackend, b: SeaOrmBackend) {
    let (ra, rb) = (a.repository(), b.repository());
    let seeded = ra
        .insert(account_expiring(1, Some(60)))
        .await
        .expect("insert");
    for round in 0..20 {
        let current = ra.get(seeded.id).await.expect("get").expect("row");
        let expected = CasExpectation::of(&current);
        let mine = current
            .credentials
            .clone()
            .with("refresh_token", format!("rt-a-{round}"));
        let theirs = current
            .credentials
            .clone()
            .with("refresh_token", format!("rt-b-{round}"));
        let (x, y) = tokio::join!(
            ra.compare_and_set_credentials(seeded.id, expected, &mine),
            rb.compare_and_set_credentials(seeded.id, expected, &theirs),
        );
        let (x, y) = (x.expect("cas a"), y.expect("cas b"));
        let winner = match (&x, &y) {
            (CasOutcome::Applied(_), CasOutcome::VersionMismatch { .. }) => &mine,
            (CasOutcome::VersionMismatch { .. }, CasOutcome::Applied(_)) => &theirs,
            other => panic!("round {round}: exactly one writer wins, got {other:?}"),
        };
        let stored = rb.get(seeded.id).await.expect("get").expect("row");
        assert_eq!(
            stored.credentials, *winner,
            "round {round}: the row holds the winner's"
        );
        assert_eq!(stored.credentials_version, current.credentials_version + 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_two_writers_through_two_pools_one_wins() {
    let file = SqliteFile::new("two_writers");
    two_writers_one_winner(file.open(sealed()).await, file.open(sealed()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn postgres_two_writers_through_two_pools_one_wins() {
    let db = PgDatabase::create("two_writers").await;
    two_writers_one_winner(db.open(sealed()).await, db.open(sealed()).await).await;
}

// ---------------------------------------------------------------------
// Corrupt rows
// ---------------------------------------------------------------------

async fn corrupt_rows_are_reported_and_listings_go_on(backend: SeaOrmBackend) {
    let repo = backend.repository();
    for id in 1..=8 {
        repo.insert(account_expiring(id, Some(id * 60)))
            .await
            .expect("insert");
    }
    // Corrupt four of them behind the repository's back: credentials that
    // are not a JSON object (plaintext JSON array, not JSON at all), an
    // unknown platform, an unknown type, and a ciphertext moved from row 5.
    raw(
        &backend,
        "UPDATE accounts SET credentials = '[1, 2]' WHERE id = 2",
    )
    .await;
    raw(
        &backend,
        "UPDATE accounts SET credentials = 'not json' WHERE id = 3",
    )
    .await;
    raw(
        &backend,
        "UPDATE accounts SET platform = 'Not A Platform' WHERE id = 4",
    )
    .await;
    raw(
        &backend,
        "UPDATE accounts SET account_type = 'sso' WHERE id = 6",
    )
    .await;
    raw(
        &backend,
        "UPDATE accounts SET credentials = (SELECT credentials FROM accounts WHERE id = 5) WHERE id = 7",
    )
    .await;
    for id in [2, 3, 4, 6, 7] {
        let error = repo.get(AccountId(id)).await.expect_err("a corrupt row");
        assert_eq!(error.kind(), StorageErrorKind::InvalidData, "account {id}");
        assert!(!error.to_string().contains("rt-"), "no token in {error}");
    }
    let mut listed = Vec::new();
    let mut corrupt = Vec::new();
    let mut cursor = None;
    for _ in 0..10 {
        let page = repo
            .list_due(at(86_400), cursor, 3)
            .await
            .expect("list_due");
        listed.extend(page.accounts.iter().map(|a| a.id.0));
        corrupt.extend(page.corrupt.iter().map(|c| {
            assert_eq!(c.error.kind(), StorageErrorKind::InvalidData);
            c.id.0
        }));
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(listed, vec![1, 5, 8], "the readable accounts, in order");
    assert_eq!(
        corrupt,
        vec![2, 3, 4, 6, 7],
        "every corrupt row, by id, in order"
    );
    let page = repo
        .list(&AccountFilter::default(), None, 100)
        .await
        .expect("catalog list");
    assert_eq!(
        page.accounts.len(),
        3,
        "the catalog lists the readable ones"
    );
    assert_eq!(page.corrupt.len(), 5, "and reports the others");
    // The readable accounts still work end to end.
    let five = repo.get(AccountId(5)).await.expect("get").expect("row");
    let written = repo
        .compare_and_set_credentials(
            five.id,
            CasExpectation::of(&five),
            &five.credentials.clone().with("access_token", "at-5-1"),
        )
        .await
        .expect("cas");
    assert!(matches!(written, CasOutcome::Applied(_)), "{written:?}");
}

#[tokio::test]
async fn sqlite_corrupt_rows_are_reported_and_listings_go_on() {
    corrupt_rows_are_reported_and_listings_go_on(sqlite_memory().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn postgres_corrupt_rows_are_reported_and_listings_go_on() {
    let db = PgDatabase::create("corrupt").await;
    corrupt_rows_are_reported_and_listings_go_on(db.open(sealed()).await).await;
}

// ---------------------------------------------------------------------
// 50 000 accounts listed while others write
// ---------------------------------------------------------------------

const ACCOUNTS: i64 = 50_000;
/// The listing's `before`: T0 + this many seconds.
const BEFORE: i64 = 50_000;

/// The seeded expiry of the `n`-th account (0-based): unknown for every
/// 97th, otherwise spread over T0 .. T0 + 100 000 s; every 101st disabled.
fn seed(n: i64) -> NewAccount {
    let mut credentials = Credentials::new()
        .with("access_token", format!("at-{n}"))
        .with("refresh_token", format!("rt-{n}"));
    if n % 97 != 0 {
        credentials.insert("expires_at", (T0 + (n * 7919) % 100_000).to_string());
    }
    let mut new = NewAccount::new(
        format!("bulk-{n}"),
        Platform::OpenAi,
        AccountType::OAuth,
        credentials,
    );
    if n % 101 == 0 {
        new.status = AccountStatus::Disabled;
    }
    new
}

fn initially_due(n: i64) -> bool {
    n % 101 != 0 && (n % 97 == 0 || (n * 7919) % 100_000 < BEFORE)
}

async fn fifty_thousand_due_listed_exactly_while_writers_move_expiries(backend: SeaOrmBackend) {
    let repo = backend.repository();
    let created = repo
        .import((0..ACCOUNTS).map(seed).collect())
        .await
        .expect("import 50 000");
    let ids: Vec<AccountId> = created.iter().map(|a| a.id).collect();
    let due: HashSet<AccountId> = (0..ACCOUNTS)
        .filter(|n| initially_due(*n))
        .map(|n| ids[usize::try_from(n).expect("small")])
        .collect();

    // Writers: half move not-due accounts to other not-due expiries, half
    // "refresh" due ones (their expiry moves past `before`: they may be
    // listed or not, never twice). Every other due account must be listed.
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..2_i64 {
        let (repo, ids, stop) = (repo.clone(), ids.clone(), Arc::clone(&stop));
        writers.push(tokio::spawn(async move {
            let mut refreshed = HashSet::new();
            let mut n = w;
            while !stop.load(Ordering::Relaxed) {
                n = (n + 7_919 * 3) % ACCOUNTS;
                let id = ids[usize::try_from(n).expect("small")];
                let is_due = initially_due(n);
                if is_due != (w == 1) {
                    continue;
                }
                let account = repo.get(id).await.expect("get").expect("row");
                let to = if is_due {
                    10_000_000
                } else {
                    BEFORE + 1 + (n * 31) % 40_000
                };
                let credentials = account
                    .credentials
                    .clone()
                    .with("expires_at", (T0 + to).to_string());
                let outcome = repo
                    .compare_and_set_credentials(id, CasExpectation::of(&account), &credentials)
                    .await
                    .expect("writer cas");
                if is_due && matches!(outcome, CasOutcome::Applied(_)) {
                    refreshed.insert(id);
                }
                tokio::task::yield_now().await;
            }
            refreshed
        }));
    }

    let mut seen = HashSet::new();
    let mut cursor: Option<DueCursor> = None;
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(pages < 1_000, "the listing does not end");
        let page = repo
            .list_due(at(BEFORE), cursor, 500)
            .await
            .expect("list_due");
        assert!(page.corrupt.is_empty(), "no corrupt rows");
        for account in &page.accounts {
            assert!(
                seen.insert(account.id),
                "account {} listed twice",
                account.id
            );
            assert!(
                due.contains(&account.id),
                "account {} listed but never due",
                account.id
            );
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut refreshed = HashSet::new();
    for writer in writers {
        refreshed.extend(writer.await.expect("writer"));
    }
    assert!(
        !refreshed.is_empty(),
        "the writers wrote during the listing"
    );
    let missing: Vec<_> = due
        .iter()
        .filter(|id| !seen.contains(id) && !refreshed.contains(id))
        .collect();
    assert!(missing.is_empty(), "due accounts never listed: {missing:?}");
    assert!(seen.len() > 20_000, "{} listed", seen.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_lists_50_000_due_accounts_exactly_under_concurrent_writes() {
    let file = SqliteFile::new("fifty_thousand");
    let backend = file.open(sealed()).await;
    fifty_thousand_due_listed_exactly_while_writers_move_expiries(backend.clone()).await;
    let plan = backend
        .repository()
        .explain_list_due(
            at(BEFORE),
            Some(DueCursor {
                expires_at: Some(at(10)),
                id: AccountId(7),
            }),
            500,
        )
        .await
        .expect("explain")
        .join("\n");
    assert!(
        plan.contains("accounts_due"),
        "SQLite uses the due index: {plan}"
    );
    assert!(!plan.contains("SCAN accounts"), "no table scan: {plan}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn postgres_lists_50_000_due_accounts_exactly_and_explain_shows_an_index_scan() {
    let db = PgDatabase::create("fifty_thousand").await;
    let backend = db.open(sealed()).await;
    fifty_thousand_due_listed_exactly_while_writers_move_expiries(backend.clone()).await;
    raw(&backend, "ANALYZE accounts").await;
    let repo: SeaOrmAccountRepository = backend.repository();
    for cursor in [
        None,
        Some(DueCursor {
            expires_at: Some(at(10)),
            id: AccountId(7),
        }),
    ] {
        let plan = repo
            .explain_list_due(at(BEFORE), cursor, 500)
            .await
            .expect("explain")
            .join("\n");
        assert!(
            plan.contains("Index Scan using accounts_due")
                || plan.contains("Index Only Scan using accounts_due"),
            "cursor {cursor:?}: PostgreSQL scans the due index: {plan}"
        );
        assert!(!plan.contains("Seq Scan"), "no sequential scan: {plan}");
    }
}

// ---------------------------------------------------------------------
// Migrations
// ---------------------------------------------------------------------

async fn migrations_are_idempotent_and_finish_an_older_set(backend: SeaOrmBackend) {
    // An older release applied only the first migration.
    Migrator::up(backend.connection(), Some(1))
        .await
        .expect("first migration");
    let repo = backend.repository();
    let early = repo
        .insert(account_expiring(1, Some(60)))
        .await
        .expect("insert before the rest");
    assert!(
        backend.installation_id().await.is_err(),
        "no installation id before the migration that creates it"
    );
    backend.migrate().await.expect("the rest");
    let installation = backend.installation_id().await.expect("created by migrate");
    assert_eq!(installation.len(), 32);
    backend.migrate().await.expect("again: nothing to do");
    refresh_seaorm::migrate(backend.connection())
        .await
        .expect("and again");
    assert_eq!(
        backend.installation_id().await.expect("kept"),
        installation,
        "stable across migrations"
    );
    assert_eq!(
        repo.get(early.id).await.expect("get"),
        Some(early),
        "data kept"
    );
    let lease = backend.lease_lock();
    use refresh_core::RefreshLock;
    let key = refresh_core::RefreshKey::from_raw("claude:account:1");
    assert!(
        lease
            .try_acquire(&key, std::time::Duration::from_secs(5))
            .await
            .expect("lease")
            .is_some()
    );
}

#[tokio::test]
async fn sqlite_migrations_are_idempotent_and_finish_an_older_set() {
    let file = SqliteFile::new("migrations");
    let backend = SeaOrmBackend::connect(&file.config(), sealed())
        .await
        .expect("connect");
    migrations_are_idempotent_and_finish_an_older_set(backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn postgres_migrations_are_idempotent_and_finish_an_older_set() {
    let db = PgDatabase::create("migrations").await;
    let backend = SeaOrmBackend::connect(&db.config(), sealed())
        .await
        .expect("connect");
    migrations_are_idempotent_and_finish_an_older_set(backend).await;
}

// ---------------------------------------------------------------------
// Explicit ids and the PostgreSQL id sequence
// ---------------------------------------------------------------------

/// A create that drew an id and has not committed is in flight while an
/// explicit insert moves the sequence: the insert waits for it (reading
/// the sequence then could move it back below the id just drawn, and a
/// later create would draw an id in use). Afterwards creates draw ids past
/// both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn postgres_an_explicit_insert_waits_for_an_in_flight_create() {
    use sea_orm::TransactionTrait;

    let db = PgDatabase::create("explicit_id_waits").await;
    let backend = db.open(sealed()).await;
    let other = sea_orm::Database::connect(db.url.as_str())
        .await
        .expect("connect");
    let txn = other.begin().await.expect("begin");
    let row = txn
        .query_one(Statement::from_string(
            txn.get_database_backend(),
            "INSERT INTO accounts (name, platform, account_type, status, credentials, \
             refresh_fingerprint, extra, priority, credentials_version, created_at, updated_at) \
             VALUES ('in-flight', 'anthropic', 'oauth', 'disabled', '{}', '', '{}', 0, 0, 0, 0) \
             RETURNING id"
                .to_owned(),
        ))
        .await
        .expect("insert")
        .expect("a row");
    let drawn: i64 = row.try_get("", "id").expect("id");
    let explicit = {
        let repo = backend.repository();
        tokio::spawn(async move { repo.insert(account_expiring(drawn + 1, Some(60))).await })
    };
    let mut waiting = false;
    for _ in 0..500 {
        let row = other
            .query_one(Statement::from_string(
                other.get_database_backend(),
                "SELECT count(*) AS n FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    .to_owned(),
            ))
            .await
            .expect("pg_stat_activity")
            .expect("a row");
        if row.try_get::<i64>("", "n").expect("n") >= 1 {
            waiting = true;
            break;
        }
        // Polls the server's state (no sleep as synchronization: the
        // condition is checked, the delay only paces the polling).
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(waiting, "the explicit insert did not wait for the create");
    assert!(!explicit.is_finished());
    txn.commit().await.expect("commit");
    explicit.await.expect("join").expect("explicit insert");
    let created = backend
        .repository()
        .create(NewAccount::new(
            "after",
            Platform::Anthropic,
            AccountType::OAuth,
            Credentials::new().with("refresh_token", "rt-after"),
        ))
        .await
        .expect("create");
    assert!(created.id.0 > drawn + 1, "{:?} after {drawn}", created.id);
}

// ---------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------

#[tokio::test]
async fn an_unreachable_database_is_unavailable_without_the_password() {
    let config = refresh_seaorm::DatabaseConfig {
        connect_timeout: std::time::Duration::from_millis(500),
        acquire_timeout: std::time::Duration::from_millis(500),
        ..refresh_seaorm::DatabaseConfig::new("postgres://app:hunter2@127.0.0.1:1/none")
    };
    let error = SeaOrmBackend::connect(&config, sealed())
        .await
        .expect_err("nothing listens on port 1");
    assert!(
        matches!(
            error.kind(),
            StorageErrorKind::Unavailable | StorageErrorKind::Timeout
        ),
        "{error:?}"
    );
    assert!(!format!("{error:?}").contains("hunter2"), "{error:?}");
}

#[tokio::test]
async fn a_duplicate_insert_is_a_conflict_with_no_values_in_the_message() {
    let backend = sqlite_memory().await;
    let repo = backend.repository();
    repo.insert(account_expiring(1, Some(60)))
        .await
        .expect("insert");
    let error = repo
        .insert(account_expiring(1, Some(60)))
        .await
        .expect_err("duplicate");
    assert_eq!(error.kind(), StorageErrorKind::Conflict);
    let text = format!("{error:?}");
    assert!(
        !text.contains("rt-1-0") && !text.contains("INSERT"),
        "{text}"
    );
}

#[tokio::test]
async fn two_databases_have_different_installation_ids() {
    let (a, b) = (SqliteFile::new("install-a"), SqliteFile::new("install-b"));
    let mut ids = Vec::new();
    for file in [&a, &b] {
        let backend = SeaOrmBackend::connect(&file.config(), sealed())
            .await
            .expect("connect");
        backend.migrate().await.expect("migrate");
        ids.push(backend.installation_id().await.expect("id"));
    }
    assert_ne!(ids[0], ids[1]);
}

// ---------------------------------------------------------------------
// One account per refresh token: the unique index and its migration
// ---------------------------------------------------------------------

#[tokio::test]
async fn the_unique_index_refuses_a_shared_refresh_token_behind_the_catalogs_back() {
    let file = SqliteFile::new("unique_refresh_token");
    let backend = file.open(sealed()).await;
    let repo = backend.repository();
    let first = repo
        .insert(account_expiring(1, Some(60)))
        .await
        .expect("insert");
    // A second row with the same fingerprint, written raw: the index (not
    // only the catalog's check) refuses it.
    let fingerprint =
        refresh_core::Fingerprint::of(&first.credentials.refresh_token().expect("a refresh token"))
            .to_hex();
    let conn = backend.connection();
    let duplicate = format!(
        "INSERT INTO accounts (id, name, platform, account_type, status, credentials, refresh_fingerprint, extra, priority, credentials_version, created_at, updated_at) \
         VALUES (2, 'twin', 'anthropic', 'oauth', 'active', '{{}}', '{fingerprint}', '{{}}', 0, 0, 0, 0)"
    );
    let refused = conn
        .execute(Statement::from_string(
            conn.get_database_backend(),
            duplicate.clone(),
        ))
        .await;
    assert!(refused.is_err(), "the unique index refuses the twin row");
    // Rows without a refresh token (fingerprint '') never conflict.
    for id in [3, 4] {
        raw(
            &backend,
            &format!(
                "INSERT INTO accounts (id, name, platform, account_type, status, credentials, refresh_fingerprint, extra, priority, credentials_version, created_at, updated_at) \
                 VALUES ({id}, 'key', 'openai', 'apikey', 'active', '{{}}', '', '{{}}', 0, 0, 0, 0)"
            ),
        )
        .await;
    }

    // A database from before the index where two accounts already share a
    // token: migrate refuses, names them, and changes nothing.
    raw(&backend, "DROP INDEX accounts_refresh_fingerprint_unique").await;
    raw(
        &backend,
        "DELETE FROM oauth_refresh_migrations WHERE version = 'm20261207_000005_unique_refresh_token'",
    )
    .await;
    raw(&backend, &duplicate).await;
    let error = backend
        .migrate()
        .await
        .expect_err("two accounts share a token");
    let text = error.to_string();
    assert!(text.contains("accounts 1 and 2"), "{text}");
    assert!(!text.contains(&fingerprint), "{text}");
    let pending = conn
        .query_one(Statement::from_string(
            conn.get_database_backend(),
            "SELECT COUNT(*) AS n FROM oauth_refresh_migrations WHERE version = 'm20261207_000005_unique_refresh_token'".to_owned(),
        ))
        .await
        .expect("query")
        .expect("row")
        .try_get::<i64>("", "n")
        .expect("n");
    assert_eq!(pending, 0, "nothing was applied");
    raw(&backend, "DELETE FROM accounts WHERE id = 2").await;
    backend
        .migrate()
        .await
        .expect("migrates once the twin is gone");
}
