//! Where the sealing key comes from: `encryption_key` (or
//! `OAUTH_REFRESH_ENCRYPTION_KEY`), `encryption_key_file`, the key file
//! `oauth-refresh.key` beside the configuration, or — only with
//! `allow_plaintext = true` — no key at all. `migrate` generates the key
//! file when none is configured.

use std::path::{Path, PathBuf};

use refresh_facade::keyfile::{DEFAULT_KEY_FILE, generate_key_file, read_key_file};
use refresh_facade::{Sealing, SealingKey};

use crate::config::Loaded;
use crate::error::CliError;

/// The sealing mode and a description of its source (for `config` and the
/// `migrate` message).
pub(crate) struct Resolved {
    pub(crate) sealing: Sealing,
    pub(crate) source: String,
    /// A key file this run generated.
    pub(crate) generated: Option<PathBuf>,
}

/// What to do when no key is found.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Missing {
    /// Generate the key file (`migrate`).
    Generate,
    /// Fail with a hint (every other command).
    Fail,
    /// Report it (`config`).
    Describe,
}

/// Resolves the sealing key.
///
/// # Errors
/// A [`CliError`] naming the setting: a key that does not parse, a key
/// file that cannot be read, no key at all (with the hint to run
/// `migrate`).
pub(crate) fn resolve(loaded: &Loaded, missing: Missing) -> Result<Resolved, CliError> {
    let c = &loaded.config;
    let previous = c
        .previous_encryption_keys
        .iter()
        .map(|k| SealingKey::parse("previous_encryption_keys", k.expose()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CliError::config(format!("configuration: {e}")))?;
    let sealed = |key: SealingKey, source: String, generated| Resolved {
        sealing: Sealing::keys(&key, &previous),
        source,
        generated,
    };
    if let Some(key) = &c.encryption_key {
        let key = SealingKey::parse("encryption_key", key.expose())
            .map_err(|e| CliError::config(format!("configuration: {e}")))?;
        return Ok(sealed(key, "encryption_key".into(), None));
    }
    let (path, configured) = match &c.encryption_key_file {
        Some(path) => (resolve_path(&loaded.base_dir, path), true),
        None => (loaded.base_dir.join(DEFAULT_KEY_FILE), false),
    };
    if path.exists() {
        let key = read_key_file(&path).map_err(|e| CliError::config(e.to_string()))?;
        return Ok(sealed(key, format!("key file {}", path.display()), None));
    }
    if c.allow_plaintext && !configured {
        return Ok(Resolved {
            sealing: Sealing::plaintext_opt_in(),
            source: "none: credentials stored in plaintext (allow_plaintext = true)".into(),
            generated: None,
        });
    }
    match missing {
        Missing::Generate => {
            let key = generate_key_file(&path).map_err(|e| CliError::new(e.to_string()))?;
            Ok(sealed(
                key,
                format!("key file {}", path.display()),
                Some(path.clone()),
            ))
        }
        Missing::Describe => Ok(Resolved {
            sealing: Sealing::plaintext_opt_in(),
            source: format!(
                "no key yet (`oauth-refresh migrate` generates {})",
                path.display()
            ),
            generated: None,
        }),
        Missing::Fail if configured => Err(CliError::config(format!(
            "encryption_key_file {}: not found",
            path.display()
        ))),
        Missing::Fail => Err(CliError::config(format!(
            "no encryption key: run `oauth-refresh migrate` first (it generates {}), or set encryption_key / OAUTH_REFRESH_ENCRYPTION_KEY / encryption_key_file, or allow_plaintext = true",
            path.display()
        ))),
    }
}

fn resolve_path(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        base.join(path)
    }
}
