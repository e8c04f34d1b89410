//! Sweep: this project's background cycle at the DEFAULT configuration
//! against the baseline's sequential cycle, and how a cycle's cost grows
//! with the number of accounts.

use std::time::{Duration, Instant};

use anyhow::Result;
use refresh_facade::providers::emulator::{EmulatedProvider, GrantSpec};
use refresh_facade::{
    AccountType, BackgroundConfig, Credentials, CycleReport, NewAccount, Platform, RefreshStack,
};

use crate::baseline::Baseline;
use crate::baseline::sweep::SweepReport;
use crate::baseline::table::{self, GoAccount};
use crate::env::{Db, Env};
use crate::stats::ms;

/// The emulated upstream latency.
pub(crate) const UPSTREAM: Duration = Duration::from_millis(50);
/// Due accounts added at each size of the growth series.
const GROWTH_DUE: usize = 100;

#[derive(Debug, Default, serde::Serialize)]
pub(crate) struct Sweep {
    pub(crate) accounts: usize,
    pub(crate) due: usize,
    pub(crate) upstream_latency_ms: f64,
    pub(crate) default_concurrency: usize,
    pub(crate) project_ms: f64,
    pub(crate) project_refreshed: u64,
    pub(crate) project_upstream_calls: u64,
    pub(crate) baseline_ms: f64,
    pub(crate) baseline_refreshed: u64,
    pub(crate) baseline_upstream_calls: u64,
    /// Refreshes of this project's flow still running after the cycle
    /// (per-key state still held): must be 0.
    pub(crate) project_in_flight_after: usize,
    pub(crate) growth: Vec<Growth>,
    /// The due listing's plan at the largest size (PostgreSQL EXPLAIN).
    pub(crate) explain: Vec<String>,
}

/// One size of the growth series.
#[derive(Debug, Default, serde::Serialize)]
pub(crate) struct Growth {
    pub(crate) accounts: usize,
    pub(crate) due: usize,
    pub(crate) project_rows_listed: u64,
    pub(crate) project_list_queries: u64,
    pub(crate) project_account_queries: u64,
    pub(crate) project_ms: f64,
    pub(crate) baseline_rows_listed: u64,
    pub(crate) baseline_queries: u64,
    pub(crate) baseline_ms: f64,
}

/// This project's cycle beside the baseline's on a throwaway database.
pub(crate) async fn run(env: &Env) -> Result<Sweep> {
    env.set_latency(UPSTREAM);
    let (accounts, due) = if env.quick {
        (2_000, 500)
    } else {
        (20_000, 5_000)
    };
    let mut out = Sweep {
        accounts,
        due,
        upstream_latency_ms: ms(UPSTREAM),
        default_concurrency: BackgroundConfig::default().concurrency,
        ..Sweep::default()
    };

    let db = env.database("sweep").await?;
    let stack = env.stack(&db, true).await?;
    add_accounts(env, &stack, accounts - due, due).await?;
    let baseline = env
        .baseline(&db, &format!("bench-sweep-{}", std::process::id()))
        .await?;
    add_go_accounts(env, &baseline, 0, accounts - due, due).await?;

    let calls = env.emulator.stats().refreshes;
    let started = Instant::now();
    let report: CycleReport = stack.background().run_once().await;
    out.project_ms = ms(started.elapsed());
    out.project_refreshed = report.refreshed;
    out.project_upstream_calls = env.emulator.stats().refreshes - calls;
    out.project_in_flight_after = stack.flow().in_flight();
    crate::say(&format!(
        "sweep: project {} refreshed in {:.0} ms ({report:?})",
        report.refreshed, out.project_ms
    ));

    let calls = env.emulator.stats().refreshes;
    let started = Instant::now();
    let go: SweepReport = baseline.sweep().await?;
    out.baseline_ms = ms(started.elapsed());
    out.baseline_refreshed = go.refreshed;
    out.baseline_upstream_calls = env.emulator.stats().refreshes - calls;
    crate::say(&format!(
        "sweep: baseline {} refreshed in {:.0} ms ({go:?})",
        go.refreshed, out.baseline_ms
    ));
    baseline.store.clear().await;
    drop(stack);
    env.drop_database(db).await;
    env.set_latency(Duration::ZERO);
    Ok(out)
}

