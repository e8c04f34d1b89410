//! Stampede: 4 processes × 256 callers on one expiring account, on each
//! side. The processes are this binary's `stampede-worker`; they connect,
//! report `ready`, and start their callers together on `go`.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use refresh_facade::core::Fingerprint;
use refresh_facade::providers::emulator::{EmulatedProvider, GrantSpec};
use refresh_facade::{AccountId, AccountType, Credentials, NewAccount, Platform, Secret};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::baseline::table::{self, GoAccount};
use crate::env::Env;
use crate::stats::quantile;

pub(crate) const PROCESSES: usize = 4;
pub(crate) const CALLERS: usize = 256;
/// The emulated upstream latency.
pub(crate) const UPSTREAM: Duration = Duration::from_millis(50);

/// One side's outcome.
#[derive(Debug, Default, serde::Serialize)]
pub(crate) struct Side {
    pub(crate) callers: u64,
    pub(crate) failed: u64,
    pub(crate) upstream_refreshes: u64,
    pub(crate) reuse_attempts: u64,
    /// Callers served the token stored at the end (the new one).
    pub(crate) served_new: u64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
    /// Each process's median and slowest caller (ms), in start order.
    pub(crate) per_process_p50_max_ms: Vec<(f64, f64)>,
}

#[derive(Debug, Default, serde::Serialize)]
pub(crate) struct Stampede {
    pub(crate) upstream_latency_ms: f64,
    pub(crate) project: Side,
    pub(crate) baseline: Side,
}

/// What a worker prints.
#[derive(serde::Serialize, serde::Deserialize)]
struct WorkerReport {
    latencies_us: Vec<u64>,
    failed: u64,
    /// Fingerprints (hex) of the tokens served, one per served caller.
    served: Vec<String>,
}

pub(crate) async fn run(env: &Env) -> Result<Stampede> {
    env.set_latency(UPSTREAM);
    let db = env.database("stampede").await?;
    let result = both(env, &db).await;
    env.drop_database(db).await;
    env.set_latency(Duration::ZERO);
    result
}

async fn both(env: &Env, db: &crate::env::Db) -> Result<Stampede> {
    let expires = chrono::Utc::now().timestamp() + 60; // within the 3 min skew
    let stack = env.stack(db, true).await?;

    // This project.
    let grant = env.emulator.seed(GrantSpec::new(EmulatedProvider::Claude));
    let credentials = Credentials::new()
        .with("access_token", "at-stampede-old")
        .with("refresh_token", grant.refresh_token.expose())
        .with("expires_at", expires.to_string());
    let account = stack
        .import(vec![NewAccount::new(
            "stampede",
            Platform::Anthropic,
            AccountType::OAuth,
            credentials,
        )])
        .await?
        .remove(0);
    let reuse_before = env.emulator.stats().reuse_attempts;
    let reports = workers(env, db, "project", account.id.0).await?;
    let stored = stack
        .repository()
        .get(account.id)
        .await?
        .and_then(|a| a.credentials.access_token())
        .context("the stampede account")?;
    let mut project = side(&reports, &stored);
    project.upstream_refreshes = env
        .emulator
        .grant(grant.grant_id)
        .map_or(0, |g| g.refreshes);
    project.reuse_attempts = env.emulator.stats().reuse_attempts - reuse_before;

    // The baseline, same shape.
    let grant = env.emulator.seed(GrantSpec::new(EmulatedProvider::Claude));
    let namespace = format!("bench-stampede-{}", std::process::id());
    let baseline = env.baseline(db, &namespace).await?;
    table::insert(
        &baseline.db,
        &[GoAccount::claude(
            1,
            "at-go-stampede-old",
            grant.refresh_token.expose(),
            expires,
        )],
    )
    .await?;
    let reuse_before = env.emulator.stats().reuse_attempts;
    let reports = workers(env, db, &namespace, 1).await?;
    let stored = table::get(&baseline.db, 1)
        .await?
        .context("the baseline stampede account")?;
    let mut go = side(&reports, &Secret::from(stored.string("access_token")));
    go.upstream_refreshes = env
        .emulator
        .grant(grant.grant_id)
        .map_or(0, |g| g.refreshes);
    go.reuse_attempts = env.emulator.stats().reuse_attempts - reuse_before;
    baseline.store.clear().await;

    Ok(Stampede {
        upstream_latency_ms: UPSTREAM.as_secs_f64() * 1000.0,
        project,
        baseline: go,
    })
}

fn side(reports: &[WorkerReport], stored: &Secret) -> Side {
    let new = hex(&Fingerprint::of(stored));
    let mut latencies: Vec<u64> = reports
        .iter()
        .flat_map(|r| r.latencies_us.clone())
        .collect();
    latencies.sort_unstable();
    let ms = |p| quantile(&latencies, p) / 1000.0;
    Side {
        callers: latencies.len() as u64,
        failed: reports.iter().map(|r| r.failed).sum(),
        served_new: reports
            .iter()
            .flat_map(|r| &r.served)
            .filter(|f| **f == new)
            .count() as u64,
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        max_ms: ms(1.0),
        per_process_p50_max_ms: reports
            .iter()
            .map(|r| {
                let mut l = r.latencies_us.clone();
                l.sort_unstable();
                (quantile(&l, 0.5) / 1000.0, quantile(&l, 1.0) / 1000.0)
            })
            .collect(),
        ..Side::default()
    }
}

