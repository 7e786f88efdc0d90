//! identity-svc storage: migrations of its own database.

use sea_orm_migration::{MigrationTrait, MigratorTrait};

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(agentsec_common::keys::store::CreateSigningKeys)]
    }
}
