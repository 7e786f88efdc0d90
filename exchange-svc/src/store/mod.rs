//! exchange-svc storage: migrations of its own database and the grant
//! queries.

mod entities;
pub mod grants;
mod migrations;

use sea_orm_migration::{MigrationTrait, MigratorTrait};

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(agentsec_common::keys::store::CreateSigningKeys),
            Box::new(migrations::CreateGrants),
            Box::new(migrations::IndexGrantRevocations),
        ]
    }
}
