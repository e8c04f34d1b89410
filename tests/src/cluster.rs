//! [`Cluster`]: one scenario's world — a temp directory with the
//! configuration and key file, the emulator process, a PostgreSQL database,
//! optionally a throwaway Redis, the accounts, and the worker processes —
//! and the end-state check every scenario ends with.

use std::path::{Path, PathBuf};
use std::time::Duration;

use refresh_facade::core::{Account, AccountId, AccountRepository, AccountStatus};
use refresh_facade::keyfile::read_key_file;
use refresh_facade::providers::emulator::GrantId;
use refresh_facade::{DatabaseConfig, SeaOrmBackend, Sealing};
use serde_json::{Value, json};
use tokio::process::Command;

use crate::bins;
use crate::emulator::EmulatorProcess;
use crate::poll::eventually;
use crate::process::Proc;
use crate::services::{OwnRedis, PgDatabase, unique};
use crate::summary::Summary;

/// The API key `serve` processes accept.
pub const API_KEY: &str = "fault-matrix-api-key-0123456789";

/// Whether the processes share a Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// PostgreSQL only (database lease, polling waiters).
    DatabaseOnly,
    /// PostgreSQL and a throwaway `redis-server` the scenario may kill.
    WithRedis,
}

/// An account of the cluster and the emulator grant behind it.
#[derive(Debug, Clone)]
pub struct ClusterAccount {
    /// Its id in the database.
    pub id: i64,
    /// `anthropic` or `openai`.
    pub platform: &'static str,
    /// The grant at the emulator.
    pub grant: GrantId,
    /// The emulator path its refreshes go to.
    pub token_path: &'static str,
}

/// What a scenario expects at the end beyond the defaults (no revoked
/// grant, no error, every stored refresh token current).
#[derive(Debug, Clone, Default)]
pub struct EndState {
    /// Grants the scenario revoked on purpose.
    pub revoked: Vec<GrantId>,
    /// Accounts that must be marked `error` (all others must not be).
    pub errored: Vec<i64>,
    /// Accounts whose rotation the scenario deliberately lost (a crash
    /// between the upstream's rotation and any durable record of it, a
    /// residual risk core's README lists): their stored token is the one
    /// before that rotation instead of the current one.
    pub rotation_lost: Vec<i64>,
}

/// One scenario's processes and servers.
pub struct Cluster {
    /// The scenario's directory (configuration, key file, logs).
    pub dir: tempfile::TempDir,
    /// The emulator.
    pub emulator: EmulatorProcess,
    /// The database.
    pub pg: PgDatabase,
    /// The throwaway Redis, when the topology has one.
    pub redis: Option<OwnRedis>,
    /// The Redis key prefix.
    pub prefix: String,
    /// The imported accounts.
    pub accounts: Vec<ClusterAccount>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("dir", &self.dir.path())
            .field("accounts", &self.accounts)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Starts the emulator, creates the database (and Redis), writes
    /// `oauth-refresh.toml` with `extra` (TOML tables such as `[flow]`,
    /// `[background]`) and runs `oauth-refresh migrate` (which generates
    /// the key file).
    pub async fn start(test: &str, topology: Topology, extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let emulator = EmulatorProcess::start(dir.path()).await;
        let pg = PgDatabase::create(test).await;
        let redis = match topology {
            Topology::DatabaseOnly => None,
            Topology::WithRedis => Some(OwnRedis::start().await),
        };
        let cluster = Self {
            prefix: format!("f-{}", unique(test)),
            dir,
            emulator,
            pg,
            redis,
            accounts: Vec::new(),
        };
        cluster.write_config(extra);
        let out = cluster.cli(&["migrate"]).await;
        assert!(out.status.success(), "migrate: {out:?}");
        cluster
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The sealing key file `migrate` generated.
    pub fn key_file(&self) -> PathBuf {
        self.path().join("oauth-refresh.key")
    }

    fn write_config(&self, extra: &str) {
        let url = &self.emulator.url;
        let redis = self
            .redis
            .as_ref()
            .map(|r| format!("redis_url = \"{}\"\n", r.url()))
            .unwrap_or_default();
        let text = format!(
            "database_url = \"{db}\"\n{redis}\
             [database]\nmax_connections = 4\n\
             [redis]\nkey_prefix = \"{prefix}\"\n\
             [serve]\napi_keys = [\"{API_KEY}\"]\n\
             [log]\nlevel = \"info,refresh_core=debug,refresh_facade=debug,refresh_providers=debug\"\n\
             {extra}\n\
             [providers.claude]\ntoken_url = \"{url}/v1/oauth/token\"\n\
             [providers.openai]\ntoken_url = \"{url}/oauth/token\"\n",
            db = self.pg.url,
            prefix = self.prefix,
        );
        std::fs::write(self.path().join("oauth-refresh.toml"), text).expect("write config");
    }

    /// `oauth-refresh args...` in the directory, with no inherited
    /// `OAUTH_REFRESH_*` or `RUST_LOG`.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bins::path("oauth-refresh"));
        cmd.args(args).current_dir(self.path());
        for (key, _) in std::env::vars() {
            if key.starts_with("OAUTH_REFRESH_") || key == "RUST_LOG" {
                cmd.env_remove(key);
            }
        }
        cmd
    }

