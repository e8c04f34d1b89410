//! SQLite database files named by `database_url`: a relative path in a
//! configuration file resolves against the file's directory (like the key
//! file), commands other than `migrate` never create a database (a typo in
//! the path is an error, not a new empty database), and `migrate` creates
//! the file readable by its owner only.

use std::path::{Path, PathBuf};

use crate::error::CliError;

/// The parts of a `sqlite:` URL naming a file: `sqlite://PATH?QUERY` or
/// `sqlite:PATH?QUERY`. `None` for other schemes and in-memory databases.
fn split(url: &str) -> Option<(&str, Option<&str>)> {
    let rest = url
        .trim()
        .strip_prefix("sqlite://")
        .or_else(|| url.trim().strip_prefix("sqlite:"))?;
    let (path, query) = match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    let memory = path.is_empty()
        || path == ":memory:"
        || query.is_some_and(|q| q.split('&').any(|p| p == "mode=memory"));
    (!memory).then_some((path, query))
}

fn join(path: &Path, query: Option<&str>) -> String {
    match query {
        Some(query) => format!("sqlite://{}?{query}", path.display()),
        None => format!("sqlite://{}", path.display()),
    }
}

/// The database file `url` names, if it names one.
pub(crate) fn path(url: &str) -> Option<PathBuf> {
    split(url).map(|(path, _)| PathBuf::from(path))
}

/// `url` with a relative file path resolved against `base`.
pub(crate) fn resolve(url: &str, base: &Path) -> String {
    match split(url) {
        Some((path, query)) if Path::new(path).is_relative() => join(&base.join(path), query),
        _ => url.to_owned(),
    }
}

/// `url` opened read-write without creating the file (`mode=rw`).
pub(crate) fn existing_only(url: &str) -> String {
    let Some((path, query)) = split(url) else {
        return url.to_owned();
    };
    let mut params: Vec<&str> = query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("mode="))
        .collect();
    params.push("mode=rw");
    join(Path::new(path), Some(&params.join("&")))
}

/// Fails with the hint to run `migrate` when `url` names a SQLite file
/// that does not exist.
pub(crate) fn require_existing(url: &str) -> Result<(), CliError> {
    match path(url) {
        Some(path) if !path.exists() => Err(CliError::config(format!(
            "database file {} does not exist; run `oauth-refresh migrate` first (or check database_url)",
            path.display()
        ))),
        _ => Ok(()),
    }
}

/// Creates the SQLite file `url` names, when it does not exist yet,
/// readable and writable by its owner only (SQLite gives its `-wal` and
/// `-shm` files the same mode).
pub(crate) fn create_private(url: &str) -> Result<(), CliError> {
    let Some(path) = path(url) else {
        return Ok(());
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(&path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(CliError::config(format!(
            "database file {}: cannot create: {e}",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_and_modes_change_without_touching_other_urls() {
        let base = Path::new("/etc/oauth");
        assert_eq!(
            resolve("sqlite://data.db?mode=rwc", base),
            "sqlite:///etc/oauth/data.db?mode=rwc"
        );
        assert_eq!(resolve("sqlite:///var/x.db", base), "sqlite:///var/x.db");
        assert_eq!(resolve("sqlite::memory:", base), "sqlite::memory:");
        assert_eq!(resolve("postgres://u:p@h/db", base), "postgres://u:p@h/db");
        assert_eq!(
            existing_only("sqlite:///var/x.db?mode=rwc&cache=shared"),
            "sqlite:///var/x.db?cache=shared&mode=rw"
        );
        assert_eq!(
            existing_only("sqlite:///var/x.db"),
            "sqlite:///var/x.db?mode=rw"
        );
        assert_eq!(
            path("sqlite://a/b.db?mode=rwc"),
            Some(PathBuf::from("a/b.db"))
        );
        assert_eq!(path("sqlite://x.db?mode=memory"), None);
    }
}
