//! Throwaway Redis and PostgreSQL servers for the tests that need them.
//!
//! `REFRESH_TEST_REDIS_URL` / `REFRESH_TEST_REDIS_CLUSTER_URLS` /
//! `REFRESH_TEST_DATABASE_URL` win when set. Otherwise a `redis-server`, a
//! 3-master Redis Cluster (three `redis-server --cluster-enabled yes` joined
//! by `redis-cli --cluster create`) and a PostgreSQL cluster (`initdb` +
//! `pg_ctl`, from PATH or `/usr/lib/postgresql/*/bin`) start on free loopback
//! ports in a temporary directory and stop when dropped. PostgreSQL refuses to run as
//! root, so as root the cluster runs as the `postgres` user.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::say;

/// Running services; stopped on drop.
pub(crate) struct Services {
    redis_url: String,
    redis_cluster_urls: String,
    database_url: String,
    redis: Option<Child>,
    redis_cluster: Vec<Child>,
    postgres: Option<Postgres>,
    _dir: Option<TempDir>,
}

struct Postgres {
    pg_ctl: PathBuf,
    data: PathBuf,
    as_postgres_user: bool,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Services {
    /// Redis, the Redis Cluster and PostgreSQL.
    pub(crate) fn start() -> Result<Self> {
        Self::start_with(true)
    }

    /// Redis and PostgreSQL (what the benchmarks use).
    pub(crate) fn start_without_cluster() -> Result<Self> {
        Self::start_with(false)
    }

    fn start_with(cluster: bool) -> Result<Self> {
        let mut services = Self {
            redis_url: String::new(),
            redis_cluster_urls: String::new(),
            database_url: String::new(),
            redis: None,
            redis_cluster: Vec::new(),
            postgres: None,
            _dir: None,
        };
        let dir = {
            let path =
                std::env::temp_dir().join(format!("oauth-refresh-xtask-{}", std::process::id()));
            std::fs::create_dir_all(&path).context("create temp dir")?;
            TempDir(path)
        };
        match std::env::var("REFRESH_TEST_REDIS_URL") {
            Ok(url) => services.redis_url = url,
            Err(_) => {
                let port = free_port()?;
                say(&format!("==> starting redis-server on 127.0.0.1:{port}"));
                let child = Command::new("redis-server")
                    .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                    .arg("--dir")
                    .arg(&dir.0)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .context("redis-server not found: install it (apt-get install -y redis-server) or set REFRESH_TEST_REDIS_URL")?;
                services.redis = Some(child);
                wait_for_port(port, "redis-server")?;
                services.redis_url = format!("redis://127.0.0.1:{port}/");
            }
        }
        match std::env::var("REFRESH_TEST_REDIS_CLUSTER_URLS") {
            Ok(urls) => services.redis_cluster_urls = urls,
            Err(_) if !cluster => {}
            Err(_) => {
                services.redis_cluster_urls =
                    start_redis_cluster(&dir.0, &mut services.redis_cluster)?;
            }
        }
        match std::env::var("REFRESH_TEST_DATABASE_URL") {
            Ok(url) => services.database_url = url,
            Err(_) => {
                let (pg, url) = start_postgres(&dir.0)?;
                services.postgres = Some(pg);
                services.database_url = url;
            }
        }
        services._dir = Some(dir);
        Ok(services)
    }

    pub(crate) fn export(&self, cmd: &mut Command) {
        cmd.env("REFRESH_TEST_REDIS_URL", &self.redis_url);
        if !self.redis_cluster_urls.is_empty() {
            cmd.env("REFRESH_TEST_REDIS_CLUSTER_URLS", &self.redis_cluster_urls);
        }
        cmd.env("REFRESH_TEST_DATABASE_URL", &self.database_url);
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        if let Some(mut redis) = self.redis.take() {
            let _ = redis.kill();
            let _ = redis.wait();
        }
        for mut node in self.redis_cluster.drain(..) {
            let _ = node.kill();
            let _ = node.wait();
        }
        if let Some(pg) = self.postgres.take() {
            let mut stop = pg_command(&pg.pg_ctl, pg.as_postgres_user);
            stop.arg("stop")
                .arg("-D")
                .arg(&pg.data)
                .args(["-m", "immediate"]);
            let _ = stop.stdout(Stdio::null()).stderr(Stdio::null()).status();
        }
    }
}

/// `cargo xtask services`: start, print, wait for Ctrl-C (or stdin EOF).
pub(crate) fn hold() -> Result<()> {
    let services = Services::start()?;
    say(&format!(
        "export REFRESH_TEST_REDIS_URL={}\nexport REFRESH_TEST_REDIS_CLUSTER_URLS={}\nexport REFRESH_TEST_DATABASE_URL={}\n(press Enter or Ctrl-D to stop)",
        services.redis_url, services.redis_cluster_urls, services.database_url
    ));
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    drop(services);
    Ok(())
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("bind a free port")?;
    Ok(listener.local_addr()?.port())
}

/// A free port `P` whose cluster bus port `P + 10000` is free too.
fn free_cluster_port(taken: &[u16]) -> Result<u16> {
    for _ in 0..50 {
        let port = free_port()?;
        // Neither P nor P+10000 may clash with an already chosen node's ports.
        if port > u16::MAX - 10000
            || taken
                .iter()
                .any(|&t| t == port || t.abs_diff(port) == 10000)
        {
            continue;
        }
        // Both must be bindable at the same time (listeners dropped after).
        let main = TcpListener::bind(("127.0.0.1", port));
        let bus = TcpListener::bind(("127.0.0.1", port + 10000));
        if main.is_ok() && bus.is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port P with a free cluster bus port P+10000 after 50 tries")
}

/// Starts three cluster-enabled `redis-server`s (pushed onto `nodes` as they
/// start, so a failure still stops them), joins them as a 3-master cluster
/// and returns their comma-separated URLs.
fn start_redis_cluster(dir: &Path, nodes: &mut Vec<Child>) -> Result<String> {
    let mut ports = Vec::new();
    for _ in 0..3 {
        ports.push(free_cluster_port(&ports)?);
    }
    let list = ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    say(&format!(
        "==> starting a 3-master Redis Cluster on ports {list}"
    ));
    for &port in &ports {
        let node_dir = dir.join(format!("redis-cluster-{port}"));
        std::fs::create_dir_all(&node_dir).context("create cluster node dir")?;
        let child = Command::new("redis-server")
            .args(["--cluster-enabled", "yes", "--cluster-config-file"])
            .arg(node_dir.join(format!("nodes-{port}.conf")))
            .args(["--cluster-node-timeout", "5000", "--port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&node_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("redis-server not found: install it (apt-get install -y redis-server) or set REFRESH_TEST_REDIS_CLUSTER_URLS")?;
        nodes.push(child);
    }
    for &port in &ports {
        wait_for_port(port, "redis-server (cluster node)")?;
    }
    let out = Command::new("redis-cli")
        .arg("--cluster")
        .arg("create")
        .args(ports.iter().map(|p| format!("127.0.0.1:{p}")))
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .context("redis-cli not found: install it (apt-get install -y redis-tools) or set REFRESH_TEST_REDIS_CLUSTER_URLS")?;
    if !out.status.success() {
        bail!(
            "redis-cli --cluster create failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for &port in &ports {
        loop {
            let info = Command::new("redis-cli")
                .args(["-p", &port.to_string(), "cluster", "info"])
                .output()
                .context("run redis-cli cluster info")?;
            if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                break;
            }
            if Instant::now() >= deadline {
                bail!(
                    "Redis Cluster node 127.0.0.1:{port} did not reach cluster_state:ok within 30 s"
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    say("==> Redis Cluster is up (cluster_state:ok on all nodes)");
    Ok(ports
        .iter()
        .map(|p| format!("redis://127.0.0.1:{p}/"))
        .collect::<Vec<_>>()
        .join(","))
}

fn wait_for_port(port: u16, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{what} did not start listening on port {port} within 30 s")
}

fn postgres_bin(name: &str) -> Option<PathBuf> {
    if let Ok(path) = which(name) {
        return Some(path);
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .collect();
    dirs.sort();
    dirs.into_iter()
        .rev()
        .map(|d| d.join(name))
        .find(|p| p.exists())
}

fn which(name: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").context("no PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .with_context(|| format!("{name} not on PATH"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn pg_command(bin: &Path, as_postgres_user: bool) -> Command {
    if as_postgres_user {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(bin);
        cmd
    } else {
        Command::new(bin)
    }
}

fn start_postgres(dir: &Path) -> Result<(Postgres, String)> {
    let initdb = postgres_bin("initdb")
        .context("initdb not found: install PostgreSQL (apt-get install -y postgresql) or set REFRESH_TEST_DATABASE_URL")?;
    let pg_ctl = postgres_bin("pg_ctl").context("pg_ctl not found")?;
    let as_postgres_user = is_root();
    let data = dir.join("pgdata");
    if as_postgres_user {
        // The cluster directory must belong to the user that runs it.
        let status = Command::new("chown")
            .arg("postgres")
            .arg(dir)
            .status()
            .context("chown temp dir")?;
        if !status.success() {
            bail!("could not chown {} to postgres", dir.display());
        }
        let _ = Command::new("chmod").arg("755").arg(dir).status();
    }
    let port = free_port()?;
    say(&format!(
        "==> starting throwaway PostgreSQL on 127.0.0.1:{port}"
    ));
    let mut init = pg_command(&initdb, as_postgres_user);
    init.arg("-D")
        .arg(&data)
        .args(["-A", "trust", "-U", "postgres", "--no-sync"]);
    let out = init.output().context("run initdb")?;
    if !out.status.success() {
        bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let mut start = pg_command(&pg_ctl, as_postgres_user);
    start
        .arg("start")
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(dir.join("postgres.log"))
        .arg("-o")
        .arg(format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            dir.display()
        ))
        .args(["-w", "-t", "60"]);
    let out = start.output().context("run pg_ctl start")?;
    if !out.status.success() {
        let log = std::fs::read_to_string(dir.join("postgres.log")).unwrap_or_default();
        bail!(
            "pg_ctl start failed: {}\n{log}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    wait_for_port(port, "postgres")?;
    Ok((
        Postgres {
            pg_ctl,
            data,
            as_postgres_user,
        },
        format!("postgres://postgres@127.0.0.1:{port}/postgres"),
    ))
}
