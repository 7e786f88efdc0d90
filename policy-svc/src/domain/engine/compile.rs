//! PolicySet proto -> [`CompiledPolicySet`]: every field validated (errors
//! carry the policy id, the field path, and line/column inside conditions),
//! conditions parsed and type-checked once, role assignments loaded into the
//! tenant's Casbin role graph, and the rules filed in the candidate index.

use std::collections::{HashMap, HashSet};

use agentsec_proto::common::v1 as common;
use agentsec_proto::policy::v1 as pb;

use super::condition::{Builtin, Condition, Declarations};
use super::error::{printable, ValidationIssue, ValidationReport};
use super::glob::Glob;
use super::index::RuleIndex;
use super::model::{RoleGraph, MAX_ROLE_DEPTH};
use super::request::{is_agent_id, is_tenant};
use super::value::{is_attribute_key, AttrType, Source, ATTRIBUTE_KEY_RULE};

pub const MAX_RULES: usize = 20_000;
pub const MAX_ROLE_ASSIGNMENTS: usize = 100_000;
pub const MAX_ATTRIBUTE_DEFINITIONS: usize = 1000;
pub const MAX_DESCRIPTION: usize = 1024;
pub const MAX_SUBJECT: usize = 256;
pub const MAX_AUDIENCE_PATTERN: usize = 256;
pub const MAX_RESOURCE_PATTERN: usize = 512;
pub const MAX_ACTIONS: usize = 32;
pub const MAX_ACTION_PATTERN: usize = 128;

/// The mark an ALLOW rule's description must carry for its resource pattern
/// to match every resource (`*`) or every resource of a scheme (`mcp:*`).
/// policy.proto v1 has no field for it; the mark makes the intent explicit
/// and reviewable in the rule itself.
pub const MATCH_ALL_MARK: &str = "@match-all";

/// ALLOW or DENY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

impl Effect {
    pub fn from_proto(effect: i32) -> Option<Self> {
        match common::Effect::try_from(effect) {
            Ok(common::Effect::Allow) => Some(Self::Allow),
            Ok(common::Effect::Deny) => Some(Self::Deny),
            Ok(common::Effect::Unspecified) | Err(_) => None,
        }
    }

    pub fn to_proto(self) -> common::Effect {
        match self {
            Self::Allow => common::Effect::Allow,
            Self::Deny => common::Effect::Deny,
        }
    }
}

/// Who a rule's agent or person part names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectMatch {
    /// `*` (for people: any person, or none).
    Any,
    /// `agent:<id>` / `person:<sub>`: the id alone.
    Exact(String),
    /// `role:<role>`, kept whole as Casbin's role member name.
    Role(String),
}

/// One validated rule.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    pub id: String,
    pub effect: Effect,
    pub agent: SubjectMatch,
    pub person: SubjectMatch,
    /// None = any audience.
    pub audience: Option<Glob>,
    pub resource: Glob,
    pub actions: Vec<Glob>,
    pub condition: Option<Condition>,
}

/// One tenant's policy set version, ready to decide.
#[derive(Debug)]
pub struct CompiledPolicySet {
    tenant: String,
    version: u64,
    rules: Vec<CompiledRule>,
    declarations: Declarations,
    roles: RoleGraph,
    index: RuleIndex,
}

impl CompiledPolicySet {
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// The rules in policy-set order.
    pub fn rules(&self) -> &[CompiledRule] {
        &self.rules
    }

    pub fn declarations(&self) -> &Declarations {
        &self.declarations
    }

    pub fn roles(&self) -> &RoleGraph {
        &self.roles
    }

    pub fn index(&self) -> &RuleIndex {
        &self.index
    }
}

/// Validates `set` for `tenant` without compiling it.
pub fn validate(tenant: &str, set: &pb::PolicySet) -> ValidationReport {
    match compile(tenant, 0, set) {
        Ok(_) => ValidationReport::default(),
        Err(report) => report,
    }
}

