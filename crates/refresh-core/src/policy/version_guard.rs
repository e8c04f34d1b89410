//! The token version guard (REFERENCE.md §3.7).

use crate::domain::Account;
use crate::ports::AccountRepository;

/// Whether a snapshot at `snapshot_version` is older than the stored
/// `stored_version` (a missing version counts as 0). Only versions are
/// compared, never token strings.
pub fn is_stale(snapshot_version: u64, stored_version: u64) -> bool {
    stored_version > snapshot_version
}

/// Whether caching the snapshot's token would cache an outdated token:
/// reads the stored version and compares. No snapshot, no repository, a
/// failed read or a missing row all allow caching.
pub async fn check_token_version(
    snapshot: Option<&Account>,
    repo: Option<&dyn AccountRepository>,
) -> bool {
    let (Some(snapshot), Some(repo)) = (snapshot, repo) else {
        return false;
    };
    match repo.get(snapshot.id).await {
        Ok(Some(stored)) => is_stale(snapshot.credentials_version, stored.credentials_version),
        Ok(None) | Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Credentials, Platform};
    use crate::error::StorageError;
    use crate::ports::MockAccountRepository;

    fn at(version: u64) -> Account {
        let mut a = Account::oauth(7, Platform::OpenAi, Credentials::new());
        a.credentials_version = version;
        a
    }

    fn repo_returning(result: Result<Option<Account>, StorageError>) -> MockAccountRepository {
        let mut repo = MockAccountRepository::new();
        repo.expect_get().return_once(move |_| result);
        repo
    }

    #[tokio::test]
    async fn version_guard_no_account_is_not_stale() {
        let repo = MockAccountRepository::new();
        assert!(!check_token_version(None, Some(&repo)).await);
    }

    #[tokio::test]
    async fn version_guard_no_repository_is_not_stale() {
        assert!(!check_token_version(Some(&at(1)), None).await);
    }

    #[tokio::test]
    async fn version_guard_snapshot_unversioned_db_versioned_is_stale() {
        assert!(check_token_version(Some(&at(0)), Some(&repo_returning(Ok(Some(at(3)))))).await);
    }

    #[tokio::test]
    async fn version_guard_both_unversioned_is_not_stale() {
        assert!(!check_token_version(Some(&at(0)), Some(&repo_returning(Ok(Some(at(0)))))).await);
    }

    #[tokio::test]
    async fn version_guard_equal_is_not_stale() {
        assert!(!check_token_version(Some(&at(4)), Some(&repo_returning(Ok(Some(at(4)))))).await);
    }

    #[tokio::test]
    async fn version_guard_snapshot_newer_is_not_stale() {
        assert!(!check_token_version(Some(&at(5)), Some(&repo_returning(Ok(Some(at(4)))))).await);
    }

    #[tokio::test]
    async fn version_guard_db_newer_is_stale() {
        assert!(check_token_version(Some(&at(4)), Some(&repo_returning(Ok(Some(at(5)))))).await);
    }

    #[tokio::test]
    async fn version_guard_repository_error_or_missing_row_allows_caching() {
        let err = StorageError::unavailable("get", "down");
        assert!(!check_token_version(Some(&at(1)), Some(&repo_returning(Err(err)))).await);
        assert!(!check_token_version(Some(&at(1)), Some(&repo_returning(Ok(None)))).await);
    }
}
