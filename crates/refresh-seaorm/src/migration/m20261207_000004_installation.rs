//! `oauth_refresh_installation`: one row holding a random id of this
//! database, created once by the migration that adds the table.
//!
//! Shared infrastructure keys its data by it: two databases (staging and
//! production, a restored copy beside its original) sharing one Redis and
//! key prefix must never see each other's cached tokens, although their
//! account ids and versions coincide.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[derive(DeriveIden)]
enum OauthRefreshInstallation {
    Table,
    Id,
    InstallationId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(OauthRefreshInstallation::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(OauthRefreshInstallation::Id)
                            .integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(OauthRefreshInstallation::InstallationId)
                            .string_len(64)
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let insert = Query::insert()
            .into_table(OauthRefreshInstallation::Table)
            .columns([
                OauthRefreshInstallation::Id,
                OauthRefreshInstallation::InstallationId,
            ])
            .values_panic([1.into(), id.into()])
            .on_conflict(
                OnConflict::column(OauthRefreshInstallation::Id)
                    .do_nothing()
                    .to_owned(),
            )
            .to_owned();
        manager.exec_stmt(insert).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(OauthRefreshInstallation::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}
