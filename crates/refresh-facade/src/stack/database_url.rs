//! Which database a URL names, and whether this build can reach it.

use super::StackError;

/// The database behind a `database_url`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    /// A SQLite file, shared by every process that opens it.
    SqliteFile,
    /// An in-memory SQLite database: private to one pool of one process.
    SqliteMemory,
    /// PostgreSQL.
    Postgres,
    /// MySQL.
    MySql,
}

impl DatabaseKind {
    /// Classifies `url` by its scheme and checks that the feature it needs
    /// is compiled in.
    ///
    /// # Errors
    /// [`StackError::Invalid`] naming `database_url` for an unknown scheme
    /// or one whose feature is off. The URL itself is not quoted (it may
    /// hold a password).
    pub fn of(url: &str) -> Result<Self, StackError> {
        let url = url.trim();
        let scheme = url.split(':').next().unwrap_or_default();
        let (kind, feature, enabled) = match scheme {
            "sqlite" => {
                let memory = url.contains(":memory:") || url.contains("mode=memory");
                let kind = if memory {
                    Self::SqliteMemory
                } else {
                    Self::SqliteFile
                };
                (kind, "sqlite", cfg!(feature = "sqlite"))
            }
            "postgres" | "postgresql" => (Self::Postgres, "postgres", cfg!(feature = "postgres")),
            "mysql" => (Self::MySql, "mysql", cfg!(feature = "mysql")),
            "" => {
                return Err(StackError::invalid(
                    "database_url",
                    "is empty (expected sqlite://PATH?mode=rwc or postgres://...)",
                ));
            }
            _ => {
                return Err(StackError::invalid(
                    "database_url",
                    "unsupported scheme (expected sqlite://, postgres:// or mysql://)",
                ));
            }
        };
        if !enabled {
            return Err(StackError::invalid(
                "database_url",
                format!("{scheme}:// needs refresh-facade's `{feature}` feature"),
            ));
        }
        Ok(kind)
    }

    /// Whether other processes can share this database.
    pub fn is_shared(self) -> bool {
        self != Self::SqliteMemory
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_are_classified_and_unknown_ones_refused_without_quoting_the_url() {
        assert_eq!(
            DatabaseKind::of("sqlite://x.db?mode=rwc").unwrap(),
            DatabaseKind::SqliteFile
        );
        assert_eq!(
            DatabaseKind::of("sqlite::memory:").unwrap(),
            DatabaseKind::SqliteMemory
        );
        assert!(!DatabaseKind::SqliteMemory.is_shared());
        let error = DatabaseKind::of("redis://user:hunter2@db/").unwrap_err();
        assert_eq!(error.setting(), "database_url");
        assert!(!error.to_string().contains("hunter2"));
        assert!(DatabaseKind::of("  ").is_err());
    }
}
