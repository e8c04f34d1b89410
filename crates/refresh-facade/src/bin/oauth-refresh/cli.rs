//! The command line: every flag and subcommand, with the help texts
//! `--help` shows.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Keeps OAuth access tokens of many upstream accounts (Claude, OpenAI,
/// Gemini, Antigravity) valid, with at most one upstream refresh per
/// refresh-token generation across a cluster.
///
/// Configuration is read from a TOML file (`--config`, default
/// `oauth-refresh.toml` in the working directory if present), overridden by
/// `OAUTH_REFRESH_*` environment variables (nested keys with `__`, e.g.
/// `OAUTH_REFRESH_SERVE__LISTEN`), overridden by flags. `oauth-refresh
/// config` prints the result with secrets redacted.
///
/// Getting started: `oauth-refresh migrate` (creates the SQLite database
/// and the sealing key `oauth-refresh.key`), then `oauth-refresh accounts
/// import accounts.json` and `oauth-refresh serve`.
#[derive(Debug, Parser)]
#[command(name = "oauth-refresh", version, propagate_version = true)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Flags every command takes.
#[derive(Debug, Args)]
pub(crate) struct Global {
    /// The configuration file (TOML). Default: `oauth-refresh.toml` in the
    /// working directory, when it exists.
    #[arg(
        short,
        long,
        global = true,
        env = "OAUTH_REFRESH_CONFIG",
        value_name = "PATH"
    )]
    pub(crate) config: Option<PathBuf>,
    /// Overrides `database_url` (`sqlite://PATH?mode=rwc` or `postgres://...`).
    #[arg(long, global = true, value_name = "URL")]
    pub(crate) database_url: Option<String>,
    /// Overrides `redis_url` (enables the Redis lease, cache and notifications).
    #[arg(long, global = true, value_name = "URL")]
    pub(crate) redis_url: Option<String>,
    /// Overrides `log.level` (`error`, `warn`, `info`, `debug`, `trace`, or
    /// a tracing filter such as `info,refresh_core=debug`).
    #[arg(long, global = true, value_name = "FILTER")]
    pub(crate) log_level: Option<String>,
    /// Logs as JSON lines (overrides `log.json`).
    #[arg(long, global = true)]
    pub(crate) log_json: bool,
    /// On error, print the whole cause chain, not only the first line.
    #[arg(short, long, global = true)]
    pub(crate) verbose: bool,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Creates or updates the database schema (idempotent). When no
    /// sealing key is configured, generates one into `oauth-refresh.key`
    /// beside the configuration (mode 0600) and says so.
    Migrate,
    /// Administers accounts: add, import, login, relogin, import-cli, list,
    /// show, remove, set-status.
    /// Never prints a token or secret.
    #[command(subcommand)]
    Accounts(AccountsCommand),
    /// Prints a currently valid access token of account ID (refreshing it
    /// first if it is about to expire), and nothing else, on stdout.
    Token {
        /// The account id.
        id: i64,
    },
    /// Refreshes account ID if it is due within the background window (or
    /// always, with --force), and prints what happened.
    Refresh {
        /// The account id.
        id: i64,
        /// Refresh even if the token is not due.
        #[arg(long)]
        force: bool,
    },
    /// Runs the background refresher: every `background.interval`, refreshes
    /// the accounts expiring within `background.window`, and logs each
    /// cycle's report. SIGINT/SIGTERM stop new work and let refreshes in
    /// flight finish and persist (bounded by `shutdown_grace`).
    Run {
        /// Run one cycle, print its report, and exit.
        #[arg(long)]
        once: bool,
    },
    /// Serves tokens over HTTP: `GET /v1/accounts/{id}/access-token`,
    /// `POST /v1/accounts/{id}/refresh`, `GET /v1/accounts[/{id}]`, the
    /// OAuth login `POST /v1/logins` (`{platform, ...}` → `{session_id,
    /// authorize_url, expires_at}`) and `POST /v1/logins/{session_id}/complete`
    /// (`{pasted}` → the new account), `/healthz`, `/readyz`, `/metrics`.
    /// Login sessions live in the database: any `serve` on it completes
    /// one, once. `/v1` needs `Authorization:
    /// Bearer <one of serve.api_keys>`. Runs the background refresher too
    /// (unless --no-worker). Prints `listening on http://ADDR` on stdout.
    Serve {
        /// Overrides `serve.listen` (IP:PORT; port 0 picks a free one).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Do not run the background refresher in this process.
        #[arg(long)]
        no_worker: bool,
        /// Allow serving without API keys, only on a loopback address.
        #[arg(long)]
        insecure_loopback: bool,
    },
    /// Shows a stampede collapsing to one refresh per expiry: starts the
    /// OAuth emulator and a SQLite stack in a temporary directory, creates
    /// accounts about to expire, and runs concurrent callers across several
    /// stack instances sharing the file. Needs no server and no
    /// configuration.
    Demo(DemoArgs),
    /// Prints the effective configuration (file, environment and flags
    /// merged) as TOML, with secrets redacted.
    Config,
}

