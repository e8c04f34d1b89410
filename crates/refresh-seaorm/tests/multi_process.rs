//! Three OS processes sharing one SQLite file (WAL, busy timeout,
//! synchronous=FULL). The test binary re-spawns itself: the parent runs
//! [`child_process_entry`] with `REFRESH_SEAORM_CHILD` set to the child's
//! role.
//!
//! - Leases: 3 processes contend for leases on 10 keys; every holding is
//!   recorded with its fence and its interval on the machine's clock
//!   (acquire returned → release called, inside the database's holding):
//!   per key the intervals never overlap, fences grow with time, and no
//!   `database is locked` (or any) error surfaces.
//! - Flows: 3 processes × 32 callers refresh expiring accounts through
//!   `LockStrategy::single(DbLeaseLock)` against one rotating upstream the
//!   parent serves on loopback (one line per request): zero reuse,
//!   refreshes = expiries. Then the fenced write fails after every answer,
//!   the processes exit, new ones start: every rotation is found in
//!   `refresh_claims` and applied without a new upstream call.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use common::{KEY_ENV, SqliteFile, sealed, test_key};
use refresh_core::error::OAuthErrorCode;
use refresh_core::testing::{FakeUpstream, Faulty};
use refresh_core::{
    Account, AccountId, AccountRepository, ClaimKey, ClaimState, ClaimStore, Clock, Credentials,
    ExpiryRule, Fingerprint, FlowConfig, FlowError, GrantFields, LockStrategy, Platform,
    ProviderError, RefreshContext, RefreshExecutor, RefreshFlow, RefreshKey, RefreshLock,
    RefreshOutcome, StorageErrorKind, SystemClock, TokenGrant,
};
use refresh_seaorm::{DatabaseConfig, SeaOrmBackend};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const ROLE: &str = "REFRESH_SEAORM_CHILD";
const DB: &str = "REFRESH_SEAORM_CHILD_DB";
const OUT: &str = "REFRESH_SEAORM_CHILD_OUT";
const UPSTREAM: &str = "REFRESH_SEAORM_CHILD_UPSTREAM";
const FIRST_ACCOUNT: &str = "REFRESH_SEAORM_CHILD_FIRST_ACCOUNT";
const PROCESSES: usize = 3;
const KEYS: usize = 10;
const ACCOUNTS: i64 = 6;
const CALLERS: usize = 32;
const LIFETIME: Duration = Duration::from_secs(3600);
const WINDOW: Duration = Duration::from_secs(180);

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos()
}

