//! The grant store: one trait, the sea-orm implementation the service
//! uses, and an in-memory one the rules are unit tested through.

#[cfg(test)]
mod memory;
mod sql;

use std::future::Future;

use agentsec_common::store::StoreError;
use chrono::{DateTime, Utc};

use crate::domain::grant::{Grant, GrantFilter, RevokedGrant};
#[cfg(test)]
pub use memory::MemoryGrantStore;
pub use sql::SqlGrantStore;

pub trait GrantStore: Send + Sync + 'static {
    type Tx: GrantTx;

    /// A unit of work (see [`GrantTx`]).
    fn begin(&self) -> impl Future<Output = Result<Self::Tx, StoreError>> + Send;

    fn get(&self, id: &str) -> impl Future<Output = Result<Option<Grant>, StoreError>> + Send;

    /// Up to `limit` grants matching `filter` with ids before `before`,
    /// newest (highest id) first.
    fn list(
        &self,
        filter: &GrantFilter,
        before: Option<&str>,
        limit: u64,
    ) -> impl Future<Output = Result<Vec<Grant>, StoreError>> + Send;

    /// Every grant revoked at or after `since`, by id.
    fn revoked_since(
        &self,
        since: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<RevokedGrant>, StoreError>> + Send;
}

/// A unit of work: nothing is stored until `commit`; dropped = rolled back.
pub trait GrantTx: Send {
    fn insert(&mut self, grant: &Grant) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Like [`GrantStore::get`], holding the grant until the unit of work
    /// ends.
    fn get_for_update(
        &mut self,
        id: &str,
    ) -> impl Future<Output = Result<Option<Grant>, StoreError>> + Send;

    /// Replaces every field of the stored grant with `grant`'s values.
    fn save(&mut self, grant: &Grant) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn commit(self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, SubsecRound as _};
    use sea_orm_migration::MigratorTrait as _;

    use super::*;

    fn grant(id: &str, subject: &str, agent_id: &str, now: DateTime<Utc>) -> Grant {
        Grant {
            id: id.into(),
            tenant: "acme".into(),
            person_issuer: "https://users.test".into(),
            person_subject: subject.into(),
            agent_id: agent_id.into(),
            audiences: vec!["mcp:github".into()],
            scopes: vec!["repo:read".into()],
            expire_time: now + Duration::hours(1),
            max_chain_depth: 1,
            purpose: "p".into(),
            create_time: now,
            revoke_time: None,
            revoked_by: String::new(),
            revoke_reason: String::new(),
        }
    }

    /// What a store answers to the same writes and reads.
    async fn observe(store: &impl GrantStore) -> Vec<Vec<String>> {
        let now = Utc::now().trunc_subsecs(6);
        let mut tx = store.begin().await.unwrap();
        for (id, subject, agent) in [
            ("grt_1", "alice", "agt_a"),
            ("grt_2", "bob", "agt_a"),
            ("grt_3", "alice", "agt_b"),
            ("grt_4", "alice", "agt_a"),
            ("grt_5", "alice", "agt_a"),
        ] {
            tx.insert(&grant(id, subject, agent, now)).await.unwrap();
        }
        let mut expired = tx.get_for_update("grt_4").await.unwrap().unwrap();
        expired.expire_time = now;
        tx.save(&expired).await.unwrap();
        let mut revoked = tx.get_for_update("grt_5").await.unwrap().unwrap();
        revoked.revoke_time = Some(now);
        tx.save(&revoked).await.unwrap();
        tx.commit().await.unwrap();

        let mut dropped = store.begin().await.unwrap();
        dropped
            .insert(&grant("grt_6", "alice", "agt_a", now))
            .await
            .unwrap();
        drop(dropped);

        let ids = |grants: Vec<Grant>| grants.into_iter().map(|grant| grant.id).collect();
        let alice = GrantFilter {
            person: Some(("https://users.test".into(), "alice".into())),
            ..GrantFilter::default()
        };
        let active = GrantFilter {
            active_at: Some(now),
            ..alice.clone()
        };
        let agent_a = GrantFilter {
            agent_id: Some("agt_a".into()),
            ..GrantFilter::default()
        };
        vec![
            ids(store.list(&GrantFilter::default(), None, 10).await.unwrap()),
            ids(store.list(&alice, None, 10).await.unwrap()),
            ids(store.list(&active, None, 10).await.unwrap()),
            ids(store.list(&agent_a, Some("grt_4"), 10).await.unwrap()),
            ids(store.list(&alice, None, 2).await.unwrap()),
            store
                .revoked_since(now)
                .await
                .unwrap()
                .into_iter()
                .map(|revoked| revoked.id)
                .collect(),
            store
                .get("grt_5")
                .await
                .unwrap()
                .into_iter()
                .map(|grant| format!("{:?}", grant.status(now)))
                .collect(),
            ids(store.get("grt_6").await.unwrap().into_iter().collect()),
        ]
    }

    #[tokio::test]
    async fn the_in_memory_store_answers_as_the_database_does() {
        let db = sea_orm::Database::connect("sqlite::memory:").await.unwrap();
        crate::store::Migrator::up(&db, None).await.unwrap();
        let sql = observe(&SqlGrantStore::new(db)).await;
        let memory = observe(&MemoryGrantStore::default()).await;
        assert_eq!(sql, memory);
        assert_eq!(
            memory,
            [
                vec!["grt_5", "grt_4", "grt_3", "grt_2", "grt_1"],
                vec!["grt_5", "grt_4", "grt_3", "grt_1"],
                vec!["grt_3", "grt_1"],
                vec!["grt_2", "grt_1"],
                vec!["grt_5", "grt_4"],
                vec!["grt_5"],
                vec!["Revoked"],
                vec![],
            ]
        );
    }
}