/// Validates and compiles `set` as version `version` of `tenant`.
pub fn compile(
    tenant: &str,
    version: u64,
    set: &pb::PolicySet,
) -> Result<CompiledPolicySet, ValidationReport> {
    let mut report = ValidationReport::default();
    if !is_tenant(tenant) {
        report.push(ValidationIssue::new(
            "",
            "tenant",
            "must match [a-z0-9][a-z0-9_-]{0,63}",
        ));
    }
    // Over-long lists are refused before any per-item work.
    let mut oversized = false;
    for (field, count, max) in [
        ("policy_set.rules", set.rules.len(), MAX_RULES),
        (
            "policy_set.role_assignments",
            set.role_assignments.len(),
            MAX_ROLE_ASSIGNMENTS,
        ),
        (
            "policy_set.attributes",
            set.attributes.len(),
            MAX_ATTRIBUTE_DEFINITIONS,
        ),
    ] {
        if count > max {
            oversized = true;
            report.push(ValidationIssue::new(
                "",
                field,
                format!("at most {max} entries, got {count}"),
            ));
        }
    }
    if oversized {
        return Err(report);
    }

    let (declarations, attribute_issues) = declarations(&set.attributes);
    let mut rules = Vec::with_capacity(set.rules.len());
    let mut seen_ids: HashMap<&str, usize> = HashMap::with_capacity(set.rules.len());
    for (i, rule) in set.rules.iter().enumerate() {
        let field = format!("policy_set.rules[{i}]");
        if let Some(first) = seen_ids.insert(&rule.id, i) {
            report.push(ValidationIssue::new(
                &rule.id,
                format!("{field}.id"),
                format!("duplicates the id of policy_set.rules[{first}]"),
            ));
        }
        if let Some(compiled) = compile_rule(rule, &field, &declarations, &mut report) {
            rules.push(compiled);
        }
    }
    let roles = role_graph(tenant, &set.role_assignments, &mut report);
    for issue in attribute_issues {
        report.push(issue);
    }
    if !report.is_valid() {
        return Err(report);
    }
    let index = RuleIndex::build(&rules);
    Ok(CompiledPolicySet {
        tenant: tenant.to_owned(),
        version,
        rules,
        declarations,
        roles,
        index,
    })
}

fn compile_rule(
    rule: &pb::PolicyRule,
    field: &str,
    declarations: &Declarations,
    report: &mut ValidationReport,
) -> Option<CompiledRule> {
    let id = rule.id.as_str();
    let before = report.issues.len();
    let mut issue = |name: &str, message: String| {
        report.push(ValidationIssue::new(id, format!("{field}.{name}"), message));
    };
    if !is_name(id) {
        issue("id", "must match [a-z0-9][a-z0-9_.-]{0,63}".to_owned());
    }
    if rule.description.chars().count() > MAX_DESCRIPTION {
        issue("description", format!("at most {MAX_DESCRIPTION} chars"));
    }
    let effect = Effect::from_proto(rule.effect);
    if effect.is_none() {
        issue("effect", "must be ALLOW or DENY".to_owned());
    }
    let agent = subject(
        &rule.agent,
        "agent",
        is_agent_id,
        "an agent id (`agt_` + ULID)",
    )
    .map_err(|message| issue("agent", message))
    .ok();
    let person = subject(
        &rule.person,
        "person",
        |sub| !sub.is_empty(),
        "a person subject",
    )
    .map_err(|message| issue("person", message))
    .ok();
    if rule.audience.chars().count() > MAX_AUDIENCE_PATTERN {
        issue("audience", format!("at most {MAX_AUDIENCE_PATTERN} chars"));
    }
    let audience = match rule.audience.as_str() {
        "" => None,
        pattern => Some(Glob::new(pattern)).filter(|glob| !glob.matches_everything()),
    };
    let resource = Glob::new(&rule.resource);
    if rule.resource.is_empty() {
        issue(
            "resource",
            "is required (a resource id pattern such as `mcp:github/*`)".to_owned(),
        );
    } else if rule.resource.chars().count() > MAX_RESOURCE_PATTERN {
        issue("resource", format!("at most {MAX_RESOURCE_PATTERN} chars"));
    } else if effect == Some(Effect::Allow)
        && resource.matches_a_whole_scheme()
        && !rule.description.contains(MATCH_ALL_MARK)
    {
        issue(
            "resource",
            format!(
                "`{}` on an ALLOW rule matches every resource{}: narrow it, or put `{MATCH_ALL_MARK}` in the description to allow that on purpose",
                printable(&rule.resource),
                if resource.matches_everything() { "" } else { " of its scheme" },
            ),
        );
    }
    let actions = actions(&rule.actions)
        .map_err(|(name, message)| issue(&name, message))
        .ok();
    let condition = match rule.condition.trim() {
        "" => None,
        _ => match Condition::parse(&rule.condition, declarations) {
            Ok(condition) => Some(condition),
            Err(err) => {
                report.push(
                    ValidationIssue::new(id, format!("{field}.condition"), err.message)
                        .at(err.pos.line, err.pos.column),
                );
                None
            }
        },
    };
    if report.issues.len() > before {
        return None;
    }
    Some(CompiledRule {
        id: id.to_owned(),
        effect: effect?,
        agent: agent?,
        person: person?,
        audience,
        resource,
        actions: actions?,
        condition,
    })
}

