//! [`CliError`]: one clear line on stderr and an exit code; `--verbose`
//! adds the cause chain. No secret is ever part of a message.

use std::error::Error as StdError;
use std::fmt;
use std::process::ExitCode;

/// A command that failed.
pub(crate) struct CliError {
    message: String,
    source: Option<Box<dyn StdError + Send + Sync>>,
    code: u8,
}

impl fmt::Debug for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl CliError {
    /// A failure at run time (exit code 1).
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            source: None,
            code: 1,
        }
    }

    /// A bad configuration, flag or input file (exit code 2).
    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self {
            code: 2,
            ..Self::new(message)
        }
    }

    /// `message` followed by `error`'s own one-line text, keeping it as the
    /// cause for `--verbose`.
    pub(crate) fn with(
        message: impl fmt::Display,
        error: impl StdError + Send + Sync + 'static,
    ) -> Self {
        // The line carries the reason, not only the outermost context
        // ("refresh of account 3 failed"): each cause in the chain whose
        // text is not already part of the line is appended.
        let mut line = format!("{message}: {error}");
        let mut cause = error.source();
        while let Some(inner) = cause {
            let text = inner.to_string();
            if !text.is_empty() && !line.contains(&text) {
                line.push_str(": ");
                line.push_str(&text);
            }
            cause = inner.source();
        }
        Self {
            message: line,
            source: Some(Box::new(error)),
            code: 1,
        }
    }

    /// Prints the error on stderr and returns the exit code.
    pub(crate) fn report(&self, verbose: bool) -> ExitCode {
        let mut text = format!("oauth-refresh: error: {}", one_line(&self.message));
        if verbose {
            let mut cause = self.source.as_deref().and_then(StdError::source);
            while let Some(error) = cause {
                text.push_str(&format!("\n  caused by: {}", one_line(&error.to_string())));
                cause = error.source();
            }
        }
        crate::output::eprint_line(&text);
        ExitCode::from(self.code)
    }
}

/// Collapses whitespace runs (a driver message with newlines) to one space.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl From<refresh_facade::StackError> for CliError {
    fn from(error: refresh_facade::StackError) -> Self {
        let code = match error {
            refresh_facade::StackError::Database { .. } => 1,
            _ => 2,
        };
        Self {
            code,
            ..Self::with("cannot start", error)
        }
    }
}
