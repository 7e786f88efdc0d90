//! The policy sets: stored versions (see `store`) and the engine holding
//! every tenant's current compiled set. `admin` changes and reads the
//! versions; `replica` keeps this replica's engine up to date with the
//! versions other replicas store.
//!
//! Every change stores version N+1 of the whole set, audits it, then
//! installs it in the engine and publishes POLICY_CHANGED. Cached decisions
//! follow the installed version: their keys carry it (see `cache`).

mod admin;
mod replica;

use std::sync::{Arc, RwLock};

use agentsec_proto::policy::v1 as pb;
use prost::Message as _;

use crate::domain::engine::{self, CompiledPolicySet, PolicyEngine};
use crate::domain::policy_set::StoredVersion;
use crate::error::PolicyError;
use crate::events::Events;
use crate::store::versions::{PolicyVersionStore, SqlPolicyVersionStore};

/// How many validation findings a PutPolicySet refusal lists.
pub const LISTED_ISSUES: usize = 20;

fn decode(stored: &StoredVersion) -> Result<pb::PolicySet, PolicyError> {
    pb::PolicySet::decode(stored.content.as_slice())
        .map_err(|err| PolicyError::internal("decoding a stored policy set", err))
}

/// Compiles off the async workers (a set may hold 20,000 rules); a set
/// that does not compile is INVALID_ARGUMENT listing the first findings.
async fn compile(
    tenant: &str,
    version: u64,
    set: Arc<pb::PolicySet>,
) -> Result<CompiledPolicySet, PolicyError> {
    let tenant = tenant.to_owned();
    tokio::task::spawn_blocking(move || engine::compile(&tenant, version, &set))
        .await
        .map_err(|err| PolicyError::internal("compiling a policy set", err))?
        .map_err(|report| report.refusal(LISTED_ISSUES))
}

pub struct Policies<S: PolicyVersionStore = SqlPolicyVersionStore> {
    store: S,
    events: Events,
    /// The current engine; replaced (copy on write) on every change.
    engine: RwLock<Arc<PolicyEngine>>,
    /// One change at a time in this process.
    writing: tokio::sync::Mutex<()>,
}

impl<S: PolicyVersionStore> Policies<S> {
    /// Loads and compiles every tenant's current version.
    pub async fn load(store: S, events: Events) -> Result<Self, PolicyError> {
        let mut engine = PolicyEngine::new();
        for stored in store.all_current().await? {
            // Stored sets were valid when stored; a newer engine may refuse
            // one, or the row may be damaged. The tenant then has no policy
            // loaded: its decisions are DENY (evaluation error, version 0).
            let compiled = match decode(&stored) {
                Ok(set) => compile(&stored.tenant, stored.version, Arc::new(set)).await,
                Err(err) => Err(err),
            };
            match compiled {
                Ok(compiled) => {
                    engine.install(Arc::new(compiled));
                }
                Err(err) => {
                    tracing::error!(
                        tenant = %stored.tenant,
                        version = stored.version,
                        error = %err,
                        "stored policy set does not load; the tenant has no policy loaded"
                    );
                    engine.mark_unloaded(&stored.tenant);
                }
            }
        }
        tracing::info!(tenants = engine.tenants().count(), "policy sets loaded");
        Ok(Self {
            store,
            events,
            engine: RwLock::new(Arc::new(engine)),
            writing: tokio::sync::Mutex::new(()),
        })
    }

    /// The current engine.
    pub fn engine(&self) -> Arc<PolicyEngine> {
        self.engine
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The version of `tenant` this replica decides with (0 = none).
    fn installed_version(&self, tenant: &str) -> u64 {
        self.engine()
            .policy_set(tenant, "tenant")
            .map_or(0, |set| set.version())
    }

    /// Installs `compiled` unless this replica has it or a newer one.
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
}

#[cfg(test)]
mod tests;
