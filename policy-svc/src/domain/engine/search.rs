//! What a search may return: the entities a tenant's policy set names
//! exactly, from which the AuthZEN search endpoints keep those a decision
//! allows. An entity allowed only through a pattern (`mcp:github/*`,
//! `tools/*`, `*`) or a rule's `*` subject cannot be enumerated and is not
//! a candidate, so a search may miss entities but never returns one the
//! matching evaluation would deny.

use std::collections::BTreeSet;

use super::compile::{CompiledPolicySet, Effect, SubjectMatch};

/// The kind of subject searched for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectKind {
    Agent,
    Person,
}

impl SubjectKind {
    fn prefix(self) -> &'static str {
        match self {
            Self::Agent => "agent:",
            Self::Person => "person:",
        }
    }
}

/// Exact action names of the allow rules whose resource pattern matches
/// `resource_id`, sorted.
pub fn action_candidates(set: &CompiledPolicySet, resource_id: &str) -> Vec<String> {
    let mut actions = BTreeSet::new();
    for rule in allow_rules(set) {
        if rule.resource.matches(resource_id) {
            actions.extend(
                rule.actions
                    .iter()
                    .filter(|action| action.is_literal())
                    .map(|action| action.as_str()),
            );
        }
    }
    actions.into_iter().map(str::to_owned).collect()
}

/// Exact resource ids of the allow rules with an action matching `action`,
/// sorted.
pub fn resource_candidates(set: &CompiledPolicySet, action: &str) -> Vec<String> {
    let mut resources = BTreeSet::new();
    for rule in allow_rules(set) {
        if rule.resource.is_literal() && rule.actions.iter().any(|glob| glob.matches(action)) {
            resources.insert(rule.resource.as_str());
        }
    }
    resources.into_iter().map(str::to_owned).collect()
}

/// Ids of the subjects of `kind` the set names: in an allow rule's agent or
/// person part, or as a member of the role graph (a role holder), sorted.
pub fn subject_candidates(set: &CompiledPolicySet, kind: SubjectKind) -> Vec<String> {
    let mut subjects: BTreeSet<&str> = BTreeSet::new();
    for rule in allow_rules(set) {
        let part = match kind {
            SubjectKind::Agent => &rule.agent,
            SubjectKind::Person => &rule.person,
        };
        if let SubjectMatch::Exact(id) = part {
            subjects.insert(id);
        }
    }
    subjects.extend(
        set.roles()
            .direct()
            .keys()
            .filter_map(|member| member.strip_prefix(kind.prefix())),
    );
    subjects.into_iter().map(str::to_owned).collect()
}

fn allow_rules(set: &CompiledPolicySet) -> impl Iterator<Item = &super::compile::CompiledRule> {
    set.rules()
        .iter()
        .filter(|rule| rule.effect == Effect::Allow)
}

#[cfg(test)]
mod tests {
    use agentsec_proto::policy::v1 as pb;

    use super::*;
    use crate::domain::engine::compile::compile;
    use crate::domain::engine::compile::tests::{allow, assign, deny};

    fn set() -> CompiledPolicySet {
        let mut for_alice = allow("alice", "*", "todo:1", &["can_read", "can_*"]);
        for_alice.person = "person:alice".into();
        compile(
            "acme",
            1,
            &pb::PolicySet {
                rules: vec![
                    allow(
                        "tools",
                        "agent:agt_a",
                        "mcp:github/*",
                        &["tools/call", "tools/list"],
                    ),
                    allow(
                        "one-tool",
                        "role:ops",
                        "mcp:github/list_issues",
                        &["tools/call"],
                    ),
                    deny(
                        "no-delete",
                        "agent:agt_z",
                        "mcp:github/delete_repo",
                        &["tools/call"],
                    ),
                    for_alice,
                ],
                role_assignments: vec![assign("agent:agt_b", "ops"), assign("person:bob", "ops")],
                attributes: Vec::new(),
            },
        )
        .unwrap()
    }

    #[test]
    fn candidates_are_what_allow_rules_name_exactly() {
        let set = set();
        assert_eq!(
            action_candidates(&set, "mcp:github/list_issues"),
            ["tools/call", "tools/list"]
        );
        assert_eq!(
            action_candidates(&set, "todo:1"),
            ["can_read"],
            "a glob action is not a candidate"
        );
        assert_eq!(
            resource_candidates(&set, "tools/call"),
            ["mcp:github/list_issues"],
            "glob resources and deny rules name no candidate"
        );
        assert_eq!(resource_candidates(&set, "can_write"), ["todo:1"]);
        assert_eq!(
            subject_candidates(&set, SubjectKind::Agent),
            ["agt_a", "agt_b"]
        );
        assert_eq!(
            subject_candidates(&set, SubjectKind::Person),
            ["alice", "bob"]
        );
    }
}
