//! The PBAC model on Casbin: the model text (what a rule means), the tenant
//! role graph that Casbin evaluates at decision time, and a reference
//! Casbin `Enforcer` that evaluates the same model end to end.
//!
//! # Who evaluates what
//!
//! * Casbin evaluates `g`, the role graph with domains: each tenant's
//!   compiled policy set owns one Casbin [`DefaultRoleManager`] holding that
//!   tenant's role assignments as `g, <member>, role:<role>, <tenant>` links,
//!   and every rule that names `role:<role>` is matched with
//!   `has_link(agent:<id> | person:<sub>, role:<role>, <tenant>)`, the very
//!   call behind `g(r.sub, p.sub, r.dom)` in Casbin's matcher.
//! * The engine evaluates the rest of the matcher natively, over the few
//!   candidate rules that its index selects (see `index`): patterns
//!   (`patternMatch`, [`Glob`]), actions, the condition AST, and the effect
//!   `some(allow) && !some(deny)`. Casbin's own `enforce` runs the Rhai
//!   matcher over every `p` line of the model, so its cost grows with the
//!   number of rules (the bench shows it next to the engine); the engine's
//!   grows with the number of candidates only.
//! * [`reference_enforcer`] loads [`MODEL_TEXT`] with `DefaultModel::from_str`
//!   and a `MemoryAdapter` holding one `p` line per (rule, action) and the
//!   `g` lines, with the engine's pattern function registered. Tests decide
//!   random requests with both and require the same answer, so the model text
//!   is the executable specification of the engine.
//!
//! # Policy lines
//!
//! `p, <agent>, <person>, <tenant>, <audience>, <resource>, <action>, <allow|deny>, <rule id>`
//! where `<agent>` is `*`, `agent:<id>` or `role:<role>` and `<person>` is
//! `*`, `person:<sub>` or `role:<role>`; a rule with several actions is
//! several lines. `g, <member>, role:<role>, <tenant>`.

use std::collections::{HashMap, HashSet};
use std::fmt;

use casbin::function_map::{dynamic_to_str, OperatorFunction};
use casbin::{
    CoreApi, DefaultModel, DefaultRoleManager, Enforcer, MemoryAdapter, MgmtApi, RoleManager,
};

use super::compile::{CompiledPolicySet, Effect, SubjectMatch};
use super::condition::Trace;
use super::glob::Glob;
use super::request::DecisionRequest;

/// The Casbin model of AgentSec policy (see the module doc and
/// docs/policy-model.md). `r.held` carries the ids of the rules whose
/// condition holds for the request, which the engine evaluates.
pub const MODEL_TEXT: &str = r#"[request_definition]
r = sub, per, dom, aud, obj, act, held

[policy_definition]
p = sub, per, dom, aud, obj, act, eft, id

[role_definition]
g = _, _, _

[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))

[matchers]
m = r.dom == p.dom \
  && (p.sub == "*" || r.sub == p.sub || g(r.sub, p.sub, r.dom)) \
  && (p.per == "*" || (r.per != "" && (r.per == p.per || g(r.per, p.per, r.dom)))) \
  && patternMatch(r.aud, p.aud) \
  && patternMatch(r.obj, p.obj) \
  && patternMatch(r.act, p.act) \
  && conditionHolds(r.held, p.id)
"#;

/// Longest chain of role assignments from a member to a role (edges).
/// Casbin's role manager searches at most [`CASBIN_MAX_HIERARCHY`] levels;
/// validation keeps every chain well inside that.
pub const MAX_ROLE_DEPTH: usize = 8;
/// The hierarchy limit Casbin's `Enforcer` gives its `DefaultRoleManager`.
pub const CASBIN_MAX_HIERARCHY: usize = 10;

/// One tenant's role assignments: Casbin's role manager for `g` (domain =
/// tenant), plus the direct edges for listing a member's roles in Explain.
pub struct RoleGraph {
    tenant: String,
    casbin: DefaultRoleManager,
    direct: HashMap<String, Vec<String>>,
}

