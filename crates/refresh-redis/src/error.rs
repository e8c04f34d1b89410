//! Redis failures as core [`StorageError`]s.
//!
//! Connection problems are `Unavailable` and slow answers `Timeout`, so the
//! flow falls through to its next lock layer (an authentication or
//! permission refusal and an out-of-memory server included: the server
//! cannot serve us now); a reply or a value under our key that does not
//! make sense (`WRONGTYPE` included) is `InvalidData`; anything else
//! `Other`. Messages name the error's
//! kind and code only, never its text: a driver message can quote
//! arguments (tokens) or the connection string.

use redis::{ErrorKind, RedisError};
use refresh_core::StorageError;

/// `error` from `operation` as a storage error.
pub(crate) fn storage_error(operation: &'static str, error: &RedisError) -> StorageError {
    let what = match error.code() {
        Some(code) => format!("redis {:?} error ({code})", error.kind()),
        None => format!("redis {:?} error", error.kind()),
    };
    if error.is_timeout() {
        StorageError::timeout(operation, what)
    } else if error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || matches!(
            error.kind(),
            ErrorKind::ClusterConnectionNotFound | ErrorKind::AuthenticationFailed
        )
        || matches!(
            error.code(),
            Some(
                "LOADING"
                    | "BUSY"
                    | "TRYAGAIN"
                    | "CLUSTERDOWN"
                    | "MASTERDOWN"
                    | "READONLY"
                    | "NOAUTH"
                    | "WRONGPASS"
                    | "NOPERM"
                    | "OOM"
            )
        )
    {
        StorageError::unavailable(operation, what)
    } else if matches!(
        error.kind(),
        ErrorKind::UnexpectedReturnType | ErrorKind::Parse
    ) || error.code() == Some("WRONGTYPE")
    {
        StorageError::invalid_data(operation, what)
    } else {
        StorageError::other(operation, what)
    }
}

/// A command that did not answer within the command timeout.
pub(crate) fn timed_out(operation: &'static str) -> StorageError {
    StorageError::timeout(operation, "redis command timed out")
}

#[cfg(test)]
mod tests {
    use refresh_core::StorageErrorKind;

    use super::*;

    #[test]
    fn kinds_map_to_what_the_flow_needs() {
        let io = RedisError::from(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        ));
        assert_eq!(
            storage_error("get", &io).kind(),
            StorageErrorKind::Unavailable
        );
        let timeout = RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, "slow"));
        assert_eq!(
            storage_error("get", &timeout).kind(),
            StorageErrorKind::Timeout
        );
        let decode = RedisError::from((ErrorKind::UnexpectedReturnType, "bad reply"));
        assert_eq!(
            storage_error("get", &decode).kind(),
            StorageErrorKind::InvalidData
        );
        assert_eq!(timed_out("get").kind(), StorageErrorKind::Timeout);
    }

    #[test]
    fn messages_never_carry_the_driver_text() {
        let e = RedisError::from((ErrorKind::Client, "desc", "token-abc123".to_owned()));
        let shown = format!("{}", storage_error("put", &e));
        assert!(!shown.contains("token-abc123"), "{shown}");
    }
}
