//! The `accounts` table.

use sea_orm::entity::prelude::*;

/// One account row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "accounts")]
pub struct Model {
    /// Store-assigned (or explicitly inserted) id.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Human-readable name.
    pub name: String,
    /// Platform name.
    pub platform: String,
    /// Account type name.
    pub account_type: String,
    /// `active`, `disabled` or `error`.
    pub status: String,
    /// Sanitized reason of the last non-retryable failure.
    pub error_message: Option<String>,
    /// The credentials: a sealed envelope, or a JSON object in plaintext
    /// mode.
    pub credentials: String,
    /// Hex SHA-256 of the stored refresh token, `""` when none: the
    /// compare-and-set's fingerprint fence, checked in the statement.
    pub refresh_fingerprint: String,
    /// A JSON object.
    pub extra: String,
    /// The proxy URL: sealed, or plaintext in plaintext mode.
    pub proxy_url: Option<String>,
    /// Scheduling priority.
    pub priority: i32,
    /// The compare-and-set fence, +1 on every credential write.
    pub credentials_version: i64,
    /// Access-token expiry (unix ms) derived from the credentials on every
    /// write; `NULL` = unknown.
    pub expires_at: Option<i64>,
    /// Temporarily unschedulable until (unix ms).
    pub temp_unschedulable_until: Option<i64>,
    /// Why.
    pub temp_unschedulable_reason: Option<String>,
    /// Database clock at insert (unix ms).
    pub created_at: i64,
    /// Database clock at the last write (unix ms).
    pub updated_at: i64,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
