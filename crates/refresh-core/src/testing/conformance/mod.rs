//! Conformance suites: every backend of a port runs the same checks, which
//! spell out the port's `# Contract`. Core runs them against the in-memory
//! backends; `refresh-redis` and `refresh-seaorm` run them against real
//! servers; provider plugins run [`refresh_executor_suite`] against their
//! emulator or a local stub.

mod account_repository;
mod fixtures;
mod harness;
mod refresh_executor;
mod refresh_lock;
mod token_cache;

pub use account_repository::account_repository_suite;
pub use fixtures::{T0, account_expiring};
pub use harness::TimeHarness;
pub use refresh_executor::refresh_executor_suite;
pub use refresh_lock::refresh_lock_suite;
pub use token_cache::token_cache_suite;
