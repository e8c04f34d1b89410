//! Invariant 9 with every log level on: a `tracing-subscriber` `fmt`
//! subscriber at TRACE with span events (what `RUST_LOG=trace` gives an
//! operator) sees connects with passwords in the URL (user info, a known
//! and an unknown query parameter) and every kind of write in plaintext
//! mode (inserts, the catalog, fenced writes, metadata with a proxy
//! password, claim answers, a rekey to sealed); no secret is printed.

mod common;

use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use common::{PgDatabase, SqliteFile, sealed};
use refresh_core::testing::conformance::account_expiring;
use refresh_core::{
    AccountCatalog, AccountFilter, AccountId, AccountRepository, AccountType, CasExpectation,
    ClaimId, ClaimKey, ClaimStore, Credentials, Fingerprint, MetadataUpdate, NewAccount, Platform,
    ProxyUrl,
};
use refresh_seaorm::{DatabaseConfig, SeaOrmBackend, Sealing};

static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Sink;

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn install() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
            .with_ansi(false)
            .with_writer(|| Sink)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
    });
}

/// The log lines holding any of `secrets`.
fn leaks(secrets: &[&str]) -> Vec<String> {
    let log = LOG.lock().unwrap_or_else(|e| e.into_inner());
    String::from_utf8_lossy(&log)
        .lines()
        .filter(|line| secrets.iter().any(|s| line.contains(s)))
        .map(|line| line.chars().take(300).collect())
        .collect()
}

/// Every kind of write and read on `backend` (plaintext mode) with
/// secrets tagged `tag`.
async fn exercise(backend: &SeaOrmBackend, tag: &str) {
    let repo = backend.repository();
    let mut account = account_expiring(1, Some(60));
    account
        .credentials
        .insert("refresh_token", format!("RT{tag}INSERT"));
    account.proxy =
        Some(ProxyUrl::parse(&format!("http://u:PROXY{tag}@127.0.0.1:3128")).expect("proxy url"));
    let account = repo.insert(account).await.expect("insert");
    let next = account
        .credentials
        .clone()
        .with("refresh_token", format!("RT{tag}CAS"));
    repo.compare_and_set_credentials(account.id, CasExpectation::of(&account), &next)
        .await
        .expect("cas");
    repo.replace_credentials(
        account.id,
        &Credentials::new().with("refresh_token", format!("RT{tag}REPLACE")),
    )
    .await
    .expect("replace");
    repo.update_metadata(
        account.id,
        &MetadataUpdate {
            proxy: Some(Some(
                ProxyUrl::parse(&format!("http://u:PROXY{tag}META@127.0.0.1:3128"))
                    .expect("proxy url"),
            )),
            ..MetadataUpdate::default()
        },
    )
    .await
    .expect("metadata");
    let new = |n: usize| {
        NewAccount::new(
            format!("acct-{n}"),
            Platform::Anthropic,
            AccountType::OAuth,
            Credentials::new().with("refresh_token", format!("RT{tag}IMPORT{n}")),
        )
    };
    repo.create(new(0)).await.expect("create");
    repo.import(vec![new(1), new(2)]).await.expect("import");
    repo.get(AccountId(1)).await.expect("get");
    repo.list(&AccountFilter::default(), None, 10)
        .await
        .expect("list");
    let claims = backend.claim_store();
    let key = ClaimKey::new(Platform::Anthropic, Fingerprint::of_bytes(tag.as_bytes()));
    let id = ClaimId::random();
    claims
        .acquire(&key, &id, AccountId(1), 0, Duration::from_secs(60))
        .await
        .expect("acquire");
    let answer = Credentials::new().with("refresh_token", format!("RT{tag}ANSWER"));
    claims
        .save_answer(&key, &id, &answer)
        .await
        .expect("answer");
    claims.get(&key).await.expect("claim");
}

/// The secrets [`exercise`] wrote with `tag`.
fn secrets(tag: &str) -> Vec<String> {
    ["INSERT", "CAS", "REPLACE", "IMPORT", "ANSWER"]
        .iter()
        .map(|s| format!("RT{tag}{s}"))
        .chain([format!("PROXY{tag}")])
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_plaintext_writes_and_a_rekey_print_no_secret_at_trace() {
    install();
    // A connect that fails, with passwords in three places of the URL.
    let url = "postgres://app:PWUSERINFO@127.0.0.1:9/x?password=PWQUERY&sslpassword=PWUNKNOWN";
    let _ = SeaOrmBackend::connect(
        &DatabaseConfig {
            connect_timeout: Duration::from_millis(200),
            acquire_timeout: Duration::from_millis(200),
            ..DatabaseConfig::new(url)
        },
        sealed(),
    )
    .await;
    let file = SqliteFile::new("no_secret_in_logs");
    let plain = file.open(Sealing::plaintext_opt_in()).await;
    exercise(&plain, "SQLITE").await;
    file.open(sealed()).await.rekey().await.expect("rekey");
    let mut all = secrets("SQLITE");
    all.extend(["PWUSERINFO", "PWQUERY", "PWUNKNOWN"].map(String::from));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let found = leaks(&all);
    assert!(
        found.is_empty(),
        "secrets in the log:\n{}",
        found.join("\n")
    );
    // The subscriber did see this crate's work (the check is not vacuous).
    assert!(!LOG.lock().expect("log").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn postgres_plaintext_writes_and_a_rekey_print_no_secret_at_trace() {
    install();
    let db = PgDatabase::create("no_secret_in_logs").await;
    // The test server trusts its clients: the passwords are sent nowhere,
    // but the URL and the options carry them.
    let mut url = url::Url::parse(&db.url).expect("url");
    url.set_password(Some("PGPWUSERINFO")).expect("password");
    url.set_query(Some("password=PGPWQUERY&sslpassword=PGPWUNKNOWN"));
    let config = DatabaseConfig::new(url.to_string());
    let plain = SeaOrmBackend::connect(&config, Sealing::plaintext_opt_in())
        .await
        .expect("connect");
    plain.migrate().await.expect("migrate");
    exercise(&plain, "POSTGRES").await;
    let sealed_backend = SeaOrmBackend::connect(&config, sealed())
        .await
        .expect("connect");
    sealed_backend.rekey().await.expect("rekey");
    let mut all = secrets("POSTGRES");
    all.extend(["PGPWUSERINFO", "PGPWQUERY", "PGPWUNKNOWN"].map(String::from));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let found = leaks(&all);
    assert!(
        found.is_empty(),
        "secrets in the log:\n{}",
        found.join("\n")
    );
}
