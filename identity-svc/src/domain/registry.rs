//! The registry of agents: registration, reads within the admin's scope,
//! updates and lifecycle transitions. Each change is written in a unit of
//! work that also queues its audit event (a change that cannot be audited
//! does not happen), then published as an invalidation event.

use std::collections::BTreeMap;
use std::sync::Arc;

use agentsec_common::admin_token::AdminScope;
use chrono::Utc;

use super::agent::{Agent, AgentFields, AgentFilter, AgentInput, AgentQuery, NewAgent, Status};
use super::paging::PageRequest;
use super::validate;
use crate::error::IdentityError;
use crate::events::{self, Events, Invalidation, InvalidationKind};
use crate::federation::Federation;
use crate::secrets::Pepper;
use crate::standing::Standing;
use crate::store::{AgentTx, RegistryStore, RegistryTx, SqlRegistryStore, Written};

const MAX_LIST_ATTRIBUTES: usize = 16;
/// How many rows a list reads per round while filtering by attributes.
const ATTRIBUTE_SCAN_CHUNK: u64 = 500;
/// Longest agent id accepted in a request.
const MAX_AGENT_ID: usize = 64;

/// A lifecycle change requested by an admin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Suspend,
    Reactivate,
    Revoke,
}

/// The admin operations on agents and their credentials.
pub struct Registry<S: RegistryStore = SqlRegistryStore> {
    pub store: S,
    pub events: Events,
    pub pepper: Pepper,
    /// The trusted issuers federated credentials may name.
    pub federation: Arc<Federation>,
    pub standing: Arc<Standing>,
}

/// The agent if the admin may see it; NOT_FOUND otherwise (other tenants'
/// agents do not exist for a tenant admin).
fn seen(admin: &AdminScope, id: &str, agent: Option<Agent>) -> Result<Agent, IdentityError> {
    agent
        .filter(|agent| admin.covers(&agent.tenant))
        .ok_or_else(|| IdentityError::not_found("agent", validate::printable(id)))
}

fn name_taken(name: &str) -> IdentityError {
    IdentityError::AlreadyExists {
        kind: "agent named",
        id: validate::printable(name),
    }
}

/// No change is made to a revoked agent or for it.
pub(super) fn usable(agent: &Agent) -> Result<(), IdentityError> {
    if agent.status == Status::Revoked {
        return Err(IdentityError::precondition("the agent is revoked"));
    }
    Ok(())
}

impl<S: RegistryStore> Registry<S> {
    /// The agent `id` as the admin sees it, read outside any unit of work.
    async fn visible(&self, admin: &AdminScope, id: &str) -> Result<Agent, IdentityError> {
        validate::required("agent_id", id, MAX_AGENT_ID)?;
        seen(admin, id, self.store.agent(id).await?)
    }

    /// The agent `id` as the admin sees it, locked in `tx`.
    pub(super) async fn locked(
        tx: &mut S::Tx,
        admin: &AdminScope,
        id: &str,
    ) -> Result<Agent, IdentityError> {
        validate::required("agent_id", id, MAX_AGENT_ID)?;
        seen(admin, id, tx.agent_for_update(id).await?)
    }

    pub async fn register(
        &self,
        admin: &AdminScope,
        agent: NewAgent,
    ) -> Result<Agent, IdentityError> {
        validate::tenant("agent.tenant", &agent.tenant)?;
        if !admin.covers(&agent.tenant) {
            return Err(IdentityError::denied(
                "a tenant admin may only register agents in its own tenant",
            ));
        }
        let fields = AgentFields::validate(&agent.fields, "agent")?;
        let now = Utc::now();
        let stored = Agent {
            id: agentsec_common::ids::new_id("agt_")
                .map_err(|err| IdentityError::internal("agent id", err))?,
            tenant: agent.tenant,
            fields,
            status: Status::Active,
            status_reason: String::new(),
            token_generation: 0,
            generation_time: None,
            create_time: now,
            update_time: now,
        };
        let mut tx = self.store.begin().await?;
        if tx.insert_agent(&stored).await? == Written::Duplicate {
            return Err(name_taken(&stored.fields.name));
        }
        self.events
            .audit(
                events::change("agent.registered", &stored.tenant, &stored.id)
                    .attribute("owner", stored.fields.owner.clone()),
            )
            .await?;
        tx.commit().await?;
        if !stored.fields.attributes.is_empty() {
            // Followers that keep agents' attributes (policy-svc) learn the
            // new agent's.
            self.events
                .invalidate(Invalidation::new(
                    InvalidationKind::AgentUpdated,
                    &stored.tenant,
                    &stored.id,
                ))
                .await;
        }
        Ok(stored)
    }

    pub async fn get(&self, admin: &AdminScope, id: &str) -> Result<Agent, IdentityError> {
        self.visible(admin, id).await
    }

