//! The policy sets: stored versions (see `store`) and the engine holding
//! every tenant's current compiled set. Every change stores version N+1 of
//! the whole set, audits it, then installs it in the engine and publishes
//! POLICY_CHANGED.
//!
//! Replicas: a replica installs the versions it stores itself, loads every
//! tenant's current version at start and follows the POLICY_CHANGED events
//! of the other replicas (see `follower`): it reloads a tenant whose
//! published version is newer than the one it has, and reloads every
//! tenant after (re)subscribing and, while Redis is unreachable, every poll
//! interval. This is prompt but not synchronous: a replica may answer from
//! the previous version for the moment between another replica's commit
//! and the event's arrival and reload (measured in BENCHMARKS.md,
//! "Cross-replica invalidation"), and up to the poll interval while Redis
//! is unreachable. PutPolicySet does not wait for the
//! other replicas. Cached decisions follow the installed version: their
//! keys carry it (see `cache`).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, RwLock};

use agentsec_common::error::ApiError;
use agentsec_common::page::Page;
use agentsec_proto::policy::v1 as pb;
use chrono::{SubsecRound as _, Utc};
use prost::Message as _;
use sea_orm::{DatabaseConnection, TransactionTrait};
use sha2::{Digest as _, Sha256};

use crate::auth::Admin;
use crate::engine::{self, CompiledPolicySet, PolicyEngine};
use crate::events::{timestamp, Events, PolicyChange};
use crate::store::versions::{self, InsertError, StoredVersion};

/// policy.proto: a change message is at most 1,024 chars.
const MAX_DESCRIPTION: usize = 1024;
/// How many validation findings a PutPolicySet refusal lists.
const LISTED_ISSUES: usize = 20;
/// How often a change is retried when another writer took its version.
const MAX_ATTEMPTS: usize = 5;
fn db_error(context: &'static str) -> impl Fn(sea_orm::DbErr) -> ApiError {
    move |err| ApiError::database(context, err)
}

/// `[a-z0-9][a-z0-9_-]{0,63}` (common.proto).
pub fn check_tenant(field: &str, tenant: &str) -> Result<(), ApiError> {
    let bytes = tenant.as_bytes();
    let valid = !bytes.is_empty()
        && bytes.len() <= 64
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-');
    if valid {
        Ok(())
    } else {
        Err(ApiError::invalid(
            field,
            "must match [a-z0-9][a-z0-9_-]{0,63}",
        ))
    }
}

pub fn version_to_proto(stored: &StoredVersion) -> pb::PolicySetVersion {
    pb::PolicySetVersion {
        tenant: stored.tenant.clone(),
        version: stored.version,
        create_time: Some(timestamp(stored.create_time)),
        author: stored.author.clone(),
        description: stored.description.clone(),
        rolled_back_from: stored.rolled_back_from,
        rule_count: stored.rule_count,
        role_assignment_count: stored.role_assignment_count,
        content_sha256: stored.content_sha256.clone(),
    }
}

fn decode(stored: &StoredVersion) -> Result<pb::PolicySet, ApiError> {
    pb::PolicySet::decode(stored.content.as_slice())
        .map_err(|err| ApiError::internal("decoding a stored policy set", err))
}

/// Compiles off the async workers (a set may hold 20,000 rules).
async fn compile(
    tenant: &str,
    version: u64,
    set: Arc<pb::PolicySet>,
) -> Result<Result<CompiledPolicySet, engine::ValidationReport>, ApiError> {
    let tenant = tenant.to_owned();
    tokio::task::spawn_blocking(move || engine::compile(&tenant, version, &set))
        .await
        .map_err(|err| ApiError::internal("compiling a policy set", err))
}

/// A new version to store.
struct Change<'a> {
    tenant: &'a str,
    set: Arc<pb::PolicySet>,
    author: &'a str,
    description: &'a str,
    rolled_back_from: u64,
    expected_version: Option<u64>,
}

pub struct Policies {
    db: DatabaseConnection,
    events: Events,
    /// The current engine; replaced (copy on write) on every change.
    engine: RwLock<Arc<PolicyEngine>>,
    /// One change at a time in this process.
    writing: tokio::sync::Mutex<()>,
}

