//! The configuration: a TOML file, `OAUTH_REFRESH_*` variables and flags,
//! layered with figment. Unknown keys are errors naming the key and where
//! it came from; durations read `"60s"`, `"5m"` or a number of seconds.

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use refresh_facade::{BackgroundConfig, FlowConfig, ProvidersConfig, Secret};
use serde::{Deserialize, Serialize};

use crate::cli::Global;
use crate::error::CliError;

/// The configuration file read when `--config` is not given.
pub(crate) const DEFAULT_CONFIG_FILE: &str = "oauth-refresh.toml";
/// The prefix of the environment variables.
pub(crate) const ENV_PREFIX: &str = "OAUTH_REFRESH_";

/// Everything the binary reads.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    /// `sqlite://PATH?mode=rwc`, `postgres://...`.
    #[serde(default = "default_database_url", deserialize_with = "lenient::string")]
    pub(crate) database_url: String,
    /// Enables the Redis lease, shared cache and notifications.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub(crate) redis_url: Option<String>,
    /// The sealing key (base64 or hex of 32 bytes).
    #[serde(default, deserialize_with = "lenient::opt_secret")]
    pub(crate) encryption_key: Option<Secret>,
    /// A file holding the sealing key.
    #[serde(default)]
    pub(crate) encryption_key_file: Option<PathBuf>,
    /// Keys still opened during a rotation (never used to seal).
    #[serde(default, deserialize_with = "lenient::secret_list")]
    pub(crate) previous_encryption_keys: Vec<Secret>,
    /// Store credentials unencrypted (only without a key).
    #[serde(default)]
    pub(crate) allow_plaintext: bool,
    /// How long `run` and `serve` wait for refreshes in flight at shutdown;
    /// default (and least): the flow's [`FlowConfig::refresh_deadline`].
    #[serde(default, with = "opt_duration")]
    pub(crate) shutdown_grace: Option<Duration>,
    /// Pool settings.
    #[serde(default)]
    pub(crate) database: DatabaseSection,
    /// Redis settings besides the URL.
    #[serde(default)]
    pub(crate) redis: RedisSection,
    /// `[providers.claude]`, `[providers.openai]`, `[providers.gemini]`,
    /// `[providers.antigravity]`, `[providers.http]`.
    #[serde(default)]
    pub(crate) providers: ProvidersConfig,
    /// The refresh flow.
    #[serde(default)]
    pub(crate) flow: FlowSection,
    /// The background refresher.
    #[serde(default)]
    pub(crate) background: BackgroundSection,
    /// The HTTP sidecar.
    #[serde(default)]
    pub(crate) serve: ServeSection,
    /// Logging.
    #[serde(default)]
    pub(crate) log: LogSection,
}

fn default_database_url() -> String {
    "sqlite://oauth-refresh.db?mode=rwc".into()
}

impl Config {
    /// How long a shutdown waits for refreshes in flight: `shutdown_grace`,
    /// or the longest a started refresh can take.
    pub(crate) fn shutdown_grace(&self) -> Duration {
        self.shutdown_grace
            .unwrap_or_else(|| self.flow.to_config().refresh_deadline())
    }

