//! policy-svc storage: migrations of its own database. The policy-set tables
//! arrive with the policy-svc issue; the migrator already runs at start so
//! that their migrations slot in without a change to start-up.

use sea_orm_migration::{MigrationTrait, MigratorTrait};

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        Vec::new()
    }
}
