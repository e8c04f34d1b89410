//! Driver errors mapped to core's [`StorageError`] kinds, without SQL text,
//! bound values or connection strings.

use refresh_core::StorageError;
use refresh_core::StorageErrorKind as Kind;
use sea_orm::{ConnAcquireErr, DbErr, RuntimeErr};

/// Maps `error` from `operation` to a [`StorageError`] whose message holds
/// only a category and the database's error code. The driver error is not
/// attached: its text may quote SQL or values.
pub(crate) fn storage_error(operation: &'static str, error: DbErr) -> StorageError {
    let (kind, detail) = classify(&error);
    StorageError::new(kind, operation, detail)
}

fn classify(error: &DbErr) -> (Kind, String) {
    match error {
        DbErr::ConnectionAcquire(ConnAcquireErr::Timeout) => (
            Kind::Timeout,
            "timed out waiting for a pooled connection".into(),
        ),
        DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed) => {
            (Kind::Unavailable, "the connection pool is closed".into())
        }
        DbErr::Conn(runtime) if is_configuration(runtime) => (
            Kind::Other,
            runtime_detail(
                "cannot connect: a configuration error (URL, path, credentials), not retried",
                runtime,
            ),
        ),
        DbErr::Conn(runtime) => (
            Kind::Unavailable,
            runtime_detail("connection failed", runtime),
        ),
        DbErr::Exec(runtime) | DbErr::Query(runtime) => runtime_kind(runtime),
        DbErr::RecordNotFound(_) => (Kind::NotFound, "record not found".into()),
        DbErr::Migration(_) => (Kind::Other, "migration failed".into()),
        DbErr::Type(_) | DbErr::Json(_) | DbErr::TryIntoErr { .. } => (
            Kind::InvalidData,
            "a column holds a value of the wrong type".into(),
        ),
        _ => (Kind::Other, "database error".into()),
    }
}

/// Whether a connection failure is permanent until the configuration
/// changes: retrying it is pointless and would hide the cause.
fn is_configuration(runtime: &RuntimeErr) -> bool {
    use sea_orm::sqlx::Error as Sqlx;
    match runtime {
        // sea-orm: "the connection string has no supporting driver" (the
        // driver did not accept the URL).
        RuntimeErr::Internal(_) => true,
        RuntimeErr::SqlxError(Sqlx::Configuration(_)) => true,
        RuntimeErr::SqlxError(Sqlx::Database(db)) => matches!(
            db.code().as_deref(),
            // SQLite CANTOPEN (a missing directory, no permission, not a
            // database file) with its extended codes; READONLY; NOTADB.
            Some("14" | "270" | "526" | "782" | "1038" | "1294" | "1550" | "8" | "26")
            // PostgreSQL: bad password or role, no such database.
            | Some("28000" | "28P01" | "3D000")
        ),
        RuntimeErr::SqlxError(_) => false,
    }
}

fn runtime_detail(what: &str, runtime: &RuntimeErr) -> String {
    match runtime {
        RuntimeErr::SqlxError(sqlx) => match sqlx {
            sea_orm::sqlx::Error::Database(db) => {
                format!("{what} (code {})", db.code().unwrap_or_default())
            }
            sea_orm::sqlx::Error::Io(io) => format!("{what} (io: {:?})", io.kind()),
            sea_orm::sqlx::Error::PoolTimedOut => format!("{what} (pool timed out)"),
            sea_orm::sqlx::Error::PoolClosed => format!("{what} (pool closed)"),
            sea_orm::sqlx::Error::Tls(_) => format!("{what} (tls)"),
            sea_orm::sqlx::Error::Protocol(_) => format!("{what} (protocol)"),
            _ => what.to_owned(),
        },
        RuntimeErr::Internal(_) => what.to_owned(),
    }
}

fn runtime_kind(runtime: &RuntimeErr) -> (Kind, String) {
    let RuntimeErr::SqlxError(sqlx) = runtime else {
        return (Kind::Other, "statement failed".into());
    };
    use sea_orm::sqlx::Error as Sqlx;
    match sqlx {
        Sqlx::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            let kind = match code.as_str() {
                // SQLite: BUSY (5) and LOCKED (6) with their extended codes.
                "5" | "6" | "261" | "262" | "517" | "773" => Kind::Busy,
                // SQLite: UNIQUE / PRIMARY KEY constraints.
                "1555" | "2067" => Kind::Conflict,
                // PostgreSQL: unique violation; serialization failure and
                // deadlock (retry the transaction); lock not available.
                "23505" => Kind::Conflict,
                "40001" | "40P01" | "55P03" => Kind::Busy,
                // PostgreSQL: statement or lock timeout (query_canceled).
                "57014" => Kind::Timeout,
                // PostgreSQL: the server is going away or cannot take more.
                "57P01" | "57P02" | "57P03" | "53300" => Kind::Unavailable,
                // MySQL: duplicate entry; deadlock / lock wait timeout.
                "23000" if db.message().contains("Duplicate") => Kind::Conflict,
                "1062" => Kind::Conflict,
                "1213" | "1205" => Kind::Busy,
                _ if code.starts_with("08") => Kind::Unavailable,
                _ => Kind::Other,
            };
            (kind, format!("statement failed (code {code})"))
        }
        Sqlx::Io(io) => (Kind::Unavailable, format!("io error ({:?})", io.kind())),
        Sqlx::PoolTimedOut => (
            Kind::Timeout,
            "timed out waiting for a pooled connection".into(),
        ),
        Sqlx::PoolClosed | Sqlx::WorkerCrashed => {
            (Kind::Unavailable, "the connection is gone".into())
        }
        Sqlx::Tls(_) | Sqlx::Protocol(_) => (Kind::Unavailable, "the connection failed".into()),
        Sqlx::ColumnDecode { .. } | Sqlx::Decode(_) | Sqlx::ColumnNotFound(_) => {
            (Kind::InvalidData, "a column cannot be decoded".into())
        }
        _ => (Kind::Other, "statement failed".into()),
    }
}
