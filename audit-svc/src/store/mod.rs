//! audit-svc storage: the `audit_blocks`, `audit_event_ids` and
//! `audit_checkpoints` tables (sea-orm, SQLite or PostgreSQL), their migrations, and the queries the
//! chain writer, verification and the API need. Database rows are turned
//! into domain types here; nothing above sees a sea-orm model.

pub mod entities;
mod migrations;
pub mod queries;

use sea_orm_migration::{MigrationTrait, MigratorTrait};

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(agentsec_common::keys::store::CreateSigningKeys),
            Box::new(migrations::CreateAuditTables),
            Box::new(migrations::CreateAuditBlocks),
        ]
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{ConnectionTrait, Database};
    use sea_orm_migration::MigratorTrait;

    use super::Migrator;

    #[tokio::test]
    async fn a_database_with_events_in_the_first_layout_is_refused() {
        let db = Database::connect("sqlite::memory:").await.unwrap();
        // Signing keys and the first layout, as an earlier build left them.
        Migrator::up(&db, Some(2)).await.unwrap();
        db.execute_unprepared(
            "INSERT INTO audit_events (sequence, event_id, time, tenant, agent_id, \
             person_subject, trace_id, decision_id, kind, outcome, body, prev_hash, hash) \
             VALUES (1, 'evt_1', '2026-11-29 00:00:00+00:00', '', '', '', '', '', 'k', \
             'allow', '{}', x'00', x'00')",
        )
        .await
        .unwrap();
        let refused = Migrator::up(&db, None).await.unwrap_err().to_string();
        assert!(refused.contains("audit_events holds 1 events"), "{refused}");
        assert!(db
            .query_one(sea_orm::Statement::from_string(
                db.get_database_backend(),
                "SELECT COUNT(*) FROM audit_events"
            ))
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn an_empty_first_layout_is_replaced() {
        let db = Database::connect("sqlite::memory:").await.unwrap();
        Migrator::up(&db, Some(2)).await.unwrap();
        Migrator::up(&db, None).await.unwrap();
        let manager = sea_orm_migration::SchemaManager::new(&db);
        assert!(!manager.has_table("audit_events").await.unwrap());
        assert!(manager.has_table("audit_blocks").await.unwrap());
        assert!(manager.has_table("audit_event_ids").await.unwrap());
    }
}