    /// Runs a one-shot command to its end (60 s at most); its output is
    /// kept in `cli-<n>.log` for the leak scan.
    pub async fn cli(&self, args: &[&str]) -> std::process::Output {
        let output = tokio::time::timeout(
            Duration::from_secs(60),
            self.command(args).kill_on_drop(true).output(),
        )
        .await
        .unwrap_or_else(|_| panic!("oauth-refresh {args:?} did not finish in 60 s"))
        .expect("run oauth-refresh");
        let log = self.path().join(format!("cli-{}.log", unique("cli")));
        let mut text = output.stdout.clone();
        text.extend_from_slice(&output.stderr);
        std::fs::write(log, text).expect("write cli log");
        output
    }

    /// Seeds `claude` Claude and `openai` OpenAI grants and imports them
    /// as accounts whose access tokens expire `expires_in` seconds from
    /// now (negative: already expired).
    pub async fn import(&mut self, claude: usize, openai: usize, expires_in: i64) {
        let mut entries = Vec::new();
        let mut planned = Vec::new();
        for i in 0..claude + openai {
            let (provider, platform, path) = if i < claude {
                ("claude", "anthropic", "/v1/oauth/token")
            } else {
                ("openai", "openai", "/oauth/token")
            };
            let grant = self.emulator.seed(provider).await;
            let name = format!("acct-{}-{i}", self.accounts.len());
            entries.push(json!({
                "name": name,
                "platform": platform,
                "type": "oauth",
                "credentials": {
                    "access_token": format!("at-initial-{name}"),
                    "refresh_token": grant.refresh_token,
                    "expires_at": (chrono::Utc::now().timestamp() + expires_in).to_string(),
                },
                "extra": {},
                "proxy": null,
            }));
            planned.push((platform, path, grant.grant_id));
        }
        let file = self
            .path()
            .join(format!("import-{}.json", unique("import")));
        std::fs::write(&file, Value::Array(entries).to_string()).expect("write import");
        let out = self
            .cli(&[
                "accounts",
                "import",
                file.to_str().expect("utf-8 path"),
                "--json",
            ])
            .await;
        assert!(out.status.success(), "import: {out:?}");
        let imported: Value = serde_json::from_slice(&out.stdout).expect("import json");
        let imported = imported.as_array().expect("an array");
        assert_eq!(imported.len(), planned.len());
        for (row, (platform, token_path, grant)) in imported.iter().zip(planned) {
            self.accounts.push(ClusterAccount {
                id: row["id"].as_i64().expect("id"),
                platform,
                grant,
                token_path,
            });
        }
    }

