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
