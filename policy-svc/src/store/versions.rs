//! The policy set versions: the [`PolicyVersionStore`] trait, its sea-orm
//! implementation and, for unit tests, an in-memory one.

use std::future::Future;

use agentsec_common::store::{db_err, StoreError};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set, TransactionTrait,
};

use super::entity::policy_version;
use crate::domain::policy_set::StoredVersion;

/// What an insert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    Stored,
    /// Another writer stored this version first.
    Conflict,
}

/// Every tenant's history of policy set versions.
pub trait PolicyVersionStore: Send + Sync + 'static {
    type Tx: PolicyVersionTx;

    /// The tenant's current (highest) version; 0 when it has none.
    fn current_version(&self, tenant: &str)
        -> impl Future<Output = Result<u64, StoreError>> + Send;

    fn get(
        &self,
        tenant: &str,
        version: u64,
    ) -> impl Future<Output = Result<Option<StoredVersion>, StoreError>> + Send;

    /// Up to `limit` of the tenant's versions below `before` (when given),
    /// newest first.
    fn list(
        &self,
        tenant: &str,
        before: Option<u64>,
        limit: u64,
    ) -> impl Future<Output = Result<Vec<StoredVersion>, StoreError>> + Send;

    /// The current version of every tenant.
    fn all_current(&self) -> impl Future<Output = Result<Vec<StoredVersion>, StoreError>> + Send;

    fn begin(&self) -> impl Future<Output = Result<Self::Tx, StoreError>> + Send;
}

/// A unit of work: nothing is stored until `commit`; dropped = rolled back.
pub trait PolicyVersionTx: Send {
    /// Inserts `version` (the tenant's current version + 1).
    fn insert(
        &mut self,
        version: &StoredVersion,
    ) -> impl Future<Output = Result<Inserted, StoreError>> + Send;

