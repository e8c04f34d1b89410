//! The sealing key file (`oauth-refresh.key`): one base64 key, readable by
//! its owner only. `migrate` writes it when no key is configured, so a
//! newcomer's setup stays two commands; every later command reads it.

use std::io::Write;
use std::path::{Path, PathBuf};

use refresh_seaorm::SealingKey;
use zeroize::Zeroizing;

/// The key file's name when none is configured.
pub const DEFAULT_KEY_FILE: &str = "oauth-refresh.key";

/// A key file that could not be read or written. Never holds key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file could not be read or created.
    #[error("encryption_key_file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is readable or writable by others than its owner.
    #[error(
        "encryption_key_file {path}: readable by group or others (mode {mode:03o}); restrict it to its owner (chmod 600) and run again"
    )]
    Insecure {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file does not hold a key.
    #[error("encryption_key_file {path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong (never the content).
        reason: String,
    },
}

/// Reads the key in `path`. On Unix a file that its group or others may
/// read or write is refused: the key opens every stored credential.
///
/// # Errors
/// [`KeyFileError::Io`] when it cannot be read, [`KeyFileError::Insecure`]
/// when its mode grants any access beyond its owner,
/// [`KeyFileError::Invalid`] when it does not hold a 32-byte key in base64
/// or hex.
pub fn read_key_file(path: &Path) -> Result<SealingKey, KeyFileError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let metadata = std::fs::metadata(path).map_err(|source| KeyFileError::Io {
            path: path.to_owned(),
            source,
        })?;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyFileError::Insecure {
                path: path.to_owned(),
                mode,
            });
        }
    }
    let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    })?;
    let text = Zeroizing::new(text);
    SealingKey::parse("encryption_key_file", text.as_str()).map_err(|error| KeyFileError::Invalid {
        path: path.to_owned(),
        reason: error.to_string(),
    })
}

/// Generates a fresh key into `path`, which must not exist, readable and
/// writable by its owner only (mode 0600 on Unix). The key is written to a
/// temporary file created with that mode in the same directory, synced,
/// and then linked to `path` (which fails if `path` exists): there is no
/// moment where `path` exists with wider permissions or a partial key.
///
/// # Errors
/// [`KeyFileError::Io`] when the file exists or cannot be written.
pub fn generate_key_file(path: &Path) -> Result<SealingKey, KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    };
    let key = SealingKey::generate();
    let name = path
        .file_name()
        .map_or_else(|| "key".into(), |n| n.to_string_lossy().into_owned());
    let temporary = path.with_file_name(format!(
        ".{name}.{}.{:x}.tmp",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = (|| {
        let mut file = options.open(&temporary)?;
        let encoded = key.expose_base64();
        file.write_all(encoded.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        // No clobber: fails when `path` exists.
        std::fs::hard_link(&temporary, path)
    })();
    let _ = std::fs::remove_file(&temporary);
    written.map_err(io)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_file_reads_back_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DEFAULT_KEY_FILE);
        let key = generate_key_file(&path).unwrap();
        assert_eq!(read_key_file(&path).unwrap().id(), key.id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = generate_key_file(&path).unwrap_err();
        assert!(
            matches!(again, KeyFileError::Io { .. }),
            "never overwritten"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let error = read_key_file(&path).unwrap_err();
            assert!(
                matches!(error, KeyFileError::Insecure { mode: 0o644, .. }),
                "{error}"
            );
            assert!(error.to_string().contains("chmod 600"), "{error}");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        std::fs::write(&path, "not a key").unwrap();
        let error = read_key_file(&path).unwrap_err().to_string();
        assert!(error.contains("encryption_key_file") && !error.contains("not a key"));
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file left behind");
    }
}
