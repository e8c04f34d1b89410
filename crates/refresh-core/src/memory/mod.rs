//! In-memory backends: single-process, correct under concurrency, and the
//! reference semantics every other backend's conformance run must match.

mod account_repository;
mod recovery_store;
mod refresh_lock;
mod token_cache;

pub use account_repository::InMemoryAccountRepository;
pub use recovery_store::InMemoryRecoveryStore;
pub use refresh_lock::InMemoryRefreshLock;
pub use token_cache::InMemoryTokenCache;