    /// Checks what figment cannot: zero or absurd durations and sizes,
    /// empty URLs, and combinations of keys; each error names the key.
    fn validate(&self) -> Result<(), String> {
        const DAY: Duration = Duration::from_secs(24 * 3600);
        const HOUR: Duration = Duration::from_secs(3600);
        let human = |d: Duration| humantime::format_duration(d).to_string();
        for (key, value, max) in [
            (
                "database.connect_timeout",
                self.database.connect_timeout,
                HOUR,
            ),
            (
                "database.acquire_timeout",
                self.database.acquire_timeout,
                HOUR,
            ),
            (
                "database.sqlite_busy_timeout",
                self.database.sqlite_busy_timeout,
                HOUR,
            ),
            ("redis.command_timeout", self.redis.command_timeout, HOUR),
            ("redis.connect_timeout", self.redis.connect_timeout, HOUR),
            (
                "serve.header_read_timeout",
                self.serve.header_read_timeout,
                HOUR,
            ),
            ("flow.skew", self.flow.skew, DAY),
            ("flow.local_max_age", self.flow.local_max_age, DAY),
            (
                "background.window",
                self.background.window,
                DAY.saturating_mul(30),
            ),
            ("background.interval", self.background.interval, DAY),
            ("background.max_backoff", self.background.max_backoff, DAY),
        ] {
            if value.is_zero() || value > max {
                return Err(format!(
                    "key `{key}`: must be positive and at most {} (found {})",
                    human(max),
                    human(value)
                ));
            }
        }
        for (key, value, max) in [
            (
                "database.max_connections",
                u64::from(self.database.max_connections),
                1000,
            ),
            (
                "background.concurrency",
                self.background.concurrency as u64,
                10_000,
            ),
            (
                "background.page_size",
                self.background.page_size as u64,
                100_000,
            ),
        ] {
            if value == 0 || value > max {
                return Err(format!(
                    "key `{key}`: must be between 1 and {max} (found {value})"
                ));
            }
        }
        if self.database_url.trim().is_empty() {
            return Err(
                "key `database_url`: is empty (expected sqlite://PATH?mode=rwc or postgres://...)"
                    .into(),
            );
        }
        if self.serve.listen.trim().is_empty() {
            return Err("key `serve.listen`: is empty (expected IP:PORT)".into());
        }
        let named = |section: &str, error: refresh_facade::ConfigError| match error {
            refresh_facade::ConfigError::Invalid { field, reason } => {
                let field = match field {
                    "max_retries" => "retries",
                    "retry_backoff" => "backoff",
                    other => other,
                };
                format!("key `{section}.{field}`: {reason}")
            }
            other => format!("section `{section}`: {other}"),
        };
        self.flow
            .to_config()
            .validate()
            .map_err(|e| named("flow", e))?;
        self.background
            .to_config()
            .validate()
            .map_err(|e| named("background", e))?;
        let needed = self.flow.to_config().refresh_deadline();
        if let Some(grace) = self.shutdown_grace
            && grace < needed
        {
            return Err(format!(
                "key `shutdown_grace` ({}) is shorter than a started refresh can take ({}: flow.upstream_timeout + flow.upstream_grace + flow.persist_attempts × flow.persist_attempt_timeout + flow.release_timeout); a shutdown could abandon a refresh that rotates the grant upstream and is never stored. Raise shutdown_grace, lower flow.upstream_timeout, or leave shutdown_grace unset",
                humantime::format_duration(grace),
                humantime::format_duration(needed)
            ));
        }
        Ok(())
    }
}

/// `[database]`: pool settings of `database_url`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct DatabaseSection {
    /// Pool size.
    pub(crate) max_connections: u32,
    /// Deadline of opening one connection.
    #[serde(with = "duration")]
    pub(crate) connect_timeout: Duration,
    /// Deadline of getting a connection from the pool.
    #[serde(with = "duration")]
    pub(crate) acquire_timeout: Duration,
    /// SQLite: how long to wait for another process's write lock.
    #[serde(with = "duration")]
    pub(crate) sqlite_busy_timeout: Duration,
    /// SQLite: `full` (default) or `normal`.
    pub(crate) sqlite_synchronous: refresh_facade::seaorm::SqliteSynchronous,
}

impl Default for DatabaseSection {
    fn default() -> Self {
        let d = refresh_facade::DatabaseConfig::default();
        Self {
            max_connections: d.max_connections,
            connect_timeout: d.connect_timeout,
            acquire_timeout: d.acquire_timeout,
            sqlite_busy_timeout: d.sqlite_busy_timeout,
            sqlite_synchronous: d.sqlite_synchronous,
        }
    }
}

impl DatabaseSection {
    pub(crate) fn to_config(&self, url: &str) -> refresh_facade::DatabaseConfig {
        refresh_facade::DatabaseConfig {
            url: url.to_owned(),
            max_connections: self.max_connections,
            min_connections: 0,
            connect_timeout: self.connect_timeout,
            acquire_timeout: self.acquire_timeout,
            sqlite_busy_timeout: self.sqlite_busy_timeout,
            sqlite_synchronous: self.sqlite_synchronous,
        }
    }
}

