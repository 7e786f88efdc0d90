//! Schema of the delegation grants.

use sea_orm_migration::prelude::*;

#[derive(DeriveIden)]
enum Grants {
    Table,
    Id,
    Tenant,
    PersonIssuer,
    PersonSubject,
    AgentId,
    Audiences,
    Scopes,
    ExpireTime,
    MaxChainDepth,
    Purpose,
    CreateTime,
    RevokeTime,
    RevokedBy,
    RevokeReason,
}

pub struct CreateGrants;

impl MigrationName for CreateGrants {
    fn name(&self) -> &str {
        "m20261129_000020_create_grants"
    }
}

fn string(column: impl IntoIden, max: u32) -> ColumnDef {
    ColumnDef::new(column).string_len(max).not_null().to_owned()
}

fn text(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column).text().not_null().to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for CreateGrants {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Grants::Table)
                    .if_not_exists()
                    .col(string(Grants::Id, 64).primary_key().to_owned())
                    .col(string(Grants::Tenant, 64))
                    .col(string(Grants::PersonIssuer, 512))
                    .col(string(Grants::PersonSubject, 256))
                    .col(string(Grants::AgentId, 64))
                    .col(text(Grants::Audiences))
                    .col(text(Grants::Scopes))
                    .col(
                        ColumnDef::new(Grants::ExpireTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Grants::MaxChainDepth).integer().not_null())
                    .col(text(Grants::Purpose))
                    .col(
                        ColumnDef::new(Grants::CreateTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Grants::RevokeTime)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(string(Grants::RevokedBy, 256))
                    .col(text(Grants::RevokeReason))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("grants_person")
                    .table(Grants::Table)
                    .col(Grants::PersonIssuer)
                    .col(Grants::PersonSubject)
                    .col(Grants::Id)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("grants_agent")
                    .table(Grants::Table)
                    .col(Grants::AgentId)
                    .col(Grants::Id)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Grants::Table).to_owned())
            .await
    }
}

/// Enforcement points list revoked grants by revocation time.
pub struct IndexGrantRevocations;

impl MigrationName for IndexGrantRevocations {
    fn name(&self) -> &str {
        "m20261206_000030_index_grant_revocations"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for IndexGrantRevocations {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("grants_revoke_time")
                    .table(Grants::Table)
                    .col(Grants::RevokeTime)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("grants_revoke_time")
                    .table(Grants::Table)
                    .to_owned(),
            )
            .await
    }
}
