//! Grants in memory, ordered and filtered as [`super::SqlGrantStore`]
//! orders and filters them.

use std::collections::BTreeMap;

use agentsec_common::store::{MemoryTables, MemoryTx, StoreError};
use chrono::{DateTime, Utc};

use super::{GrantStore, GrantTx};
use crate::domain::grant::{Grant, GrantFilter, RevokedGrant};

#[derive(Debug, Clone, Default)]
pub struct Tables {
    /// By id, which orders them as the database's primary key does.
    grants: BTreeMap<String, Grant>,
}

#[derive(Clone, Default)]
pub struct MemoryGrantStore {
    tables: MemoryTables<Tables>,
}

impl MemoryGrantStore {
    /// See [`MemoryTables::set_unreachable`].
    pub fn set_unreachable(&self, unreachable: bool) {
        self.tables.set_unreachable(unreachable);
    }

    /// Every stored grant, by id (what a test checks was or was not stored).
    pub async fn all(&self) -> Result<Vec<Grant>, StoreError> {
        self.tables
            .read(|tables| tables.grants.values().cloned().collect())
            .await
    }

    /// Stores `grant` as it is (a test's fixture).
    pub async fn put(&self, grant: Grant) -> Result<(), StoreError> {
        self.tables
            .write(|tables| {
                tables.grants.insert(grant.id.clone(), grant);
                Ok(())
            })
            .await
    }
}

pub struct MemoryGrantTx {
    tx: MemoryTx<Tables>,
}

impl GrantStore for MemoryGrantStore {
    type Tx = MemoryGrantTx;

    async fn begin(&self) -> Result<MemoryGrantTx, StoreError> {
        Ok(MemoryGrantTx {
            tx: self.tables.begin().await?,
        })
    }

    async fn get(&self, id: &str) -> Result<Option<Grant>, StoreError> {
        self.tables
            .read(|tables| tables.grants.get(id).cloned())
            .await
    }

    async fn list(
        &self,
        filter: &GrantFilter,
        before: Option<&str>,
        limit: u64,
    ) -> Result<Vec<Grant>, StoreError> {
        self.tables
            .read(|tables| {
                tables
                    .grants
                    .values()
                    .rev()
                    .filter(|grant| before.is_none_or(|before| grant.id.as_str() < before))
                    .filter(|grant| filter.matches(grant))
                    .take(usize::try_from(limit).unwrap_or(usize::MAX))
                    .cloned()
                    .collect()
            })
            .await
    }

    async fn revoked_since(&self, since: DateTime<Utc>) -> Result<Vec<RevokedGrant>, StoreError> {
        self.tables
            .read(|tables| {
                tables
                    .grants
                    .values()
                    .filter_map(|grant| {
                        let revoke_time = grant.revoke_time.filter(|time| *time >= since)?;
                        Some(RevokedGrant {
                            id: grant.id.clone(),
                            tenant: grant.tenant.clone(),
                            agent_id: grant.agent_id.clone(),
                            revoke_time,
                        })
                    })
                    .collect()
            })
            .await
    }
}

/// What a unique or missing row does in the database.
fn constraint(reason: String) -> StoreError {
    StoreError::Internal {
        context: "writing a grant",
        source: reason.into(),
    }
}

impl GrantTx for MemoryGrantTx {
    async fn insert(&mut self, grant: &Grant) -> Result<(), StoreError> {
        if self.tx.grants.contains_key(&grant.id) {
            return Err(constraint(format!("grant {} exists", grant.id)));
        }
        self.tx.grants.insert(grant.id.clone(), grant.clone());
        Ok(())
    }

    async fn get_for_update(&mut self, id: &str) -> Result<Option<Grant>, StoreError> {
        Ok(self.tx.grants.get(id).cloned())
    }

    async fn save(&mut self, grant: &Grant) -> Result<(), StoreError> {
        match self.tx.grants.get_mut(&grant.id) {
            Some(stored) => {
                *stored = grant.clone();
                Ok(())
            }
            None => Err(constraint(format!("grant {} does not exist", grant.id))),
        }
    }

    async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await
    }
}
