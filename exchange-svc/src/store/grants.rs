//! Grant rows.

use agentsec_common::error::ApiError;
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};

use super::entities::grant::{self, Entity as Grants};

/// A stored grant (the proto `Grant` without its computed status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub id: String,
    pub tenant: String,
    pub person_issuer: String,
    pub person_subject: String,
    pub agent_id: String,
    pub audiences: Vec<String>,
    pub scopes: Vec<String>,
    pub expire_time: DateTime<Utc>,
    pub max_chain_depth: u32,
    pub purpose: String,
    pub create_time: DateTime<Utc>,
    pub revoke_time: Option<DateTime<Utc>>,
    pub revoked_by: String,
    pub revoke_reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum GrantStoreError {
    #[error("stored grant `{id}` is unreadable: {reason}")]
    Corrupt { id: String, reason: String },
    #[error(transparent)]
    Db(#[from] DbErr),
}

impl From<GrantStoreError> for ApiError {
    /// An unreachable database is UNAVAILABLE, anything else INTERNAL.
    fn from(err: GrantStoreError) -> Self {
        match err {
            GrantStoreError::Db(err) => ApiError::database("grant store", err),
            other => ApiError::internal("grant store", other),
        }
    }
}

/// Which grants a list returns.
#[derive(Debug, Default)]
pub struct GrantFilter {
    /// (issuer, subject) of the person.
    pub person: Option<(String, String)>,
    /// Only grants of this tenant (tenant-scoped admins).
    pub tenant: Option<String>,
    /// The person's `sub`, any issuer (admin listings).
    pub person_subject: Option<String>,
    pub agent_id: Option<String>,
    /// Only grants neither revoked nor expired at this time.
    pub active_at: Option<DateTime<Utc>>,
}

/// The JSON columns hold lists of strings, which always serialise.
fn json(value: &[String]) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn to_row(grant: &Grant) -> grant::ActiveModel {
    grant::ActiveModel {
        id: Set(grant.id.clone()),
        tenant: Set(grant.tenant.clone()),
        person_issuer: Set(grant.person_issuer.clone()),
        person_subject: Set(grant.person_subject.clone()),
        agent_id: Set(grant.agent_id.clone()),
        audiences: Set(json(&grant.audiences)),
        scopes: Set(json(&grant.scopes)),
        expire_time: Set(grant.expire_time),
        max_chain_depth: Set(grant.max_chain_depth as i32),
        purpose: Set(grant.purpose.clone()),
        create_time: Set(grant.create_time),
        revoke_time: Set(grant.revoke_time),
        revoked_by: Set(grant.revoked_by.clone()),
        revoke_reason: Set(grant.revoke_reason.clone()),
    }
}

fn from_row(row: grant::Model) -> Result<Grant, GrantStoreError> {
    let corrupt = |reason: String| GrantStoreError::Corrupt {
        id: row.id.clone(),
        reason,
    };
    let audiences = serde_json::from_str(&row.audiences).map_err(|e| corrupt(e.to_string()))?;
    let scopes = serde_json::from_str(&row.scopes).map_err(|e| corrupt(e.to_string()))?;
    let max_chain_depth = u32::try_from(row.max_chain_depth).map_err(|e| corrupt(e.to_string()))?;
    Ok(Grant {
        id: row.id,
        tenant: row.tenant,
        person_issuer: row.person_issuer,
        person_subject: row.person_subject,
        agent_id: row.agent_id,
        audiences,
        scopes,
        expire_time: row.expire_time,
        max_chain_depth,
        purpose: row.purpose,
        create_time: row.create_time,
        revoke_time: row.revoke_time,
        revoked_by: row.revoked_by,
        revoke_reason: row.revoke_reason,
    })
}

pub async fn insert(db: &impl ConnectionTrait, grant: &Grant) -> Result<(), GrantStoreError> {
    to_row(grant).insert(db).await?;
    Ok(())
}

/// Replaces every column of the stored grant with `grant`'s values.
pub async fn save(db: &impl ConnectionTrait, grant: &Grant) -> Result<(), GrantStoreError> {
    to_row(grant).update(db).await?;
    Ok(())
}

pub async fn get(db: &impl ConnectionTrait, id: &str) -> Result<Option<Grant>, GrantStoreError> {
    Grants::find_by_id(id.to_owned())
        .one(db)
        .await?
        .map(from_row)
        .transpose()
}

/// Like [`get`], locking the row until the transaction ends.
pub async fn get_for_update(
    db: &impl ConnectionTrait,
    id: &str,
) -> Result<Option<Grant>, GrantStoreError> {
    agentsec_common::db::for_update(Grants::find_by_id(id.to_owned()), db)
        .one(db)
        .await?
        .map(from_row)
        .transpose()
}

/// Up to `limit` grants matching `filter` with ids before `before`, newest
/// (highest id) first.
pub async fn list(
    db: &impl ConnectionTrait,
    filter: &GrantFilter,
    before: Option<&str>,
    limit: u64,
) -> Result<Vec<Grant>, GrantStoreError> {
    let mut query = Grants::find().order_by_desc(grant::Column::Id).limit(limit);
    if let Some((issuer, subject)) = &filter.person {
        query = query
            .filter(grant::Column::PersonIssuer.eq(issuer.as_str()))
            .filter(grant::Column::PersonSubject.eq(subject.as_str()));
    }
    if let Some(tenant) = &filter.tenant {
        query = query.filter(grant::Column::Tenant.eq(tenant.as_str()));
    }
    if let Some(subject) = &filter.person_subject {
        query = query.filter(grant::Column::PersonSubject.eq(subject.as_str()));
    }
    if let Some(agent_id) = &filter.agent_id {
        query = query.filter(grant::Column::AgentId.eq(agent_id.as_str()));
    }
    if let Some(now) = filter.active_at {
        query = query.filter(
            Condition::all()
                .add(grant::Column::RevokeTime.is_null())
                .add(grant::Column::ExpireTime.gt(now)),
        );
    }
    if let Some(before) = before {
        query = query.filter(grant::Column::Id.lt(before));
    }
    query.all(db).await?.into_iter().map(from_row).collect()
}

/// A revoked grant as enforcement points need it.
pub struct RevokedGrant {
    pub id: String,
    pub tenant: String,
    pub agent_id: String,
    pub revoke_time: DateTime<Utc>,
}

/// Every grant revoked at or after `since`, by id.
pub async fn revoked_since(
    db: &impl ConnectionTrait,
    since: DateTime<Utc>,
) -> Result<Vec<RevokedGrant>, GrantStoreError> {
    let rows: Vec<(String, String, String, Option<DateTime<Utc>>)> = Grants::find()
        .select_only()
        .column(grant::Column::Id)
        .column(grant::Column::Tenant)
        .column(grant::Column::AgentId)
        .column(grant::Column::RevokeTime)
        .filter(grant::Column::RevokeTime.gte(since))
        .order_by_asc(grant::Column::Id)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, tenant, agent_id, revoke_time)| {
            Some(RevokedGrant {
                id,
                tenant,
                agent_id,
                revoke_time: revoke_time?,
            })
        })
        .collect())
}