/// Spawns the children of `role` and waits for them; each must pass.
async fn run_children(
    role: &str,
    db: &Path,
    out_dir: &Path,
    extra: &[(&str, String)],
) -> Vec<String> {
    let exe = std::env::current_exe().expect("the test binary");
    let mut children = Vec::new();
    for n in 0..PROCESSES {
        let out = out_dir.join(format!("{role}-{n}.txt"));
        let mut command = tokio::process::Command::new(&exe);
        command
            .args([
                "--exact",
                "child_process_entry",
                "--include-ignored",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(ROLE, role)
            .env(DB, db)
            .env(OUT, &out)
            .env(KEY_ENV, test_key().expose_base64().as_str())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in extra {
            command.env(k, v);
        }
        children.push((out, command.spawn().expect("spawn a child")));
    }
    let mut lines = Vec::new();
    for (n, (out, child)) in children.into_iter().enumerate() {
        let output = child.wait_with_output().await.expect("child output");
        assert!(
            output.status.success(),
            "{role} child {n} failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let text = std::fs::read_to_string(&out).expect("child results");
        lines.extend(text.lines().map(str::to_owned));
        let _ = std::fs::remove_file(out);
    }
    lines
}

fn out_dir() -> PathBuf {
    let dir = std::env::temp_dir().join("refresh-seaorm-tests");
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

// ---------------------------------------------------------------------
// Leases
// ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_share_leases_on_10_keys_one_holder_at_a_time() {
    let file = SqliteFile::new("mp_leases");
    drop(file.open(sealed()).await);
    let lines = run_children("lease", &file.path, &out_dir(), &[]).await;
    let mut holdings: Vec<(usize, u64, u128, u128)> = Vec::new();
    let mut refused = 0;
    for line in &lines {
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            ["held", key, fence, start, end] => holdings.push((
                key.parse().expect("key"),
                fence.parse().expect("fence"),
                start.parse().expect("start"),
                end.parse().expect("end"),
            )),
            ["refused", n] => refused += n.parse::<usize>().expect("count"),
            other => panic!("unexpected line {other:?}"),
        }
    }
    assert!(holdings.len() >= 100, "{} holdings", holdings.len());
    assert!(
        refused > 0,
        "the processes never found a lease held: nothing was contended"
    );
    for key in 0..KEYS {
        let mut of_key: Vec<_> = holdings.iter().filter(|h| h.0 == key).collect();
        of_key.sort_by_key(|h| h.2);
        for pair in of_key.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            assert!(
                a.3 <= b.2,
                "key {key}: holdings overlap (fence {} until {} ns, fence {} from {} ns)",
                a.1,
                a.3,
                b.1,
                b.2
            );
            assert!(b.1 > a.1, "key {key}: fence {} after {}", b.1, a.1);
        }
    }
}

async fn lease_child(backend: SeaOrmBackend, out: &Path) {
    let lock = backend.lease_lock();
    let mut lines = Vec::new();
    let mut refused = 0;
    for i in 0..120 {
        let key = RefreshKey::from_raw(format!(
            "claude:account:{}",
            (i * 7 + fastrand::usize(..KEYS)) % KEYS
        ));
        let k = key.as_str().rsplit(':').next().expect("id").to_owned();
        match lock.try_acquire(&key, Duration::from_secs(30)).await {
            Ok(Some(lease)) => {
                let start = now_ns();
                // Work while holding: a database write (extend) and a pause.
                assert!(
                    lock.extend(&lease, Duration::from_secs(30))
                        .await
                        .expect("extend")
                );
                tokio::time::sleep(Duration::from_millis(2)).await;
                let end = now_ns();
                assert!(
                    lock.release(&lease).await.expect("release"),
                    "released by its owner"
                );
                lines.push(format!("held {k} {} {start} {end}", lease.fence));
            }
            Ok(None) => refused += 1,
            Err(error) => panic!("lease error in a child: {error}"),
        }
    }
    lines.push(format!("refused {refused}"));
    std::fs::write(out, lines.join("\n")).expect("write results");
}

// ---------------------------------------------------------------------
// Flows against an upstream on loopback
// ---------------------------------------------------------------------

/// Serves `upstream` on 127.0.0.1: a request is `<account id> <refresh
/// token>\n`, the answer `ok <generation> <new refresh token>\n` or `reused\n`.
async fn serve(upstream: Arc<FakeUpstream>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let upstream = Arc::clone(&upstream);
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut line = String::new();
                if BufReader::new(read).read_line(&mut line).await.is_err() {
                    return;
                }
                let mut parts = line.split_whitespace();
                let (Some(id), Some(token)) = (parts.next(), parts.next()) else {
                    return;
                };
                let id = AccountId(id.parse().unwrap_or_default());
                let answer = match upstream.redeem(id, token).await {
                    Ok((generation, next)) => format!("ok {generation} {next}\n"),
                    Err(_) => "reused\n".to_owned(),
                };
                let _ = write.write_all(answer.as_bytes()).await;
            });
        }
    });
    addr
}

/// The child's executor: one loopback request per refresh.
struct LoopbackExecutor {
    addr: String,
}

#[async_trait]
impl RefreshExecutor for LoopbackExecutor {
    fn platform(&self) -> Platform {
        Platform::Anthropic
    }

