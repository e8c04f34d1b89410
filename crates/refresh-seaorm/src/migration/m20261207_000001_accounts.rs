//! `accounts` and its indexes.

use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[derive(DeriveIden)]
enum Accounts {
    Table,
    Id,
    Name,
    Platform,
    AccountType,
    Status,
    ErrorMessage,
    Credentials,
    RefreshFingerprint,
    Extra,
    ProxyUrl,
    Priority,
    CredentialsVersion,
    ExpiresAt,
    TempUnschedulableUntil,
    TempUnschedulableReason,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut id = ColumnDef::new(Accounts::Id);
        if manager.get_database_backend() == DbBackend::Sqlite {
            // AUTOINCREMENT only exists on `INTEGER PRIMARY KEY`; it never
            // hands out a deleted id again.
            id.integer();
        } else {
            id.big_integer();
        }
        id.not_null().auto_increment().primary_key();
        manager
            .create_table(
                Table::create()
                    .table(Accounts::Table)
                    .if_not_exists()
                    .col(&mut id)
                    .col(ColumnDef::new(Accounts::Name).string_len(256).not_null())
                    .col(ColumnDef::new(Accounts::Platform).string_len(64).not_null())
                    .col(
                        ColumnDef::new(Accounts::AccountType)
                            .string_len(32)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Accounts::Status).string_len(16).not_null())
                    .col(ColumnDef::new(Accounts::ErrorMessage).text().null())
                    .col(ColumnDef::new(Accounts::Credentials).text().not_null())
                    .col(
                        ColumnDef::new(Accounts::RefreshFingerprint)
                            .string_len(64)
                            .not_null()
                            .default(""),
                    )
                    .col(ColumnDef::new(Accounts::Extra).text().not_null())
                    .col(ColumnDef::new(Accounts::ProxyUrl).text().null())
                    .col(
                        ColumnDef::new(Accounts::Priority)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(Accounts::CredentialsVersion)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(ColumnDef::new(Accounts::ExpiresAt).big_integer().null())
                    .col(
                        ColumnDef::new(Accounts::TempUnschedulableUntil)
                            .big_integer()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(Accounts::TempUnschedulableReason)
                            .text()
                            .null(),
                    )
                    .col(ColumnDef::new(Accounts::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(Accounts::UpdatedAt).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        // Serves `list_due`: equality on status, then a range on
        // (expires_at, id) in index order.
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("accounts_due")
                    .table(Accounts::Table)
                    .col(Accounts::Status)
                    .col(Accounts::ExpiresAt)
                    .col(Accounts::Id)
                    .to_owned(),
            )
            .await?;
        // Serves the catalog's listing filtered by platform.
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("accounts_platform")
                    .table(Accounts::Table)
                    .col(Accounts::Platform)
                    .col(Accounts::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Accounts::Table).if_exists().to_owned())
            .await
    }
}
