//! The decision engine of policy-svc: a pure library (no gRPC, storage or
//! cache) that compiles a tenant's PolicySet and decides requests with it.
//!
//! * [`compile`](compile::compile) validates a `PolicySet` (every error with
//!   policy id, field, line and column) and builds a [`CompiledPolicySet`]:
//!   rules with parsed conditions, the tenant's Casbin role graph, and the
//!   candidate index.
//! * [`DecisionRequest`] is a validated CheckRequest; [`decide`] and
//!   [`explain`] answer it: default deny, deny overrides, errors deny.
//! * [`PolicyEngine`] holds the current compiled set per tenant and checks
//!   a proto request end to end; [`run_cases`] runs fixtures.
//!
//! One compiled set per tenant (the Casbin domain); inside it the index
//! partitions rules by action and resource prefix, so a decision evaluates
//! only the candidates (see [`index`]). Casbin evaluates the role graph `g`
//! (see [`model`]); the model text there is the executable specification,
//! checked against the engine by tests. docs/policy-model.md is the
//! operator's guide.

pub mod compile;
pub mod condition;
pub mod decide;
pub mod error;
pub mod fixtures;
pub mod glob;
pub mod index;
pub mod model;
pub mod request;
pub mod search;
pub mod value;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use agentsec_proto::policy::v1 as pb;
use chrono::{DateTime, Utc};

pub use compile::{compile, validate, CompiledPolicySet, Effect};
pub use decide::{decide, explain, Decision, Explanation};
pub use error::{RequestError, ValidationIssue, ValidationReport};
pub use fixtures::run_cases;
pub use request::{AgentAttributeOrigin, DecisionRequest};

/// The current compiled policy set of every tenant. Cheap to clone; the
/// service swaps in a new engine (or a new tenant entry) on a policy change.
#[derive(Debug, Clone, Default)]
pub struct PolicyEngine {
    tenants: HashMap<String, Arc<CompiledPolicySet>>,
    /// Tenants whose stored set could not be loaded (it no longer decodes
    /// or compiles): their decisions are DENY with an evaluation error,
    /// policy version 0, until a new version is installed.
    unloaded: HashSet<String>,
}

impl PolicyEngine {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `set` its tenant's current policy; returns the one it replaces.
    pub fn install(&mut self, set: Arc<CompiledPolicySet>) -> Option<Arc<CompiledPolicySet>> {
        self.unloaded.remove(set.tenant());
        self.tenants.insert(set.tenant().to_owned(), set)
    }

    /// Records that `tenant` has a stored set that could not be loaded.
    pub fn mark_unloaded(&mut self, tenant: &str) {
        self.tenants.remove(tenant);
        self.unloaded.insert(tenant.to_owned());
    }

    pub fn is_unloaded(&self, tenant: &str) -> bool {
        self.unloaded.contains(tenant)
    }

    /// Whether `tenant` has a policy set, loaded or not.
    pub fn has_tenant(&self, tenant: &str) -> bool {
        self.tenants.contains_key(tenant) || self.unloaded.contains(tenant)
    }

    pub fn remove(&mut self, tenant: &str) -> Option<Arc<CompiledPolicySet>> {
        self.tenants.remove(tenant)
    }

    /// The tenant's current set; INVALID_ARGUMENT naming `field` (usually
    /// `principal.tenant`) for a tenant without a policy set.
    pub fn policy_set(
        &self,
        tenant: &str,
        field: &str,
    ) -> Result<&Arc<CompiledPolicySet>, RequestError> {
        self.tenants.get(tenant).ok_or_else(|| {
            RequestError::invalid(
                field,
                format!("tenant `{}` has no policy set", error::printable(tenant)),
            )
        })
    }

    pub fn tenants(&self) -> impl Iterator<Item = &str> {
        self.tenants.keys().map(String::as_str)
    }

    /// Validates and decides a CheckRequest. `prefix` is prepended to field
    /// paths in errors (`items[3].` for BatchCheck).
    pub fn check(
        &self,
        request: &pb::CheckRequest,
        prefix: &str,
        now: DateTime<Utc>,
    ) -> Result<Decision, RequestError> {
        let request = DecisionRequest::from_check(request, prefix, now)?;
        if self.is_unloaded(&request.tenant) {
            return Ok(Decision::no_policy_loaded(&request.tenant));
        }
        let (set, request) = self.prepare(request, prefix, AgentAttributeOrigin::Caller)?;
        Ok(decide(set, &request))
    }

    /// Validates, decides and explains an ExplainRequest.
    pub fn explain(
        &self,
        request: &pb::ExplainRequest,
        now: DateTime<Utc>,
    ) -> Result<Explanation, RequestError> {
        let (set, request) = self.prepare(
            DecisionRequest::from_explain(request, "", now)?,
            "",
            AgentAttributeOrigin::Caller,
        )?;
        Ok(explain(set, &request))
    }

    /// Looks up the tenant and applies its attribute declarations, the
    /// agent's attributes being from `origin`.
    pub fn prepare(
        &self,
        mut request: DecisionRequest,
        prefix: &str,
        origin: AgentAttributeOrigin,
    ) -> Result<(&Arc<CompiledPolicySet>, DecisionRequest), RequestError> {
        let set = self.policy_set(&request.tenant, &format!("{prefix}principal.tenant"))?;
        request.apply_declarations(set.declarations(), origin, prefix)?;
        Ok((set, request))
    }
}
