//! identity-svc storage: migrations and the queries of its own database.

pub mod agents;
pub mod credentials;
mod entities;
mod migrations;
pub mod revocations;
pub mod settings;
pub mod tokens;

use sea_orm_migration::{MigrationTrait, MigratorTrait};

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(agentsec_common::keys::store::CreateSigningKeys),
            Box::new(migrations::CreateIdentityTables),
            Box::new(migrations::AddRevocationState),
        ]
    }
}

/// Whether `err` is a unique-constraint violation (a duplicate).
pub(crate) fn is_duplicate(err: &sea_orm::DbErr) -> bool {
    matches!(
        err.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}
