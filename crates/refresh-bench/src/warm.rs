//! Warm token read: this project's in-process read by id against the
//! baseline's Redis `GET` per read, on 1 task and on 16 tasks.

use std::future::Future;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use refresh_facade::{AccountId, AccountType, Credentials, NewAccount, Platform, TokenProvider};

use crate::baseline::table::{self, GoAccount};
use crate::env::Env;
use crate::stats::{Summary, ns, summarize, timer_overhead_ns};

const ACCOUNTS: i64 = 1_000;
const TASKS: u64 = 16;

/// Both sides' numbers.
#[derive(Debug, Default, serde::Serialize)]
pub(crate) struct WarmRead {
    pub(crate) timer_overhead_ns: u64,
    pub(crate) project_1_task: Summary,
    pub(crate) project_16_tasks: Summary,
    pub(crate) baseline_1_task: Summary,
    pub(crate) baseline_16_tasks: Summary,
    /// Storage calls the project's warm reads made (must be 0).
    pub(crate) project_store_calls: u64,
}

pub(crate) async fn run(env: &Env) -> Result<WarmRead> {
    let db = env.database("warm").await?;
    let result = measure(env, &db).await;
    env.drop_database(db).await;
    result
}

async fn measure(env: &Env, db: &crate::env::Db) -> Result<WarmRead> {
    let (reads, go_reads) = if env.quick {
        (200_000, 5_000)
    } else {
        (2_000_000, 20_000)
    };
    let mut out = WarmRead {
        timer_overhead_ns: timer_overhead_ns(),
        ..WarmRead::default()
    };

    // This project: accounts imported and each read once.
    let stack = env.stack(db, true).await?;
    let expires = (chrono::Utc::now() + chrono::Duration::hours(8)).timestamp();
    let accounts = (1..=ACCOUNTS)
        .map(|i| {
            let credentials = Credentials::new()
                .with("access_token", format!("at-warm-{i}"))
                .with("refresh_token", format!("rt-warm-{i}"))
                .with("expires_at", expires.to_string());
            NewAccount::new(
                format!("warm-{i}"),
                Platform::Anthropic,
                AccountType::OAuth,
                credentials,
            )
        })
        .collect();
    let ids: Vec<AccountId> = stack.import(accounts).await?.iter().map(|a| a.id).collect();
    let tokens = stack.tokens().clone();
    for id in &ids {
        tokens.access_token_by_id(*id).await.context("warm up")?;
    }
    let calls_before = stack.store_calls().total("database") + stack.store_calls().total("redis");

    // Off the harness's runtime: a runtime of its own, as a service has.
    let overhead = out.timer_overhead_ns;
    let (one, sixteen) = tokio::task::block_in_place(|| {
        std::thread::scope(|scope| {
            scope
                .spawn(|| project_side(&tokens, &ids, reads, overhead))
                .join()
                .map_err(|_| anyhow::anyhow!("the warm read thread panicked"))?
        })
    })?;
    out.project_1_task = one;
    out.project_16_tasks = sixteen;
    out.project_store_calls =
        stack.store_calls().total("database") + stack.store_calls().total("redis") - calls_before;

    // The baseline: the same accounts in go_accounts, cached by one read.
    let baseline = env
        .baseline(db, &format!("bench-warm-{}", std::process::id()))
        .await?;
    let go: Vec<GoAccount> = (1..=ACCOUNTS)
        .map(|i| GoAccount::claude(i, &format!("at-go-{i}"), &format!("rt-go-{i}"), expires))
        .collect();
    table::insert(&baseline.db, &go).await?;
    for account in &go {
        baseline.access_token(account).await?;
    }
    let go = Arc::new(go);
    let mut samples = Vec::with_capacity(go_reads);
    let started = Instant::now();
    for i in 0..go_reads {
        let t = Instant::now();
        black_box(baseline.access_token(&go[i % go.len()]).await?);
        samples.push(ns(t.elapsed()));
    }
    out.baseline_1_task = summarize(
        samples,
        out.timer_overhead_ns,
        go_reads as u64,
        started.elapsed(),
    );
    let per_task = go_reads / 4;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..TASKS as usize {
        let (baseline, go) = (baseline.clone(), Arc::clone(&go));
        tasks.spawn(async move {
            let mut samples = Vec::with_capacity(per_task);
            for i in 0..per_task {
                let s = Instant::now();
                black_box(baseline.access_token(&go[(t * 61 + i) % go.len()]).await?);
                samples.push(ns(s.elapsed()));
            }
            anyhow::Ok(samples)
        });
    }
    let mut samples = Vec::new();
    while let Some(done) = tasks.join_next().await {
        samples.extend(done??);
    }
    out.baseline_16_tasks = summarize(
        samples,
        out.timer_overhead_ns,
        TASKS * per_task as u64,
        started.elapsed(),
    );
    baseline.store.clear().await;
    Ok(out)
}

