//! Grants in the `grants` table (sea-orm, SQLite or PostgreSQL).

use agentsec_common::store::{db_err, StoreError};
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, DatabaseConnection, DatabaseTransaction, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, Set, TransactionTrait,
};

use super::{GrantStore, GrantTx};
use crate::domain::grant::{Grant, GrantFilter, RevokedGrant};
use crate::store::entities::grant::{self, Entity as Grants};

#[derive(Clone)]
pub struct SqlGrantStore {
    db: DatabaseConnection,
}

impl SqlGrantStore {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

/// A database transaction over the grants.
pub struct SqlGrantTx {
    txn: DatabaseTransaction,
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

fn from_row(row: grant::Model) -> Result<Grant, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        kind: "grant",
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

impl GrantStore for SqlGrantStore {
    type Tx = SqlGrantTx;

    async fn begin(&self) -> Result<SqlGrantTx, StoreError> {
        let txn = self
            .db
            .begin()
            .await
            .map_err(db_err("beginning a grant transaction"))?;
        Ok(SqlGrantTx { txn })
    }

    async fn get(&self, id: &str) -> Result<Option<Grant>, StoreError> {
        Grants::find_by_id(id.to_owned())
            .one(&self.db)
            .await
            .map_err(db_err("reading a grant"))?
            .map(from_row)
            .transpose()
    }

    async fn list(
        &self,
        filter: &GrantFilter,
        before: Option<&str>,
        limit: u64,
    ) -> Result<Vec<Grant>, StoreError> {
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
        query
            .all(&self.db)
            .await
            .map_err(db_err("listing grants"))?
            .into_iter()
            .map(from_row)
            .collect()
    }

    async fn revoked_since(&self, since: DateTime<Utc>) -> Result<Vec<RevokedGrant>, StoreError> {
        let rows: Vec<(String, String, String, Option<DateTime<Utc>>)> = Grants::find()
            .select_only()
            .column(grant::Column::Id)
            .column(grant::Column::Tenant)
            .column(grant::Column::AgentId)
            .column(grant::Column::RevokeTime)
            .filter(grant::Column::RevokeTime.gte(since))
            .order_by_asc(grant::Column::Id)
            .into_tuple()
            .all(&self.db)
            .await
            .map_err(db_err("listing revoked grants"))?;
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
}

impl GrantTx for SqlGrantTx {
    async fn insert(&mut self, grant: &Grant) -> Result<(), StoreError> {
        to_row(grant)
            .insert(&self.txn)
            .await
            .map_err(db_err("storing a grant"))?;
        Ok(())
    }

    async fn get_for_update(&mut self, id: &str) -> Result<Option<Grant>, StoreError> {
        agentsec_common::db::for_update(Grants::find_by_id(id.to_owned()), &self.txn)
            .one(&self.txn)
            .await
            .map_err(db_err("reading a grant"))?
            .map(from_row)
            .transpose()
    }

    async fn save(&mut self, grant: &Grant) -> Result<(), StoreError> {
        to_row(grant)
            .update(&self.txn)
            .await
            .map_err(db_err("updating a grant"))?;
        Ok(())
    }

    async fn commit(self) -> Result<(), StoreError> {
        self.txn
            .commit()
            .await
            .map_err(db_err("committing a grant transaction"))
    }
}
