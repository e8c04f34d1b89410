//! `refresh-bench`: the benchmark harness of `cargo xtask bench`.
//!
//! `refresh-bench all [--quick]` runs, on the PostgreSQL and Redis named by
//! `REFRESH_TEST_DATABASE_URL` / `REFRESH_TEST_REDIS_URL` and an in-process
//! OAuth emulator, this project and the [`baseline`] (the Go algorithm)
//! side by side: warm token reads, Redis lease round trips, a 4-process
//! stampede, the background sweep and its growth, and an `oauth-refresh
//! serve` process (HTTP throughput, memory per warm account), and the
//! status page's accounts page at 10 000 accounts (server time). It writes
//! `BENCHMARKS.md` with the criterion numbers `cargo xtask bench` measured
//! just before, in the same run. `stampede-worker` is one process of the
//! stampede (started by `all`).

mod accounts_page;
mod baseline;
mod env;
mod lease;
mod report;
mod serve;
mod stampede;
mod stats;
mod sweep;
mod warm;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "refresh-bench")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Every scenario, then BENCHMARKS.md.
    All(AllArgs),
    /// One process of the stampede.
    StampedeWorker {
        /// `project`, or the baseline's Redis namespace.
        #[arg(long)]
        side: String,
        #[arg(long)]
        account: i64,
        #[arg(long)]
        db: String,
        #[arg(long)]
        redis: String,
        #[arg(long)]
        emulator: String,
        #[arg(long)]
        callers: usize,
    },
}

#[derive(clap::Args)]
pub(crate) struct AllArgs {
    /// Smaller sizes and shorter runs (under 3 minutes).
    #[arg(long)]
    pub(crate) quick: bool,
    /// Where to write the report.
    #[arg(long, default_value = "BENCHMARKS.md")]
    pub(crate) out: PathBuf,
    /// The criterion output directory (`<target>/criterion`) to include.
    #[arg(long)]
    pub(crate) criterion: Option<PathBuf>,
    /// Instructions per warm read measured under callgrind.
    #[arg(long)]
    pub(crate) instructions_per_read: Option<f64>,
    /// The `oauth-refresh` binary (default: beside this one).
    #[arg(long)]
    pub(crate) oauth_refresh: Option<PathBuf>,
    /// Only these scenarios (comma-separated: warm, lease, stampede, sweep,
    /// serve, accounts-page; serve needs sweep), for working on one of them.
    /// `sweep-cycle` is the sweep's cycle beside the baseline's without the
    /// growth series (and so without serve).
    #[arg(long, value_delimiter = ',')]
    pub(crate) only: Vec<String>,
    /// How this run was started (for the report).
    #[arg(long, default_value = "cargo xtask bench")]
    pub(crate) command: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            say(&format!("refresh-bench: no runtime: {error}"));
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::All(args) => all(args).await,
            Command::StampedeWorker {
                side,
                account,
                db,
                redis,
                emulator,
                callers,
            } => stampede::worker(&side, account, &db, &redis, &emulator, callers).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            say(&format!("refresh-bench failed: {error:#}"));
            ExitCode::FAILURE
        }
    }
}

async fn all(args: AllArgs) -> Result<()> {
    let database = std::env::var("REFRESH_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let redis = std::env::var("REFRESH_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let binary = match &args.oauth_refresh {
        Some(path) => path.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("the binary's directory")?
            .join("oauth-refresh"),
    };
    let mut results = report::Results::start(&args);
    let env = env::Env::start(database, redis, args.quick).await?;

    let wanted = |name: &str| args.only.is_empty() || args.only.iter().any(|o| o == name);
    if wanted("warm") {
        say("==> warm token read");
        results.warm = Some(warm::run(&env).await?);
    }
    if wanted("lease") {
        say("==> Redis lease vs two PINGs");
        results.lease = Some(lease::run(&env).await?);
    }
    if wanted("stampede") {
        say("==> stampede: 4 processes x 256 callers");
        results.stampede = Some(stampede::run(&env).await?);
    }
    if wanted("sweep") {
        say("==> sweep and its growth");
        let sweep = sweep::run(&env).await?;
        let growth_db = sweep::growth(&env, results.sweep.insert(sweep)).await?;
        if wanted("serve") {
            say("==> oauth-refresh serve: memory and HTTP");
            let served = serve::run(&env, &growth_db, &binary).await;
            results.serve = Some(served?);
        }
        env.drop_database(growth_db).await;
    } else if args.only.iter().any(|o| o == "sweep-cycle") {
        say("==> sweep (cycle only)");
        results.sweep = Some(sweep::run(&env).await?);
    }
    if wanted("accounts-page") {
        say("==> status page: the accounts page at 10 000 accounts");
        results.accounts_page = Some(accounts_page::run(&env, &binary).await?);
    }

    results.finish();
    let text = report::markdown(&results, &args)?;
    std::fs::write(&args.out, text).with_context(|| format!("write {}", args.out.display()))?;
    say(&format!("==> wrote {}", args.out.display()));
    Ok(())
}

/// Progress on stderr.
pub(crate) fn say(line: &str) {
    #[allow(clippy::print_stderr)]
    {
        eprintln!("{line}");
    }
}