impl RoleGraph {
    pub fn new(tenant: &str) -> Self {
        Self {
            tenant: tenant.to_owned(),
            casbin: DefaultRoleManager::new(CASBIN_MAX_HIERARCHY),
            direct: HashMap::new(),
        }
    }

    /// `g, member, role:<role>, tenant`. `member` is `agent:<id>`,
    /// `person:<sub>` or `role:<role>`.
    pub fn assign(&mut self, member: &str, role: &str) {
        let role_member = format!("role:{role}");
        self.casbin
            .add_link(member, &role_member, Some(&self.tenant));
        self.direct
            .entry(member.to_owned())
            .or_default()
            .push(role_member);
    }

    /// Casbin's `g(member, role_member, tenant)`.
    pub fn has_role(&self, member: &str, role_member: &str) -> bool {
        // A member without assignments holds no role. Asking Casbin anyway
        // would cost a scan of every node of the tenant's graph: its role
        // manager falls back to a linear search for names it does not know.
        if !self.direct.contains_key(member) {
            return false;
        }
        self.casbin
            .has_link(member, role_member, Some(&self.tenant))
    }

    /// Every role `member` holds, directly or by inheritance, sorted, without
    /// the `role:` prefix.
    pub fn roles_of(&self, member: &str) -> Vec<String> {
        let mut seen: HashSet<&str> = HashSet::new();
        let mut queue: Vec<&str> = vec![member];
        while let Some(next) = queue.pop() {
            for role in self.direct.get(next).into_iter().flatten() {
                if seen.insert(role) {
                    queue.push(role);
                }
            }
        }
        let mut roles: Vec<String> = seen
            .into_iter()
            .map(|role| role.strip_prefix("role:").unwrap_or(role).to_owned())
            .collect();
        roles.sort();
        roles
    }

    pub(crate) fn direct(&self) -> &HashMap<String, Vec<String>> {
        &self.direct
    }

    pub fn assignment_count(&self) -> usize {
        self.direct.values().map(Vec::len).sum()
    }
}

impl fmt::Debug for RoleGraph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoleGraph")
            .field("tenant", &self.tenant)
            .field("assignments", &self.assignment_count())
            .finish()
    }
}

/// The Casbin `p` lines of a compiled set (without the leading `p`).
pub fn policy_lines(set: &CompiledPolicySet) -> Vec<Vec<String>> {
    let mut lines = Vec::new();
    for rule in set.rules() {
        for action in &rule.actions {
            lines.push(vec![
                subject(&rule.agent, "agent"),
                subject(&rule.person, "person"),
                set.tenant().to_owned(),
                rule.audience.as_ref().map_or("*", Glob::as_str).to_owned(),
                rule.resource.as_str().to_owned(),
                action.as_str().to_owned(),
                match rule.effect {
                    Effect::Allow => "allow".to_owned(),
                    Effect::Deny => "deny".to_owned(),
                },
                rule.id.clone(),
            ]);
        }
    }
    lines
}

/// The Casbin `g` lines of a compiled set (without the leading `g`).
pub fn grouping_lines(set: &CompiledPolicySet) -> Vec<Vec<String>> {
    let mut lines: Vec<Vec<String>> = set
        .roles()
        .direct()
        .iter()
        .flat_map(|(member, roles)| {
            roles
                .iter()
                .map(|role| vec![member.clone(), role.clone(), set.tenant().to_owned()])
        })
        .collect();
    lines.sort();
    lines
}

fn subject(subject: &SubjectMatch, kind: &str) -> String {
    match subject {
        SubjectMatch::Any => "*".to_owned(),
        SubjectMatch::Exact(id) => format!("{kind}:{id}"),
        SubjectMatch::Role(role_member) => role_member.clone(),
    }
}

