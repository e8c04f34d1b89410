//! The `login_sessions` table: OAuth logins in progress.

use sea_orm::entity::prelude::*;

/// One login in progress.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "login_sessions")]
pub struct Model {
    /// The random session id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub session_id: String,
    /// The platform it logs in to.
    pub platform: String,
    /// The serialized session (PKCE verifier, state, options), sealed.
    pub payload: String,
    /// Database clock (unix ms) when it expires.
    pub expires_at: i64,
    /// Database clock (unix ms) when it was stored.
    pub created_at: i64,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
