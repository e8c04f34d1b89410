//! Building the stack from the configuration, and `migrate`.

use std::sync::Arc;

use refresh_facade::{FlowObserver, RefreshStack};

use crate::config::{Loaded, redact_url};
use crate::error::CliError;
use crate::keys::{self, Missing};
use crate::output;
use crate::sqlite_file;

/// Builds the stack the configuration describes. `observer` receives the
/// flow's events (metrics).
pub(crate) async fn build(
    loaded: &Loaded,
    migrate: bool,
    missing: Missing,
    observer: Option<Arc<dyn FlowObserver>>,
) -> Result<(RefreshStack, keys::Resolved), CliError> {
    let c = &loaded.config;
    // Only `migrate` creates a SQLite database (readable by its owner
    // only); every other command opens an existing file, so a typo in the
    // path is an error rather than a new empty database.
    let url = if migrate {
        sqlite_file::create_private(&c.database_url)?;
        c.database_url.clone()
    } else {
        sqlite_file::require_existing(&c.database_url)?;
        sqlite_file::existing_only(&c.database_url)
    };
    let resolved = keys::resolve(loaded, missing)?;
    let mut builder = RefreshStack::builder()
        .database_config(c.database.to_config(&url))
        .migrate(migrate)
        .sealing(resolved.sealing.clone())
        .providers(c.providers.clone())
        .flow(c.flow.to_config())
        .background(c.background.to_config())
        .skew(c.flow.skew)
        .local_max_age(c.flow.local_max_age);
    if let Some(url) = &c.redis_url {
        let mut redis = refresh_facade::RedisConfig::new(url.clone())
            .map_err(|e| CliError::config(format!("configuration: key `redis_url`: {e}")))?
            .with_prefix(c.redis.key_prefix.clone())
            .with_command_timeout(c.redis.command_timeout);
        redis.connect_timeout = c.redis.connect_timeout;
        redis
            .validate()
            .map_err(|e| CliError::config(format!("configuration: section `redis`: {e}")))?;
        builder = builder.redis(redis);
    }
    if let Some(observer) = observer {
        builder = builder.observer(observer);
    }
    let stack = builder.build().await.map_err(|error| {
        if error.setting() != "encryption_key" {
            return CliError::from(error);
        }
        let mut source = resolved.source.clone();
        if let Some(path) = &resolved.generated {
            // A key generated just now cannot be the one that sealed the
            // stored credentials: the real one is missing. Leave no
            // useless key file behind.
            let _ = std::fs::remove_file(path);
            source = format!(
                "{} was missing and a new key would not open them; restore the key file or set encryption_key",
                path.display()
            );
        }
        CliError::config(format!("cannot start: {error} (key source: {source})"))
    })?;
    Ok((stack, resolved))
}

/// The end of a one-shot command (`token`, `refresh`, `accounts import`,
/// `accounts add`): waits, bounded by the shutdown grace, for work this
/// process started in the background (a detached rescue of an upstream
/// answer the database refused, a consumed-mark retry), so the exit does
/// not kill the only copy of a rotation.
pub(crate) async fn settle(stack: &RefreshStack, loaded: &Loaded) -> Result<(), CliError> {
    crate::worker::finish(stack, loaded.config.shutdown_grace()).await
}

/// `migrate`: applies the migrations; generates the key file when no key
/// is configured.
pub(crate) async fn migrate(loaded: &Loaded) -> Result<(), CliError> {
    let (stack, resolved) = build(loaded, true, Missing::Generate, None).await?;
    if let Some(path) = &resolved.generated {
        output::eprint_line(&format!(
            "generated a new sealing key in {} (mode 0600); every command reads it from there. Back it up: without it the stored credentials cannot be read.",
            path.display()
        ));
    }
    let counts = stack
        .catalog()
        .count_by_status(None)
        .await
        .map_err(|e| CliError::with("cannot read the accounts table", e))?;
    output::print_line(&format!(
        "database {} is migrated ({} accounts); sealing: {}",
        redact_url(&loaded.config.database_url),
        counts.active + counts.disabled + counts.error,
        resolved.source
    ));
    Ok(())
}
