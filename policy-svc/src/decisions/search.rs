//! The decisions behind AuthZEN searches: candidates from the tenant's
//! current policy set (`engine::search`), each decided as an evaluation
//! would be. A search answers a question about the policy, not a request
//! to act: its decisions are neither cached nor audited one by one.

use agentsec_proto::policy::v1::CheckRequest;
use chrono::Utc;

use super::DecisionService;
use crate::domain::engine::search::{
    action_candidates, resource_candidates, subject_candidates, SubjectKind,
};
use crate::domain::engine::{self, AgentAttributeOrigin, DecisionRequest};

/// What a search looks for.
#[derive(Debug, Clone, Copy)]
pub enum Sought<'a> {
    /// Actions on this resource id.
    Actions {
        resource_id: &'a str,
    },
    /// Resources this action may be taken on.
    Resources {
        action: &'a str,
    },
    Subjects(SubjectKind),
}

impl DecisionService {
    /// The candidates of a search in `tenant`'s current policy set, sorted;
    /// none for a tenant without one.
    pub fn search_candidates(&self, tenant: &str, sought: Sought<'_>) -> Vec<String> {
        let engine = self.policies.engine();
        let Ok(set) = engine.policy_set(tenant, "tenant") else {
            return Vec::new();
        };
        match sought {
            Sought::Actions { resource_id } => action_candidates(set, resource_id),
            Sought::Resources { action } => resource_candidates(set, action),
            Sought::Subjects(kind) => subject_candidates(set, kind),
        }
    }

    /// Whether the current policy allows each request; one it cannot
    /// decide is not allowed.
    pub fn allows(&self, requests: &[CheckRequest]) -> Vec<bool> {
        let engine = self.policies.engine();
        let now = Utc::now();
        requests
            .iter()
            .map(|request| {
                DecisionRequest::from_check(request, "", now)
                    .and_then(|request| engine.prepare(request, "", AgentAttributeOrigin::Caller))
                    .is_ok_and(|(set, request)| engine::decide(set, &request).is_allowed())
            })
            .collect()
    }
}
