//! Shared test helpers: the servers `cargo xtask test` provides, a unique
//! key prefix per test (its keys deleted at the end), keys, tokens and raw
//! commands as the tests write them, throwaway `redis-server`s for the
//! tests that kill or restart one, and the four-process flow run
//! ([`flow`]).
#![allow(dead_code, unreachable_pub, unused_macros)]

pub mod flow;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{FromRedisValue, ToRedisArgs};
use refresh_core::ports::CachedToken;
use refresh_core::{RefreshKey, Secret};
use refresh_redis::{RedisBackend, RedisConfig};

/// The single server (`REFRESH_TEST_REDIS_URL`).
pub fn server_url() -> String {
    std::env::var("REFRESH_TEST_REDIS_URL")
        .expect("REFRESH_TEST_REDIS_URL is not set: run the tests with `cargo xtask test`")
}

/// The cluster's node URLs (`REFRESH_TEST_REDIS_CLUSTER_URLS`).
pub fn cluster_urls() -> Vec<String> {
    std::env::var("REFRESH_TEST_REDIS_CLUSTER_URLS")
        .expect("REFRESH_TEST_REDIS_CLUSTER_URLS is not set: run the tests with `cargo xtask test`")
        .split(',')
        .map(str::to_owned)
        .collect()
}

/// A prefix no other test (or run) uses.
pub fn unique_prefix(test: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "t-{test}-{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        fastrand_u32()
    )
}

fn fastrand_u32() -> u32 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now()) as u32
}

/// Which deployment a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deployment {
    Single,
    Cluster,
}

/// A config for `deployment` with a fresh prefix.
pub fn config(deployment: Deployment, test: &str) -> RedisConfig {
    let config = match deployment {
        Deployment::Single => RedisConfig::new(server_url()),
        Deployment::Cluster => RedisConfig::cluster(cluster_urls()),
    }
    .expect("test URLs are valid");
    config.with_prefix(unique_prefix(test))
}

/// A config for `url` under `prefix` with `timeout` as command timeout.
pub fn timed_config(url: String, prefix: &str, timeout: Duration) -> RedisConfig {
    RedisConfig::new(url)
        .expect("valid url")
        .with_prefix(prefix)
        .with_command_timeout(timeout)
}

/// The refresh key of account `name` (`anthropic:account:<name>`).
pub fn key(name: &str) -> RefreshKey {
    RefreshKey::from_raw(format!("anthropic:account:{name}"))
}

/// The README's key layout: `<prefix>:<kind>:{k:<refresh key>}`.
pub fn raw_key(prefix: &str, kind: &str, k: &RefreshKey) -> String {
    format!("{prefix}:{kind}:{{k:{}}}", k.as_str())
}

/// A cached token `text` of `version`, without expiry.
pub fn token(text: &str, version: u64) -> CachedToken {
    CachedToken {
        access_token: Secret::from(text),
        version,
        expires_at: None,
    }
}

/// A plain connection to the server at `url`, for writing and reading
/// keys behind the backends' back.
pub async fn raw(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect")
}

/// Runs the command `args` (its name first) on `conn`; panics on an error
/// reply.
pub async fn exec<T: FromRedisValue>(conn: &mut impl ConnectionLike, args: impl ToRedisArgs) -> T {
    redis::Cmd::new()
        .arg(args)
        .query_async(conn)
        .await
        .expect("redis command")
}

/// Connects to `deployment` with a fresh prefix.
pub async fn backend(deployment: Deployment, test: &str) -> RedisBackend {
    RedisBackend::connect(config(deployment, test))
        .await
        .expect("connect")
}

/// Deletes every key under `prefix` on the single server or on every
/// cluster node (never a flush).
pub async fn delete_prefix(deployment: Deployment, prefix: &str) {
    let urls = match deployment {
        Deployment::Single => vec![server_url()],
        Deployment::Cluster => cluster_urls(),
    };
    for url in urls {
        let client = redis::Client::open(url.as_str()).expect("url");
        let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
            continue;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}:*"))
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        for key in keys {
            let _: Result<i64, _> = redis::cmd("DEL").arg(&key).query_async(&mut conn).await;
        }
    }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A `redis-server` this test owns, on its own port, with extra arguments
/// of the test's choosing; killed on drop (and resumed first, if stopped).
pub struct OwnServer {
    pub port: u16,
    args: Vec<String>,
    child: Option<Child>,
    dir: std::path::PathBuf,
}

impl OwnServer {
    /// Starts one on a free port and waits until it accepts connections.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// As [`start`](Self::start), with `args` added to the command line.
    pub async fn start_with(args: &[&str]) -> Self {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("refresh-redis-own-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut server = Self {
            port,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            child: None,
            dir,
        };
        server.spawn().await;
        server
    }

    /// The URL of the server.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A backend on this server under `prefix`, with `timeout` as command
    /// timeout.
    pub async fn backend(&self, prefix: &str, timeout: Duration) -> RedisBackend {
        RedisBackend::connect(timed_config(self.url(), prefix, timeout))
            .await
            .expect("a single server connects lazily")
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    async fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        self.child = Some(child);
        // Accepting connections is enough (the server may require a
        // password the caller has not sent yet).
        for _ in 0..400 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("own redis-server on port {} did not start", self.port);
    }

    /// Sends `signal` (`-STOP`, `-CONT`, ...) to the server.
    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(sent, "kill {signal}");
    }

    /// Kills the server (SIGKILL, after a SIGCONT in case it is stopped)
    /// and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Defines `$single` and `$cluster` tests running `$body(Deployment)`.
macro_rules! on_both {
    ($single:ident, $cluster:ident, $body:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[ignore = "needs services: cargo xtask test"]
        async fn $single() {
            $body(Deployment::Single).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[ignore = "needs services: cargo xtask test"]
        async fn $cluster() {
            $body(Deployment::Cluster).await;
        }
    };
}
