//! policy-svc storage: one table of policy set versions. Each row is the
//! whole content of one version of one tenant's policy set (the protobuf
//! encoding of `PolicySet`); the current version of a tenant is its highest
//! version. History is never rewritten: every change (put or rollback)
//! inserts version N+1, and the primary key (tenant, version) makes two
//! writers racing for the same N+1 fail one of them (which retries).

mod entity;
mod migration;
pub mod versions;

use sea_orm_migration::{MigrationTrait, MigratorTrait};

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(migration::CreatePolicyTables)]
    }
}

/// Whether `err` is a unique-constraint violation (a duplicate).
fn is_duplicate(err: &sea_orm::DbErr) -> bool {
    matches!(
        err.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}