/// `[redis]`: settings besides `redis_url`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RedisSection {
    /// Prefix of every key and channel.
    pub(crate) key_prefix: String,
    /// Bound of every command.
    #[serde(with = "duration")]
    pub(crate) command_timeout: Duration,
    /// Bound of a connection attempt.
    #[serde(with = "duration")]
    pub(crate) connect_timeout: Duration,
}

impl Default for RedisSection {
    fn default() -> Self {
        Self {
            key_prefix: refresh_facade::redis::DEFAULT_PREFIX.into(),
            command_timeout: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(2),
        }
    }
}

/// `[flow]`: deadlines and lifetimes of the refresh flow (core's
/// `FlowConfig`), plus the request path's skew.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct FlowSection {
    #[serde(with = "duration")]
    pub(crate) lease_ttl: Duration,
    #[serde(with = "duration")]
    pub(crate) upstream_timeout: Duration,
    #[serde(with = "duration")]
    pub(crate) upstream_grace: Duration,
    #[serde(with = "duration")]
    pub(crate) claim_ttl: Duration,
    #[serde(with = "duration")]
    pub(crate) quarantine: Duration,
    #[serde(with = "duration")]
    pub(crate) consumed_horizon: Duration,
    pub(crate) persist_attempts: u32,
    #[serde(with = "duration")]
    pub(crate) persist_attempt_timeout: Duration,
    #[serde(with = "duration")]
    pub(crate) persist_backoff: Duration,
    #[serde(with = "duration")]
    pub(crate) release_timeout: Duration,
    #[serde(with = "duration")]
    pub(crate) storage_timeout: Duration,
    /// The request path refreshes tokens expiring within this.
    #[serde(with = "duration")]
    pub(crate) skew: Duration,
    /// The in-process token cache reads the account again after this, so a
    /// relogin or disable made by another process is seen within it.
    #[serde(with = "duration")]
    pub(crate) local_max_age: Duration,
}

impl Default for FlowSection {
    fn default() -> Self {
        let f = FlowConfig::default();
        Self {
            lease_ttl: f.lease_ttl,
            upstream_timeout: f.upstream_timeout,
            upstream_grace: f.upstream_grace,
            claim_ttl: f.claim_ttl,
            quarantine: f.quarantine,
            consumed_horizon: f.consumed_horizon,
            persist_attempts: f.persist_attempts,
            persist_attempt_timeout: f.persist_attempt_timeout,
            persist_backoff: f.persist_backoff,
            release_timeout: f.release_timeout,
            storage_timeout: f.storage_timeout,
            skew: refresh_facade::core::provider::REFRESH_SKEW,
            local_max_age: refresh_facade::core::provider::LOCAL_MAX_AGE,
        }
    }
}

impl FlowSection {
    pub(crate) fn to_config(&self) -> FlowConfig {
        FlowConfig {
            lease_ttl: self.lease_ttl,
            upstream_timeout: self.upstream_timeout,
            upstream_grace: self.upstream_grace,
            claim_ttl: self.claim_ttl,
            quarantine: self.quarantine,
            consumed_horizon: self.consumed_horizon,
            persist_attempts: self.persist_attempts,
            persist_attempt_timeout: self.persist_attempt_timeout,
            persist_backoff: self.persist_backoff,
            release_timeout: self.release_timeout,
            storage_timeout: self.storage_timeout,
        }
    }
}

/// `[background]`: the background refresher (core's `BackgroundConfig`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct BackgroundSection {
    /// Time between cycles.
    #[serde(with = "duration")]
    pub(crate) interval: Duration,
    /// Refresh accounts expiring within this.
    #[serde(with = "duration")]
    pub(crate) window: Duration,
    /// Accounts refreshed at once.
    pub(crate) concurrency: usize,
    /// Attempts per account per cycle.
    pub(crate) retries: u32,
    /// First retry backoff (doubles, jittered).
    #[serde(with = "duration")]
    pub(crate) backoff: Duration,
    /// Cap of one backoff.
    #[serde(with = "duration")]
    pub(crate) max_backoff: Duration,
    /// Accounts per listing page.
    pub(crate) page_size: usize,
    /// No new attempt of an account starts after this.
    #[serde(with = "duration")]
    pub(crate) account_deadline: Duration,
}

