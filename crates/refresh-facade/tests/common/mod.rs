//! Helpers of the end-to-end tests: a sandbox directory with the OAuth
//! emulator (in this process) and a configuration pointing at it, the
//! built `oauth-refresh` binary as a subprocess, `serve` processes,
//! a Prometheus text parser, and per-test PostgreSQL databases and Redis
//! prefixes (plus a throwaway redis-server for kill tests).
#![allow(dead_code, unreachable_pub, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use refresh_providers::emulator::{EmulatedProvider, Emulator, GrantSpec, SeededGrant};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_oauth-refresh")
}

/// A name no other test (or run) uses.
pub fn unique(test: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{test}_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        fastrand::u32(..)
    )
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Out {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }

    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert!(self.status.success(), "command failed: {self:?}");
        self
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }
}

/// A directory with `oauth-refresh.toml`, the emulator, and the
/// environment of the commands run in it.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
    pub emulator: Emulator,
    pub env: Vec<(String, String)>,
}

impl Sandbox {
    pub async fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
            emulator: Emulator::start().await.expect("emulator"),
            env: Vec::new(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `oauth-refresh.toml`: `extra` (top-level keys first, then
    /// tables), then every provider at the emulator.
    pub fn write_config(&self, extra: &str) {
        let url = self.emulator.url();
        let text = format!(
            "{extra}\n[providers.claude]\ntoken_url = \"{url}/v1/oauth/token\"\n\
             [providers.openai]\ntoken_url = \"{url}/oauth/token\"\n\
             [providers.gemini]\ntoken_url = \"{url}/token\"\ncode_assist_url = \"{url}\"\n\
             [providers.antigravity]\ntoken_url = \"{url}/token\"\ncode_assist_urls = [\"{url}\"]\n"
        );
        std::fs::write(self.path().join("oauth-refresh.toml"), text).expect("write config");
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// The command, in the sandbox, with no inherited `OAUTH_REFRESH_*`.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin());
        cmd.args(args).current_dir(self.path());
        for (key, _) in std::env::vars() {
            if key.starts_with("OAUTH_REFRESH_") || key == "RUST_LOG" {
                cmd.env_remove(key);
            }
        }
        for (key, value) in &self.env {
            cmd.env(key, value);
        }
        cmd.kill_on_drop(true);
        cmd
    }

    /// Runs a command to its end (60 s at most).
    pub async fn run(&self, args: &[&str]) -> Out {
        self.run_with_stdin(args, None).await
    }

    pub async fn run_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Out {
        let mut cmd = self.command(args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = cmd.spawn().expect("spawn oauth-refresh");
        if let Some(text) = stdin {
            use tokio::io::AsyncWriteExt;
            let mut input = child.stdin.take().expect("stdin");
            input.write_all(text.as_bytes()).await.expect("write stdin");
            drop(input);
        }
        let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("oauth-refresh {args:?} did not finish in 60 s"))
            .expect("wait");
        Out {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    pub fn seed(&self, provider: EmulatedProvider) -> SeededGrant {
        self.emulator.seed(GrantSpec::new(provider))
    }

    /// Writes an import file and returns its name.
    pub fn write_import(&self, name: &str, entries: &Value) -> String {
        std::fs::write(self.path().join(name), entries.to_string()).expect("write import");
        name.to_owned()
    }

    /// Starts `serve` with `args` and waits for its `listening on` line.
    pub async fn serve(&self, args: &[&str]) -> Served {
        let log = self.path().join(format!("serve-{}.log", unique("log")));
        let mut all = vec!["serve", "--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let mut cmd = self.command(&all);
        cmd.stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .stdin(Stdio::null());
        let mut child = cmd.spawn().expect("spawn serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "serve did not start: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            })
            .expect("read stdout")
            .unwrap_or_else(|| {
                panic!(
                    "serve exited: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            });
        let url = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_owned();
        Served { child, url, log }
    }
}

/// A running `serve`.
pub struct Served {
    pub child: Child,
    pub url: String,
    pub log: PathBuf,
}

impl Served {
    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    pub fn signal(&self, signal: &str) {
        let sent = std::process::Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(sent, "kill {signal}");
    }

    /// Waits (60 s at most) for the process to exit.
    pub async fn wait(&mut self) -> ExitStatus {
        tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("serve did not exit in 60 s")
            .expect("wait")
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// An HTTP client.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// An import entry.
pub fn entry(name: &str, platform: &str, refresh_token: &str, expires_at: i64) -> Value {
    json!({
        "name": name,
        "platform": platform,
        "type": "oauth",
        "credentials": {
            "access_token": format!("at-initial-{name}"),
            "refresh_token": refresh_token,
            "expires_at": expires_at.to_string(),
        },
        "extra": {},
        "proxy": null,
    })
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Polls `check` until it holds, or panics after `limit` naming `what`.
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts no token the emulator ever issued appears in `text`.
#[track_caller]
pub fn assert_no_secret(emulator: &Emulator, text: &str, what: &str) {
    for token in emulator.issued_tokens() {
        assert!(!text.contains(token.expose()), "a token appears in {what}");
    }
}

/// One sample of the Prometheus text format.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// Parses the Prometheus text exposition format strictly enough to fail
/// on anything malformed: `# HELP`/`# TYPE` lines, and `name{l="v",...}
/// value` samples.
pub fn parse_prometheus(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let mut words = comment.splitn(3, ' ');
            let kind = words.next().unwrap_or_default();
            assert!(kind == "HELP" || kind == "TYPE", "bad comment: {line}");
            let name = words.next().expect("a metric name");
            assert!(valid_name(name), "bad name in {line}");
            if kind == "TYPE" {
                let ty = words.next().unwrap_or_default();
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&ty),
                    "bad type in {line}"
                );
            }
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_owned(), Vec::new()),
            Some((name, rest)) => {
                let body = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("bad labels in {line}"));
                let mut labels = Vec::new();
                for pair in split_labels(body) {
                    let (k, v) = pair
                        .split_once('=')
                        .unwrap_or_else(|| panic!("bad label in {line}"));
                    let v = v
                        .strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .unwrap_or_else(|| panic!("unquoted label in {line}"));
                    assert!(valid_name(k), "bad label name in {line}");
                    labels.push((k.to_owned(), v.to_owned()));
                }
                (name.to_owned(), labels)
            }
        };
        assert!(valid_name(&name), "bad metric name in {line}");
        samples.push(Sample {
            name,
            labels,
            value,
        });
    }
    samples
}

fn split_labels(body: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in body.char_indices() {
        match c {
            '\\' if quoted => escaped = !escaped,
            '"' if !escaped => quoted = !quoted,
            ',' if !quoted => {
                out.push(&body[start..i]);
                start = i + 1;
            }
            _ => escaped = false,
        }
    }
    if start < body.len() {
        out.push(&body[start..]);
    }
    out
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

/// The sum of the samples named `name` whose labels include `filter`.
pub fn metric(samples: &[Sample], name: &str, filter: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            filter
                .iter()
                .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|s| s.value)
        .sum()
}

/// Scrapes `/metrics`.
pub async fn scrape(url: &str) -> Vec<Sample> {
    let response = http()
        .get(format!("{url}/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(response.status(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    parse_prometheus(&response.text().await.expect("body"))
}

/// `REFRESH_TEST_DATABASE_URL`.
pub fn pg_admin_url() -> String {
    std::env::var("REFRESH_TEST_DATABASE_URL")
        .expect("REFRESH_TEST_DATABASE_URL is not set: run the tests with `cargo xtask test`")
}

/// `REFRESH_TEST_REDIS_URL`.
pub fn redis_url() -> String {
    std::env::var("REFRESH_TEST_REDIS_URL")
        .expect("REFRESH_TEST_REDIS_URL is not set: run the tests with `cargo xtask test`")
}

/// A PostgreSQL database this test created; dropped on drop.
pub struct PgDatabase {
    pub name: String,
    pub url: String,
}

impl PgDatabase {
    pub async fn create(test: &str) -> Self {
        use sea_orm::{ConnectionTrait, Database, Statement};
        let admin = pg_admin_url();
        let name = format!("t_{}", unique(test)).to_lowercase();
        let conn = Database::connect(admin.as_str())
            .await
            .expect("admin connection");
        conn.execute(Statement::from_string(
            conn.get_database_backend(),
            format!("CREATE DATABASE \"{name}\""),
        ))
        .await
        .expect("create database");
        let _ = conn.close().await;
        let mut url = url::Url::parse(&admin).expect("admin url");
        url.set_path(&format!("/{name}"));
        Self {
            name,
            url: url.to_string(),
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        let dropper = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                use sea_orm::{ConnectionTrait, Database, Statement};
                let Ok(conn) = Database::connect(pg_admin_url().as_str()).await else {
                    return;
                };
                let _ = conn
                    .execute(Statement::from_string(
                        conn.get_database_backend(),
                        format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
                    ))
                    .await;
                let _ = conn.close().await;
            });
        });
        let _ = dropper.join();
    }
}

/// A Redis key prefix this test owns on the shared server; its keys are
/// deleted on drop (never a flush).
pub struct RedisPrefix {
    pub url: String,
    pub prefix: String,
}

impl RedisPrefix {
    pub fn new(test: &str) -> Self {
        Self {
            url: redis_url(),
            prefix: format!("t-{}", unique(test)),
        }
    }
}

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        let (url, prefix) = (self.url.clone(), self.prefix.clone());
        let cleaner = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(delete_prefix(&url, &prefix));
        });
        let _ = cleaner.join();
    }
}