    /// One page of the agents matching `query` within the admin's scope,
    /// by id, and the cursor of the next page ("" after the last).
    pub async fn list(
        &self,
        admin: &AdminScope,
        query: AgentQuery,
        page: impl PageRequest,
    ) -> Result<(Vec<Agent>, String), IdentityError> {
        let tenant = match (admin, query.tenant.as_str()) {
            (AdminScope::Tenant(own), "") => Some(own.clone()),
            (AdminScope::Tenant(own), named) if named == own => Some(own.clone()),
            (AdminScope::Tenant(_), _) => {
                return Err(IdentityError::denied(
                    "a tenant admin may only list its own tenant",
                ))
            }
            (AdminScope::Global, "") => None,
            (AdminScope::Global, named) => {
                validate::tenant("tenant", named)?;
                Some(named.to_owned())
            }
        };
        if !query.owner.is_empty() {
            validate::at_most("owner", &query.owner, validate::MAX_NAME)?;
        }
        if query.attributes.len() > MAX_LIST_ATTRIBUTES {
            return Err(IdentityError::invalid(
                "attributes",
                format!("at most {MAX_LIST_ATTRIBUTES} entries"),
            ));
        }
        let wanted: BTreeMap<&String, &String> = query.attributes.iter().collect();
        let filter = AgentFilter {
            tenant,
            owner: (!query.owner.is_empty()).then(|| query.owner.clone()),
            status: query.status,
            updated_since: query.updated_since,
        };
        let page = page.page(format!("agents|{filter:?}|{wanted:?}"))?;
        let mut found = Vec::new();
        let mut after = page.after.clone();
        // Attribute filters are applied here, reading on until the page is
        // full or the listing ends.
        let chunk = if wanted.is_empty() {
            page.size + 1
        } else {
            ATTRIBUTE_SCAN_CHUNK
        };
        loop {
            let rows = self.store.agents(&filter, after.as_deref(), chunk).await?;
            let exhausted = (rows.len() as u64) < chunk;
            after = rows.last().map(|agent| agent.id.clone()).or(after);
            found.extend(rows.into_iter().filter(|agent| {
                wanted
                    .iter()
                    .all(|(key, value)| agent.fields.attributes.get(*key) == Some(*value))
            }));
            if exhausted || found.len() as u64 > page.size {
                break;
            }
        }
        let more = found.len() as u64 > page.size;
        found.truncate(page.size as usize);
        let next = page.next_token(found.last().map(|agent| agent.id.as_str()), more);
        Ok((found, next))
    }

    /// Replaces the fields named in `mask` with those of `update`.
    pub async fn update(
        &self,
        admin: &AdminScope,
        id: &str,
        update: AgentInput,
        mask: Vec<String>,
    ) -> Result<Agent, IdentityError> {
        let mut tx = self.store.begin().await?;
        let mut agent = Self::locked(&mut tx, admin, id).await?;
        usable(&agent)?;
        agent.fields = agent.fields.updated(&update, &mask)?;
        agent.update_time = Utc::now();
        if tx.save_agent(&agent).await? == Written::Duplicate {
            return Err(name_taken(&agent.fields.name));
        }
        self.events
            .audit(
                events::change("agent.updated", &agent.tenant, &agent.id)
                    .attribute("fields", mask.join(",")),
            )
            .await?;
        tx.commit().await?;
        self.standing.forget_agent(&agent.id);
        self.events
            .invalidate(Invalidation::new(
                InvalidationKind::AgentUpdated,
                &agent.tenant,
                &agent.id,
            ))
            .await;
        Ok(agent)
    }

    /// Suspends, reactivates or revokes the agent. Asking for the status it
    /// already has changes nothing and is not audited; a revoked agent
    /// stays revoked.
    pub async fn transition(
        &self,
        admin: &AdminScope,
        id: &str,
        transition: Transition,
        reason: &str,
    ) -> Result<Agent, IdentityError> {
        validate::required("reason", reason, validate::MAX_REASON)?;
        let mut tx = self.store.begin().await?;
        let mut agent = Self::locked(&mut tx, admin, id).await?;
        let (target, kind, invalidation) = match transition {
            Transition::Suspend => (
                Status::Suspended,
                "agent.suspended",
                InvalidationKind::AgentSuspended,
            ),
            Transition::Reactivate => (
                Status::Active,
                "agent.reactivated",
                InvalidationKind::AgentReactivated,
            ),
            Transition::Revoke => (
                Status::Revoked,
                "agent.revoked",
                InvalidationKind::AgentRevoked,
            ),
        };
        if agent.status == Status::Revoked && target != Status::Revoked {
            return Err(IdentityError::precondition(
                "the agent is revoked, which is final",
            ));
        }
        if agent.status == target {
            return Ok(agent);
        }
        let now = Utc::now();
        if target != Status::Active {
            // Tokens carry the generation they were issued in: every token
            // issued so far stops being active, and a later reactivation
            // does not bring them back.
            agent.token_generation += 1;
            agent.generation_time = Some(now);
        }
        agent.status = target;
        agent.status_reason = reason.to_owned();
        agent.update_time = now;
        if tx.save_agent(&agent).await? == Written::Duplicate {
            // Only the status columns changed: the name cannot collide.
            return Err(IdentityError::internal(
                "saving an agent's status",
                "the unique name index refused an unchanged name",
            ));
        }
        self.events
            .audit(events::change(kind, &agent.tenant, &agent.id).reason(reason))
            .await?;
        tx.commit().await?;
        self.standing.forget_agent(&agent.id);
        let mut invalidation = Invalidation::new(invalidation, &agent.tenant, &agent.id);
        invalidation.token_generation = agent.token_generation;
        self.events.invalidate(invalidation).await;
        Ok(agent)
    }
}
