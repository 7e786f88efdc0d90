//! Schema of the registry, credentials (secrets, public keys, federated
//! credentials), revocation list and replay store.

use sea_orm_migration::prelude::*;

#[derive(DeriveIden)]
enum Agents {
    Table,
    Id,
    Tenant,
    Owner,
    Name,
    Description,
    Model,
    Provider,
    Status,
    StatusReason,
    Attributes,
    CeilingAudiences,
    CeilingScopes,
    TokenGeneration,
    CreateTime,
    UpdateTime,
}

#[derive(DeriveIden)]
enum Credentials {
    Table,
    Id,
    AgentId,
    Kind,
    Description,
    CreateTime,
    ExpireTime,
    SecretHash,
    SecretPrefix,
    Kid,
    Jwk,
    FedIssuer,
    FedSubject,
    FedSubjectPattern,
    FedAudience,
}

#[derive(DeriveIden)]
enum RevokedTokens {
    Table,
    Jti,
    AgentId,
    ExpireTime,
    RevokeTime,
}

#[derive(DeriveIden)]
enum UsedAssertions {
    Table,
    Key,
    ExpireTime,
}

#[derive(DeriveIden)]
enum IdentitySettings {
    Table,
    Name,
    Value,
}

pub struct CreateIdentityTables;

impl MigrationName for CreateIdentityTables {
    fn name(&self) -> &str {
        "m20261129_000010_create_identity_tables"
    }
}

fn string(column: impl IntoIden, max: u32) -> ColumnDef {
    ColumnDef::new(column).string_len(max).not_null().to_owned()
}

fn index<const N: usize>(
    name: &str,
    table: impl IntoIden + 'static,
    columns: [DynIden; N],
    unique: bool,
) -> IndexCreateStatement {
    let mut index = Index::create();
    index.name(name).table(table).if_not_exists();
    for column in columns {
        index.col(column);
    }
    if unique {
        index.unique();
    }
    index.to_owned()
}