impl Policies {
    /// Loads and compiles every tenant's current version.
    pub async fn load(db: DatabaseConnection, events: Events) -> Result<Self, ApiError> {
        let mut engine = PolicyEngine::new();
        for stored in versions::all_current(&db)
            .await
            .map_err(db_error("loading the policy sets"))?
        {
            // Stored sets were valid when stored; a newer engine may refuse
            // one, or the row may be damaged. The tenant then has no policy
            // loaded: its decisions are DENY (evaluation error, version 0).
            let set = match decode(&stored) {
                Ok(set) => Arc::new(set),
                Err(err) => {
                    tracing::error!(
                        tenant = %stored.tenant,
                        version = stored.version,
                        error = %err,
                        "stored policy set does not decode; the tenant has no policy loaded"
                    );
                    engine.mark_unloaded(&stored.tenant);
                    continue;
                }
            };
            match compile(&stored.tenant, stored.version, set).await? {
                Ok(compiled) => {
                    engine.install(Arc::new(compiled));
                }
                Err(report) => {
                    tracing::error!(
                        tenant = %stored.tenant,
                        version = stored.version,
                        error = %report.to_api_error(LISTED_ISSUES),
                        "stored policy set no longer compiles; the tenant has no policy loaded"
                    );
                    engine.mark_unloaded(&stored.tenant);
                }
            }
        }
        tracing::info!(tenants = engine.tenants().count(), "policy sets loaded");
        Ok(Self {
            db,
            events,
            engine: RwLock::new(Arc::new(engine)),
            writing: tokio::sync::Mutex::new(()),
        })
    }

    /// The version of `tenant` this replica decides with (0 = none).
    fn installed_version(&self, tenant: &str) -> u64 {
        self.engine()
            .policy_set(tenant, "tenant")
            .map_or(0, |set| set.version())
    }

    /// Installs `stored` unless this replica already has it or a newer one.
    async fn install_stored(&self, stored: &StoredVersion) -> Result<(), ApiError> {
        if stored.version <= self.installed_version(&stored.tenant) {
            return Ok(());
        }
        let set = Arc::new(decode(stored)?);
        let compiled = compile(&stored.tenant, stored.version, set)
            .await?
            .map_err(|report| report.to_api_error(LISTED_ISSUES))?;
        self.install(compiled);
        tracing::info!(tenant = %stored.tenant, version = stored.version, "policy set reloaded");
        Ok(())
    }

    /// Loads the tenant's current version if it is newer than the one here.
    async fn reload(&self, tenant: &str) -> Result<(), ApiError> {
        let current = versions::current_version(&self.db, tenant)
            .await
            .map_err(db_error("reading the current policy version"))?;
        if current <= self.installed_version(tenant) {
            return Ok(());
        }
        if let Some(stored) = versions::get(&self.db, tenant, current)
            .await
            .map_err(db_error("reading a policy set version"))?
        {
            self.install_stored(&stored).await?;
        }
        Ok(())
    }

    /// Loads every tenant's current version that is newer than the one here.
    pub async fn reload_all(&self) -> Result<(), ApiError> {
        for stored in versions::all_current(&self.db)
            .await
            .map_err(db_error("loading the policy sets"))?
        {
            if let Err(err) = self.install_stored(&stored).await {
                tracing::error!(tenant = %stored.tenant, error = %err, "policy set not reloaded");
            }
        }
        Ok(())
    }

    /// A replica stored `version` of `tenant`: loads it unless this one
    /// already has it or a newer one.
    pub async fn policy_changed(&self, tenant: &str, version: u64) {
        if version > self.installed_version(tenant) {
            if let Err(err) = self.reload(tenant).await {
                tracing::error!(%tenant, error = %err, "policy set not reloaded");
            }
        }
    }

