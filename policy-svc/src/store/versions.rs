//! Queries of the policy set versions.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};

use super::entity::policy_version;

/// One stored version (content as protobuf bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredVersion {
    pub tenant: String,
    pub version: u64,
    pub content: Vec<u8>,
    pub content_sha256: String,
    pub author: String,
    pub description: String,
    pub rolled_back_from: u64,
    pub rule_count: u32,
    pub role_assignment_count: u32,
    pub create_time: DateTime<Utc>,
}

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or_default()
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl From<policy_version::Model> for StoredVersion {
    fn from(row: policy_version::Model) -> Self {
        Self {
            tenant: row.tenant,
            version: to_u64(row.version),
            content: row.content,
            content_sha256: row.content_sha256,
            author: row.author,
            description: row.description,
            rolled_back_from: to_u64(row.rolled_back_from),
            rule_count: u32::try_from(row.rule_count).unwrap_or_default(),
            role_assignment_count: u32::try_from(row.role_assignment_count).unwrap_or_default(),
            create_time: row.create_time,
        }
    }
}

/// Why a version was not inserted.
#[derive(Debug, thiserror::Error)]
pub enum InsertError {
    /// Another writer stored this version first.
    #[error("version already exists")]
    Conflict,
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// The tenant's current (highest) version; 0 when it has none.
pub async fn current_version(db: &impl ConnectionTrait, tenant: &str) -> Result<u64, DbErr> {
    let max: Option<Option<i64>> = policy_version::Entity::find()
        .select_only()
        .column_as(Expr::col(policy_version::Column::Version).max(), "max")
        .filter(policy_version::Column::Tenant.eq(tenant))
        .into_tuple()
        .one(db)
        .await?;
    Ok(max.flatten().map(to_u64).unwrap_or_default())
}

/// One version of a tenant.
pub async fn get(
    db: &impl ConnectionTrait,
    tenant: &str,
    version: u64,
) -> Result<Option<StoredVersion>, DbErr> {
    Ok(
        policy_version::Entity::find_by_id((tenant.to_owned(), to_i64(version)))
            .one(db)
            .await?
            .map(StoredVersion::from),
    )
}

/// Inserts `version` (which must be the tenant's current version + 1).
pub async fn insert(db: &impl ConnectionTrait, version: &StoredVersion) -> Result<(), InsertError> {
    let row = policy_version::ActiveModel {
        tenant: Set(version.tenant.clone()),
        version: Set(to_i64(version.version)),
        content: Set(version.content.clone()),
        content_sha256: Set(version.content_sha256.clone()),
        author: Set(version.author.clone()),
        description: Set(version.description.clone()),
        rolled_back_from: Set(to_i64(version.rolled_back_from)),
        rule_count: Set(i32::try_from(version.rule_count).unwrap_or(i32::MAX)),
        role_assignment_count: Set(i32::try_from(version.role_assignment_count).unwrap_or(i32::MAX)),
        create_time: Set(version.create_time),
    };
    match row.insert(db).await {
        Ok(_) => Ok(()),
        Err(err) if super::is_duplicate(&err) => Err(InsertError::Conflict),
        Err(err) => Err(InsertError::Db(err)),
    }
}

/// A page of a tenant's versions, newest first, below `before` when given.
/// Fetches `limit` rows (the caller asks for one more than a page).
pub async fn list(
    db: &impl ConnectionTrait,
    tenant: &str,
    before: Option<u64>,
    limit: u64,
) -> Result<Vec<StoredVersion>, DbErr> {
    let mut query = policy_version::Entity::find()
        .filter(policy_version::Column::Tenant.eq(tenant))
        .order_by_desc(policy_version::Column::Version)
        .limit(limit);
    if let Some(before) = before {
        query = query.filter(policy_version::Column::Version.lt(to_i64(before)));
    }
    Ok(query
        .all(db)
        .await?
        .into_iter()
        .map(StoredVersion::from)
        .collect())
}

/// The current version of every tenant (loaded at start).
pub async fn all_current(db: &impl ConnectionTrait) -> Result<Vec<StoredVersion>, DbErr> {
    let heads: Vec<(String, Option<i64>)> = policy_version::Entity::find()
        .select_only()
        .column(policy_version::Column::Tenant)
        .column_as(Expr::col(policy_version::Column::Version).max(), "max")
        .group_by(policy_version::Column::Tenant)
        .into_tuple()
        .all(db)
        .await?;
    let mut current = Vec::with_capacity(heads.len());
    for (tenant, version) in heads {
        if let Some(version) = version {
            if let Some(stored) = get(db, &tenant, to_u64(version)).await? {
                current.push(stored);
            }
        }
    }
    Ok(current)
}