/// The project's 1-task and 16-task numbers.
fn project_side(
    tokens: &TokenProvider,
    ids: &[AccountId],
    reads: usize,
    overhead: u64,
) -> Result<(Summary, Summary)> {
    // 1 task, timed read by read, polled without a runtime.
    let mut samples = Vec::with_capacity(reads);
    let started = Instant::now();
    for i in 0..reads {
        let id = ids[i % ids.len()];
        let t = Instant::now();
        black_box(read_now(tokens, id)?);
        samples.push(ns(t.elapsed()));
    }
    let timed_wall = started.elapsed();
    // Throughput without the timer, on one task of a 2-worker runtime
    // (the same runtime as the 16 tasks).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()?;
    let mut one = summarize(samples, overhead, reads as u64, timed_wall);
    one.ops_per_s = throughput(&rt, tokens, ids, 1, reads as u64);
    let per_task = reads as u64 / 4;
    let rate = throughput(&rt, tokens, ids, TASKS, per_task);
    let mut sixteen = summarize(
        timed_tasks(&rt, tokens, ids, per_task / 4),
        overhead,
        TASKS * per_task,
        Duration::from_secs(1),
    );
    sixteen.ops_per_s = rate;
    Ok((one, sixteen))
}

/// One warm read, polled once: the warm path never suspends.
fn read_now(tokens: &TokenProvider, id: AccountId) -> Result<refresh_facade::AccessToken> {
    let mut future = std::pin::pin!(tokens.access_token_by_id(id));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(token) => Ok(token?),
        std::task::Poll::Pending => bail!("a warm read suspended"),
    }
}

/// Reads per second of `tasks` tasks each reading `per_task` times.
fn throughput(
    rt: &tokio::runtime::Runtime,
    tokens: &TokenProvider,
    ids: &[AccountId],
    tasks: u64,
    per_task: u64,
) -> f64 {
    let ids: Arc<[AccountId]> = ids.into();
    let started = Instant::now();
    rt.block_on(async {
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let (tokens, ids) = (tokens.clone(), Arc::clone(&ids));
                tokio::spawn(async move {
                    for i in 0..per_task {
                        let id = ids[((t * 61 + i) % ids.len() as u64) as usize];
                        black_box(tokens.access_token_by_id(id).await.ok());
                    }
                })
            })
            .collect();
        for h in handles {
            let _ = h.await;
        }
    });
    (tasks * per_task) as f64 / started.elapsed().as_secs_f64()
}

/// Per-read latencies of 16 concurrent tasks.
fn timed_tasks(
    rt: &tokio::runtime::Runtime,
    tokens: &TokenProvider,
    ids: &[AccountId],
    per_task: u64,
) -> Vec<u64> {
    let ids: Arc<[AccountId]> = ids.into();
    rt.block_on(async {
        let handles: Vec<_> = (0..TASKS)
            .map(|t| {
                let (tokens, ids) = (tokens.clone(), Arc::clone(&ids));
                tokio::spawn(async move {
                    let mut samples = Vec::with_capacity(per_task as usize);
                    for i in 0..per_task {
                        let id = ids[((t * 61 + i) % ids.len() as u64) as usize];
                        let s = Instant::now();
                        black_box(tokens.access_token_by_id(id).await.ok());
                        samples.push(ns(s.elapsed()));
                    }
                    samples
                })
            })
            .collect();
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.await.unwrap_or_default());
        }
        all
    })
}