/// The growth series into `out`; returns its database (for serve).
pub(crate) async fn growth(env: &Env, out: &mut Sweep) -> Result<Db> {
    env.set_latency(UPSTREAM);
    // Growth: the same database grows; each size adds GROWTH_DUE due
    // accounts on each side.
    let sizes: &[usize] = if env.quick {
        &[1_000, 10_000]
    } else {
        &[1_000, 10_000, 100_000]
    };
    let db = env.database("growth").await?;
    let stack = env.stack(&db, true).await?;
    let baseline = env
        .baseline(&db, &format!("bench-growth-{}", std::process::id()))
        .await?;
    let mut have = 0;
    for &size in sizes {
        add_accounts(env, &stack, size - have - GROWTH_DUE, GROWTH_DUE).await?;
        add_go_accounts(env, &baseline, have, size - have - GROWTH_DUE, GROWTH_DUE).await?;
        have = size;
        let before = stack.store_calls().snapshot();
        let started = Instant::now();
        let report = stack.background().run_once().await;
        let project_ms = ms(started.elapsed());
        let after = stack.store_calls().snapshot();
        let delta = |op: &str| {
            let get = |s: &[(&str, &str, u64)]| {
                s.iter()
                    .filter(|(store, o, _)| *store == "database" && (op.is_empty() || *o == op))
                    .map(|(_, _, n)| n)
                    .sum::<u64>()
            };
            get(&after) - get(&before)
        };
        let started = Instant::now();
        let go = baseline.sweep().await?;
        let baseline_ms = ms(started.elapsed());
        let row = Growth {
            accounts: size,
            due: GROWTH_DUE,
            project_rows_listed: report.total,
            project_list_queries: delta("list_due"),
            project_account_queries: delta(""),
            project_ms,
            baseline_rows_listed: go.total,
            baseline_queries: go.queries,
            baseline_ms,
        };
        crate::say(&format!("sweep growth: {row:?}"));
        out.growth.push(row);
    }
    let before = chrono::Utc::now() + chrono::Duration::minutes(30);
    out.explain = stack
        .database()
        .repository()
        .explain_list_due(before, None, BackgroundConfig::default().page_size)
        .await?;
    baseline.store.clear().await;
    env.set_latency(Duration::ZERO);
    Ok(db)
}

/// Adds `fresh` accounts valid for 8 h and `due` accounts expiring in
/// 10 min (each with a grant at the emulator).
pub(crate) async fn add_accounts(
    env: &Env,
    stack: &RefreshStack,
    fresh: usize,
    due: usize,
) -> Result<()> {
    let now = chrono::Utc::now().timestamp();
    let mut batch = Vec::new();
    for i in 0..fresh + due {
        let (refresh, expires) = if i < due {
            let grant = env.emulator.seed(GrantSpec::new(EmulatedProvider::Claude));
            (grant.refresh_token.expose().to_owned(), now + 600)
        } else {
            (format!("rt-fresh-{}", fastrand::u64(..)), now + 8 * 3600)
        };
        let credentials = Credentials::new()
            .with("access_token", format!("at-{}", fastrand::u64(..)))
            .with("refresh_token", refresh)
            .with("expires_at", expires.to_string());
        batch.push(NewAccount::new(
            format!("bench-{}", fastrand::u64(..)),
            Platform::Anthropic,
            AccountType::OAuth,
            credentials,
        ));
        if batch.len() == 5_000 {
            stack.import(std::mem::take(&mut batch)).await?;
        }
    }
    if !batch.is_empty() {
        stack.import(batch).await?;
    }
    Ok(())
}

/// The same for the baseline's table, ids from `first + 1`.
async fn add_go_accounts(
    env: &Env,
    baseline: &Baseline,
    first: usize,
    fresh: usize,
    due: usize,
) -> Result<()> {
    let now = chrono::Utc::now().timestamp();
    let rows: Vec<GoAccount> = (0..fresh + due)
        .map(|i| {
            let id = (first + i + 1) as i64;
            if i < due {
                let grant = env.emulator.seed(GrantSpec::new(EmulatedProvider::Claude));
                GoAccount::claude(
                    id,
                    &format!("at-go-{id}"),
                    grant.refresh_token.expose(),
                    now + 600,
                )
            } else {
                GoAccount::claude(
                    id,
                    &format!("at-go-{id}"),
                    &format!("rt-go-{id}"),
                    now + 8 * 3600,
                )
            }
        })
        .collect();
    table::insert(&baseline.db, &rows).await
}