fn hex(fingerprint: &Fingerprint) -> String {
    fingerprint.to_hex()
}

/// Starts the workers, waits for all to be ready, says `go`, collects.
/// `side` is `project` or the baseline's Redis namespace.
async fn workers(
    env: &Env,
    db: &crate::env::Db,
    side: &str,
    account: i64,
) -> Result<Vec<WorkerReport>> {
    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    for _ in 0..PROCESSES {
        let mut child = tokio::process::Command::new(&exe)
            .args([
                "stampede-worker",
                "--side",
                side,
                "--account",
                &account.to_string(),
            ])
            .args(["--db", &db.url, "--redis", &env.redis_url])
            .args([
                "--emulator",
                &env.emulator.url(),
                "--callers",
                &CALLERS.to_string(),
            ])
            .env("REFRESH_BENCH_KEY", &env.key_hex)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("spawn a stampede worker")?;
        let stdout = BufReader::new(child.stdout.take().context("stdout")?).lines();
        children.push((child, stdout));
    }
    for (_, lines) in &mut children {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .context("a worker did not get ready in 60 s")??;
        if line.as_deref() != Some("ready") {
            bail!("a worker failed to start: {line:?}");
        }
    }
    for (child, _) in &mut children {
        child
            .stdin
            .as_mut()
            .context("stdin")?
            .write_all(b"go\n")
            .await?;
    }
    let mut reports = Vec::new();
    for (mut child, mut lines) in children {
        let line = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
            .await
            .context("a worker did not finish in 120 s")??
            .context("a worker exited without a report")?;
        reports.push(serde_json::from_str(&line)?);
        child.wait().await?;
    }
    Ok(reports)
}

/// `stampede-worker`: one process of the stampede.
pub(crate) async fn worker(
    side: &str,
    account: i64,
    db: &str,
    redis: &str,
    emulator: &str,
    callers: usize,
) -> Result<()> {
    let key = std::env::var("REFRESH_BENCH_KEY").context("REFRESH_BENCH_KEY")?;
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let mut tasks = tokio::task::JoinSet::new();
    if side == "project" {
        let stack = crate::env::stack(db, redis, emulator, &key, false).await?;
        stack.ready(Duration::from_secs(10)).await?;
        // A running service's pool is open: open every connection now, so
        // the callers do not pay for PostgreSQL forking backends.
        let reads = (0..WARM_CONNECTIONS).map(|_| stack.catalog().count_by_status(None));
        for read in futures_util::future::join_all(reads).await {
            read?;
        }
        emit("ready");
        stdin.next_line().await?;
        for _ in 0..callers {
            let tokens = stack.tokens().clone();
            tasks.spawn(async move {
                let started = Instant::now();
                let token = tokens.access_token_by_id(AccountId(account)).await;
                (started.elapsed(), token.ok().map(|t| t.token))
            });
        }
        report(&mut tasks).await
    } else {
        let baseline = crate::env::baseline(db, redis, emulator, side).await?;
        // The caller's snapshot, as Go's scheduler holds it.
        let snapshot = table::get(&baseline.db, account)
            .await?
            .context("the account")?;
        baseline.store.ping().await?;
        let reads = (0..WARM_CONNECTIONS).map(|_| table::get(&baseline.db, account));
        for read in futures_util::future::join_all(reads).await {
            read?;
        }
        emit("ready");
        stdin.next_line().await?;
        for _ in 0..callers {
            let (baseline, snapshot) = (baseline.clone(), snapshot.clone());
            tasks.spawn(async move {
                let started = Instant::now();
                let token = baseline.access_token(&snapshot).await;
                (started.elapsed(), token.ok().map(Secret::from))
            });
        }
        report(&mut tasks).await
    }
}

async fn report(tasks: &mut tokio::task::JoinSet<(Duration, Option<Secret>)>) -> Result<()> {
    let mut out = WorkerReport {
        latencies_us: Vec::new(),
        failed: 0,
        served: Vec::new(),
    };
    while let Some(done) = tasks.join_next().await {
        let (took, token) = done?;
        out.latencies_us
            .push(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
        match token {
            Some(token) => out.served.push(hex(&Fingerprint::of(&token))),
            None => out.failed += 1,
        }
    }
    emit(&serde_json::to_string(&out)?);
    Ok(())
}

/// Concurrent reads that open every pooled connection before `ready`.
const WARM_CONNECTIONS: usize = 16;

/// One line on stdout (the worker's protocol with the harness).
fn emit(line: &str) {
    #[allow(clippy::print_stdout)]
    {
        println!("{line}");
    }
}
