//! The schema, as `sea-orm-migration` migrations, and [`migrate`].

// `MigrationTrait` is an `async_trait` whose `SchemaManager<'_>` lifetime
// must stay elided in the impls.
#![allow(elided_lifetimes_in_paths)]

mod m20261207_000001_accounts;
mod m20261207_000002_refresh_leases;
mod m20261207_000003_refresh_claims;

use sea_orm::DatabaseConnection;
use sea_orm_migration::{MigrationTrait, MigratorTrait};

use crate::error::storage_error;
use refresh_core::StorageError;

/// Every migration of this crate, in order. Applied migrations are recorded
/// in `oauth_refresh_migrations` (not SeaORM's default table, so an
/// application's own migrations can share the database).
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261207_000001_accounts::Migration),
            Box::new(m20261207_000002_refresh_leases::Migration),
            Box::new(m20261207_000003_refresh_claims::Migration),
        ]
    }

    fn migration_table_name() -> sea_orm::DynIden {
        sea_orm::sea_query::Alias::new("oauth_refresh_migrations").into_iden()
    }
}

use sea_orm::sea_query::IntoIden;

/// Applies every pending migration. Idempotent: running it twice, or on a
/// database an older release migrated, applies only what is missing; every
/// table and index is created `IF NOT EXISTS`.
///
/// # Errors
/// A [`StorageError`] when the database fails (no SQL text in it).
pub async fn migrate(db: &DatabaseConnection) -> Result<(), StorageError> {
    match Migrator::up(db, None).await {
        Ok(()) => Ok(()),
        // Another process migrating at the same moment: its records are
        // in by now, and a second pass finds nothing to do.
        Err(_) => Migrator::up(db, None)
            .await
            .map_err(|e| storage_error("migrate", e)),
    }
}
