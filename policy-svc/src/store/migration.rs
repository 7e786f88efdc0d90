//! Schema of the policy set versions.

use sea_orm_migration::prelude::*;

#[derive(DeriveIden)]
enum PolicyVersions {
    Table,
    Tenant,
    Version,
    Content,
    ContentSha256,
    Author,
    Description,
    RolledBackFrom,
    RuleCount,
    RoleAssignmentCount,
    CreateTime,
}

pub struct CreatePolicyTables;

impl MigrationName for CreatePolicyTables {
    fn name(&self) -> &str {
        "m20261129_000020_create_policy_tables"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreatePolicyTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(PolicyVersions::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(PolicyVersions::Tenant)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(PolicyVersions::Version)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(PolicyVersions::Content).binary().not_null())
                    .col(
                        ColumnDef::new(PolicyVersions::ContentSha256)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(PolicyVersions::Author)
                            .string_len(256)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(PolicyVersions::Description)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(PolicyVersions::RolledBackFrom)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(PolicyVersions::RuleCount)
                            .integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(PolicyVersions::RoleAssignmentCount)
                            .integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(PolicyVersions::CreateTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    // One row per (tenant, version): two writers racing for
                    // the same next version cannot both commit.
                    .primary_key(
                        Index::create()
                            .name("policy_versions_pkey")
                            .col(PolicyVersions::Tenant)
                            .col(PolicyVersions::Version),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(PolicyVersions::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}