/// A Casbin `Enforcer` for [`MODEL_TEXT`] loaded with the set's `p` and `g`
/// lines: the reference implementation of the engine's semantics. Its cost
/// is linear in the number of rules; it is for tests and the bench.
pub async fn reference_enforcer(set: &CompiledPolicySet) -> casbin::Result<Enforcer> {
    let model = DefaultModel::from_str(MODEL_TEXT).await?;
    let mut enforcer = Enforcer::new(model, MemoryAdapter::default()).await?;
    enforcer.add_function(
        "patternMatch",
        OperatorFunction::Arg2(|value, pattern| {
            Glob::new(&dynamic_to_str(&pattern))
                .matches(&dynamic_to_str(&value))
                .into()
        }),
    );
    enforcer.add_function(
        "conditionHolds",
        OperatorFunction::Arg2(|held, id| {
            let held = dynamic_to_str(&held);
            let id = dynamic_to_str(&id);
            held.split(',').any(|holding| holding == id).into()
        }),
    );
    let policies = policy_lines(set);
    if !policies.is_empty() {
        enforcer.add_policies(policies).await?;
    }
    let groupings = grouping_lines(set);
    if !groupings.is_empty() {
        enforcer.add_grouping_policies(groupings).await?;
    }
    Ok(enforcer)
}

/// The Casbin request for `request`: the rules whose condition holds are
/// evaluated natively first (a condition error counts as "does not hold";
/// the engine turns it into a DENY, which this reference does not model).
pub fn reference_request(set: &CompiledPolicySet, request: &DecisionRequest) -> Vec<String> {
    let held: Vec<&str> = set
        .rules()
        .iter()
        .filter(|rule| match &rule.condition {
            None => true,
            Some(condition) => condition.evaluate(request, &mut Trace::off()) == Ok(true),
        })
        .map(|rule| rule.id.as_str())
        .collect();
    vec![
        request
            .agent_id
            .as_ref()
            .map(|agent| format!("agent:{agent}"))
            .unwrap_or_default(),
        request
            .person_subject
            .as_ref()
            .map(|subject| format!("person:{subject}"))
            .unwrap_or_default(),
        request.tenant.clone(),
        request.audience.clone(),
        request.resource_id.clone(),
        request.action.clone(),
        held.join(","),
    ]
}

/// Decides `request` with the reference enforcer: true = ALLOW.
pub fn reference_decide(
    enforcer: &Enforcer,
    set: &CompiledPolicySet,
    request: &DecisionRequest,
) -> casbin::Result<bool> {
    enforcer.enforce(reference_request(set, request))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_model_text_loads_in_casbin() {
        let model = DefaultModel::from_str(MODEL_TEXT).await;
        assert!(model.is_ok(), "{:?}", model.err());
    }

    #[test]
    fn role_graph_uses_casbin_links_with_the_tenant_domain() {
        let mut graph = RoleGraph::new("acme");
        graph.assign("agent:agt_a", "reader");
        graph.assign("role:reader", "viewer");
        graph.assign("role:viewer", "guest");
        graph.assign("person:alice", "admin");
        assert!(graph.has_role("agent:agt_a", "role:reader"));
        assert!(
            graph.has_role("agent:agt_a", "role:guest"),
            "inherited through two levels"
        );
        assert!(!graph.has_role("agent:agt_a", "role:admin"));
        assert!(!graph.has_role("agent:agt_b", "role:reader"));
        assert_eq!(
            graph.roles_of("agent:agt_a"),
            vec!["guest", "reader", "viewer"]
        );
        assert_eq!(graph.roles_of("person:alice"), vec!["admin"]);
        assert!(graph.roles_of("agent:agt_z").is_empty());
        assert_eq!(graph.assignment_count(), 4);
    }

    #[test]
    fn casbin_follows_the_longest_chain_validation_allows() {
        let mut graph = RoleGraph::new("acme");
        graph.assign("agent:agt_a", "r1");
        for level in 1..MAX_ROLE_DEPTH {
            graph.assign(&format!("role:r{level}"), &format!("r{}", level + 1));
        }
        assert!(graph.has_role("agent:agt_a", &format!("role:r{MAX_ROLE_DEPTH}")));
    }
}
