//! Ports: the traits backends and provider plugins implement. Each is
//! `#[async_trait]`, object-safe, and documented with a `# Contract` section
//! that core's conformance suites (feature `testing`) check. The extension
//! points users register ([`ExecutorRegistry`], [`RefreshListener`]) live
//! here too.

mod account_catalog;
mod account_repository;
mod claim_store;
mod clock;
mod executor;
mod executor_registry;
mod flow_observer;
mod login_session_store;
mod refresh_event_log;
mod refresh_listener;
mod refresh_lock;
mod sealer;
mod token_cache;

pub use account_catalog::{
    AccountCatalog, AccountFilter, AccountPage, MAX_NAME_CHARS, MetadataUpdate, NewAccount,
    StatusCounts, duplicate_refresh_tokens, invalid_entry,
};
pub use account_repository::{
    AccountRepository, CasExpectation, CasOutcome, CorruptAccount, DueCursor, DuePage,
};
pub use claim_store::{Claim, ClaimAcquire, ClaimId, ClaimKey, ClaimState, ClaimStore};
pub use clock::{Clock, ManualClock, SystemClock, TokioClock};
pub use executor::{RefreshContext, RefreshExecutor};
pub use executor_registry::ExecutorRegistry;
pub use flow_observer::{FlowObserver, NoObserver};
pub use login_session_store::{
    LoginSessionStore, LoginTake, MAX_LOGIN_SESSION_ID_LEN, PendingLogin,
};
pub use refresh_event_log::{
    HourlyCount, MAX_EVENT_NAME_CHARS, RefreshEvent, RefreshEventLog, event_name, hour_of,
};
pub use refresh_listener::RefreshListener;
pub use refresh_lock::{Lease, LeaseOwner, RefreshLock};
pub use sealer::{SealError, Sealer};
pub use token_cache::{CachedToken, PutOutcome, RefreshNotice, TokenCache};

#[cfg(any(test, feature = "mock"))]
pub use account_catalog::MockAccountCatalog;
#[cfg(any(test, feature = "mock"))]
pub use account_repository::MockAccountRepository;
#[cfg(any(test, feature = "mock"))]
pub use claim_store::MockClaimStore;
#[cfg(any(test, feature = "mock"))]
pub use clock::MockClock;
#[cfg(any(test, feature = "mock"))]
pub use executor::MockRefreshExecutor;
#[cfg(any(test, feature = "mock"))]
pub use login_session_store::MockLoginSessionStore;
#[cfg(any(test, feature = "mock"))]
pub use refresh_listener::MockRefreshListener;
#[cfg(any(test, feature = "mock"))]
pub use refresh_lock::MockRefreshLock;
#[cfg(any(test, feature = "mock"))]
pub use token_cache::MockTokenCache;

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::domain::{Fingerprint, Platform};
    use crate::memory::{
        InMemoryAccountRepository, InMemoryClaimStore, InMemoryRefreshLock, InMemoryTokenCache,
    };

    #[tokio::test]
    async fn ports_are_object_safe_behind_arc_dyn() {
        let repo: Arc<dyn AccountRepository> = Arc::new(InMemoryAccountRepository::new());
        let lock: Arc<dyn RefreshLock> = Arc::new(InMemoryRefreshLock::default());
        let cache: Arc<dyn TokenCache> = Arc::new(InMemoryTokenCache::default());
        let claims: Arc<dyn ClaimStore> = Arc::new(InMemoryClaimStore::single_process());
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let mut executor = MockRefreshExecutor::new();
        executor.expect_platform().return_const(Platform::Gemini);
        let executor: Arc<dyn RefreshExecutor> = Arc::new(executor);
        let listener: Arc<dyn RefreshListener> = Arc::new(MockRefreshListener::new());

        assert!(repo.get(crate::AccountId(1)).await.unwrap().is_none());
        let key = crate::RefreshKey::for_account(&executor.platform(), crate::AccountId(1));
        assert_eq!(key.as_str(), "gemini:account:1");
        assert!(
            lock.try_acquire(&key, Duration::from_secs(1))
                .await
                .unwrap()
                .is_some()
        );
        assert!(cache.get(&key).await.unwrap().is_none());
        let claim = ClaimKey::new(Platform::Gemini, Fingerprint::of_bytes(b"rt"));
        assert!(claims.get(&claim).await.unwrap().is_none());
        assert!(clock.now().timestamp() > 0);
        drop(listener);
    }
}
