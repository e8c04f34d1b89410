//! [`CliImportError`].

/// A credential file that cannot be imported. Never carries a value from
/// the file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CliImportError {
    /// The bytes are not JSON (or not UTF-8).
    #[error("the credentials file is not JSON (line {line}, column {column})")]
    InvalidJson {
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
    },
    /// A required field is missing, blank or of the wrong type.
    #[error("the credentials file has no usable {field}")]
    MissingField {
        /// The field's path in the file.
        field: &'static str,
    },
    /// The file has no refresh token: nothing to keep the account alive.
    #[error("the credentials file has no refresh token; log the CLI in again (not an API key)")]
    MissingRefreshToken,
    /// An expiry that is not what the format says (e.g. seconds where
    /// the format has milliseconds).
    #[error("the credentials file's {field} is unusable: {reason}")]
    InvalidExpiry {
        /// The field.
        field: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// Not `claude-code`, `codex` or `gemini-cli`.
    #[error("unknown CLI: expected claude-code, codex or gemini-cli")]
    UnknownCli,
    /// The CLI's provider is not built into this binary.
    #[error("this build does not include that CLI's provider")]
    UnsupportedCli,
}
