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
    /// The file does not hold a key.
    #[error("encryption_key_file {path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong (never the content).
        reason: String,
    },
}

/// Reads the key in `path`.
///
/// # Errors
/// [`KeyFileError::Io`] when it cannot be read, [`KeyFileError::Invalid`]
/// when it does not hold a 32-byte key in base64 or hex.
pub fn read_key_file(path: &Path) -> Result<SealingKey, KeyFileError> {
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
/// writable by its owner only (mode 0600 on Unix).
///
/// # Errors
/// [`KeyFileError::Io`] when the file exists or cannot be written.
pub fn generate_key_file(path: &Path) -> Result<SealingKey, KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    };
    let key = SealingKey::generate();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io)?;
    let encoded = key.expose_base64();
    file.write_all(encoded.as_bytes()).map_err(io)?;
    file.write_all(b"\n").map_err(io)?;
    file.sync_all().map_err(io)?;
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
        std::fs::write(&path, "not a key").unwrap();
        let error = read_key_file(&path).unwrap_err().to_string();
        assert!(error.contains("encryption_key_file") && !error.contains("not a key"));
    }
}
