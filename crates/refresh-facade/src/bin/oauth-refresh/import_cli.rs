//! `accounts import-cli`: imports the credentials file an official CLI
//! keeps (Claude Code, Codex, Gemini CLI), after a clear warning that the
//! refresh token then belongs to oauth-refresh.

use std::io::Read;
use std::path::PathBuf;

use clap::Args;
use refresh_facade::login::{self, OnboardingError};
use refresh_facade::providers::cli_import::{self, CliKind, OWNERSHIP_WARNING};

use crate::config::Loaded;
use crate::error::CliError;
use crate::keys::Missing;
use crate::output;

/// The largest credentials file read.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// `accounts import-cli` flags.
#[derive(Debug, Args)]
pub(crate) struct ImportCliArgs {
    /// `claude-code`, `codex` or `gemini-cli`.
    pub(crate) cli: String,
    /// The credentials file. Default: Claude Code
    /// `$CLAUDE_CONFIG_DIR/.credentials.json` or
    /// `~/.claude/.credentials.json`; Codex `$CODEX_HOME/auth.json` or
    /// `~/.codex/auth.json`; Gemini CLI `~/.gemini/oauth_creds.json`.
    pub(crate) path: Option<PathBuf>,
    /// The account name (default: the file's email, else
    /// `<platform>-<...>`).
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// The proxy of every upstream call of the account.
    #[arg(long, value_name = "URL")]
    pub(crate) proxy: Option<String>,
}

/// `accounts import-cli`.
pub(crate) async fn import_cli(loaded: &Loaded, args: ImportCliArgs) -> Result<(), CliError> {
    let kind: CliKind = args
        .cli
        .parse()
        .map_err(|e: cli_import::CliImportError| CliError::config(e.to_string()))?;
    let path = match args.path {
        Some(path) => path,
        None => default_path(kind)?,
    };
    let proxy = args
        .proxy
        .map(|p| {
            p.parse()
                .map_err(|e| CliError::config(format!("--proxy: {e}")))
        })
        .transpose()?;
    let mut bytes = Vec::new();
    std::fs::File::open(&path)
        .and_then(|f| f.take(MAX_FILE_BYTES).read_to_end(&mut bytes))
        .map_err(|e| CliError::config(format!("{}: cannot read: {}", path.display(), e.kind())))?;
    let mut outcome = cli_import::parse(kind, &bytes).map_err(|e| {
        CliError::config(format!(
            "{} ({}): {e}; nothing was imported",
            path.display(),
            kind.as_str()
        ))
    })?;
    if let Some(name) = args.name {
        outcome.name = name;
    }
    if proxy.is_some() {
        outcome.proxy = proxy;
    }
    output::eprint_line(&format!("warning: {OWNERSHIP_WARNING}"));
    let (stack, _) = crate::stack::build(loaded, false, Missing::Fail, None).await?;
    let account = login::store_outcome(&stack, outcome)
        .await
        .map_err(|e| match e {
            OnboardingError::Refused(refused) => CliError::config(format!(
                "{}: {refused}; nothing was imported",
                path.display()
            )),
            other => CliError::with("import-cli failed", other),
        })?;
    output::eprint_line(&format!(
        "imported account {} ({}, {}) from {}",
        account.id.get(),
        account.name,
        account.platform.as_str(),
        path.display()
    ));
    output::print_line(&account.id.get().to_string());
    Ok(())
}

/// The CLI's default credentials file.
fn default_path(kind: CliKind) -> Result<PathBuf, CliError> {
    let env_dir = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let overridden = match kind {
        CliKind::ClaudeCode => env_dir("CLAUDE_CONFIG_DIR").map(|d| d.join(".credentials.json")),
        CliKind::Codex => env_dir("CODEX_HOME").map(|d| d.join("auth.json")),
        CliKind::GeminiCli => None,
    };
    if let Some(path) = overridden {
        return Ok(path);
    }
    let home = env_dir("HOME")
        .ok_or_else(|| CliError::config("HOME is not set: pass the credentials file's path"))?;
    Ok(home.join(kind.default_relative_path()))
}
