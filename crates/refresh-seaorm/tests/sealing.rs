//! Credentials at rest: no token text in the SQLite file or in
//! PostgreSQL's table data, moved ciphertexts refused with a typed error,
//! key rotation (`rekey`) under concurrent writes losing nothing, plaintext
//! only by opt-in.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{PgDatabase, SqliteFile, sealed, sqlite_memory, test_key};
use refresh_core::testing::conformance::{T0, account_expiring};
use refresh_core::{
    AccountCatalog, AccountId, AccountRepository, AccountType, CasExpectation, CasOutcome, ClaimId,
    ClaimKey, ClaimStore, Credentials, Fingerprint, LoginSessionStore, NewAccount, PendingLogin,
    Platform, StorageErrorKind,
};
use refresh_seaorm::{SeaOrmBackend, Sealing, SealingKey};
use sea_orm::{ConnectionTrait, Statement};

/// Token text no stored byte may contain.
const MARKERS: [&str; 5] = [
    "SECRET-ACCESS",
    "SECRET-REFRESH",
    "SECRET-ANSWER",
    "SECRET-VERIFIER",
    "hunter2",
];

fn secret_credentials(n: u32) -> Credentials {
    Credentials::new()
        .with("access_token", format!("SECRET-ACCESS-{n}"))
        .with("refresh_token", format!("SECRET-REFRESH-{n}"))
        .with("expires_at", (T0 + 3600).to_string())
}

/// Writes secrets through every path that stores them: insert, catalog
/// import, a fenced write, a re-login, a proxy with a password, a claim
/// answer.
async fn store_secrets_everywhere(backend: &SeaOrmBackend) {
    let repo = backend.repository();
    let mut inserted = account_expiring(1, Some(60));
    inserted.credentials = secret_credentials(1);
    inserted.proxy = Some("socks5://bob:hunter2@10.0.0.7:1080".parse().expect("proxy"));
    let inserted = repo.insert(inserted).await.expect("insert");
    let mut imported = NewAccount::new(
        "imported",
        Platform::OpenAi,
        AccountType::OAuth,
        secret_credentials(2),
    );
    imported.proxy = Some("http://alice:hunter2@10.0.0.8:3128".parse().expect("proxy"));
    let imported = repo.import(vec![imported]).await.expect("import").remove(0);
    let written = repo
        .compare_and_set_credentials(
            inserted.id,
            CasExpectation::of(&inserted),
            &secret_credentials(3),
        )
        .await
        .expect("cas");
    assert!(matches!(written, CasOutcome::Applied(_)));
    repo.replace_credentials(imported.id, &secret_credentials(4))
        .await
        .expect("replace");
    let claims = backend.claim_store();
    let key = ClaimKey::new(
        Platform::Anthropic,
        Fingerprint::of_bytes(b"SECRET-REFRESH-3"),
    );
    let id = ClaimId::random();
    claims
        .acquire(&key, &id, inserted.id, 1, Duration::from_secs(60))
        .await
        .expect("claim");
    let answer = Credentials::new()
        .with("access_token", "SECRET-ANSWER-AT")
        .with("refresh_token", "SECRET-ANSWER-RT");
    assert!(claims.save_answer(&key, &id, &answer).await.expect("save"));
    // A login in progress (the live one: a taken one is deleted).
    let sessions = backend.login_session_store();
    let login = PendingLogin {
        id: "login-1".to_owned(),
        platform: Platform::OpenAi,
        payload: r#"{"code_verifier":"SECRET-VERIFIER-1"}"#.into(),
    };
    sessions
        .put(&login, Duration::from_secs(600))
        .await
        .expect("put session");
    // Everything reads back.
    let read = repo.get(inserted.id).await.expect("get").expect("row");
    assert_eq!(read.credentials, secret_credentials(3));
    assert_eq!(
        read.proxy.expect("proxy").expose(),
        "socks5://bob:hunter2@10.0.0.7:1080"
    );
    assert_eq!(
        claims.get(&key).await.expect("get").expect("claim").answer,
        Some(answer)
    );
}

