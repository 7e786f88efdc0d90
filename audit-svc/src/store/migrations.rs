//! Schema of the audit tables. Indexes serve the query filters; each pairs
//! the filter column with `sequence` so a page is an index range scan.

use sea_orm_migration::prelude::*;

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Sequence,
    EventId,
    Time,
    Tenant,
    AgentId,
    PersonSubject,
    TraceId,
    DecisionId,
    Kind,
    Outcome,
    Body,
    PrevHash,
    Hash,
}

#[derive(DeriveIden)]
enum AuditCheckpoints {
    Table,
    Sequence,
    HeadHash,
    Time,
    KeyId,
    Signature,
}

pub struct CreateAuditTables;

impl MigrationName for CreateAuditTables {
    fn name(&self) -> &str {
        "m20261129_000002_create_audit_tables"
    }
}

fn text(column: AuditEvents, max: u32) -> ColumnDef {
    ColumnDef::new(column).string_len(max).not_null().to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for CreateAuditTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(AuditEvents::Sequence)
                            .big_integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(text(AuditEvents::EventId, 128).unique_key().to_owned())
                    .col(
                        ColumnDef::new(AuditEvents::Time)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(text(AuditEvents::Tenant, 64))
                    .col(text(AuditEvents::AgentId, 64))
                    .col(text(AuditEvents::PersonSubject, 256))
                    .col(text(AuditEvents::TraceId, 32))
                    .col(text(AuditEvents::DecisionId, 64))
                    .col(text(AuditEvents::Kind, 128))
                    .col(text(AuditEvents::Outcome, 8))
                    .col(ColumnDef::new(AuditEvents::Body).text().not_null())
                    .col(ColumnDef::new(AuditEvents::PrevHash).binary().not_null())
                    .col(ColumnDef::new(AuditEvents::Hash).binary().not_null())
                    .to_owned(),
            )
            .await?;
        let indexes = [
            ("audit_events_tenant", AuditEvents::Tenant),
            ("audit_events_agent", AuditEvents::AgentId),
            ("audit_events_person", AuditEvents::PersonSubject),
            ("audit_events_trace", AuditEvents::TraceId),
            ("audit_events_decision", AuditEvents::DecisionId),
            ("audit_events_time", AuditEvents::Time),
        ];
        for (name, column) in indexes {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(AuditEvents::Table)
                        .col(column)
                        .col(AuditEvents::Sequence)
                        .if_not_exists()
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(AuditCheckpoints::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(AuditCheckpoints::Sequence)
                            .big_integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(AuditCheckpoints::HeadHash)
                            .binary()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AuditCheckpoints::Time)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AuditCheckpoints::KeyId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AuditCheckpoints::Signature)
                            .binary()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AuditCheckpoints::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(AuditEvents::Table).to_owned())
            .await
    }
}