impl Default for BackgroundSection {
    fn default() -> Self {
        let b = BackgroundConfig::default();
        Self {
            interval: b.interval,
            window: b.window,
            concurrency: b.concurrency,
            retries: b.max_retries,
            backoff: b.retry_backoff,
            max_backoff: b.max_backoff,
            page_size: b.page_size,
            account_deadline: b.account_deadline,
        }
    }
}

impl BackgroundSection {
    pub(crate) fn to_config(&self) -> BackgroundConfig {
        BackgroundConfig {
            interval: self.interval,
            window: self.window,
            max_retries: self.retries,
            retry_backoff: self.backoff,
            max_backoff: self.max_backoff,
            concurrency: self.concurrency,
            page_size: self.page_size,
            account_deadline: self.account_deadline,
            ..BackgroundConfig::default()
        }
    }
}

/// `[serve]`: the HTTP sidecar.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ServeSection {
    /// `IP:PORT` to listen on.
    #[serde(deserialize_with = "lenient::string")]
    pub(crate) listen: String,
    /// Bearer keys accepted on `/v1` (a list, or comma-separated), each at
    /// least 16 characters.
    #[serde(deserialize_with = "lenient::secret_list")]
    pub(crate) api_keys: Vec<Secret>,
    /// `[serve.ui]`: the status page.
    pub(crate) ui: crate::serve::UiSection,
    /// A client that has not sent a request's headers within this is
    /// disconnected.
    #[serde(with = "duration")]
    pub(crate) header_read_timeout: Duration,
}

impl Default for ServeSection {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            api_keys: Vec::new(),
            ui: crate::serve::UiSection::default(),
            header_read_timeout: Duration::from_secs(10),
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct LogSection {
    /// A tracing filter (`info`, `warn,refresh_core=debug`); default
    /// `info` for `run` and `serve`, `warn` for `migrate`, `error` for
    /// `demo`, `token`, `refresh` and `accounts`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) level: Option<String>,
    /// JSON lines instead of text.
    pub(crate) json: bool,
}

/// A loaded configuration and where it came from.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) config: Config,
    /// The file read, if any.
    pub(crate) file: Option<PathBuf>,
    /// Where relative paths (the key file) resolve: the file's directory,
    /// or the working directory.
    pub(crate) base_dir: PathBuf,
}

/// Reads the configuration: defaults < file < environment < flags
/// (`overrides` holds the command's own flags as dotted keys).
///
/// # Errors
/// A one-line [`CliError`] naming the file or variable and the key.
pub(crate) fn load(global: &Global, overrides: &[(&str, String)]) -> Result<Loaded, CliError> {
    let file = match &global.config {
        Some(path) => {
            if !path.is_file() {
                return Err(CliError::config(format!(
                    "config file {}: not found",
                    path.display()
                )));
            }
            Some(path.clone())
        }
        None => Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|p| p.is_file()),
    };
    let mut figment = Figment::new();
    if let Some(path) = &file {
        check_toml_syntax(path)?;
        figment = figment.merge(Toml::file_exact(path));
    }
    figment = figment.merge(TextEnv(
        Env::prefixed(ENV_PREFIX).split("__").ignore(&["config"]),
    ));
    let mut flags: Vec<(&str, String)> = Vec::new();
    if let Some(url) = &global.database_url {
        flags.push(("database_url", url.clone()));
    }
    if let Some(url) = &global.redis_url {
        flags.push(("redis_url", url.clone()));
    }
    if let Some(level) = &global.log_level {
        flags.push(("log.level", level.clone()));
    }
    flags.extend(overrides.iter().cloned());
    for (key, value) in flags {
        figment = figment.merge(Serialized::default(key, value));
    }
    if global.log_json {
        figment = figment.merge(Serialized::default("log.json", true));
    }
    // Lossy: a number or boolean setting given as text (every variable's
    // value is text, see `TextEnv`) is read as a number or boolean.
    let mut config: Config = figment
        .extract_lossy()
        .map_err(|e| CliError::config(describe(&e)))?;
    config
        .validate()
        .map_err(|e| CliError::config(format!("configuration: {e}")))?;
    let base_dir = file
        .as_deref()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    // A relative SQLite path from the file (or the default, which lives
    // beside the file like the key) resolves against the file's directory;
    // one from the environment or a flag against the working directory.
    let from_file_or_default = figment
        .find_metadata("database_url")
        .is_none_or(|md| md.source.as_ref().and_then(|s| s.file_path()).is_some());
    if from_file_or_default {
        config.database_url = crate::sqlite_file::resolve(&config.database_url, &base_dir);
    }
    Ok(Loaded {
        config,
        file,
        base_dir,
    })
}