#[tokio::test]
async fn sqlite_file_bytes_hold_no_token_text() {
    let file = SqliteFile::new("no_token_text");
    let backend = file.open(sealed()).await;
    store_secrets_everywhere(&backend).await;
    backend.connection().clone().close().await.expect("close");
    let mut scanned = 0;
    for suffix in ["", "-wal"] {
        let mut path = file.path.clone().into_os_string();
        path.push(suffix);
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        scanned += bytes.len();
        for marker in MARKERS {
            assert!(
                !bytes.windows(marker.len()).any(|w| w == marker.as_bytes()),
                "{marker} found in {path:?}"
            );
        }
        // The account names (not secret) are there: the scan reads data.
        assert!(bytes.windows(8).any(|w| w == b"imported") || suffix.is_empty());
    }
    assert!(scanned > 0, "the database file was read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn postgres_table_data_holds_no_token_text() {
    let db = PgDatabase::create("no_token_text").await;
    let backend = db.open(sealed()).await;
    store_secrets_everywhere(&backend).await;
    let conn = backend.connection();
    for sql in [
        "SELECT credentials::text AS t FROM accounts",
        "SELECT a::text AS t FROM accounts a",
        "SELECT c::text AS t FROM refresh_claims c",
        "SELECT s::text AS t FROM login_sessions s",
    ] {
        let rows = conn
            .query_all(Statement::from_string(
                conn.get_database_backend(),
                sql.to_owned(),
            ))
            .await
            .expect(sql);
        assert!(!rows.is_empty(), "{sql}: rows");
        for row in rows {
            let text: String = row.try_get("", "t").expect("text");
            for marker in MARKERS {
                assert!(!text.contains(marker), "{sql}: {marker} in {text}");
            }
        }
    }
}

#[tokio::test]
async fn a_ciphertext_moved_to_another_row_is_refused_and_nothing_else_breaks() {
    let backend = sqlite_memory().await;
    let repo = backend.repository();
    for id in 1..=3 {
        let mut account = account_expiring(id, Some(60));
        account.credentials = secret_credentials(u32::try_from(id).expect("small"));
        repo.insert(account).await.expect("insert");
    }
    let conn = backend.connection();
    let exec = |sql: &str| Statement::from_string(conn.get_database_backend(), sql.to_owned());
    conn.execute(exec("UPDATE accounts SET credentials = (SELECT credentials FROM accounts WHERE id = 1) WHERE id = 2"))
        .await
        .expect("move");
    let error = repo.get(AccountId(2)).await.expect_err("moved ciphertext");
    assert_eq!(error.kind(), StorageErrorKind::InvalidData);
    assert!(error.to_string().contains("does not open"), "{error}");
    assert!(!error.to_string().contains("SECRET"), "{error}");
    // The same ciphertext in its own row, and the other rows, still work.
    for id in [1, 3] {
        let account = repo.get(AccountId(id)).await.expect("get").expect("row");
        let outcome = repo
            .compare_and_set_credentials(
                account.id,
                CasExpectation::of(&account),
                // Each its own refresh token: one account per token.
                &secret_credentials(10 + u32::try_from(id).expect("small")),
            )
            .await
            .expect("cas");
        assert!(
            matches!(outcome, CasOutcome::Applied(_)),
            "account {id}: {outcome:?}"
        );
    }
    // An operator re-login repairs the row.
    repo.replace_credentials(AccountId(2), &secret_credentials(2))
        .await
        .expect("re-login");
    assert!(repo.get(AccountId(2)).await.expect("get").is_some());
    // A claim answer moved to another generation is refused the same way.
    let claims = backend.claim_store();
    let (k1, k2) = (
        ClaimKey::new(Platform::Anthropic, Fingerprint::of_bytes(b"g1")),
        ClaimKey::new(Platform::Anthropic, Fingerprint::of_bytes(b"g2")),
    );
    for k in [&k1, &k2] {
        let id = ClaimId::random();
        claims
            .acquire(k, &id, AccountId(1), 0, Duration::from_secs(60))
            .await
            .expect("claim");
        claims
            .save_answer(k, &id, &secret_credentials(5))
            .await
            .expect("save");
    }
    conn.execute(Statement::from_sql_and_values(
        conn.get_database_backend(),
        "UPDATE refresh_claims SET answer = (SELECT answer FROM refresh_claims WHERE fingerprint = ?) WHERE fingerprint = ?",
        [k1.fingerprint.to_hex().into(), k2.fingerprint.to_hex().into()],
    ))
    .await
    .expect("move the answer");
    let error = claims.get(&k2).await.expect_err("a moved answer");
    assert_eq!(error.kind(), StorageErrorKind::InvalidData);
    assert!(claims.get(&k1).await.expect("get").is_some());
}

#[tokio::test]
async fn plaintext_is_an_opt_in_and_sealed_rows_need_the_key() {
    let file = SqliteFile::new("plaintext");
    let plain = file.open(Sealing::plaintext_opt_in()).await;
    let mut account = account_expiring(1, Some(60));
    account.credentials = secret_credentials(1);
    plain
        .repository()
        .insert(account)
        .await
        .expect("insert plaintext");
    // Switching sealing on reads the plaintext rows, and rekey seals them.
    let sealed_backend = file.open(sealed()).await;
    let read = sealed_backend
        .repository()
        .get(AccountId(1))
        .await
        .expect("get")
        .expect("row");
    assert_eq!(read.credentials, secret_credentials(1));
    let mut sealed_account = account_expiring(2, Some(60));
    sealed_account.credentials = secret_credentials(2);
    sealed_backend
        .repository()
        .insert(sealed_account)
        .await
        .expect("insert sealed");
    let report = sealed_backend.rekey().await.expect("rekey");
    assert_eq!(
        report.credentials, 1,
        "the plaintext row was sealed: {report:?}"
    );
    // Without the key, sealed rows are a typed error, never garbage.
    let error = plain
        .repository()
        .get(AccountId(2))
        .await
        .expect_err("no key");
    assert_eq!(error.kind(), StorageErrorKind::InvalidData);
    assert!(error.to_string().contains("no encryption key"), "{error}");
    let error = plain.rekey().await.expect_err("rekey without a key");
    assert_eq!(error.kind(), StorageErrorKind::Other);
}

/// Rotation under load: writers keep rotating every account's credentials
/// while `rekey` re-seals; afterwards the old key is dropped and every
/// account reads back with exactly the credentials of its last applied
/// write.
async fn rekey_under_load_loses_nothing(open: impl AsyncFn(Sealing) -> SeaOrmBackend) {
    let old = test_key().clone();
    let new = SealingKey::generate();
    let before = open(Sealing::keys(&old, &[])).await;
    let mut ids = Vec::new();
    for n in 0..40 {
        let mut account = NewAccount::new(
            format!("r{n}"),
            Platform::Anthropic,
            AccountType::OAuth,
            secret_credentials(n),
        );
        account.proxy = Some("http://u:hunter2@10.0.0.7:3128".parse().expect("proxy"));
        ids.push(
            before
                .repository()
                .create(account)
                .await
                .expect("create")
                .id,
        );
    }
    let rotating = open(Sealing::keys(&new, std::slice::from_ref(&old))).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..3_usize {
        let (repo, ids, stop) = (rotating.repository(), ids.clone(), Arc::clone(&stop));
        writers.push(tokio::spawn(async move {
            let mut last: HashMap<AccountId, (u64, Credentials)> = HashMap::new();
            let mut n = 0_u32;
            while !stop.load(Ordering::Relaxed) || n < 30 {
                n += 1;
                let id = ids[(w * 7 + n as usize) % ids.len()];
                let account = repo.get(id).await.expect("get").expect("row");
                let next = account
                    .credentials
                    .clone()
                    .with("refresh_token", format!("SECRET-REFRESH-w{w}-{n}"));
                if let CasOutcome::Applied(stored) = repo
                    .compare_and_set_credentials(id, CasExpectation::of(&account), &next)
                    .await
                    .expect("cas")
                {
                    last.insert(id, (stored.credentials_version, next));
                }
            }
            last
        }));
    }
    let mut passes = 0;
    loop {
        passes += 1;
        assert!(passes < 50, "rekey never converged");
        let report = rotating.rekey().await.expect("rekey");
        assert!(report.unreadable.is_empty(), "{report:?}");
        if passes > 1 && report.credentials + report.proxies + report.answers == 0 {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    // The newest applied write of each account, whoever made it.
    let mut expected: HashMap<AccountId, (u64, Credentials)> = HashMap::new();
    for writer in writers {
        for (id, (version, credentials)) in writer.await.expect("writer") {
            if expected.get(&id).is_none_or(|(v, _)| *v < version) {
                expected.insert(id, (version, credentials));
            }
        }
    }
    assert!(
        expected.len() > 10,
        "writes landed on most accounts during the rotation"
    );
    // Read with the new key only: every row opens and holds exactly its
    // newest applied write.
    let after = open(Sealing::keys(&new, &[])).await;
    let repo = after.repository();
    for id in &ids {
        let account = repo
            .get(*id)
            .await
            .expect("the old key is no longer needed")
            .expect("row");
        assert_eq!(
            account.proxy.as_ref().expect("proxy").expose(),
            "http://u:hunter2@10.0.0.7:3128/"
        );
        match expected.get(id) {
            Some((version, credentials)) => {
                assert_eq!(
                    account.credentials_version, *version,
                    "account {id}: version"
                );
                assert_eq!(
                    account.credentials, *credentials,
                    "account {id}: the newest write"
                );
            }
            None => assert_eq!(account.credentials_version, 0, "account {id} never written"),
        }
    }
    let report = after.rekey().await.expect("rekey with the new key only");
    assert_eq!(report.credentials + report.proxies, 0, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_rekey_under_load_loses_nothing() {
    let file = SqliteFile::new("rekey");
    rekey_under_load_loses_nothing(async |sealing| file.open(sealing).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn postgres_rekey_under_load_loses_nothing() {
    let db = PgDatabase::create("rekey").await;
    rekey_under_load_loses_nothing(async |sealing| db.open(sealing).await).await;
}

#[tokio::test]
async fn a_login_session_payload_moved_to_another_row_does_not_open() {
    let backend = sqlite_memory().await;
    let sessions = backend.login_session_store();
    for id in ["login-a", "login-b"] {
        let login = PendingLogin {
            id: id.to_owned(),
            platform: Platform::Anthropic,
            payload: format!(r#"{{"code_verifier":"SECRET-VERIFIER-{id}"}}"#).into(),
        };
        sessions
            .put(&login, Duration::from_secs(600))
            .await
            .expect("put");
    }
    let conn = backend.connection();
    conn.execute(Statement::from_string(
        conn.get_database_backend(),
        "UPDATE login_sessions SET payload = (SELECT payload FROM login_sessions WHERE session_id = 'login-a') WHERE session_id = 'login-b'",
    ))
    .await
    .expect("move the ciphertext");
    let error = sessions
        .take("login-b")
        .await
        .expect_err("a moved payload does not open");
    assert_eq!(error.kind(), StorageErrorKind::InvalidData);
    assert!(!error.to_string().contains("SECRET"), "{error}");
    assert_eq!(
        sessions.take("login-b").await.expect("take again"),
        refresh_core::LoginTake::Absent,
        "the unreadable session was removed by its take"
    );
}