fn time(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for CreateIdentityTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Agents::Table)
                    .if_not_exists()
                    .col(string(Agents::Id, 64).primary_key().to_owned())
                    .col(string(Agents::Tenant, 64))
                    .col(string(Agents::Owner, 256))
                    .col(string(Agents::Name, 256))
                    .col(ColumnDef::new(Agents::Description).text().not_null())
                    .col(string(Agents::Model, 256))
                    .col(string(Agents::Provider, 256))
                    .col(string(Agents::Status, 16))
                    .col(ColumnDef::new(Agents::StatusReason).text().not_null())
                    .col(ColumnDef::new(Agents::Attributes).text().not_null())
                    .col(ColumnDef::new(Agents::CeilingAudiences).text().not_null())
                    .col(ColumnDef::new(Agents::CeilingScopes).text().not_null())
                    .col(
                        ColumnDef::new(Agents::TokenGeneration)
                            .big_integer()
                            .not_null(),
                    )
                    .col(time(Agents::CreateTime))
                    .col(time(Agents::UpdateTime))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "agents_tenant_name",
                Agents::Table,
                [Agents::Tenant.into_iden(), Agents::Name.into_iden()],
                true,
            ))
            .await?;
        manager
            .create_index(index(
                "agents_tenant_id",
                Agents::Table,
                [Agents::Tenant.into_iden(), Agents::Id.into_iden()],
                false,
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Credentials::Table)
                    .if_not_exists()
                    .col(string(Credentials::Id, 64).primary_key().to_owned())
                    .col(string(Credentials::AgentId, 64))
                    .col(string(Credentials::Kind, 16))
                    .col(string(Credentials::Description, 256))
                    .col(time(Credentials::CreateTime))
                    .col(ColumnDef::new(Credentials::ExpireTime).timestamp_with_time_zone())
                    .col(ColumnDef::new(Credentials::SecretHash).binary())
                    .col(ColumnDef::new(Credentials::SecretPrefix).string_len(16))
                    .col(ColumnDef::new(Credentials::Kid).string_len(128))
                    .col(ColumnDef::new(Credentials::Jwk).text())
                    .col(ColumnDef::new(Credentials::FedIssuer).string_len(512))
                    .col(ColumnDef::new(Credentials::FedSubject).string_len(512))
                    .col(ColumnDef::new(Credentials::FedSubjectPattern).string_len(512))
                    .col(ColumnDef::new(Credentials::FedAudience).string_len(256))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "credentials_agent",
                Credentials::Table,
                [
                    Credentials::AgentId.into_iden(),
                    Credentials::Id.into_iden(),
                ],
                false,
            ))
            .await?;
        // A kid names one public key of an agent (NULL kids never collide).
        manager
            .create_index(index(
                "credentials_agent_kid",
                Credentials::Table,
                [
                    Credentials::AgentId.into_iden(),
                    Credentials::Kid.into_iden(),
                ],
                true,
            ))
            .await?;
        // The jwt-bearer grant looks federated credentials up by issuer.
        manager
            .create_index(index(
                "credentials_fed_issuer",
                Credentials::Table,
                [Credentials::FedIssuer.into_iden()],
                false,
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(RevokedTokens::Table)
                    .if_not_exists()
                    .col(string(RevokedTokens::Jti, 64).primary_key().to_owned())
                    .col(string(RevokedTokens::AgentId, 128))
                    .col(
                        ColumnDef::new(RevokedTokens::ExpireTime)
                            .big_integer()
                            .not_null(),
                    )
                    .col(time(RevokedTokens::RevokeTime))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "revoked_tokens_expire",
                RevokedTokens::Table,
                [RevokedTokens::ExpireTime.into_iden()],
                false,
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(UsedAssertions::Table)
                    .if_not_exists()
                    .col(string(UsedAssertions::Key, 64).primary_key().to_owned())
                    .col(
                        ColumnDef::new(UsedAssertions::ExpireTime)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(IdentitySettings::Table)
                    .if_not_exists()
                    .col(string(IdentitySettings::Name, 64).primary_key().to_owned())
                    .col(ColumnDef::new(IdentitySettings::Value).text().not_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Agents::Table.into_iden(),
            Credentials::Table.into_iden(),
            RevokedTokens::Table.into_iden(),
            UsedAssertions::Table.into_iden(),
            IdentitySettings::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum AgentsRevocationColumns {
    #[sea_orm(iden = "agents")]
    Table,
    TokenGenerationTime,
    UpdateTime,
    TokenGeneration,
}

#[derive(DeriveIden)]
enum DeletedCredentials {
    Table,
    Id,
    AgentId,
    DeleteTime,
}

/// What enforcement points need to list revocations since a point: when
/// each agent's token generation last changed, deleted credentials kept as
/// tombstones for the longest token lifetime, and the indexes the listing
/// reads by.
pub struct AddRevocationState;

impl MigrationName for AddRevocationState {
    fn name(&self) -> &str {
        "m20261206_000020_add_revocation_state"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddRevocationState {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(AgentsRevocationColumns::Table)
                    .add_column(
                        ColumnDef::new(AgentsRevocationColumns::TokenGenerationTime)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        // Agents suspended or revoked before this column existed: their
        // last change is the best bound there is.
        manager
            .exec_stmt(
                Query::update()
                    .table(AgentsRevocationColumns::Table)
                    .value(
                        AgentsRevocationColumns::TokenGenerationTime,
                        Expr::col(AgentsRevocationColumns::UpdateTime),
                    )
                    .and_where(Expr::col(AgentsRevocationColumns::TokenGeneration).gt(0))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "agents_update_time",
                AgentsRevocationColumns::Table,
                [AgentsRevocationColumns::UpdateTime.into_iden()],
                false,
            ))
            .await?;
        manager
            .create_index(index(
                "agents_generation_time",
                AgentsRevocationColumns::Table,
                [AgentsRevocationColumns::TokenGenerationTime.into_iden()],
                false,
            ))
            .await?;
        manager
            .create_index(index(
                "revoked_tokens_revoke_time",
                RevokedTokens::Table,
                [RevokedTokens::RevokeTime.into_iden()],
                false,
            ))
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(DeletedCredentials::Table)
                    .if_not_exists()
                    .col(string(DeletedCredentials::Id, 64).primary_key().to_owned())
                    .col(string(DeletedCredentials::AgentId, 64))
                    .col(time(DeletedCredentials::DeleteTime))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "deleted_credentials_delete_time",
                DeletedCredentials::Table,
                [DeletedCredentials::DeleteTime.into_iden()],
                false,
            ))
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(DeletedCredentials::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(AgentsRevocationColumns::Table)
                    .drop_column(AgentsRevocationColumns::TokenGenerationTime)
                    .to_owned(),
            )
            .await
    }
}