/// Every value stored under `prefix` (strings and hash fields), joined:
/// what a leak check searches.
pub async fn dump_prefix(url: &str, prefix: &str) -> (usize, String) {
    let client = redis::Client::open(url).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .expect("keys");
    let mut out = String::new();
    for key in &keys {
        let kind: String = redis::cmd("TYPE")
            .arg(key)
            .query_async(&mut conn)
            .await
            .expect("type");
        let values: Vec<String> = match kind.as_str() {
            "hash" => redis::cmd("HVALS")
                .arg(key)
                .query_async(&mut conn)
                .await
                .unwrap_or_default(),
            "string" => vec![
                redis::cmd("GET")
                    .arg(key)
                    .query_async(&mut conn)
                    .await
                    .unwrap_or_default(),
            ],
            _ => Vec::new(),
        };
        out.push_str(&values.join("\n"));
        out.push('\n');
    }
    (keys.len(), out)
}

async fn delete_prefix(url: &str, prefix: &str) {
    let Ok(client) = redis::Client::open(url) else {
        return;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return;
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

/// A `redis-server` this test owns on a free port; killed on drop.
pub struct OwnRedis {
    pub port: u16,
    child: Option<std::process::Child>,
    dir: tempfile::TempDir,
}

impl OwnRedis {
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let dir = tempfile::tempdir().expect("temp dir");
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        let server = Self {
            port,
            child: Some(child),
            dir,
        };
        eventually(
            "the own redis-server accepts connections",
            Duration::from_secs(10),
            || async { std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() },
        )
        .await;
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// SIGKILL, and wait until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}