/// The `OAUTH_REFRESH_*` variables with every value kept as the text it is.
/// figment's own `Env` parses values (`000123` → the number 123, `[x]` → a
/// list, a 64-digit hex key → a float): an API key, a password or a key
/// made of digits would be mangled. Settings that are numbers or booleans
/// are read from the text by `extract_lossy`.
struct TextEnv(Env);

impl figment::Provider for TextEnv {
    fn metadata(&self) -> figment::Metadata {
        self.0.metadata()
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        use figment::value::{Dict, Value};
        fn insert(dict: &mut Dict, path: &[&str], value: String) {
            match path {
                [] => {}
                [last] => {
                    dict.insert((*last).to_owned(), Value::from(value));
                }
                [first, rest @ ..] => {
                    let entry = dict
                        .entry((*first).to_owned())
                        .or_insert_with(|| Value::from(Dict::new()));
                    if entry.as_dict().is_none() {
                        *entry = Value::from(Dict::new());
                    }
                    if let Value::Dict(_, inner) = entry {
                        insert(inner, rest, value);
                    }
                }
            }
        }
        let mut root = Dict::new();
        for (key, value) in self.0.iter() {
            let path: Vec<&str> = key.as_str().split('.').collect();
            insert(&mut root, &path, value);
        }
        Ok(figment::Profile::Default.collect(root))
    }
}

/// Reads the file as TOML first, for a one-line syntax error with its
/// position (figment would print the parser's multi-line snippet).
fn check_toml_syntax(path: &Path) -> Result<(), CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::config(format!("config file {}: cannot read: {e}", path.display()))
    })?;
    if let Err(error) = text.parse::<toml::Table>() {
        let position = error
            .span()
            .map(|span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                format!(" at line {line}, column {column}")
            })
            .unwrap_or_default();
        let message = error
            .message()
            .lines()
            .next()
            .unwrap_or("invalid TOML")
            .trim();
        return Err(CliError::config(format!(
            "config file {}: invalid TOML{position}: {message}",
            path.display()
        )));
    }
    Ok(())
}

/// One line for a figment error: where (file or variable), which key, and
/// what is wrong, without quoting the value (it may be a secret).
fn describe(error: &figment::Error) -> String {
    use figment::error::Kind;
    let key = error.path.join(".");
    let location = match &error.metadata {
        Some(md) => match md.source.as_ref().and_then(|s| s.file_path()) {
            Some(path) => format!("config file {}", path.display()),
            None if md.name.contains("environment") => format!(
                "environment variable {ENV_PREFIX}{}",
                error.path.join("__").to_uppercase()
            ),
            None => "command line".to_owned(),
        },
        None => "configuration".to_owned(),
    };
    let what = match &error.kind {
        Kind::UnknownField(field, expected) => {
            let key = if key.is_empty() {
                field.clone()
            } else {
                key.clone()
            };
            return format!(
                "{location}: unknown key `{key}` (expected one of: {})",
                expected.join(", ")
            );
        }
        Kind::MissingField(field) => format!("missing key `{field}`"),
        Kind::InvalidType(actual, expected) => {
            format!("expected {expected}, found {}", actual_kind(actual))
        }
        Kind::InvalidValue(actual, expected) => {
            format!("invalid {}: expected {expected}", actual_kind(actual))
        }
        Kind::UnknownVariant(_, expected) => {
            format!("unknown value (expected one of: {})", expected.join(", "))
        }
        Kind::Message(message) => message.clone(),
        other => other.to_string(),
    };
    if key.is_empty() {
        format!("{location}: {what}")
    } else {
        format!("{location}: key `{key}`: {what}")
    }
}

