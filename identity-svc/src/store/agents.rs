//! Agent rows.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};

use chrono::{DateTime, Utc};

use super::entities::agent::{self, Entity as Agents};
use crate::domain::agent::{Agent, AgentFields, Status};

#[derive(Debug, thiserror::Error)]
pub enum AgentStoreError {
    #[error("an agent with this name already exists in the tenant")]
    DuplicateName,
    #[error("stored agent `{id}` is unreadable: {reason}")]
    Corrupt { id: String, reason: String },
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// Which agents a list returns.
#[derive(Debug, Default)]
pub struct AgentFilter {
    pub tenant: Option<String>,
    pub owner: Option<String>,
    pub status: Option<Status>,
    pub updated_since: Option<DateTime<Utc>>,
}

fn to_row(agent: &Agent) -> Result<agent::ActiveModel, AgentStoreError> {
    Ok(agent::ActiveModel {
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
    })
}

/// The JSON columns hold maps and lists of strings, which always serialise.
fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn from_row(row: agent::Model) -> Result<Agent, AgentStoreError> {
    let corrupt = |reason: String| AgentStoreError::Corrupt {
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

pub async fn insert(db: &impl ConnectionTrait, agent: &Agent) -> Result<(), AgentStoreError> {
    match to_row(agent)?.insert(db).await {
        Ok(_) => Ok(()),
        Err(err) if super::is_duplicate(&err) => Err(AgentStoreError::DuplicateName),
        Err(err) => Err(err.into()),
    }
}

/// Replaces every column of the stored agent with `agent`'s values.
pub async fn save(db: &impl ConnectionTrait, agent: &Agent) -> Result<(), AgentStoreError> {
    match to_row(agent)?.update(db).await {
        Ok(_) => Ok(()),
        Err(err) if super::is_duplicate(&err) => Err(AgentStoreError::DuplicateName),
        Err(err) => Err(err.into()),
    }
}

pub async fn get(db: &impl ConnectionTrait, id: &str) -> Result<Option<Agent>, AgentStoreError> {
    Agents::find_by_id(id.to_owned())
        .one(db)
        .await?
        .map(from_row)
        .transpose()
}

/// Like [`get`], locking the row until the transaction ends.
pub async fn get_for_update(
    db: &impl ConnectionTrait,
    id: &str,
) -> Result<Option<Agent>, AgentStoreError> {
    agentsec_common::db::for_update(Agents::find_by_id(id.to_owned()), db)
        .one(db)
        .await?
        .map(from_row)
        .transpose()
}

/// Up to `limit` agents matching `filter` with ids after `after`, by id.
pub async fn list(
    db: &impl ConnectionTrait,
    filter: &AgentFilter,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<Agent>, AgentStoreError> {
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
    query.all(db).await?.into_iter().map(from_row).collect()
}

/// The agent's token generation if it is active; `None` if it is not (or
/// does not exist).
pub async fn active_generation(
    db: &impl ConnectionTrait,
    agent_id: &str,
) -> Result<Option<i64>, DbErr> {
    let row: Option<(String, i64)> = Agents::find_by_id(agent_id.to_owned())
        .select_only()
        .column(agent::Column::Status)
        .column(agent::Column::TokenGeneration)
        .into_tuple()
        .one(db)
        .await?;
    Ok(row
        .and_then(|(status, generation)| (status == Status::Active.as_str()).then_some(generation)))
}
