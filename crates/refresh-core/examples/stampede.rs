//! The stampede demo: 256 callers on 4 simulated instances ask for the token
//! of one account whose token is about to expire; exactly one upstream
//! refresh happens, and everyone gets the new token. Then the background
//! refresher sweeps 1 000 accounts with bounded concurrency.
//!
//! Run: `cargo run -p refresh-core --example stampede --features testing`

#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use refresh_core::memory::{
    InMemoryAccountRepository, InMemoryClaimStore, InMemoryRefreshLock, InMemoryTokenCache,
};
use refresh_core::ports::{AccountRepository, Clock, SystemClock};
use refresh_core::testing::{FakeUpstream, RotatingExecutor};
use refresh_core::{
    Account, BackgroundConfig, BackgroundRefresher, Credentials, ExecutorRegistry, LockStrategy,
    Platform, RefreshExecutor, RefreshFlow, TokenProvider,
};

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();

    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let repo = Arc::new(InMemoryAccountRepository::new());
    let lock = Arc::new(InMemoryRefreshLock::new(Arc::clone(&clock)));
    let shared = Arc::new(InMemoryTokenCache::new(Arc::clone(&clock)));
    // The four "instances" share one process, so one in-memory claim store
    // serves them all; a real cluster shares a database claim store.
    let claims = Arc::new(InMemoryClaimStore::new(Arc::clone(&clock)));
    let upstream = FakeUpstream::new();
    upstream.set_latency(Duration::from_millis(50));
    let executor: Arc<dyn RefreshExecutor> = Arc::new(RotatingExecutor::new(
        Platform::Anthropic,
        Arc::clone(&upstream),
        Duration::from_secs(3600),
    ));

    let expiring = Credentials::new()
        .with("access_token", "at-old")
        .with("refresh_token", "rt-old")
        .with("expires_at", (Utc::now().timestamp() + 60).to_string());
    let account = repo
        .insert(Account::oauth(1, Platform::Anthropic, expiring))
        .await?;

    // Four "instances": each has its own flow (single flight) and caches,
    // sharing the repository, the lease lock and the shared cache.
    let providers: Vec<TokenProvider> = (0..4)
        .map(|_| {
            let flow = RefreshFlow::builder(
                repo.clone(),
                LockStrategy::single(lock.clone()),
                claims.clone(),
            )
            .notifier(shared.clone())
            .clock(Arc::clone(&clock))
            .build()
            .expect("valid flow config");
            TokenProvider::builder(flow, ExecutorRegistry::new().with(Arc::clone(&executor)))
                .shared_cache(shared.clone())
                .build()
        })
        .collect();

    println!(
        "stampede: 4 instances x 64 callers on account 1 (token expires in 60 s, upstream latency 50 ms)"
    );
    let started = Instant::now();
    let mut callers = Vec::new();
    for i in 0..256 {
        let (provider, account) = (providers[i % 4].clone(), account.clone());
        callers.push(tokio::spawn(async move {
            let t = Instant::now();
            let token = provider.access_token(&account).await;
            (token, t.elapsed())
        }));
    }
    let mut versions = std::collections::BTreeMap::new();
    let mut worst = Duration::ZERO;
    for c in callers {
        let (token, took) = c.await?;
        *versions.entry(token?.version).or_insert(0) += 1;
        worst = worst.max(took);
    }
    println!(
        "  upstream refreshes: {}  refresh-token reuses: {}  callers by token version: {versions:?}  slowest caller: {worst:?}  total: {:?}",
        upstream.successes(),
        upstream.reuses(),
        started.elapsed()
    );

    println!(
        "background: 1000 accounts expiring within the 30 min window, default concurrency (64)"
    );
    for id in 2..1002 {
        let creds = Credentials::new()
            .with("access_token", format!("at-{id}"))
            .with("refresh_token", format!("rt-{id}"))
            .with("expires_at", (Utc::now().timestamp() + 600).to_string());
        repo.insert(Account::oauth(id, Platform::Anthropic, creds))
            .await?;
    }
    upstream.set_latency(Duration::from_millis(20));
    let flow = RefreshFlow::builder(repo.clone(), LockStrategy::single(lock.clone()), claims)
        .clock(Arc::clone(&clock))
        .build()?;
    let refresher = BackgroundRefresher::builder(flow, ExecutorRegistry::new().with(executor))
        .cache(shared)
        .config(BackgroundConfig::default())
        .build()?;
    let started = Instant::now();
    let report = refresher.run_once().await;
    println!("  {report:?} in {:?}", started.elapsed());
    Ok(())
}
