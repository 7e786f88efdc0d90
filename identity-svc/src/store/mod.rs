//! identity-svc storage: migrations, the stores of the registry's tables
//! (agents and credentials, behind [`AgentStore`], [`CredentialStore`] and
//! their shared unit of work [`RegistryStore`]) and the queries of the
//! token tables. Rows become domain types here; nothing above sees a
//! sea-orm model.

pub mod agents;
pub mod credentials;
mod entities;
#[cfg(test)]
pub mod memory;
mod migrations;
pub mod registry;
pub mod revocations;
pub mod settings;
pub mod tokens;

use std::future::Future;

use agentsec_common::store::StoreError;
use chrono::{DateTime, Utc};
use sea_orm_migration::{MigrationTrait, MigratorTrait};

use crate::domain::agent::{Agent, AgentFilter};
use crate::domain::credential::{Credential, Kind};
pub use registry::SqlRegistryStore;

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

/// Whether a row was written, or another row already holds one of its
/// unique keys (an agent's name in its tenant, a public key's kid for its
/// agent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Written {
    Stored,
    Duplicate,
}

/// Reads of the `agents` table.
pub trait AgentStore: Send + Sync + 'static {
    fn agent(&self, id: &str) -> impl Future<Output = Result<Option<Agent>, StoreError>> + Send;

    /// Up to `limit` agents matching `filter` with ids after `after`, by id.
    fn agents(
        &self,
        filter: &AgentFilter,
        after: Option<&str>,
        limit: u64,
    ) -> impl Future<Output = Result<Vec<Agent>, StoreError>> + Send;

    /// The agent's token generation if it is active; `None` if it is not
    /// (or does not exist).
    fn active_generation(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<i64>, StoreError>> + Send;
}

/// Reads of the `credentials` table. A row of a kind this build does not
/// know is not returned (a newer release wrote it; it is not usable here).
pub trait CredentialStore: Send + Sync + 'static {
    /// An agent's credentials of `kind` (all kinds when `None`) with ids
    /// after `after`, at most `limit`, by id.
    fn credentials(
        &self,
        agent_id: &str,
        kind: Option<Kind>,
        after: Option<&str>,
        limit: u64,
    ) -> impl Future<Output = Result<Vec<Credential>, StoreError>> + Send;

    fn credential_exists(&self, id: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The agent's public key with this kid, if registered.
    fn public_key(
        &self,
        agent_id: &str,
        kid: &str,
    ) -> impl Future<Output = Result<Option<Credential>, StoreError>> + Send;

    /// The federated credentials of `issuer` for one of `audiences` that
    /// may accept the external subject `subject`: those naming it exactly,
    /// and all patterns (the caller matches them). Ordered by id.
    fn federated_candidates(
        &self,
        issuer: &str,
        subject: &str,
        audiences: &[String],
    ) -> impl Future<Output = Result<Vec<Credential>, StoreError>> + Send;
}

/// The agents and credentials tables with one unit of work over both: a
/// credential is added or deleted under its agent's row lock, so that a
/// revocation or the per-kind cap cannot race with it.
pub trait RegistryStore: AgentStore + CredentialStore {
    type Tx: RegistryTx;

    fn begin(&self) -> impl Future<Output = Result<Self::Tx, StoreError>> + Send;
}

/// Agent writes within a unit of work.
pub trait AgentTx: Send {
    /// The agent, locked until the unit of work ends.
    fn agent_for_update(
        &mut self,
        id: &str,
    ) -> impl Future<Output = Result<Option<Agent>, StoreError>> + Send;

    fn insert_agent(
        &mut self,
        agent: &Agent,
    ) -> impl Future<Output = Result<Written, StoreError>> + Send;

    /// Replaces every column of the stored agent with `agent`'s values.
    fn save_agent(
        &mut self,
        agent: &Agent,
    ) -> impl Future<Output = Result<Written, StoreError>> + Send;
}

/// Credential writes within a unit of work.
pub trait CredentialTx: Send {
    fn count_credentials(
        &mut self,
        agent_id: &str,
        kind: Kind,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    fn insert_credential(
        &mut self,
        credential: &Credential,
    ) -> impl Future<Output = Result<Written, StoreError>> + Send;

    /// Deletes the credential if it belongs to `agent_id`, leaving a
    /// tombstone for enforcement points (see `revocations`); whether it did.
    fn delete_credential(
        &mut self,
        agent_id: &str,
        id: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// A unit of work over agents and credentials: nothing is stored until
/// `commit`; dropped = rolled back.
pub trait RegistryTx: AgentTx + CredentialTx {
    fn commit(self) -> impl Future<Output = Result<(), StoreError>> + Send;
}