/// The kind of a found value, without the value.
fn actual_kind(actual: &figment::error::Actual) -> &'static str {
    use figment::error::Actual;
    match actual {
        Actual::Bool(_) => "a boolean",
        Actual::Unsigned(_) | Actual::Signed(_) => "an integer",
        Actual::Float(_) => "a float",
        Actual::Char(_) | Actual::Str(_) => "a string",
        Actual::Bytes(_) => "bytes",
        Actual::Unit | Actual::Option => "nothing",
        Actual::Seq => "a list",
        Actual::Map => "a table",
        _ => "a value of another kind",
    }
}

/// Durations as `"60s"`, `"5m"`, `"1h 30m"`, or a number of seconds.
pub(crate) mod duration {
    use std::fmt;
    use std::time::Duration;

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(DurationVisitor)
    }

    struct DurationVisitor;

    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration such as \"60s\", \"5m\", \"1h 30m\", or a number of seconds")
        }

        fn visit_u64<E: de::Error>(self, secs: u64) -> Result<Duration, E> {
            Ok(Duration::from_secs(secs))
        }

        fn visit_i64<E: de::Error>(self, secs: i64) -> Result<Duration, E> {
            u64::try_from(secs)
                .map(Duration::from_secs)
                .map_err(|_| E::custom("a duration cannot be negative"))
        }

        fn visit_f64<E: de::Error>(self, secs: f64) -> Result<Duration, E> {
            Duration::try_from_secs_f64(secs).map_err(|_| {
                E::custom("a duration must be a finite, non-negative number of seconds")
            })
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
            humantime::parse_duration(text.trim()).map_err(|e| {
                E::custom(format!(
                    "expected a duration such as \"60s\", \"5m\" or \"1h 30m\" ({e})"
                ))
            })
        }
    }
}

/// An optional [`duration`].
pub(crate) mod opt_duration {
    use std::time::Duration;

    use serde::Deserializer;

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        super::duration::deserialize(d).map(Some)
    }
}

/// Values that may arrive from the environment already parsed as numbers
/// or booleans (figment parses variable values), read back as text.
mod lenient {
    use std::fmt;

    use refresh_facade::Secret;
    use serde::Deserializer;
    use serde::de::{self, SeqAccess, Visitor};

    struct Text;

    impl<'de> Visitor<'de> for Text {
        type Value = String;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
            Ok(v.to_string())
        }

        fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
            Ok(v.to_string())
        }
    }

    pub(super) fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        d.deserialize_any(Text)
    }

    pub(super) fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        string(d).map(|s| Some(s).filter(|s| !s.trim().is_empty()))
    }

    pub(super) fn opt_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
        opt_string(d).map(|s| s.map(Secret::from))
    }

    struct List;

    impl<'de> Visitor<'de> for List {
        type Value = Vec<String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of strings, or one comma-separated string")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<String>, E> {
            Ok(v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect())
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Vec<String>, E> {
            Ok(vec![v.to_string()])
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Vec<String>, E> {
            Ok(vec![v.to_string()])
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
            let mut out = Vec::new();
            while let Some(item) = seq.next_element::<Item>()? {
                if !item.0.trim().is_empty() {
                    out.push(item.0);
                }
            }
            Ok(out)
        }
    }

    struct Item(String);

    impl<'de> serde::Deserialize<'de> for Item {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(Text).map(Item)
        }
    }

    pub(super) fn secret_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Secret>, D::Error> {
        d.deserialize_any(List)
            .map(|v| v.into_iter().map(Secret::from).collect())
    }
}

