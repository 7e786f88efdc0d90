//! exchange-svc storage: migrations of its own database and the grant
//! store. Rows become domain grants here; nothing above sees a sea-orm
//! model.

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
