//! Conformance suites: every backend of a port runs the same checks, which
//! spell out the port's `# Contract`. Core runs them against the in-memory
//! backends; `refresh-redis` and `refresh-seaorm` run them against real
//! servers; provider plugins run [`refresh_executor_suite`] against their
//! emulator or a local stub.
//!
//! A suite runs each check on a fresh backend and under its own timeout,
//! bounds every loop it drives, and fails with `<suite>: <check>: <clause>`
//! (or `<suite>: <check> timed out`), so a buggy backend can neither hang
//! it nor fail it anonymously. Each suite module lists its checks.

mod account_catalog;
mod account_repository;
mod claim_store;
mod fixtures;
mod harness;
mod login_session_store;
mod refresh_event_log;
mod refresh_executor;
mod refresh_lock;
mod token_cache;

pub use account_catalog::account_catalog_suite;
pub use account_repository::account_repository_suite;
pub use claim_store::claim_store_suite;
pub use fixtures::{T0, account_expiring};
pub use harness::{RealTime, TimeHarness};
pub use login_session_store::login_session_store_suite;
pub use refresh_event_log::refresh_event_log_suite;
pub use refresh_executor::{refresh_executor_suite, token_endpoint_mapping_suite};
pub use refresh_lock::refresh_lock_suite;
pub use token_cache::token_cache_suite;
