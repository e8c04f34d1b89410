//! `refresh_events`: the bounded history of refresh runs the status page
//! shows (core's `RefreshEventLog`), shared by every process of a
//! deployment. Times are unix milliseconds (`at_ms`) and the hour they
//! fall in (`hour_s`, unix seconds), so counting per hour is a plain
//! `GROUP BY` on every database.

use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[derive(DeriveIden)]
enum RefreshEvents {
    Table,
    Id,
    AccountId,
    Platform,
    AtMs,
    HourS,
    Outcome,
    DurationMs,
    LockLayer,
    Attempts,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut id = ColumnDef::new(RefreshEvents::Id);
        if manager.get_database_backend() == DbBackend::Sqlite {
            id.integer();
        } else {
            id.big_integer();
        }
        id.not_null().auto_increment().primary_key();
        manager
            .create_table(
                Table::create()
                    .table(RefreshEvents::Table)
                    .if_not_exists()
                    .col(&mut id)
                    .col(
                        ColumnDef::new(RefreshEvents::AccountId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RefreshEvents::Platform)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(ColumnDef::new(RefreshEvents::AtMs).big_integer().not_null())
                    .col(
                        ColumnDef::new(RefreshEvents::HourS)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RefreshEvents::Outcome)
                            .string_len(32)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RefreshEvents::DurationMs)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RefreshEvents::LockLayer)
                            .string_len(32)
                            .null(),
                    )
                    .col(ColumnDef::new(RefreshEvents::Attempts).integer().not_null())
                    .to_owned(),
            )
            .await?;
        // Serves `recent` (one account, newest first).
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("refresh_events_account")
                    .table(RefreshEvents::Table)
                    .col(RefreshEvents::AccountId)
                    .col(RefreshEvents::AtMs)
                    .col(RefreshEvents::Id)
                    .to_owned(),
            )
            .await?;
        // Serves `hourly` and the bounded purge.
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("refresh_events_at")
                    .table(RefreshEvents::Table)
                    .col(RefreshEvents::AtMs)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(RefreshEvents::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}
