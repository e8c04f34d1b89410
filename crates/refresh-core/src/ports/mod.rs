//! Ports: the traits backends and provider plugins implement. Each is
//! `#[async_trait]`, object-safe, and documented with a `# Contract` section
//! that core's conformance suites (feature `testing`) check.

mod account_repository;
mod clock;
mod executor;
mod recovery_store;
mod refresh_lock;
mod token_cache;

pub use account_repository::{AccountRepository, CasOutcome, DueCursor};
pub use clock::{Clock, ManualClock, SystemClock, TokioClock};
pub use executor::RefreshExecutor;
pub use recovery_store::{RecoveryRecord, RecoveryStore};
pub use refresh_lock::{Lease, LeaseOwner, RefreshLock};
pub use token_cache::{CachedToken, PutOutcome, RefreshNotice, TokenCache};

#[cfg(any(test, feature = "mock"))]
pub use account_repository::MockAccountRepository;
#[cfg(any(test, feature = "mock"))]
pub use clock::MockClock;
#[cfg(any(test, feature = "mock"))]
pub use executor::MockRefreshExecutor;
#[cfg(any(test, feature = "mock"))]
pub use recovery_store::MockRecoveryStore;
#[cfg(any(test, feature = "mock"))]
pub use refresh_lock::MockRefreshLock;
#[cfg(any(test, feature = "mock"))]
pub use token_cache::MockTokenCache;

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::background::RefreshListener;
    use crate::memory::{
        InMemoryAccountRepository, InMemoryRecoveryStore, InMemoryRefreshLock, InMemoryTokenCache,
    };

    #[tokio::test]
    async fn ports_are_object_safe_behind_arc_dyn() {
        let repo: Arc<dyn AccountRepository> = Arc::new(InMemoryAccountRepository::new());
        let lock: Arc<dyn RefreshLock> = Arc::new(InMemoryRefreshLock::default());
        let cache: Arc<dyn TokenCache> = Arc::new(InMemoryTokenCache::default());
        let recovery: Arc<dyn RecoveryStore> = Arc::new(InMemoryRecoveryStore::new());
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let mut executor = MockRefreshExecutor::new();
        executor
            .expect_platform()
            .return_const(crate::Platform::Gemini);
        let executor: Arc<dyn RefreshExecutor> = Arc::new(executor);
        let listener: Arc<dyn RefreshListener> =
            Arc::new(crate::background::MockRefreshListener::new());

        assert!(repo.get(crate::AccountId(1)).await.unwrap().is_none());
        let key = crate::RefreshKey::for_account(&executor.platform(), crate::AccountId(1));
        assert_eq!(key.as_str(), "gemini:account:1");
        assert!(
            lock.try_acquire(&key, std::time::Duration::from_secs(1))
                .await
                .unwrap()
                .is_some()
        );
        assert!(cache.get(&key).await.unwrap().is_none());
        assert!(recovery.load(crate::AccountId(1)).await.unwrap().is_none());
        assert!(clock.now().timestamp() > 0);
        drop(listener);
    }
}