/// `*` / empty, `<kind>:<id>` or `role:<role>`.
fn subject(
    value: &str,
    kind: &str,
    valid_id: fn(&str) -> bool,
    id_name: &str,
) -> Result<SubjectMatch, String> {
    if value.chars().count() > MAX_SUBJECT {
        return Err(format!("at most {MAX_SUBJECT} chars"));
    }
    if value.is_empty() || value == "*" {
        return Ok(SubjectMatch::Any);
    }
    if let Some(role) = value.strip_prefix("role:") {
        if !is_name(role) {
            return Err(format!(
                "`role:{}`: role names match [a-z0-9][a-z0-9_.-]{{0,63}}",
                printable(role)
            ));
        }
        return Ok(SubjectMatch::Role(value.to_owned()));
    }
    if let Some(id) = value
        .strip_prefix(kind)
        .and_then(|rest| rest.strip_prefix(':'))
    {
        if !valid_id(id) || id.contains('*') {
            return Err(format!("`{}` does not name {id_name}", printable(value)));
        }
        return Ok(SubjectMatch::Exact(id.to_owned()));
    }
    Err(format!(
        "must be `{kind}:<id>`, `role:<role>` or `*`, not `{}`",
        printable(value)
    ))
}

fn actions(actions: &[String]) -> Result<Vec<Glob>, (String, String)> {
    if actions.is_empty() {
        return Err((
            "actions".to_owned(),
            "at least one action is required".to_owned(),
        ));
    }
    if actions.len() > MAX_ACTIONS {
        return Err((
            "actions".to_owned(),
            format!("at most {MAX_ACTIONS} actions"),
        ));
    }
    let mut seen = HashSet::new();
    let mut globs = Vec::with_capacity(actions.len());
    for (i, action) in actions.iter().enumerate() {
        let field = format!("actions[{i}]");
        if action.is_empty() {
            return Err((
                field,
                "an action is 1-128 chars; empty is not an action".to_owned(),
            ));
        }
        if action.chars().count() > MAX_ACTION_PATTERN {
            return Err((field, format!("at most {MAX_ACTION_PATTERN} chars")));
        }
        if !seen.insert(action.as_str()) {
            return Err((field, format!("`{}` is listed twice", printable(action))));
        }
        globs.push(Glob::new(action));
    }
    Ok(globs)
}