    /// The current engine.
    pub fn engine(&self) -> Arc<PolicyEngine> {
        self.engine
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn install(&self, compiled: CompiledPolicySet) {
        let mut current = self
            .engine
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let newer = current
            .policy_set(compiled.tenant(), "tenant")
            .ok()
            .is_none_or(|installed| installed.version() < compiled.version());
        if newer {
            let mut next = PolicyEngine::clone(&current);
            next.install(Arc::new(compiled));
            *current = Arc::new(next);
        }
    }

    pub async fn put(
        &self,
        admin: &Admin,
        request: pb::PutPolicySetRequest,
    ) -> Result<StoredVersion, ApiError> {
        check_tenant("tenant", &request.tenant)?;
        admin.check_tenant(&request.tenant)?;
        let set = request
            .policy_set
            .ok_or_else(|| ApiError::invalid("policy_set", "is required"))?;
        self.store(Change {
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
    ) -> Result<StoredVersion, ApiError> {
        check_tenant("tenant", &request.tenant)?;
        admin.check_tenant(&request.tenant)?;
        if request.to_version == 0 {
            return Err(ApiError::invalid("to_version", "must be at least 1"));
        }
        let old = versions::get(&self.db, &request.tenant, request.to_version)
            .await
            .map_err(db_error("reading a policy set version"))?
            .ok_or_else(|| {
                ApiError::not_found(
                    "policy set version",
                    format!("{}@{}", request.tenant, request.to_version),
                )
            })?;
        self.store(Change {
            tenant: &request.tenant,
            set: Arc::new(decode(&old)?),
            author: &admin.subject,
            description: &request.description,
            rolled_back_from: old.version,
            expected_version: request.expected_version,
        })
        .await
    }

    async fn store(&self, change: Change<'_>) -> Result<StoredVersion, ApiError> {
        if change.description.chars().count() > MAX_DESCRIPTION {
            return Err(ApiError::invalid(
                "description",
                format!("at most {MAX_DESCRIPTION} chars"),
            ));
        }
        let content = change.set.encode_to_vec();
        let content_sha256: String = Sha256::digest(&content)
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        let _writing = self.writing.lock().await;
        for _ in 0..MAX_ATTEMPTS {
            let current = versions::current_version(&self.db, change.tenant)
                .await
                .map_err(db_error("reading the current policy version"))?;
            let next = current + 1;
            let compiled = compile(change.tenant, next, change.set.clone())
                .await?
                .map_err(|report| report.to_api_error(LISTED_ISSUES))?;
            if let Some(expected) = change.expected_version {
                if expected != current {
                    return Err(ApiError::FailedPrecondition {
                        reason: format!(
                            "expected_version is {expected} but the current version of tenant \
                             `{}` is {current}",
                            change.tenant
                        ),
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
            let txn = self
                .db
                .begin()
                .await
                .map_err(db_error("storing a policy set"))?;
            match versions::insert(&txn, &stored).await {
                Ok(()) => {}
                // Another replica stored this version first: read again.
                Err(InsertError::Conflict) => continue,
                Err(InsertError::Db(err)) => {
                    return Err(ApiError::internal("storing a policy set", err))
                }
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
            txn.commit()
                .await
                .map_err(db_error("storing a policy set"))?;
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
        Err(ApiError::Unavailable {
            what: format!(
                "storing the policy set of tenant `{}` (other writers kept taking the next version)",
                change.tenant
            ),
        })
    }

    /// A stored version (0 = the current one).
    pub async fn get(&self, tenant: &str, version: u64) -> Result<StoredVersion, ApiError> {
        check_tenant("tenant", tenant)?;
        let version = if version == 0 {
            versions::current_version(&self.db, tenant)
                .await
                .map_err(db_error("reading the current policy version"))?
        } else {
            version
        };
        let not_found = || ApiError::not_found("policy set version", format!("{tenant}@{version}"));
        if version == 0 {
            return Err(ApiError::not_found("policy set of tenant", tenant));
        }
        versions::get(&self.db, tenant, version)
            .await
            .map_err(db_error("reading a policy set version"))?
            .ok_or_else(not_found)
    }

    pub async fn get_with_content(
        &self,
        tenant: &str,
        version: u64,
    ) -> Result<(StoredVersion, pb::PolicySet), ApiError> {
        let stored = self.get(tenant, version).await?;
        let set = decode(&stored)?;
        Ok((stored, set))
    }

    /// A stored version compiled (TestPolicySet).
    pub async fn compiled(
        &self,
        tenant: &str,
        version: u64,
    ) -> Result<CompiledPolicySet, ApiError> {
        let (stored, set) = self.get_with_content(tenant, version).await?;
        compile(tenant, stored.version, Arc::new(set))
            .await?
            .map_err(|report| report.to_api_error(LISTED_ISSUES))
    }

    pub async fn list(
        &self,
        request: &pb::ListPolicyVersionsRequest,
    ) -> Result<(Vec<StoredVersion>, String), ApiError> {
        check_tenant("tenant", &request.tenant)?;
        let page = Page::parse(request.page.as_ref(), request.tenant.clone())?;
        // The cursor is the last version listed; the filter binds it to
        // the tenant.
        let before = match &page.after {
            None => None,
            Some(after) => Some(after.parse::<u64>().map_err(|_| {
                ApiError::invalid("page.page_token", "is not a cursor of this listing")
            })?),
        };
        let mut rows = versions::list(&self.db, &request.tenant, before, page.size + 1)
            .await
            .map_err(db_error("listing policy versions"))?;
        let more = rows.len() as u64 > page.size;
        rows.truncate(page.size as usize);
        let last = rows.last().map(|row| row.version.to_string());
        let next = page.next_token(last.as_deref(), more);
        Ok((rows, next))
    }

    pub async fn diff(
        &self,
        request: &pb::DiffPolicyVersionsRequest,
    ) -> Result<pb::DiffPolicyVersionsResponse, ApiError> {
        check_tenant("tenant", &request.tenant)?;
        if request.from_version == 0 {
            return Err(ApiError::invalid("from_version", "must be at least 1"));
        }
        let (from, before) = self
            .get_with_content(&request.tenant, request.from_version)
            .await?;
        let (to, after) = self
            .get_with_content(&request.tenant, request.to_version)
            .await?;
        Ok(diff(from.version, &before, to.version, &after))
    }
}

/// The differences between two versions' content.
pub fn diff(
    from_version: u64,
    before: &pb::PolicySet,
    to_version: u64,
    after: &pb::PolicySet,
) -> pb::DiffPolicyVersionsResponse {
    let old: BTreeMap<&str, &pb::PolicyRule> = before
        .rules
        .iter()
        .map(|rule| (rule.id.as_str(), rule))
        .collect();
    let new: BTreeMap<&str, &pb::PolicyRule> = after
        .rules
        .iter()
        .map(|rule| (rule.id.as_str(), rule))
        .collect();
    let ids: std::collections::BTreeSet<&str> = old.keys().chain(new.keys()).copied().collect();
    let rule_changes = ids
        .into_iter()
        .filter_map(|id| {
            let (before, after) = (old.get(id).copied(), new.get(id).copied());
            let change = match (before, after) {
                (None, Some(_)) => pb::ChangeType::Added,
                (Some(_), None) => pb::ChangeType::Removed,
                (Some(before), Some(after)) if before != after => pb::ChangeType::Modified,
                _ => return None,
            };
            Some(pb::RuleChange {
                policy_id: id.to_owned(),
                change: change as i32,
                before: before.cloned(),
                after: after.cloned(),
            })
        })
        .collect();
    let assignment = |a: &pb::RoleAssignment| (a.member.clone(), a.role.clone());
    let old_assignments: HashSet<(String, String)> =
        before.role_assignments.iter().map(assignment).collect();
    let new_assignments: HashSet<(String, String)> =
        after.role_assignments.iter().map(assignment).collect();
    let attribute = |a: &pb::AttributeDefinition| (a.source, a.name.clone(), a.r#type);
    let old_attributes: HashSet<(i32, String, i32)> =
        before.attributes.iter().map(attribute).collect();
    let new_attributes: HashSet<(i32, String, i32)> =
        after.attributes.iter().map(attribute).collect();
    pb::DiffPolicyVersionsResponse {
        from_version,
        to_version,
        rule_changes,
        role_assignments_added: after
            .role_assignments
            .iter()
            .filter(|a| !old_assignments.contains(&assignment(a)))
            .cloned()
            .collect(),
        role_assignments_removed: before
            .role_assignments
            .iter()
            .filter(|a| !new_assignments.contains(&assignment(a)))
            .cloned()
            .collect(),
        attributes_added: after
            .attributes
            .iter()
            .filter(|a| !old_attributes.contains(&attribute(a)))
            .cloned()
            .collect(),
        attributes_removed: before
            .attributes
            .iter()
            .filter(|a| !new_attributes.contains(&attribute(a)))
            .cloned()
            .collect(),
    }
}