    /// Starts `oauth-refresh serve --listen 127.0.0.1:0 args...` and
    /// returns it with its base URL.
    pub async fn serve(&self, name: &str, args: &[&str]) -> (Proc, String) {
        let mut all = vec!["serve", "--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let proc = Proc::spawn(name, self.path(), self.command(&all));
        let mut url = String::new();
        eventually(
            &format!("{name} prints `listening on`"),
            Duration::from_secs(60),
            || {
                if let Some(rest) = proc
                    .logs()
                    .lines()
                    .find_map(|l| l.strip_prefix("listening on "))
                {
                    url = rest.trim().to_owned();
                }
                std::future::ready(!url.is_empty())
            },
        )
        .await;
        (proc, url)
    }

    /// Starts `oauth-refresh run` (the background worker).
    pub fn run(&self, name: &str) -> Proc {
        Proc::spawn(name, self.path(), self.command(&["run"]))
    }

    /// Starts a `fault-worker` with the cluster's database, key, Redis and
    /// emulator, plus `env` (see the binary's docs).
    pub fn fault_worker(&self, name: &str, env: &[(String, String)]) -> Proc {
        let mut cmd = Command::new(bins::path("fault-worker"));
        cmd.current_dir(self.path())
            .env("FW_DATABASE_URL", &self.pg.url)
            .env("FW_KEY_FILE", self.key_file())
            .env("FW_EMULATOR_URL", &self.emulator.url)
            .env("FW_REDIS_PREFIX", &self.prefix)
            .env_remove("RUST_LOG");
        if let Some(redis) = &self.redis {
            cmd.env("FW_REDIS_URL", redis.url());
        }
        for (key, value) in env {
            cmd.env(key, value);
        }
        Proc::spawn(name, self.path(), cmd)
    }

    /// The database as the processes see it (sealed with the key file).
    pub async fn database(&self) -> SeaOrmBackend {
        let key = read_key_file(&self.key_file()).expect("key file");
        SeaOrmBackend::connect(
            &DatabaseConfig {
                url: self.pg.url.clone(),
                max_connections: 2,
                ..DatabaseConfig::default()
            },
            Sealing::keys(&key, &[]),
        )
        .await
        .expect("open the database")
    }

    /// Every account as stored.
    pub async fn stored(&self) -> Vec<Account> {
        let database = self.database().await;
        let repository = database.repository();
        let mut out = Vec::new();
        for account in &self.accounts {
            out.push(
                repository
                    .get(AccountId::from(account.id))
                    .await
                    .expect("read account")
                    .expect("account exists"),
            );
        }
        out
    }

    /// The stored refresh token of every account.
    pub async fn stored_refresh_tokens(&self) -> Vec<String> {
        self.stored()
            .await
            .iter()
            .map(|a| {
                a.credentials
                    .refresh_token()
                    .map(|t| t.expose().to_owned())
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Whether every account (but `except`) stores its grant's current
    /// refresh token.
    pub async fn all_rotations_home(&self, except: &[i64]) -> bool {
        let stored = self.stored_refresh_tokens().await;
        for (account, stored) in self.accounts.iter().zip(stored) {
            if except.contains(&account.id) {
                continue;
            }
            if self.emulator.current_refresh_token(account.grant).await != stored {
                return false;
            }
        }
        true
    }

    /// Every log and captured output in the directory.
    pub fn all_logs(&self) -> String {
        let mut out = String::new();
        for entry in std::fs::read_dir(self.path()).expect("read dir").flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log") {
                out.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
                out.push('\n');
            }
        }
        out
    }

    /// The check every scenario ends with: zero reuse attempts, only the
    /// expected revoked grants, every stored refresh token equal to the
    /// grant's current one (but `expect.rotation_lost`), exactly the
    /// expected accounts marked error (with a message holding no token),
    /// and no token the emulator issued in any log, output or error
    /// message.
    pub async fn assert_end_state(&self, expect: &EndState) {
        let stats = self.emulator.stats().await;
        assert_eq!(
            stats.reuse_attempts, 0,
            "reuse attempts at the emulator: {stats:?}"
        );
        let mut revoked = expect.revoked.clone();
        revoked.sort();
        assert_eq!(stats.revoked_grants, revoked, "revoked grants: {stats:?}");
        let stored = self.stored().await;
        for (account, row) in self.accounts.iter().zip(&stored) {
            let current = self.emulator.current_refresh_token(account.grant).await;
            let token = row
                .credentials
                .refresh_token()
                .map(|t| t.expose().to_owned())
                .unwrap_or_default();
            if expect.rotation_lost.contains(&account.id) {
                assert_ne!(
                    token, current,
                    "account {}: the lost rotation was expected to stay lost",
                    account.id
                );
            } else {
                assert!(
                    token == current,
                    "account {} (grant {}) stores a refresh token that is not the grant's current one (version {})",
                    account.id,
                    account.grant,
                    row.credentials_version
                );
            }
            let errored = row.status == AccountStatus::Error;
            assert_eq!(
                errored,
                expect.errored.contains(&account.id),
                "account {} status {:?}, message {:?}",
                account.id,
                row.status,
                row.error_message
            );
        }
        let issued = self.emulator.issued_tokens().await;
        assert!(!issued.is_empty());
        let logs = self.all_logs();
        // The imported access tokens are secrets the emulator never issued.
        assert!(
            !logs.contains("at-initial-"),
            "an imported access token appears in a captured log or output"
        );
        let messages: String = stored
            .iter()
            .filter_map(|a| a.error_message.clone())
            .collect::<Vec<_>>()
            .join("\n");
        for token in &issued {
            assert!(
                !logs.contains(token.as_str()),
                "an issued token appears in a captured log or output"
            );
            assert!(
                !messages.contains(token.as_str()),
                "an issued token appears in an error message"
            );
        }
    }

    /// The summary line a stopped `fault-worker` printed.
    ///
    /// # Panics
    /// When it printed none.
    pub fn summary(proc: &Proc) -> Summary {
        Summary::from_log(&proc.logs())
            .unwrap_or_else(|| panic!("{} printed no summary:\n{}", proc.name, proc.logs()))
    }

    /// Lines of every log that contain `needle`.
    pub fn log_lines_with(&self, needle: &str) -> Vec<String> {
        self.all_logs()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Cluster {
    /// A failed scenario keeps its directory (logs, configuration) and
    /// says where.
    fn drop(&mut self) {
        if std::thread::panicking() {
            let Ok(empty) = tempfile::tempdir() else {
                return;
            };
            let kept = std::mem::replace(&mut self.dir, empty).keep();
            #[allow(clippy::print_stderr)] // where to look after a failure
            {
                eprintln!("scenario logs kept in {}", kept.display());
            }
        }
    }
}

/// `FW_*` settings for [`Cluster::fault_worker`], from `(name, value)`.
pub fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}