    async fn refresh(
        &self,
        account: &Account,
        ctx: &RefreshContext,
    ) -> Result<Credentials, ProviderError> {
        let mut stream = TcpStream::connect(&self.addr)
            .await
            .map_err(|_| ProviderError::transport(false, "connect"))?;
        let request = format!("{} {}\n", account.id, ctx.refresh_token.expose());
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|_| ProviderError::transport(true, "write"))?;
        let mut line = String::new();
        BufReader::new(stream)
            .read_line(&mut line)
            .await
            .map_err(|_| ProviderError::transport(true, "read"))?;
        let parts: Vec<&str> = line.split_whitespace().collect();
        let ["ok", generation, next] = parts.as_slice() else {
            return Err(ProviderError::InvalidGrant {
                code: OAuthErrorCode::new("refresh_token_reused"),
                description: None,
            });
        };
        let grant = TokenGrant {
            access_token: Some(format!("at-{}-{generation}", account.id).into()),
            refresh_token: Some((*next).into()),
            token_type: Some("Bearer".into()),
            expires_in: Some(i64::try_from(LIFETIME.as_secs()).expect("small")),
            scope: None,
        };
        let issued = grant.to_credentials(ctx.now(), ExpiryRule::EXACT, GrantFields::default());
        Ok(issued.merged_over(&account.credentials))
    }
}

