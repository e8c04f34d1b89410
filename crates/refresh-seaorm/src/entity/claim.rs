//! The `refresh_claims` table: generation claims (what the issue calls the
//! recovery records).

use sea_orm::entity::prelude::*;

/// One generation claim.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "refresh_claims")]
pub struct Model {
    /// Platform of the token endpoint.
    #[sea_orm(primary_key, auto_increment = false)]
    pub platform: String,
    /// Hex SHA-256 of the refresh token.
    #[sea_orm(primary_key, auto_increment = false)]
    pub fingerprint: String,
    /// The account whose flow took it.
    pub account_id: i64,
    /// The random id of the current holding.
    pub claim_id: String,
    /// The account's version when claimed.
    pub base_version: i64,
    /// `open`, `quarantined`, `answered` or `consumed`.
    pub state: String,
    /// The sealed answer (state `answered`).
    pub answer: Option<String>,
    /// Database clock (unix ms) when it expires; `NULL` = never (answered).
    pub expires_at: Option<i64>,
    /// Database clock (unix ms) when the holding was taken.
    pub created_at: i64,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
