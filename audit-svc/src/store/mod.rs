//! audit-svc storage: the `audit_events` and `audit_checkpoints` tables
//! (sea-orm, SQLite or PostgreSQL), their migrations, and the queries the
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
        ]
    }
}
