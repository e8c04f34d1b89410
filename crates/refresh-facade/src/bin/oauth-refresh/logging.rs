//! Logs: tracing to stderr, text or JSON lines, filtered by `log.level`.

use tracing_subscriber::EnvFilter;

use crate::config::LogSection;
use crate::error::CliError;

/// Installs the subscriber. `default_level` applies when `log.level` is
/// not set.
pub(crate) fn init(log: &LogSection, default_level: &str) -> Result<(), CliError> {
    let level = log.level.as_deref().unwrap_or(default_level);
    let filter = EnvFilter::try_new(level).map_err(|_| {
        CliError::config(
            "configuration: key `log.level`: expected a level (error, warn, info, debug, trace) or a tracing filter",
        )
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let installed = if log.json {
        builder.json().try_init()
    } else {
        builder.with_ansi(false).try_init()
    };
    // A second init (tests) keeps the first subscriber.
    let _ = installed;
    Ok(())
}
