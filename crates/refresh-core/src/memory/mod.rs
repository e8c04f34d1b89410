//! In-memory backends: single-process, correct under concurrency, and the
//! reference semantics every other backend's conformance run must match.

mod account_catalog;
mod account_repository;
mod claim_store;
mod login_session_store;
mod refresh_event_log;
mod refresh_lock;
mod token_cache;

pub use account_repository::InMemoryAccountRepository;
pub use claim_store::InMemoryClaimStore;
pub use login_session_store::InMemoryLoginSessionStore;
pub use refresh_event_log::InMemoryRefreshEventLog;
pub use refresh_lock::InMemoryRefreshLock;
pub use token_cache::InMemoryTokenCache;