/// The effective configuration as TOML, secrets redacted.
pub(crate) fn render(loaded: &Loaded, key_source: &str) -> String {
    use toml::{Table, Value};
    let c = &loaded.config;
    let redacted = || Value::String("[redacted]".into());
    let mut root = Table::new();
    root.insert(
        "database_url".into(),
        Value::String(redact_url(&c.database_url)),
    );
    if let Some(url) = &c.redis_url {
        root.insert("redis_url".into(), Value::String(redact_url(url)));
    }
    if c.encryption_key.is_some() {
        root.insert("encryption_key".into(), redacted());
    }
    if let Some(path) = &c.encryption_key_file {
        root.insert(
            "encryption_key_file".into(),
            Value::String(path.display().to_string()),
        );
    }
    if !c.previous_encryption_keys.is_empty() {
        root.insert(
            "previous_encryption_keys".into(),
            Value::Array(
                c.previous_encryption_keys
                    .iter()
                    .map(|_| redacted())
                    .collect(),
            ),
        );
    }
    root.insert("allow_plaintext".into(), Value::Boolean(c.allow_plaintext));
    root.insert(
        "shutdown_grace".into(),
        Value::String(humantime::format_duration(c.shutdown_grace()).to_string()),
    );
    let section = |value: &dyn erased::Ser| value.to_table();
    root.insert("database".into(), Value::Table(section(&c.database)));
    root.insert("redis".into(), Value::Table(section(&c.redis)));
    root.insert(
        "providers".into(),
        Value::Table(providers_table(&c.providers)),
    );
    root.insert("flow".into(), Value::Table(section(&c.flow)));
    root.insert("background".into(), Value::Table(section(&c.background)));
    let mut serve = Table::new();
    serve.insert("listen".into(), Value::String(c.serve.listen.clone()));
    serve.insert(
        "api_keys".into(),
        Value::Array(c.serve.api_keys.iter().map(|_| redacted()).collect()),
    );
    serve.insert(
        "header_read_timeout".into(),
        Value::String(humantime::format_duration(c.serve.header_read_timeout).to_string()),
    );
    root.insert("serve".into(), Value::Table(serve));
    root.insert("log".into(), Value::Table(section(&c.log)));
    let source = match &loaded.file {
        Some(path) => format!("# file: {}", path.display()),
        None => "# file: none (defaults, environment and flags)".to_owned(),
    };
    format!(
        "{source}\n# sealing: {key_source}\n{}",
        toml::to_string(&root).unwrap_or_default()
    )
}

/// Serialize sections into TOML tables without naming each type.
mod erased {
    pub(super) trait Ser {
        fn to_table(&self) -> toml::Table;
    }

    impl<T: serde::Serialize> Ser for T {
        fn to_table(&self) -> toml::Table {
            toml::Table::try_from(self).unwrap_or_default()
        }
    }
}

/// The provider settings an operator sets most: endpoints, clients and
/// timeouts; secrets redacted.
fn providers_table(p: &ProvidersConfig) -> toml::Table {
    use toml::{Table, Value};
    let s = |v: &str| Value::String(v.to_owned());
    // An endpoint may carry credentials (`https://user:pass@host/...`).
    let u = |v: &str| Value::String(redact_url(v));
    let d = |v: Duration| Value::String(humantime::format_duration(v).to_string());
    let mut out = Table::new();
    if let Some(base) = &p.base_url {
        out.insert("base_url".into(), u(base));
    }
    let mut http = Table::new();
    http.insert("connect_timeout".into(), d(p.http.connect_timeout));
    http.insert(
        "max_body_bytes".into(),
        Value::Integer(i64::try_from(p.http.max_body_bytes).unwrap_or(i64::MAX)),
    );
    out.insert("http".into(), Value::Table(http));
    #[cfg(feature = "claude")]
    {
        let c = &p.claude;
        let mut t = Table::new();
        t.insert("token_url".into(), u(&c.token_url));
        t.insert("client_id".into(), s(&c.client_id));
        t.insert("user_agent".into(), s(&c.user_agent));
        t.insert("timeout".into(), d(c.timeout));
        out.insert("claude".into(), Value::Table(t));
    }
    #[cfg(feature = "openai")]
    {
        let c = &p.openai;
        let mut t = Table::new();
        t.insert("token_url".into(), u(&c.token_url));
        t.insert("client_id".into(), s(&c.client_id));
        t.insert("scope".into(), s(&c.scope));
        t.insert("user_agent".into(), s(&c.user_agent));
        t.insert("timeout".into(), d(c.timeout));
        out.insert("openai".into(), Value::Table(t));
    }
    #[cfg(feature = "gemini")]
    {
        let c = &p.gemini;
        let mut t = Table::new();
        t.insert("token_url".into(), u(&c.token_url));
        t.insert("code_assist_url".into(), u(&c.code_assist_base_url));
        t.insert("resource_manager_url".into(), u(&c.resource_manager_url));
        t.insert("drive_about_url".into(), u(&c.drive_about_url));
        t.insert("builtin_client_id".into(), s(&c.builtin_client_id));
        t.insert("builtin_client_secret".into(), s("[redacted]"));
        if let Some(id) = &c.ai_studio_client_id {
            t.insert("ai_studio_client_id".into(), s(id));
        }
        if c.ai_studio_client_secret.is_some() {
            t.insert("ai_studio_client_secret".into(), s("[redacted]"));
        }
        t.insert("timeout".into(), d(c.timeout));
        out.insert("gemini".into(), Value::Table(t));
    }
    #[cfg(feature = "antigravity")]
    {
        let c = &p.antigravity;
        let mut t = Table::new();
        t.insert("token_url".into(), u(&c.token_url));
        t.insert(
            "code_assist_urls".into(),
            Value::Array(c.code_assist_base_urls.iter().map(|v| u(v)).collect()),
        );
        t.insert("client_id".into(), s(&c.client_id));
        t.insert("client_secret".into(), s("[redacted]"));
        t.insert("timeout".into(), d(c.timeout));
        out.insert("antigravity".into(), Value::Table(t));
    }
    let _ = (&s, &d, &u);
    out
}

