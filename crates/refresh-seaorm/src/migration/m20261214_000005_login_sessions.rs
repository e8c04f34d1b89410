//! `login_sessions`: OAuth logins in progress (issue 12), so any process
//! can complete a login another began. Rows live 10–30 minutes; the
//! payload (PKCE verifier, state) is sealed like credentials.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[derive(DeriveIden)]
enum LoginSessions {
    Table,
    SessionId,
    Platform,
    Payload,
    ExpiresAt,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(LoginSessions::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(LoginSessions::SessionId)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(LoginSessions::Platform)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(ColumnDef::new(LoginSessions::Payload).text().not_null())
                    .col(
                        ColumnDef::new(LoginSessions::ExpiresAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(LoginSessions::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        // Serves the bounded purge.
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("login_sessions_expiry")
                    .table(LoginSessions::Table)
                    .col(LoginSessions::ExpiresAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(LoginSessions::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}