/// The `demo` settings.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Accounts about to expire (Claude and OpenAI, alternating).
    #[arg(long, default_value_t = 8)]
    pub(crate) accounts: usize,
    /// Concurrent callers per account per round.
    #[arg(long, default_value_t = 64)]
    pub(crate) callers: usize,
    /// Stack instances sharing the SQLite file (each its own pool, flow and
    /// caches, as separate processes would have).
    #[arg(long, default_value_t = 4)]
    pub(crate) instances: usize,
    /// Expiries to go through: each round lets every token expire again.
    #[arg(long, default_value_t = 3)]
    pub(crate) rounds: usize,
    /// Emulated upstream latency, milliseconds.
    #[arg(long, default_value_t = 50)]
    pub(crate) latency_ms: u64,
    /// Print the report as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `accounts` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum AccountsCommand {
    /// Adds one account. Its credentials (a JSON object with at least
    /// `access_token`, `refresh_token` and `expires_at` for `oauth`) come
    /// from --credentials-file, or from stdin.
    Add(AddArgs),
    /// Imports a JSON array of `{name, platform, type, credentials, extra,
    /// proxy}`, all or nothing: an invalid entry is reported with its index
    /// and field, and nothing is imported. An entry whose refresh token was
    /// already redeemed here (a generation claim) is refused too.
    Import {
        /// The JSON file (`-` reads stdin).
        file: PathBuf,
        /// Print the imported accounts as a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Adds an account by OAuth login: prints the authorize URL on stderr,
    /// reads the pasted code or callback URL from stdin (or, with
    /// --listen, receives the browser's redirect on the provider's loopback
    /// port), stores the account sealed, and prints its id on stdout.
    Login(crate::login::LoginArgs),
    /// Re-authorizes account ID by OAuth login (a revoked grant, a lost
    /// refresh token): replaces its credentials and bumps its version, so
    /// an in-flight refresh's write loses. Prints the id on stdout.
    Relogin(crate::login::ReloginArgs),
    /// Imports the credentials file of an official CLI (claude-code,
    /// codex, gemini-cli) from its default location or PATH. The refresh
    /// token then belongs to oauth-refresh: the CLI's own copy stops
    /// working after the first rotation. Prints the id on stdout.
    ImportCli(crate::import_cli::ImportCliArgs),
    /// Lists accounts: id, name, platform, type, status, expiry, version.
    List {
        /// Only this platform.
        #[arg(long)]
        platform: Option<String>,
        /// Only this status.
        #[arg(long)]
        status: Option<StatusArg>,
        /// Print a JSON array (`id`, `name`, `platform`, `type`, `status`,
        /// `expires_at`, `credentials_version`, `error_message`).
        #[arg(long)]
        json: bool,
    },
    /// Shows one account, without secrets.
    Show {
        /// The account id.
        id: i64,
        /// Print a JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Deletes one account.
    Remove {
        /// The account id.
        id: i64,
    },
    /// Sets an account's status (`active` also clears its error message).
    SetStatus {
        /// The account id.
        id: i64,
        /// The new status.
        status: StatusArg,
    },
}

/// An account status on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum StatusArg {
    /// Refreshed and served.
    Active,
    /// Kept, not refreshed by the background refresher.
    Disabled,
    /// Marked failed (non-retryable); not refreshed by the background refresher.
    Error,
}

impl From<StatusArg> for refresh_facade::AccountStatus {
    fn from(status: StatusArg) -> Self {
        match status {
            StatusArg::Active => Self::Active,
            StatusArg::Disabled => Self::Disabled,
            StatusArg::Error => Self::Error,
        }
    }
}

/// `accounts add` flags.
#[derive(Debug, Args)]
pub(crate) struct AddArgs {
    /// A name for the account (logs and listings).
    #[arg(long)]
    pub(crate) name: String,
    /// `anthropic` (or `claude`), `openai`, `gemini` or `antigravity`.
    #[arg(long)]
    pub(crate) platform: String,
    /// `oauth` (refreshed), or `setup-token`, `apikey`, `upstream`, `bedrock`
    /// (stored and served as they are).
    #[arg(long = "type", default_value = "oauth")]
    pub(crate) account_type: String,
    /// A JSON file holding the credentials object (`-` or absent: stdin).
    #[arg(long, value_name = "PATH")]
    pub(crate) credentials_file: Option<PathBuf>,
    /// Extra data, a JSON object.
    #[arg(long, value_name = "JSON")]
    pub(crate) extra: Option<String>,
    /// The proxy of every upstream call of this account (http, https,
    /// socks5, socks5h).
    #[arg(long, value_name = "URL")]
    pub(crate) proxy: Option<String>,
    /// The initial status.
    #[arg(long, default_value = "active")]
    pub(crate) status: StatusArg,
    /// The scheduling priority.
    #[arg(long, default_value_t = 0)]
    pub(crate) priority: i32,
    /// Print the account as a JSON object.
    #[arg(long)]
    pub(crate) json: bool,
}
