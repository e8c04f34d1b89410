//! `refresh_leases`.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[derive(DeriveIden)]
enum RefreshLeases {
    Table,
    LeaseKey,
    Owner,
    Fence,
    ExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RefreshLeases::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(RefreshLeases::LeaseKey)
                            .string_len(255)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(RefreshLeases::Owner).string_len(64).null())
                    .col(
                        ColumnDef::new(RefreshLeases::Fence)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RefreshLeases::ExpiresAt)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(RefreshLeases::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}
