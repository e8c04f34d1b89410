//! The servers a scenario uses: a PostgreSQL database of its own on the
//! server `cargo xtask test` provides (`REFRESH_TEST_DATABASE_URL`), and a
//! throwaway `redis-server` it may kill, pause, restart or flush (never
//! the shared one).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sea_orm::{ConnectionTrait, Database, Statement};

use crate::poll::eventually;
use crate::process::send_signal;

/// `REFRESH_TEST_DATABASE_URL`.
///
/// # Panics
/// When it is not set.
pub fn pg_admin_url() -> String {
    std::env::var("REFRESH_TEST_DATABASE_URL")
        .expect("REFRESH_TEST_DATABASE_URL is not set: run the tests with `cargo xtask test`")
}

/// A name no other scenario (or run) uses.
pub fn unique(test: &str) -> String {
    format!("{test}_{}_{}", std::process::id(), fastrand::u32(..))
}

/// A PostgreSQL database this scenario created; dropped (forcibly) on drop.
#[derive(Debug)]
pub struct PgDatabase {
    /// Its name.
    pub name: String,
    /// Its URL.
    pub url: String,
}

impl PgDatabase {
    /// Creates a database named after `test`.
    pub async fn create(test: &str) -> Self {
        let admin = pg_admin_url();
        let name = format!("f_{}", unique(test)).to_lowercase();
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

/// A `redis-server` this scenario owns on a free loopback port, without
/// persistence (a restart comes back empty); killed on drop.
#[derive(Debug)]
pub struct OwnRedis {
    /// Its port.
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl OwnRedis {
    /// Starts one and waits until it accepts connections.
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let mut server = Self {
            port,
            child: None,
            dir: tempfile::tempdir().expect("temp dir"),
        };
        server.spawn().await;
        server
    }

    async fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (apt-get install -y redis-server)");
        self.child = Some(child);
        let port = self.port;
        eventually(
            "the own redis-server answers PING",
            Duration::from_secs(10),
            || async move { redis_cli(port, &["PING"]).is_some_and(|o| o.contains("PONG")) },
        )
        .await;
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// SIGKILL (after a SIGCONT, in case it is stopped), and waits until
    /// it is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            send_signal(child.id(), "-CONT");
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (empty).
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// `FLUSHALL`.
    pub fn flushall(&self) {
        let out = redis_cli(self.port, &["FLUSHALL"]).expect("redis-cli FLUSHALL");
        assert!(out.contains("OK"), "FLUSHALL answered {out}");
    }

    /// Keys on the server (`DBSIZE`).
    pub fn dbsize(&self) -> u64 {
        redis_cli(self.port, &["DBSIZE"])
            .and_then(|o| o.trim().parse().ok())
            .expect("redis-cli DBSIZE")
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `redis-cli -p PORT args...`, its stdout when it ran.
fn redis_cli(port: u16, args: &[&str]) -> Option<String> {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}