/// `[a-z0-9][a-z0-9_.-]{0,63}` (rule ids and role names).
pub fn is_name(value: &str) -> bool {
    let bytes = value.as_bytes();
    (1..=64).contains(&bytes.len())
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes.iter().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
        })
}

fn declarations(definitions: &[pb::AttributeDefinition]) -> (Declarations, Vec<ValidationIssue>) {
    let mut declarations = Declarations::default();
    let mut issues = Vec::new();
    for (i, definition) in definitions.iter().enumerate() {
        let field = format!("policy_set.attributes[{i}]");
        let source = Source::from_proto(definition.source);
        if source.is_none() {
            issues.push(ValidationIssue::new(
                "",
                format!("{field}.source"),
                "must be AGENT, PERSON, RESOURCE or CONTEXT",
            ));
        }
        let attr_type = AttrType::from_proto(definition.r#type);
        if attr_type.is_none() {
            issues.push(ValidationIssue::new(
                "",
                format!("{field}.type"),
                "must be STRING, INT, DOUBLE, BOOL or STRING_LIST",
            ));
        }
        if definition.description.chars().count() > MAX_DESCRIPTION {
            issues.push(ValidationIssue::new(
                "",
                format!("{field}.description"),
                format!("at most {MAX_DESCRIPTION} chars"),
            ));
        }
        if !is_attribute_key(&definition.name) {
            issues.push(ValidationIssue::new(
                "",
                format!("{field}.name"),
                ATTRIBUTE_KEY_RULE,
            ));
            continue;
        }
        let (Some(source), Some(attr_type)) = (source, attr_type) else {
            continue;
        };
        if let Some(builtin) = Builtin::lookup(source, &definition.name) {
            issues.push(ValidationIssue::new(
                "",
                format!("{field}.name"),
                format!("`{}` is built in and cannot be declared", builtin.name()),
            ));
            continue;
        }
        if declarations
            .insert(source, &definition.name, attr_type)
            .is_some()
        {
            issues.push(ValidationIssue::new(
                "",
                format!("{field}.name"),
                format!(
                    "`{}.{}` is declared twice",
                    source.prefix(),
                    definition.name
                ),
            ));
        }
    }
    (declarations, issues)
}

fn role_graph(
    tenant: &str,
    assignments: &[pb::RoleAssignment],
    report: &mut ValidationReport,
) -> RoleGraph {
    let mut graph = RoleGraph::new(tenant);
    let mut seen: HashMap<(&str, &str), usize> = HashMap::with_capacity(assignments.len());
    // role member -> (role member it holds, assignment index)
    let mut role_edges: HashMap<String, Vec<(String, usize)>> = HashMap::new();
    let mut members: Vec<(&str, usize)> = Vec::new();
    let before = report.issues.len();
    for (i, assignment) in assignments.iter().enumerate() {
        let field = format!("policy_set.role_assignments[{i}]");
        let member = assignment.member.as_str();
        let member_ok = match member.split_once(':') {
            _ if member.chars().count() > MAX_SUBJECT => {
                Err(format!("at most {MAX_SUBJECT} chars"))
            }
            Some(("agent", id)) if is_agent_id(id) => Ok(()),
            Some(("person", sub)) if !sub.is_empty() => Ok(()),
            Some(("role", role)) if is_name(role) => Ok(()),
            _ => Err(format!(
                "`{}` must be `agent:<agent id>`, `person:<subject>` or `role:<role>`",
                printable(member)
            )),
        };
        if let Err(message) = member_ok {
            report.push(ValidationIssue::new("", format!("{field}.member"), message));
            continue;
        }
        if !is_name(&assignment.role) {
            report.push(ValidationIssue::new(
                "",
                format!("{field}.role"),
                "role names match [a-z0-9][a-z0-9_.-]{0,63}",
            ));
            continue;
        }
        if let Some(first) = seen.insert((member, &assignment.role), i) {
            report.push(ValidationIssue::new(
                "",
                field,
                format!("duplicates policy_set.role_assignments[{first}]"),
            ));
            continue;
        }
        let role_member = format!("role:{}", assignment.role);
        if member.starts_with("role:") {
            role_edges
                .entry(member.to_owned())
                .or_default()
                .push((role_member, i));
        } else {
            members.push((member, i));
        }
        graph.assign(member, &assignment.role);
    }
    if report.issues.len() > before {
        return graph;
    }
    // Cycles, then depth: heights[r] = longest chain of edges above role r.
    let mut heights: HashMap<&str, usize> = HashMap::new();
    let mut roles: Vec<&String> = role_edges.keys().collect();
    roles.sort();
    for role in roles {
        if let Err(issue) = height(role, &role_edges, &mut heights, &mut Vec::new()) {
            report.push(issue);
            return graph;
        }
    }
    for (member, i) in members {
        let role = format!("role:{}", assignments[i].role);
        let depth = 1 + heights.get(role.as_str()).copied().unwrap_or(0);
        if depth > MAX_ROLE_DEPTH {
            report.push(ValidationIssue::new(
                "",
                format!("policy_set.role_assignments[{i}]"),
                format!(
                    "`{member}` inherits roles through {depth} levels; at most {MAX_ROLE_DEPTH}"
                ),
            ));
            return graph;
        }
    }
    graph
}

/// The longest chain of role edges above `role`; an error on a cycle.
/// Recursion depth is bounded: a path longer than the role depth limit is
/// refused before it can grow further.
fn height<'a>(
    role: &'a str,
    edges: &'a HashMap<String, Vec<(String, usize)>>,
    heights: &mut HashMap<&'a str, usize>,
    path: &mut Vec<&'a str>,
) -> Result<usize, ValidationIssue> {
    if let Some(known) = heights.get(role) {
        return Ok(*known);
    }
    let mut best = 0;
    path.push(role);
    for (parent, i) in edges.get(role).into_iter().flatten() {
        if let Some(start) = path.iter().position(|on_path| *on_path == parent.as_str()) {
            let mut cycle: Vec<&str> = path[start..].to_vec();
            cycle.push(parent);
            return Err(ValidationIssue::new(
                "",
                format!("policy_set.role_assignments[{i}]"),
                format!("role cycle: {}", cycle.join(" -> ")),
            ));
        }
        if path.len() > MAX_ROLE_DEPTH {
            return Err(ValidationIssue::new(
                "",
                format!("policy_set.role_assignments[{i}]"),
                format!("roles inherit through more than {MAX_ROLE_DEPTH} levels"),
            ));
        }
        best = best.max(1 + height(parent, edges, heights, path)?);
    }
    path.pop();
    heights.insert(role, best);
    Ok(best)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn rule(
        id: &str,
        effect: common::Effect,
        agent: &str,
        resource: &str,
        actions: &[&str],
    ) -> pb::PolicyRule {
        pb::PolicyRule {
            id: id.to_owned(),
            description: String::new(),
            effect: effect as i32,
            agent: agent.to_owned(),
            person: String::new(),
            audience: String::new(),
            resource: resource.to_owned(),
            actions: actions.iter().map(|a| (*a).to_owned()).collect(),
            condition: String::new(),
        }
    }

    pub fn allow(id: &str, agent: &str, resource: &str, actions: &[&str]) -> pb::PolicyRule {
        rule(id, common::Effect::Allow, agent, resource, actions)
    }

    pub fn deny(id: &str, agent: &str, resource: &str, actions: &[&str]) -> pb::PolicyRule {
        rule(id, common::Effect::Deny, agent, resource, actions)
    }

    pub fn assign(member: &str, role: &str) -> pb::RoleAssignment {
        pb::RoleAssignment {
            member: member.to_owned(),
            role: role.to_owned(),
        }
    }

    pub fn declare(
        source: pb::AttributeSource,
        name: &str,
        attr_type: pb::AttributeType,
    ) -> pb::AttributeDefinition {
        pb::AttributeDefinition {
            source: source as i32,
            name: name.to_owned(),
            r#type: attr_type as i32,
            description: String::new(),
        }
    }

    fn issues(set: &pb::PolicySet) -> Vec<ValidationIssue> {
        validate("acme", set).issues
    }

    fn only_issue(set: &pb::PolicySet) -> ValidationIssue {
        let issues = issues(set);
        assert_eq!(issues.len(), 1, "{issues:#?}");
        issues.into_iter().next().unwrap()
    }

    fn with_rules(rules: Vec<pb::PolicyRule>) -> pb::PolicySet {
        pb::PolicySet {
            rules,
            ..Default::default()
        }
    }

    #[test]
    fn a_valid_set_compiles_with_defaults() {
        let mut person_rule = allow("r2", "*", "doc:*/public", &["read"]);
        person_rule.person = "person:alice".into();
        person_rule.audience = "*".into();
        let set = pb::PolicySet {
            rules: vec![
                allow("r1", "role:reader", "mcp:github/*", &["tools/call", "read"]),
                person_rule,
            ],
            role_assignments: vec![assign("agent:agt_a", "reader")],
            attributes: vec![declare(
                pb::AttributeSource::Agent,
                "trust_tier",
                pb::AttributeType::Int,
            )],
        };
        let compiled = compile("acme", 7, &set).unwrap();
        assert_eq!(compiled.version(), 7);
        assert_eq!(compiled.tenant(), "acme");
        assert_eq!(compiled.rules().len(), 2);
        assert_eq!(
            compiled.rules()[0].agent,
            SubjectMatch::Role("role:reader".into())
        );
        assert_eq!(compiled.rules()[0].person, SubjectMatch::Any);
        assert_eq!(
            compiled.rules()[1].person,
            SubjectMatch::Exact("alice".into())
        );
        assert_eq!(
            compiled.rules()[1].audience,
            None,
            "`*` audience is any audience"
        );
        assert_eq!(
            compiled.declarations().get(Source::Agent, "trust_tier"),
            Some(AttrType::Int)
        );
        assert!(compiled.roles().has_role("agent:agt_a", "role:reader"));
    }

    #[test]
    fn a_bad_condition_names_policy_field_line_and_column() {
        let mut bad = allow("tier-read", "*", "repo:x/*", &["read"]);
        bad.condition = "agent.trust_tier < 2 &&\n  resource.project = 'x'".into();
        let issue = only_issue(&with_rules(vec![
            allow("ok", "*", "repo:*/y", &["read"]),
            bad,
        ]));
        assert_eq!(issue.policy_id, "tier-read");
        assert_eq!(issue.field, "policy_set.rules[1].condition");
        assert_eq!((issue.line, issue.column), (2, 20));
        assert_eq!(issue.message, "`=` must be `==`");
    }

    #[test]
    fn conditions_are_type_checked_against_declarations() {
        let mut bad = allow("tier", "*", "repo:x/*", &["read"]);
        bad.condition = "agent.trust_tier == 'two'".into();
        let mut set = with_rules(vec![bad]);
        set.attributes = vec![declare(
            pb::AttributeSource::Agent,
            "trust_tier",
            pb::AttributeType::Int,
        )];
        let issue = only_issue(&set);
        assert_eq!(issue.field, "policy_set.rules[0].condition");
        assert_eq!(issue.message, "`==` compares an int with a string");
    }

    #[test]
    fn match_everything_patterns_need_the_mark_on_allow_rules() {
        for pattern in ["*", "mcp:*", "mcp:*/*"] {
            let issue = only_issue(&with_rules(vec![allow("wide", "*", pattern, &["read"])]));
            assert_eq!(issue.field, "policy_set.rules[0].resource");
            assert_eq!(issue.policy_id, "wide");
            assert!(issue.message.contains(MATCH_ALL_MARK), "{}", issue.message);
        }
        let mut marked = allow("wide", "role:admin", "*", &["*"]);
        marked.description = format!("break-glass admins {MATCH_ALL_MARK}");
        assert!(issues(&with_rules(vec![marked])).is_empty());
        assert!(
            issues(&with_rules(vec![deny("deny-all", "*", "*", &["*"])])).is_empty(),
            "deny may be wide"
        );
        assert!(issues(&with_rules(vec![allow(
            "narrow",
            "*",
            "mcp:github/*",
            &["*"]
        )]))
        .is_empty());
    }

    #[test]
    fn every_rule_field_is_checked() {
        let cases: Vec<(pb::PolicyRule, &str, &str)> = vec![
            (
                allow("Bad Id", "*", "r:x", &["read"]),
                "policy_set.rules[0].id",
                "must match",
            ),
            (
                allow("r", "*", "r:x", &[]),
                "policy_set.rules[0].actions",
                "at least one action",
            ),
            (
                allow("r", "*", "r:x", &[""]),
                "policy_set.rules[0].actions[0]",
                "empty is not an action",
            ),
            (
                allow("r", "*", "r:x", &["read", "read"]),
                "policy_set.rules[0].actions[1]",
                "listed twice",
            ),
            (
                allow("r", "*", "", &["read"]),
                "policy_set.rules[0].resource",
                "is required",
            ),
            (
                allow("r", "bob", "r:x", &["read"]),
                "policy_set.rules[0].agent",
                "must be `agent:<id>`",
            ),
            (
                allow("r", "agent:bob", "r:x", &["read"]),
                "policy_set.rules[0].agent",
                "does not name an agent id",
            ),
            (
                allow("r", "role:Admin", "r:x", &["read"]),
                "policy_set.rules[0].agent",
                "role names",
            ),
            (
                rule("r", common::Effect::Unspecified, "*", "r:x", &["read"]),
                "policy_set.rules[0].effect",
                "ALLOW or DENY",
            ),
        ];
        for (rule, field, message) in cases {
            let issue = only_issue(&with_rules(vec![rule]));
            assert_eq!(issue.field, field);
            assert!(
                issue.message.contains(message),
                "{field}: {}",
                issue.message
            );
        }
        let mut person = allow("r", "*", "r:x", &["read"]);
        person.person = "agent:agt_a".into();
        assert_eq!(
            only_issue(&with_rules(vec![person])).field,
            "policy_set.rules[0].person"
        );
    }

    #[test]
    fn duplicate_ids_name_the_first_occurrence() {
        let set = with_rules(vec![
            allow("same", "*", "r:x", &["read"]),
            allow("other", "*", "r:y", &["read"]),
            allow("same", "*", "r:z", &["read"]),
        ]);
        let issue = only_issue(&set);
        assert_eq!(issue.policy_id, "same");
        assert_eq!(issue.field, "policy_set.rules[2].id");
        assert_eq!(issue.message, "duplicates the id of policy_set.rules[0]");
    }

    #[test]
    fn all_errors_are_reported_not_just_the_first() {
        let mut bad_condition = allow("c", "*", "r:x", &["read"]);
        bad_condition.condition = "agent.x ==".into();
        let set = pb::PolicySet {
            rules: vec![
                allow("a", "*", "*", &["read"]),
                allow("b", "*", "r:x", &[]),
                bad_condition,
            ],
            role_assignments: vec![assign("bob", "reader")],
            attributes: vec![declare(
                pb::AttributeSource::Unspecified,
                "x",
                pb::AttributeType::Int,
            )],
        };
        let fields: Vec<String> = issues(&set).into_iter().map(|issue| issue.field).collect();
        assert_eq!(
            fields,
            vec![
                "policy_set.rules[0].resource",
                "policy_set.rules[1].actions",
                "policy_set.rules[2].condition",
                "policy_set.role_assignments[0].member",
                "policy_set.attributes[0].source",
            ]
        );
    }

    #[test]
    fn role_assignments_are_checked_for_duplicates_cycles_and_depth() {
        let duplicate = pb::PolicySet {
            role_assignments: vec![assign("agent:agt_a", "r"), assign("agent:agt_a", "r")],
            ..Default::default()
        };
        let issue = only_issue(&duplicate);
        assert_eq!(issue.field, "policy_set.role_assignments[1]");
        assert!(issue.message.contains("duplicates"), "{}", issue.message);

        let cycle = pb::PolicySet {
            role_assignments: vec![
                assign("role:a", "b"),
                assign("role:b", "c"),
                assign("role:c", "a"),
            ],
            ..Default::default()
        };
        let issue = only_issue(&cycle);
        assert_eq!(issue.policy_id, "");
        assert_eq!(
            issue.message,
            "role cycle: role:a -> role:b -> role:c -> role:a"
        );
        let self_loop = pb::PolicySet {
            role_assignments: vec![assign("role:a", "a")],
            ..Default::default()
        };
        assert!(only_issue(&self_loop).message.starts_with("role cycle"));

        let mut chain = vec![assign("agent:agt_a", "r0")];
        for level in 0..MAX_ROLE_DEPTH {
            chain.push(assign(
                &format!("role:r{level}"),
                &format!("r{}", level + 1),
            ));
        }
        let too_deep = pb::PolicySet {
            role_assignments: chain.clone(),
            ..Default::default()
        };
        assert!(only_issue(&too_deep).message.contains("levels"));
        chain.pop();
        let deep_enough = pb::PolicySet {
            role_assignments: chain,
            ..Default::default()
        };
        assert!(issues(&deep_enough).is_empty());
    }

    #[test]
    fn attribute_declarations_are_checked() {
        let set = pb::PolicySet {
            attributes: vec![
                declare(pb::AttributeSource::Agent, "tier", pb::AttributeType::Int),
                declare(
                    pb::AttributeSource::Agent,
                    "tier",
                    pb::AttributeType::String,
                ),
                declare(
                    pb::AttributeSource::Context,
                    "time",
                    pb::AttributeType::String,
                ),
                declare(
                    pb::AttributeSource::Person,
                    "De\u{0}pt",
                    pb::AttributeType::String,
                ),
                declare(
                    pb::AttributeSource::Person,
                    "dept",
                    pb::AttributeType::Unspecified,
                ),
            ],
            ..Default::default()
        };
        let found: Vec<(String, String)> = issues(&set)
            .into_iter()
            .map(|i| (i.field, i.message))
            .collect();
        assert_eq!(
            found,
            vec![
                (
                    "policy_set.attributes[1].name".to_owned(),
                    "`agent.tier` is declared twice".to_owned()
                ),
                (
                    "policy_set.attributes[2].name".to_owned(),
                    "`context.time` is built in and cannot be declared".to_owned()
                ),
                (
                    "policy_set.attributes[3].name".to_owned(),
                    ATTRIBUTE_KEY_RULE.to_owned()
                ),
                (
                    "policy_set.attributes[4].type".to_owned(),
                    "must be STRING, INT, DOUBLE, BOOL or STRING_LIST".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn oversized_sets_and_bad_tenants_are_refused_up_front() {
        let set = with_rules(vec![allow("r", "*", "r:x", &["read"]); MAX_RULES + 1]);
        let issue = only_issue(&set);
        assert_eq!(issue.field, "policy_set.rules");
        let set = with_rules(vec![allow("r", "*", "", &["read"])]);
        let fields: Vec<String> = validate("Not A Tenant", &set)
            .issues
            .into_iter()
            .map(|issue| issue.field)
            .collect();
        assert_eq!(
            fields,
            vec!["tenant", "policy_set.rules[0].resource"],
            "a bad tenant does not hide the rest"
        );
    }
}
