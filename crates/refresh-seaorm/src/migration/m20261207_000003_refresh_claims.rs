//! `refresh_claims`: generation claims.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[derive(DeriveIden)]
enum RefreshClaims {
    Table,
    Platform,
    Fingerprint,
    AccountId,
    ClaimId,
    BaseVersion,
    State,
    Answer,
    ExpiresAt,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RefreshClaims::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(RefreshClaims::Platform)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RefreshClaims::Fingerprint)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RefreshClaims::AccountId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RefreshClaims::ClaimId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RefreshClaims::BaseVersion)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RefreshClaims::State)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(ColumnDef::new(RefreshClaims::Answer).text().null())
                    .col(
                        ColumnDef::new(RefreshClaims::ExpiresAt)
                            .big_integer()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(RefreshClaims::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(RefreshClaims::Platform)
                            .col(RefreshClaims::Fingerprint),
                    )
                    .to_owned(),
            )
            .await?;
        // Serves the bounded purge.
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("refresh_claims_expiry")
                    .table(RefreshClaims::Table)
                    .col(RefreshClaims::ExpiresAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(RefreshClaims::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}
