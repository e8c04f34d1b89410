//! [`bounded`]: a deadline on one storage call.

use std::future::Future;
use std::time::Duration;

use crate::error::StorageError;

/// Runs a storage call with a deadline; expiry becomes a retryable
/// [`StorageErrorKind::Timeout`] error naming `operation`.
pub(crate) async fn bounded<T>(
    timeout: Duration,
    operation: &'static str,
    call: impl Future<Output = Result<T, StorageError>>,
) -> Result<T, StorageError> {
    tokio::time::timeout(timeout, call)
        .await
        .unwrap_or_else(|_| {
            Err(StorageError::timeout(
                operation,
                format!("no answer within {timeout:?}"),
            ))
        })
}
