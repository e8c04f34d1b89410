//! `accounts_refresh_fingerprint_unique`: one account per refresh token.
//!
//! Two accounts sharing one rotating refresh token lose each other's
//! rotations (the first refresh of either consumes it). The catalog refuses
//! such a write with a typed error naming the holder; this partial unique
//! index on the plaintext-free `refresh_fingerprint` column (a SHA-256 of
//! the token, `''` when there is none) makes the refusal hold between
//! concurrent writers too, whatever the sealing. MySQL has no partial
//! index: there the catalog's check stands alone.
//!
//! [`migrate`](super::migrate) refuses to apply it to a database where two
//! accounts already share a token, naming them.

use sea_orm::{ConnectionTrait, DbBackend};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

/// The index's name.
pub(super) const INDEX: &str = "accounts_refresh_fingerprint_unique";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::MySql {
            return Ok(());
        }
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "CREATE UNIQUE INDEX IF NOT EXISTS {INDEX} ON accounts (refresh_fingerprint) \
                 WHERE refresh_fingerprint <> ''"
            ))
            .await
            .map(|_| ())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::MySql {
            return Ok(());
        }
        manager
            .get_connection()
            .execute_unprepared(&format!("DROP INDEX IF EXISTS {INDEX}"))
            .await
            .map(|_| ())
    }
}
