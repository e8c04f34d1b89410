//! Lease acquire + release on Redis against two `PING`s, interleaved in one
//! loop so both see the same load: this project's fenced lease (two
//! scripts) on its own connection, and the baseline's `SET NX EX` + `DEL`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use refresh_facade::core::RefreshKey;
use refresh_facade::core::RefreshLock;
use refresh_facade::{AccountId, Platform, RedisBackend, RedisConfig};

use crate::baseline::store::RedisStore;
use crate::env::Env;
use crate::stats::{Summary, ns, summarize};

#[derive(Debug, Default, serde::Serialize)]
pub(crate) struct Lease {
    pub(crate) project_two_pings: Summary,
    pub(crate) project_lease: Summary,
    pub(crate) baseline_two_pings: Summary,
    pub(crate) baseline_lock: Summary,
    /// Server time per call during the loop (µs), by command, from
    /// `INFO commandstats`: `evalsha` is the project's two scripts.
    pub(crate) server_us_per_call: std::collections::BTreeMap<String, f64>,
}

pub(crate) async fn run(env: &Env) -> Result<Lease> {
    let rounds = if env.quick { 2_000 } else { 10_000 };
    let namespace = format!("bench-lease-{}", std::process::id());
    let redis =
        RedisBackend::connect(RedisConfig::new(&env.redis_url)?.with_prefix(namespace.clone()))
            .await?;
    let lock = redis.lock();
    let key = RefreshKey::for_account(&Platform::Anthropic, AccountId(1));
    let go = RedisStore::connect(&env.redis_url, &namespace).await?;
    let go_key = RedisStore::key(1);
    let ttl = Duration::from_secs(30);
    let mut samples: [Vec<u64>; 4] = Default::default();
    let mut walls = [Duration::ZERO; 4];
    let stats_before = go.command_stats().await;
    for _ in 0..rounds {
        let t = Instant::now();
        redis.ping().await?;
        redis.ping().await?;
        record(&mut samples[0], &mut walls[0], t);

        let t = Instant::now();
        let lease = lock
            .try_acquire(&key, ttl)
            .await?
            .context("the lease is free")?;
        lock.release(&lease).await?;
        record(&mut samples[1], &mut walls[1], t);

        let t = Instant::now();
        go.ping().await?;
        go.ping().await?;
        record(&mut samples[2], &mut walls[2], t);

        let t = Instant::now();
        anyhow::ensure!(go.try_lock(&go_key).await?, "the Go lock is free");
        go.unlock(&go_key).await?;
        record(&mut samples[3], &mut walls[3], t);
    }
    let stats_after = go.command_stats().await;
    let server_us_per_call = ["evalsha", "ping", "set", "del"]
        .iter()
        .filter_map(|name| {
            let (c1, u1) = stats_after.get(*name)?;
            let (c0, u0) = stats_before.get(*name).copied().unwrap_or_default();
            let calls = c1.checked_sub(c0).filter(|c| *c > 0)?;
            Some((
                (*name).to_owned(),
                u1.saturating_sub(u0) as f64 / calls as f64,
            ))
        })
        .collect();
    go.clear().await;
    let [a, b, c, d] = samples;
    let n = rounds as u64;
    Ok(Lease {
        project_two_pings: summarize(a, 0, n, walls[0]),
        project_lease: summarize(b, 0, n, walls[1]),
        baseline_two_pings: summarize(c, 0, n, walls[2]),
        baseline_lock: summarize(d, 0, n, walls[3]),
        server_us_per_call,
    })
}

fn record(samples: &mut Vec<u64>, wall: &mut Duration, started: Instant) {
    let took = started.elapsed();
    samples.push(ns(took));
    *wall += took;
}
