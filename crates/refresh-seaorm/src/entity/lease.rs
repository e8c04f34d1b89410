//! The `refresh_leases` table.

use sea_orm::entity::prelude::*;

/// One lease row. Rows are never deleted, so fences only grow.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "refresh_leases")]
pub struct Model {
    /// The lock key (`claude:account:7`).
    #[sea_orm(primary_key, auto_increment = false)]
    pub lease_key: String,
    /// The holder's random owner token; `NULL` once released.
    pub owner: Option<String>,
    /// +1 on every acquisition.
    pub fence: i64,
    /// Database clock (unix ms) when the lease lapses.
    pub expires_at: i64,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
