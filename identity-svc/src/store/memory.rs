//! The registry's tables in memory, for unit tests of the rules: the same
//! unique keys as the database (an agent's name in its tenant, a public
//! key's kid for its agent) and the same unit of work.

use std::collections::BTreeMap;

use agentsec_common::store::{MemoryTables, MemoryTx, StoreError};
use chrono::{DateTime, Utc};

use super::{
    AgentStore, AgentTx, CredentialStore, CredentialTx, RegistryStore, RegistryTx, Written,
};
use crate::domain::agent::{Agent, AgentFilter, Status};
use crate::domain::credential::{Credential, Kind, SubjectMatch};

#[derive(Debug, Clone, Default)]
pub struct Tables {
    pub agents: BTreeMap<String, Agent>,
    pub credentials: BTreeMap<String, Credential>,
    /// Deleted credential id -> its agent and when it was deleted.
    pub deleted_credentials: BTreeMap<String, (String, DateTime<Utc>)>,
}

impl Tables {
    fn name_taken(&self, agent: &Agent) -> bool {
        self.agents.values().any(|other| {
            other.id != agent.id
                && other.tenant == agent.tenant
                && other.fields.name == agent.fields.name
        })
    }

    fn kid_taken(&self, credential: &Credential) -> bool {
        credential.kid.is_some()
            && self.credentials.values().any(|other| {
                other.id != credential.id
                    && other.agent_id == credential.agent_id
                    && other.kid == credential.kid
            })
    }
}

#[derive(Clone, Default)]
pub struct MemoryRegistryStore {
    pub tables: MemoryTables<Tables>,
}

pub struct MemoryRegistryTx {
    tx: MemoryTx<Tables>,
}

fn after_id(id: &str, after: Option<&str>) -> bool {
    after.is_none_or(|after| id > after)
}

impl AgentStore for MemoryRegistryStore {
    async fn agent(&self, id: &str) -> Result<Option<Agent>, StoreError> {
        self.tables.read(|t| t.agents.get(id).cloned()).await
    }

    async fn agents(
        &self,
        filter: &AgentFilter,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<Agent>, StoreError> {
        self.tables
            .read(|t| {
                t.agents
                    .values()
                    .filter(|agent| after_id(&agent.id, after))
                    .filter(|agent| filter.tenant.as_ref().is_none_or(|x| *x == agent.tenant))
                    .filter(|agent| {
                        filter
                            .owner
                            .as_ref()
                            .is_none_or(|x| *x == agent.fields.owner)
                    })
                    .filter(|agent| filter.status.is_none_or(|x| x == agent.status))
                    .filter(|agent| {
                        filter
                            .updated_since
                            .is_none_or(|since| agent.update_time >= since)
                    })
                    .take(limit as usize)
                    .cloned()
                    .collect()
            })
            .await
    }

    async fn active_generation(&self, id: &str) -> Result<Option<i64>, StoreError> {
        self.tables
            .read(|t| {
                t.agents
                    .get(id)
                    .filter(|agent| agent.status == Status::Active)
                    .map(|agent| agent.token_generation)
            })
            .await
    }
}

impl CredentialStore for MemoryRegistryStore {
    async fn credentials(
        &self,
        agent_id: &str,
        kind: Option<Kind>,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<Credential>, StoreError> {
        self.tables
            .read(|t| {
                t.credentials
                    .values()
                    .filter(|c| c.agent_id == agent_id && after_id(&c.id, after))
                    .filter(|c| kind.is_none_or(|kind| kind == c.kind))
                    .take(limit as usize)
                    .cloned()
                    .collect()
            })
            .await
    }

    async fn credential_exists(&self, id: &str) -> Result<bool, StoreError> {
        self.tables.read(|t| t.credentials.contains_key(id)).await
    }

    async fn public_key(
        &self,
        agent_id: &str,
        kid: &str,
    ) -> Result<Option<Credential>, StoreError> {
        self.tables
            .read(|t| {
                t.credentials
                    .values()
                    .find(|c| {
                        c.agent_id == agent_id
                            && c.kind == Kind::PublicKey
                            && c.kid.as_deref() == Some(kid)
                    })
                    .cloned()
            })
            .await
    }

    async fn federated_candidates(
        &self,
        issuer: &str,
        subject: &str,
        audiences: &[String],
    ) -> Result<Vec<Credential>, StoreError> {
        self.tables
            .read(|t| {
                t.credentials
                    .values()
                    .filter(|c| {
                        c.federated.as_ref().is_some_and(|federated| {
                            federated.issuer == issuer
                                && audiences.contains(&federated.audience)
                                && match &federated.subject {
                                    SubjectMatch::Exact(exact) => exact == subject,
                                    SubjectMatch::Pattern(_) => true,
                                }
                        })
                    })
                    .cloned()
                    .collect()
            })
            .await
    }
}

impl RegistryStore for MemoryRegistryStore {
    type Tx = MemoryRegistryTx;

    async fn begin(&self) -> Result<MemoryRegistryTx, StoreError> {
        Ok(MemoryRegistryTx {
            tx: self.tables.begin().await?,
        })
    }
}

impl AgentTx for MemoryRegistryTx {
    async fn agent_for_update(&mut self, id: &str) -> Result<Option<Agent>, StoreError> {
        Ok(self.tx.agents.get(id).cloned())
    }

    async fn insert_agent(&mut self, agent: &Agent) -> Result<Written, StoreError> {
        if self.tx.name_taken(agent) || self.tx.agents.contains_key(&agent.id) {
            return Ok(Written::Duplicate);
        }
        self.tx.agents.insert(agent.id.clone(), agent.clone());
        Ok(Written::Stored)
    }

    async fn save_agent(&mut self, agent: &Agent) -> Result<Written, StoreError> {
        if !self.tx.agents.contains_key(&agent.id) {
            return Err(StoreError::Internal {
                context: "saving an agent",
                source: format!("no agent `{}`", agent.id).into(),
            });
        }
        if self.tx.name_taken(agent) {
            return Ok(Written::Duplicate);
        }
        self.tx.agents.insert(agent.id.clone(), agent.clone());
        Ok(Written::Stored)
    }
}

impl CredentialTx for MemoryRegistryTx {
    async fn count_credentials(&mut self, agent_id: &str, kind: Kind) -> Result<u64, StoreError> {
        Ok(self
            .tx
            .credentials
            .values()
            .filter(|c| c.agent_id == agent_id && c.kind == kind)
            .count() as u64)
    }

    async fn insert_credential(&mut self, credential: &Credential) -> Result<Written, StoreError> {
        if self.tx.kid_taken(credential) || self.tx.credentials.contains_key(&credential.id) {
            return Ok(Written::Duplicate);
        }
        self.tx
            .credentials
            .insert(credential.id.clone(), credential.clone());
        Ok(Written::Stored)
    }

    async fn delete_credential(
        &mut self,
        agent_id: &str,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        if self
            .tx
            .credentials
            .get(id)
            .is_none_or(|c| c.agent_id != agent_id)
        {
            return Ok(false);
        }
        self.tx.credentials.remove(id);
        self.tx
            .deleted_credentials
            .insert(id.to_owned(), (agent_id.to_owned(), now));
        Ok(true)
    }
}

impl RegistryTx for MemoryRegistryTx {
    async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await
    }
}
