//! Core's conformance suites against the in-memory backends: the reference
//! semantics pass every check. (`suite_self_tests.rs` shows the suites fail
//! on broken backends.)

mod common;

use std::future::{Ready, ready};
use std::sync::Arc;

use common::{ISSUED_LIFETIME, anthropic_executor, t0};
use refresh_core::AccountId;
use refresh_core::memory::{
    InMemoryAccountRepository, InMemoryClaimStore, InMemoryLoginSessionStore, InMemoryRefreshLock,
    InMemoryTokenCache,
};
use refresh_core::ports::{
    AccountCatalog, AccountRepository, ClaimStore, Clock, LoginSessionStore, ManualClock,
    RefreshLock, TokenCache,
};
use refresh_core::testing::FakeUpstream;
use refresh_core::testing::conformance::{
    RealTime, account_catalog_suite, account_expiring, account_repository_suite, claim_store_suite,
    login_session_store_suite, refresh_executor_suite, refresh_lock_suite, token_cache_suite,
};

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(t0()))
}

/// A factory for the suites: each call builds a fresh backend on `clock`.
fn on_clock<B>(clock: &Arc<ManualClock>, make: fn(Arc<dyn Clock>) -> B) -> impl Fn() -> Ready<B> {
    let clock = Arc::clone(clock);
    move || ready(make(Arc::clone(&clock) as Arc<dyn Clock>))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_memory_account_repository_conforms() {
    account_repository_suite(|| async {
        Arc::new(InMemoryAccountRepository::new()) as Arc<dyn AccountRepository>
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_memory_account_catalog_conforms() {
    account_catalog_suite(|| async {
        let store = Arc::new(InMemoryAccountRepository::new());
        (
            Arc::clone(&store) as Arc<dyn AccountRepository>,
            store as Arc<dyn AccountCatalog>,
        )
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_memory_refresh_lock_conforms() {
    let clock = clock();
    let make = on_clock(&clock, |c| {
        Arc::new(InMemoryRefreshLock::new(c)) as Arc<dyn RefreshLock>
    });
    refresh_lock_suite(make, &clock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_memory_token_cache_conforms() {
    let clock = clock();
    let make = on_clock(&clock, |c| {
        Arc::new(InMemoryTokenCache::new(c)) as Arc<dyn TokenCache>
    });
    token_cache_suite(make, &clock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_memory_claim_store_conforms() {
    let clock = clock();
    let make = on_clock(&clock, |c| {
        Arc::new(InMemoryClaimStore::new(c)) as Arc<dyn ClaimStore>
    });
    claim_store_suite(make, &clock).await;
}

/// The real-time harness a server backend uses: the store's clock is the
/// system clock and time passes by waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_claim_store_conforms_on_the_system_clock_in_real_time() {
    let make = || async { Arc::new(InMemoryClaimStore::single_process()) as Arc<dyn ClaimStore> };
    let time = RealTime {
        short_ttl: std::time::Duration::from_millis(300),
    };
    claim_store_suite(make, &time).await;
}

#[tokio::test]
async fn rotating_executor_conforms() {
    let executor = anthropic_executor(&FakeUpstream::new(), ISSUED_LIFETIME);
    refresh_executor_suite(
        executor,
        |id: AccountId| async move { account_expiring(id.get(), Some(60)) },
        t0(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_memory_login_session_store_conforms() {
    let clock = clock();
    let make = on_clock(&clock, |c| {
        Arc::new(InMemoryLoginSessionStore::new(c)) as Arc<dyn LoginSessionStore>
    });
    login_session_store_suite(make, &clock).await;
}
