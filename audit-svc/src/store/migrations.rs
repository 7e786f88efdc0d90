//! Schema of the audit tables.
//!
//! `CreateAuditTables` is the first layout (one indexed row per event); it
//! stays in the list so that databases it created keep their migration
//! history. `CreateAuditBlocks` replaces it with one row per block of
//! events (see `docs/audit-chain.md`, section 1) and refuses to run on a
//! database that already holds events in the first layout.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend, Statement};

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

/// The block layout: `audit_blocks` (one row per block of consecutive
/// events, with the key summaries that queries filter on) and
/// `audit_event_ids` (event id -> sequence, for idempotent appends).
pub struct CreateAuditBlocks;

impl MigrationName for CreateAuditBlocks {
    fn name(&self) -> &str {
        "m20261129_000003_audit_blocks"
    }
}

/// The summary columns that hold arrays of distinct values.
const SUMMARY_ARRAYS: [&str; 7] = [
    "tenants",
    "agent_ids",
    "person_subjects",
    "trace_ids",
    "decision_ids",
    "kinds",
    "outcomes",
];

/// Summary arrays with a GIN index on PostgreSQL: those a selective filter
/// names. `kinds` and `outcomes` hold a handful of values per block, so an
/// index on them would select nearly every block.
const INDEXED_ARRAYS: [&str; 5] = [
    "tenants",
    "agent_ids",
    "person_subjects",
    "trace_ids",
    "decision_ids",
];

#[async_trait::async_trait]
impl MigrationTrait for CreateAuditBlocks {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let backend = manager.get_database_backend();
        refuse_events_in_the_first_layout(manager).await?;
        // Empty: nothing is lost by dropping it.
        db.execute_unprepared("DROP TABLE IF EXISTS audit_events")
            .await?;
        let (array_type, bytes_type) = match backend {
            DbBackend::Postgres => ("TEXT[]", "BYTEA"),
            DbBackend::Sqlite | DbBackend::MySql => ("TEXT", "BLOB"),
        };
        let arrays: String = SUMMARY_ARRAYS
            .iter()
            .map(|column| format!(", {column} {array_type} NOT NULL"))
            .collect();
        db.execute_unprepared(&format!(
            "CREATE TABLE audit_blocks (\
             first_sequence BIGINT NOT NULL PRIMARY KEY, \
             last_sequence BIGINT NOT NULL UNIQUE, \
             prev_hash {bytes_type} NOT NULL, \
             hashes {bytes_type} NOT NULL, \
             events TEXT NOT NULL, \
             min_time_us BIGINT NOT NULL, \
             max_time_us BIGINT NOT NULL\
             {arrays})"
        ))
        .await?;
        db.execute_unprepared(
            "CREATE TABLE audit_event_ids (\
             event_id VARCHAR(128) NOT NULL PRIMARY KEY, \
             sequence BIGINT NOT NULL)",
        )
        .await?;
        if backend == DbBackend::Postgres {
            for column in INDEXED_ARRAYS {
                db.execute_unprepared(&format!(
                    "CREATE INDEX audit_blocks_{column} ON audit_blocks USING gin ({column})"
                ))
                .await?;
            }
            // LZ4 compresses the JSON lines several times faster than the
            // default pglz; a server built without LZ4 keeps pglz.
            db.execute_unprepared(
                "DO $$ BEGIN \
                 ALTER TABLE audit_blocks ALTER COLUMN events SET COMPRESSION lz4; \
                 EXCEPTION WHEN feature_not_supported THEN NULL; \
                 END $$",
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("DROP TABLE IF EXISTS audit_event_ids")
            .await?;
        db.execute_unprepared("DROP TABLE IF EXISTS audit_blocks")
            .await?;
        CreateAuditTables.up(manager).await
    }
}

/// Events stored by the first layout are not converted: no release used it.
/// Starting on such a database fails with this message instead of hiding
/// or dropping its chain.
async fn refuse_events_in_the_first_layout(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    if !manager.has_table("audit_events").await? {
        return Ok(());
    }
    let db = manager.get_connection();
    let row = db
        .query_one(Statement::from_string(
            manager.get_database_backend(),
            "SELECT COUNT(*) FROM audit_events",
        ))
        .await?;
    let stored = row
        .map(|row| row.try_get_by_index::<i64>(0))
        .transpose()?
        .unwrap_or(0);
    if stored > 0 {
        return Err(DbErr::Migration(format!(
            "audit_events holds {stored} events in the per-event layout of an earlier \
             development build, which this version does not convert; export them with that \
             build (ExportEvents), then start on an empty audit database"
        )));
    }
    Ok(())
}
