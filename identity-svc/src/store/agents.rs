//! The `agents` table: rows to [`Agent`]s and back, and the sea-orm side
//! of [`AgentStore`] and [`AgentTx`].

use agentsec_common::store::{db_err, StoreError};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};

use super::entities::agent::{self, Entity as Agents};
use super::registry::{SqlRegistryStore, SqlRegistryTx};
use super::{AgentStore, AgentTx, Written};
use crate::domain::agent::{Agent, AgentFields, AgentFilter, Status};

fn to_row(agent: &Agent) -> agent::ActiveModel {
    agent::ActiveModel {
        id: Set(agent.id.clone()),
        tenant: Set(agent.tenant.clone()),
        owner: Set(agent.fields.owner.clone()),
        name: Set(agent.fields.name.clone()),
        description: Set(agent.fields.description.clone()),
        model: Set(agent.fields.model.clone()),
        provider: Set(agent.fields.provider.clone()),
        status: Set(agent.status.as_str().to_owned()),
        status_reason: Set(agent.status_reason.clone()),
        attributes: Set(json(&agent.fields.attributes)),
        ceiling_audiences: Set(json(&agent.fields.ceiling_audiences)),
        ceiling_scopes: Set(json(&agent.fields.ceiling_scopes)),
        token_generation: Set(agent.token_generation),
        token_generation_time: Set(agent.generation_time),
        create_time: Set(agent.create_time),
        update_time: Set(agent.update_time),
    }
}

/// The JSON columns hold maps and lists of strings, which always serialise.
fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn from_row(row: agent::Model) -> Result<Agent, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        kind: "agent",
        id: row.id.clone(),
        reason,
    };
    let status = Status::parse(&row.status)
        .ok_or_else(|| corrupt(format!("unknown status `{}`", row.status)))?;
    let attributes = serde_json::from_str(&row.attributes).map_err(|e| corrupt(e.to_string()))?;
    let ceiling_audiences =
        serde_json::from_str(&row.ceiling_audiences).map_err(|e| corrupt(e.to_string()))?;
    let ceiling_scopes =
        serde_json::from_str(&row.ceiling_scopes).map_err(|e| corrupt(e.to_string()))?;
    Ok(Agent {
        fields: AgentFields {
            owner: row.owner,
            name: row.name,
            description: row.description,
            model: row.model,
            provider: row.provider,
            attributes,
            ceiling_audiences,
            ceiling_scopes,
        },
        id: row.id,
        tenant: row.tenant,
        status,
        status_reason: row.status_reason,
        token_generation: row.token_generation,
        generation_time: row.token_generation_time,
        create_time: row.create_time,
        update_time: row.update_time,
    })
}

/// A write refused by the unique (tenant, name) index is a duplicate.
fn written(result: Result<agent::Model, sea_orm::DbErr>) -> Result<Written, StoreError> {
    match result {
        Ok(_) => Ok(Written::Stored),
        Err(err) if super::is_duplicate(&err) => Ok(Written::Duplicate),
        Err(err) => Err(StoreError::db("writing an agent", err)),
    }
}

async fn get(db: &impl ConnectionTrait, id: &str) -> Result<Option<Agent>, StoreError> {
    Agents::find_by_id(id.to_owned())
        .one(db)
        .await
        .map_err(db_err("reading an agent"))?
        .map(from_row)
        .transpose()
}

impl AgentStore for SqlRegistryStore {
    async fn agent(&self, id: &str) -> Result<Option<Agent>, StoreError> {
        get(&self.db, id).await
    }

    async fn agents(
        &self,
        filter: &AgentFilter,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<Agent>, StoreError> {
        let mut query = Agents::find().order_by_asc(agent::Column::Id).limit(limit);
        if let Some(tenant) = &filter.tenant {
            query = query.filter(agent::Column::Tenant.eq(tenant.as_str()));
        }
        if let Some(owner) = &filter.owner {
            query = query.filter(agent::Column::Owner.eq(owner.as_str()));
        }
        if let Some(status) = filter.status {
            query = query.filter(agent::Column::Status.eq(status.as_str()));
        }
        if let Some(since) = filter.updated_since {
            query = query.filter(agent::Column::UpdateTime.gte(since));
        }
        if let Some(after) = after {
            query = query.filter(agent::Column::Id.gt(after));
        }
        query
            .all(&self.db)
            .await
            .map_err(db_err("listing agents"))?
            .into_iter()
            .map(from_row)
            .collect()
    }

    async fn active_generation(&self, id: &str) -> Result<Option<i64>, StoreError> {
        let row: Option<(String, i64)> = Agents::find_by_id(id.to_owned())
            .select_only()
            .column(agent::Column::Status)
            .column(agent::Column::TokenGeneration)
            .into_tuple()
            .one(&self.db)
            .await
            .map_err(db_err("reading an agent's standing"))?;
        Ok(row.and_then(|(status, generation)| {
            (status == Status::Active.as_str()).then_some(generation)
        }))
    }
}

impl AgentTx for SqlRegistryTx {
    async fn agent_for_update(&mut self, id: &str) -> Result<Option<Agent>, StoreError> {
        agentsec_common::db::for_update(Agents::find_by_id(id.to_owned()), &self.txn)
            .one(&self.txn)
            .await
            .map_err(db_err("locking an agent"))?
            .map(from_row)
            .transpose()
    }

    async fn insert_agent(&mut self, agent: &Agent) -> Result<Written, StoreError> {
        written(to_row(agent).insert(&self.txn).await)
    }

    async fn save_agent(&mut self, agent: &Agent) -> Result<Written, StoreError> {
        written(to_row(agent).update(&self.txn).await)
    }
}
