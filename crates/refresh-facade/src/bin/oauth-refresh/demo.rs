//! `demo`: the stampede collapsing to one refresh per expiry, with no
//! server: the OAuth emulator in process, a SQLite file in a temporary
//! directory shared by several stack instances (each with its own pool,
//! flow and caches, as separate processes would have), and concurrent
//! callers on accounts whose tokens are about to expire.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use refresh_facade::providers::emulator::{
    EmulatedProvider, Emulator, EmulatorConfig, GrantSpec, Latency,
};
use refresh_facade::{
    AccountId, AccountType, Credentials, DatabaseConfig, NewAccount, Platform, ProvidersConfig,
    RefreshStack, SealingKey,
};
use serde_json::json;
use tokio::task::JoinSet;

use crate::cli::DemoArgs;
use crate::error::CliError;
use crate::output;

/// Tokens the emulator issues live this long...
const LIFETIME_SECS: i64 = 8;
/// ...and callers refresh them this long before they expire.
const SKEW: Duration = Duration::from_secs(4);
/// Connections of each instance's pool.
const DEMO_POOL: u32 = 4;

struct Call {
    account: usize,
    latency: Duration,
    token: Result<String, String>,
}

/// Runs the demo and prints its report.
pub(crate) async fn run(args: &DemoArgs) -> Result<(), CliError> {
    for (name, value, max) in [
        ("--accounts", args.accounts, 1_000),
        ("--callers", args.callers, 10_000),
        ("--instances", args.instances, 16),
        ("--rounds", args.rounds, 20),
    ] {
        if value == 0 || value > max {
            return Err(CliError::config(format!(
                "{name} must be between 1 and {max}"
            )));
        }
    }
    let emulator = Emulator::start_with(EmulatorConfig {
        latency: Latency {
            fixed_ms: args.latency_ms,
            jitter_ms: args.latency_ms / 5,
        },
        ..EmulatorConfig::default()
    })
    .await
    .map_err(|e| CliError::with("cannot start the OAuth emulator", e))?;
    emulator.set_access_token_lifetime(Some(LIFETIME_SECS));
    let dir = tempfile::tempdir()
        .map_err(|e| CliError::with("cannot create a temporary directory", e))?;
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("demo.db").display());
    let key = SealingKey::generate();

    let mut stacks = Vec::new();
    for instance in 0..args.instances {
        // A small pool each: a stampede by id shares one read per account
        // and instance, so four connections carry any number of callers,
        // and sixteen instances stay far from a 1024-descriptor limit.
        let stack = RefreshStack::builder()
            .database_config(DatabaseConfig {
                max_connections: DEMO_POOL,
                ..DatabaseConfig::new(url.clone())
            })
            .migrate(instance == 0)
            .encryption_key(&key)
            .providers(ProvidersConfig::default().with_base_url(&emulator.url()))
            .skew(SKEW)
            .build()
            .await?;
        stacks.push(stack);
    }

    let now = chrono::Utc::now().timestamp();
    let mut names = Vec::new();
    let mut accounts = Vec::new();
    for i in 0..args.accounts {
        let (provider, platform, label) = if i % 2 == 0 {
            (EmulatedProvider::Claude, Platform::Anthropic, "claude")
        } else {
            (EmulatedProvider::OpenAi, Platform::OpenAi, "openai")
        };
        let grant = emulator.seed(GrantSpec::new(provider));
        let name = format!("{label}-{}", i / 2 + 1);
        let credentials = Credentials::new()
            .with("access_token", format!("demo-initial-{i}"))
            .with("refresh_token", grant.refresh_token.expose())
            .with("expires_at", (now + 1).to_string());
        accounts.push(NewAccount::new(
            name.clone(),
            platform,
            AccountType::OAuth,
            credentials,
        ));
        names.push((name, grant.grant_id));
    }
    let ids: Vec<AccountId> = stacks[0]
        .import(accounts)
        .await
        .map_err(|e| CliError::with("cannot create the demo accounts", e))?
        .iter()
        .map(|a| a.id)
        .collect();

    let total_calls = (args.rounds * args.accounts * args.instances * args.callers) as u64;
    let bar = if args.json || !std::io::stdout().is_terminal() {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::new(total_calls);
        bar.set_style(
            ProgressStyle::with_template("{spinner} round {msg} [{bar:40}] {pos}/{len} callers")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    };

    let mut latencies = Vec::new();
    let mut stale = 0u64;
    let mut failed = 0u64;
    let mut first_error: Option<String> = None;
    for round in 1..=args.rounds {
        bar.set_message(format!("{round}/{}", args.rounds));
        if round > 1 {
            wait_until_due(&stacks[0], &ids).await?;
        }
        let mut calls = JoinSet::new();
        for stack in &stacks {
            for (index, id) in ids.iter().enumerate() {
                for _ in 0..args.callers {
                    let (stack, id) = (stack.clone(), *id);
                    calls.spawn(async move {
                        let started = Instant::now();
                        let token = stack.tokens().access_token_by_id(id).await;
                        Call {
                            account: index,
                            latency: started.elapsed(),
                            // The error's text names no secret.
                            token: token
                                .map(|t| t.token.expose().to_owned())
                                .map_err(|e| e.to_string()),
                        }
                    });
                }
            }
        }
        let mut served: Vec<Vec<String>> = vec![Vec::new(); ids.len()];
        while let Some(call) = calls.join_next().await {
            bar.inc(1);
            let Ok(call) = call else {
                failed += 1;
                continue;
            };
            latencies.push(call.latency);
            match call.token {
                Ok(token) => served[call.account].push(token),
                Err(error) => {
                    failed += 1;
                    first_error.get_or_insert(error);
                }
            }
        }
        // Every caller must have got the token now stored.
        for (index, id) in ids.iter().enumerate() {
            let stored = stacks[0]
                .repository()
                .get(*id)
                .await
                .ok()
                .flatten()
                .and_then(|a| a.credentials.access_token())
                .map(|t| t.expose().to_owned());
            stale += served[index]
                .iter()
                .filter(|t| Some(t.as_str()) != stored.as_deref())
                .count() as u64;
        }
    }
    bar.finish_and_clear();

    let stats = emulator.stats();
    let per_account: BTreeMap<String, u64> = names
        .iter()
        .map(|(name, grant)| {
            let refreshes = stats
                .grants
                .iter()
                .find(|g| g.grant_id == *grant)
                .map_or(0, |g| g.refreshes);
            (name.clone(), refreshes)
        })
        .collect();
    latencies.sort();
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let expiries = (args.accounts * args.rounds) as u64;
    let ok = stats.refreshes == expiries
        && per_account.values().all(|n| *n == args.rounds as u64)
        && stats.reuse_attempts == 0
        && stats.revoked_grants.is_empty()
        && failed == 0
        && stale == 0;
    let report = json!({
        "instances": args.instances,
        "accounts": args.accounts,
        "rounds": args.rounds,
        "callers": total_calls,
        "callers_failed": failed,
        "callers_served_a_stale_token": stale,
        "expiries": expiries,
        "upstream_refreshes": stats.refreshes,
        "refreshes_per_account": per_account,
        "reuse_attempts": stats.reuse_attempts,
        "revoked_grants": stats.revoked_grants.len(),
        "latency_ms": {"p50": round2(pct(0.50)), "p99": round2(pct(0.99)), "max": round2(pct(1.0))},
        "upstream_latency_ms": args.latency_ms,
        "first_caller_error": first_error,
        "ok": ok,
    });
    if args.json {
        output::print_json(&report);
    } else {
        print_report(args, &report, &per_account, ok);
    }
    if ok {
        Ok(())
    } else {
        Err(CliError::new(match &first_error {
            Some(error) => format!(
                "the demo saw {failed} callers fail (the first: {error}), more than one upstream refresh per expiry, a reuse, a revoked grant or a caller without the current token"
            ),
            None => "the demo saw more than one upstream refresh per expiry, a reuse, a revoked grant or a caller without the current token".to_owned(),
        }))
    }
}

