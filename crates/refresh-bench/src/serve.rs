//! The HTTP sidecar (`oauth-refresh serve`) as its own process: resident
//! memory before and after warming every account, then warm
//! `GET /v1/accounts/{id}/access-token` throughput from a Rust load
//! generator on loopback (keep-alive HTTP/1.1 connections), bounded in time.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::env::{Db, Env};
use crate::stats::{Summary, ns, summarize};

/// At least 16 characters: `serve` refuses shorter keys.
const API_KEY: &str = "bench-api-key-http-sidecar";

#[derive(Debug, Default, serde::Serialize)]
pub(crate) struct Serve {
    pub(crate) accounts: usize,
    pub(crate) rss_before_kib: u64,
    pub(crate) rss_after_kib: u64,
    pub(crate) bytes_per_account: f64,
    pub(crate) warm_ms: f64,
    pub(crate) connections: usize,
    pub(crate) seconds: f64,
    pub(crate) http: Summary,
    pub(crate) errors: u64,
}

/// Runs `serve` on `db` (whose accounts are all valid), with `ids` its
/// account ids.
pub(crate) async fn run(env: &Env, db: &Db, binary: &Path) -> Result<Serve> {
    let ids = account_ids(db).await?;
    let (mut child, addr) = spawn(env, db, binary, API_KEY).await?;
    let pid = child.id().context("serve pid")?;

    // One request so every lazy part (pools, routes) is up before `before`.
    let mut probe = Conn::open(&addr).await?;
    probe.get(ids[0]).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid)?;
    let started = Instant::now();
    let errors = load(&addr, &ids, 8, None).await?.1;
    if errors > 0 {
        bail!("{errors} errors while warming");
    }
    let warm_ms = started.elapsed().as_secs_f64() * 1000.0;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(pid)?;

    let (connections, seconds) = (32, if env.quick { 3.0 } else { 10.0 });
    let started = Instant::now();
    let (samples, errors) = load(
        &addr,
        &ids,
        connections,
        Some(Duration::from_secs_f64(seconds)),
    )
    .await?;
    let wall = started.elapsed();
    let n = samples.len() as u64;
    let _ = child.kill().await;
    Ok(Serve {
        accounts: ids.len(),
        rss_before_kib: before,
        rss_after_kib: after,
        bytes_per_account: (after.saturating_sub(before) * 1024) as f64 / ids.len() as f64,
        warm_ms,
        connections,
        seconds: wall.as_secs_f64(),
        http: summarize(samples, 0, n, wall),
        errors,
    })
}

/// Starts `oauth-refresh serve` on `db` with one API key `key`, on a free
/// loopback port; the child (killed on drop) and its `host:port`.
pub(crate) async fn spawn(
    env: &Env,
    db: &Db,
    binary: &Path,
    key: &str,
) -> Result<(tokio::process::Child, String)> {
    let mut child = tokio::process::Command::new(binary)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("OAUTH_REFRESH_DATABASE_URL", &db.url)
        .env("OAUTH_REFRESH_REDIS_URL", &env.redis_url)
        .env("OAUTH_REFRESH_ENCRYPTION_KEY", &env.key_hex)
        .env("OAUTH_REFRESH_PROVIDERS__BASE_URL", env.emulator.url())
        .env("OAUTH_REFRESH_SERVE__API_KEYS", key)
        .env("OAUTH_REFRESH_LOG__LEVEL", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("start {}", binary.display()))?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .context("serve did not start in 60 s")??
        .context("serve exited")?;
    let addr = first
        .strip_prefix("listening on ")
        .with_context(|| format!("unexpected first line {first:?}"))?
        .trim_start_matches("http://")
        .to_owned();
    // Keep reading its stdout so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, addr))
}

async fn account_ids(db: &Db) -> Result<Vec<i64>> {
    use sea_orm::{ConnectionTrait, Database, Statement};
    let conn = Database::connect(db.url.as_str()).await?;
    let rows = conn
        .query_all(Statement::from_string(
            conn.get_database_backend(),
            "SELECT id FROM accounts ORDER BY id",
        ))
        .await?;
    let ids = rows
        .iter()
        .map(|r| r.try_get::<i64>("", "id"))
        .collect::<Result<Vec<_>, _>>()?;
    conn.close().await.ok();
    Ok(ids)
}

/// `VmRSS` of `pid`, KiB.
fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")
}

/// `connections` keep-alive connections: each account once (`for_time`
/// `None`), or random accounts until `for_time` ends. Latencies (ns) and
/// errors.
async fn load(
    addr: &str,
    ids: &[i64],
    connections: usize,
    for_time: Option<Duration>,
) -> Result<(Vec<u64>, u64)> {
    let ids: Arc<[i64]> = ids.into();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let deadline = for_time.map(|d| Instant::now() + d);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let (ids, next, addr) = (Arc::clone(&ids), Arc::clone(&next), addr.to_owned());
        tasks.spawn(async move {
            let mut conn = Conn::open(&addr).await?;
            let (mut samples, mut errors) = (Vec::new(), 0u64);
            loop {
                let id = match deadline {
                    Some(deadline) if Instant::now() >= deadline => break,
                    Some(_) => ids[fastrand::usize(..ids.len())],
                    None => {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        match ids.get(i) {
                            Some(id) => *id,
                            None => break,
                        }
                    }
                };
                let started = Instant::now();
                match conn.get(id).await {
                    Ok(()) => samples.push(ns(started.elapsed())),
                    Err(_) => {
                        errors += 1;
                        conn = Conn::open(&addr).await?;
                    }
                }
            }
            anyhow::Ok((samples, errors))
        });
    }
    let (mut samples, mut errors) = (Vec::new(), 0);
    while let Some(done) = tasks.join_next().await {
        let (s, e) = done??;
        samples.extend(s);
        errors += e;
    }
    Ok((samples, errors))
}

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    stream: BufReader<TcpStream>,
    host: String,
}

impl Conn {
    async fn open(addr: &str) -> Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream: BufReader::new(stream),
            host: addr.to_owned(),
        })
    }

    /// `GET /v1/accounts/{id}/access-token`; `Ok` on a 200 (body read).
    async fn get(&mut self, id: i64) -> Result<()> {
        let request = format!(
            "GET /v1/accounts/{id}/access-token HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {API_KEY}\r\n\r\n",
            self.host
        );
        self.stream.get_mut().write_all(request.as_bytes()).await?;
        let mut line = String::new();
        self.stream.read_line(&mut line).await?;
        let status = line.trim().to_owned();
        let ok = status.starts_with("HTTP/1.1 200");
        let mut length = 0usize;
        loop {
            line.clear();
            if self.stream.read_line(&mut line).await? == 0 {
                bail!("connection closed");
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse()?;
            }
        }
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await?;
        if !ok {
            bail!("status {status}");
        }
        Ok(())
    }
}
