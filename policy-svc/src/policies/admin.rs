//! Changing and reading a tenant's policy set versions (PutPolicySet,
//! RollbackPolicySet, GetPolicySet, ListPolicyVersions, DiffPolicyVersions,
//! TestPolicySet).

use std::sync::Arc;

use agentsec_common::page::Page;
use agentsec_proto::policy::v1 as pb;
use chrono::{SubsecRound as _, Utc};
use prost::Message as _;

use super::{compile, decode, Policies};
use crate::auth::Admin;
use crate::domain::engine::CompiledPolicySet;
use crate::domain::policy_set::{self, check_tenant, StoredVersion};
use crate::error::PolicyError;
use crate::events::PolicyChange;
use crate::store::versions::{Inserted, PolicyVersionStore, PolicyVersionTx as _};

/// How often a change is retried when another writer took its version.
const MAX_ATTEMPTS: usize = 5;

/// A new version to store.
struct Change<'a> {
    tenant: &'a str,
    set: Arc<pb::PolicySet>,
    author: &'a str,
    description: &'a str,
    rolled_back_from: u64,
    expected_version: Option<u64>,
}

impl<S: PolicyVersionStore> Policies<S> {
    pub async fn put(
        &self,
        admin: &Admin,
        request: pb::PutPolicySetRequest,
    ) -> Result<StoredVersion, PolicyError> {
        check_tenant("tenant", &request.tenant)?;
        admin.check_tenant(&request.tenant)?;
        let set = request
            .policy_set
            .ok_or_else(|| PolicyError::invalid("policy_set", "is required"))?;
        self.store_change(Change {
            tenant: &request.tenant,
            set: Arc::new(set),
            author: &admin.subject,
            description: &request.description,
            rolled_back_from: 0,
            expected_version: request.expected_version,
        })
        .await
    }

    pub async fn rollback(
        &self,
        admin: &Admin,
        request: pb::RollbackPolicySetRequest,
    ) -> Result<StoredVersion, PolicyError> {
        check_tenant("tenant", &request.tenant)?;
        admin.check_tenant(&request.tenant)?;
        if request.to_version == 0 {
            return Err(PolicyError::invalid("to_version", "must be at least 1"));
        }
        let old = self
            .store
            .get(&request.tenant, request.to_version)
            .await?
            .ok_or_else(|| PolicyError::NotFound {
                kind: "policy set version",
                id: format!("{}@{}", request.tenant, request.to_version),
            })?;
        self.store_change(Change {
            tenant: &request.tenant,
            set: Arc::new(decode(&old)?),
            author: &admin.subject,
            description: &request.description,
            rolled_back_from: old.version,
            expected_version: request.expected_version,
        })
        .await
    }

    async fn store_change(&self, change: Change<'_>) -> Result<StoredVersion, PolicyError> {
        policy_set::check_description(change.description)?;
        let content = change.set.encode_to_vec();
        let content_sha256 = policy_set::content_sha256(&content);
        let _writing = self.writing.lock().await;
        for _ in 0..MAX_ATTEMPTS {
            let current = self.store.current_version(change.tenant).await?;
            let next = current + 1;
            let compiled = compile(change.tenant, next, change.set.clone()).await?;
            if let Some(expected) = change.expected_version {
                if expected != current {
                    return Err(PolicyError::VersionMismatch {
                        tenant: change.tenant.to_owned(),
                        expected,
                        current,
                    });
                }
            }
            let stored = StoredVersion {
                tenant: change.tenant.to_owned(),
                version: next,
                content: content.clone(),
                content_sha256: content_sha256.clone(),
                author: change.author.to_owned(),
                description: change.description.to_owned(),
                rolled_back_from: change.rolled_back_from,
                rule_count: u32::try_from(change.set.rules.len()).unwrap_or(u32::MAX),
                role_assignment_count: u32::try_from(change.set.role_assignments.len())
                    .unwrap_or(u32::MAX),
                // PostgreSQL keeps microseconds: answer what is stored.
                create_time: Utc::now().trunc_subsecs(6),
            };
            let mut tx = self.store.begin().await?;
            if tx.insert(&stored).await? == Inserted::Conflict {
                // Another replica stored this version first: read again.
                continue;
            }
            self.events
                .policy_changed(PolicyChange {
                    tenant: change.tenant,
                    version: next,
                    actor: change.author,
                    rolled_back_from: change.rolled_back_from,
                    content_sha256: &content_sha256,
                    description: change.description,
                })
                .await?;
            tx.commit().await?;
            self.install(compiled);
            self.events.invalidate(change.tenant, next).await;
            tracing::info!(
                tenant = change.tenant,
                version = next,
                author = change.author,
                "policy set stored"
            );
            return Ok(stored);
        }
        Err(PolicyError::Contended {
            tenant: change.tenant.to_owned(),
        })
    }

    /// A stored version (0 = the current one).
    pub async fn get(&self, tenant: &str, version: u64) -> Result<StoredVersion, PolicyError> {
        check_tenant("tenant", tenant)?;
        let version = if version == 0 {
            self.store.current_version(tenant).await?
        } else {
            version
        };
        if version == 0 {
            return Err(PolicyError::NotFound {
                kind: "policy set of tenant",
                id: tenant.to_owned(),
            });
        }
        self.store
            .get(tenant, version)
            .await?
            .ok_or_else(|| PolicyError::NotFound {
                kind: "policy set version",
                id: format!("{tenant}@{version}"),
            })
    }

    pub async fn get_with_content(
        &self,
        tenant: &str,
        version: u64,
    ) -> Result<(StoredVersion, pb::PolicySet), PolicyError> {
        let stored = self.get(tenant, version).await?;
        let set = decode(&stored)?;
        Ok((stored, set))
    }

    /// A stored version compiled (TestPolicySet).
    pub async fn compiled(
        &self,
        tenant: &str,
        version: u64,
    ) -> Result<CompiledPolicySet, PolicyError> {
        let (stored, set) = self.get_with_content(tenant, version).await?;
        compile(tenant, stored.version, Arc::new(set)).await
    }

    pub async fn list(
        &self,
        request: &pb::ListPolicyVersionsRequest,
    ) -> Result<(Vec<StoredVersion>, String), PolicyError> {
        check_tenant("tenant", &request.tenant)?;
        let page = Page::parse(request.page.as_ref(), request.tenant.clone())?;
        // The cursor is the last version listed; the filter binds it to
        // the tenant.
        let before = match &page.after {
            None => None,
            Some(after) => Some(after.parse::<u64>().map_err(|_| {
                PolicyError::invalid("page.page_token", "is not a cursor of this listing")
            })?),
        };
        let mut rows = self
            .store
            .list(&request.tenant, before, page.size + 1)
            .await?;
        let more = rows.len() as u64 > page.size;
        rows.truncate(page.size as usize);
        let last = rows.last().map(|row| row.version.to_string());
        let next = page.next_token(last.as_deref(), more);
        Ok((rows, next))
    }

    pub async fn diff(
        &self,
        request: &pb::DiffPolicyVersionsRequest,
    ) -> Result<pb::DiffPolicyVersionsResponse, PolicyError> {
        check_tenant("tenant", &request.tenant)?;
        if request.from_version == 0 {
            return Err(PolicyError::invalid("from_version", "must be at least 1"));
        }
        let (from, before) = self
            .get_with_content(&request.tenant, request.from_version)
            .await?;
        let (to, after) = self
            .get_with_content(&request.tenant, request.to_version)
            .await?;
        Ok(policy_set::diff(from.version, &before, to.version, &after))
    }
}