    fn commit(self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The versions in the `policy_versions` table.
#[derive(Clone)]
pub struct SqlPolicyVersionStore {
    db: DatabaseConnection,
}

impl SqlPolicyVersionStore {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

pub struct SqlPolicyVersionTx(DatabaseTransaction);

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

async fn get(
    db: &impl ConnectionTrait,
    tenant: &str,
    version: u64,
) -> Result<Option<StoredVersion>, StoreError> {
    Ok(
        policy_version::Entity::find_by_id((tenant.to_owned(), to_i64(version)))
            .one(db)
            .await
            .map_err(db_err("reading a policy set version"))?
            .map(StoredVersion::from),
    )
}

impl PolicyVersionStore for SqlPolicyVersionStore {
    type Tx = SqlPolicyVersionTx;

    async fn current_version(&self, tenant: &str) -> Result<u64, StoreError> {
        let max: Option<Option<i64>> = policy_version::Entity::find()
            .select_only()
            .column_as(Expr::col(policy_version::Column::Version).max(), "max")
            .filter(policy_version::Column::Tenant.eq(tenant))
            .into_tuple()
            .one(&self.db)
            .await
            .map_err(db_err("reading the current policy version"))?;
        Ok(max.flatten().map(to_u64).unwrap_or_default())
    }

    async fn get(&self, tenant: &str, version: u64) -> Result<Option<StoredVersion>, StoreError> {
        get(&self.db, tenant, version).await
    }

    async fn list(
        &self,
        tenant: &str,
        before: Option<u64>,
        limit: u64,
    ) -> Result<Vec<StoredVersion>, StoreError> {
        let mut query = policy_version::Entity::find()
            .filter(policy_version::Column::Tenant.eq(tenant))
            .order_by_desc(policy_version::Column::Version)
            .limit(limit);
        if let Some(before) = before {
            query = query.filter(policy_version::Column::Version.lt(to_i64(before)));
        }
        Ok(query
            .all(&self.db)
            .await
            .map_err(db_err("listing policy versions"))?
            .into_iter()
            .map(StoredVersion::from)
            .collect())
    }

    async fn all_current(&self) -> Result<Vec<StoredVersion>, StoreError> {
        let heads: Vec<(String, Option<i64>)> = policy_version::Entity::find()
            .select_only()
            .column(policy_version::Column::Tenant)
            .column_as(Expr::col(policy_version::Column::Version).max(), "max")
            .group_by(policy_version::Column::Tenant)
            .into_tuple()
            .all(&self.db)
            .await
            .map_err(db_err("loading the policy sets"))?;
        let mut current = Vec::with_capacity(heads.len());
        for (tenant, version) in heads {
            if let Some(version) = version {
                if let Some(stored) = get(&self.db, &tenant, to_u64(version)).await? {
                    current.push(stored);
                }
            }
        }
        Ok(current)
    }

    async fn begin(&self) -> Result<SqlPolicyVersionTx, StoreError> {
        let txn = self
            .db
            .begin()
            .await
            .map_err(db_err("storing a policy set"))?;
        Ok(SqlPolicyVersionTx(txn))
    }
}

impl PolicyVersionTx for SqlPolicyVersionTx {
    async fn insert(&mut self, version: &StoredVersion) -> Result<Inserted, StoreError> {
        let row = policy_version::ActiveModel {
            tenant: Set(version.tenant.clone()),
            version: Set(to_i64(version.version)),
            content: Set(version.content.clone()),
            content_sha256: Set(version.content_sha256.clone()),
            author: Set(version.author.clone()),
            description: Set(version.description.clone()),
            rolled_back_from: Set(to_i64(version.rolled_back_from)),
            rule_count: Set(i32::try_from(version.rule_count).unwrap_or(i32::MAX)),
            role_assignment_count: Set(
                i32::try_from(version.role_assignment_count).unwrap_or(i32::MAX)
            ),
            create_time: Set(version.create_time),
        };
        match row.insert(&self.0).await {
            Ok(_) => Ok(Inserted::Stored),
            Err(err) if super::is_duplicate(&err) => Ok(Inserted::Conflict),
            Err(err) => Err(StoreError::db("storing a policy set", err)),
        }
    }

    async fn commit(self) -> Result<(), StoreError> {
        self.0
            .commit()
            .await
            .map_err(db_err("storing a policy set"))
    }
}

#[cfg(test)]
pub use memory::MemoryPolicyVersionStore;

#[cfg(test)]
mod memory {
    use std::collections::BTreeMap;

    use agentsec_common::store::{MemoryTables, MemoryTx};

    use super::*;

    type Tables = BTreeMap<(String, u64), StoredVersion>;

    /// The versions in memory, with the SQL store's ordering.
    #[derive(Clone, Default)]
    pub struct MemoryPolicyVersionStore(pub MemoryTables<Tables>);

    fn current(tables: &Tables, tenant: &str) -> u64 {
        tables
            .range((tenant.to_owned(), 0)..=(tenant.to_owned(), u64::MAX))
            .next_back()
            .map_or(0, |((_, version), _)| *version)
    }

    impl PolicyVersionStore for MemoryPolicyVersionStore {
        type Tx = MemoryTx<Tables>;

        async fn current_version(&self, tenant: &str) -> Result<u64, StoreError> {
            self.0.read(|tables| current(tables, tenant)).await
        }

        async fn get(
            &self,
            tenant: &str,
            version: u64,
        ) -> Result<Option<StoredVersion>, StoreError> {
            self.0
                .read(|tables| tables.get(&(tenant.to_owned(), version)).cloned())
                .await
        }

        async fn list(
            &self,
            tenant: &str,
            before: Option<u64>,
            limit: u64,
        ) -> Result<Vec<StoredVersion>, StoreError> {
            let below = before.unwrap_or(u64::MAX);
            self.0
                .read(|tables| {
                    tables
                        .range((tenant.to_owned(), 0)..(tenant.to_owned(), below))
                        .rev()
                        .take(limit as usize)
                        .map(|(_, stored)| stored.clone())
                        .collect()
                })
                .await
        }

        async fn all_current(&self) -> Result<Vec<StoredVersion>, StoreError> {
            self.0
                .read(|tables| {
                    let mut heads = BTreeMap::new();
                    for ((tenant, _), stored) in tables {
                        heads.insert(tenant.clone(), stored.clone());
                    }
                    heads.into_values().collect()
                })
                .await
        }

        async fn begin(&self) -> Result<MemoryTx<Tables>, StoreError> {
            self.0.begin().await
        }
    }

    impl PolicyVersionTx for MemoryTx<Tables> {
        async fn insert(&mut self, version: &StoredVersion) -> Result<Inserted, StoreError> {
            let key = (version.tenant.clone(), version.version);
            if self.contains_key(&key) {
                return Ok(Inserted::Conflict);
            }
            let tables: &mut Tables = self;
            tables.insert(key, version.clone());
            Ok(Inserted::Stored)
        }

        async fn commit(self) -> Result<(), StoreError> {
            MemoryTx::commit(self).await
        }
    }
}
