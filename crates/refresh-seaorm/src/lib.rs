//! # refresh-seaorm
//!
//! SeaORM backends of `refresh-core`'s ports on SQLite (the embedded
//! default) and PostgreSQL (MySQL compiles behind the `mysql` feature):
//!
//! - [`SeaOrmAccountRepository`], core's `AccountRepository`
//!   (compare-and-set as one conditional `UPDATE`, `list_due` as keyset
//!   range scans of the `(status, expires_at, id)` index, corrupt rows
//!   reported by id) and `AccountCatalog`;
//! - [`DbLeaseLock`], core's `RefreshLock` on the database clock;
//! - [`DbClaimStore`], core's `ClaimStore`: generation claims (acquire and
//!   take-over as one statement on the database clock);
//! - [`DbLoginSessionStore`], core's `LoginSessionStore`: OAuth logins in
//!   progress (single-use takes, expiry on the database clock), so any
//!   process completes a login another began;
//! - [`AesGcmSealer`], core's `Sealer`: credentials, login sessions,
//!   proxy URLs and claim answers sealed at rest with AES-256-GCM bound to
//!   their row, keys rotated with [`SeaOrmBackend::rekey`];
//! - [`migrate`]: idempotent migrations, safe to run from several
//!   processes at once.
//!
//! No statement and no connect is ever logged, at any level (sea-orm would
//! print bound values and the URL's password): see the README's "Logs and
//! secrets" for what an operator must still set on PostgreSQL.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use refresh_core::{LockStrategy, RefreshFlow};
//! use refresh_seaorm::{DatabaseConfig, SeaOrmBackend, Sealing, SealingConfig};
//!
//! let sealing = Sealing::from_config(&SealingConfig::from_env())?;
//! let db = SeaOrmBackend::connect(&DatabaseConfig::new("sqlite://refresh.db?mode=rwc"), sealing).await?;
//! db.migrate().await?;
//! let flow = RefreshFlow::builder(
//!     Arc::new(db.repository()),
//!     LockStrategy::single(Arc::new(db.lease_lock())),
//!     Arc::new(db.claim_store()),
//! )
//! .build()?;
//! # drop(flow); Ok(()) }
//! ```
//!
//! See the crate README for the schema, the guarantees, configuration and
//! key management.

mod backend;
mod catalog;
mod claims;
mod codec;
mod config;
mod db;
mod dialect;
pub mod entity;
mod error;
mod events;
mod lease;
mod login_sessions;
mod migration;
mod rekey;
mod repository;
mod seal;

pub use backend::SeaOrmBackend;
pub use claims::DbClaimStore;
pub use config::{DatabaseConfig, SqliteSynchronous};
pub use events::DbRefreshEventLog;
pub use lease::DbLeaseLock;
pub use login_sessions::DbLoginSessionStore;
pub use migration::{Migrator, migrate};
pub use rekey::RekeyReport;
pub use repository::SeaOrmAccountRepository;
pub use sea_orm_migration::MigratorTrait;
pub use seal::{AesGcmSealer, ENV_KEY, ENV_PREVIOUS_KEYS, Sealing, SealingConfig, SealingKey};