fn round2(ms: f64) -> f64 {
    (ms * 100.0).round() / 100.0
}

/// Sleeps until every demo account's token is within the skew again.
async fn wait_until_due(stack: &RefreshStack, ids: &[AccountId]) -> Result<(), CliError> {
    let mut latest = chrono::Utc::now();
    for id in ids {
        let account = stack
            .repository()
            .get(*id)
            .await
            .map_err(|e| CliError::with("cannot read a demo account", e))?;
        if let Some(at) = account.and_then(|a| a.expires_at) {
            latest = latest.max(at);
        }
    }
    let due = latest - chrono::Duration::from_std(SKEW).unwrap_or_default()
        + chrono::Duration::milliseconds(200);
    if let Ok(wait) = (due - chrono::Utc::now()).to_std() {
        tokio::time::sleep(wait).await;
    }
    Ok(())
}

fn print_report(
    args: &DemoArgs,
    report: &serde_json::Value,
    per_account: &BTreeMap<String, u64>,
    ok: bool,
) {
    let get = |k: &str| report[k].as_u64().unwrap_or(0);
    let lines = [
        format!(
            "oauth-refresh demo: {} instances sharing one SQLite file, {} accounts about to expire, {} rounds",
            args.instances, args.accounts, args.rounds
        ),
        format!(
            "  callers:             {} ({} per account per instance per round), {} failed, {} served a stale token",
            get("callers"),
            args.callers,
            get("callers_failed"),
            get("callers_served_a_stale_token")
        ),
        format!(
            "  upstream refreshes:  {} for {} expiries",
            get("upstream_refreshes"),
            get("expiries")
        ),
        format!(
            "  per account:         {}",
            per_account
                .iter()
                .map(|(name, n)| format!("{name}={n}"))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        format!("  reuse attempts:      {}", get("reuse_attempts")),
        format!("  revoked grants:      {}", get("revoked_grants")),
        format!(
            "  caller latency:      p50 {} ms, p99 {} ms (upstream {} ms)",
            report["latency_ms"]["p50"], report["latency_ms"]["p99"], args.latency_ms
        ),
        if ok {
            "  result:              OK: one upstream refresh per expiry, no reuse, no revoked grant"
                .to_owned()
        } else {
            "  result:              FAILED".to_owned()
        },
    ];
    for line in lines {
        output::print_line(&line);
    }
}