async fn seed(backend: &SeaOrmBackend, first: i64) {
    let expiry = SystemClock.now().timestamp() + 60;
    for id in first..first + ACCOUNTS {
        let credentials = Credentials::new()
            .with("access_token", format!("at-{id}-0"))
            .with("refresh_token", format!("rt-{id}-0"))
            .with("expires_at", expiry.to_string());
        backend
            .repository()
            .insert(Account::oauth(id, Platform::Anthropic, credentials))
            .await
            .expect("seed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_refresh_zero_reuse_and_recover_rotations_after_a_restart() {
    let file = SqliteFile::new("mp_flow");
    let backend = file.open(sealed()).await;
    let upstream = FakeUpstream::new();
    upstream.set_latency(Duration::from_millis(20));
    let addr = serve(Arc::clone(&upstream)).await;
    let accounts = u64::try_from(ACCOUNTS).expect("small");

    // Healthy processes.
    seed(&backend, 1).await;
    let env = |first: i64| vec![(UPSTREAM, addr.clone()), (FIRST_ACCOUNT, first.to_string())];
    let lines = run_children("flow", &file.path, &out_dir(), &env(1)).await;
    assert!(
        lines.iter().any(|l| l == "HeldElsewhere"),
        "the processes contended: {lines:?}"
    );
    assert_eq!(upstream.reuses(), 0, "zero reuse");
    assert_eq!(upstream.successes(), accounts, "one refresh per expiry");
    assert_eq!(upstream.calls(), accounts, "one request per expiry");

    // Processes whose fenced write fails after every answer.
    seed(&backend, 101).await;
    let lines = run_children("flow-faulty", &file.path, &out_dir(), &env(101)).await;
    assert!(lines.iter().any(|l| l == "NotPersisted"), "{lines:?}");
    assert_eq!(
        upstream.successes(),
        2 * accounts,
        "one rotation per account"
    );
    let claims = backend.claim_store();
    let repo = backend.repository();
    for id in (101..101 + ACCOUNTS).map(AccountId) {
        let stored = repo.get(id).await.expect("get").expect("row");
        let key = ClaimKey::new(
            Platform::Anthropic,
            Fingerprint::of(&stored.credentials.refresh_token().expect("rt")),
        );
        let claim = claims
            .get(&key)
            .await
            .expect("get")
            .expect("the recovery record");
        assert_eq!(claim.state, ClaimState::Answered, "account {id}");
        assert_eq!(
            claim
                .answer
                .and_then(|a| a.refresh_token())
                .map(|t| t.expose().to_owned()),
            upstream.current_refresh_token(id),
            "account {id}"
        );
    }

    // Restarted processes apply the records, no new upstream call.
    let calls = upstream.calls();
    run_children("flow", &file.path, &out_dir(), &env(101)).await;
    assert_eq!(
        upstream.calls(),
        calls,
        "recovered without calling the upstream"
    );
    for id in (101..101 + ACCOUNTS).map(AccountId) {
        let stored = repo.get(id).await.expect("get").expect("row");
        assert_eq!(
            stored
                .credentials
                .refresh_token()
                .map(|t| t.expose().to_owned()),
            upstream.current_refresh_token(id),
            "account {id}: nothing lost"
        );
    }
    assert_eq!(upstream.reuses(), 0, "zero reuse over the whole run");
}

async fn flow_child(backend: SeaOrmBackend, out: &Path, faulty: bool) {
    let addr = std::env::var(UPSTREAM).expect("upstream address");
    let first: i64 = std::env::var(FIRST_ACCOUNT)
        .expect("first account")
        .parse()
        .expect("id");
    let repo: Arc<dyn AccountRepository> = if faulty {
        let repo = Faulty::new(Arc::new(backend.repository()) as Arc<dyn AccountRepository>);
        repo.faults
            .fail_always("compare_and_set_credentials", StorageErrorKind::Unavailable);
        Arc::new(repo)
    } else {
        Arc::new(backend.repository())
    };
    let flow = RefreshFlow::builder(
        Arc::clone(&repo),
        LockStrategy::single(Arc::new(backend.lease_lock()) as Arc<dyn RefreshLock>),
        Arc::new(backend.claim_store()),
    )
    .clock(Arc::new(SystemClock) as Arc<dyn Clock>)
    .config(FlowConfig {
        persist_attempts: 2,
        persist_backoff: Duration::from_millis(10),
        ..FlowConfig::default()
    })
    .build()
    .expect("flow");
    let executor: Arc<dyn RefreshExecutor> = Arc::new(LoopbackExecutor { addr });
    let mut tasks = Vec::new();
    for caller in 0..CALLERS {
        let id = AccountId(first + i64::try_from(caller).expect("small") % ACCOUNTS);
        let (flow, executor, repo) = (flow.clone(), Arc::clone(&executor), Arc::clone(&repo));
        tasks.push(tokio::spawn(async move {
            let account = repo.get(id).await.expect("get").expect("row");
            flow.refresh_if_needed(&account, &executor, WINDOW).await
        }));
    }
    let mut lines = Vec::new();
    for task in tasks {
        lines.push(match task.await.expect("caller") {
            Ok(RefreshOutcome::Refreshed { .. }) => "Refreshed".to_owned(),
            Ok(RefreshOutcome::StillFresh { .. }) => "StillFresh".to_owned(),
            Ok(RefreshOutcome::HeldElsewhere) => "HeldElsewhere".to_owned(),
            Err(FlowError::NotPersisted {
                answer_saved: true, ..
            }) if faulty => "NotPersisted".to_owned(),
            Err(error) => panic!("a flow error in a child: {error}"),
        });
    }
    std::fs::write(out, lines.join("\n")).expect("write results");
}

/// The children's entry point: does nothing unless a parent test set its
/// role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of the multi-process tests; does nothing on its own"]
async fn child_process_entry() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let db = PathBuf::from(std::env::var(DB).expect("db path"));
    let out = PathBuf::from(std::env::var(OUT).expect("out path"));
    let config = DatabaseConfig::new(format!("sqlite://{}?mode=rwc", db.display()));
    let backend = SeaOrmBackend::connect(&config, sealed())
        .await
        .expect("open the shared file");
    match role.as_str() {
        "lease" => lease_child(backend, &out).await,
        "flow" => flow_child(backend, &out, false).await,
        "flow-faulty" => flow_child(backend, &out, true).await,
        other => panic!("unknown role {other}"),
    }
}
