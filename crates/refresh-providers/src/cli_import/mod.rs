//! Reading the credential files the official CLIs keep, normalized to
//! core's canonical credentials (pure functions over bytes: where the
//! file is and who may read it is the caller's policy).
//!
//! | CLI | Default path | Format |
//! |---|---|---|
//! | Claude Code | `~/.claude/.credentials.json` (`$CLAUDE_CONFIG_DIR`; macOS keeps it in the Keychain) | `{"claudeAiOauth": {"accessToken", "refreshToken", "expiresAt" (unix ms), "scopes": [..], "subscriptionType", "rateLimitTier"}}` |
//! | Codex | `~/.codex/auth.json` (`$CODEX_HOME/auth.json`) | `{"OPENAI_API_KEY", "tokens": {"id_token", "access_token", "refresh_token", "account_id"}, "last_refresh"}` (the expiry is the access token's JWT `exp`) |
//! | Gemini CLI | `~/.gemini/oauth_creds.json` | google-auth-library's `{"access_token", "refresh_token", "scope", "token_type", "id_token", "expiry_date" (unix ms)}` |
//!
//! Each parser returns a [`LoginOutcome`](crate::login::LoginOutcome)
//! (the same new-account record a login creates); a file without a
//! refresh token is [`CliImportError::MissingRefreshToken`]. Read
//! [`OWNERSHIP_WARNING`] to the operator: after an import the refresh
//! token belongs to oauth-refresh.

mod error;
mod json;

#[cfg(feature = "claude")]
mod claude_code;
#[cfg(feature = "openai")]
mod codex;
#[cfg(feature = "gemini")]
mod gemini_cli;

#[cfg(feature = "claude")]
pub use claude_code::parse_claude_code;
#[cfg(feature = "openai")]
pub use codex::parse_codex;
pub use error::CliImportError;
#[cfg(feature = "gemini")]
pub use gemini_cli::parse_gemini_cli;

/// What to tell the operator before importing: the CLI's copy of the
/// refresh token stops working once oauth-refresh refreshes it (rotating
/// upstreams revoke the old one).
pub const OWNERSHIP_WARNING: &str = "After the import, the refresh token belongs to oauth-refresh: \
its first refresh rotates the token (Claude, OpenAI), and the CLI's own copy then stops working \
(log the CLI in again to get a separate grant). Do not keep refreshing the same grant from both.";

/// The official CLIs whose credential files can be imported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CliKind {
    /// Claude Code (`.credentials.json`).
    ClaudeCode,
    /// Codex (`auth.json`).
    Codex,
    /// Gemini CLI (`oauth_creds.json`).
    GeminiCli,
}

impl CliKind {
    /// The name the CLI command takes: `claude-code`, `codex`,
    /// `gemini-cli`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClaudeCode => "claude-code",
            Self::Codex => "codex",
            Self::GeminiCli => "gemini-cli",
        }
    }

    /// The file's default path relative to the home directory (on
    /// Linux; see the module table for the environment overrides).
    pub fn default_relative_path(self) -> &'static str {
        match self {
            Self::ClaudeCode => ".claude/.credentials.json",
            Self::Codex => ".codex/auth.json",
            Self::GeminiCli => ".gemini/oauth_creds.json",
        }
    }
}

impl std::str::FromStr for CliKind {
    type Err = CliImportError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "claude-code" => Ok(Self::ClaudeCode),
            "codex" => Ok(Self::Codex),
            "gemini-cli" => Ok(Self::GeminiCli),
            _ => Err(CliImportError::UnknownCli),
        }
    }
}

/// Parses `bytes` as `kind`'s credential file.
///
/// # Errors
/// As the format's parser; [`CliImportError::UnsupportedCli`] when its
/// provider's feature is not built.
pub fn parse(kind: CliKind, bytes: &[u8]) -> Result<crate::login::LoginOutcome, CliImportError> {
    match kind {
        #[cfg(feature = "claude")]
        CliKind::ClaudeCode => parse_claude_code(bytes),
        #[cfg(feature = "openai")]
        CliKind::Codex => parse_codex(bytes),
        #[cfg(feature = "gemini")]
        CliKind::GeminiCli => parse_gemini_cli(bytes),
        #[allow(unreachable_patterns)]
        _ => {
            let _ = bytes;
            Err(CliImportError::UnsupportedCli)
        }
    }
}
