//! Core's conformance suites against the in-memory backends.

use std::sync::Arc;

use chrono::DateTime;
use refresh_core::memory::{
    InMemoryAccountRepository, InMemoryRecoveryStore, InMemoryRefreshLock, InMemoryTokenCache,
};
use refresh_core::ports::{
    AccountRepository, Clock, ManualClock, RecoveryStore, RefreshLock, TokenCache,
};
use refresh_core::testing::conformance::{
    T0, account_repository_suite, recovery_store_suite, refresh_lock_suite, token_cache_suite,
};

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(DateTime::from_timestamp(T0, 0).unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_memory_account_repository_conforms() {
    account_repository_suite(|| async {
        Arc::new(InMemoryAccountRepository::new()) as Arc<dyn AccountRepository>
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_memory_refresh_lock_conforms() {
    let clock = clock();
    let c = Arc::clone(&clock);
    refresh_lock_suite(
        move || {
            let c = Arc::clone(&c) as Arc<dyn Clock>;
            async move { Arc::new(InMemoryRefreshLock::new(c)) as Arc<dyn RefreshLock> }
        },
        &clock,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_memory_token_cache_conforms() {
    let clock = clock();
    let c = Arc::clone(&clock);
    token_cache_suite(
        move || {
            let c = Arc::clone(&c) as Arc<dyn Clock>;
            async move { Arc::new(InMemoryTokenCache::new(c)) as Arc<dyn TokenCache> }
        },
        &clock,
    )
    .await;
}

#[tokio::test]
async fn in_memory_recovery_store_conforms() {
    recovery_store_suite(|| async {
        Arc::new(InMemoryRecoveryStore::new()) as Arc<dyn RecoveryStore>
    })
    .await;
}

#[tokio::test]
async fn rotating_executor_conforms() {
    use refresh_core::ports::{RefreshExecutor, TokioClock};
    use refresh_core::testing::conformance::{account_expiring, refresh_executor_suite};
    use refresh_core::testing::{FakeUpstream, RotatingExecutor};
    use refresh_core::{AccountId, Platform};

    let now = DateTime::from_timestamp(T0, 0).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::starting_at(now));
    let executor: Arc<dyn RefreshExecutor> = Arc::new(RotatingExecutor::new(
        Platform::Anthropic,
        FakeUpstream::new(),
        clock,
        std::time::Duration::from_secs(3600),
    ));
    refresh_executor_suite(
        executor,
        |id: AccountId| async move { account_expiring(id.get(), Some(60)) },
        now,
    )
    .await;
}