/// `url` with its password replaced.
pub(crate) fn redact_url(url: &str) -> String {
    refresh_facade::DatabaseConfig::new(url).redacted_url()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_toml(text: &str) -> Result<Config, String> {
        Figment::new()
            .merge(Toml::string(text))
            .extract::<Config>()
            .map_err(|e| describe(&e))
    }

    #[test]
    fn durations_read_human_forms_and_seconds_and_errors_name_the_key() {
        let config = from_toml(
            "[flow]\nupstream_timeout = \"45s\"\n[background]\ninterval = \"5m\"\nwindow = 600\n",
        )
        .unwrap();
        assert_eq!(config.flow.upstream_timeout, Duration::from_secs(45));
        assert_eq!(config.background.interval, Duration::from_secs(300));
        assert_eq!(config.background.window, Duration::from_secs(600));
        let error = from_toml("[flow]\nlease_ttl = \"soon\"\n").unwrap_err();
        assert!(error.contains("`flow.lease_ttl`"), "{error}");
    }

    #[test]
    fn unknown_keys_are_named_and_values_never_quoted() {
        let error = from_toml("databse_url = \"x\"\n").unwrap_err();
        assert!(error.contains("unknown key `databse_url`"), "{error}");
        let error = from_toml("[serve]\nlisten = \"x\"\napi_key = [\"k\"]\n").unwrap_err();
        assert!(error.contains("`serve.api_key`"), "{error}");
        let error = from_toml("allow_plaintext = \"hunter2\"\n").unwrap_err();
        assert!(
            error.contains("`allow_plaintext`") && !error.contains("hunter2"),
            "{error}"
        );
        let error = from_toml("[providers.claude]\ntoken_ur = \"x\"\n").unwrap_err();
        assert!(error.contains("`providers.claude.token_ur`"), "{error}");
    }

    #[test]
    fn api_keys_read_a_list_or_a_comma_separated_string() {
        let config = from_toml("[serve]\napi_keys = \"a, b\"\n").unwrap();
        assert_eq!(config.serve.api_keys.len(), 2);
        let config = from_toml("[serve]\napi_keys = [\"a\", 12345]\n").unwrap();
        assert_eq!(config.serve.api_keys[1].expose(), "12345");
    }

    #[test]
    fn the_rendering_hides_every_secret() {
        let text = "database_url = \"postgres://app:pw-secret@db/x\"\nencryption_key = \"k-secret\"\n[serve]\napi_keys = [\"key-secret\"]\n";
        let loaded = Loaded {
            config: from_toml(text).unwrap(),
            file: None,
            base_dir: PathBuf::from("."),
        };
        let out = render(&loaded, "encryption_key");
        for secret in ["pw-secret", "k-secret", "key-secret", "GOCSPX"] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        assert!(out.contains("[redacted]"));
        out.parse::<toml::Table>().expect("the output is TOML");
    }
}
